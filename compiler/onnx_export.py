"""
`strata export`: a graph-stage model as an ONNX model (opset 17; 19 with
f8 values, 21 with i4 ones).

Assumes: an unsharded graph-stage module (one `func.func` of `graph` ops,
as the frontend makes it) and the values of its params.
Guarantees: the ONNX graph passes `onnx.checker`; its inputs are the
model's inputs (same names, order, dtypes and shapes), its outputs `out0,
out1, ...` in the model's order (as `strata run` names them), its
initializers the params keyed by their paths (`attn.0.w_qkv`); executed by
onnxruntime it computes what `strata run` does (tested on every sample).

Each graph op is one ONNX node where ONNX has the operator; otherwise a
few nodes with the same semantics, written in `_LOWERINGS`' comments:
`gelu` is the exact erf form, `silu` `x * Sigmoid(x)`, `rsqrt`
`Reciprocal(Sqrt(x))`, `rmsnorm` `x / sqrt(mean(x^2) + eps) * gamma`,
`causal_mask` a `Where` on a constant mask, a `layernorm` without gamma
gets ones. One difference stays: `gather` clamps out-of-range ids where
ONNX Gather rejects them.

Quantized ops are ONNX's own: `quantize`/`dequantize` are QuantizeLinear /
DequantizeLinear (saturating) where the scale is per tensor or per axis
(one dim not 1), else the same arithmetic spelled out (Div, Round, which
rounds half to even, Add, Clip, Cast); an integer `matmul`/`conv2d` into
`i32` is MatMulInteger/ConvInteger (`i4` operands Cast to INT8 first,
exactly), plus an Add of the conv's bias; a bf16 or f8 GEMM, an f8 conv,
Casts to f32 around MatMul/Conv (onnxruntime has no bf16 MatMul) and a
Cast to the result's dtype. A model with f8 values is written at opset 19
(the float8 types), one with `i4` at opset 21 (INT4), else at 17.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue

from strata.compiler.diagnostics import StrataError, open_output
from strata.compiler.execution.reference import NUMPY_DTYPES, argument_names, model_function, numpy_dtype
from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import INT_RANGES, dtype_name, is_float

OPSET = 17
"""The opset of a model without f8 or i4 values; `_opset` raises it for those."""

ONNX_DTYPES = {
    "f32": "FLOAT", "f16": "FLOAT16", "bf16": "BFLOAT16", "f8e4m3": "FLOAT8E4M3FN", "f8e5m2": "FLOAT8E5M2",
    "i4": "INT4", "i8": "INT8", "u8": "UINT8", "i32": "INT32", "i64": "INT64",
}
"""ONNX TensorProto type of each model-language dtype."""


def _opset(fn) -> int:
    """17; 19 where a value is f8 (ONNX's float8 types); 21 where one is `i4` (INT4)."""
    names = {dtype_name(v.type.element_type) for op in fn.walk() for v in (*op.results, *op.operands)
             if hasattr(v.type, "element_type")}
    names |= {dtype_name(a.type.element_type) for a in fn.body.block.args}
    if "i4" in names:
        return 21
    if names & {"f8e4m3", "f8e5m2"}:
        return 19
    return OPSET


def _onnx():
    try:
        import onnx
    except ImportError:
        raise StrataError("error: ONNX export needs the onnx package: pip install onnx") from None
    return onnx


class _Builder:
    """Nodes, initializers and fresh names of the graph being written."""

    def __init__(self, opset: int = OPSET):
        self.onnx = _onnx()
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.names: dict[SSAValue, str] = {}
        self.count = 0

    def fresh(self, hint: str = "t") -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def name(self, value: SSAValue) -> str:
        return self.names[value]

    def node(self, op_type: str, inputs: list[str], outputs: list[str] | None = None, **attrs) -> str:
        outputs = outputs or [self.fresh(op_type.lower())]
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outputs, **attrs))
        return outputs[0]

    def constant(self, array: np.ndarray, hint: str = "c") -> str:
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values, hint: str = "ints") -> str:
        return self.constant(np.asarray(list(values), dtype=np.int64), hint)

    def scalar(self, value: float, like: SSAValue) -> str:
        return self.constant(np.asarray(value, dtype=_numpy_dtype(like)), "scalar")

    def tensor(self, array: np.ndarray, dtype: str, hint: str = "c") -> str:
        """An initializer of model dtype `dtype` (`i4` packed two to a byte, as ONNX's INT4)."""
        name = self.fresh(hint)
        self.initializers.append(_initializer(self.onnx, np.asarray(array), dtype, name))
        return name

    def onnx_type(self, dtype: str) -> int:
        return getattr(self.onnx.TensorProto, ONNX_DTYPES[dtype])

    def cast(self, name: str, dtype: str) -> str:
        return self.node("Cast", [name], to=self.onnx_type(dtype))


