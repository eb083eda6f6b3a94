"""
The systolic (TPU) cost model against SCALE-Sim v3 and published TPU
measurements, and its properties.

Every layer of `scalesim_v3_results.csv` (SCALE-Sim v3.0.0, 32x32 and
128x128 arrays, `os`/`ws`/`is`) and of `scalesim_extra.csv` (small layers on
8x8, 16x4, 4x32 and 8x16 arrays) is written as a one-GEMM or one-conv
`.model`, compiled to the hardware stage with its dataflow pinned, and
costed on one array of that size (`num_arrays=1`): `compute_cycles` must be
SCALE-Sim's "Total Cycles" + 1 exactly (it prints the last cycle's index).

Convs are given pre-padded, as SCALE-Sim takes them, so the models use
padding 0. SCALE-Sim's output size is `ceil((H - R + stride) / stride)`,
which exceeds the true `(H - R) // stride + 1` when `stride` does not divide
`H - R` (`resnet50_conv1_upstream`: 224 input, 7x7, stride 2 gives 110x110
there against a true 109x109; `c_10x10_3x3_s2`: 5x5 against 4x4). SCALE-Sim
then reads one padded row and column more than the input has; the model
gives it that row: its input is `(OH - 1) * stride + R` (225 for
`resnet50_conv1_upstream`), which makes the conv the same GEMM
(`M = 12100`, `N = 64`, `K = 147`) SCALE-Sim simulated, so no row is skipped.

The JAX-profiled TPU matmuls of `measured_results.csv` (SCALE-Sim-validation,
float16, an unnamed TPU whose HBM and MXU rates fit a v5e) are costed on
`tpu-v5e` with the default pipeline (default tiles and `ws`); the per-row
errors are listed at `MEASURED_TOLERANCE`.
"""

import csv
import dataclasses
import math
import re
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.dialects.hardware import systolic_math
from strata.backends.cost import estimate
from strata.dialects.device import DeviceSpec, SpecError, load_device, with_overrides
from strata.backends.systolic import array_peak
from strata.dialects.hardware.systolic_math import schedule_gemm
from strata.compiler.driver import Stage, compile_module, detect_stage, passes_between
from strata.compiler.frontend import load_model
from strata.compiler.schedule import apply_schedule
from strata.dialects import loop
from strata.passes.fuse import FusePass

HERE = Path(__file__).parent
REFERENCE = HERE / "scalesim_v3_results.csv"
EXTRA = HERE / "scalesim_extra.csv"
MEASURED = HERE / "measured_results.csv"
SAMPLES = HERE.parent.parent / "samples"
V4 = load_device("tpu-v4")
V5E = load_device("tpu-v5e")


def _read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def gemm_model(m: int, n: int, k: int, dtype: str = "bf16") -> str:
    return (
        f"model g(a: {dtype}[{m}, {k}], b: {dtype}[{k}, {n}]) -> {dtype}[{m}, {n}] {{\n"
        f"  return a @ b\n}}\n"
    )


def conv_model(h: int, w: int, r: int, s: int, channels: int, filters: int, stride: int, dtype: str = "bf16") -> str:
    """A batch-1 conv of a pre-padded input, sized so its output is SCALE-Sim's (see the module doc)."""
    oh, ow = systolic_math.conv_output_size(h, r, stride), systolic_math.conv_output_size(w, s, stride)
    h, w = (oh - 1) * stride + r, (ow - 1) * stride + s
    return (
        f"model c(x: {dtype}[1, {channels}, {h}, {w}]) {{\n"
        f"  param w: {dtype}[{filters}, {channels}, {r}, {s}]\n"
        f"  return conv2d(x, w, stride={stride})\n}}\n"
    )


