"""
What every cost model returns, and the entry point that picks one by target.

A cost model is a pure function `(hardware-stage module, DeviceSpec) ->
Report`: one `KernelCost` per hardware kernel (and per relayout copy between
kernels, which moves real bytes), plus totals. Models read only the IR and
the spec; every figure they use is an attribute of a hardware op, a type in
the IR, or a key of the spec.

Units: seconds, FLOPs, bytes. `bound` is `compute`, `memory`, `latency` or
`transfer` (moves between devices: pipeline transfers and collectives);
`utilisation` is achieved FLOP/s over the device's peak for the kernel's
dtype.

Collectives (`*.all_reduce`, `*.all_gather`, `*.reduce_scatter`, written
by `shard`) are costed
here for every target with the latency-bandwidth (alpha-beta) model of the
standard algorithms (Thakur, Rabenseifner and Gropp, "Optimization of
Collective Communication Operations in MPICH", IJHPCA 2005; NCCL's ring and
double binary tree): over `p` devices, with `alpha` the latency of one step
and `B` the bandwidth each device sends at (nccl-tests' "bus bandwidth"),
an all-reduce of `n` bytes takes `2 (p - 1) alpha + 2 (p - 1) / p * n / B`
on a ring or `2 ceil(log2 p) alpha + 2 n / B` on a pipelined tree, and an
all-gather into `n` bytes `(p - 1) alpha + (p - 1) / p * n / B` on a ring,
as is a reduce-scatter of `n` bytes (the whole tensor before the scatter;
the ring all-reduce is a reduce-scatter then an all-gather, Thakur et al.
section 4, Patarasuk and Yuan's bandwidth-optimal ring). Over a switch
(NVSwitch) one-shot algorithms apply too, as the custom all-reduces of
TensorRT-LLM and PyTorch use for small messages: `2 alpha + (p - 1) n / B`
(every device reads its peers' buffers, then a barrier), and `2 alpha +
(p - 1) / p * n / B` for an all-gather and for a reduce-scatter (every
device reads its own block from each of its p - 1 peers and sums them).
The cheapest is taken.
Each model says what alpha and B are on its machine (`Interconnect`).

A sharded program (`strata.tp`, `strata.dp`) is the program of one device;
every device of the mesh runs it at once, so the time is one device's and
the issued FLOPs and peak are the mesh's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp

from strata.backends.memory import DeviceMemory, kernel_placement, memory_per_device
from strata.dialects.device import DeviceSpec
from strata.dialects import loop
from strata.dialects.graph import INPUT_ATTR
from strata.dialects.hardware import HardwareKernelOp, TransferOp
from strata.dialects.hardware.cpu import storage_bytes
from strata.dialects.vocabulary import BATCH_ATTR, CHIPS_ATTR, MODEL_FLOPS_ATTR, mesh_sizes, type_bytes

COST_MODEL_VERSION = "37"
"""Bumped whenever any model's formulas change (keys the tuning database)."""

BOUNDS = ("compute", "memory", "latency", "transfer")
BATCH_SOURCE = "the `let` constant named like a batch (B, batch) that is every input's leading dim"
MODELS = {"gpu": "strata.backends.gpu", "tpu": "strata.backends.systolic", "lpu": "strata.backends.lpu",
          "cpu": "strata.backends.cpu"}


@dataclass
class KernelCost:
    name: str
    kind: str
    ops: list[str]
    flops: int
    bytes: dict[str, int]
    """Bytes moved per memory level, e.g. {"hbm": ..., "onchip": ...}."""
    time_s: float
    bound: str
    utilisation: float
    extra: dict[str, Any] = field(default_factory=dict)
    """Target-specific figures (systolic: compute_cycles, stall_cycles, dataflow; lpu: chip, cycles)."""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **extra}


