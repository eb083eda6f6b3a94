"""
Quantized models through the whole pipeline (issue 16, stage 2): fusion
keeps requantization (`dequantize -> bias -> relu -> quantize`) in the GEMM
or conv epilogue and reads a weight-only `dequantize(w, s)` inside the GEMM
(the kernel's input is the stored `i4` weight); every target compiles to
the hardware stage; and the loop and hardware IR run on the loop
interpreter equal to the NumPy reference (integers and the integer paths
bit-exact, float GEMM results within one rounding of their dtype, since
tiling the contraction changes the f32 summation order).
"""

import ml_dtypes
import numpy as np
import pytest

import strata
from strata.dialects.graph import ops as g
from strata.dialects.graph.kernel import KernelOp
from strata.dialects.graph.dtypes import type_str

MODEL = """\
model q(x: f32[4, 32], a: f8e4m3[4, 16], img: f32[1, 2, 6, 6]) {
  param w: i8[32, 16]
  param sw: f32[16]
  param b1: f32[16]
  param w4: i4[32, 8]
  param s4: f32[1, 8]
  param wf: f8e4m3[16, 8]
  param cw: i8[4, 2, 3, 3]
  param cb: i32[4]
  param cs: f32[1, 4, 1, 1]
  xq = quantize(x, 0.05, dtype=i8)
  y = relu(dequantize(matmul(xq, w, dtype=i32), sw * 0.05) + b1)
  u = quantize(y, 0.1, zero_point=128, dtype=u8)
  z = cast(x, dtype=bf16) @ dequantize(w4, s4, dtype=bf16)
  f = matmul(a, wf, dtype=bf16)
  iq = quantize(img, 0.02, dtype=i8)
  c = dequantize(conv2d(iq, cw, cb, stride=2, padding=1, dtype=i32), cs)
  return u, z, f, c, -abs(matmul(xq, w, dtype=i32))
}
"""


@pytest.fixture(scope="module")
def model():
    return strata.parse(MODEL, "q.model")


def test_fusion_folds_quantization_into_gemm_and_conv(model):
    fused = strata.compile(model, target="gpu", emit="fused").module
    kernels = [k for k in fused.walk() if isinstance(k, KernelOp)]

    def names(kernel):
        return [op.name for op in kernel.body.block.ops if not isinstance(op, g.ConstantOp)][:-1]

    by_ops = {tuple(names(k)): k for k in kernels}
    # Requantization: matmul -> dequantize -> bias -> relu -> quantize, one kernel.
    assert ("graph.matmul", "graph.dequantize", "graph.add", "graph.relu", "graph.quantize") in by_ops
    # Weight-only int4: the GEMM reads the stored i4 weight.
    (weight_only,) = [k for ops, k in by_ops.items() if ops == ("graph.dequantize", "graph.matmul")]
    assert "i4[32, 8]" in [type_str(v.type) for v in weight_only.inputs]
    assert ("graph.conv2d", "graph.dequantize") in by_ops


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_every_stage_runs_equal_to_the_reference(model, target):
    expected = strata.run(model, seed=1)
    for stage in ("loop", "hardware"):
        got = strata.run(strata.compile(model, target=target, emit=stage), seed=1)
        for want, have in zip(expected, got, strict=True):
            assert want.dtype == have.dtype and want.shape == have.shape
            if want.dtype == ml_dtypes.bfloat16:
                assert np.allclose(have.astype(np.float32), want.astype(np.float32), rtol=2**-7, atol=1e-3)
            else:
                assert np.array_equal(have, want), (target, stage)


def test_int4_weight_only_gemm_moves_the_stored_bytes():
    model = strata.parse(
        """\
        model q(x: bf16[1, 8192]) {
          param w: i4[8192, 8192]
          param s: f32[1, 8192]
          return x @ dequantize(w, s, dtype=bf16)
        }
        """,
        "q.model",
    )
    report = strata.compile(model, target="gpu").report
    (kernel,) = [k for k in report["kernels"] if k["kind"] == "gemm"]
    assert len(report["kernels"]) == 1
    # 8192 x 8192 i4 values are 32 MiB; a widened bf16 copy would be 128 MiB.
    assert 2**25 <= kernel["bytes"]["hbm"] < 1.1 * 2**25
