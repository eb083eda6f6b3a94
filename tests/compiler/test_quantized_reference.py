"""
The reference semantics of quantized tensors (issue 16): `quantize`,
`dequantize`, integer and f8 `matmul`/`conv2d`, integer `relu`/`abs`/`-x`,
`i4`/`u8` weights in `.npz` files.

Each model runs on the NumPy reference executor and is compared with an
independent computation: scalar Python (its `round` rounds half to even,
its integers never overflow) and, where onnxruntime is installed, ONNX
QuantizeLinear, DequantizeLinear, MatMulInteger and ConvInteger.
"""

from __future__ import annotations

import textwrap

import ml_dtypes
import numpy as np
import pytest

from strata.compiler.diagnostics import StrataError
from strata.compiler.execution.reference import run_module
from strata.compiler.execution.weights import (
    bind_values,
    load_npz,
    model_signature,
    random_values,
    save_npz,
)
from strata.compiler.frontend import compile_source
from strata.compiler.execution.reference import model_function


def run(source: str, inputs: dict, weights: dict | None = None) -> list[np.ndarray]:
    module = compile_source(textwrap.dedent(source), "t.model")
    return run_module(module, inputs, weights or {})


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# --------------------------------------------------------------------------- scalar oracles


def quantize_scalar(x: float, scale: float, zero: int, lo: int, hi: int) -> int:
    """ONNX QuantizeLinear on one value: x / scale in f32, round half to even, add, saturate."""
    scaled = float(np.float32(x) / np.float32(scale))
    return max(lo, min(hi, round(scaled) + zero))


def quantize_oracle(x, scale, zero, lo, hi) -> np.ndarray:
    x, scale, zero = np.broadcast_arrays(np.asarray(x, np.float32), np.asarray(scale, np.float32), np.asarray(zero))
    flat = [quantize_scalar(a, s, int(z), lo, hi) for a, s, z in zip(x.ravel(), scale.ravel(), zero.ravel())]
    return np.array(flat, dtype=np.int64).reshape(x.shape)


def wrap_i32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


# --------------------------------------------------------------------------- quantize


def test_round_half_to_even():
    (q,) = run(
        """\
        model m(x: f32[8]) {
          return quantize(x, 1.0, dtype=i8)
        }
        """,
        {"x": f32([2.5, -2.5, 0.5, 1.5, -0.5, 3.5, 2.4999998, -1.5])},
    )
    assert q.dtype == np.int8
    assert q.tolist() == [2, -2, 0, 2, 0, 4, 2, -2]


def test_saturation_and_scale_division():
    x = f32([1000.0, -1000.0, 12.7, -12.8, -12.9, 0.05, np.inf, -np.inf])
    (q,) = run(
        """\
        model m(x: f32[8]) {
          return quantize(x, 0.1, dtype=i8)
        }
        """,
        {"x": x},
    )
    assert q.tolist()[:6] == quantize_oracle(x[:6], 0.1, 0, -128, 127).tolist()
    assert q.tolist() == [127, -128, 127, -128, -128, 0, 127, -128]


def test_u8_with_zero_point():
    x = f32([-1.0, 0.0, 1.3, 200.0, -200.0, 0.5, 1.5])
    (q,) = run(
        """\
        model m(x: f32[7]) {
          return quantize(x, 1.0, zero_point=128, dtype=u8)
        }
        """,
        {"x": x},
    )
    assert q.dtype == np.uint8
    assert q.tolist() == [127, 128, 129, 255, 0, 128, 130]


def test_i4_range():
    x = f32([-20.0, -8.5, -7.5, 6.5, 7.5, 20.0, 3.0])
    (q,) = run(
        """\
        model m(x: f32[7]) {
          return quantize(x, 1.0, dtype=i4)
        }
        """,
        {"x": x},
    )
    assert q.dtype == np.int8  # i4 is held in int8
    assert q.tolist() == [-8, -8, -8, 6, 7, 7, 3]


def test_per_channel_scales_and_zero_points():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4)) * 3).astype(np.float32)
    scale = f32([0.5, 0.25, 0.1, 2.0])
    zero = np.array([0, 10, 250, 3], np.uint8)
    q, back = run(
        """\
        model m(x: f32[3, 4], s: f32[4], z: u8[4]) {
          q = quantize(x, s, z, dtype=u8)
          return q, dequantize(q, s, z)
        }
        """,
        {"x": x, "s": scale, "z": zero},
    )
    expected = quantize_oracle(x, scale, zero, 0, 255)
    assert q.tolist() == expected.tolist()
    assert np.array_equal(back, ((expected - zero.astype(np.int64)).astype(np.float32) * scale))