def _row_model(row: dict[str, str], dtype: str) -> tuple[str, tuple[int, int, int]]:
    if row["input_type"] == "gemm":
        m, n, k = (int(row[x]) for x in "MNK")
        return gemm_model(m, n, k, dtype), (m, n, k)
    h, w, r, s, c, f, stride = (int(row[x]) for x in (
        "ifmap_h", "ifmap_w", "filt_h", "filt_w", "channels", "num_filters", "stride"))
    return conv_model(h, w, r, s, c, f, stride, dtype), systolic_math.conv_as_gemm(h, w, r, s, c, f, stride)


_SCRATCH: list[Path] = []


@cache
def compiled(text: str, dataflow: str = ""):
    """The hardware-stage module of a model text, with the dataflow pinned if given (cached: costing is pure)."""
    import tempfile

    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="strata-systolic-")))
    path = _SCRATCH[0] / f"m{abs(hash((text, dataflow)))}.model"
    path.write_text(text)
    module = load_model(str(path))
    # SCALE-Sim runs each layer as the GEMM it is, K = 1 too: keep `fuse` from making those multiplies.
    passes = [dataclasses.replace(p, outer_products=False) if isinstance(p, FusePass) else p
              for p in passes_between("tpu", detect_stage(module), Stage.HARDWARE)]
    if dataflow:
        passes = apply_schedule(passes, {"dataflow": dataflow})
    compile_module(module, "tpu", Stage.HARDWARE, pipeline=passes)
    return module


def one_array(rows: int, cols: int) -> DeviceSpec:
    return with_overrides(V4, [f"array_rows={rows}", f"array_cols={cols}", "num_arrays=1", "stationary_buffers=1"])


def program(report):
    (kernel,) = [k for k in report.kernels if k.kind != "relayout"]
    return kernel


def _scalesim_cases():
    for path, dtype in ((REFERENCE, "bf16"), (EXTRA, "f32")):
        for row in _read(path):
            case = f"{row['layer']}-{row['array_rows']}x{row['array_cols']}-{row['dataflow']}"
            yield pytest.param(row, dtype, id=f"{path.stem.split('_')[1]}-{case}")


# --------------------------------------------------------------------------- SCALE-Sim


def test_reference_files_are_the_shared_ones():
    shared = Path("/work/shared/reference/scalesim_v3_results.csv")
    if shared.exists():
        assert shared.read_text() == REFERENCE.read_text()
    assert len(_read(REFERENCE)) == 49 and len(_read(EXTRA)) == 144


@pytest.mark.parametrize("row, dtype", list(_scalesim_cases()))
def test_compute_cycles_equal_scalesim(row, dtype):
    text, (m, n, k) = _row_model(row, dtype)
    module = compiled(text, row["dataflow"])
    rows, cols = int(row["array_rows"]), int(row["array_cols"])
    kernel = program(estimate(module, one_array(rows, cols)))
    if row.get("M"):
        assert (m, n, k) == (int(row["M"]), int(row["N"]), int(row["K"]))
    gemms = [list(g.get_values()) for op in module.walk() if op.name == "systolic.program" for g in op.gemms]
    assert gemms == [[1, m, n, k]]
    assert kernel.extra["dataflow"] == row["dataflow"]
    assert kernel.extra["compute_cycles"] == int(row["total_cycles_reported"]) + 1
    assert kernel.extra["folds"] == int(row["row_folds"]) * int(row["col_folds"])


@settings(max_examples=30, deadline=None)
@given(
    count=st.integers(1, 6), m=st.integers(1, 600), n=st.integers(1, 600), k=st.integers(1, 600),
    rows=st.integers(1, 160), cols=st.integers(1, 160), arrays=st.integers(1, 9),
    dataflow=st.sampled_from(systolic_math.DATAFLOWS),
)
def test_fold_split_rule(count, m, n, k, rows, cols, arrays, dataflow):
    """One array: count x SCALE-Sim's cycles; more arrays: never slower, never better than perfect sharing."""
    single = schedule_gemm(count, m, n, k, rows, cols, 1, dataflow)
    assert single.cycles == count * systolic_math.compute_cycles(m, n, k, rows, cols, dataflow)
    assert single.splits == 1
    many = schedule_gemm(count, m, n, k, rows, cols, arrays, dataflow)
    more = schedule_gemm(count, m, n, k, rows, cols, arrays + 1, dataflow)
    assert more.cycles <= many.cycles <= single.cycles
    assert many.cycles * arrays >= count * systolic_math.systolic_mapping(m, n, k, rows, cols, dataflow).folds * (
        systolic_math.systolic_mapping(m, n, k, rows, cols, dataflow).t)