@dataclass
class Report:
    target: str
    device: str
    kernels: list[KernelCost]
    peak_flops: float
    """The device's peak FLOP/s for the model's dominant dtype."""
    chips: int = 1
    """Pipeline stages (`place-chips`)."""
    mesh: int = 1
    """Devices that run each stage's program side by side (`shard`: tp x dp)."""
    model_flops: int | None = None
    """The graph's FLOPs, before padding to tiles (the module's `strata.model_flops`; None: not recorded)."""
    batch: int | None = None
    """Samples per run, when the frontend could tell (`strata.batch`)."""
    memory: list[DeviceMemory] = field(default_factory=list)
    """What each device holds (`backends/memory.py`)."""
    memory_capacity_bytes: int = 0
    at_load: list[KernelCost] = field(default_factory=list)
    """Work run once, when the params are loaded, not on every run (the cpu's `loop.load_plan`): not in `time_s`."""

    @property
    def time_s(self) -> float:
        return sum(k.time_s for k in self.kernels)

    @property
    def flops(self) -> int:
        return sum(k.flops for k in self.kernels)

    def total(self) -> dict[str, Any]:
        """
        Totals: `flops` are the FLOPs the kernels issue (edge tiles padded),
        `model_flops` the graph's; achieved FLOP/s and utilisation count the
        model's, so padding never looks like useful work. `samples_per_s` is
        given when the batch is known (`batch_source` says how).
        `load_time_s` is the work done once, at load (`at_load`), outside
        `time_s`.
        """
        time_s = self.time_s
        issued = self.flops * self.mesh
        model_flops = self.model_flops if self.model_flops is not None else issued
        achieved = model_flops / time_s if time_s > 0 else 0.0
        per_device = [m.total_bytes for m in self.memory]
        return {
            "time_s": time_s,
            "flops": issued,
            "model_flops": model_flops,
            "issued_flops": issued,
            "bytes": sum(sum(k.bytes.values()) for k in self.kernels),
            "throughput_per_s": 1.0 / time_s if time_s > 0 else 0.0,
            "batch": self.batch,
            "batch_source": BATCH_SOURCE if self.batch is not None else None,
            "samples_per_s": self.batch / time_s if self.batch is not None and time_s > 0 else None,
            "achieved_flops_per_s": achieved,
            "peak_flops_per_s": self.peak_flops,
            "utilisation": achieved / self.peak_flops if self.peak_flops else 0.0,
            "chips": self.chips,
            "devices": max(self.chips, len(self.memory)) * self.mesh,
            "memory_per_device_bytes": max(per_device, default=0),
            "memory_capacity_bytes": self.memory_capacity_bytes,
            "load_time_s": sum(k.time_s for k in self.at_load),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "device": self.device,
            "cost_model_version": COST_MODEL_VERSION,
            "kernels": [k.as_json() for k in self.kernels],
            "at_load": [k.as_json() for k in self.at_load],
            "total": self.total(),
        }


def model_function(module: ModuleOp) -> func.FuncOp:
    return next(op for op in module.walk() if isinstance(op, func.FuncOp) and not op.is_declaration)


def hardware_kernels(module: ModuleOp) -> list[HardwareKernelOp]:
    return [op for op in model_function(module).body.block.ops if isinstance(op, HardwareKernelOp)]


def relayout_copies(module: ModuleOp) -> list[loop.CopyOp]:
    """
    The relayouts a run pays: copies of values computed on the device. A
    param (a weight, a KV cache) relaid into its kernels' layout is stored
    that way once, when it is loaded, not on every run (the memory model
    counts it once, too). A model input is laid out by the host-to-device
    transfer that places it (XLA compiles an entry computation to the device
    layouts of its parameters, and the runtime converts as it copies), so
    it is no copy on the device either.
    """
    fn = model_function(module)
    block = fn.body.block
    attrs = fn.arg_attrs.data if fn.arg_attrs else [None] * len(block.args)
    placed = set(loop.param_buffers(fn))
    placed |= {arg for arg, a in zip(block.args, attrs) if a is not None and INPUT_ATTR in a.data}
    for op in block.ops:
        if isinstance(op, loop.ViewOp) and op.source in placed:
            placed.add(op.result)
    return [op for op in block.ops if isinstance(op, loop.CopyOp) and op.source not in placed]