def test_per_output_channel_scale_of_a_conv_weight():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    s = (np.abs(w).reshape(4, -1).max(axis=1) / 127).astype(np.float32).reshape(4, 1, 1, 1)
    (q,) = run(
        """\
        model m(w: f32[4, 2, 3, 3], s: f32[4, 1, 1, 1]) {
          return quantize(w, s)
        }
        """,
        {"w": w, "s": s},
    )
    assert q.tolist() == quantize_oracle(w, s, 0, -128, 127).tolist()
    assert np.abs(q.astype(int)).reshape(4, -1).max(axis=1).tolist() == [127] * 4


def test_f8_saturates_to_the_largest_finite_value():
    x = f32([1000.0, -1e9, np.inf, -np.inf, 448.0, 0.3, 465.0, 1e6])
    e4m3, e5m2 = run(
        """\
        model m(x: f32[8]) {
          return quantize(x, 1.0, dtype=f8e4m3), quantize(x, 1.0, dtype=f8e5m2)
        }
        """,
        {"x": x},
    )
    assert e4m3.dtype == ml_dtypes.float8_e4m3fn
    assert e4m3.astype(np.float32).tolist() == [448, -448, 448, -448, 448, float(np.float32(0.3).astype(ml_dtypes.float8_e4m3fn)), 448, 448]
    assert e5m2.astype(np.float32).tolist()[:4] == [1024.0, -57344, 57344, -57344]  # 1000 rounds to 1024
    assert e5m2.astype(np.float32)[-1] == 57344


# --------------------------------------------------------------------------- dequantize


def test_dequantize_in_f32_then_rounded():
    q = np.array([[-128, 127, 3], [0, -1, 100]], np.int8)
    s = f32([[0.1], [1 / 3]])
    as_f32, as_bf16 = run(
        """\
        model m(q: i8[2, 3], s: f32[2, 1]) {
          return dequantize(q, s), dequantize(q, s, dtype=bf16)
        }
        """,
        {"q": q, "s": s},
    )
    expected = q.astype(np.float32) * s
    assert np.array_equal(as_f32, expected)
    assert as_bf16.dtype == ml_dtypes.bfloat16
    assert np.array_equal(as_bf16, expected.astype(ml_dtypes.bfloat16))


def test_dequantize_i32_and_f8():
    acc = np.array([2**31 - 1, -(2**31), 12345], np.int32)
    f8 = np.array([448, -0.5, 3], ml_dtypes.float8_e4m3fn)
    a, b = run(
        """\
        model m(acc: i32[3], f: f8e4m3[3]) {
          return dequantize(acc, 0.5), dequantize(f, 2.0, dtype=f16)
        }
        """,
        {"acc": acc, "f": f8},
    )
    assert a.tolist() == [float(np.float32(2**31 - 1)) * 0.5, -(2.0**30), 6172.5]
    assert b.dtype == np.float16 and b.tolist() == [896.0, -1.0, 6.0]


# --------------------------------------------------------------------------- contractions


def test_i8_dot_product_1024_deep_accumulates_in_i32():
    a = np.full((2, 1024), 127, np.int8)
    a[1] = -128
    b = np.full((1024, 3), 127, np.int8)
    b[:, 2] = -128
    (c,) = run(
        """\
        model m(a: i8[2, 1024], b: i8[1024, 3]) {
          return matmul(a, b, dtype=i32)
        }
        """,
        {"a": a, "b": b},
    )
    assert c.dtype == np.int32
    # 1024 * 127 * 127 = 16,516,096: far beyond i16 (and i8) but exact in i32.
    assert c.tolist() == [[16516096, 16516096, -16646144], [-16646144, -16646144, 16777216]]


def test_i32_accumulation_wraps_as_onnx():
    depth = 2**17 + 8
    a = np.full((1, depth), -128, np.int8)
    b = np.full((depth, 1), -128, np.int8)
    (c,) = run(
        f"""\
        model m(a: i8[1, {depth}], b: i8[{depth}, 1]) {{
          return matmul(a, b, dtype=i32)
        }}
        """,
        {"a": a, "b": b},
    )
    assert c.tolist() == [[wrap_i32(depth * 128 * 128)]]


