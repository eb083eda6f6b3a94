"""
Static figures of a `loop.kernel`, read off its loop nest: the work and the
off-chip traffic it performs, its on-chip footprint, and the GEMMs it issues.

Assumes loop bounds are constants (as `lower-to-loops` emits them); every op
inside a loop counts once per iteration. Pure functions of the IR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xdsl.dialects import arith, scf
from xdsl.ir import Block, Operation, SSAValue

from dialects import loop
from dialects.graph import ops as g
from dialects.graph.flops import op_flops

MATRIX_OPS = (g.MatmulOp, g.Conv2DOp)


def nbytes(type_) -> int:
    """Bytes of a tensor or memref type."""
    width = getattr(type_.element_type, "bitwidth", 32)
    return math.prod(type_.get_shape()) * max(1, width // 8)


def _constant(value: SSAValue) -> int:
    op = value.owner
    if not isinstance(op, arith.ConstantOp):
        raise ValueError("loop bounds must be constants")
    return op.value.value.data


def trip_count(op: scf.ForOp) -> int:
    lb, ub, step = (_constant(v) for v in (op.lb, op.ub, op.step))
    return max(0, -(-(ub - lb) // step))


@dataclass
class Figures:
    """What a kernel does, summed over its loop nest."""

    flops: int = 0
    matrix_flops: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    onchip_bytes: int = 0
    register_bytes: int = 0
    """Accumulators (`loop.fill` at the register level)."""
    pipelined_bytes: int = 0
    """On-chip bytes loaded inside a reduction loop, which a copy pipeline multi-buffers."""
    reads_by_buffer: dict[int, int] = field(default_factory=dict)
    """Bytes read from each kernel argument, by argument position."""
    unit_ops: set[str] = field(default_factory=set)


def _online_softmax_flops(op: loop.OnlineSoftmaxOp) -> tuple[int, int]:
    scores, acc = op.scores.type.get_shape(), op.acc_in.type.get_shape()
    matrix = 2 * math.prod(acc) * scores[-1]
    return matrix, 5 * math.prod(scores) + 2 * math.prod(acc)


def _accumulates(op: Operation) -> bool:
    """`acc + product` carried by a reduction loop: part of the matrix op's work."""
    if not isinstance(op, g.AddOp):
        return False
    kinds = [type(v.owner) for v in op.operands]
    carried = any(isinstance(v.owner, Block) and isinstance(v.owner.parent_op(), scf.ForOp) for v in op.operands)
    return carried and any(k in MATRIX_OPS for k in kinds)


def _visit(block: Block, times: int, in_reduction: bool, args: list[SSAValue], out: Figures) -> None:
    for op in block.ops:
        if isinstance(op, scf.ForOp):
            inner = in_reduction or bool(op.iter_args)
            _visit(op.body.block, times * trip_count(op), inner, args, out)
        elif isinstance(op, loop.LoadOp):
            size = nbytes(op.result.type)
            out.read_bytes += size * times
            out.onchip_bytes += size
            out.pipelined_bytes += size if in_reduction else 0
            position = args.index(op.source) if op.source in args else -1
            out.reads_by_buffer[position] = out.reads_by_buffer.get(position, 0) + size * times
        elif isinstance(op, loop.StoreOp):
            out.write_bytes += nbytes(op.value.type) * times
        elif isinstance(op, loop.FillOp):
            out.register_bytes += nbytes(op.result.type)
        elif isinstance(op, loop.OnlineSoftmaxOp):
            matrix, vector = _online_softmax_flops(op)
            out.matrix_flops += matrix * times
            out.flops += (matrix + vector) * times
            out.unit_ops |= {"matrix", "vector"}
        elif isinstance(op, loop.CausalMaskOp):
            out.flops += math.prod(op.result.type.get_shape()) * times
            out.unit_ops.add("vector")
        elif _accumulates(op):
            continue  # the MMA's own accumulation, inside its 2*M*N*K FLOPs
        elif isinstance(op, Operation) and op.dialect_name() == "graph":
            work = op_flops(op) * times
            out.flops += work
            if isinstance(op, MATRIX_OPS):
                out.matrix_flops += work
                out.unit_ops.add("matrix")
            elif work:
                out.unit_ops.add("vector")
            else:
                out.unit_ops.add("movement")


def kernel_figures(kernel: loop.KernelOp) -> Figures:
    figures = Figures()
    _visit(kernel.body.block, 1, False, list(kernel.body.block.args), figures)
    return figures


def kernel_gemms(kernel: loop.KernelOp) -> list[tuple[int, int, int, int]]:
    """The whole kernel's GEMMs as `(count, M, N, K)`; convs in SCALE-Sim's convention."""
    bounds, kind = tuple(kernel.bounds.get_values()), kernel.kind.data
    if kind == "gemm":
        *batch, m, n, k = bounds
        return [(math.prod(batch), m, n, k)]
    if kind == "attention":
        *batch, q, d, keys = bounds
        return [(math.prod(batch), q, keys, d), (math.prod(batch), q, d, keys)]
    if kind == "conv":
        conv = next(op for op in kernel.body.walk() if isinstance(op, g.Conv2DOp))
        batch, filters, oh, ow = bounds
        _, per_group, kh, kw = conv.weight.type.get_shape()
        groups = conv.groups.value.data
        return [(groups, batch * oh * ow, filters // groups, kh * kw * per_group)]
    return []
