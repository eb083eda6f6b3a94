"""
GPU cost model (H100/A100-class), per `simt.kernel`, from its tiling.

For each kernel:
- occupancy: CTAs per SM from threads, registers and shared memory against
  the SM's limits, which sets how many CTAs are resident at once (a wave,
  for L2 reuse); CTAs share their SM's throughput, so the busiest SM runs
  `ceil(ctas / sms)` of them (wave quantisation), and edge tiles are
  already full tiles in the IR's FLOPs (tile quantisation);
- compute: tensor-core work (`matrix_flops`) at the tensor peak of the dtype
  reaching the MMA (`operand_dtype`: bf16 for a weight-only
  `x: bf16 @ dequantize(w: i4, s)`; int8 and fp8 peaks where the spec has
  them, f8 at the f16 rate on a GPU without FP8 tensor cores, `TENSOR_PEAK`)
  scaled by the wave efficiency and a per-CTA efficiency. A GEMM's CTA
  (an implicit-GEMM convolution's too, its window being K) runs K / k_step
  main-loop steps at `gemm_efficiency` of the peak (the ceiling a long-K
  GEMM reaches: clocks under load, issue, synchronisation) and pays a
  fixed cost worth `gemm_fill_steps` steps (filling the load pipeline
  before its first MMA, draining it, writing its output tile):
  `efficiency = gemm_efficiency * K / (K + gemm_fill_steps * k_step)`.
  k_step is the main-loop depth of the libraries' kernels
  (`preferred_gemm_tile`'s K, 64), not strata's K tile, which follows K's
  divisors. Both keys are fitted on published H100 bf16 GEMMs at K =
  256..8192 and validated on other shapes (the spec keys name the rows):
  the fill is about two steps, so a K = 64 CTA runs at 30% of the
  ceiling, a K = 4096 one at 97%. The rest (norms, elementwise) runs on
  the CUDA cores at the fp32 peak;
- attention (a flash loop over key blocks): per key block the tensor cores
  run `q @ k^T` and `p @ v` (`4 d` FLOPs per score at head dim d) at
  `attention_efficiency` of the peak, and the special-function units
  (MUFU) evaluate one exponential per score at `sfu_exp_per_s`, which is
  256x slower than the bf16 tensor peak on an H100: at d = 64 the
  exponentials take as long as the GEMMs at full rate, at d = 256 a
  quarter (FlashAttention-3 paper, sec. 3). FA3 overlaps one warpgroup's
  softmax with the other's GEMMs, but the measurements show the two
  nearly add up: the shorter of the two is hidden only by the fraction
  `attention_exp_overlap` (`max + (1 - overlap) * min`). The scores are
  read off the IR (`exponentials`: a kernel that splits the head dim
  recomputes them per split). The rest of the online softmax (max, scale,
  sum) runs on the CUDA cores, overlapped. The loop's prologue and
  epilogue are amortised over the keys S a CTA visits (`S / (S +
  attention_k_half)`, fewer keys when a causal loop stops at the
  diagonal). The three keys are calibrated on FlashAttention-3 forward at
  head dims 64 and 128 and validated at 256;
- memory: HBM traffic from tile reuse: each distinct operand tile the CTAs
  of one wave touch is read once per wave (the rest hits L2; a partial last
  wave reads its own CTAs' share), a wave walking columns, or rows where the
  loop order puts them innermost (CUTLASS's rasterisation); an operand's
  tiles follow the loop dims its loads read (`tiles_in_wave`: a weight
  shared by every batch element, or a KV head broadcast over its query
  heads, is read once for all of them); other kernels read
  their inputs once when the share one wave touches fits in L2 (neighbouring
  CTAs re-read the same keys or halos), and every tile from HBM otherwise;
  at the achievable HBM bandwidth;
- MMA quantisation: a CTA tile edge that is not a multiple of the MMA
  instruction's pads every instruction;
- on-chip traffic: every loaded tile crosses L2 and shared memory, at the
  shared-memory bandwidth of the SMs that hold CTAs (small tiles re-read
  more; a grid of a few CTAs, such as a decode step's attention over 8
  key/value heads, streams its bytes through a few SMs);
- time = max(compute, memory, on-chip) + launch latency; the bound is the largest.
Relayout copies between kernels are memory-bound copy kernels. Collectives
(`simt.all_reduce`, `simt.all_gather`, `simt.reduce_scatter`) run over NVLink/NVSwitch at NCCL's
measured bus bandwidth (`collective_bandwidth`) with a launch and a per-step
latency each (`backends/cost.py` has the ring and tree formulas).
"""