@pytest.mark.parametrize("dtype, lo, hi", [("i8", -128, 127), ("u8", 0, 255), ("i4", -8, 7)])
def test_integer_matmul_matches_python_integers(dtype, lo, hi):
    rng = np.random.default_rng(2)
    store = np.uint8 if dtype == "u8" else np.int8
    a = rng.integers(lo, hi + 1, (2, 3, 5)).astype(store)
    b = rng.integers(lo, hi + 1, (5, 4)).astype(store)
    (c,) = run(
        f"""\
        model m(a: {dtype}[2, 3, 5], b: {dtype}[5, 4]) {{
          return matmul(a, b, dtype=i32)
        }}
        """,
        {"a": a, "b": b},
    )
    expected = [[[sum(int(a[n, i, k]) * int(b[k, j]) for k in range(5)) for j in range(4)] for i in range(3)] for n in range(2)]
    assert c.tolist() == expected


def test_f8_matmul_accumulates_in_f32():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 64)).astype(ml_dtypes.float8_e4m3fn)
    b = rng.standard_normal((64, 5)).astype(ml_dtypes.float8_e4m3fn)
    c32, cbf = run(
        """\
        model m(a: f8e4m3[3, 64], b: f8e4m3[64, 5]) {
          return matmul(a, b, dtype=f32), matmul(a, b, dtype=bf16)
        }
        """,
        {"a": a, "b": b},
    )
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert c32.dtype == np.float32 and np.allclose(c32, exact, rtol=1e-6, atol=1e-6)
    assert cbf.dtype == ml_dtypes.bfloat16 and np.array_equal(cbf, c32.astype(ml_dtypes.bfloat16))


def test_integer_conv_with_i32_bias_matches_loops():
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (1, 4, 7, 7)).astype(np.int8)
    w = rng.integers(-128, 128, (6, 2, 3, 3)).astype(np.int8)
    bias = rng.integers(-(2**20), 2**20, (6,)).astype(np.int32)
    (y,) = run(
        """\
        model m(x: i8[1, 4, 7, 7], w: i8[6, 2, 3, 3], b: i32[6]) {
          return conv2d(x, w, b, stride=2, padding=1, groups=2, dtype=i32)
        }
        """,
        {"x": x, "w": w, "b": bias},
    )
    expected = np.zeros((1, 6, 4, 4), np.int64)
    for o in range(6):
        g = o // 3
        for oy in range(4):
            for ox in range(4):
                total = int(bias[o])
                for c in range(2):
                    for i in range(3):
                        for j in range(3):
                            yy, xx = oy * 2 + i - 1, ox * 2 + j - 1
                            if 0 <= yy < 7 and 0 <= xx < 7:
                                total += int(x[0, g * 2 + c, yy, xx]) * int(w[o, c, i, j])
                expected[0, o, oy, ox] = total
    assert y.dtype == np.int32 and y.tolist() == expected.tolist()


def test_integer_relu_abs_neg_wrap():
    x = np.array([-128, -3, 0, 5, 127], np.int8)
    r, a, n = run(
        """\
        model m(x: i8[5]) {
          return relu(x), abs(x), -x
        }
        """,
        {"x": x},
    )
    assert r.tolist() == [0, 0, 0, 5, 127]
    assert a.tolist() == [-128, 3, 0, 5, 127]  # |-128| wraps in i8, as two's complement does
    assert n.tolist() == [-128, 3, 0, -5, -127]


def test_i4_arithmetic_wraps_modulo_16():
    x = np.array([7, -8, 3], np.int8)
    (y,) = run(
        """\
        model m(x: i4[3]) {
          return x + x
        }
        """,
        {"x": x},
    )
    assert y.tolist() == [-2, 0, 6]


def test_weight_only_int4_linear():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 16)).astype(ml_dtypes.bfloat16)
    w = rng.integers(-8, 8, (16, 8)).astype(np.int8)
    s = (rng.random((1, 8)) * 0.1).astype(np.float32)
    (y,) = run(
        """\
        model m(x: bf16[2, 16]) {
          param w: i4[16, 8]
          param s: f32[1, 8]
          return x @ dequantize(w, s, dtype=bf16)
        }
        """,
        {"x": x},
        {"w": w, "s": s},
    )
    wd = (w.astype(np.float32) * s).astype(ml_dtypes.bfloat16).astype(np.float32)
    expected = (x.astype(np.float32) @ wd).astype(ml_dtypes.bfloat16)
    assert np.array_equal(y.astype(np.float32), expected.astype(np.float32))


# --------------------------------------------------------------------------- weights


