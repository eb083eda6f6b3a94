"""
CPU cost model (the host's and other multi-core CPUs'), per `cpu.kernel`, from its tiling.

A `cpu.kernel` says what strata's native code does with the kernel
(`passes/lower_to_hardware.py`, `lower_cpu`): `parallel_tiles` iterations
of its parallel tile loop shared by `threads` threads, a GEMM's tile
product as `micro_kernel` = [mr, nr] register blocks with `b` packed once
per tile (`packed_bytes`), one tile's working set (`l2_bytes`) in a core's
L2. For each kernel:

- cores: `used = min(threads, cores)`; the busiest core runs
  `ceil(parallel_tiles / used)` of the tiles, so the kernel runs
  `parallel_tiles / ceil(parallel_tiles / used)` times faster than on one
  core (a 1-tile kernel gains nothing from a second thread);
- compute, matrix work (`matrix_flops`, edge tiles already padded in the
  IR): with a micro-kernel, at one core's FMA peak (`simd_lanes_f32` x
  `fma_pipes` x 2 x `clock_hz`) times `gemm_efficiency` (the micro-kernel
  loop's ceiling: broadcasts, loads and loop overhead between the FMAs,
  calibrated on this host), times the register blocks' useful share (a
  tile's rows padded to `mr`, its columns to `nr`: the last strip is
  masked, not skipped), times `K / (K + 2 K/k + OUTPUT_TILE_FILL_K)`: each
  block loads and stores its accumulators once per k tile
  (`MICRO_KERNEL_FILL_STEPS` = 2 steps), each output tile is zeroed and
  stored once (80 steps, measured). Without the packed micro-kernel (a
  batched GEMM, attention, an operand computed in the kernel, so unpacked)
  at `LOOP_MATRIX_EFFICIENCY` of the peak times the lanes the tile's
  columns fill; a convolution at `CONV_EFFICIENCY`;
- compute, other work (epilogues, norms, softmax, reductions: `flops -
  matrix_flops`): scalar loops, `CYCLES_PER_FLOP` clocks per FLOP, plus
  `CYCLES_PER_TRANSCENDENTAL` per exp-like element (`transcendentals`) and
  `CYCLES_PER_GATHERED_ELEMENT` per element a gather reads;
- memory: the bytes each level moves, each at the bandwidth of the cores
  used (per-core figures times cores, capped at the chip's): through L2,
  the tiles loaded (`read_bytes`, copied into tile buffers: read and
  written), `a`'s rows re-read once per packed strip of `nr` columns
  (`2 / nr` bytes per FLOP of f32), `b`'s strip re-read by every block
  (`2 / mr` bytes per FLOP) when it overflows half the L1d, and the packing
  of `b` (read and written once per tile); from L3, or from DRAM when the kernel's data
  (its inputs and outputs) exceeds the L3, the unique inputs once, the
  outputs, and the tile re-reads (a's row panel per column tile, b's per
  row tile: `read_bytes` beyond the unique inputs);
- time = max(compute + copies, other L2 traffic, L3/DRAM) + the call and,
  with more than one thread, one OpenMP fork and join
  (`parallel_region_latency_s`): the tile copies and the packing are
  phases of their own between micro-kernel calls, while the out-of-order
  core and the prefetchers overlap the other loads with the FMAs.

Relayout copies are copies (read and written) at the L3/DRAM bandwidth.
The constants are properties of strata's generated code, not of the chip:
each was measured with `strata measure` on this host (1 thread) and says
where. Transfers and collectives between CPUs (sockets, hosts) run over
`link_bandwidth` when the spec has it; otherwise such a program is an
error.

Threads are a choice of the run, not of the chip: `strata compile --target
cpu --threads N` (or `--schedule threads=N`) lowers with N, default 1 as
`strata run --backend mlir`; the report prices what that run does.
"""

from __future__ import annotations

import math

from xdsl.dialects.builtin import ModuleOp

from strata.backends.cost import (
    Interconnect, KernelCost, Report, chips, collective_costs, hardware_kernels, link_transfer_cost, relayout_copies,
    transfers,
)
from strata.dialects.device import DeviceSpec, SpecError
from strata.dialects.hardware import cpu
from strata.dialects.vocabulary import type_bytes

MICRO_KERNEL_FILL_STEPS = 2
"""k steps a register block spends loading and storing its mr x nr/lanes accumulators once per k tile
(one store per clock against `fma_pipes` FMAs per clock: about `fma_pipes` steps)."""

OUTPUT_TILE_FILL_K = 80
"""An output tile's fixed cost in steps of the whole reduction K: zeroing its f32 accumulator tile,
the first touches of each k tile's operands, storing the tile. Efficiency `K / (K + 80)`; measured
(`strata measure` on this host, 1 thread): GPT-2's K = 256 GEMMs run at 0.56 of the peak (0.76 of
the 1024^3 GEMM's, K = 1024), 256 / (256 + 80) against 1024 / (1024 + 80)."""

