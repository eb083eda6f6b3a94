"""
The model language's operation table: operand and attribute schemas, and a
builder per operation that type-checks and emits graph ops.

Builders receive operands already evaluated (tensors as `SSAValue`, integer
or float literals as `Scalar`) and attributes already evaluated to Python
values of their declared kind; they report errors through `OpContext.error`,
which points at the call. `attention` is expanded here to its primitive form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue

from strata.compiler.diagnostics import SourceLoc
from strata.dialects.graph import ops as g
from strata.dialects.graph import shapes
from strata.dialects.graph.dtypes import (
    DEQUANTIZE_DTYPES,
    DTYPES,
    FLOAT_DTYPES,
    INT_RANGES,
    QUANTIZE_DTYPES,
    QUANTIZED_INT_DTYPES,
    accumulation_dtypes,
    dtype_name,
    tensor_type,
    type_str,
)

REQUIRED = object()
"""Default of an attribute the user must give."""


@dataclass(frozen=True)
class Scalar:
    """A number literal waiting to take the dtype of the tensor it meets."""

    value: int | float
    loc: SourceLoc


@dataclass(frozen=True)
class AttrSpec:
    """An attribute: its kind (`int`, `float`, `bool`, `ints`, `dtype`) and default."""

    kind: str
    default: object = REQUIRED


@dataclass(frozen=True)
class OpSpec:
    """
    One operation of the language.

    `operands` lists the kind of each positional operand: `tensor`, `tensor?`
    (optional), `tensors` (a `[...]` list of tensors) or `shape` (a `[...]`
    list of integer expressions).
    """

    name: str
    operands: tuple[str, ...]
    attrs: dict[str, AttrSpec]
    build: Callable[..., list[SSAValue]]
    hint: str = ""


class OpContext:
    """What a builder may do: emit ops at the call's location, report errors."""

    def __init__(self, emit: Callable[[Operation], Operation], fail, loc: SourceLoc, name: str):
        self._emit = emit
        self._fail = fail
        self.loc = loc
        self.name = name

    def emit(self, op: Operation) -> Operation:
        return self._emit(op)

    def error(self, message: str, loc: SourceLoc | None = None):
        self._fail(loc or self.loc, message)

    def rule(self, rule, *args):
        """Apply a shape rule; a violation is an error at the call."""
        try:
            return rule(*args)
        except shapes.ShapeError as err:
            message = str(err)
            if message.split(" ")[0] != self.name:
                message = f"{self.name}: {message}"
            self.error(message)

    def scalar(self, scalar: Scalar, dtype: str) -> SSAValue:
        """A literal as a rank-0 constant of `dtype`."""
        value = scalar.value
        text = literal_text(value)
        if dtype not in FLOAT_DTYPES:
            if not math.isfinite(value) or value != int(value):
                self.error(f"literal {text} is not a valid {dtype} value (an integer is needed)", scalar.loc)
            lo, hi = INT_RANGES[dtype]
            if not lo <= int(value) <= hi:
                self.error(f"literal {text} is out of range for {dtype}", scalar.loc)
        elif isinstance(value, int) and abs(value) > 2**1023:
            self.error(f"literal {text} is too large for {dtype}", scalar.loc)
        return self.emit(g.ConstantOp(scalar.value, tensor_type(dtype, ()))).result

    def tensor(self, value, what: str = "operand") -> SSAValue:
        if isinstance(value, Scalar):
            self.error(f"{self.name} needs a tensor {what}, got the literal {literal_text(value.value)}", value.loc)
        return value


def literal_text(value: int | float) -> str:
    """A literal for a message, long integers shortened (`1000...000 (401 digits)`)."""
    text = str(value)
    digits = text.lstrip("-")
    if isinstance(value, int) and len(digits) > 24:
        return f"{text[: len(text) - len(digits)]}{digits[:6]}...{digits[-3:]} ({len(digits)} digits)"
    return text


def shape_of(value: SSAValue) -> tuple[int, ...]:
    return tuple(value.type.get_shape())


def dtype_of(value: SSAValue) -> str:
    return dtype_name(value.type.element_type)


def with_shape(value: SSAValue, shape: Sequence[int], dtype: str | None = None) -> TensorType:
    return tensor_type(dtype or dtype_of(value), shape)