# --------------------------------------------------------------------------- TPU measurements


def _measured_cases():
    for row in _read(MEASURED):
        match = re.fullmatch(r"tpu_jax_matmul_(\d+)x(\d+)x(\d+)", row["case_id"])
        if match:
            m, n, k = (int(re.search(rf"{x}=(\d+)", row["shape_spec"]).group(1)) for x in "MNK")
            cycles = int(re.search(r"cycles = (\d+)", row["notes"]).group(1))
            yield pytest.param(m, n, k, float(row["value"]) * 1e-6, cycles, id=row["case_id"])


MEASURED_RANGE = (0.3, 1.0)
"""
Bounds on model / measured on tpu-v5e for the JAX profile rows. The measured
chip's generation is not stated, and at these sizes it runs at about half of
v5e's nominal MXU rate; the model's default tiles (as large as VMEM holds,
compulsory HBM traffic only) make it compute-bound there and faster than
the measurement. Ratios in the CSV's row order (128^3, 1024x128x128,
1024x1024x128, 1024x1024x512, 1024x768x768, 1024x1024x896, 1024^3): 0.78,
0.60, 0.45, 0.43, 0.43, 0.45, 0.33 (0.36 at 1024^3 before the MXU's
double-buffered stationary tiles, `stationary_buffers = 2`). (With 128^3 tiles, whose re-reads made
the 1024-sized rows memory-bound, they were within 40%: by accident of
traffic XLA's own larger tiles do not have.) The large-shape slope is
checked against the same repository's regression below.
"""


@pytest.mark.parametrize("m, n, k, measured_s, scalesim_cycles", list(_measured_cases()))
def test_matmul_time_against_jax_tpu_measurements(m, n, k, measured_s, scalesim_cycles):
    # The row's own SCALE-Sim figure (128x128, ws) is the model's one-array count.
    report = estimate(compiled(gemm_model(m, n, k, "f16"), "ws"), V5E)
    kernel = program(report)
    assert kernel.extra["dataflow"] == "ws"
    assert kernel.extra["single_array_cycles"] == scalesim_cycles
    low, high = MEASURED_RANGE
    ratio = kernel.time_s / measured_s
    assert low <= ratio <= high, f"{m}x{n}x{k}: {kernel.time_s * 1e6:.2f} vs {measured_s * 1e6:.2f} us"


def test_large_matmul_against_the_jax_tpu_regression():
    """
    SCALE-Sim-validation's fit over 343 JAX matmuls with M, N, K in
    1024..4096 (row `tpu_jax_matmul_regression_large`): time = a x SCALE-Sim
    cycles + b. At 4096^3, where the intercept is 3% of the time, the model
    is within 25% (it is 20% faster: 4 MXUs at v5e's 1.5 GHz against the
    fit's 4.9e9 array-cycles/s).
    """
    (row,) = [r for r in _read(MEASURED) if r["case_id"] == "tpu_jax_matmul_regression_large"]
    a_us, b_us = (float(x) for x in re.findall(r"[ab]=([0-9.]+)", row["value"]))
    kernel = program(estimate(compiled(gemm_model(4096, 4096, 4096, "f16")), V5E))
    fitted_s = (a_us * kernel.extra["single_array_cycles"] + b_us) * 1e-6
    assert kernel.time_s / fitted_s == pytest.approx(1, abs=0.25)