def _initializer(onnx, array: np.ndarray, dtype: str, name: str):
    if dtype == "i4":
        values = array.astype(np.int64)
        return onnx.helper.make_tensor(name, onnx.TensorProto.INT4, list(array.shape), values.flatten().tolist())
    return onnx.numpy_helper.from_array(array.astype(NUMPY_DTYPES[dtype], copy=False), name)

def _numpy_dtype(value: SSAValue) -> np.dtype:
    return numpy_dtype(value.type.element_type)


def _shape(value: SSAValue) -> tuple[int, ...]:
    return tuple(value.type.get_shape())


def _dtype(value: SSAValue) -> str:
    return dtype_name(value.type.element_type)


# --------------------------------------------------------------------------- op lowerings


def _binary(op_type: str) -> Callable:
    return lambda b, op: b.node(op_type, [b.name(op.lhs), b.name(op.rhs)])


def _unary(op_type: str) -> Callable:
    return lambda b, op: b.node(op_type, [b.name(op.input)])


def _constant(b: _Builder, op: g.ConstantOp) -> str:
    return b.constant(np.full(_shape(op.result), op.value.value.data, dtype=_numpy_dtype(op.result)), "const")


def _gelu(b: _Builder, op) -> str:
    # x * (1 + erf(x / sqrt(2))) / 2, the exact form (ONNX Gelu needs opset 20).
    x = b.name(op.input)
    erf = b.node("Erf", [b.node("Div", [x, b.scalar(math.sqrt(2.0), op.input)])])
    return b.node("Mul", [b.node("Mul", [x, b.node("Add", [erf, b.scalar(1.0, op.input)])]), b.scalar(0.5, op.input)])


def _silu(b: _Builder, op) -> str:
    x = b.name(op.input)
    return b.node("Mul", [x, b.node("Sigmoid", [x])])


def _rsqrt(b: _Builder, op) -> str:
    return b.node("Reciprocal", [b.node("Sqrt", [b.name(op.input)])])


def _cast(b: _Builder, op: g.CastOp) -> str:
    return b.cast(b.name(op.input), dtype_name(op.result.type.element_type))


def _reduce_node(b: _Builder, op_type: str, x: str, axes: list[int], keep: int) -> str:
    # axes is an input of ReduceSum from opset 13, an attribute of the others until 18.
    if op_type == "ReduceSum" or b.opset >= 18:
        return b.node(op_type, [x, b.ints(axes, "axes")], keepdims=keep)
    return b.node(op_type, [x], axes=axes, keepdims=keep)


def _reduce(op_type: str) -> Callable:
    def lower(b: _Builder, op: g.ReductionOp) -> str:
        keep = int(op.keepdims is not None)
        axes = list(op.axes.get_values())
        return _reduce_node(b, op_type, b.name(op.input), axes, keep)

    return lower


def _axis_op(op_type: str) -> Callable:
    return lambda b, op: b.node(op_type, [b.name(op.input)], axis=op.axis.value.data)


def _layernorm(b: _Builder, op: g.LayerNormOp) -> str:
    normalized = _shape(op.input)[op.axis.value.data:]
    scale = b.name(op.scale) if op.scale else b.constant(np.ones(normalized, _numpy_dtype(op.input)), "ones")
    inputs = [b.name(op.input), scale] + ([b.name(op.bias)] if op.bias else [])
    return b.node("LayerNormalization", inputs, axis=op.axis.value.data, epsilon=op.epsilon.value.data)


def _rmsnorm(b: _Builder, op: g.RmsNormOp) -> str:
    # x / sqrt(mean(x * x over axis..last) + eps) * gamma
    x = b.name(op.input)
    rank = len(_shape(op.input))
    axis = op.axis.value.data % rank
    mean = _reduce_node(b, "ReduceMean", b.node("Mul", [x, x]), list(range(axis, rank)), 1)
    scale = b.node("Reciprocal", [b.node("Sqrt", [b.node("Add", [mean, b.scalar(op.epsilon.value.data, op.input)])])])
    out = b.node("Mul", [x, scale])
    return b.node("Mul", [out, b.name(op.scale)]) if op.scale else out