QUANTIZED_PARAMS = """\
    model m(x: f32[2, 8]) {
      param w4: i4[8, 4]
      param w8: i8[8, 4]
      param u: u8[8, 4]
      param s: f32[4]
      return x @ dequantize(w4, s) + x @ dequantize(w8, s) + x @ dequantize(u, s, zero_point=128)
    }
    """


def test_random_quantized_weights_are_drawn_over_their_range():
    func_op = model_function(compile_source(textwrap.dedent(QUANTIZED_PARAMS), "t.model"))
    specs = [s for s in model_signature(func_op) if s.dtype in ("i4", "i8", "u8")]
    values = random_values(specs * 40, np.random.default_rng(0))
    w4 = values["w4"]
    assert w4.dtype == np.int8 and w4.min() >= -8 and w4.max() <= 7
    drawn = np.concatenate([random_values([specs[0]], np.random.default_rng(seed))["w4"].ravel() for seed in range(20)])
    assert drawn.min() == -8 and drawn.max() == 7
    u = np.concatenate([random_values([specs[2]], np.random.default_rng(seed))["u"].ravel() for seed in range(20)])
    assert u.dtype == np.uint8 and u.min() < 10 and u.max() > 245


def test_i4_weights_round_trip_through_npz(tmp_path):
    module = compile_source(textwrap.dedent(QUANTIZED_PARAMS), "t.model")
    func_op = model_function(module)
    bound = bind_values(func_op, seed=3)
    path = tmp_path / "w.npz"
    save_npz(str(path), bound.params)
    with np.load(path) as archive:
        assert archive["w4"].dtype == np.int8 and archive["w4"].nbytes == 8 * 4  # one byte per value
        assert archive["u"].dtype == np.uint8
    params = [s for s in model_signature(func_op) if s.kind == "param"]
    loaded = load_npz(str(path), params)
    for name, value in bound.params.items():
        assert np.array_equal(loaded[name], value) and loaded[name].dtype == value.dtype
    before = run_module(module, bound.inputs, bound.params)
    after = run_module(module, bound.inputs, loaded)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_i4_weights_out_of_range_are_a_clear_error(tmp_path):
    func_op = model_function(compile_source(textwrap.dedent(QUANTIZED_PARAMS), "t.model"))
    params = [s for s in model_signature(func_op) if s.kind == "param"]
    bound = bind_values(func_op, seed=0)
    bad = dict(bound.params, w4=np.full((8, 4), 9, np.int8))
    path = tmp_path / "bad.npz"
    save_npz(str(path), bad)
    with pytest.raises(StrataError) as info:
        load_npz(str(path), params)
    assert "'w4' has dtype int8, which does not convert to i4 (values out of range: i4 holds -8..7)" in str(info.value)


# --------------------------------------------------------------------------- onnxruntime


ort = pytest.importorskip("onnxruntime", reason="onnxruntime compares the ONNX semantics")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def ort_run(nodes, inputs, outputs, feeds, opset=21, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


ONNX_TYPES = {"i4": TensorProto.INT4, "i8": TensorProto.INT8, "u8": TensorProto.UINT8,
              "f8e4m3": TensorProto.FLOAT8E4M3FN, "f8e5m2": TensorProto.FLOAT8E5M2}


@pytest.mark.parametrize("dtype", ["i4", "i8", "u8", "f8e4m3", "f8e5m2"])
@pytest.mark.parametrize("seed", [0, 1])
def test_quantize_dequantize_match_onnxruntime(dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((3, 5)) * 40).astype(np.float32)
    x[0, :3] = [2.5, -2.5, 1e9]
    scale = (rng.random(5) + 0.05).astype(np.float32)
    lo, hi = {"i4": (-8, 7), "i8": (-128, 127), "u8": (0, 255)}.get(dtype, (0, 0))
    zero = int(rng.integers(lo, hi + 1)) if dtype in ("i4", "i8", "u8") else 0
    zp_text = f", zero_point={zero}" if dtype in ("i4", "i8", "u8") else ""
    q, back = run(
        f"""\
        model m(x: f32[3, 5], s: f32[5]) {{
          q = quantize(x, s{zp_text}, dtype={dtype})
          return q, dequantize(q, s{zp_text})
        }}
        """,
        {"x": x, "s": scale},
    )
    # Quantize then dequantize in one ONNX graph: the float output makes every
    # dtype (i4, f8e5m2 included) readable from Python; with scale 1 the first
    # output is the quantized value itself.
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    zp = helper.make_tensor("zp", ONNX_TYPES[dtype], [5], [zero] * 5)  # per axis: one per channel
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], axis=1),
        helper.make_node("DequantizeLinear", ["q", "one", "zp0"], ["qv"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["back"], axis=1),
    ]
    zp0 = helper.make_tensor("zp0", ONNX_TYPES[dtype], [], [0])
    qv, back_ort = ort_run(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 5]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [5])],
        [helper.make_tensor_value_info("qv", TensorProto.FLOAT, [3, 5]),
         helper.make_tensor_value_info("back", TensorProto.FLOAT, [3, 5])],
        {"x": x, "s": scale},
        initializers=[one, zp, zp0],
    )
    assert np.array_equal(q.astype(np.float32), qv)
    assert np.array_equal(back, back_ort)


