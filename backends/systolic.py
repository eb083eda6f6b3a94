"""
TPU cost model, per `systolic.program`: SCALE-Sim's stall-free cycles for
the matrix work, HBM traffic overlapped with it, and the vector unit.

For each program (all figures are attributes of the op or keys of the spec):

- matrix work: every GEMM of `gemms` (`[count, M, N, K]`; convs already in
  SCALE-Sim's view) is folded onto one `array_rows` x `array_cols` array in
  the program's `dataflow` (`dialects/hardware/systolic_math.py`): `folds` folds of
  `cycles_per_fold = base + T` cycles, T the extent streamed in time. The
  `count * folds` folds are independent jobs, run on the `num_arrays`
  arrays in waves; the streamed extent T may also be cut into `s` chunks
  (each chunk pays the fold's fill and drain again) when that balances the
  waves better, e.g. one fold on four arrays:

      compute_cycles = min over s in 1..min(num_arrays, T) of
                       ceil(count * folds * s / num_arrays) * (base + ceil(T / s))

  With one array the minimum is at s = 1, so compute_cycles is exactly
  `count` x SCALE-Sim's cycle count (its "Total Cycles" + 1). More arrays
  never take longer. Partial sums of a split reduction (K under `os`) are
  added by the vector unit and not costed. SCALE-Sim shifts each fold's
  stationary tile in (R cycles) before it streams; a TPU's MXU holds a
  second tile "for double-buffering (to hide the 256 cycles it takes to
  shift a tile in)" (Jouppi et al., ISCA 2017, sec. 2), so with the spec's
  `stationary_buffers = 2` only each array's first fold pays the shift:
  `waves * (cycles_per_fold - R) + R`. It matters where T is short (decode:
  one query row against a KV cache, T = 1, 383 cycles a fold, now 255).
  The MXUs compute in bf16 (f32 operands too: TPUs multiply in bfloat16 by
  default, https://cloud.google.com/tpu/docs/bfloat16); int8 (u8, and i4
  widened to it) runs at `round(peak_ops_int8 / peak_flops_bf16)` times
  the rate (2 on TPU v5e, 1 on v4, whose spec quotes one figure for both),
  which divides the cycles. The dtype is the one reaching the matmul
  (`operand_dtype`): a weight-only `x: bf16 @ dequantize(w: i4, s)` runs
  bf16 passes, though its DMAs move the stored i4 bytes; f8 (no MXU rate
  on these chips) runs as bf16.
- memory: `dma_in_bytes + dma_out_bytes` (the loop nest's loads and stores,
  re-reads included) at `hbm_bandwidth`. DMAs are double-buffered and
  overlap the core's work ("all TPU operations are pipelined and
  overlapped", JAX scaling book, https://jax-ml.github.io/scaling-book/tpus),
  so `stall_cycles = max(0, memory_cycles - core_cycles)`, where the core's
  cycles are the matrix cycles plus the vector unit's.
- vector unit: `vector_flops` (softmax, norms, elementwise, epilogues) at
  the spec's `vector_flops` FLOP/s.
- time = max(compute + vector, memory) + `launch_latency_s` (a fixed
  per-program cost, only when the spec gives one); the bound is the largest
  of the three terms (compute / memory / latency); utilisation = useful
  FLOPs / (time x the arrays' peak for the dtype, `array_peak`), where the
  useful FLOPs are `2 * count * M * N * K` per GEMM plus `vector_flops`
  (the op's `flops`, reported as the kernel's FLOPs, also counts the
  padding of edge tiles, which the arrays do not compute).
- bytes: `hbm` (the DMAs) and `vmem` (the DMAs landing in and leaving VMEM,
  plus the arrays' operand reads and result writes as SCALE-Sim counts them,
  in words of the operand's size).

Relayout copies of activations between programs move their buffer through
HBM twice (read and write) and are memory-bound; params are laid out once,
when loaded, and model inputs by the transfer that places them
(`cost.relayout_copies`). Collectives (`systolic.all_reduce`,
`systolic.all_gather`, `systolic.reduce_scatter`) run on a bidirectional ring along one axis of the ICI
torus, `ici_hop_latency_s` per step (`backends/cost.py` has the formulas).
"""

from __future__ import annotations

import math

