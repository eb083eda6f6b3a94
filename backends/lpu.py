"""
LPU cost model: the static schedule of `tsp.program`s and `tsp.transfer`s
on Groq-style tensor streaming processors (GroqChip1 / TSP).

The TSP has no caches, arbiters or dynamic scheduling: the compiler places
every instruction at a fixed cycle (Abts et al., ISCA 2020 and 2022), so an
estimate is the length of a schedule, and it is deterministic. This model
builds that schedule at the granularity of programs, as a single stream
(the latency of one inference): every program and every transfer in IR
order, one after the other, each starting when the previous one ends. The
total time is their sum; each entry's `extra` carries its `chip`,
`start_cycle` (its position in the schedule) and `cycles`.

All figures are attributes of the IR (`gemms`, `flops`, `matrix_flops`,
`stream_bytes`, `weight_bytes`, `units`, `shards`, buffer types) or keys of
the spec (`backends/specs/groq-lpu.toml`, each with its source; the ones
marked `[derived]` there are computed from cited figures). Per program,
with `clock = clock_hz`:

- **MXM** (`mxm_planes` planes of `mxm_rows` x `mxm_cols` = R x C): each GEMM
  `[count, M, N, K]` is weight-stationary, as on the chip: the weights are
  installed block by block, `blocks = count * ceil(K/R) * ceil(N/C)` (the
  folds of SCALE-Sim's `ws` dataflow, `systolic_math.fold_counts`), and the
  M activation vectors stream through each installed block. Blocks run on
  the planes in waves of `mxm_planes`; a wave installs its blocks over the
  weight streams, then streams its M vectors:

      install(b) = ceil(b * R * C * e / (mxm_install_bandwidth / clock))
      wave(b)    = install(b) + M * r
      mxm_cycles = (blocks // planes) * wave(planes) + short(blocks % planes)   [0 if no remainder]
      short(b)   = min over c in 1..planes // b of install(b * c) + ceil(M / c) * r

  A short last wave (fewer blocks than planes, as in most of a CNN's
  convolutions: ResNet-50's 1x1 convs at 56x56 have one 64x64 block) would
  leave planes idle; the static schedule installs its blocks on `c` planes
  each and splits the M vectors between the copies (each plane reads its
  own activation stream), when the shorter stream pays for the extra
  installs. A decode step's GEMMs (M = 1) never gain from it.

  with `e` the bytes of the dtype the matmul multiplies (`operand_dtype`:
  2 for a weight-only `x: bf16 @ dequantize(w: i4, s)`, whose weights are
  widened before they are installed) and `r` the cycles one activation
  vector takes through a plane: 1 for int8 (and i4, widened to it), and
  `round(peak_ops_int8 / peak_flops_fp16)` = 4 for fp16/bf16, so that the
  planes' steady-state
  rate (4 x 320 x 320 x 2 / r FLOP per cycle = 184 TFLOP/s at 900 MHz) is
  the sourced FP16 peak (188 TFLOP/s) and INT8 gives 737 of the sourced 750
  TOPS. The block is installed whole (an edge block costs a full one, as
  in SCALE-Sim). Unlike SCALE-Sim's systolic `ws` formula (`2R + C + M - 2`
  per fold), the install is limited by the stream bandwidth into the MXMs,
  not one weight row per cycle, and there is no per-block `R + C - 2` skew:
  the MXM is a "320x320 fused dot product" unit (TechPowerUp / Groq LPU
  brief), not a systolic pipeline, and the static schedule issues blocks
  back to back, so the pipeline fills once per program (below).
  **f32** has no published MXM rate (Groq publishes INT8 and FP16 only), so
  an f32 GEMM is costed as fp16 passes (r = 4) over 4-byte data: twice the
  fp16 install bytes, and its stream bytes as the IR gives them (4 bytes
  per element). **f8** has none either: it runs as fp16 (e = 2, r = 4).
- **VXM**: `flops - matrix_flops` (softmax, norms, elementwise, epilogues)
  at `vector_alus` operations per cycle.
- **SXM** (only for programs whose `units` include `sxm`: transposes,
  reshapes, slices, concats): `stream_bytes` moved through the switch at
  `stream_bandwidth` (the streams of one direction: 32 x 320-byte vectors
  per cycle).
- **MEM**: the SRAM traffic, `stream_bytes` plus the weights installed into
  the MXM (`count * K * N` weights per GEMM at their stored width, half a
  byte for a weight-only GEMM's i4, for programs with resident
  weights; a program whose stationary operand is an activation already
  counts it in `stream_bytes`), at `sram_bandwidth`.
- The units run concurrently on pipelined streams, so

      cycles = max(mxm, vxm, sxm, mem) + pipeline_fill_cycles

  (the fill: the 20-superlane instruction skew plus one cycle per unit
  crossed, `[derived]` in the spec).
- **Shards**: a program with `shards` > 1 splits its work over that many
  chips (blocks, vector work and bytes divide by `shards`, rounded up), and
  its output is gathered onto `chip`: every other shard sends its slice
  over its own direct link at once, `chip_to_chip_latency_s + (out_bytes /
  shards) / (chip_to_chip_pair_links * chip_to_chip_link_bandwidth)`.

`tsp.transfer` moves its buffer over the links between two chips: `hops *
chip_to_chip_latency_s + bytes / (chip_to_chip_pair_links *
chip_to_chip_link_bandwidth)`, where the links used are the direct links
between the two chips (one, Linley Nov 2020: a card exposes three links,
enough for fully connected four-card clusters) and `hops` is 1 inside a
node of `chips_per_node` chips (numbered consecutively) and 3 between
nodes (the minimal route of a Dragonfly: local, global, local). Transfers
are separate entries with bound `transfer`. Collectives (`tsp.all_reduce`,
`tsp.all_gather`, `tsp.reduce_scatter`, from `shard`) run on a bidirectional ring of direct links
(`backends/cost.py` has the formulas): each step one hop inside a node, or
the Dragonfly's three when the group spans nodes.

Relayout copies of activations move their buffer through the SXM (read
and write: twice its bytes at `stream_bandwidth`) on the chip holding
their source. Relayout copies of parameters are not costed: weights are
laid out once, when they are loaded into SRAM, not per inference.

bound: `compute` when the MXM or VXM term is the largest, `memory` when MEM
or SXM streaming is, `latency` when the fill is larger than every unit's
cycles, `transfer` for transfers. utilisation = useful FLOPs / (time x
shards x the dtype's peak), the useful FLOPs being `2 * count * M * N * K`
per GEMM plus the vector work (the op's `flops` also counts edge-tile
padding). Report.peak_flops = chips x the model's dominant dtype's peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue

from strata.dialects.hardware import systolic_math
from strata.backends.cost import Interconnect, KernelCost, Report, chips, collective_cost, model_function
from strata.dialects.device import DeviceSpec, SpecError
from strata.dialects import loop
from strata.dialects.hardware import tsp
from strata.dialects.hardware._kernel import matrix_operand_type, matrix_operand_widths
from strata.dialects.vocabulary import dominant_dtype, dtype_of, element_bytes, type_bytes

INT8_TYPES = ("i8", "ui8", "si8", "i4")
"""Operand dtypes the MXM multiplies at its INT8 rate (i4 operands widened to int8: Groq publishes no int4 rate)."""
F8_TYPES = ("f8E4M3FN", "f8E5M2")
"""No fp8 MXM rate is published: f8 operands run as fp16 (every f8 value is exact in fp16)."""
DRAGONFLY_HOPS = 3
"""Hops of a minimal route between two nodes of a Dragonfly (local, global, local;
Kim, Dally, Scott, Abts, "Technology-Driven, Highly-Scalable Dragonfly Topology", ISCA 2008)."""


# --------------------------------------------------------------------------- spec figures


def _need(spec: DeviceSpec, key: str, why: str) -> Any:
    if key not in spec:
        raise SpecError(f"device spec {spec.name!r} has no {key!r}, which the LPU cost model needs ({why})")
    return spec[key]


def clock(spec: DeviceSpec) -> float:
    return float(spec["clock_hz"])


def stream_bandwidth(spec: DeviceSpec) -> float:
    """Bytes/s through the streams of one direction (`[derived]` in the shipped spec)."""
    if "stream_bandwidth" in spec:
        return float(spec["stream_bandwidth"])
    # The shipped spec's formula: 512 B per superlane per cycle (TechSpot) = 32 bytes per lane.
    return 32.0 * spec["vector_lanes"] * clock(spec)


def install_bandwidth(spec: DeviceSpec) -> float:
    """Bytes/s of weights into the MXMs (`[derived]`: 2 x stream_bandwidth, one MXM per hemisphere)."""
    return float(spec.get("mxm_install_bandwidth", 2.0 * stream_bandwidth(spec)))


def fill_cycles(spec: DeviceSpec) -> int:
    """Pipeline fill of one program (`[derived]`: superlanes + the 7 units of a superlane)."""
    if "pipeline_fill_cycles" in spec:
        return int(spec["pipeline_fill_cycles"])
    return int(spec.get("superlanes", spec["vector_lanes"] // 16)) + 7


def hop_latency(spec: DeviceSpec) -> float:
    if "chip_to_chip_latency_s" in spec:
        return float(spec["chip_to_chip_latency_s"])
    return float(_need(spec, "max_system_latency_s", "a per-hop latency")) / DRAGONFLY_HOPS


def link_bandwidth(spec: DeviceSpec) -> float:
    """Bytes/s between two chips: their direct links x one link's bandwidth per direction."""
    if "chip_to_chip_link_bandwidth" in spec:
        per_link = float(spec["chip_to_chip_link_bandwidth"])
    else:
        per_link = float(spec["chip_to_chip_bandwidth"]) / int(spec.get("chip_to_chip_links", 1))
    return int(spec.get("chip_to_chip_pair_links", 1)) * per_link