def _causal_mask(b: _Builder, op: g.CausalMaskOp) -> str:
    # Column > row + (T - S) is masked, as the reference does.
    s, t = _shape(op.input)[-2:]
    keep = np.arange(t)[None, :] <= np.arange(s)[:, None] + (t - s)
    masked = -448.0 if dtype_name(op.input.type.element_type) == "f8e4m3" else -np.inf
    return b.node("Where", [b.constant(keep, "causal"), b.name(op.input), b.scalar(masked, op.input)])


def _transpose(b: _Builder, op: g.TransposeOp) -> str:
    rank = len(_shape(op.input))
    return b.node("Transpose", [b.name(op.input)], perm=[p % rank for p in op.perm.get_values()])


def _reshape(b: _Builder, op: g.ReshapeOp) -> str:
    return b.node("Reshape", [b.name(op.input), b.ints(_shape(op.result), "shape")])


def _concat(b: _Builder, op: g.ConcatOp) -> str:
    return b.node("Concat", [b.name(v) for v in op.inputs], axis=op.axis.value.data)


def _slice(b: _Builder, op: g.SliceOp) -> str:
    return b.node("Slice", [b.name(op.input), b.ints([op.start.value.data], "starts"),
                            b.ints([op.end.value.data], "ends"), b.ints([op.axis.value.data], "axes")])


def _split(b: _Builder, op: g.SplitOp) -> list[str]:
    axis = op.axis.value.data
    sizes = [_shape(r)[axis] for r in op.outputs]
    outputs = [b.fresh("split") for _ in op.outputs]
    b.node("Split", [b.name(op.input), b.ints(sizes, "split")], outputs, axis=axis)
    return outputs


def _pool(op_type: str) -> Callable:
    def lower(b: _Builder, op: g.Pool2DOp) -> str:
        extra = {"count_include_pad": 0} if op_type == "AveragePool" else {}
        return b.node(op_type, [b.name(op.input)], kernel_shape=list(op.kernel.get_values()),
                      strides=list(op.strides.get_values()), pads=list(op.pads.get_values()), **extra)

    return lower


def _per_axis(b: _Builder, value: SSAValue, like: SSAValue) -> tuple[str, int] | None:
    """
    A scale or zero point `value` (broadcast to `like`) as QuantizeLinear's
    operand and `axis`: a scalar, or 1-D along the one dim where it is not 1;
    None when it varies along several dims (no ONNX form).
    """
    rank = len(_shape(like))
    dims = (1,) * (rank - len(_shape(value))) + _shape(value)
    varying = [d for d, n in enumerate(dims) if n != 1]
    if not varying:
        return (b.name(value) if not _shape(value) else b.node("Reshape", [b.name(value), b.ints([], "scalar")])), 1
    if len(varying) > 1:
        return None
    axis = varying[0]
    name = b.name(value)
    if len(_shape(value)) != 1:
        name = b.node("Reshape", [name, b.ints([dims[axis]], "axis_shape")])
    return name, axis


def _linear_operands(b: _Builder, op, like: SSAValue, zero_dtype: str | None) -> tuple[str, str | None, int] | None:
    """
    QuantizeLinear/DequantizeLinear's scale (as f32), zero point (zeros of
    `zero_dtype` when `op` has none, which fixes QuantizeLinear's output
    type; None without either) and
    `axis`, both of one shape as ONNX needs; None without an ONNX form.
    """
    scale = _per_axis(b, op.scale, like)
    zero = _per_axis(b, op.zero_point, like) if op.zero_point is not None else None
    if scale is None or (op.zero_point is not None and zero is None):
        return None
    sizes = {_size(op.scale)} | ({_size(op.zero_point)} if zero else set())
    count = max(sizes)
    axes = {pair[1] for v, pair in ((op.scale, scale), (op.zero_point, zero)) if pair is not None and _size(v) > 1}
    if len(axes) > 1:
        return None
    axis = axes.pop() if axes else 1
    scale_name = scale[0] if _dtype(op.scale) == "f32" else b.cast(scale[0], "f32")
    if _size(op.scale) != count:
        scale_name = b.node("Expand", [scale_name, b.ints([count], "linear_shape")])
    if zero is None and zero_dtype is None:
        return scale_name, None, axis
    if zero is None:
        return scale_name, b.tensor(np.zeros([count] if count > 1 else []), zero_dtype, "zero_point"), axis
    zero_name = zero[0] if _size(op.zero_point) == count else b.node("Expand", [zero[0], b.ints([count], "linear_shape")])
    return scale_name, zero_name, axis


def _as_f32(b: _Builder, value: SSAValue) -> str:
    return b.name(value) if _dtype(value) == "f32" else b.cast(b.name(value), "f32")


