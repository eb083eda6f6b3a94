"""
Static figures of a graph module: op counts, params and FLOPs.

FLOPs follow the conventions of `dialects.graph.flops`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import func
from xdsl.ir import Operation

from strata.compiler.diagnostics import StrataError
from strata.dialects.graph import PARAM_ATTR
from strata.dialects.graph import ops as g
from strata.dialects.graph.flops import op_flops
from strata.dialects.graph.shapes import num_elements

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
        parameter_count=sum(num_elements(p.type.get_shape()) for p in params),
        flops=sum(op_flops(op) for op in ops),
    )


def human(n: float, unit: str = "") -> str:
    """`1.23 G` style: three significant digits and an SI prefix."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}".rstrip()