from xdsl.dialects.builtin import ModuleOp

from strata.backends.cost import (
    Interconnect, KernelCost, Report, chips, collective_costs, hardware_kernels, link_transfer_cost, relayout_copies,
    transfers,
)
from strata.dialects.device import DeviceSpec, SpecError
from strata.dialects.hardware import systolic, systolic_math
from strata.dialects.hardware._kernel import matrix_operand_type
from strata.dialects.hardware.systolic_math import GemmSchedule, schedule_gemms
from strata.dialects.vocabulary import dominant_dtype, dtype_of, element_bytes, type_bytes

MATRIX_PEAK = {"i8": "peak_ops_int8", "ui8": "peak_ops_int8", "i4": "peak_ops_int8"}
"""The spec key of the MXU peak by operand type; every other type runs as bf16 passes."""


_bytes = type_bytes


def program_dtype(program: systolic.ProgramOp) -> str:
    """The operand type the arrays multiply (`operand_dtype`: the matmul's, after any fused dequantize)."""
    return program.operand_dtype()


def spec_peak(spec: DeviceSpec, dtype: str) -> float:
    """The spec's sourced matrix-unit peak (FLOP/s or OP/s) for operands of `dtype`."""
    key = MATRIX_PEAK.get(dtype)
    return spec[key] if key and key in spec else spec["peak_flops_bf16"]


def _rate(spec: DeviceSpec, dtype: str) -> int:
    """Array operations per cycle relative to bf16 (2 for int8 on TPU v5e, else 1)."""
    return max(1, round(spec_peak(spec, dtype) / spec["peak_flops_bf16"]))


def array_peak(spec: DeviceSpec, dtype: str) -> float:
    """
    Peak of the arrays the model schedules on: `num_arrays x rows x cols x 2 x clock x rate`.

    Equals the spec's sourced `peak_flops_bf16` within 0.2% on the shipped
    devices, and follows `--spec` what-ifs (`num_arrays=1`), so utilisation
    is measured against the machine that was costed.
    """
    return (spec["num_arrays"] * spec["array_rows"] * spec["array_cols"] * 2.0 * float(spec["clock_hz"])
            * _rate(spec, dtype))


def _vmem_words(schedule: GemmSchedule) -> int:
    s, mp = schedule, schedule.mapping
    sram = systolic_math.sram_accesses(s.m, s.n, s.k, mp.rows, mp.cols, mp.dataflow)
    return schedule.count * (sram.ifmap_reads + sram.filter_reads + sram.ofmap_writes)


def _latency(spec: DeviceSpec) -> float:
    return float(spec.get("launch_latency_s", 0.0))


def _vector_throughput(spec: DeviceSpec, program: systolic.ProgramOp) -> float:
    if "vector_flops" not in spec:
        raise SpecError(
            f"device spec {spec.name!r} has no 'vector_flops' (the vector unit's FLOP/s), which "
            f"program '{program.kernel_name.data}' needs for its {program.vector_flops.value.data} vector FLOPs"
        )
    return float(spec["vector_flops"])