LOOP_MATRIX_EFFICIENCY = 0.125
"""Share of the FMA peak matrix work runs at without the packed micro-kernel (LLVM's loop nests from
`--convert-linalg-to-loops`, or the micro-kernel reading an unpacked, computed `b`/`a`): measured on
this host with `strata measure` (GPT-2 S=64 D=256, 2026-12-05): the attention kernels' products at
0.12 of the peak, the output projection (its `a` a transposed, reshaped tile) at 0.13."""

CONV_EFFICIENCY = 0.03
"""Share of the FMA peak a convolution's products run at (the export's `linalg.generic` over the
window, lowered to scalar loops: not vectorised yet). Measured (`strata measure`, 1 thread):
ResNet-18's 3x3 convs at HW=64 at 0.023 of the peak, ViT's 8x8 patch embedding at 0.039."""

CYCLES_PER_FLOP = 1.1
"""Core clocks per FLOP of the work outside matrix products (epilogues, norms, softmax, reductions):
the export's `linalg.generic` tile ops become scalar loops (through the layout's index maps LLVM's
vectoriser rarely fires), a dependent chain per reduction. Measured (`strata measure`, GPT-2 S=64
D=256): layernorm 64 x 256 (131k FLOPs) 45 us, a GEMM's two-add epilogue (98k FLOPs) 23 us."""

CYCLES_PER_TRANSCENDENTAL = 7
"""Core clocks per exp-like element beyond its FLOP: a scalar polynomial (the export's f32 `erf`
is a 10-term polynomial times an exponential; `exp` calls libm). Measured: the bias + GELU
epilogue of a 64 x 1024 GEMM tile set, 152 us for 65k elements."""

CYCLES_PER_GATHERED_ELEMENT = 10
"""Core clocks per element a gather reads (an id load, the row's index arithmetic, a scalar copy).
Measured: GPT-2's token embedding, 64 rows of 256, 50 us."""

CALL_LATENCY_S = 2e-7
"""One kernel call of the native module: a function call, its tile buffers' allocations and frees."""


def core_peak(spec: DeviceSpec) -> float:
    """One core's f32 FMA peak (FLOP/s): lanes x pipes x 2 x clock."""
    return spec["simd_lanes_f32"] * spec["fma_pipes"] * 2 * spec["clock_hz"]


def _bandwidth(spec: DeviceSpec, level: str, cores: int) -> float:
    """Bytes/s `cores` cores read from `level` (`l2`, `l3`, `dram`): per-core figures times cores, capped at the chip's."""
    if level == "l2":
        return spec["l2_bandwidth_per_core"] * cores
    chip = spec[f"{level}_bandwidth"]
    per_core = spec.get(f"{level}_bandwidth_per_core")
    return min(chip, per_core * cores) if per_core else chip


