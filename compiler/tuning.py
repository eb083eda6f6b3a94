"""
The autotuner's driver side: the search spaces the passes expose, and the
evaluation of a point by lowering and costing it.

The tuner core (`backends/tuner`) is target- and pass-independent: it asks
for points and is told costs. This module gives it, per kernel of a
layout-stage module, the legal points (tile sizes of every dim of the
iteration space, loop order, and on the systolic target the dataflow),
and an `evaluate` that lowers one standalone copy of the kernel with those
choices through `lower-to-loops` and `lower-to-hardware` and costs it with
the target's model. Module-level choices (the fusion switches, the layout
switches, the LPU chip count) are enumerated whole and costed as the sum of
their kernels, each kernel costed once thanks to structural hashing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, ModuleOp, StringAttr, i64
from xdsl.ir import Block, Region

from backends.cost import estimate
from backends.spec import DeviceSpec
from compiler import ir
from dialects.graph.kernel import KernelOp
from dialects.graph.layout import RelayoutOp
from passes._targets import TARGET_ATTR, target_facts
from passes.lower_to_hardware import DATAFLOW_ATTR, LowerToHardwarePass
from passes.lower_to_loops import ORDER_ATTR, TILE_ATTR, LowerToLoopsPass, kernel_bounds
from passes.tile import default_tiles, footprint, legal

DATAFLOWS = ("ws", "os", "is")
MAX_TILE = 1024


def _ints(values) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _powers(bound: int, low: int = 8) -> list[int]:
    values = [p for p in (2**i for i in range(3, 11)) if low <= p < bound]
    return sorted(set(values + ([bound] if bound <= MAX_TILE else [])) or {bound})


def _spatial(bound: int, low: int = 4) -> list[int]:
    """An image dim's tiles: powers of two and the divisors (no ragged edge tile), from `low` up."""
    powers = [2**i for i in range(2, 11) if low <= 2**i < bound]
    divisors = [d for d in range(low, bound) if bound % d == 0]
    return sorted(set(powers + divisors) | {min(bound, MAX_TILE)})


def dim_candidates(kernel: KernelOp) -> list[list[int]]:
    """
    Tile candidates per dim: whole or 1 for batch dims, powers of two for
    the rest; a conv's output channels are its GEMM's N (powers of two) and
    its image rows and columns also take their divisors, so a tile can
    cover the image exactly (56 = 4 x 14, 8 x 7).
    """
    bounds = kernel_bounds(kernel)
    rank = len(kernel.outputs[0].type.get_shape())
    conv = kernel.kind.data == "conv"
    candidates = []
    for d, bound in enumerate(bounds):
        if d >= rank:  # the reduction tile must divide its extent
            candidates.append(sorted({p for p in _powers(bound, 16) if bound % p == 0} | {bound}))
        elif conv and d >= 2:
            candidates.append(_spatial(bound))
        elif d < rank - 2 and not (conv and d == 1):
            candidates.append(sorted({1, bound}))
        else:
            candidates.append(_powers(bound))
    return candidates


def default_point(kernel: KernelOp, target: str) -> dict:
    rank = len(kernel.outputs[0].type.get_shape())
    point = {"tiles": tuple(default_tiles(kernel, target)), "order": tuple(range(rank))}
    if target == "tpu" and kernel.kind.data in ("gemm", "conv", "attention"):
        point["dataflow"] = "ws"
    return point


def kernel_points(kernel: KernelOp, target: str) -> list[dict]:
    """Every legal point of `kernel`'s space, the default first."""
    rank = len(kernel.outputs[0].type.get_shape())
    capacity = target_facts(target).onchip_bytes
    orders = [tuple(range(rank))]
    if rank >= 2:
        orders.append(tuple(range(rank - 2)) + (rank - 1, rank - 2))
    flows = DATAFLOWS if target == "tpu" and kernel.kind.data in ("gemm", "conv", "attention") else (None,)
    base = default_point(kernel, target)
    points = [base]
    for tiles in itertools.product(*dim_candidates(kernel)):
        if not legal(kernel, tiles) or footprint(kernel, tiles) > capacity:
            continue
        for order, flow in itertools.product(orders, flows):
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
    if "dataflow" in point:
        kernel.attributes[DATAFLOW_ATTR] = StringAttr(point["dataflow"])


def standalone(op: KernelOp | RelayoutOp, target: str) -> ModuleOp:
    """A module whose function runs only `op` on arguments of its operand types."""
    block = Block(arg_types=[v.type for v in op.operands])
    clone = op.clone(value_mapper=dict(zip(op.operands, block.args)))
    block.add_op(clone)
    block.add_op(func.ReturnOp(*clone.results))
    function = func.FuncOp.from_region(
        "kernel", [v.type for v in op.operands], [r.type for r in op.results], Region(block)
    )
    module = ModuleOp([function])
    module.attributes[TARGET_ATTR] = StringAttr(target)
    return module


@dataclass
class KernelEvaluator:
    """Lower-and-cost one kernel (or relayout) at any point of its space."""

    template: ModuleOp
    target: str
    spec: DeviceSpec

    def __call__(self, point: dict) -> float:
        module = self.template.clone()
        kernel = next((op for op in module.walk() if isinstance(op, KernelOp)), None)
        if kernel is not None:  # a relayout has no choices
            apply_point(kernel, point)
        ctx = ir.make_context()
        LowerToLoopsPass().apply(ctx, module)
        LowerToHardwarePass(target=self.target).apply(ctx, module)
        return estimate(module, self.spec).time_s
