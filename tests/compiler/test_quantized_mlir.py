"""
Quantized values through the mlir backend (issue 16): `u8` and `i4` held in
signless i8 memrefs (one byte per value), f8 as its bits in i8 and computed
in f32 (LLVM has no f8 types). Every result equals the reference's bit for
bit: ONNX quantization (ties half to even, saturation, NaN), i4 wrapping,
unsigned u8 arithmetic, and every f8 code and rounding tie.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import strata
from strata.compiler.execution import native

pytestmark = pytest.mark.skipif(not native.tools_available(), reason="needs the LLVM/MLIR 22 tools")


def run_both(source: str, inputs: dict, weights: dict | None = None, defines=None):
    model = strata.parse(source, "m.model", defines)
    want = strata.run(model, inputs, weights or {})
    got = native.run_module(strata.compile(model, target="gpu", emit="fused").module, "gpu", inputs, weights or {})
    return want, got


def assert_bits_equal(want, got):
    for i, (w, h) in enumerate(zip(want, got, strict=True)):
        assert w.dtype == h.dtype and w.shape == h.shape, i
        wf, hf = w.astype(np.float64), h.astype(np.float64)
        assert np.array_equal(wf, hf, equal_nan=True), (i, np.flatnonzero(~((wf == hf) | np.isnan(wf)))[:8])
        assert np.array_equal(np.signbit(wf), np.signbit(hf)), i  # -0.0 stays -0.0


def test_integer_quantization_and_u8_i4_arithmetic():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, -128.5, -129, 1e30, -np.inf, np.inf, np.nan,
                  3.49, -7.5, 8.5, 300, 0.0, -0.0, 7.5, 254.5], np.float32).reshape(2, 11)
    u = np.array([[0, 1, 127, 128, 200, 255, 3, 64, 250, 9, 17]], np.uint8).repeat(2, 0)
    source = """\
model m(x: f32[2, 11], u: u8[2, 11]) {
  param zu: u8[11]
  param w4: i4[11, 3]
  q8 = quantize(x, 1.0, zero_point=-3, dtype=i8)
  qu = quantize(x, 1.0, zu, dtype=u8)
  q4 = quantize(x, 0.5, dtype=i4)
  return q8, qu, q4, dequantize(qu, 0.25, zu), q4 + q4, -q4, relu(u), abs(u), maximum(u, qu), minimum(u, qu), u + u, cast(u, dtype=i4), cast(u, dtype=f32), cast(q8, dtype=u8), cast(x, dtype=u8), cast(x, dtype=i4), matmul(u, qu, dtype=i32) , matmul(q4, w4, dtype=i32), cast(cast(u, dtype=i32) * 9, dtype=i4)
}
"""
    weights = {"zu": np.array([0, 1, 2, 3, 128, 255, 4, 5, 6, 7, 8], np.uint8),
               "w4": np.random.default_rng(0).integers(-8, 8, (11, 3)).astype(np.int8)}
    # Shapes: matmul(u, qu) needs [2, 11] @ [11, ...]: use the transposed view via the model instead.
    source = source.replace("matmul(u, qu, dtype=i32) ", "matmul(u, transpose(qu, perm=[1, 0]), dtype=i32)")
    assert_bits_equal(*run_both(source, {"x": x, "u": u}, weights))


def test_u8_conv_and_i4_weight_conv():
    rng = np.random.default_rng(1)
    source = """\
model m(x: u8[1, 2, 7, 7]) {
  param w: u8[3, 2, 3, 3]
  param w4: i4[3, 2, 3, 3]
  param b: i32[3]
  return conv2d(x, w, b, stride=2, padding=1, dtype=i32), conv2d(cast(x, dtype=i4), w4, dtype=i32)
}
"""
    weights = {"w": rng.integers(0, 256, (3, 2, 3, 3)).astype(np.uint8),
               "w4": rng.integers(-8, 8, (3, 2, 3, 3)).astype(np.int8), "b": np.array([5, -7, 1000], np.int32)}
    assert_bits_equal(*run_both(source, {"x": rng.integers(0, 256, (1, 2, 7, 7)).astype(np.uint8)}, weights))


def test_f8_codes_ties_and_overflow_are_those_of_ml_dtypes():
    codes = np.arange(256, dtype=np.uint8)
    e4, e5 = codes.view(ml_dtypes.float8_e4m3fn), codes.view(ml_dtypes.float8_e5m2)
    grid = [np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 448, 464, 465, 470, 57344, 61439, 61440, 1e30,
                      2.0**-10, 1.5 * 2.0**-10, 3 * 2.0**-11, 2.0**-17, 1.5 * 2.0**-17], np.float32)]
    for values in (e4, e5):
        wide = values.astype(np.float64)
        grid += [wide.astype(np.float32), ((wide[:-1] + wide[1:]) / 2).astype(np.float32)]  # every code; every tie
    rng = np.random.default_rng(2)
    grid.append((rng.standard_normal(1000) * np.exp(rng.uniform(-25, 25, 1000))).astype(np.float32))
    x = np.concatenate(grid)
    x = x[np.isfinite(x) | np.isnan(x) | np.isinf(x)]
    source = """\
let N = 1
model m(x: f32[N], c4: f8e4m3[256], c5: f8e5m2[256]) {
  return cast(x, dtype=f8e4m3), cast(x, dtype=f8e5m2), cast(c4, dtype=f32), cast(c5, dtype=bf16), c4 * c4 + 1.0, quantize(x, 2.0, dtype=f8e5m2), quantize(x, 0.5, dtype=f8e4m3), dequantize(c5, 4.0, dtype=f16)
}
"""
    assert_bits_equal(*run_both(source, {"x": x, "c4": e4, "c5": e5}, defines={"N": x.size}))


def test_f8_reductions_are_a_clear_error():
    model = strata.parse("model m(x: f8e4m3[4, 8]) {\n  return softmax(x)\n}\n", "m.model")
    with pytest.raises(Exception, match="does not support 'graph.softmax' on f8 values; cast them to f32 first"):
        native.run_module(strata.compile(model, target="gpu", emit="fused").module, "gpu",
                          {"x": np.zeros((4, 8), ml_dtypes.float8_e4m3fn)}, {})