def _size(value: SSAValue) -> int:
    return math.prod(_shape(value))


def _quantize(b: _Builder, op: g.QuantizeOp) -> str:
    # QuantizeLinear divides in the scale's type: both in f32, as the reference.
    out = _dtype(op.result)
    x = b.name(op.input) if _dtype(op.input) == "f32" else b.cast(b.name(op.input), "f32")
    operands = _linear_operands(b, op, op.input, out)
    if operands is not None:
        scale, zero, axis = operands
        return b.node("QuantizeLinear", [x, scale, zero], axis=axis)
    # Spelled out: clip(round(x / scale) + zero_point) (ONNX Round is half to even).
    scaled = b.node("Round", [b.node("Div", [x, _as_f32(b, op.scale)])])
    if op.zero_point is not None:
        # Exact: Round gives an integer, and past 2^24 the Clip saturates anyway.
        scaled = b.node("Add", [scaled, _as_f32(b, op.zero_point)])
    if out not in INT_RANGES:
        raise StrataError(f"error: ONNX export cannot write a quantize to {out} with a scale over several dims")
    lo, hi = INT_RANGES[out]
    clipped = b.node("Clip", [scaled, b.tensor(np.float32(lo), "f32", "lo"), b.tensor(np.float32(hi), "f32", "hi")])
    return b.cast(clipped, out)


def _dequantize(b: _Builder, op: g.DequantizeOp) -> str:
    q, out = b.name(op.input), _dtype(op.result)
    # DequantizeLinear takes no zero point on INT32.
    operands = None if _dtype(op.input) == "i32" and op.zero_point is not None else \
        _linear_operands(b, op, op.input, None)
    if operands is not None:
        scale, zero, axis = operands
        inputs = [q, scale] + ([zero] if zero is not None else [])
        result = b.node("DequantizeLinear", inputs, axis=axis)
    else:
        # Spelled out: (q - zero_point) * scale, the difference exact in i64.
        if not is_float(op.input.type.element_type):
            q = b.cast(q, "i64")
            if op.zero_point is not None:
                q = b.node("Sub", [q, b.cast(b.name(op.zero_point), "i64")])
        result = b.node("Mul", [b.cast(q, "f32"), _as_f32(b, op.scale)])
    return result if out == "f32" else b.cast(result, out)


def _as_int8(b: _Builder, value: SSAValue) -> str:
    """An i4 operand as INT8 (exact), for MatMulInteger/ConvInteger; 8-bit ones as they are."""
    return b.cast(b.name(value), "i8") if _dtype(value) == "i4" else b.name(value)


def _matmul(b: _Builder, op: g.MatmulOp) -> str:
    lhs, rhs, out = _dtype(op.lhs), _dtype(op.rhs), _dtype(op.result)
    if lhs == out and rhs == out and out not in ("bf16", "f8e4m3", "f8e5m2"):
        return b.node("MatMul", [b.name(op.lhs), b.name(op.rhs)])
    if out == "i32" and lhs != "i32":
        return b.node("MatMulInteger", [_as_int8(b, op.lhs), _as_int8(b, op.rhs)])
    # bf16 and f8 operands (no MatMul for them in onnxruntime): products and
    # sums in f32, rounded once to `out`, as the reference computes them.
    product = b.node("MatMul", [b.cast(b.name(op.lhs), "f32"), b.cast(b.name(op.rhs), "f32")])
    return product if out == "f32" else b.cast(product, out)


def _conv(b: _Builder, op: g.Conv2DOp) -> str:
    x, w, out = _dtype(op.input), _dtype(op.weight), _dtype(op.result)
    kernel = _shape(op.weight)[2:]
    attrs = dict(kernel_shape=list(kernel), strides=list(op.strides.get_values()),
                 pads=list(op.pads.get_values()), dilations=list(op.dilations.get_values()),
                 group=op.groups.value.data)
    if x == out and w == out:
        inputs = [b.name(op.input), b.name(op.weight)] + ([b.name(op.bias)] if op.bias else [])
        return b.node("Conv", inputs, **attrs)
    if out == "i32":
        result = b.node("ConvInteger", [_as_int8(b, op.input), _as_int8(b, op.weight)], **attrs)
        return b.node("Add", [result, b.node("Reshape", [b.name(op.bias), b.ints([-1, 1, 1], "bias_shape")])]) \
            if op.bias else result
    inputs = [b.cast(b.name(op.input), "f32"), b.cast(b.name(op.weight), "f32")]
    if op.bias:
        inputs.append(b.cast(b.name(op.bias), "f32") if _dtype(op.bias) != "f32" else b.name(op.bias))
    result = b.node("Conv", inputs, **attrs)
    return result if out == "f32" else b.cast(result, out)