OPERATIONS: dict[str, OpSpec] = {}


def operation(name: str, operands: Sequence[str], hint: str = "", **attrs: AttrSpec):
    def register(build):
        OPERATIONS[name] = OpSpec(name, tuple(operands), attrs, build, hint)
        return build

    return register


# --------------------------------------------------------------------------- elementwise

BINARY = {
    "+": g.AddOp,
    "-": g.SubOp,
    "*": g.MulOp,
    "/": g.DivOp,
    "maximum": g.MaximumOp,
    "minimum": g.MinimumOp,
    "pow": g.PowOp,
}


def build_binary(ctx: OpContext, symbol: str, lhs, rhs) -> SSAValue:
    """A broadcasting binary op; a literal takes the other operand's dtype."""
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        ctx.error(f"'{symbol}' of two literals has no dtype; make one operand a tensor")
    if isinstance(lhs, Scalar):
        lhs = ctx.scalar(lhs, dtype_of(rhs))
    if isinstance(rhs, Scalar):
        rhs = ctx.scalar(rhs, dtype_of(lhs))
    if dtype_of(lhs) != dtype_of(rhs):
        ctx.error(
            f"operands of '{symbol}' have different dtypes: {type_str(lhs.type)} and"
            f" {type_str(rhs.type)} (use cast)"
        )
    try:
        shape = shapes.broadcast(shape_of(lhs), shape_of(rhs))
    except shapes.ShapeError:
        ctx.error(
            f"operands of '{symbol}' have shapes that do not broadcast:"
            f" {type_str(lhs.type)} and {type_str(rhs.type)}"
        )
    return ctx.emit(BINARY[symbol](lhs, rhs, with_shape(lhs, shape))).result


def build_matmul(ctx: OpContext, lhs, rhs, dtype: str | None = None) -> SSAValue:
    """`lhs @ rhs`, its result in `dtype` (default: the operands' dtype)."""
    lhs, rhs = ctx.tensor(lhs), ctx.tensor(rhs)
    if dtype_of(lhs) != dtype_of(rhs):
        what = "'@'" if ctx.name == "'@'" else ctx.name
        hint = ""
        quantized = {dtype_of(lhs), dtype_of(rhs)} & QUANTIZED_INT_DTYPES
        if quantized and {dtype_of(lhs), dtype_of(rhs)} & FLOAT_DTYPES:
            hint = " (an integer matmul needs integer operands: quantize the float one)"
        ctx.error(
            f"operands of {what} have different dtypes: {type_str(lhs.type)} and {type_str(rhs.type)}{hint}"
        )
    dtype = accumulation(ctx, dtype_of(lhs), dtype)
    a, b = shape_of(lhs), shape_of(rhs)
    both = f"{type_str(lhs.type)} @ {type_str(rhs.type)}"
    if len(a) < 2 or len(b) < 2:
        ctx.error(f"{ctx.name} needs operands of rank >= 2, got {both}")
    if a[-1] != b[-2]:
        ctx.error(
            f"{ctx.name} contraction dimensions differ: {both} ({a[-1]} vs {b[-2]})"
        )
    try:
        shape = shapes.matmul(a, b)
    except shapes.ShapeError:
        ctx.error(f"{ctx.name} batch dimensions do not broadcast: {both}")
    return ctx.emit(g.MatmulOp(lhs, rhs, with_shape(lhs, shape, dtype))).result


def accumulation(ctx: OpContext, operand: str, dtype: str | None) -> str:
    """The result dtype of a contraction of `operand`s asked to give `dtype`; a dtype not allowed is an error."""
    if dtype is None:
        return operand
    allowed = accumulation_dtypes(operand)
    if dtype not in allowed:
        choices = " or ".join(sorted(allowed))
        ctx.error(f"{ctx.name} of {operand} operands gives {choices}, not dtype={dtype}")
    return dtype


@operation("matmul", ["tensor", "tensor"], dtype=AttrSpec("dtype", None))
def _matmul(ctx: OpContext, a, b, dtype):
    return [build_matmul(ctx, a, b, dtype)]


def _register_binary(name: str) -> None:
    operation(name, ["tensor", "tensor"])(
        lambda ctx, a, b: [build_binary(ctx, name, a, b)]
    )