from __future__ import annotations

import math

from xdsl.dialects import scf
from xdsl.dialects.builtin import ModuleOp

from strata.backends.cost import (
    Interconnect, KernelCost, Report, chips, collective_costs, hardware_kernels, link_transfer_cost, relayout_copies,
    transfers,
)
from strata.dialects import loop
from strata.dialects.device import DeviceSpec, SpecError
from strata.dialects.hardware import simt
from strata.dialects.loop import trip_count
from strata.dialects.vocabulary import dominant_dtype, element_bytes, type_bytes

TENSOR_PEAK = {"bf16": "peak_flops_bf16", "f16": "peak_flops_fp16", "f32": "peak_flops_tf32",
               "i8": "peak_ops_int8", "ui8": "peak_ops_int8", "i4": "peak_ops_int8",
               "f8E4M3FN": "peak_flops_fp8", "f8E5M2": "peak_flops_fp8"}
"""The spec key of the tensor-core peak by operand dtype (`operand_dtype`, the dtype reaching the MMA).
i4 operands of an integer matmul run at the int8 rate: Hopper's tensor cores have no int4 MMA, and the
specs carry no int4 peak for the A100's (m16n8k64 .s4) either."""
FALLBACK_PEAK = {"peak_flops_fp8": "peak_flops_fp16"}
"""Where a spec lacks a dtype's peak: a GPU without FP8 tensor cores (A100) converts f8 operands to f16
in registers (every f8e4m3 and f8e5m2 value is exact in f16) and runs the f16 MMA: the f16 rate."""


_bytes = type_bytes


def tensor_peak(spec: DeviceSpec, dtype: str) -> float:
    """The tensor-core peak (FLOP/s or OP/s) for operands of `dtype`; unknown dtypes run as tf32."""
    key = TENSOR_PEAK.get(dtype, "peak_flops_tf32")
    if key not in spec:
        key = FALLBACK_PEAK.get(key, "peak_flops_tf32")
    return spec.get(key) or spec["peak_flops_tf32"]


