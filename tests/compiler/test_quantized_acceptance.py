"""
Issue 16's acceptance: `quantized_acceptance.model` (an int8 GEMM with
per-channel weight scales requantized to u8 with a zero point, an int8
strided conv, an int4 weight-only GEMM and an fp8 GEMM) runs equal to an
independent NumPy implementation written here (not the reference executor)
at the graph stage, the loop and hardware stages of every target, and
through `--backend mlir` (f8 emulated in f32 there).

The data make every result exact whatever the summation order (tiles
reorder sums): scales are powers of two where a sum of float products
follows, operands small multiples of them; and it holds the edge cases of
ONNX quantization: ties (x / scale = k + 1/2, rounded half to even),
values that saturate, and an fp8 input beyond 448.
"""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import strata
from strata.compiler.execution import native
from strata.dialects.device import DEFAULT_DEVICE
from strata.dialects.vocabulary import ALL_TARGETS

MODEL = Path(__file__).with_name("quantized_acceptance.model")

TARGETS = ALL_TARGETS + (("cpu",) if "cpu" in DEFAULT_DEVICE else ())


def values() -> tuple[dict, dict]:
    rng = np.random.default_rng(16)
    f32 = np.float32
    inputs = {
        # x / 0.0625 = k / 2: ties at odd k, |k / 2| up to 150 saturates i8.
        "x": (rng.integers(-300, 300, (8, 64)) * 0.03125).astype(f32),
        "img": (rng.integers(-300, 300, (1, 4, 9, 9)) * 2.0**-7).astype(f32),
        "h": (rng.integers(-8, 9, (2, 64)) * 0.5).astype(ml_dtypes.bfloat16),
        "a": (rng.integers(-80, 81, (4, 32)) * 0.25).astype(f32),
    }
    inputs["a"][0, :3] = [200.0, -500.0, 4.25]  # saturate to +-448; 17 is a tie (-> 16)
    weights = {
        "w8": rng.integers(-128, 128, (64, 32)).astype(np.int8),
        "sw": rng.uniform(0.001, 0.01, 32).astype(f32),
        "b8": rng.normal(0, 1, 32).astype(f32),
        "cw": rng.integers(-128, 128, (8, 4, 3, 3)).astype(np.int8),
        "cb": rng.integers(-1000, 1000, 8).astype(np.int32),
        "cs": rng.uniform(0.5, 2, (1, 8, 1, 1)).astype(f32),
        "w4": rng.integers(-8, 8, (64, 16)).astype(np.int8),
        "s4": (2.0 ** -rng.integers(0, 4, (1, 16))).astype(f32),
        "wf": (rng.integers(-16, 17, (32, 16)) * 0.5).astype(ml_dtypes.float8_e4m3fn),
    }
    return inputs, weights


# ----------------------------------------------------------------- the independent NumPy implementation


def quantize_int(x, scale, zero_point, lo, hi, dtype):
    """ONNX QuantizeLinear: round(x / scale) half to even (in f32), + zero point, saturate."""
    q = np.rint(np.float32(x) / np.float32(scale)).astype(np.float64) + zero_point
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q, scale, zero_point=0):
    return (q.astype(np.int64) - zero_point).astype(np.float32) * np.float32(scale)


def conv2d_i32(x, w, b, stride, pad):
    """Direct convolution, exact in int64, wrapped to i32 (ConvInteger)."""
    x = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, hh, ww = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (hh - kh) // stride + 1, (ww - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            window = x[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            out += np.einsum("nchw,oc->nohw", window, w[:, :, i, j].astype(np.int64))
    return (out + b.reshape(1, o, 1, 1)).astype(np.int32)


def expected(inputs, weights) -> list[np.ndarray]:
    f32 = np.float32
    xq = quantize_int(inputs["x"], 0.0625, 0, -128, 127, np.int8)
    acc = (xq.astype(np.int64) @ weights["w8"].astype(np.int64)).astype(np.int32)
    y = np.maximum(dequantize(acc, weights["sw"] * f32(0.0625)) + weights["b8"], f32(0))
    yu = quantize_int(y, 0.1, 128, 0, 255, np.uint8)
    iq = quantize_int(inputs["img"], 0.015625, -3, -128, 127, np.int8)
    c = dequantize(conv2d_i32(iq, weights["cw"], weights["cb"], 2, 1), weights["cs"] * f32(0.015625))
    w = (weights["w4"].astype(f32) * weights["s4"]).astype(ml_dtypes.bfloat16)
    z = (inputs["h"].astype(f32) @ w.astype(f32)).astype(ml_dtypes.bfloat16)
    top = f32(448)
    af = np.clip(inputs["a"] / f32(0.25), -top, top).astype(ml_dtypes.float8_e4m3fn)
    f = af.astype(f32) @ weights["wf"].astype(f32)
    return [yu, c, z, f]


def check(got, want, what):
    assert len(got) == len(want), what
    for i, (have, need) in enumerate(zip(got, want)):
        assert have.dtype == need.dtype and have.shape == need.shape, (what, i, have.dtype, need.dtype)
        assert np.array_equal(have.astype(np.float64), need.astype(np.float64)), (what, i)


@pytest.fixture(scope="module")
def model():
    return strata.load(str(MODEL))


def test_the_numpy_implementation_sees_the_edge_cases():
    inputs, _ = values()
    scaled = inputs["x"] / np.float32(0.0625)
    assert np.any(scaled % 1 == 0.5) and np.any(np.abs(scaled) > 127)
    assert np.abs(inputs["a"]).max() > 448 * 0.25


def test_graph_stage(model):
    inputs, weights = values()
    check(strata.run(model, inputs, weights), expected(inputs, weights), "graph")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("stage", ["loop", "hardware"])
def test_loop_and_hardware_stages(model, target, stage):
    inputs, weights = values()
    compiled = strata.compile(model, target=target, emit=stage)
    check(strata.run(compiled, inputs, weights), expected(inputs, weights), (target, stage))


@pytest.mark.skipif(not native.tools_available(), reason="needs the LLVM/MLIR 22 tools")
@pytest.mark.parametrize("target", TARGETS)
def test_mlir_backend(model, target):
    """Compiled by LLVM: u8/i4 held in i8 memrefs, f8 as its bits, computed in f32 (emulated)."""
    inputs, weights = values()
    module = strata.compile(model, target=target, emit="fused").module
    got = native.run_module(module, target, inputs, weights)
    check(got, expected(inputs, weights), (target, "mlir"))