def program_cost(program: systolic.ProgramOp, spec: DeviceSpec) -> KernelCost:
    clock = float(spec["clock_hz"])
    dataflow = program.dataflow.data
    dtype = program_dtype(program)
    # The arrays' operand tiles in VMEM hold the multiplied dtype (a fused
    # dequantize widens i4 there); whole bytes, so `vmem` stays an integer.
    element_type = matrix_operand_type(program.body)
    if element_type is None:
        element_type = program.ins[0].type.element_type if program.ins else None
    width = math.ceil(element_bytes(element_type)) if element_type is not None else 4
    schedules = schedule_gemms(program.gemm_list(), spec, dataflow)
    rate = _rate(spec, dtype)
    compute_cycles = sum(-(-s.cycles // rate) for s in schedules)

    vector_flops = program.vector_flops.value.data
    vector_s = vector_flops / _vector_throughput(spec, program) if vector_flops else 0.0
    vector_cycles = math.ceil(vector_s * clock)
    compute_s = compute_cycles / clock
    core_s = compute_s + vector_s

    dma = program.dma_in_bytes.value.data + program.dma_out_bytes.value.data
    memory_s = dma / spec["hbm_bandwidth"]
    memory_cycles = math.ceil(memory_s * clock)
    stall_cycles = max(0, memory_cycles - compute_cycles - vector_cycles)

    latency_s = _latency(spec)
    time_s = max(core_s, memory_s) + latency_s
    bound = max((core_s, "compute"), (memory_s, "memory"), (latency_s, "latency"))[1]
    flops = program.flops.value.data
    useful = min(flops, 2 * sum(s.count * s.m * s.n * s.k for s in schedules) + vector_flops)
    peak = array_peak(spec, dtype if schedules else "bf16")
    vmem = dma + width * sum(_vmem_words(s) for s in schedules)
    return KernelCost(
        name=program.kernel_name.data,
        kind=program.kind.data,
        ops=[o.data for o in program.ops],
        flops=flops,
        bytes={"hbm": dma, "vmem": vmem},
        time_s=time_s,
        bound=bound,
        utilisation=useful / (time_s * peak) if time_s > 0 else 0.0,
        extra={
            "dataflow": dataflow,
            "compute_cycles": compute_cycles,
            "stall_cycles": stall_cycles,
            "vector_cycles": vector_cycles,
            "memory_cycles": memory_cycles,
            "folds": sum(s.count * s.mapping.folds for s in schedules),
            "single_array_cycles": sum(s.single_array_cycles for s in schedules),
            "dtype": dtype,
        },
    )


def copy_cost(copy, spec: DeviceSpec, index: int) -> KernelCost:
    moved = 2 * _bytes(copy.source.type)
    memory_s = moved / spec["hbm_bandwidth"]
    latency_s = _latency(spec)
    memory_cycles = math.ceil(memory_s * float(spec["clock_hz"]))
    return KernelCost(
        name=f"relayout_{index}", kind="relayout", ops=["graph.relayout"], flops=0, bytes={"hbm": moved},
        time_s=memory_s + latency_s, bound="memory" if memory_s >= latency_s else "latency", utilisation=0.0,
        extra={"dataflow": "none", "compute_cycles": 0, "stall_cycles": 0, "vector_cycles": 0,
               "memory_cycles": memory_cycles, "folds": 0, "single_array_cycles": 0,
               "dtype": dtype_of(copy.source.type.element_type)},
    )


def estimate(module: ModuleOp, spec: DeviceSpec) -> Report:
    programs = [k for k in hardware_kernels(module) if isinstance(k, systolic.ProgramOp)]
    costs = [program_cost(p, spec) for p in programs]
    costs += [copy_cost(c, spec, i) for i, c in enumerate(relayout_copies(module))]
    moves = transfers(module)
    costs += [link_transfer_cost(t, link_bandwidth(spec), i, "one ICI link") for i, t in enumerate(moves)]
    costs += collective_costs(module, lambda: interconnect(spec))
    dtype = dominant_dtype(((p.operand_dtype(), p.figure("matrix_flops")) for p in programs), "bf16")
    used = chips(module)
    return Report("tpu", spec.name, costs, used * array_peak(spec, dtype), chips=used)


def link_bandwidth(spec: DeviceSpec) -> float:
    """
    One direction of one ICI link between neighbouring chips:
    `ici_link_bandwidth`, else the bidirectional `ici_bandwidth` over
    `ici_ports` ports, halved.
    """
    if "ici_link_bandwidth" in spec:
        return spec["ici_link_bandwidth"]
    if "ici_bandwidth" in spec and "ici_ports" in spec:
        return spec["ici_bandwidth"] / spec["ici_ports"] / 2
    raise SpecError(f"{spec.name}: moving buffers between TPU chips needs 'ici_link_bandwidth' in the spec")


def interconnect(spec: DeviceSpec) -> Interconnect:
    """
    A bidirectional ring along one axis of the ICI torus (JAX scaling book,
    "How to think about TPUs": a collective on a bidirectional ring moves at
    both directions of a link at once), one hop per algorithm step.
    """
    if "ici_hop_latency_s" not in spec:
        raise SpecError(f"{spec.name}: collectives between TPU chips need 'ici_hop_latency_s' in the spec")
    return Interconnect(
        2 * link_bandwidth(spec), spec["ici_hop_latency_s"], _latency(spec),
        "2 x one ICI link (bidirectional ring)",
    )
