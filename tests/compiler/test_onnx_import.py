"""
ONNX import (`compiler/onnx_import.py`): small graphs built with `onnx.helper`,
imported, compiled with the frontend, run on the NumPy reference and compared
with onnxruntime.
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from strata.compiler.diagnostics import StrataError  # noqa: E402
from strata.compiler.execution.reference import run_module  # noqa: E402
from strata.compiler.frontend import compile_source  # noqa: E402
from strata.compiler.onnx_import import import_onnx, import_proto, write_import  # noqa: E402

F32, F16, I64, I32 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT32
RNG = np.random.default_rng(0)


def w(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def i64(*values):
    return np.array(values, np.int64)


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def build(nodes, inputs, outputs, inits=None, opset=17):
    """A model: `inputs` / `outputs` are `{name: (elem, shape)}` (output shapes may be None)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [vi(n, e, s) for n, (e, s) in inputs.items()],
        [vi(n, e, s) for n, (e, s) in outputs.items()],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def feeds_for(model, dims=None, positive=False, int_high=10):
    dims = dims or {}
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else dims[d.dim_param] for d in tt.shape.dim]
        if tt.elem_type in (I64, I32):
            dtype = np.int64 if tt.elem_type == I64 else np.int32
            feeds[inp.name] = RNG.integers(0, int_high, shape).astype(dtype)
        else:
            x = RNG.standard_normal(shape).astype(np.float32)
            feeds[inp.name] = np.abs(x) + 0.1 if positive else x
    return feeds


def check(model, tmp_path, dims=None, feeds=None, positive=False, int_high=10):
    """Import `model`, compile and run it, compare with onnxruntime; returns the import."""
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    imported = import_onnx(str(path), dims or {})
    module = compile_source(imported.text, "m.model")
    feeds = feeds or feeds_for(model, dims, positive, int_high)
    got = run_module(module, {imported.inputs[k]: v for k, v in feeds.items()}, imported.weights)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, feeds)
    assert len(got) == len(want)
    for a, b in zip(want, got):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, imported.text
        if a.dtype.kind in "iu":
            np.testing.assert_array_equal(a, b)
            continue
        tol = 1e-4 if a.dtype == np.float32 else 2e-3  # f16: one ulp of rounding order
        a, b = a.astype(np.float64), b.astype(np.float64)
        finite = np.isfinite(a)
        np.testing.assert_array_equal(a[~finite], b[~finite])  # -inf of masks, exactly
        a, b = a[finite], b[finite]
        assert np.abs(a - b).max() <= tol * max(np.abs(a).max(), 1e-30), imported.text
    return imported


