"""
Static figures of a graph module: op counts, params and FLOPs.

FLOP conventions (stated so reports can be compared): a multiply-add is 2
FLOPs; elementwise ops and reductions count one per element they read or
write; softmax-like rows count 5 per element, normalisations 8 per element;
pooling counts one per window element; data movement (reshape, transpose,
concat, slice, split, gather, cast) counts none.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import func
from xdsl.ir import Operation

from compiler.diagnostics import StrataError
from dialects.graph import PARAM_ATTR
from dialects.graph import ops as g
from dialects.graph.shapes import num_elements

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


@dataclass(frozen=True)
class ModelStats:
    name: str
    ops: int
    params: int
    parameter_count: int
    flops: int


def model_function(module: Operation) -> func.FuncOp:
    """The single `func.func` a graph module holds."""
    funcs = [op for op in module.walk() if isinstance(op, func.FuncOp)]
    if len(funcs) != 1:
        raise StrataError(f"error: expected one func.func in the module, found {len(funcs)}")
    return funcs[0]


def model_stats(module: Operation) -> ModelStats:
    fn = model_function(module)
    params = [
        arg
        for arg, attrs in zip(fn.body.block.args, fn.arg_attrs.data if fn.arg_attrs else [])
        if PARAM_ATTR in attrs.data
    ]
    ops = [op for op in fn.body.walk() if not isinstance(op, func.ReturnOp | g.ConstantOp)]
    return ModelStats(
        name=fn.sym_name.data,
        ops=len(ops),
        params=len(params),
        parameter_count=sum(_numel(p) for p in params),
        flops=sum(op_flops(op) for op in ops),
    )


def human(n: float, unit: str = "") -> str:
    """`1.23 G` style: three significant digits and an SI prefix."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}".rstrip()