def transfers(module: ModuleOp) -> list[TransferOp]:
    """The device-to-device moves between pipeline stages, in program order."""
    return [op for op in model_function(module).body.block.ops if isinstance(op, TransferOp)]


def collectives(module: ModuleOp) -> list[loop.CollectiveBase]:
    """The collectives among the devices of a sharded program, in program order."""
    return [op for op in model_function(module).body.block.ops if isinstance(op, loop.CollectiveBase)]


def mesh(module: ModuleOp) -> int:
    """Devices that run the program side by side: the product of `strata.tp` and `strata.dp` (1: unsharded)."""
    return math.prod(mesh_sizes(module).values())


def chips(module: ModuleOp) -> int:
    """The chips the program uses: `strata.chips` (written by `place-chips`), else those its kernels run on."""
    attr = module.attributes.get(CHIPS_ATTR)
    if isinstance(attr, IntegerAttr):
        return attr.value.data
    return max((sum(kernel_placement(k)) for k in hardware_kernels(module)), default=1)


def link_transfer_cost(op: TransferOp, bandwidth: float, index: int, where: str) -> KernelCost:
    """
    A buffer moved between two chips at `bandwidth` bytes/s one way over one
    link (`where` names the spec's figure). No per-message latency is
    modelled: the device specs have no sourced figure for it.
    """
    size = type_bytes(op.source.type)
    return KernelCost(
        name=f"transfer_{index}", kind="transfer", ops=[op.name], flops=0, bytes={"link": size},
        time_s=size / bandwidth, bound="transfer", utilisation=0.0,
        extra={"from_chip": op.from_chip.value.data, "to_chip": op.to_chip.value.data, "link": where},
    )


@dataclass(frozen=True)
class Interconnect:
    """How the devices of a group exchange data, for the alpha-beta model of collectives."""

    bandwidth: float
    """Bytes/s each device sends (and receives) during a step: nccl-tests' bus bandwidth."""
    step_latency_s: float
    """alpha: the latency of one step of the algorithm."""
    fixed_latency_s: float
    """Paid once per collective (a kernel launch on a GPU)."""
    where: str
    """The spec's figures these come from, for the report."""
    switched: bool = False
    """Every device reaches every other in one step (NVSwitch), so one-shot (direct) algorithms apply."""


def ring_all_reduce_s(size: int, devices: int, net: Interconnect) -> float:
    return 2 * (devices - 1) * net.step_latency_s + 2 * (devices - 1) / devices * size / net.bandwidth


def tree_all_reduce_s(size: int, devices: int, net: Interconnect) -> float:
    return 2 * math.ceil(math.log2(devices)) * net.step_latency_s + 2 * size / net.bandwidth


def direct_all_reduce_s(size: int, devices: int, net: Interconnect) -> float:
    """One shot over a switch: every device reads its p - 1 peers' buffers and sums (one step, one barrier)."""
    return 2 * net.step_latency_s + (devices - 1) * size / net.bandwidth


def ring_all_gather_s(size: int, devices: int, net: Interconnect) -> float:
    """`size`: the bytes of the gathered result."""
    return (devices - 1) * net.step_latency_s + (devices - 1) / devices * size / net.bandwidth


def direct_all_gather_s(size: int, devices: int, net: Interconnect) -> float:
    """One shot over a switch: every device writes its block to its p - 1 peers (one step, one barrier)."""
    return 2 * net.step_latency_s + (devices - 1) / devices * size / net.bandwidth