_LOWERINGS: dict[type[Operation], Callable] = {
    g.ConstantOp: _constant,
    g.AddOp: _binary("Add"), g.SubOp: _binary("Sub"), g.MulOp: _binary("Mul"), g.DivOp: _binary("Div"),
    g.MaximumOp: _binary("Max"), g.MinimumOp: _binary("Min"), g.PowOp: _binary("Pow"),
    g.ReluOp: _unary("Relu"), g.SigmoidOp: _unary("Sigmoid"), g.TanhOp: _unary("Tanh"), g.ExpOp: _unary("Exp"),
    g.LogOp: _unary("Log"), g.SqrtOp: _unary("Sqrt"), g.AbsOp: _unary("Abs"), g.ErfOp: _unary("Erf"),
    g.NegOp: _unary("Neg"), g.GeluOp: _gelu, g.SiluOp: _silu, g.RsqrtOp: _rsqrt, g.CastOp: _cast,
    g.MatmulOp: _matmul, g.Conv2DOp: _conv, g.QuantizeOp: _quantize, g.DequantizeOp: _dequantize,
    g.SumOp: _reduce("ReduceSum"), g.MeanOp: _reduce("ReduceMean"), g.ReduceMaxOp: _reduce("ReduceMax"),
    g.ReduceMinOp: _reduce("ReduceMin"),
    g.SoftmaxOp: _axis_op("Softmax"), g.LogSoftmaxOp: _axis_op("LogSoftmax"),
    g.LayerNormOp: _layernorm, g.RmsNormOp: _rmsnorm, g.CausalMaskOp: _causal_mask,
    g.TransposeOp: _transpose, g.ReshapeOp: _reshape, g.ConcatOp: _concat, g.SliceOp: _slice, g.SplitOp: _split,
    g.GatherOp: lambda b, op: b.node("Gather", [b.name(op.table), b.name(op.ids)], axis=0),
    g.MaxPool2DOp: _pool("MaxPool"), g.AvgPool2DOp: _pool("AveragePool"),
    g.GlobalAvgPoolOp: lambda b, op: b.node("GlobalAveragePool", [b.name(op.input)]),
}


# --------------------------------------------------------------------------- the model


def _value_info(b: _Builder, name: str, value: SSAValue):
    return b.onnx.helper.make_tensor_value_info(name, b.onnx_type(_dtype(value)), list(_shape(value)))


def to_onnx(module: ModuleOp, params: Mapping[str, np.ndarray], name: str = "strata"):
    """The `onnx.ModelProto` of a graph-stage `module` with `params` as its initializers (checked)."""
    fn: func.FuncOp = model_function(module)
    if any(isinstance(op, g.CollectiveOp) for op in fn.walk()):
        raise StrataError("error: export takes an unsharded model; leave out --schedule tp=/dp=")
    b = _Builder(_opset(fn))
    inputs = []
    for (kind, arg_name), arg in zip(argument_names(fn), fn.body.block.args, strict=True):
        b.names[arg] = arg_name
        if kind == "input":
            inputs.append(_value_info(b, arg_name, arg))
        else:
            b.initializers.append(_initializer(b.onnx, np.asarray(params[arg_name]), _dtype(arg), arg_name))
    outputs = []
    for op in fn.body.block.ops:
        if isinstance(op, func.ReturnOp):
            for index, value in enumerate(op.operands):
                out = f"out{index}"
                b.node("Identity", [b.name(value)], [out])
                outputs.append(_value_info(b, out, value))
            continue
        lower = _LOWERINGS.get(type(op))
        if lower is None:
            raise StrataError(f"error: ONNX export has no lowering for '{op.name}' yet")
        produced = lower(b, op)
        for result, out in zip(op.results, produced if isinstance(produced, list) else [produced], strict=True):
            b.names[result] = out
    onnx = b.onnx
    graph = onnx.helper.make_graph(b.nodes, name, inputs, outputs, b.initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", b.opset)],
                                   producer_name="strata")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        raise StrataError(f"error: the exported ONNX model does not pass onnx.checker: {err}") from None
    return model


def export(module: ModuleOp, params: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write `module` with `params` to `path` as ONNX."""
    model = to_onnx(module, params, Path(path).stem)
    try:
        with open_output(path, "wb") as f:
            f.write(model.SerializeToString())
    except OSError as err:
        raise StrataError(f"error: cannot write {path}: {err.strerror}") from None
