"""
FLOPs of one graph op, shared by the static statistics, the lowering to
hardware and the cost models.

Conventions (stated so reports can be compared): a multiply-add is 2 FLOPs;
elementwise ops and reductions count one per element they read or write;
softmax-like rows count 5 per element, normalisations 8 per element; pooling
counts one per window element; data movement (reshape, transpose, concat,
slice, split, gather, cast) counts none.
"""

from __future__ import annotations

from xdsl.ir import Operation

from strata.dialects.graph import ops as g
from strata.dialects.graph.shapes import num_elements

TRANSCENDENTAL_OPS = (g.ExpOp, g.ErfOp, g.GeluOp, g.SiluOp, g.SigmoidOp, g.TanhOp, g.LogOp, g.PowOp,
                      g.SoftmaxOp, g.LogSoftmaxOp)
"""Graph ops that evaluate an exponential, logarithm or error function per result element."""

_MOVEMENT = (g.ReshapeOp, g.TransposeOp, g.ConcatOp, g.SliceOp, g.SplitOp, g.GatherOp, g.CastOp, g.ConstantOp)


def _numel(value) -> int:
    return num_elements(value.type.get_shape())


def op_flops(op: Operation) -> int:
    """FLOPs of one graph op under the conventions above."""
    if isinstance(op, g.MatmulOp):
        k = op.lhs.type.get_shape()[-1]
        return 2 * _numel(op.result) * k
    if isinstance(op, g.Conv2DOp):
        _, cg, kh, kw = op.weight.type.get_shape()
        return 2 * _numel(op.result) * cg * kh * kw + (_numel(op.result) if op.bias else 0)
    if isinstance(op, g.SoftmaxOp | g.LogSoftmaxOp):
        return 5 * _numel(op.result)
    if isinstance(op, g.LayerNormOp | g.RmsNormOp):
        return 8 * _numel(op.result)
    if isinstance(op, g.ReductionOp | g.GlobalAvgPoolOp):
        return _numel(op.input)
    if isinstance(op, g.Pool2DOp):
        kh, kw = op.kernel.get_values()
        return _numel(op.result) * kh * kw
    if isinstance(op, _MOVEMENT) or not op.results:
        return 0
    return sum(_numel(r) for r in op.results)