def test_matmul_times_rank_like_the_measurements():
    cases = [p.values for p in _measured_cases()]
    model = [program(estimate(compiled(gemm_model(m, n, k, "f16")), V5E)).time_s for m, n, k, _, _ in cases]
    measured = [c[3] for c in cases]
    assert sorted(range(len(cases)), key=model.__getitem__) == sorted(range(len(cases)), key=measured.__getitem__)


# --------------------------------------------------------------------------- properties


@st.composite
def gemm_shapes(draw):
    return draw(st.integers(1, 384)), draw(st.integers(1, 384)), draw(st.integers(1, 384))


@settings(max_examples=30, deadline=None)
@given(shape=gemm_shapes(), grow=st.integers(0, 2), by=st.integers(1, 200),
       dataflow=st.sampled_from(systolic_math.DATAFLOWS), arrays=st.integers(1, 8))
def test_time_grows_with_the_problem_and_respects_the_bounds(shape, grow, by, dataflow, arrays):
    spec = with_overrides(V4, [f"num_arrays={arrays}"])
    bigger = list(shape)
    bigger[grow] += by
    small, large = (program(estimate(compiled(gemm_model(*s), dataflow), spec)) for s in (shape, bigger))
    assert 0 < small.time_s <= large.time_s
    m, n, k = shape
    peak = array_peak(spec, "bf16")
    assert peak == pytest.approx(spec["peak_flops_bf16"] * arrays / 8, rel=2e-3)
    assert small.time_s >= 2 * m * n * k / peak
    assert small.time_s >= 2 * (m * k + k * n + m * n) / spec["hbm_bandwidth"]
    assert small.time_s >= spec["launch_latency_s"]
    assert 0 < small.utilisation <= 1


@settings(max_examples=30, deadline=None)
@given(shape=gemm_shapes(), dataflow=st.sampled_from(systolic_math.DATAFLOWS))
def test_more_arrays_never_slower(shape, dataflow):
    module = compiled(gemm_model(*shape), dataflow)
    times = [program(estimate(module, with_overrides(V4, [f"num_arrays={a}"]))).time_s for a in range(1, 10)]
    assert times == sorted(times, reverse=True)


def test_stalls_appear_when_hbm_cannot_keep_up():
    module = compiled(gemm_model(512, 512, 512), "ws")
    spec = one_array(128, 128)
    fast = program(estimate(module, spec))
    assert fast.bound == "compute" and fast.extra["stall_cycles"] == 0
    assert fast.time_s == pytest.approx(fast.extra["compute_cycles"] / spec["clock_hz"] + spec["launch_latency_s"])
    slow = program(estimate(module, with_overrides(spec, ["hbm_bandwidth=1e10"])))
    assert slow.bound == "memory"
    memory_s = slow.bytes["hbm"] / 1e10
    assert slow.time_s == pytest.approx(memory_s + spec["launch_latency_s"])
    expected = math.ceil(memory_s * spec["clock_hz"]) - slow.extra["compute_cycles"]
    assert slow.extra["stall_cycles"] == expected > 0
    assert slow.extra["compute_cycles"] == fast.extra["compute_cycles"]


def test_vector_unit_work_is_costed():
    text = "model e(x: f32[1024, 1024]) -> f32[1024, 1024] {\n  return softmax(x, axis=-1)\n}\n"
    report = estimate(compiled(text), V4)
    (kernel,) = [k for k in report.kernels if k.kind != "relayout"]
    assert kernel.extra["compute_cycles"] == 0 and kernel.extra["vector_cycles"] > 0
    vector_s = (kernel.flops) / V4["vector_flops"]
    memory_s = kernel.bytes["hbm"] / V4["hbm_bandwidth"]
    assert kernel.time_s == pytest.approx(max(vector_s, memory_s) + V4["launch_latency_s"])
    slower = with_overrides(V4, [f"vector_flops={V4['vector_flops'] / 100}"])
    assert program(estimate(compiled(text), slower)).bound == "compute"
    values = {key: v for key, v in V4.items() if key != "vector_flops"}
    with pytest.raises(SpecError, match="vector_flops"):
        estimate(compiled(text), DeviceSpec(V4.name, V4.target, values))


