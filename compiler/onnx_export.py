"""
`strata export`: a graph-stage model as an ONNX model (opset 17).

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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue

from strata.compiler.diagnostics import StrataError
from strata.compiler.execution.reference import argument_names, model_function, numpy_dtype
from strata.dialects.graph import ops as g
from strata.dialects.vocabulary import dtype_of

OPSET = 17

ONNX_DTYPES = {
    "f32": "FLOAT", "f16": "FLOAT16", "bf16": "BFLOAT16", "f8e4m3": "FLOAT8E4M3FN", "f8e5m2": "FLOAT8E5M2",
    "i8": "INT8", "u8": "UINT8", "i32": "INT32", "i64": "INT64",
}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise StrataError("error: ONNX export needs the onnx package: pip install onnx") from None
    return onnx


class _Builder:
    """Nodes, initializers and fresh names of the graph being written."""

    def __init__(self):
        self.onnx = _onnx()
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


def _numpy_dtype(value: SSAValue) -> np.dtype:
    return numpy_dtype(value.type.element_type)


def _shape(value: SSAValue) -> tuple[int, ...]:
    return tuple(value.type.get_shape())


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
    to = getattr(b.onnx.TensorProto, ONNX_DTYPES[dtype_of(op.result.type.element_type)])
    return b.node("Cast", [b.name(op.input)], to=to)


def _conv(b: _Builder, op: g.Conv2DOp) -> str:
    inputs = [b.name(op.input), b.name(op.weight)] + ([b.name(op.bias)] if op.bias else [])
    kernel = _shape(op.weight)[2:]
    return b.node("Conv", inputs, kernel_shape=list(kernel), strides=list(op.strides.get_values()),
                  pads=list(op.pads.get_values()), dilations=list(op.dilations.get_values()),
                  group=op.groups.value.data)


def _reduce(op_type: str) -> Callable:
    def lower(b: _Builder, op: g.ReductionOp) -> str:
        keep = int(op.keepdims is not None)
        axes = list(op.axes.get_values())
        if op_type == "ReduceSum":  # axes is an input from opset 13, an attribute for the others until 18
            return b.node(op_type, [b.name(op.input), b.ints(axes, "axes")], keepdims=keep)
        return b.node(op_type, [b.name(op.input)], axes=axes, keepdims=keep)

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
    mean = b.node("ReduceMean", [b.node("Mul", [x, x])], axes=list(range(axis, rank)), keepdims=1)
    scale = b.node("Reciprocal", [b.node("Sqrt", [b.node("Add", [mean, b.scalar(op.epsilon.value.data, op.input)])])])
    out = b.node("Mul", [x, scale])
    return b.node("Mul", [out, b.name(op.scale)]) if op.scale else out


def _causal_mask(b: _Builder, op: g.CausalMaskOp) -> str:
    # Column > row + (T - S) is masked, as the reference does.
    s, t = _shape(op.input)[-2:]
    keep = np.arange(t)[None, :] <= np.arange(s)[:, None] + (t - s)
    masked = -448.0 if dtype_of(op.input.type.element_type) == "f8e4m3" else -np.inf
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


_LOWERINGS: dict[type[Operation], Callable] = {
    g.ConstantOp: _constant,
    g.AddOp: _binary("Add"), g.SubOp: _binary("Sub"), g.MulOp: _binary("Mul"), g.DivOp: _binary("Div"),
    g.MaximumOp: _binary("Max"), g.MinimumOp: _binary("Min"), g.PowOp: _binary("Pow"),
    g.ReluOp: _unary("Relu"), g.SigmoidOp: _unary("Sigmoid"), g.TanhOp: _unary("Tanh"), g.ExpOp: _unary("Exp"),
    g.LogOp: _unary("Log"), g.SqrtOp: _unary("Sqrt"), g.AbsOp: _unary("Abs"), g.ErfOp: _unary("Erf"),
    g.NegOp: _unary("Neg"), g.GeluOp: _gelu, g.SiluOp: _silu, g.RsqrtOp: _rsqrt, g.CastOp: _cast,
    g.MatmulOp: lambda b, op: b.node("MatMul", [b.name(op.lhs), b.name(op.rhs)]),
    g.Conv2DOp: _conv,
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
    dtype = getattr(b.onnx.TensorProto, ONNX_DTYPES[dtype_of(value.type.element_type)])
    return b.onnx.helper.make_tensor_value_info(name, dtype, list(_shape(value)))


def to_onnx(module: ModuleOp, params: Mapping[str, np.ndarray], name: str = "strata"):
    """The `onnx.ModelProto` of a graph-stage `module` with `params` as its initializers (checked)."""
    fn: func.FuncOp = model_function(module)
    if any(isinstance(op, g.CollectiveOp) for op in fn.walk()):
        raise StrataError("error: export takes an unsharded model; leave out --schedule tp=/dp=")
    b = _Builder()
    inputs = []
    for (kind, arg_name), arg in zip(argument_names(fn), fn.body.block.args, strict=True):
        b.names[arg] = arg_name
        if kind == "input":
            inputs.append(_value_info(b, arg_name, arg))
        else:
            b.initializers.append(b.onnx.numpy_helper.from_array(
                np.asarray(params[arg_name]).astype(_numpy_dtype(arg), copy=False), arg_name))
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
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
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
        Path(path).write_bytes(model.SerializeToString())
    except OSError as err:
        raise StrataError(f"error: cannot write {path}: {err.strerror}") from None
