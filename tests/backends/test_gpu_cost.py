"""
The GPU cost model against published H100 measurements, and its properties.

Each measurement of /shared/reference/measured_results.csv with a shape we
can rebuild (cuBLAS / fast.cu GEMMs, FlashAttention-2/3 forward at head dim
128) is compiled as a one-kernel model, costed on the h100 spec, and the
predicted throughput compared with the measured one. The errors asserted
here are the ones stated in the README.
"""

import csv
import re
from pathlib import Path

import pytest

from strata.backends.cost import estimate
from strata.backends.gpu import occupancy
from strata.dialects.device import load_device, with_overrides
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import load_model
from strata.dialects.hardware import simt

MEASURED = Path(__file__).parent / "measured_results.csv"
H100 = load_device("h100")


def _cost(tmp_path, text: str, spec=H100, name: str = "m"):
    path = tmp_path / f"{name}.model"
    path.write_text(text)
    module = load_model(str(path), {})
    compile_module(module, "gpu", Stage.HARDWARE)
    return module, estimate(module, spec)


def gemm_model(m: int, n: int, k: int, dtype: str = "bf16") -> str:
    return (
        f"model g(a: {dtype}[{m}, {k}]) -> {dtype}[{m}, {n}] {{\n"
        f"  param b: {dtype}[{k}, {n}]\n  return a @ b\n}}\n"
    )


def attention_model(batch: int, heads: int, seq: int, dim: int, causal: bool) -> str:
    shape = f"bf16[{batch}, {heads}, {seq}, {dim}]"
    flag = "true" if causal else "false"
    return (
        f"model a(q: {shape}, k: {shape}, v: {shape}) -> {shape} {{\n"
        f"  return attention(q, k, v, causal={flag})\n}}\n"
    )


def _rows():
    with MEASURED.open() as f:
        return list(csv.DictReader(f))


def _gemm_cases():
    for row in _rows():
        if row["category"] == "gemm" and row["case_id"].startswith("gemm_h100_") and "M=N=K=" in row["shape_spec"]:
            if "otherpart" in row["case_id"]:
                continue
            size = int(row["shape_spec"].split("=")[-1])
            yield pytest.param(row["case_id"], size, float(row["value"]), id=row["case_id"])


def _attention_cases():
    for row in _rows():
        match = re.match(r"attn_fwd_h100_hd128_(nc|c)_(flashattention[23])_s(\d+)", row["case_id"])
        if match:
            batch = int(re.search(r"batch=(\d+)", row["shape_spec"]).group(1))
            yield pytest.param(match.group(1) == "c", match.group(2), batch, int(match.group(3)),
                               float(row["value"]), id=row["case_id"])


GEMM_TOLERANCE = {"cublas": 0.05, "fastcu": 0.11}
"""cuBLAS is what the model is calibrated on (errors -4.6%, +1.3%); fast.cu's hand-tuned kernels run up to 7% faster."""


@pytest.mark.parametrize("case, size, measured_tflops", list(_gemm_cases()))
def test_gemm_throughput_matches_h100_measurements(case, size, measured_tflops, tmp_path):
    _, report = _cost(tmp_path, gemm_model(size, size, size))
    gemm = next(k for k in report.kernels if k.kind == "gemm")
    predicted = 2 * size**3 / gemm.time_s / 1e12
    error = predicted / measured_tflops - 1
    assert abs(error) <= GEMM_TOLERANCE[case.split("_")[2]], f"{case}: {predicted:.0f} vs {measured_tflops:.0f} TFLOPS"
    assert gemm.bound == "compute"


@pytest.mark.parametrize("causal, kernel, batch, seq, measured_tflops", list(_attention_cases()))
def test_attention_throughput_against_flashattention(causal, kernel, batch, seq, measured_tflops, tmp_path):
    """
    FA3 non-causal is what the model is calibrated on (within 5%). strata's
    causal flash loop stops at each query tile's diagonal, as FA3's does, and
    each CTA's efficiency counts the keys it visits: FA3 causal is predicted
    within +1% to +14% (the most at S=512, where 4 query tiles make the
    triangle coarse). FA2 is a slower kernel than the FA3-class one modelled:
    predictions are 1.5-1.9x its measurements, causal or not. The test pins
    these ratios.
    """
    _, report = _cost(tmp_path, attention_model(batch, 16, seq, 128, causal))
    kernel_cost = next(k for k in report.kernels if k.kind == "attention")
    flops = 4 * seq * seq * 128 * 16 * batch / (2 if causal else 1)
    predicted = flops / kernel_cost.time_s / 1e12
    ratio = predicted / measured_tflops
    expected = {
        ("flashattention3", False): (0.95, 1.05),
        ("flashattention3", True): (1.0, 1.15),
        ("flashattention2", False): (1.5, 1.8),
        ("flashattention2", True): (1.5, 1.95),
    }[kernel, causal]
    assert expected[0] <= ratio <= expected[1], f"{predicted:.0f} vs {measured_tflops:.0f} TFLOPS"


def test_occupancy_follows_shared_memory_and_registers(tmp_path):
    module, _ = _cost(tmp_path, gemm_model(4096, 4096, 4096))
    kernel = next(op for op in module.walk() if isinstance(op, simt.KernelOp))
    # bf16 128x128x64 tiles: (128*64 + 64*128) * 2 B * 3 stages = 96 KiB of shared memory.
    assert kernel.smem_bytes.value.data == 98304
    assert occupancy(kernel, H100) == 2
    assert occupancy(kernel, with_overrides(H100, ["smem_per_sm_bytes=100000"])) == 1


def test_bigger_problems_never_cost_less(tmp_path):
    times = [_cost(tmp_path, gemm_model(m, 1024, 1024), name=f"g{m}")[1].time_s for m in (128, 256, 1024, 4096)]
    assert times == sorted(times)


def test_never_beats_the_ideal_bounds(tmp_path):
    for text in (gemm_model(1024, 1024, 1024), gemm_model(8, 4096, 4096), attention_model(1, 8, 512, 64, True)):
        _, report = _cost(tmp_path, text)
        for k in report.kernels:
            assert k.time_s >= k.flops / H100["peak_flops_bf16"]
            assert k.time_s >= k.bytes["hbm"] / H100["hbm_bandwidth"]


def test_skinny_gemm_is_memory_bound_and_elementwise_is_not_compute_bound(tmp_path):
    _, report = _cost(tmp_path, gemm_model(8, 8192, 8192))
    assert report.kernels[0].bound == "memory"
    _, report = _cost(tmp_path, "model e(x: f32[4096, 4096]) -> f32[4096, 4096] {\n  return relu(x) * 2.0\n}\n")
    assert {k.bound for k in report.kernels} <= {"memory", "latency"}


def test_report_json_fields(tmp_path):
    _, report = _cost(tmp_path, gemm_model(256, 256, 256))
    data = report.as_json()
    kernel = data["kernels"][0]
    for key in ("name", "ops", "flops", "bytes", "time_s", "bound", "ctas", "waves", "occupancy"):
        assert key in kernel
    assert kernel["ops"] == ["graph.matmul"]
    assert data["total"]["time_s"] == pytest.approx(sum(k["time_s"] for k in data["kernels"]))