def planes(spec: DeviceSpec) -> int:
    if "mxm_planes" in spec:
        return int(spec["mxm_planes"])
    return max(1, int(spec.get("mxm_macs", 0)) // (spec["mxm_rows"] * spec["mxm_cols"]))


def dtype_peak(spec: DeviceSpec, dtype: str) -> float:
    """The sourced MXM peak (OP/s) for operands of `dtype`: INT8 for 8-bit integers, else FP16."""
    return float(spec["peak_ops_int8"]) if dtype in INT8_TYPES else float(spec["peak_flops_fp16"])


def vector_cycles_per_pass(spec: DeviceSpec, dtype: str) -> int:
    """Cycles one activation vector takes through a plane: 1 for int8, int8 peak / fp16 peak (4) otherwise."""
    if dtype in INT8_TYPES:
        return 1
    return max(1, round(float(spec["peak_ops_int8"]) / float(spec["peak_flops_fp16"])))


# --------------------------------------------------------------------------- MXM


_bytes = type_bytes


@dataclass(frozen=True)
class MxmSchedule:
    """One `[count, M, N, K]` GEMM (or its share on one shard) on the MXM planes."""

    count: int
    m: int
    n: int
    k: int
    blocks: int
    """Weight blocks installed: `count * ceil(K/R) * ceil(N/C)` (divided over the shards)."""
    planes: int
    install_cycles: int
    """Cycles spent installing weights (all waves)."""
    stream_cycles: int
    """Cycles spent streaming activation vectors (all waves)."""

    @property
    def cycles(self) -> int:
        return self.install_cycles + self.stream_cycles

    @property
    def waves(self) -> int:
        return -(-self.blocks // self.planes)


def mxm_schedule(count: int, m: int, n: int, k: int, spec: DeviceSpec, dtype: str,
                 element_bytes: int, shards: int = 1) -> MxmSchedule:
    """
    The weight-stationary schedule of one GEMM on `mxm_planes` R x C planes (see the module doc).

    `install(b) = ceil(b * R * C * e / (mxm_install_bandwidth / clock_hz))`,
    `mxm = (blocks // planes) * (install(planes) + M * r) + short(rest)`, a short
    wave's blocks copied onto the idle planes when that is faster.
    """
    rows, cols = spec["mxm_rows"], spec["mxm_cols"]
    row_folds, col_folds = systolic_math.fold_counts(m, n, k, rows, cols, "ws")
    blocks = -(-count * row_folds * col_folds // shards)
    p = planes(spec)
    per_cycle = install_bandwidth(spec) / clock(spec)
    block_bytes = rows * cols * element_bytes
    r = vector_cycles_per_pass(spec, dtype)

    def install(b: int) -> int:
        return math.ceil(b * block_bytes / per_cycle) if b else 0

    full, rest = divmod(blocks, p)
    install_cycles, stream_cycles = full * install(p), full * m * r
    if rest:
        # A short wave leaves planes idle: the schedule may install its blocks
        # `copies` times over them and split the M vectors between the copies,
        # when the shorter stream pays for the extra installs.
        copies = min(range(1, p // rest + 1), key=lambda c: (install(rest * c) + -(-m // c) * r, c))
        install_cycles += install(rest * copies)
        stream_cycles += -(-m // copies) * r
    return MxmSchedule(count, m, n, k, blocks, p, install_cycles, stream_cycles)


# --------------------------------------------------------------------------- programs


def program_dtype(program: tsp.ProgramOp) -> str:
    """The operand type the MXM multiplies (the first input's), else the result's."""
    return program.operand_dtype()


def _element(program: tsp.ProgramOp) -> int:
    """
    Bytes of one weight installed into the MXM: the width of the dtype the
    matmul multiplies (`operand_dtype`; a weight-only GEMM's i4 weights are
    widened on the way), f8 as the fp16 it runs as (the MXM has no fp8).
    """
    element_type = matrix_operand_type(program.body)
    if element_type is None:
        values = list(program.ins) or list(program.outs)
        element_type = values[0].type.element_type
    if dtype_of(element_type) in F8_TYPES:
        return 2
    return math.ceil(element_bytes(element_type))


def _stored_weight_bytes(program: tsp.ProgramOp) -> int | float:
    """Bytes per weight the program reads from SRAM: the stored width of the matmul's rhs (0.5 for i4)."""
    widths = matrix_operand_widths(program.body)
    return widths[1] if widths else _element(program)


def _figure(program: tsp.ProgramOp, name: str) -> int:
    return getattr(program, name).value.data


@dataclass(frozen=True)
class ProgramCycles:
    mxm: int
    install: int
    vxm: int
    sxm: int
    mem: int
    fill: int
    gather_s: float
    sram_bytes: int
    gather_bytes: int
    schedules: tuple[MxmSchedule, ...]

    @property
    def units(self) -> int:
        return max(self.mxm, self.vxm, self.sxm, self.mem)

    @property
    def cycles(self) -> int:
        """On-chip cycles (the gather over the links is added in seconds)."""
        return self.units + self.fill

    @property
    def bound(self) -> str:
        if self.fill > self.units:
            return "latency"
        return max((self.mxm, "compute"), (self.vxm, "compute"), (self.mem, "memory"), (self.sxm, "memory"),
                   key=lambda t: t[0])[1]


def program_cycles(program: tsp.ProgramOp, spec: DeviceSpec) -> ProgramCycles:
    shards = _figure(program, "shards")
    dtype = program_dtype(program)
    # f32 is not native on the MXM: costed as fp16 passes over 4-byte data (module doc).
    element = _element(program)
    schedules = tuple(mxm_schedule(c, m, n, k, spec, dtype, element, shards) for c, m, n, k in program.gemm_list())
    mxm = sum(s.cycles for s in schedules)
    install = sum(s.install_cycles for s in schedules)

    vector_flops = program.figure("flops") - program.figure("matrix_flops")
    vxm = math.ceil(vector_flops / shards / _need(spec, "vector_alus", "the VXM's operations per cycle"))

    stream = _figure(program, "stream_bytes")
    units = {u.data for u in program.units}
    sxm = math.ceil(stream / shards / (stream_bandwidth(spec) / clock(spec))) if "sxm" in units else 0

    stored = _stored_weight_bytes(program)
    installed = (math.ceil(sum(c * n * k * stored for c, _, n, k in program.gemm_list()))
                 if _figure(program, "weight_bytes") else 0)
    sram_bytes = stream + installed
    mem = math.ceil(sram_bytes / shards / (float(spec["sram_bandwidth"]) / clock(spec)))

    gather_bytes, gather_s = 0, 0.0
    if shards > 1:
        out_bytes = sum(_bytes(v.type) for v in program.outs)
        gather_bytes = out_bytes * (shards - 1) // shards
        gather_s = hop_latency(spec) + (out_bytes / shards) / link_bandwidth(spec)
    return ProgramCycles(mxm, install, vxm, sxm, mem, fill_cycles(spec), gather_s, sram_bytes, gather_bytes,
                         schedules)


def _useful_flops(program: tsp.ProgramOp) -> int:
    vector = program.figure("flops") - program.figure("matrix_flops")
    gemm = 2 * sum(c * m * n * k for c, m, n, k in program.gemm_list())
    return min(program.figure("flops"), gemm + vector)


def program_cost(program: tsp.ProgramOp, spec: DeviceSpec, start_cycle: int) -> KernelCost:
    pc = program_cycles(program, spec)
    shards = _figure(program, "shards")
    hz = clock(spec)
    time_s = pc.cycles / hz + pc.gather_s
    cycles = math.ceil(time_s * hz - 1e-9)
    bound = pc.bound
    if pc.gather_s > pc.cycles / hz:
        bound = "transfer"
    dtype = program_dtype(program)
    peak = dtype_peak(spec, dtype) * shards
    levels = {"sram": pc.sram_bytes}
    if pc.gather_bytes:
        levels["c2c"] = pc.gather_bytes
    return KernelCost(
        name=program.kernel_name.data,
        kind=program.kind.data,
        ops=[o.data for o in program.ops],
        flops=program.figure("flops"),
        bytes=levels,
        time_s=time_s,
        bound=bound,
        utilisation=_useful_flops(program) / (time_s * peak) if time_s > 0 else 0.0,
        extra={
            "chip": _figure(program, "chip"),
            "shards": shards,
            "slot": _figure(program, "slot"),
            "start_cycle": start_cycle,
            "cycles": cycles,
            "mxm_cycles": pc.mxm,
            "install_cycles": pc.install,
            "vxm_cycles": pc.vxm,
            "sxm_cycles": pc.sxm,
            "mem_cycles": pc.mem,
            "fill_cycles": pc.fill,
            "blocks": sum(s.blocks for s in pc.schedules),
            "dtype": dtype,
        },
    )


# --------------------------------------------------------------------------- transfers and copies


def hops(spec: DeviceSpec, from_chip: int, to_chip: int) -> int:
    """1 between chips of one node (`chips_per_node`, numbered consecutively), else a Dragonfly's 3."""
    per_node = int(spec.get("chips_per_node", 1))
    return 1 if from_chip // per_node == to_chip // per_node else DRAGONFLY_HOPS


def transfer_time(spec: DeviceSpec, size: int, from_chip: int, to_chip: int) -> float:
    return hops(spec, from_chip, to_chip) * hop_latency(spec) + size / link_bandwidth(spec)


def transfer_cost(op: tsp.TransferOp, spec: DeviceSpec, index: int, start_cycle: int) -> KernelCost:
    size = _bytes(op.source.type)
    src, dst = op.from_chip.value.data, op.to_chip.value.data
    time_s = transfer_time(spec, size, src, dst)
    return KernelCost(
        name=f"transfer_{index}", kind="transfer", ops=["tsp.transfer"], flops=0, bytes={"c2c": size},
        time_s=time_s, bound="transfer", utilisation=0.0,
        extra={"chip": dst, "from_chip": src, "to_chip": dst, "hops": hops(spec, src, dst),
               "start_cycle": start_cycle, "cycles": math.ceil(time_s * clock(spec) - 1e-9),
               "dtype": str(op.source.type.element_type)},
    )


def interconnect(spec: DeviceSpec, devices: int) -> Interconnect:
    """A bidirectional ring of direct links over `devices` chips: one hop per step in a node, three across nodes."""
    per_node = int(spec.get("chips_per_node", 1))
    steps = 1 if devices <= per_node else DRAGONFLY_HOPS
    return Interconnect(
        2 * link_bandwidth(spec), steps * hop_latency(spec), 0.0, "2 x the direct links between two chips",
    )


def copy_cost(op: loop.CopyOp, chip: int, spec: DeviceSpec, index: int, start_cycle: int) -> KernelCost:
    moved = 2 * _bytes(op.source.type)
    sxm = math.ceil(moved / (stream_bandwidth(spec) / clock(spec)))
    fill = fill_cycles(spec)
    cycles = sxm + fill
    return KernelCost(
        name=f"relayout_{index}", kind="relayout", ops=["graph.relayout"], flops=0, bytes={"sram": moved},
        time_s=cycles / clock(spec), bound="memory" if sxm >= fill else "latency", utilisation=0.0,
        extra={"chip": chip, "start_cycle": start_cycle, "cycles": cycles, "sxm_cycles": sxm,
               "fill_cycles": fill, "dtype": str(op.source.type.element_type)},
    )


# --------------------------------------------------------------------------- the schedule


def schedule(module: ModuleOp, spec: DeviceSpec) -> list[KernelCost]:
    """Every program, transfer and activation relayout in IR order, each starting when the previous ends."""
    fn = model_function(module)
    params = set(loop.param_buffers(fn))
    home: dict[SSAValue, int] = {}
    costs: list[KernelCost] = []
    start = 0
    transfers = copies = collectives = 0
    for op in fn.body.block.ops:
        cost: KernelCost | None = None
        if isinstance(op, tsp.ProgramOp):
            cost = program_cost(op, spec, start)
            for out in op.outs:
                home[out] = _figure(op, "chip")
        elif isinstance(op, tsp.TransferOp):
            cost = transfer_cost(op, spec, transfers, start)
            transfers += 1
            home[op.dest] = op.to_chip.value.data
        elif isinstance(op, loop.ViewOp):
            if op.source in home:
                home[op.result] = home[op.source]
        elif isinstance(op, loop.CollectiveBase):
            home[op.dest] = home.get(op.source, 0)
            cost = collective_cost(op, interconnect(spec, op.devices.value.data), collectives)
            cost.extra |= {"chip": home[op.dest], "start_cycle": start,
                           "cycles": math.ceil(cost.time_s * clock(spec) - 1e-9)}
            collectives += 1
        elif isinstance(op, loop.CopyOp):
            if op.source in home:
                home[op.dest] = home[op.source]
            if op.source not in params:
                cost = copy_cost(op, home.get(op.source, 0), spec, copies, start)
                copies += 1
        if cost is not None:
            costs.append(cost)
            start += cost.extra["cycles"]
    return costs


def _dominant_dtype(module: ModuleOp) -> str:
    programs = [op for op in module.walk() if isinstance(op, tsp.ProgramOp)]
    return dominant_dtype(((p.operand_dtype(), p.figure("matrix_flops")) for p in programs), "f16")


def estimate(module: ModuleOp, spec: DeviceSpec) -> Report:
    costs = schedule(module, spec)
    used = chips(module)
    return Report("lpu", spec.name, costs, used * dtype_peak(spec, _dominant_dtype(module)), chips=used)