def speedup(kernel: cpu.KernelOp, spec: DeviceSpec) -> float:
    """How many times faster than one core the kernel's tiles run on the cores it uses (load balance included)."""
    tiles = kernel.parallel_tiles.value.data
    used = min(kernel.threads.value.data, spec["cores"], tiles)
    return tiles / -(-tiles // used)


def micro_kernel_efficiency(kernel: cpu.KernelOp, spec: DeviceSpec) -> float:
    """Share of the FMA peak a GEMM's micro-kernel runs at: the ceiling, the blocks' padding, the k loop."""
    block = kernel.block() if kernel.packed_bytes.value.data else ()
    tiles, bounds = kernel.tile_sizes.get_values(), kernel.bounds.get_values()
    rank = len(kernel.loop_order.get_values())
    columns = min(tiles[rank - 1], bounds[rank - 1])
    if kernel.kind.data == "conv":
        return CONV_EFFICIENCY
    k, depth = (tiles[-1], bounds[-1]) if len(tiles) > rank else (1, 1)
    # Fixed costs in steps of k, added to the K steps: per k tile the accumulators' loads and
    # stores, per output tile its fill (so the time grows with every dim: K + 2 K/k + 80).
    fill = depth / (depth + MICRO_KERNEL_FILL_STEPS * -(-depth // k) + OUTPUT_TILE_FILL_K)
    if not block:
        # Vectorised along the output's columns: a last vector the columns do not fill is masked.
        # A GEMM's output tiles pay their fixed cost here too (attention's was measured without).
        lanes = kernel.vector_lanes.value.data
        lane_share = columns / (-(-columns // lanes) * lanes)
        return LOOP_MATRIX_EFFICIENCY * lane_share * (fill if kernel.kind.data == "gemm" else 1.0)
    mr, nr = block
    rows = min(tiles[rank - 2], bounds[rank - 2]) if rank >= 2 else 1
    padding = rows / (-(-rows // mr) * mr) * columns / (-(-columns // nr) * nr)
    return spec.get("gemm_efficiency", 1.0) * padding * fill


def _tile_iterations(kernel: cpu.KernelOp) -> int:
    bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
    return math.prod(-(-b // t) for b, t in zip(bounds, tiles))


def copy_bytes(kernel: cpu.KernelOp, spec: DeviceSpec) -> int:
    """L2 bytes of the copy phases the core waits for: tiles copied into their buffers and `b` packed,
    each read and written."""
    return 2 * kernel.read_bytes.value.data + 2 * kernel.packed_bytes.value.data * _tile_iterations(kernel)


def memory_bytes(kernel: cpu.KernelOp, spec: DeviceSpec) -> tuple[dict[str, int], str]:
    """Bytes moved per level (`l2` and `l3` or `dram`) and the name of the outer level (module docstring)."""
    read, write = kernel.read_bytes.value.data, kernel.write_bytes.value.data
    unique = min(read, sum(type_bytes(v.type) for v in kernel.ins))
    outer = "l3" if unique + write <= spec["l3_bytes"] else "dram"
    l2 = copy_bytes(kernel, spec)
    if kernel.block():
        mr, nr = kernel.block()
        l2 += kernel.matrix_flops.value.data * 2 // nr
        if kernel.l1_bytes.value.data > spec["l1d_bytes_per_core"] // 2:
            # The strip of b no longer stays in L1 beside a's rows: every k step of
            # every block re-reads nr floats of it for 2 mr nr FLOPs.
            l2 += kernel.matrix_flops.value.data * 2 // mr
    return {"l2": l2, outer: read + write}, outer


def kernel_cost(kernel: cpu.KernelOp, spec: DeviceSpec) -> KernelCost:
    flops, matrix = kernel.flops.value.data, kernel.matrix_flops.value.data
    parallel = speedup(kernel, spec)
    peak = core_peak(spec) * parallel
    matrix_s = matrix / (peak * micro_kernel_efficiency(kernel, spec)) if matrix else 0.0
    cycles = (CYCLES_PER_FLOP * (flops - matrix) + CYCLES_PER_TRANSCENDENTAL * kernel.transcendentals.value.data
              + CYCLES_PER_GATHERED_ELEMENT * kernel.gathered_elements.value.data)
    compute_s = matrix_s + cycles / (spec["clock_hz"] * parallel)
    moved, outer = memory_bytes(kernel, spec)
    cores = max(1, math.ceil(parallel))
    l2_bandwidth = _bandwidth(spec, "l2", cores)
    # The copy phases (tile loads into buffers, packing) run between the
    # micro-kernel calls, not under them; the re-reads of `a` and the
    # L3/DRAM streams overlap the FMAs (out-of-order loads, prefetchers).
    copy_s = copy_bytes(kernel, spec) / l2_bandwidth
    memory_s = max((moved["l2"] - copy_bytes(kernel, spec)) / l2_bandwidth, moved[outer] / _bandwidth(spec, outer, cores))
    threads = kernel.threads.value.data
    latency_s = CALL_LATENCY_S + (spec.get("parallel_region_latency_s", 0.0) if threads > 1 else 0.0)
    time_s = max(compute_s + copy_s, memory_s) + latency_s
    bound = max((compute_s, "compute"), (max(copy_s, memory_s), "memory"), (latency_s, "latency"))[1]
    return KernelCost(
        name=kernel.kernel_name.data,
        kind=kernel.kind.data,
        ops=[o.data for o in kernel.ops],
        flops=flops,
        bytes=moved,
        time_s=time_s,
        bound=bound,
        utilisation=flops / (time_s * core_peak(spec) * min(threads, spec["cores"])),
        extra={"threads": threads, "parallel_tiles": kernel.parallel_tiles.value.data,
               "micro_kernel": "x".join(map(str, kernel.block())) or "none",
               "compute_s": compute_s, "copy_s": copy_s, "memory_s": memory_s},
    )


def copy_cost(copy, spec: DeviceSpec, index: int) -> KernelCost:
    moved = 2 * type_bytes(copy.source.type)
    outer = "l3" if moved <= spec["l3_bytes"] else "dram"
    memory_s = moved / _bandwidth(spec, outer, 1)
    return KernelCost(
        name=f"relayout_{index}", kind="relayout", ops=["graph.relayout"], flops=0, bytes={outer: moved},
        time_s=memory_s + CALL_LATENCY_S, bound="memory" if memory_s > CALL_LATENCY_S else "latency",
        utilisation=0.0,
    )


def _link(spec: DeviceSpec) -> float:
    if "link_bandwidth" not in spec:
        raise SpecError(
            f"{spec.name}: moving buffers between CPUs needs 'link_bandwidth' (bytes/s) in the spec;"
            f" give it with --spec link_bandwidth=BYTES_PER_S, or compile for one device"
        )
    return spec["link_bandwidth"]


def estimate(module: ModuleOp, spec: DeviceSpec) -> Report:
    kernels = hardware_kernels(module)
    threads = max((k.threads.value.data for k in kernels), default=1)
    costs = [kernel_cost(k, spec) for k in kernels]
    costs += [copy_cost(c, spec, i) for i, c in enumerate(relayout_copies(module))]
    costs += [link_transfer_cost(t, _link(spec), i, "link_bandwidth") for i, t in enumerate(transfers(module))]
    costs += collective_costs(module, lambda: Interconnect(_link(spec), 0.0, 0.0, "link_bandwidth"))
    used = chips(module)
    return Report("cpu", spec.name, costs, used * core_peak(spec) * min(threads, spec["cores"]), chips=used)