def test_relayouts_move_their_buffer_through_hbm_twice():
    """
    A conv's output is channels-last (NHWC), a softmax over its rows wants
    the logical order: one copy between kernels, read and written, and one
    of the (8, 128)-tiled result into the logical layout it is returned in.
    The model's input is laid out by the transfer that places it
    (`cost.relayout_copies`): no copy on the device.
    """
    text = (
        "model g(x: f32[2, 8, 16, 16]) -> f32[2, 16, 16, 16] {\n  param w: f32[16, 8, 3, 3]\n"
        "  return softmax(conv2d(x, w, padding=1), axis=-1)\n}\n"
    )
    module = compiled(text, "ws")
    assert sum(isinstance(op, loop.CopyOp) for op in module.walk()) > 1
    copies = [k for k in estimate(module, V4).kernels if k.kind == "relayout"]
    assert len(copies) == 2 and all(k.bound in ("memory", "latency") and k.flops == 0 for k in copies)
    assert [k.bytes["hbm"] for k in copies] == [2 * 4 * 2 * 16 * 16 * 16] * 2


def test_int8_doubles_the_array_rate_only_where_the_spec_says_so():
    text = gemm_model(1024, 1024, 1024, "i8")
    for spec, rate in ((V4, 1), (V5E, 2)):
        kernel = program(estimate(compiled(text, "ws"), spec))
        cycles = schedule_gemm(1, 1024, 1024, 1024, 128, 128, spec["num_arrays"], "ws",
                               spec["stationary_buffers"]).cycles
        assert kernel.extra["compute_cycles"] == -(-cycles // rate)
        assert array_peak(spec, "i8") == pytest.approx(spec["peak_ops_int8"], rel=3e-3)


# --------------------------------------------------------------------------- report


def test_report_json_fields():
    module = load_model(str(SAMPLES / "mlp.model"))
    compile_module(module, "tpu", Stage.HARDWARE)
    report = estimate(module, V4)
    data = report.as_json()
    assert data["target"] == "tpu" and data["total"]["chips"] == 1
    assert report.peak_flops == pytest.approx(V4["peak_flops_bf16"], rel=2e-3)
    for kernel in data["kernels"]:
        for key in ("name", "ops", "flops", "bytes", "time_s", "bound", "utilisation",
                    "compute_cycles", "stall_cycles", "dataflow"):
            assert key in kernel, key
        assert kernel["bound"] in ("compute", "memory", "latency")
        assert isinstance(kernel["compute_cycles"], int) and isinstance(kernel["stall_cycles"], int)
    gemms = [k for k in data["kernels"] if k["kind"] == "gemm"]
    # The MXU is weight-stationary; assign-dataflow holds either operand.
    assert gemms and all(k["dataflow"] in ("ws", "is") and k["compute_cycles"] > 0 for k in gemms)
    assert data["total"]["time_s"] == pytest.approx(sum(k["time_s"] for k in data["kernels"]))


def test_double_buffered_stationary_tiles_pay_the_shift_once_per_array():
    """Decode attention: one query row (T = 1) against 2048 keys folds 16 times; with a second
    stationary buffer only each array's first fold shifts its tile in (Jouppi et al. 2017)."""
    single = schedule_gemm(240, 1, 2048, 128, 128, 128, 4, "ws", 1)
    double = schedule_gemm(240, 1, 2048, 128, 128, 128, 4, "ws", 2)
    waves = 240 * 16 // 4
    assert single.cycles == waves * (2 * 128 + 128 + 1 - 2)
    assert double.cycles == waves * (128 + 128 + 1 - 2) + 128
    assert schedule_gemm(3, 64, 64, 64, 128, 128, 1, "os", 2) == schedule_gemm(3, 64, 64, 64, 128, 128, 1, "os", 1)