def occupancy(kernel: simt.KernelOp, spec: DeviceSpec) -> int:
    """Resident CTAs per SM (CUDA occupancy calculator rules, without allocation granularity)."""
    threads = math.prod(kernel.block.get_values())
    regs = kernel.regs_per_thread.value.data
    smem = kernel.smem_bytes.value.data
    limits = [
        spec.get("max_ctas_per_sm", 32),
        spec.get("max_threads_per_sm", 2048) // threads,
        spec["regs_per_sm"] // max(1, regs * threads),
    ]
    if smem:
        limits.append(spec["smem_per_sm_bytes"] // smem)
    return max(1, min(limits))


def _tile_efficiency(kernel: simt.KernelOp, spec: DeviceSpec) -> float:
    """
    Share of the tensor peak a CTA's tensor-core work runs at. Attention:
    its prologue and epilogue amortised over the keys it visits. GEMMs and
    convolutions: the main-loop ceiling `gemm_efficiency` times the share
    of the CTA's time in its main loop, K steps against K plus the fixed
    fill and epilogue, `gemm_fill_steps` K-steps (module docstring).
    """
    # MMA instructions pad the depth the pipeline amortises over (the keys a
    # query visits are the N of `q @ k^T`, K is the K of a GEMM) to their edge;
    # `_mma_efficiency` counts that waste.
    shape = kernel.mma.get_values()
    gemms = kernel.gemm_list()
    if kernel.kind.data == "attention":
        keys = _padded(gemms[0][2], shape, 1)
        return keys / (keys + spec["attention_k_half"])
    if not gemms:
        return 1.0
    depth = _padded(gemms[0][3], shape, 2)
    # The fill is counted in the libraries' K-steps (`preferred_gemm_tile`),
    # whatever K tile strata chose: a convolution's tile takes its whole
    # window, and a K tile that divides an odd K is no pipeline stage.
    fill = spec["gemm_fill_steps"] * spec["preferred_gemm_tile"][2]
    return spec["gemm_efficiency"] * depth / (depth + fill)


def exponentials(kernel: simt.KernelOp) -> int:
    """
    Exponentials an attention kernel evaluates: one per score it computes.
    A CTA's key block of r queries by k keys costs `2 r k d` FLOPs in
    `q @ k^T` (the whole head dim d) and `2 r k t` in `p @ v` (its tile t of
    the head dim), so the scores are `matrix_flops / (2 (d + t))`: every
    CTA that splits the head dim recomputes (and exponentiates) its scores.
    """
    d = kernel.gemm_list()[0][3]
    tile = kernel.tile_sizes.get_values()[len(kernel.loop_order.get_values()) - 1]
    return kernel.matrix_flops.value.data // (2 * (d + tile))


def _attention_compute_s(kernel: simt.KernelOp, spec: DeviceSpec, peak: float, wave_efficiency: float) -> float:
    """A flash-attention kernel's compute time: GEMMs and exponentials, softmax on the side (module docstring)."""
    matrix = kernel.matrix_flops.value.data
    tensor_s = matrix / (peak * wave_efficiency * _mma_efficiency(kernel) * spec["attention_efficiency"])
    exp_s = exponentials(kernel) / (spec["sfu_exp_per_s"] * wave_efficiency)
    # The shorter of the two hides under the longer only in part: each
    # warpgroup's exponentials sit between its two GEMMs.
    pipeline_s = max(tensor_s, exp_s) + (1 - spec["attention_exp_overlap"]) * min(tensor_s, exp_s)
    cuda_s = (kernel.flops.value.data - matrix) / (spec["peak_flops_fp32"] * wave_efficiency)
    return max(pipeline_s, cuda_s) / _tile_efficiency(kernel, spec)


def _padded(extent: int, mma: tuple[int, ...], axis: int) -> int:
    """`extent` rounded up to the MMA instruction's edge `axis` (unchanged without MMAs)."""
    if len(mma) != 3:
        return extent
    return -(-extent // mma[axis]) * mma[axis]


def _row_tile(kernel: simt.KernelOp) -> int:
    """
    A GEMM tile's rows: those of its M dim, or, for one GEMM over batched
    rows (`gemms` counts it once, with M = batch x rows), the rows of every
    batch element the tile spans.
    """
    tiles, bounds = kernel.tile_sizes.get_values(), kernel.bounds.get_values()
    rank = len(kernel.loop_order.get_values())
    count, m, _, _ = kernel.gemm_list()[0]
    if count == 1 and m == math.prod(bounds[: rank - 1]):
        return math.prod(tiles[: rank - 1])
    return tiles[rank - 2]


def _mma_efficiency(kernel: simt.KernelOp) -> float:
    """Useful share of the MMA instructions a CTA tile issues: a tile edge that
    is not a multiple of the instruction's edge pads it (m16n8k16: an 8-row
    tile wastes half of every instruction)."""
    shape = kernel.mma.get_values()
    gemms = kernel.gemm_list()
    kind = kernel.kind.data
    if len(shape) != 3 or not gemms or kind not in ("gemm", "attention", "conv"):
        return 1.0
    tiles = kernel.tile_sizes.get_values()
    rank = len(kernel.loop_order.get_values())
    if kind == "gemm":
        edges = (_row_tile(kernel), tiles[rank - 1], tiles[rank])
    elif kind == "attention":  # queries x keys x head dim
        edges = (tiles[rank - 2], tiles[rank], tiles[rank - 1])
    else:  # an implicit GEMM: the tile's pixels x its filters (within a group) x the whole window
        _, _, per_group, depth = gemms[0]
        edges = (tiles[0] * tiles[2] * tiles[3], min(tiles[1], per_group), depth)
    useful = 1.0
    for edge, unit in zip(edges, shape):
        useful *= edge / (-(-edge // unit) * unit)
    return useful


def _global_loads(kernel: simt.KernelOp) -> list[tuple[set[int], int]]:
    """
    Per `loop.load` of the kernel's body: the loop dims its tile follows (those
    its map reads) and the bytes its CTAs load over the whole kernel: the tile
    times the trips of the loops around it, except a reduction loop whose dim
    it does not follow (a per-column scale reloaded at every K step is the
    same tile each time: the CTA's caches hold it).
    """
    rank = len(kernel.loop_order.get_values())
    loads = []

    def visit(block, loops: list[tuple[int | None, int]]) -> None:
        for op in block.ops:
            if isinstance(op, scf.ForOp):
                dim = op.attributes.get("loop.dim")
                visit(op.body.block, [*loops, (dim.value.data if dim is not None else None, trip_count(op))])
            elif isinstance(op, loop.LoadOp):
                dims = set(op.map.data.used_dims())
                times = math.prod(n for d, n in loops if d is None or d < rank or d in dims)
                loads.append((dims, type_bytes(op.result.type) * times))
            else:
                for region in op.regions:
                    for inner in region.blocks:
                        visit(inner, loops)

    visit(kernel.body.block, [])
    return loads


def tiles_in_wave(dims: set[int], order: tuple[int, ...], counts: dict[int, int], wave: int) -> int:
    """
    Distinct tiles of an operand that follows `dims` among the first `wave`
    CTAs of the grid, which walks `order` innermost last (`counts` tiles
    along each dim): every combination of the dims inner to the first one
    the wave does not wrap, and of that dim the values the wave reaches.
    """
    distinct, spanned = 1, 1
    for i, d in enumerate(reversed(order)):
        extent = counts[d]
        if spanned * extent >= wave:
            if d not in dims:
                return distinct
            # `full` whole passes over the inner dims, then the first `rest` CTAs of one more.
            full = -(-wave // spanned) - 1
            rest = wave - full * spanned
            return full * distinct + tiles_in_wave(dims, order[len(order) - i:], counts, rest)
        distinct *= extent if d in dims else 1
        spanned *= extent
    return distinct


def _hbm_reads(kernel: simt.KernelOp, spec: DeviceSpec, slots: int) -> int:
    """Bytes read from HBM: tile reuse through L2 (see the module docstring)."""
    unique = sum(_bytes(v.type) for v in kernel.ins)
    loaded = kernel.read_bytes.value.data
    if kernel.kind.data == "gemm" and loaded > unique:
        # Consecutive CTAs walk the innermost loops (columns, or rows where the
        # tile pass rasterises along M, `tile.default_order`); the CTAs of one
        # wave share L2, so a wave reads each distinct operand tile it touches
        # once: the tiles along the dims an operand follows (a weight shared by
        # every batch element, a KV head broadcast over its query heads, follow
        # fewer dims than the grid has).
        bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
        order = tuple(kernel.loop_order.get_values())
        counts = {d: -(-bounds[d] // tiles[d]) for d in order}
        ctas = math.prod(counts.values())
        wave = min(slots, ctas)
        per_wave = sum(tiles_in_wave(dims, order, counts, wave) * total / ctas for dims, total in _global_loads(kernel))
        # A last, partial wave touches only its own CTAs' tiles.
        return int(min(loaded, max(unique, ctas / wave * per_wave)))
    # Other kernels re-read data across neighbouring CTAs (attention's keys
    # across query tiles, halos): the share one wave touches stays in L2.
    ctas = math.prod(kernel.grid.get_values())
    if loaded <= unique or unique * min(slots, ctas) / ctas <= spec["l2_bytes"]:
        return min(loaded, unique)
    return loaded


def kernel_cost(kernel: simt.KernelOp, spec: DeviceSpec) -> KernelCost:
    occ = occupancy(kernel, spec)
    ctas = math.prod(kernel.grid.get_values())
    slots = spec["sms"] * occ
    waves = -(-ctas // slots)
    # Resident CTAs share their SM's tensor cores: the busiest SM runs
    # ceil(ctas / sms) CTAs one after another, whatever the occupancy (which
    # bounds the residency, used for L2 reuse, not the throughput).
    wave_efficiency = ctas / (-(-ctas // spec["sms"]) * spec["sms"])
    dtype = kernel.operand_dtype()
    flops, matrix = kernel.flops.value.data, kernel.matrix_flops.value.data
    peak = tensor_peak(spec, dtype)
    if kernel.kind.data == "attention":
        compute_s = _attention_compute_s(kernel, spec, peak, wave_efficiency)
    else:
        efficiency = wave_efficiency * _tile_efficiency(kernel, spec) * _mma_efficiency(kernel)
        tensor_s = matrix / (peak * efficiency) if matrix else 0.0
        compute_s = tensor_s + (flops - matrix) / (spec["peak_flops_fp32"] * wave_efficiency)
    hbm = _hbm_reads(kernel, spec, slots) + kernel.write_bytes.value.data
    memory_s = hbm / spec.get("hbm_bandwidth_measured", spec["hbm_bandwidth"])
    # Every tile loaded crosses L2 and shared memory (small tiles re-read
    # more), through the SMs that hold CTAs: the busiest streams the tiles
    # of ceil(ctas / sms) CTAs, as its tensor cores run them.
    onchip_s = (kernel.read_bytes.value.data / (spec["smem_bandwidth"] * wave_efficiency)
                if "smem_bandwidth" in spec else 0.0)
    memory_s = max(memory_s, onchip_s)
    latency_s = spec["launch_latency_s"]
    time_s = max(compute_s, memory_s) + latency_s
    bound = max((compute_s, "compute"), (memory_s, "memory"), (latency_s, "latency"))[1]
    used_peak = peak if matrix else spec["peak_flops_fp32"]
    return KernelCost(
        name=kernel.kernel_name.data,
        kind=kernel.kind.data,
        ops=[o.data for o in kernel.ops],
        flops=flops,
        bytes={"hbm": hbm, "l2": kernel.read_bytes.value.data + kernel.write_bytes.value.data,
               "smem": kernel.read_bytes.value.data},
        time_s=time_s,
        bound=bound,
        utilisation=flops / (time_s * used_peak),
        extra={"ctas": ctas, "waves": waves, "occupancy": occ, "wave_efficiency": round(wave_efficiency, 4),
               "dtype": dtype},
    )


def copy_cost(copy, spec: DeviceSpec, index: int) -> KernelCost:
    moved = 2 * _bytes(copy.source.type)
    memory_s = moved / spec.get("hbm_bandwidth_measured", spec["hbm_bandwidth"])
    latency_s = spec["launch_latency_s"]
    return KernelCost(
        name=f"relayout_{index}", kind="relayout", ops=["graph.relayout"], flops=0, bytes={"hbm": moved},
        time_s=memory_s + latency_s, bound="memory" if memory_s > latency_s else "latency", utilisation=0.0,
    )


def link_bandwidth(spec: DeviceSpec) -> float:
    """One direction of the NVLink between two GPUs: half the spec's bidirectional `nvlink_bandwidth`."""
    if "nvlink_bandwidth" not in spec:
        raise SpecError(f"{spec.name}: moving buffers between GPUs needs 'nvlink_bandwidth' in the spec")
    return spec["nvlink_bandwidth"] / 2


def interconnect(spec: DeviceSpec) -> Interconnect:
    """The GPUs of one NVSwitch node: NCCL's bus bandwidth, one NVSwitch step per algorithm step."""
    for key in ("collective_bandwidth", "collective_step_latency_s", "collective_launch_latency_s"):
        if key not in spec:
            raise SpecError(f"{spec.name}: collectives between GPUs need '{key}' in the spec")
    return Interconnect(
        spec["collective_bandwidth"], spec["collective_step_latency_s"], spec["collective_launch_latency_s"],
        "collective_bandwidth (NCCL bus bandwidth)", switched=True,
    )


def estimate(module: ModuleOp, spec: DeviceSpec) -> Report:
    kernels = hardware_kernels(module)
    costs = [kernel_cost(k, spec) for k in kernels]
    costs += [copy_cost(c, spec, i) for i, c in enumerate(relayout_copies(module))]
    moves = transfers(module)
    costs += [link_transfer_cost(t, link_bandwidth(spec), i, "nvlink_bandwidth / 2") for i, t in enumerate(moves)]
    costs += collective_costs(module, lambda: interconnect(spec))
    dtype = dominant_dtype(((k.operand_dtype(), k.figure("matrix_flops")) for k in kernels), "f32")
    used = chips(module)
    return Report("gpu", spec.name, costs, used * tensor_peak(spec, dtype), chips=used)
