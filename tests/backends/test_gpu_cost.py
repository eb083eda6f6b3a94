"""
The GPU cost model against published H100 and A100 measurements, and its properties.

Each measurement of measured_results.csv with a shape we can rebuild
(cuBLAS / fast.cu / XLA / PyTorch GEMMs at K = 256..17920, FlashAttention-3
forward at head dims 64, 128 and 256, FlashAttention-2 at 128) is compiled
as a one-kernel model, costed on the h100 (or a100) spec, and the predicted
throughput compared with the measured one. The GEMM keys of h100.toml
(`gemm_efficiency`, `gemm_fill_steps`) are fitted on the two cuBLAS square
GEMMs and XLA's 4096x4096 rows (K = 256..4096); XLA's other shapes, fast.cu
and the MAMF rows validate them. The attention keys are fitted on the FA3
rows at head dims 64 and 128; the hd 256 rows (and a user's hd 64 run of a
later FA3) validate them. Fitted and validation errors are reported apart.
"""

import csv
import math
import re
from pathlib import Path

import pytest

import strata
from strata.backends.cost import estimate
from strata.backends.gpu import _tile_efficiency, exponentials, kernel_cost, occupancy
from strata.dialects.device import load_device, with_overrides
from strata.compiler.driver import Stage, compile_module, passes_between
from strata.compiler.frontend import load_model
from strata.dialects.hardware import simt
from strata.passes.tile import TilePass

MEASURED = Path(__file__).parent / "measured_results.csv"
LLAMA2_70B_DECODE = Path(__file__).parents[2] / "benchmarks" / "models" / "llama2_70b_decode.model"
H100 = load_device("h100")
A100 = load_device("a100")


def _cost(tmp_path, text: str, spec=H100, name: str = "m", tiles: tuple[int, ...] = ()):
    """Compile `text` for the GPU (with `tiles` for the innermost dims of every kernel, as `--schedule tile=`) and cost it."""
    path = tmp_path / f"{name}.model"
    path.write_text(text)
    module = load_model(str(path), {})
    pipeline = None
    if tiles:
        pipeline = [TilePass(target="gpu", sizes=tiles) if isinstance(p, TilePass) else p
                    for p in passes_between("gpu", Stage.GRAPH, Stage.HARDWARE)]
    compile_module(module, "gpu", Stage.HARDWARE, pipeline=pipeline)
    return module, estimate(module, spec)


def gemm_model(m: int, n: int, k: int, dtype: str = "bf16") -> str:
    return (
        f"model g(a: {dtype}[{m}, {k}]) -> {dtype}[{m}, {n}] {{\n"
        f"  param b: {dtype}[{k}, {n}]\n  return a @ b\n}}\n"
    )