for _name in ("maximum", "minimum", "pow"):
    _register_binary(_name)

UNARY = {
    "relu": g.ReluOp,
    "gelu": g.GeluOp,
    "silu": g.SiluOp,
    "sigmoid": g.SigmoidOp,
    "tanh": g.TanhOp,
    "exp": g.ExpOp,
    "log": g.LogOp,
    "sqrt": g.SqrtOp,
    "rsqrt": g.RsqrtOp,
    "abs": g.AbsOp,
    "erf": g.ErfOp,
    "neg": g.NegOp,
}


INTEGER_UNARY = frozenset({"relu", "abs", "neg"})
"""Unary operations that also take integers."""


def build_unary(ctx: OpContext, name: str, x) -> SSAValue:
    x = ctx.tensor(x)
    if name not in INTEGER_UNARY:
        require_float(ctx, x)
    return ctx.emit(UNARY[name](x)).result


def require_float(ctx: OpContext, x: SSAValue) -> None:
    if dtype_of(x) not in FLOAT_DTYPES:
        ctx.error(f"{ctx.name} needs a float operand, got {type_str(x.type)}")


def _register_unary(name: str) -> None:
    operation(name, ["tensor"])(lambda ctx, x: [build_unary(ctx, name, x)])


for _name in UNARY:
    if _name != "neg":
        _register_unary(_name)


@operation("cast", ["tensor"], dtype=AttrSpec("dtype"))
def _cast(ctx: OpContext, x, dtype: str):
    x = ctx.tensor(x)
    return [ctx.emit(g.CastOp(x, with_shape(x, shape_of(x), dtype))).result]


# --------------------------------------------------------------------------- quantization


def _quantization_operands(ctx: OpContext, x: SSAValue, scale, zero_point, quantized: str):
    """Check `scale` and the zero point (a tensor, or an integer literal) against `x`; `quantized` is the integer/f8 dtype."""
    if isinstance(scale, Scalar):
        # A literal scale is per tensor, in f32 (the dtype the arithmetic runs in).
        scale = ctx.scalar(scale, "f32")
    if dtype_of(scale) not in FLOAT_DTYPES:
        ctx.error(f"{ctx.name} scale must be a float tensor, got {type_str(scale.type)}")
    shape = shape_of(x)
    for what, value in (("scale", scale), ("zero point", zero_point)):
        if isinstance(value, SSAValue):
            try:
                fits = shapes.broadcast(shape, shape_of(value)) == shape
            except shapes.ShapeError:
                fits = False
            if not fits:
                ctx.error(f"{ctx.name} {what} {type_str(value.type)} does not broadcast to {type_str(x.type)}")
    if zero_point is None:
        return scale, None
    if quantized not in QUANTIZED_INT_DTYPES:
        ctx.error(f"{ctx.name} {'to' if ctx.name == 'quantize' else 'of'} {quantized} takes no zero point (only i4, i8, u8 do)")
    if isinstance(zero_point, Scalar):
        return scale, ctx.scalar(zero_point, quantized)
    if dtype_of(zero_point) != quantized:
        ctx.error(f"{ctx.name} zero point must be {quantized}, got {type_str(zero_point.type)}")
    return scale, zero_point


def _zero_point(ctx: OpContext, positional, keyword):
    if positional is not None and keyword is not None:
        ctx.error(f"{ctx.name} takes the zero point once: as its third operand or as zero_point=...")
    if keyword is not None:
        return Scalar(keyword, ctx.loc)
    return positional


@operation("quantize", ["tensor", "tensor", "tensor?"], zero_point=AttrSpec("int", None), dtype=AttrSpec("dtype", "i8"))
def _quantize(ctx: OpContext, x, scale, zp, zero_point, dtype):
    x = ctx.tensor(x)
    require_float(ctx, x)
    if dtype not in QUANTIZE_DTYPES:
        ctx.error(f"quantize dtype must be one of {', '.join(sorted(QUANTIZE_DTYPES))}, got {dtype}")
    scale, zp = _quantization_operands(ctx, x, scale, _zero_point(ctx, zp, zero_point), dtype)
    return [ctx.emit(g.QuantizeOp(x, scale, zp, with_shape(x, shape_of(x), dtype))).result]