def node(op, inputs, outputs=("y",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


def one(op, x_shape, *, inputs=("x",), inits=None, opset=17, extra_inputs=None, elem=F32, **attrs):
    """A one-node model `y = op(x, ...)`."""
    ins = {"x": (elem, list(x_shape))}
    ins.update(extra_inputs or {})
    return build([node(op, inputs, **attrs)], ins, {"y": (elem, None)}, inits, opset)


# --------------------------------------------------------------------------- one op at a time

X4 = [2, 3, 6, 6]
SINGLE = {
    "conv": lambda: one("Conv", X4, inputs=("x", "w", "b"), inits={"w": w(4, 3, 3, 3), "b": w(4)}, pads=[1, 1, 1, 1], strides=[2, 2]),
    "conv_nobias_dilated": lambda: one("Conv", X4, inputs=("x", "w"), inits={"w": w(4, 3, 2, 2)}, dilations=[2, 2]),
    "conv_grouped": lambda: one("Conv", X4, inputs=("x", "w"), inits={"w": w(6, 1, 3, 3)}, group=3, pads=[1, 1, 1, 1]),
    "conv_asym_pads": lambda: one("Conv", X4, inputs=("x", "w"), inits={"w": w(2, 3, 3, 3)}, pads=[0, 1, 1, 2]),
    "conv_same_upper": lambda: one("Conv", X4, inputs=("x", "w"), inits={"w": w(2, 3, 2, 2)}, auto_pad="SAME_UPPER", strides=[2, 2]),
    "batchnorm": lambda: one(
        "BatchNormalization", X4, inputs=("x", "s", "b", "m", "v"),
        inits={"s": w(3), "b": w(3), "m": w(3), "v": np.abs(w(3)) + 0.5}, epsilon=1e-3,
    ),
    "relu": lambda: one("Relu", [2, 5]),
    "sigmoid": lambda: one("Sigmoid", [2, 5]),
    "tanh": lambda: one("Tanh", [2, 5]),
    "erf": lambda: one("Erf", [2, 5]),
    "gelu": lambda: one("Gelu", [2, 5], opset=20),
    "gelu_tanh": lambda: one("Gelu", [2, 5], opset=20, approximate="tanh"),
    "exp": lambda: one("Exp", [2, 5]),
    "abs": lambda: one("Abs", [2, 5]),
    "neg": lambda: one("Neg", [2, 5]),
    "reciprocal": lambda: one("Reciprocal", [2, 5]),
    "hardsigmoid": lambda: one("HardSigmoid", [2, 5]),
    "hardswish": lambda: one("HardSwish", [2, 5], opset=17),
    "leakyrelu": lambda: one("LeakyRelu", [2, 5], alpha=0.1),
    "clip": lambda: one("Clip", [2, 5], inputs=("x", "lo", "hi"), inits={"lo": np.float32(-0.5), "hi": np.float32(0.6)}),
    "clip_min_only": lambda: one("Clip", [2, 5], inputs=("x", "lo"), inits={"lo": np.float32(0.0)}),
    "add_broadcast": lambda: one("Add", [2, 3, 4], inputs=("x", "z"), extra_inputs={"z": (F32, [4])}),
    "sub_init": lambda: one("Sub", [2, 3, 4], inputs=("c", "x"), inits={"c": w(3, 1)}),
    "mul_scalar": lambda: one("Mul", [2, 3, 4], inputs=("x", "c"), inits={"c": np.array([-1.5], np.float32)}),
    "div_scalar": lambda: one("Div", [2, 3, 4], inputs=("x", "c"), inits={"c": np.float32(8.0)}),
    "div_broadcast_up": lambda: one("Div", [4], inputs=("x", "c"), inits={"c": np.abs(w(2, 1, 1)) + 1}),
    "pow_square": lambda: one("Pow", [2, 3, 4], inputs=("x", "e"), inits={"e": np.float32(2.0)}),
    "pow_int_exponent": lambda: one("Pow", [2, 3, 4], inputs=("x", "e"), inits={"e": np.int64(3)}),
    "max": lambda: one("Max", [2, 3], inputs=("x", "z"), extra_inputs={"z": (F32, [3])}),
    "min3": lambda: one("Min", [2, 3], inputs=("x", "z", "c"), extra_inputs={"z": (F32, [3])}, inits={"c": w(2, 1)}),
    "sum3": lambda: one("Sum", [2, 3], inputs=("x", "x", "c"), inits={"c": w(3)}),
    "matmul_weight": lambda: one("MatMul", [2, 3, 4], inputs=("x", "m"), inits={"m": w(4, 5)}),
    "matmul_batched": lambda: one("MatMul", [2, 3, 4], inputs=("x", "z"), extra_inputs={"z": (F32, [2, 4, 5])}),
    "matmul_vector": lambda: one("MatMul", [2, 3, 4], inputs=("x", "m"), inits={"m": w(4)}),
    "matmul_vector_lhs": lambda: one("MatMul", [4], inputs=("x", "m"), inits={"m": w(2, 4, 3)}),
    "gemm": lambda: one("Gemm", [3, 4], inputs=("x", "m", "c"), inits={"m": w(5, 4), "c": w(5)}, transB=1, alpha=0.5, beta=2.0),
    "gemm_transA": lambda: one("Gemm", [4, 3], inputs=("x", "m"), inits={"m": w(4, 5)}, transA=1),
    "maxpool": lambda: one("MaxPool", X4, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "avgpool": lambda: one("AveragePool", X4, kernel_shape=[2, 2], strides=[2, 2]),
    "avgpool_pad": lambda: one("AveragePool", X4, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    "globalavgpool": lambda: one("GlobalAveragePool", X4),
    "globalmaxpool": lambda: one("GlobalMaxPool", X4),
    "flatten": lambda: one("Flatten", X4, axis=2),
    "reshape": lambda: one("Reshape", [2, 3, 4], inputs=("x", "s"), inits={"s": i64(0, -1, 2)}),
    "transpose": lambda: one("Transpose", [2, 3, 4], perm=[2, 0, 1]),
    "transpose_default": lambda: one("Transpose", [2, 3, 4]),
    "squeeze": lambda: one("Squeeze", [2, 1, 4, 1], inputs=("x", "a"), inits={"a": i64(1, -1)}),
    "squeeze_attr": lambda: one("Squeeze", [2, 1, 4], opset=11, axes=[1]),
    "unsqueeze": lambda: one("Unsqueeze", [2, 4], inputs=("x", "a"), inits={"a": i64(0, 3)}),
    "concat": lambda: one("Concat", [2, 3], inputs=("x", "c", "x"), inits={"c": w(2, 2)}, axis=1),
    "split_equal": lambda: build(
        [node("Split", ["x", "s"], ["a", "b"], axis=1), node("Sub", ["a", "b"])],
        {"x": (F32, [2, 6])}, {"y": (F32, None)}, {"s": i64(3, 3)},
    ),
    "split_num_outputs": lambda: build(
        [node("Split", ["x"], ["a", "b", "c"], axis=-1, num_outputs=3), node("Concat", ["c", "a", "b"], axis=-1)],
        {"x": (F32, [2, 6])}, {"y": (F32, None)}, opset=18,
    ),
    "split_unequal": lambda: build(
        [node("Split", ["x", "s"], ["a", "b"], axis=1), node("MatMul", ["a", "b"])],
        {"x": (F32, [4, 6])}, {"y": (F32, None)}, {"s": i64(4, 2)},
    ),
    "slice": lambda: one(
        "Slice", [4, 5, 6], inputs=("x", "st", "en", "ax"),
        inits={"st": i64(1, -4), "en": i64(2**63 - 1, -1), "ax": i64(0, 2)},
    ),
    "slice_no_axes": lambda: one("Slice", [4, 5], inputs=("x", "st", "en"), inits={"st": i64(0, 1), "en": i64(2, 3)}),
    "gather_embedding": lambda: build(
        [node("Gather", ["table", "ids"])], {"ids": (I64, [2, 3])}, {"y": (F32, None)}, {"table": w(10, 4)},
    ),
    "gather_scalar_index": lambda: one("Gather", [2, 5, 3], inputs=("x", "i"), inits={"i": np.int64(-2)}, axis=1),
    "gather_const_ids": lambda: one("Gather", [2, 5, 3], inputs=("x", "i"), inits={"i": i64(4, 0, 4)}, axis=1),
    "gather_contiguous": lambda: one("Gather", [2, 5, 3], inputs=("x", "i"), inits={"i": i64(1, 2, 3)}, axis=1),
    "gather_dynamic_axis1": lambda: build(
        [node("Gather", ["table", "ids"], axis=1)], {"ids": (I64, [2])}, {"y": (F32, None)}, {"table": w(3, 10, 4)},
    ),
    "softmax": lambda: one("Softmax", [2, 3, 4]),
    "softmax_axis1": lambda: one("Softmax", [2, 3, 4], axis=1),
    "softmax_opset11": lambda: one("Softmax", [2, 3, 4], opset=11, axis=1),
    "logsoftmax": lambda: one("LogSoftmax", [2, 3, 4]),
    "layernorm": lambda: one("LayerNormalization", [2, 3, 8], inputs=("x", "g", "b"), inits={"g": w(8), "b": w(8)}),
    "layernorm_axis": lambda: one("LayerNormalization", [2, 3, 8], inputs=("x", "g"), inits={"g": w(3, 8)}, axis=-2, epsilon=1e-3),
    "reducemean_attr": lambda: one("ReduceMean", [2, 3, 4], axes=[-1], opset=13),
    "reducesum_input": lambda: one("ReduceSum", [2, 3, 4], inputs=("x", "a"), inits={"a": i64(0, 2)}, keepdims=0, opset=13),
    "reducemax_18": lambda: one("ReduceMax", [2, 3, 4], inputs=("x", "a"), inits={"a": i64(1)}, opset=18),
    "reducemean_all": lambda: one("ReduceMean", [2, 3, 4], keepdims=0, opset=18),
    "reducel2": lambda: one("ReduceL2", [2, 3, 4], inputs=("x", "a"), inits={"a": i64(-1)}, opset=18),
    "cast_f16": lambda: build(
        [node("Cast", ["x"], ["h"], to=F16), node("Mul", ["h", "h"])], {"x": (F32, [2, 5])}, {"y": (F16, None)},
    ),
    "cast_int": lambda: build(
        [node("Mul", ["x", "c"], ["s"]), node("Cast", ["s"], to=I32)], {"x": (F32, [2, 5])}, {"y": (I32, None)},
        {"c": np.float32(10.0)},
    ),
    "constant_identity": lambda: build(
        [node("Constant", [], ["c"], value=numpy_helper.from_array(w(5), "c")), node("Identity", ["x"], ["i"]),
         node("Add", ["i", "c"])],
        {"x": (F32, [2, 5])}, {"y": (F32, None)},
    ),
    "where_const_other": lambda: one(
        "Where", [3, 4], inputs=("m", "x", "c"),
        inits={"m": RNG.random((3, 4)) > 0.5, "c": w(4)},
    ),
    "where_const_first": lambda: one(
        "Where", [3, 4], inputs=("m", "c", "x"),
        inits={"m": RNG.random((3, 1)) > 0.5, "c": np.float32(-3.0)},
    ),
    "where_both_dynamic": lambda: one(
        "Where", [3, 4], inputs=("m", "x", "z"), extra_inputs={"z": (F32, [3, 4])},
        inits={"m": RNG.random((4,)) > 0.5},
    ),
    "where_causal": lambda: one(
        "Where", [2, 4, 4], inputs=("m", "x", "c"),
        inits={"m": np.tril(np.ones((4, 4), bool)), "c": np.float32(-np.inf)},
    ),
    "add_causal_mask": lambda: one(
        "Add", [2, 3, 5], inputs=("x", "m"),
        inits={"m": np.triu(np.full((3, 5), -np.inf, np.float32), k=3)},
    ),
    "expand": lambda: one("Expand", [3, 1], inputs=("x", "s"), inits={"s": i64(2, 3, 4)}),
    "tile": lambda: one("Tile", [2, 3], inputs=("x", "r"), inits={"r": i64(2, 2)}),
    "dropout": lambda: one("Dropout", [2, 3]),
    "shape_chain": lambda: build(
        [
            node("Shape", ["x"], ["sh"]),
            node("Gather", ["sh", "zero"], ["n"], axis=0),
            node("Unsqueeze", ["n", "ax0"], ["n1"]),
            node("Concat", ["n1", "minus1"], ["target"], axis=0),
            node("Reshape", ["x", "target"]),
        ],
        {"x": (F32, ["batch", 3, 4])}, {"y": (F32, None)},
        {"zero": np.int64(0), "ax0": i64(0), "minus1": i64(-1)},
    ),
}


@pytest.mark.parametrize("case", sorted(SINGLE))
def test_single_op(case, tmp_path):
    model = SINGLE[case]()
    dims = {"batch": 2} if case == "shape_chain" else None
    imported = check(model, tmp_path, dims=dims)
    if case == "shape_chain":
        assert "let batch = 2" in imported.text
        body = imported.text.split("{")[1]
        assert [line.strip() for line in body.strip().splitlines()] == ["y = reshape(x, [2, 12])", "return y", "}"]


def test_positive_only_ops(tmp_path):
    for op in ("Log", "Sqrt"):
        check(one(op, [2, 5]), tmp_path, positive=True)
    check(one("Pow", [2, 3], inputs=("x", "e"), inits={"e": np.float32(0.5)}), tmp_path, positive=True)


def test_causal_masks_become_causal_mask(tmp_path):
    text = check(SINGLE["where_causal"](), tmp_path).text
    assert "causal_mask(x)" in text
    text = check(SINGLE["add_causal_mask"](), tmp_path).text
    assert "causal_mask(x)" in text


# --------------------------------------------------------------------------- blocks


def _cnn():
    """Conv+BN+Relu, a grouped conv, SiLU, GlobalAveragePool, Flatten, Gemm."""
    inits = {
        "w1": w(8, 3, 3, 3), "b1": w(8),
        "bn_s": w(8) + 1, "bn_b": w(8), "bn_m": w(8), "bn_v": np.abs(w(8)) + 0.5,
        "w2": w(8, 2, 3, 3),
        "bn2_s": w(8) + 1, "bn2_b": w(8), "bn2_m": w(8), "bn2_v": np.abs(w(8)) + 0.5,
        "fc_w": w(10, 8), "fc_b": w(10),
    }
    nodes = [
        node("Conv", ["image", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"]),
        node("Relu", ["n1"], ["r1"]),
        node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=4),
        node("BatchNormalization", ["c2", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["n2"]),
        node("Sigmoid", ["n2"], ["sg"]),
        node("Mul", ["n2", "sg"], ["silu"]),
        node("MaxPool", ["silu"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("GlobalAveragePool", ["p"], ["gap"]),
        node("Flatten", ["gap"], ["flat"], axis=1),
        node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    return build(nodes, {"image": (F32, ["batch", 3, 16, 16])}, {"logits": (F32, ["batch", 10])}, inits)


def test_cnn_block(tmp_path):
    imported = check(_cnn(), tmp_path, dims={"batch": 2})
    text = imported.text
    assert "BatchNormalization" not in text and "bn_folded" not in text
    assert text.count("conv2d(") == 2 and "silu(" in text and "sigmoid" not in text
    assert "model m(image: f32[batch, 3, 16, 16]) -> f32[2, 10]" in text
    assert imported.outputs == ["logits"]
    # Folded weights are params; the original BN tensors are not.
    assert not any(k.startswith("bn") for k in imported.weights)


def _transformer(S=4, D=8, H=2, V=11):
    dh = D // H
    inits = {
        "wte": w(V, D), "wpe": w(S, D),
        "ln1_g": w(D) + 1, "ln1_b": w(D),
        "w_qkv": w(D, 3 * D), "b_qkv": w(3 * D),
        "w_o": w(D, D),
        "ln2_g": w(D) + 1, "ln2_b": w(D),
        "w1": w(D, 4 * D), "w2": w(4 * D, D),
        "heads": i64(0, 0, H, dh), "merge": i64(0, 0, D),
        "scale": np.float32(np.sqrt(dh)),
        "mask": np.tril(np.ones((1, 1, S, S), bool)),
        "fill": np.float32(-np.inf),
        "sqrt2": np.float32(np.sqrt(2.0)), "one": np.float32(1.0), "half": np.float32(0.5),
        "st": i64(0), "en": i64(S), "ax": i64(1),
        "pos_ids": np.arange(S, dtype=np.int64),
    }
    nodes = [
        node("Gather", ["wte", "tokens"], ["tok"]),
        node("Gather", ["wpe", "pos_ids"], ["pos"]),
        node("Add", ["tok", "pos"], ["x0"]),
        node("LayerNormalization", ["x0", "ln1_g", "ln1_b"], ["h"], axis=-1, epsilon=1e-5),
        node("MatMul", ["h", "w_qkv"], ["qkv0"]),
        node("Add", ["qkv0", "b_qkv"], ["qkv"]),
        node("Split", ["qkv"], ["q", "k", "v"], axis=2, num_outputs=3),
    ]
    for t in "qkv":
        nodes += [
            node("Reshape", [t, "heads"], [f"{t}r"]),
            node("Transpose", [f"{t}r"], [f"{t}h"], perm=[0, 2, 3, 1] if t == "k" else [0, 2, 1, 3]),
        ]
    nodes += [
        node("MatMul", ["qh", "kh"], ["scores"]),
        node("Div", ["scores", "scale"], ["scaled"]),
        node("Where", ["mask", "scaled", "fill"], ["masked"]),
        node("Softmax", ["masked"], ["probs"], axis=-1),
        node("MatMul", ["probs", "vh"], ["o"]),
        node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
        node("Reshape", ["ot", "merge"], ["om"]),
        node("MatMul", ["om", "w_o"], ["attn"]),
        node("Add", ["x0", "attn"], ["x1"]),
        node("LayerNormalization", ["x1", "ln2_g", "ln2_b"], ["h2"]),
        node("MatMul", ["h2", "w1"], ["f1"]),
        node("Div", ["f1", "sqrt2"], ["g1"]),
        node("Erf", ["g1"], ["g2"]),
        node("Add", ["g2", "one"], ["g3"]),
        node("Mul", ["f1", "g3"], ["g4"]),
        node("Mul", ["g4", "half"], ["gelu"]),
        node("MatMul", ["gelu", "w2"], ["f2"]),
        node("Add", ["x1", "f2"], ["x2"]),
        node("Slice", ["x2", "st", "en", "ax"], ["last"]),
        node("Concat", ["last", "x0"], ["out"], axis=-1),
    ]
    return build(nodes, {"tokens": (I64, ["batch", S])}, {"out": (F32, None)}, inits, opset=18)


def test_transformer_block(tmp_path):
    imported = check(_transformer(), tmp_path, dims={"batch": 2}, int_high=11)
    text = imported.text
    assert "gelu(" in text and "erf" not in text
    assert "causal_mask(" in text
    assert "split(" in text and "layernorm(" in text and "gather(wte, tokens)" in text


def test_gelu_other_order(tmp_path):
    nodes = [
        node("Mul", ["x", "half"], ["h"]),
        node("Mul", ["x", "r2"], ["d"]),
        node("Erf", ["d"], ["e"]),
        node("Add", ["one", "e"], ["a"]),
        node("Mul", ["h", "a"]),
    ]
    inits = {"half": np.float32(0.5), "r2": np.float32(1 / np.sqrt(2)), "one": np.float32(1.0)}
    imported = check(build(nodes, {"x": (F32, [3, 4])}, {"y": (F32, None)}, inits), tmp_path)
    assert "gelu(x)" in imported.text and "erf" not in imported.text


def test_conv_output_with_two_uses_keeps_batchnorm(tmp_path):
    inits = {"w": w(4, 3, 3, 3), "s": w(4) + 1, "b": w(4), "m": w(4), "v": np.abs(w(4)) + 0.5}
    nodes = [
        node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        node("Add", ["c", "n"]),
    ]
    imported = check(build(nodes, {"x": (F32, X4)}, {"y": (F32, None)}, inits), tmp_path)
    assert imported.text.count("conv2d(") == 1 and "_mean" in imported.text


# --------------------------------------------------------------------------- interface and errors


def _save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def test_unsupported_op_is_a_clean_error(tmp_path):
    nodes = [node("Relu", ["x"], ["r"], name="first"), node("TopK", ["r", "k"], ["y", "idx"], name="topk_node")]
    model = build(nodes, {"x": (F32, [2, 5])}, {"y": (F32, None)}, {"k": i64(2)})
    path = _save(model, tmp_path)
    with pytest.raises(StrataError) as err:
        import_onnx(path, {})
    message = str(err.value)
    assert message.startswith(f"error: {path}: ")
    assert "node 1 'topk_node' (TopK)" in message and "'TopK' is not supported" in message


def test_unsupported_attribute_is_a_clean_error(tmp_path):
    model = one("Slice", [4, 5], inputs=("x", "st", "en", "ax", "sp"),
                inits={"st": i64(0), "en": i64(4), "ax": i64(0), "sp": i64(-1)})
    with pytest.raises(StrataError, match=r"node 0 \(Slice\): step -1 is not supported"):
        import_onnx(_save(model, tmp_path), {})


def test_missing_dim_is_a_clean_error(tmp_path):
    model = one("Relu", ["batch", 4])
    path = _save(model, tmp_path)
    with pytest.raises(StrataError) as err:
        import_onnx(path, {})
    assert str(err.value) == f"error: {path}: input 'x' dim 'batch' has no value; give -D batch=N"
    with pytest.raises(StrataError, match="no input dim is named 'seq'"):
        import_onnx(path, {"batch": 2, "seq": 3})


def test_not_onnx_is_a_clean_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("model m(x: f32[2]) { return x }\n")
    with pytest.raises(StrataError, match=r"^error: .*bad\.onnx: not an ONNX model"):
        import_onnx(str(bad), {})
    with pytest.raises(StrataError, match="cannot read it"):
        import_onnx(str(tmp_path / "missing.onnx"), {})


def test_unsupported_dtype_is_a_clean_error(tmp_path):
    model = build([node("Not", ["x"])], {"x": (TensorProto.BOOL, [2])}, {"y": (TensorProto.BOOL, None)})
    with pytest.raises(StrataError, match="input 'x' has dtype bool"):
        import_onnx(_save(model, tmp_path), {})


def test_names_are_sanitised_and_write_import(tmp_path):
    inits = {"layer.0/weight": w(4, 3), "onnx::Add_7": w(3)}
    nodes = [node("MatMul", ["input.1", "layer.0/weight"], ["/l0/MatMul_output_0"]),
             node("Add", ["/l0/MatMul_output_0", "onnx::Add_7"], ["out:0"])]
    model = build(nodes, {"input.1": (F32, ["N", 4])}, {"out:0": (F32, None)}, inits)
    imported = check(model, tmp_path, dims={"N": 3})
    assert imported.inputs == {"input.1": "input_1"}
    assert set(imported.weights) == {"layer_0_weight", "onnx_Add_7"}
    assert "l0_MatMul = input_1 @ layer_0_weight" in imported.text
    model_path, weights_path = write_import(imported, str(tmp_path / "net.model"))
    assert weights_path == str(tmp_path / "net.weights.npz")
    with np.load(weights_path) as saved:
        assert set(saved.files) == set(imported.weights)
        np.testing.assert_array_equal(saved["layer_0_weight"], inits["layer.0/weight"])
    assert open(model_path).read() == imported.text
    # A directory: NAME.model inside it.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert write_import(imported, str(out_dir))[0] == str(out_dir / "m.model")


def test_import_proto_matches_import_onnx(tmp_path):
    model = SINGLE["conv"]()
    a = import_proto(model, {}, "m.onnx")
    b = import_onnx(_save(model, tmp_path), {})
    assert a.text == b.text


# --------------------------------------------------------------------------- exporter-style graphs


def _dim(shape_of: str, index: int, out: str, nodes: list, inits: dict) -> str:
    """`Unsqueeze(Gather(Shape(v), index), 0)` as torch's exporter writes `v.size(index)`."""
    inits.setdefault("ax0", i64(0))
    inits[f"{out}_i"] = np.int64(index)
    nodes += [
        node("Shape", [shape_of], [f"{out}_shape"]),
        node("Gather", [f"{out}_shape", f"{out}_i"], [f"{out}_s"], axis=0),
        node("Unsqueeze", [f"{out}_s", "ax0"], [out]),
    ]
    return out


def _llama(S=6, D=16, H=4, KVH=2, F=24, V=20):
    """One Llama-style decoder layer as torch exports it: shapes from Shape chains, RMSNorm
    spelled out, rotary embedding from Range/Cos/Sin, repeat_kv via Expand, a Trilu-built
    causal mask added to the scores, SwiGLU."""
    dh, rep = D // H, H // KVH
    nodes, inits = [], {
        "embed": w(V, D), "g1": w(D) + 1, "g2": w(D) + 1, "eps": np.float32(1e-6), "two": np.float32(2.0),
        "wq": w(D, D), "wk": w(D, KVH * dh), "wv": w(D, KVH * dh), "wo": w(D, D),
        "wg": w(D, F), "wu": w(D, F), "wd": w(F, D),
        "inv_freq": (1.0 / 10000 ** (np.arange(0, dh, 2) / dh)).astype(np.float32).reshape(1, -1),
        "zero": np.int64(0), "one_i": np.int64(1), "ax1": i64(1), "ax_last": i64(-1), "ax2": i64(2),
        "heads": i64(H, dh), "kvheads": i64(KVH, dh), "rep": i64(rep), "width": i64(D), "minus1": i64(-1),
        "half_lo": i64(0), "half_mid": i64(dh // 2), "half_hi": i64(2**62), "axis3": i64(3),
        "scale": np.float32(1 / np.sqrt(dh)), "fill": np.float32(np.finfo(np.float32).min),
    }
    nodes.append(node("Gather", ["embed", "input_ids"], ["x"]))
    b = _dim("input_ids", 0, "B", nodes, inits)
    s = _dim("input_ids", 1, "S", nodes, inits)
    # Rotary tables from positions (all folded at import time).
    nodes += [
        node("Squeeze", ["S", "ax0"], ["S_scalar"]),
        node("Range", ["zero", "S_scalar", "one_i"], ["pos"]),
        node("Cast", ["pos"], ["pos_f"], to=F32),
        node("Unsqueeze", ["pos_f", "ax1"], ["pos_col"]),
        node("Mul", ["pos_col", "inv_freq"], ["freqs"]),
        node("Concat", ["freqs", "freqs"], ["angles"], axis=-1),
        node("Cos", ["angles"], ["cos"]),
        node("Sin", ["angles"], ["sin"]),
    ]
    # RMSNorm, spelled out.
    nodes += [
        node("Pow", ["x", "two"], ["x2"]),
        node("ReduceMean", ["x2", "ax_last"], ["ms"], keepdims=1),
        node("Add", ["ms", "eps"], ["ms_eps"]),
        node("Sqrt", ["ms_eps"], ["rms"]),
        node("Reciprocal", ["rms"], ["inv_rms"]),
        node("Mul", ["x", "inv_rms"], ["xn"]),
        node("Mul", ["g1", "xn"], ["h"]),
    ]
    for t, wname, heads in (("q", "wq", "heads"), ("k", "wk", "kvheads"), ("v", "wv", "kvheads")):
        nodes += [
            node("MatMul", ["h", wname], [f"{t}0"]),
            node("Concat", [b, s, heads], [f"{t}_shape"], axis=0),
            node("Reshape", [f"{t}0", f"{t}_shape"], [f"{t}1"]),
            node("Transpose", [f"{t}1"], [f"{t}2"], perm=[0, 2, 1, 3]),
        ]
    for t in "qk":  # rotate_half and the rotary embedding
        nodes += [
            node("Slice", [f"{t}2", "half_lo", "half_mid", "axis3"], [f"{t}_lo"]),
            node("Slice", [f"{t}2", "half_mid", "half_hi", "axis3"], [f"{t}_hi"]),
            node("Neg", [f"{t}_hi"], [f"{t}_neg"]),
            node("Concat", [f"{t}_neg", f"{t}_lo"], [f"{t}_rot"], axis=-1),
            node("Mul", [f"{t}2", "cos"], [f"{t}_c"]),
            node("Mul", [f"{t}_rot", "sin"], [f"{t}_s"]),
            node("Add", [f"{t}_c", f"{t}_s"], [f"{t}3"]),
        ]
    nodes.append(node("Identity", ["v2"], ["v3"]))
    for t in "kv":  # repeat_kv
        nodes += [
            node("Unsqueeze", [f"{t}3", "ax2"], [f"{t}4"]),
            node("Concat", [b, "kvheads_0", "rep", s, "dh_1"], [f"{t}_exp_shape"], axis=0),
            node("Expand", [f"{t}4", f"{t}_exp_shape"], [f"{t}5"]),
            node("Concat", [b, "heads_0", s, "dh_1"], [f"{t}_merge"], axis=0),
            node("Reshape", [f"{t}5", f"{t}_merge"], [f"{t}6"]),
        ]
    inits.update({"kvheads_0": i64(KVH), "dh_1": i64(dh), "heads_0": i64(H)})
    # Causal mask: full(min) -> triu(1) -> [1, 1, S, S], added to the scores.
    nodes += [
        node("Concat", [s, s], ["mask_shape"], axis=0),
        node("ConstantOfShape", ["mask_shape"], ["full"], value=numpy_helper.from_array(np.array([np.finfo(np.float32).min], np.float32))),
        node("Trilu", ["full", "one_i"], ["upper"], upper=1),
        node("Unsqueeze", ["upper", "ax0"], ["m1"]),
        node("Unsqueeze", ["m1", "ax0"], ["mask"]),
        node("Transpose", ["k6"], ["kt"], perm=[0, 1, 3, 2]),
        node("MatMul", ["q3", "kt"], ["scores0"]),
        node("Mul", ["scores0", "scale"], ["scores1"]),
        node("Add", ["scores1", "mask"], ["scores"]),
        node("Softmax", ["scores"], ["probs"], axis=-1),
        node("MatMul", ["probs", "v6"], ["o0"]),
        node("Transpose", ["o0"], ["o1"], perm=[0, 2, 1, 3]),
        node("Concat", [b, s, "width"], ["o_shape"], axis=0),
        node("Reshape", ["o1", "o_shape"], ["o2"]),
        node("MatMul", ["o2", "wo"], ["attn"]),
        node("Add", ["x", "attn"], ["x1"]),
        # SwiGLU MLP after a second RMSNorm (same spelling).
        node("Pow", ["x1", "two"], ["y2"]),
        node("ReduceMean", ["y2", "ax_last"], ["yms"], keepdims=1),
        node("Add", ["yms", "eps"], ["yms_eps"]),
        node("Sqrt", ["yms_eps"], ["yrms"]),
        node("Div", ["x1", "yrms"], ["yn"]),
        node("Mul", ["yn", "g2"], ["h2"]),
        node("MatMul", ["h2", "wg"], ["gate"]),
        node("Sigmoid", ["gate"], ["gate_sig"]),
        node("Mul", ["gate", "gate_sig"], ["gate_act"]),
        node("MatMul", ["h2", "wu"], ["up"]),
        node("Mul", ["gate_act", "up"], ["ff"]),
        node("MatMul", ["ff", "wd"], ["down"]),
        node("Add", ["x1", "down"], ["hidden"]),
        node("MatMul", ["hidden", "embed_t"], ["logits"]),
    ]
    inits["embed_t"] = inits["embed"].T.copy()
    return build(
        nodes, {"input_ids": (I64, ["batch", "seq"])}, {"logits": (F32, ["batch", "seq", V])}, inits, opset=18
    )


def test_llama_style_layer(tmp_path):
    imported = check(_llama(), tmp_path, dims={"batch": 2, "seq": 6}, int_high=20)
    text = imported.text
    assert "let batch = 2" in text and "let seq = 6" in text
    assert "input_ids: i64[batch, seq]" in text
    for folded in ("Shape", "Range", "Trilu", "cos =", "sin ="):
        assert folded not in text.split("{", 1)[1]
    assert "causal_mask(scores1)" in text and "silu(gate)" in text
    assert "h = rmsnorm(x, g1, eps=1e-06)" in text and "h2 = rmsnorm(x1, g2, eps=1e-06)" in text
    assert "pow(" not in text and "sqrt(" not in text


def test_vit_style_block(tmp_path):
    """Patch conv, flatten + transpose, class token via Expand, position add, class-token Gather."""
    D, P = 8, 4
    nodes, inits = [], {"patch_w": w(D, 3, P, P), "patch_b": w(D), "cls": w(1, 1, D), "pos": w(1, 5, D),
                        "g": w(D) + 1, "bt": w(D), "head_w": w(3, D), "head_b": w(3),
                        "one_d": i64(1, 1), "dd": i64(D), "cls_i": np.int64(0)}
    b = _dim("image", 0, "B", nodes, inits)
    nodes += [
        node("Conv", ["image", "patch_w", "patch_b"], ["patches"], strides=[P, P], kernel_shape=[P, P]),
        node("Flatten", ["patches"], ["flat0"], axis=0),
        node("Shape", ["patches"], ["pshape"]),
        node("Slice", ["pshape", "zero_i", "two_i"], ["nc"]),
        node("Concat", ["nc", "minus1"], ["flat_shape"], axis=0),
        node("Reshape", ["patches", "flat_shape"], ["flat"]),
        node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1]),
        node("Concat", [b, "one_d"], ["cls_shape0"], axis=0),
        node("Slice", ["cls_shape0", "zero_i", "two_i"], ["cls_shape1"]),
        node("Concat", ["cls_shape1", "dd"], ["cls_shape"], axis=0),
        node("Expand", ["cls", "cls_shape"], ["cls_tok"]),
        node("Concat", ["cls_tok", "tokens"], ["seq"], axis=1),
        node("Add", ["seq", "pos"], ["x"]),
        node("LayerNormalization", ["x", "g", "bt"], ["xn"], epsilon=1e-6),
        node("Gather", ["xn", "cls_i"], ["cls_out"], axis=1),
        node("Gemm", ["cls_out", "head_w", "head_b"], ["logits"], transB=1),
    ]
    inits.update({"zero_i": i64(0), "two_i": i64(2), "minus1": i64(-1)})
    model = build(nodes, {"image": (F32, ["batch", 3, 8, 8])}, {"logits": (F32, None)}, inits, opset=17)
    imported = check(model, tmp_path, dims={"batch": 2})
    assert "param cls_tok: f32[2, 1, 8]" in imported.text  # Expand of a constant: folded
    assert "slice(xn, axis=1, start=0, end=1)" in imported.text


def test_more_ops(tmp_path):
    """Composed translations: PRelu, Elu, Selu, Softplus, Softsign, LRN, InstanceNormalization,
    Pad (folded into a Conv, and on its own), 1-D Conv and pools."""
    check(one("PRelu", X4, inputs=("x", "s"), inits={"s": w(3, 1, 1)}), tmp_path)
    for op in ("Elu", "Selu", "Softplus", "Softsign"):
        check(one(op, [2, 5]), tmp_path)
    check(one("LRN", X4, size=3, alpha=1e-2, beta=0.75, bias=2.0), tmp_path)
    check(one("InstanceNormalization", X4, inputs=("x", "s", "b"), inits={"s": w(3), "b": w(3)}), tmp_path)
    pad_conv = build(
        [node("Pad", ["x", "p"], ["xp"]), node("Conv", ["xp", "w"], ["y"])],
        {"x": (F32, X4)}, {"y": (F32, None)}, {"p": i64(0, 0, 1, 2, 0, 0, 1, 0), "w": w(2, 3, 3, 3)},
    )
    text = check(pad_conv, tmp_path).text
    assert "concat" not in text and "padding=[1, 2, 1, 0]" in text
    check(one("Pad", [2, 3], inputs=("x", "p", "v"), inits={"p": i64(1, 0, 0, 2), "v": np.float32(-1.5)}), tmp_path)
    check(one("Conv", [2, 3, 9], inputs=("x", "w", "b"), inits={"w": w(4, 3, 3), "b": w(4)}, pads=[1, 2], strides=[2]), tmp_path)
    check(one("MaxPool", [2, 3, 9], kernel_shape=[3], strides=[2], pads=[1, 1]), tmp_path)
    check(one("AveragePool", [2, 3, 9], kernel_shape=[2]), tmp_path)


def test_bert_style_opset13(tmp_path):
    """LayerNorm spelled out (opset < 17 exports) and an attention mask computed from an input."""
    S, D = 5, 8
    inits = {"g": w(D) + 1, "b": w(D), "eps": np.float32(1e-12), "two": np.float32(2.0),
             "one": np.float32(1.0), "big": np.float32(-10000.0), "wq": w(D, D), "wk": w(D, D), "ax1": i64(1)}
    nodes = [
        node("ReduceMean", ["x"], ["mu"], axes=[-1]),
        node("Sub", ["x", "mu"], ["d"]),
        node("Pow", ["d", "two"], ["d2"]),
        node("ReduceMean", ["d2"], ["var"], axes=[-1]),
        node("Add", ["var", "eps"], ["var_eps"]),
        node("Sqrt", ["var_eps"], ["std"]),
        node("Div", ["d", "std"], ["xhat"]),
        node("Mul", ["xhat", "g"], ["xg"]),
        node("Add", ["xg", "b"], ["h"]),
        node("MatMul", ["h", "wq"], ["q"]),
        node("MatMul", ["h", "wk"], ["k"]),
        node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        node("MatMul", ["q", "kt"], ["scores"]),
        node("Unsqueeze", ["attention_mask", "ax1"], ["m1"]),
        node("Cast", ["m1"], ["mf"], to=F32),
        node("Sub", ["one", "mf"], ["inv"]),
        node("Mul", ["inv", "big"], ["add_mask"]),
        node("Add", ["scores", "add_mask"], ["masked"]),
        node("Softmax", ["masked"], ["y"], axis=-1),
    ]
    model = build(nodes, {"x": (F32, ["batch", S, D]), "attention_mask": (I64, ["batch", S])},
                  {"y": (F32, None)}, inits, opset=13)
    imported = check(model, tmp_path, dims={"batch": 2}, int_high=2)
    assert "h = layernorm(x, g, b, eps=1e-12)" in imported.text
    assert "inv = 1.0 - mf" in imported.text