def batched_gemm_model(batch: int, m: int, n: int, k: int, dtype: str = "bf16") -> str:
    """`a @ b` over `batch` independent pairs (XLA's batched dot); one batch element is `gemm_model`."""
    if batch == 1:
        return gemm_model(m, n, k, dtype)
    return (
        f"model g(a: {dtype}[{batch}, {m}, {k}], b: {dtype}[{batch}, {k}, {n}]) -> {dtype}[{batch}, {m}, {n}] {{\n"
        f"  return a @ b\n}}\n"
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


FA3_TILES = {256: (128, 256, 64)}
"""
Tiles (queries, head dim, keys) of the kernel FlashAttention-3 runs, where
strata's default differs: at head dim 256 the default tiler keeps the head
dim whole and shrinks the key block to fit half the shared memory (64
queries x 32 keys); FA3 runs a 128 x 80 tile (hopper/tile_size.h). 64 keys:
80 does not divide the keys.
"""

CALIBRATED_HEAD_DIMS = (64, 128)
"""
The head dims h100.toml's attention keys are fitted on (the FA3 paper's
rows); its hd 256 rows and the rows of other sources (a later FA3's hd 64
run, `attn_fwd_h100_hd64_nc_flashattention3_issue1438_*`) validate them.
"""


def _attention_rows():
    """
    `(case, group, head dim, causal, batch, heads, seq, TFLOPS)` per FlashAttention forward row; `group` is
    "fa3 fitted" (the rows h100.toml's attention keys are fitted on), "fa3 validation" or "fa2".
    """
    for row in _rows():
        match = re.match(r"attn_fwd_h100_hd(\d+)_(nc|c)_(flashattention[23])_(\w+_)?s(\d+)$", row["case_id"])
        if match:
            dim, kernel, other_source = int(match.group(1)), match.group(3), match.group(4)
            if kernel == "flashattention2":
                group = "fa2"
            else:
                group = "fa3 fitted" if dim in CALIBRATED_HEAD_DIMS and not other_source else "fa3 validation"
            batch, heads = (int(re.search(rf"{key}=(\d+)", row["shape_spec"]).group(1)) for key in ("batch", "nheads"))
            yield (row["case_id"], group, dim, match.group(2) == "c", batch, heads, int(match.group(5)),
                   float(row["value"]))


def _attention_cases():
    for case, *rest in _attention_rows():
        yield pytest.param(*rest, id=case)


def _attention_tflops(tmp_path, batch: int, heads: int, seq: int, dim: int, causal: bool, name: str = "a") -> float:
    """Predicted FlashAttention throughput, counted as the FA papers count it (causal: half the FLOPs)."""
    _, report = _cost(tmp_path, attention_model(batch, heads, seq, dim, causal), name=name, tiles=FA3_TILES.get(dim, ()))
    kernel = next(k for k in report.kernels if k.kind == "attention")
    return 4 * seq * seq * dim * heads * batch / (2 if causal else 1) / kernel.time_s / 1e12


GEMM_TOLERANCE = {"cublas": 0.10, "fastcu": 0.03}
"""
cuBLAS's two rows are in the fit (errors +8.6% at 4096^3, +1.6% at 8192^3:
XLA's table, also fitted, has the same 4096^3 GEMM at 783 TFLOPS, 9% above
fast.cu's cuBLAS run); fast.cu's hand-tuned kernels validate it (+1.9%, -0.0%).
"""


@pytest.mark.parametrize("case, size, measured_tflops", list(_gemm_cases()))
def test_gemm_throughput_matches_h100_measurements(case, size, measured_tflops, tmp_path):
    _, report = _cost(tmp_path, gemm_model(size, size, size))
    gemm = next(k for k in report.kernels if k.kind == "gemm")
    predicted = 2 * size**3 / gemm.time_s / 1e12
    error = predicted / measured_tflops - 1
    assert abs(error) <= GEMM_TOLERANCE[case.split("_")[2]], f"{case}: {predicted:.0f} vs {measured_tflops:.0f} TFLOPS"
    assert gemm.bound == "compute"


FITTED_GEMM_ROWS = re.compile(r"gemm_h100_(cublas_sq\d+|xla_b\d_4096x4096x\d+)$")
"""
The rows h100.toml's `gemm_efficiency` and `gemm_fill_steps` are fitted on:
cuBLAS 4096^3 and 8192^3 (fast.cu's README) and XLA's b = 1, 2, 4 GEMMs of
4096x4096 outputs at K = 256..4096 (17 rows). a100.toml's
`gemm_efficiency` is fitted on the A100 rows (`gemm_a100_*`).
"""

SHORT_KERNEL_S = 20e-6
"""
Validation rows are reported apart below this measured kernel time: XLA
times its smallest GEMMs at >= 5.2 us of kernel time, where strata charges
4 us of launch latency plus the work, so short kernels come out fast.
"""


def _shape(spec: str) -> tuple[int, int, int, int] | None:
    """`(batch, M, N, K)` of a GEMM row's shape_spec (`M=N=K=4096`, `b=4, M=4096, N=4096, K=256`, `M=2048,N=2048,K=13312`)."""
    if match := re.fullmatch(r"M=N=K=(\d+)", spec):
        size = int(match.group(1))
        return 1, size, size, size
    dims = dict(re.findall(r"\b(b|M|N|K)=(\d+)", spec))
    if set(dims) >= {"M", "N", "K"}:
        return int(dims.get("b", 1)), int(dims["M"]), int(dims["N"]), int(dims["K"])
    return None


def _gemm_rows():
    """
    `(case, group, device spec, (batch, M, N, K), TFLOPS)` per bf16 GEMM row
    of an H100 SXM-class part or an A100 SXM with its whole shape: `group`
    is "fitted" (h100.toml's GEMM keys), "validation", "validation short"
    (under SHORT_KERNEL_S) or "a100 fitted". Rows of other parts (PCIe,
    a user's lower-clocked H100) or without a shape are left out.
    """
    for row in _rows():
        case = row["case_id"]
        if row["category"] != "gemm" or not case.startswith(("gemm_h100_", "gemm_a100_")) or "otherpart" in case:
            continue
        if "fp8" in row["dtype"] or (shape := _shape(row["shape_spec"])) is None:
            continue
        tflops = float(row["value"])
        if case.startswith("gemm_a100_"):
            yield case, "a100 fitted", A100, shape, tflops
            continue
        batch, m, n, k = shape
        if FITTED_GEMM_ROWS.match(case):
            group = "fitted"
        else:
            short = 2 * batch * m * n * k / (tflops * 1e12) < SHORT_KERNEL_S
            group = "validation short" if short else "validation"
        yield case, group, H100, shape, tflops


def _gemm_tflops(tmp_path, shape: tuple[int, int, int, int], spec, name: str) -> float:
    batch, m, n, k = shape
    _, report = _cost(tmp_path, batched_gemm_model(batch, m, n, k), spec=spec, name=name)
    gemm = next(kernel for kernel in report.kernels if kernel.kind == "gemm")
    return 2 * batch * m * n * k / gemm.time_s / 1e12


def test_gemm_errors_calibrated_and_validated_apart(tmp_path):
    """
    The GEMM rows h100.toml's `gemm_efficiency` and `gemm_fill_steps` are
    fitted on (17) and those that validate them, reported apart: fitted RMS
    log error 3.0%, worst +8.6% (cuBLAS 4096^3); validation, kernels of 20 us
    and more (60 rows: XLA's 2048x4096 to 1024x4096 outputs at K =
    256..4096, fast.cu, MAMF): RMS 2.6%, worst +6.9%; shorter kernels (19
    rows): RMS 14.5%, worst +25.9%, all predicted fast (XLA's kernels take
    >= 5.2 us however small). The K/(K + 1540) form before gave RMS 72%
    fitted, 62% validation: XLA's 4096x4096 GEMM at K = 256 ran at 504
    TFLOPS, predicted 135. A100 (a100.toml's `gemm_efficiency`, fitted on
    the 2 MAMF rows): -2.7%, +2.5%.
    """
    errors: dict[str, list[float]] = {}
    for case, group, spec, shape, measured in _gemm_rows():
        errors.setdefault(group, []).append(math.log(_gemm_tflops(tmp_path, shape, spec, case) / measured))
    rms = {group: math.sqrt(sum(e * e for e in errs) / len(errs)) for group, errs in errors.items()}
    worst = {group: max(abs(math.expm1(e)) for e in errs) for group, errs in errors.items()}
    for group, errs in errors.items():
        print(f"{group}: {len(errs)} rows, rms {rms[group]:.1%}, worst {worst[group]:.1%}")
    counts = {group: len(errs) for group, errs in errors.items()}
    assert counts == {"fitted": 17, "validation": 60, "validation short": 19, "a100 fitted": 2}, counts
    assert rms["fitted"] <= 0.04 and worst["fitted"] <= 0.10
    assert rms["validation"] <= 0.04 and worst["validation"] <= 0.08
    assert rms["validation short"] <= 0.17 and worst["validation short"] <= 0.30
    assert min(errors["validation short"]) > 0
    assert worst["a100 fitted"] <= 0.04


def test_gemm_efficiency_is_a_ceiling_less_a_fill_of_a_few_k_steps(tmp_path):
    """
    A CTA's efficiency is `gemm_efficiency * K / (K + gemm_fill_steps * 64)`:
    at K = 64 (ResNet-50's 1x1 convolutions over 64 channels) about a
    quarter of the peak, not the 4% of K/(K + 1540); at K = 8192, 97% of
    the ceiling. A convolution (an implicit GEMM over the whole window)
    takes the same form with its window as K.
    """
    fill = H100["gemm_fill_steps"] * H100["preferred_gemm_tile"][2]
    for k in (64, 1024, 8192):
        module, _ = _cost(tmp_path, gemm_model(4096, 4096, k), name=f"k{k}")
        kernel = next(op for op in module.walk() if isinstance(op, simt.KernelOp))
        assert _tile_efficiency(kernel, H100) == pytest.approx(H100["gemm_efficiency"] * k / (k + fill))
    assert 0.2 < H100["gemm_efficiency"] * 64 / (64 + fill) < 0.35
    assert H100["gemm_efficiency"] * 8192 / (8192 + fill) > 0.97 * H100["gemm_efficiency"]
    conv = ("model c(x: f16[32, 64, 56, 56]) -> f16[32, 256, 56, 56] {\n"
            "  param w: f16[256, 64, 1, 1]\n  return conv2d(x, w)\n}\n")
    module, _ = _cost(tmp_path, conv, name="conv")
    kernel = next(op for op in module.walk() if isinstance(op, simt.KernelOp) and op.kind.data == "conv")
    assert _tile_efficiency(kernel, H100) == pytest.approx(H100["gemm_efficiency"] * 64 / (64 + fill))


ATTENTION_RATIO = {
    ("fa3 fitted", False): (0.9, 1.05),
    ("fa3 fitted", True): (0.9, 1.15),
    ("fa3 validation", False): (0.95, 1.05),
    ("fa3 validation", True): (1.05, 1.2),
    ("fa2", False): (1.35, 1.8),
    ("fa2", True): (1.45, 1.95),
}
"""
Predicted / measured throughput per row (the test pins these bands).
FA3, head dims 64 and 128 (fitted): -8% to +1% non-causal (the most at
S <= 2k, hd 128), -7% to +14% causal (the most at S <= 1k, hd 64, where
FA3's causal kernel loses more than the keys it skips). FA3 hd 256 and
the later FA3's hd 64 run (validation): -4% to +4% non-causal; causal
+9% to +17%: FA3's causal kernel at hd 256 runs 15% below its non-causal
one even at 16k (5% at hd 64 and 128), which nothing in the IR explains.
FA2 is a slower kernel than the FA3-class one modelled: 1.4-1.9x its
measurements.
"""


@pytest.mark.parametrize("group, dim, causal, batch, heads, seq, measured_tflops", list(_attention_cases()))
def test_attention_throughput_against_flashattention(group, dim, causal, batch, heads, seq, measured_tflops, tmp_path):
    """
    strata's causal flash loop stops at each query tile's diagonal, as FA3's
    does, and each CTA's prologue is amortised over the keys it visits.
    """
    predicted = _attention_tflops(tmp_path, batch, heads, seq, dim, causal)
    low, high = ATTENTION_RATIO[group, causal]
    assert low <= predicted / measured_tflops <= high, f"{predicted:.0f} vs {measured_tflops:.0f} TFLOPS"


def test_flashattention3_errors_calibrated_and_validated_apart(tmp_path):
    """
    The FA3 rows h100.toml's attention keys are fitted on (hd 64 and 128,
    23 rows) and the rows that validate them (hd 256 and a later FA3's hd 64
    run, 13 rows), reported apart: RMS log error 4.9% fitted, 8.4%
    validation; worst row +14% fitted, +17% validation (hd 256 causal).
    """
    errors: dict[str, list[float]] = {"fa3 fitted": [], "fa3 validation": []}
    for case, group, dim, causal, batch, heads, seq, measured in _attention_rows():
        if group in errors:
            errors[group].append(math.log(_attention_tflops(tmp_path, batch, heads, seq, dim, causal, name=case) / measured))
    rms = {group: math.sqrt(sum(e * e for e in errs) / len(errs)) for group, errs in errors.items()}
    worst = {group: max(abs(math.expm1(e)) for e in errs) for group, errs in errors.items()}
    for group, errs in errors.items():
        print(f"{group}: {len(errs)} rows, rms {rms[group]:.1%}, worst {worst[group]:.1%}")
    assert (len(errors["fa3 fitted"]), len(errors["fa3 validation"])) == (23, 13)
    assert rms["fa3 fitted"] <= 0.06 and worst["fa3 fitted"] <= 0.15
    assert rms["fa3 validation"] <= 0.10 and worst["fa3 validation"] <= 0.20


def test_exponentials_count_one_per_score_the_kernel_computes(tmp_path):
    """
    One exponential per score; a kernel that splits the head dim (pinned
    here: the default keeps it whole and shrinks the key block) recomputes
    its scores, exponentials included.
    """
    scores = 4 * 8 * 1024 * 1024
    for dim, tiles, per_score in ((128, (), 1), (256, (), 1), (256, (64, 128, 128), 2), (256, FA3_TILES[256], 1)):
        module, _ = _cost(tmp_path, attention_model(4, 8, 1024, dim, False), name=f"e{dim}_{len(tiles)}", tiles=tiles)
        kernel = next(op for op in module.walk() if isinstance(op, simt.KernelOp) and op.kind.data == "attention")
        assert exponentials(kernel) == per_score * scores


def test_exponentials_weigh_most_at_small_head_dims(tmp_path):
    """
    Per score the GEMMs cost 4 d FLOPs and the softmax one exponential, on
    special-function units 256x slower than the tensor cores: with
    exponentials for free, hd 64 would run ~1.8x faster, hd 256 ~1.2x.
    """
    free = with_overrides(H100, {"sfu_exp_per_s": 1e18})
    speedup = {}
    for dim in (64, 256):
        module, _ = _cost(tmp_path, attention_model(2, 2048 // dim, 8192, dim, False), name=f"x{dim}",
                          tiles=FA3_TILES.get(dim, ()))
        kernel = next(op for op in module.walk() if isinstance(op, simt.KernelOp) and op.kind.data == "attention")
        speedup[dim] = kernel_cost(kernel, H100).time_s / kernel_cost(kernel, free).time_s
    assert speedup[64] > 1.6 and speedup[256] < 1.3 and speedup[64] > speedup[256] + 0.4, speedup


def test_decode_attention_reads_the_kv_cache_memory_bound(tmp_path):
    """
    A Llama-2-70B decode step's attention (one query row per head, 8 query
    heads per key/value head) reads the layer's KV cache: the kernels that
    read it are memory-bound once the cache outgrows the launch latency
    (32k positions: 67 MB per layer for K, as much for V), never compute-
    bound. One CTA per key/value head would stream the cache through 8 of
    the 132 SMs; the tiler cuts `p @ v_cache` along the head dim until the
    grid covers the SMs (`tile._fill_machine`), so both run at the HBM bound.
    """
    module = load_model(str(LLAMA2_70B_DECODE), {"L": 1, "T": 32768})
    compile_module(module, "gpu", Stage.HARDWARE)
    costs = {k.name: k for k in estimate(module, H100).kernels}
    cache_shapes = ([1, 8, 128, 32768], [1, 8, 32768, 128])
    readers = [op for op in module.walk() if isinstance(op, simt.KernelOp)
               and any(list(v.type.get_shape()) in cache_shapes for v in op.ins)]
    assert len(readers) == 2
    for op in readers:
        cost = costs[op.kernel_name.data]
        assert cost.bound == "memory", (cost.name, cost.bound)
        assert cost.time_s >= 8 * 32768 * 128 * 2 / H100["hbm_bandwidth"]
        assert math.prod(op.grid.get_values()) >= 16 * 8
        hbm_bound = cost.bytes["hbm"] / H100["hbm_bandwidth_measured"] + H100["launch_latency_s"]
        assert cost.time_s == pytest.approx(hbm_bound, rel=1e-6)


def test_occupancy_follows_shared_memory_and_registers(tmp_path):
    module, _ = _cost(tmp_path, gemm_model(4096, 4096, 4096))
    kernel = next(op for op in module.walk() if isinstance(op, simt.KernelOp))
    # bf16 128x128x64 tiles: (128*64 + 64*128) * 2 B * 3 stages = 96 KiB of shared memory.
    assert kernel.smem_bytes.value.data == 98304
    assert occupancy(kernel, H100) == 2
    assert occupancy(kernel, with_overrides(H100, ["smem_per_block_bytes=100000", "smem_per_sm_bytes=100000"])) == 1


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


def test_a_wave_counts_each_distinct_operand_tile_once():
    from strata.backends.gpu import tiles_in_wave

    counts = {0: 4, 1: 8}  # 4 row tiles, 8 column tiles, columns innermost
    assert tiles_in_wave({1}, (0, 1), counts, 10) == 8  # b's column panels: all 8
    assert tiles_in_wave({0}, (0, 1), counts, 10) == 2  # a's row panels: 2 rows reached
    assert tiles_in_wave({0, 1}, (0, 1), counts, 10) == 10  # the output: one per CTA
    assert tiles_in_wave(set(), (0, 1), counts, 10) == 1  # a tile every CTA shares
    assert tiles_in_wave({0, 1}, (0, 1), counts, 32) == 32


def test_a_kv_head_broadcast_over_its_query_heads_is_read_once():
    # Grouped-query decode attention written per query head (the cache broadcast over the G query
    # heads of its KV head) moves the same HBM bytes as the grouped form (G query rows per KV head).
    grouped = """
model g(q: bf16[8, 2, 4, 128], k: bf16[8, 2, 128, 1024]) -> bf16[8, 2, 4, 1024] {
  return q @ k
}
"""
    per_head = """
model g(q: bf16[8, 2, 4, 1, 128], k: bf16[8, 2, 1, 128, 1024]) -> bf16[8, 2, 4, 1, 1024] {
  return q @ k
}
"""
    def hbm(text):
        report = strata.compile(strata.parse(text), target="gpu", device="a100").report
        return sum(k["bytes"]["hbm"] for k in report["kernels"])

    cache = 8 * 2 * 128 * 1024 * 2
    assert hbm(per_head) < 1.25 * hbm(grouped) and hbm(per_head) < 2 * cache