@operation("dequantize", ["tensor", "tensor", "tensor?"], zero_point=AttrSpec("int", None), dtype=AttrSpec("dtype", "f32"))
def _dequantize(ctx: OpContext, q, scale, zp, zero_point, dtype):
    q = ctx.tensor(q)
    if dtype_of(q) not in DEQUANTIZE_DTYPES:
        ctx.error(f"dequantize needs an operand of {', '.join(sorted(DEQUANTIZE_DTYPES))}, got {type_str(q.type)}")
    if dtype not in FLOAT_DTYPES:
        ctx.error(f"dequantize dtype must be a float dtype, got {dtype}")
    scale, zp = _quantization_operands(ctx, q, scale, _zero_point(ctx, zp, zero_point), dtype_of(q))
    return [ctx.emit(g.DequantizeOp(q, scale, zp, with_shape(q, shape_of(q), dtype))).result]


# --------------------------------------------------------------------------- reductions and rows

REDUCTIONS = {"sum": g.SumOp, "mean": g.MeanOp, "max": g.ReduceMaxOp, "min": g.ReduceMinOp}


def _register_reduction(name: str) -> None:
    hint = {"max": "maximum(a, b)", "min": "minimum(a, b)"}.get(name, "")

    @operation(name, ["tensor"], hint=hint, axis=AttrSpec("ints", None), keepdims=AttrSpec("bool", False))
    def build(ctx: OpContext, x, axis, keepdims):
        x = ctx.tensor(x)
        rank = len(shape_of(x))
        axes = tuple(range(rank)) if axis is None else ctx.rule(shapes.normalize_axes, axis, rank)
        shape = shapes.reduce(shape_of(x), axes, keepdims)
        return [ctx.emit(REDUCTIONS[name](x, axes, keepdims, with_shape(x, shape))).result]


for _name in REDUCTIONS:
    _register_reduction(_name)


def _axis(ctx: OpContext, x: SSAValue, axis: int) -> int:
    return ctx.rule(shapes.normalize_axis, axis, len(shape_of(x)))


@operation("softmax", ["tensor"], axis=AttrSpec("int", -1))
def _softmax(ctx: OpContext, x, axis):
    x = ctx.tensor(x)
    require_float(ctx, x)
    return [ctx.emit(g.SoftmaxOp(x, _axis(ctx, x, axis))).result]


@operation("log_softmax", ["tensor"], axis=AttrSpec("int", -1))
def _log_softmax(ctx: OpContext, x, axis):
    x = ctx.tensor(x)
    require_float(ctx, x)
    return [ctx.emit(g.LogSoftmaxOp(x, _axis(ctx, x, axis))).result]


def _norm_params(ctx: OpContext, x: SSAValue, axis: int, params) -> list[SSAValue | None]:
    expected = shapes.norm_params(shape_of(x), axis)
    checked = []
    for param in params:
        if param is None:
            checked.append(None)
            continue
        param = ctx.tensor(param, "parameter")
        if shape_of(param) != expected or dtype_of(param) != dtype_of(x):
            ctx.error(
                f"{ctx.name} parameter has type {type_str(param.type)}, but input"
                f" {type_str(x.type)} normalised from axis {axis} needs"
                f" {dtype_of(x)}{shapes.fmt(expected)}"
            )
        checked.append(param)
    return checked


@operation(
    "layernorm", ["tensor", "tensor?", "tensor?"],
    axis=AttrSpec("int", -1), eps=AttrSpec("float", 1e-5),
)
def _layernorm(ctx: OpContext, x, gamma, beta, axis, eps):
    x = ctx.tensor(x)
    require_float(ctx, x)
    axis = _axis(ctx, x, axis)
    gamma, beta = _norm_params(ctx, x, axis, [gamma, beta])
    return [ctx.emit(g.LayerNormOp(x, gamma, beta, axis, eps)).result]


@operation("rmsnorm", ["tensor", "tensor?"], axis=AttrSpec("int", -1), eps=AttrSpec("float", 1e-6))
def _rmsnorm(ctx: OpContext, x, gamma, axis, eps):
    x = ctx.tensor(x)
    require_float(ctx, x)
    axis = _axis(ctx, x, axis)
    (gamma,) = _norm_params(ctx, x, axis, [gamma])
    return [ctx.emit(g.RmsNormOp(x, gamma, axis, eps)).result]