@pytest.mark.parametrize("dtype, store, onnx_type", [("i8", np.int8, TensorProto.INT8), ("u8", np.uint8, TensorProto.UINT8)])
def test_matmul_integer_matches_onnxruntime(dtype, store, onnx_type):
    rng = np.random.default_rng(6)
    info = np.iinfo(store)
    a = rng.integers(info.min, int(info.max) + 1, (4, 300)).astype(store)
    b = rng.integers(info.min, int(info.max) + 1, (300, 7)).astype(store)
    (c,) = run(
        f"""\
        model m(a: {dtype}[4, 300], b: {dtype}[300, 7]) {{
          return matmul(a, b, dtype=i32)
        }}
        """,
        {"a": a, "b": b},
    )
    (expected,) = ort_run(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info("a", onnx_type, [4, 300]),
         helper.make_tensor_value_info("b", onnx_type, [300, 7])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [4, 7])],
        {"a": a, "b": b},
        opset=10,
    )
    assert np.array_equal(c, expected)


@pytest.mark.parametrize("dtype, store, onnx_type", [("u8", np.uint8, TensorProto.UINT8), ("i8", np.int8, TensorProto.INT8)])
def test_conv_integer_matches_onnxruntime(dtype, store, onnx_type):
    rng = np.random.default_rng(7)
    info = np.iinfo(store)
    x = rng.integers(info.min, int(info.max) + 1, (2, 4, 9, 9)).astype(store)
    w = rng.integers(info.min, int(info.max) + 1, (6, 2, 3, 3)).astype(store)
    (y,) = run(
        f"""\
        model m(x: {dtype}[2, 4, 9, 9], w: {dtype}[6, 2, 3, 3]) {{
          return conv2d(x, w, stride=2, padding=1, dilation=[1, 2], groups=2, dtype=i32)
        }}
        """,
        {"x": x, "w": w},
    )
    (expected,) = ort_run(
        [helper.make_node("ConvInteger", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                          dilations=[1, 2], group=2)],
        [helper.make_tensor_value_info("x", onnx_type, [2, 4, 9, 9]),
         helper.make_tensor_value_info("w", onnx_type, [6, 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        {"x": x, "w": w},
        opset=10,
    )
    assert np.array_equal(y, expected)


def test_onnx_import_of_a_quantized_graph_matches_onnxruntime():
    from onnx import numpy_helper

    from strata.compiler.onnx_import import import_proto

    rng = np.random.default_rng(8)
    weight = rng.integers(-128, 128, (16, 8)).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
        helper.make_node("MatMulInteger", ["xq", "W"], ["acc"]),
        helper.make_node("DequantizeLinear", ["acc", "sacc"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "sy", "zy"], ["yq"], axis=1),
        helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["out"], axis=1),
    ]
    initializers = [
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(np.array(0.05, np.float32), "sx"),
        numpy_helper.from_array(np.array(0, np.int8), "zx"),
        numpy_helper.from_array(np.array(0.01, np.float32), "sacc"),
        numpy_helper.from_array((rng.random(8) * 2 + 0.5).astype(np.float32), "sy"),
        numpy_helper.from_array(rng.integers(0, 255, 8).astype(np.uint8), "zy"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4, 8])], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    imported = import_proto(model)
    assert "matmul(xq, W, dtype=i32)" in imported.text and "quantize(y, sy, zy, dtype=u8)" in imported.text
    x = (rng.standard_normal((4, 16)) * 3).astype(np.float32)
    module = compile_source(imported.text, "i.model")
    (got,) = run_module(module, {imported.inputs["x"]: x}, imported.weights)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {"x": x})
    assert np.array_equal(got, want)
