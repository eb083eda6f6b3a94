"""
The autotuner's driver side: the search spaces the passes expose, and the
evaluation of a point by lowering and costing it.

The tuner core (`backends/tuner`) is target- and pass-independent: it asks
for points and is told costs. This module gives it, per kernel of a
layout-stage module, the legal points, asked of the passes that own each
choice: tile sizes (`tile`: `candidate_tiles`, legal and fitting the
device), loop order (`tile`: `loop_orders`) and, on a systolic device, the
dataflow (`assign-dataflow`: `dataflow_choices`, what the device's arrays
run); and an `evaluate` that lowers one standalone copy of the kernel with
those choices through `lower-to-loops`, `place-chips`, `assign-dataflow` and
`lower-to-hardware` and costs it with the device's model. A point the passes refuse (`IllegalSchedule`) costs
infinity; any other failure is a bug and is raised with the point.
Module-level choices (the fusion switches, the layout switches, the LPU chip
count) are enumerated whole by `compiler/tuning/autotune.py` and costed as the sum
of their kernels, each kernel costed once thanks to structural hashing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from xdsl.dialects import func
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, StringAttr, i64
from xdsl.ir import Block, Region

from strata.backends.cost import estimate
from strata.compiler import ir
from strata.dialects.device import DeviceSpec, set_module_device
from strata.dialects.graph.kernel import KernelOp
from strata.dialects.graph.layout import RelayoutOp
from strata.dialects.vocabulary import DATAFLOW_ATTR, ORDER_ATTR, TILE_ATTR
from strata.passes.assign_dataflow import AssignDataflowPass, dataflow_choices
from strata.passes.lower_to_hardware import LowerToHardwarePass
from strata.passes.lower_to_loops import LowerToLoopsPass
from strata.passes.place_chips import PlaceChipsPass
from strata.passes.tile import candidate_tiles, default_order, default_tiles, loop_orders


def _ints(values) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def default_point(kernel: KernelOp, device: DeviceSpec, threads: int = 1) -> dict:
    """
    The point the default pipeline would compile `kernel` at (on a CPU, for
    `threads`). Its dataflow is "" (none pinned): `assign-dataflow` picks one
    from the lowered loop nest, as in the default pipeline.
    """
    tiles = tuple(default_tiles(kernel, device, threads))
    point = {"tiles": tiles, "order": default_order(kernel, tiles, device)}
    if dataflow_choices(kernel.kind.data, device):
        point["dataflow"] = ""
    return point


def kernel_points(kernel: KernelOp, device: DeviceSpec, threads: int = 1) -> list[dict]:
    """Every legal point of `kernel`'s space on `device`, the default (for `threads`) first."""
    flows = dataflow_choices(kernel.kind.data, device) or (None,)
    base = default_point(kernel, device, threads)
    points = [base]
    for tiles in candidate_tiles(kernel, device):
        for order, flow in itertools.product(loop_orders(kernel), flows):
            point = {"tiles": tiles, "order": order}
            if flow is not None:
                point["dataflow"] = flow
            if point != base:
                points.append(point)
    return points


def apply_point(kernel: KernelOp, point: dict) -> None:
    """Write a point's choices as the attributes the lowering passes read."""
    kernel.attributes[TILE_ATTR] = _ints(point["tiles"])
    kernel.attributes[ORDER_ATTR] = _ints(point["order"])
    if point.get("dataflow"):
        kernel.attributes[DATAFLOW_ATTR] = StringAttr(point["dataflow"])


def standalone(op: KernelOp | RelayoutOp, device: DeviceSpec) -> ModuleOp:
    """A module whose function runs only `op` on arguments of its operand types."""
    block = Block(arg_types=[v.type for v in op.operands])
    clone = op.clone(value_mapper=dict(zip(op.operands, block.args)))
    block.add_op(clone)
    block.add_op(func.ReturnOp(*clone.results))
    function = func.FuncOp.from_region(
        "kernel", [v.type for v in op.operands], [r.type for r in op.results], Region(block)
    )
    module = ModuleOp([function])
    set_module_device(module, device)
    return module


@dataclass
class KernelEvaluator:
    """Lower-and-cost one kernel (or relayout) at any point of its space."""

    template: ModuleOp
    """A `standalone` module (it records the device)."""
    spec: DeviceSpec
    threads: int = 1
    """cpu: the threads the kernel is lowered and priced for (`lower-to-hardware{threads}`)."""

    def __call__(self, point: dict) -> float:
        module = self.template.clone()
        kernel = next((op for op in module.walk() if isinstance(op, KernelOp)), None)
        if kernel is not None:  # a relayout has no choices
            apply_point(kernel, point)
        ctx = ir.make_context()
        LowerToLoopsPass().apply(ctx, module)
        PlaceChipsPass().apply(ctx, module)
        AssignDataflowPass().apply(ctx, module)
        LowerToHardwarePass(threads=self.threads).apply(ctx, module)
        return estimate(module, self.spec).time_s