@operation("causal_mask", ["tensor"])
def _causal_mask(ctx: OpContext, x):
    x = ctx.tensor(x)
    require_float(ctx, x)
    ctx.rule(shapes.causal_mask, shape_of(x))
    return [ctx.emit(g.CausalMaskOp(x)).result]


# --------------------------------------------------------------------------- data movement


def build_transpose(ctx: OpContext, x: SSAValue, perm) -> SSAValue:
    rank = len(shape_of(x))
    if perm is None:
        if rank < 2:
            ctx.error(f"transpose needs rank >= 2 to swap the last two axes, got {type_str(x.type)}")
        perm = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    else:
        perm = tuple(p + rank if p < 0 else p for p in perm)
    shape = ctx.rule(shapes.transpose, shape_of(x), perm)
    return ctx.emit(g.TransposeOp(x, perm, with_shape(x, shape))).result


@operation("transpose", ["tensor"], perm=AttrSpec("ints", None))
def _transpose(ctx: OpContext, x, perm):
    return [build_transpose(ctx, ctx.tensor(x), perm)]


@operation("reshape", ["tensor", "shape"])
def _reshape(ctx: OpContext, x, target):
    x = ctx.tensor(x)
    shape = ctx.rule(shapes.reshape, shape_of(x), tuple(target))
    return [ctx.emit(g.ReshapeOp(x, with_shape(x, shape))).result]


@operation("concat", ["tensors"], axis=AttrSpec("int", -1))
def _concat(ctx: OpContext, inputs, axis):
    inputs = [ctx.tensor(v) for v in inputs]
    if not inputs:
        ctx.error("concat needs at least one tensor in its list")
    first = inputs[0]
    for other in inputs[1:]:
        if dtype_of(other) != dtype_of(first):
            ctx.error(
                f"concat operands have different dtypes: {type_str(first.type)} and {type_str(other.type)}"
            )
    axis = _axis(ctx, first, axis)
    shape = ctx.rule(shapes.concat, [shape_of(v) for v in inputs], axis)
    return [ctx.emit(g.ConcatOp(inputs, axis, with_shape(first, shape))).result]


@operation("slice", ["tensor"], axis=AttrSpec("int"), start=AttrSpec("int"), end=AttrSpec("int"))
def _slice(ctx: OpContext, x, axis, start, end):
    x = ctx.tensor(x)
    axis = _axis(ctx, x, axis)
    shape = ctx.rule(shapes.slice_, shape_of(x), axis, start, end)
    return [ctx.emit(g.SliceOp(x, axis, start, end, with_shape(x, shape))).result]


@operation("split", ["tensor"], parts=AttrSpec("int"), axis=AttrSpec("int", -1))
def _split(ctx: OpContext, x, parts, axis):
    x = ctx.tensor(x)
    axis = _axis(ctx, x, axis)
    shape = ctx.rule(shapes.split, shape_of(x), parts, axis)
    op = ctx.emit(g.SplitOp(x, axis, [with_shape(x, shape)] * parts))
    return list(op.results)


@operation("gather", ["tensor", "tensor"])
def _gather(ctx: OpContext, table, ids):
    table, ids = ctx.tensor(table), ctx.tensor(ids)
    if dtype_of(ids) in FLOAT_DTYPES:
        ctx.error(f"gather ids must be integers, got {type_str(ids.type)}")
    shape = ctx.rule(shapes.gather, shape_of(table), shape_of(ids))
    return [ctx.emit(g.GatherOp(table, ids, with_shape(table, shape))).result]


# --------------------------------------------------------------------------- convolution and pooling


def _pair(ctx: OpContext, name: str, value) -> tuple[int, int]:
    if len(value) == 1:
        return (value[0], value[0])
    if len(value) == 2:
        return tuple(value)
    ctx.error(f"{name} must be an integer or a list [h, w], got {list(value)}")


def _pads(ctx: OpContext, value) -> tuple[int, int, int, int]:
    """`p`, `[h, w]` or ONNX's `[top, left, bottom, right]`."""
    if len(value) == 4:
        return tuple(value)
    h, w = _pair(ctx, "padding", value)
    return (h, w, h, w)


