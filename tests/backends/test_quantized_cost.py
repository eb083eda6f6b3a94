"""
Cost models on quantized models (issue 16): every target prices a GEMM at
the peak of the dtype that reaches its matmul (`operand_dtype`), not of
its first input, and counts HBM bytes at the stored width.

- A weight-only `x: bf16 @ dequantize(w: i4, s)` multiplies bf16 and
  streams its i4 weight at half a byte (32 MB for 8192 x 8192, not the
  128 MB of a widened bf16 copy).
- An int8 GEMM runs at the spec's int8 peak: twice bf16 on the H100, the
  A100 and TPU v5e, equal on TPU v4 (275 TOPS and 275 TFLOPS), four times
  fp16 on the LPU (750 TOPS and 188 TFLOPS).
- An fp8 GEMM runs at the H100's fp8 peak (twice bf16); the A100, TPUs and
  LPU have no fp8 matrix rate and run it at their f16/bf16 one.
"""

import pytest

import strata
from strata.dialects.hardware import HardwareKernelOp, simt

N = 8192

WEIGHT_ONLY = """\
model q(x: bf16[1, {k}]) {{
  param w: i4[{k}, {n}]
  param s: f32[1, {n}]
  return x @ dequantize(w, s, dtype=bf16)
}}
"""


def gemm(dtype: str, accumulate: str, n: int = N) -> str:
    return (f"model g(a: {dtype}[{n}, {n}]) {{\n  param b: {dtype}[{n}, {n}]\n"
            f"  return matmul(a, b, dtype={accumulate})\n}}\n")


def _compile(text: str, target: str, device: str | None = None, emit: str = "hardware"):
    kwargs = {"device": device} if device else {}
    return strata.compile(strata.parse(text, "q.model"), target=target, emit=emit, **kwargs)


def _gemm(report) -> dict:
    (kernel,) = [k for k in report["kernels"] if k["kind"] == "gemm"]
    return kernel


def _gemm_time(dtype: str, accumulate: str, target: str, device: str) -> tuple[float, str]:
    kernel = _gemm(_compile(gemm(dtype, accumulate), target, device).report)
    return kernel["time_s"], kernel["dtype"]


def test_int4_weight_only_gemv_streams_half_a_byte_per_weight_at_bf16():
    report = _compile(WEIGHT_ONLY.format(k=N, n=N), "gpu", "h100").report
    assert len(report["kernels"]) == 1
    kernel = _gemm(report)
    assert kernel["ops"] == ["graph.dequantize", "graph.matmul"]
    # The math runs at the activation's dtype; the bytes are the stored i4.
    assert kernel["dtype"] == "bf16"
    assert 2**25 <= kernel["bytes"]["hbm"] < 1.1 * 2**25  # 32 MiB of i4, not 128 MiB of bf16
    assert kernel["bound"] == "memory"
    assert report["total"]["peak_flops_per_s"] == pytest.approx(989.4e12)  # the bf16 peak, not int8


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_weight_only_kernels_multiply_the_dequantized_dtype(target):
    module = _compile(WEIGHT_ONLY.format(k=256, n=128), target).module
    (kernel,) = [op for op in module.walk() if isinstance(op, HardwareKernelOp)]
    # Its first input is the stored i4 weight; the matmul multiplies bf16.
    assert str(kernel.ins[0].type.element_type) == "i4"
    assert kernel.operand_dtype() == "bf16"


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_reported_bytes_are_whole_with_odd_i4_shapes(target):
    report = _compile(WEIGHT_ONLY.format(k=127, n=63), target).report
    for kernel in report["kernels"]:
        for level, moved in kernel["bytes"].items():
            assert isinstance(moved, int), (kernel["name"], level, moved)


@pytest.mark.parametrize(("dtype", "accumulate"), [("i8", "i32"), ("f8e4m3", "f32")])
def test_h100_runs_int8_and_fp8_gemms_twice_as_fast_as_bf16(dtype, accumulate):
    bf16_s, bf16_dtype = _gemm_time("bf16", "bf16", "gpu", "h100")
    quantized_s, quantized_dtype = _gemm_time(dtype, accumulate, "gpu", "h100")
    assert bf16_dtype == "bf16"
    assert quantized_dtype == {"i8": "i8", "f8e4m3": "f8E4M3FN"}[dtype]
    assert 1.7 <= bf16_s / quantized_s <= 2.3


def test_a100_runs_int8_at_its_int8_peak_and_fp8_at_the_f16_rate():
    bf16_s, _ = _gemm_time("bf16", "bf16", "gpu", "a100")
    int8_s, _ = _gemm_time("i8", "i32", "gpu", "a100")
    fp8_s, _ = _gemm_time("f8e4m3", "f32", "gpu", "a100")
    assert 1.7 <= bf16_s / int8_s <= 2.3
    # No FP8 tensor cores: f8 converted to f16 in registers, the f16 MMA's rate
    # (not tf32, half of it, which the f32 accumulator would suggest).
    assert fp8_s == pytest.approx(bf16_s, rel=0.02)


@pytest.mark.parametrize(("device", "low", "high"), [("tpu-v5e", 1.7, 2.3), ("tpu-v4", 0.99, 1.01)])
def test_tpu_int8_gemm_follows_the_specs_int8_peak(device, low, high):
    bf16_s, _ = _gemm_time("bf16", "bf16", "tpu", device)
    int8_s, dtype = _gemm_time("i8", "i32", "tpu", device)
    assert dtype == "i8"
    assert low <= bf16_s / int8_s <= high


def test_lpu_int8_gemm_runs_at_the_int8_peak():
    bf16_s, _ = _gemm_time("bf16", "bf16", "lpu", "groq-lpu")
    int8_s, dtype = _gemm_time("i8", "i32", "lpu", "groq-lpu")
    assert dtype == "i8"
    # 750 TOPS int8 against 188 TFLOP/s fp16: four cycles per vector pass against one.
    assert 3.5 <= bf16_s / int8_s <= 4.5


@pytest.mark.parametrize(("dtype", "accumulate", "device", "shape"), [
    ("i8", "i32", "h100", (16, 8, 32)),
    ("f8e4m3", "f32", "h100", (16, 8, 32)),
    ("f8e4m3", "f32", "a100", (16, 8, 16)),
    ("bf16", "f32", "h100", (16, 8, 16)),
])
def test_gpu_mma_shape_follows_the_operand_dtype_not_the_accumulator(dtype, accumulate, device, shape):
    module = _compile(gemm(dtype, accumulate, n=256), "gpu", device).module
    (kernel,) = [op for op in module.walk() if isinstance(op, simt.KernelOp)]
    assert tuple(kernel.mma.get_values()) == shape
