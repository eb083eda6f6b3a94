"""
ONNX export and import of quantized models (issue 16): `strata export`
writes QuantizeLinear, DequantizeLinear, MatMulInteger and ConvInteger (f8
at opset 19, i4 at 21) that onnxruntime runs equal to `strata run`
bit for bit; ConvInteger imports as `conv2d(..., dtype=i32)`.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from strata.compiler.cli import main  # noqa: E402
from strata.compiler.execution import reference, weights  # noqa: E402
from strata.compiler.frontend import compile_source  # noqa: E402
from strata.compiler.onnx_export import to_onnx  # noqa: E402
from strata.compiler.onnx_import import import_proto  # noqa: E402

# onnxruntime's Python binding returns no bf16, f8 or int4 arrays: outputs are cast to f32 where needed.
INTEGER = """\
model q(x: f32[4, 32], img: f32[1, 2, 6, 6], xu: u8[4, 32], t: f32[4, 16]) {
  param w: i8[32, 16]
  param sw: f32[16]
  param b1: f32[16]
  param w4: i4[32, 8]
  param s4: f32[1, 8]
  param cw: i8[4, 2, 3, 3]
  param cb: i32[4]
  param cs: f32[1, 4, 1, 1]
  param wu: u8[32, 16]
  param zu: u8[16]
  param st: f32[4, 16]
  xq = quantize(x, 0.05, dtype=i8)
  y = relu(dequantize(matmul(xq, w, dtype=i32), sw * 0.05) + b1)
  u = quantize(y, 0.1, zero_point=128, dtype=u8)
  z = cast(x, dtype=bf16) @ dequantize(w4, s4, dtype=bf16)
  iq = quantize(img, 0.02, dtype=i8)
  c = dequantize(conv2d(iq, cw, cb, stride=2, padding=1, dtype=i32), cs)
  m = matmul(xu, wu, dtype=i32)
  both = quantize(t, st, zero_point=3, dtype=i8)
  return u, cast(z, dtype=f32), c, m, dequantize(quantize(t, sw, zu, dtype=u8), sw, zu), both, dequantize(both, st, zero_point=3)
}
"""

FLOAT8 = """\
model m(a: f32[4, 32], x: f32[1, 2, 6, 6]) {
  param wf: f8e4m3[32, 16]
  param we: f8e5m2[32, 16]
  param cw: f8e4m3[3, 2, 3, 3]
  af = quantize(a, 0.25, dtype=f8e4m3)
  ae = quantize(a, 0.5, dtype=f8e5m2)
  xq = quantize(x, 0.125, dtype=f8e4m3)
  return matmul(af, wf, dtype=f32), cast(matmul(ae, we, dtype=bf16), dtype=f32), conv2d(xq, cw, stride=2, padding=1, dtype=f32), dequantize(af, 0.25)
}
"""


def _values(module, seed=1):
    bound = weights.bind_values(reference.model_function(module), seed, {}, {})
    inputs = dict(bound.inputs)
    for name, value in inputs.items():
        if value.dtype == np.float32:
            # Multiples of 1/4 up to about +-40: beyond the 8-bit ranges (saturation), exact
            # ties of the fp8 scales (x / 0.125 = k + 1/2 where k + 1/2 needs 5 bits).
            inputs[name] = (np.round(value * 40) / 4).astype(np.float32)
    return inputs, bound.params


@pytest.mark.parametrize("source, opset", [(INTEGER, 21), (FLOAT8, 19)], ids=["integer", "float8"])
def test_exported_quantized_model_runs_in_onnxruntime_bit_exact(source, opset):
    module = compile_source(source, "q.model")
    inputs, params = _values(module)
    model = to_onnx(module, params)
    assert model.opset_import[0].version == opset
    ops = {n.op_type for n in model.graph.node}
    if source is INTEGER:
        assert {"QuantizeLinear", "DequantizeLinear", "MatMulInteger", "ConvInteger"} <= ops
        # i4 stays i4 in the file (INT4, two values a byte).
        (w4,) = [i for i in model.graph.initializer if i.name == "w4"]
        assert w4.data_type == TensorProto.INT4
    want = reference.run_module(module, inputs, params)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert np.array_equal(a.astype(np.float64), b.astype(np.float64), equal_nan=True), i


def test_export_of_an_f8_model_is_no_internal_error(tmp_path, capsys):
    path = tmp_path / "f8.model"
    path.write_text("model m(a: f8e4m3[4, 8]) {\n  param w: f8e4m3[8, 4]\n  return matmul(a, w, dtype=f32)\n}\n")
    assert main(["export", str(path), "-o", str(tmp_path / "f8.onnx")]) == 0
    model = onnx.load(str(tmp_path / "f8.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT8E4M3FN


def test_export_then_import_keeps_the_quantized_ops():
    # Less the scale over two dims, which is written spelled out (Round has no import).
    source = INTEGER.replace("  both = quantize(t, st, zero_point=3, dtype=i8)\n", "")
    source = source.replace(", both, dequantize(both, st, zero_point=3)", "")
    module = compile_source(source, "q.model")
    inputs, params = _values(module)
    imported = import_proto(to_onnx(module, params))
    assert "dtype=i32" in imported.text and "quantize(" in imported.text
    again = compile_source(imported.text, "i.model")
    got = reference.run_module(again, {imported.inputs[k]: v for k, v in inputs.items()}, imported.weights)
    for a, b in zip(reference.run_module(module, inputs, params), got, strict=True):
        assert np.array_equal(a.astype(np.float64), b.astype(np.float64))


@pytest.mark.parametrize("onnx_type, store", [(TensorProto.INT8, np.int8), (TensorProto.UINT8, np.uint8)])
def test_conv_integer_imports_and_matches_onnxruntime(onnx_type, store):
    rng = np.random.default_rng(9)
    info = np.iinfo(store)
    x = rng.integers(info.min, int(info.max) + 1, (1, 4, 7, 7)).astype(store)
    w = rng.integers(info.min, int(info.max) + 1, (6, 2, 3, 3)).astype(store)
    nodes = [helper.make_node("ConvInteger", ["x", "W", "zx"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], group=2)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx_type, [1, 4, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 6, 4, 4])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.zeros((), store), "zx")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    imported = import_proto(model)
    assert "dtype=i32" in imported.text and "groups=2" in imported.text
    module = compile_source(imported.text, "i.model")
    (got,) = reference.run_module(module, {imported.inputs["x"]: x}, imported.weights)
    (want,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert np.array_equal(got, want)


def test_conv_integer_with_a_zero_point_is_a_clear_error():
    nodes = [helper.make_node("ConvInteger", ["x", "W", "zx"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        initializer=[numpy_helper.from_array(np.ones((3, 2, 3, 3), np.uint8), "W"),
                     numpy_helper.from_array(np.array(3, np.uint8), "zx")],
    )
    from strata.compiler.diagnostics import StrataError

    with pytest.raises(StrataError, match="ConvInteger with a nonzero zero point"):
        import_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)]))