def _same_dtype(ctx: OpContext, *values: SSAValue) -> None:
    names = {dtype_of(v) for v in values}
    if len(names) > 1:
        ctx.error(f"{ctx.name} operands have different dtypes: " + ", ".join(type_str(v.type) for v in values))


@operation(
    "conv2d", ["tensor", "tensor", "tensor?"],
    stride=AttrSpec("ints", (1,)), padding=AttrSpec("ints", (0,)),
    dilation=AttrSpec("ints", (1,)), groups=AttrSpec("int", 1), dtype=AttrSpec("dtype", None),
)
def _conv2d(ctx: OpContext, x, w, b, stride, padding, dilation, groups, dtype):
    x, w = ctx.tensor(x), ctx.tensor(w)
    b = None if b is None else ctx.tensor(b)
    _same_dtype(ctx, x, w)
    dtype = accumulation(ctx, dtype_of(x), dtype)
    strides, pads, dilations = _pair(ctx, "stride", stride), _pads(ctx, padding), _pair(ctx, "dilation", dilation)
    shape = ctx.rule(shapes.conv2d, shape_of(x), shape_of(w), strides, pads, dilations, groups)
    if b is not None and (shape_of(b) != (shape[1],) or dtype_of(b) != dtype):
        ctx.error(f"conv2d bias has type {type_str(b.type)}, needs {dtype}[{shape[1]}]")
    op = g.Conv2DOp(x, w, b, with_shape(x, shape, dtype), strides, pads, dilations, groups)
    return [ctx.emit(op).result]


def _register_pool(name: str, cls) -> None:
    @operation(name, ["tensor"], kernel=AttrSpec("ints"), stride=AttrSpec("ints", None), padding=AttrSpec("ints", (0,)))
    def build(ctx: OpContext, x, kernel, stride, padding):
        x = ctx.tensor(x)
        kernel = _pair(ctx, "kernel", kernel)
        strides = kernel if stride is None else _pair(ctx, "stride", stride)
        pads = _pads(ctx, padding)
        shape = ctx.rule(shapes.pool2d, shape_of(x), kernel, strides, pads)
        return [ctx.emit(cls(x, kernel, strides, pads, with_shape(x, shape))).result]


_register_pool("maxpool2d", g.MaxPool2DOp)
_register_pool("avgpool2d", g.AvgPool2DOp)


@operation("global_avgpool", ["tensor"])
def _global_avgpool(ctx: OpContext, x):
    x = ctx.tensor(x)
    shape = shape_of(x)
    if len(shape) != 4:
        ctx.error(f"global_avgpool needs an [N, C, H, W] input, got {type_str(x.type)}")
    return [ctx.emit(g.GlobalAvgPoolOp(x, with_shape(x, (shape[0], shape[1], 1, 1)))).result]


# --------------------------------------------------------------------------- attention (sugar)


@operation("attention", ["tensor", "tensor", "tensor"], causal=AttrSpec("bool", False), scale=AttrSpec("float", None))
def _attention(ctx: OpContext, q, k, v, causal, scale):
    """`softmax(causal_mask?((q @ transpose(k)) * scale), axis=-1) @ v`."""
    q, k, v = ctx.tensor(q), ctx.tensor(k), ctx.tensor(v)
    require_float(ctx, q)
    _same_dtype(ctx, q, k, v)
    qs, ks, vs = shape_of(q), shape_of(k), shape_of(v)
    if len(qs) < 2 or len(ks) < 2 or len(vs) < 2:
        ctx.error("attention needs q, k, v of rank >= 2")
    if qs[-1] != ks[-1]:
        ctx.error(f"attention q {type_str(q.type)} and k {type_str(k.type)} differ in head dim")
    if ks[-2] != vs[-2]:
        ctx.error(f"attention k {type_str(k.type)} and v {type_str(v.type)} differ in sequence length")
    if scale is None:
        scale = 1.0 / math.sqrt(qs[-1])
    scores = build_matmul(ctx, q, build_transpose(ctx, k, None))
    scores = build_binary(ctx, "*", scores, Scalar(scale, ctx.loc))
    if causal:
        scores = ctx.emit(g.CausalMaskOp(scores)).result
    probs = ctx.emit(g.SoftmaxOp(scores, len(shape_of(scores)) - 1)).result
    return [build_matmul(ctx, probs, v)]


DTYPE_NAMES = tuple(DTYPES)