def ring_reduce_scatter_s(size: int, devices: int, net: Interconnect) -> float:
    """`size`: the bytes of the whole operand (before the scatter); each of p - 1 steps passes one block on."""
    return (devices - 1) * net.step_latency_s + (devices - 1) / devices * size / net.bandwidth


def direct_reduce_scatter_s(size: int, devices: int, net: Interconnect) -> float:
    """One shot over a switch: every device reads its block from its p - 1 peers and sums (one step, one barrier)."""
    return 2 * net.step_latency_s + (devices - 1) / devices * size / net.bandwidth


def collective_cost(op: loop.CollectiveBase, net: Interconnect, index: int) -> KernelCost:
    """One collective (any stage's) over `op.devices` devices, the cheapest standard algorithm the network allows."""
    p = op.devices.value.data
    if isinstance(op, loop.AllReduceBase):
        kind, n = "all_reduce", type_bytes(op.source.type)
        options = [("ring", ring_all_reduce_s(n, p, net), 2 * (p - 1) * n // p),
                   ("tree", tree_all_reduce_s(n, p, net), 2 * n)]
        if net.switched:
            options.append(("direct", direct_all_reduce_s(n, p, net), (p - 1) * n))
    elif isinstance(op, loop.ReduceScatterBase):
        kind, n = "reduce_scatter", type_bytes(op.source.type)
        options = [("ring", ring_reduce_scatter_s(n, p, net), (p - 1) * n // p)]
        if net.switched:
            options.append(("direct", direct_reduce_scatter_s(n, p, net), (p - 1) * n // p))
    else:
        kind, n = "all_gather", type_bytes(op.dest.type)
        options = [("ring", ring_all_gather_s(n, p, net), (p - 1) * n // p)]
        if net.switched:
            options.append(("direct", direct_all_gather_s(n, p, net), (p - 1) * n // p))
    algorithm, wire_s, moved = min(options, key=lambda o: o[1])
    bandwidth_s = moved / net.bandwidth
    time_s = net.fixed_latency_s + wire_s
    return KernelCost(
        name=f"{kind}_{index}", kind=kind, ops=[op.name], flops=0, bytes={"link": moved},
        time_s=time_s, bound="transfer" if bandwidth_s >= time_s - bandwidth_s else "latency", utilisation=0.0,
        extra={"algorithm": algorithm, "devices": p, "axis": op.axis.data, "link": net.where},
    )


def collective_costs(module: ModuleOp, interconnect: Callable[[], Interconnect]) -> list[KernelCost]:
    """Every collective of `module`; `interconnect` (which may raise `SpecError`) is asked only if there is one."""
    ops = collectives(module)
    if not ops:
        return []
    net = interconnect()
    return [collective_cost(op, net, i) for i, op in enumerate(ops)]


def estimate(module: ModuleOp, spec: DeviceSpec) -> Report:
    """Cost `module` (hardware stage) on the device `spec` describes."""
    import importlib

    fn = model_function(module)
    if any(op.name.startswith("graph.") or isinstance(op, loop.KernelOp) for op in fn.body.block.ops):
        # A model with nothing left to compute (it returns an input or a
        # view of one) has no kernels and costs nothing: that is fine.
        raise ValueError("cost estimation needs hardware-stage IR: compile with --emit hardware")
    # Imported on use: the models import this module for its types.
    model: Callable[[ModuleOp, DeviceSpec], Report] = importlib.import_module(MODELS[spec.target]).estimate
    report = model(module, spec)
    report.mesh = mesh(module)
    report.peak_flops *= report.mesh
    flops, batch = module.attributes.get(MODEL_FLOPS_ATTR), module.attributes.get(BATCH_ATTR)
    report.model_flops = flops.value.data if isinstance(flops, IntegerAttr) else None
    report.batch = batch.value.data if isinstance(batch, IntegerAttr) else None
    report.memory = memory_per_device(fn, report.chips, storage_bytes if spec.target == "cpu" else type_bytes)
    report.memory_capacity_bytes = spec.memory_bytes
    return report
