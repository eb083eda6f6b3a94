"""
backends/cpu.py: the CPU model's estimates respond to the spec, the shape and the threads as
the machine does; the host's GEMM lands where its runs do (efficiency bounds, no wall clock).
"""

import pytest

from strata.backends import cpu as cpu_model
from strata.backends.cost import estimate
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import compile_source, load_model
from strata.compiler.pipeline import parse_pipeline
from strata.dialects.device import load_device, module_device, with_overrides
from strata.dialects.hardware import cpu

GEMM = """model gemm(a: f32[{m}, {k}], b: f32[{k}, {n}]) {{
  return a @ b
}}
"""

ELEMENTWISE = """model ew(x: f32[{n}, 1024]) {{
  return {fn}(x)
}}
"""


def _report(source: str, device=None, threads: int = 1, name: str = "m.model"):
    module = compile_source(source, name)
    compile_module(module, "cpu", Stage.HARDWARE, device=device,
                   pipeline=None if threads == 1 else _pipeline(threads))
    return estimate(module, module_device(module)), module


def _pipeline(threads: int):
    from strata.compiler.driver import passes_between
    from strata.compiler.schedule import apply_schedule

    return apply_schedule(passes_between("cpu", Stage.GRAPH, Stage.HARDWARE), {"threads": str(threads)})


def _gemm(m=1024, n=1024, k=1024, **kw):
    return _report(GEMM.format(m=m, n=n, k=k), **kw)


def test_host_gemm_runs_near_the_measured_share_of_the_fma_peak():
    """
    The 1024^3 f32 GEMM: 2.1 GFLOP; the host's code measured 12.5-13.6 ms on one
    core (65-70% of its 244 GFLOP/s peak). The estimate must sit in that band's
    neighbourhood (60-75%), compute-bound, and use the micro-kernel.
    """
    report, module = _gemm()
    (kernel,) = report.kernels
    spec = load_device("host-cpu")
    efficiency = 2 * 1024**3 / kernel.time_s / cpu_model.core_peak(spec)
    assert 0.60 <= efficiency <= 0.75
    assert kernel.bound == "compute" and kernel.extra["micro_kernel"] == "12x32"
    assert report.total()["time_s"] == pytest.approx(kernel.time_s)


def test_two_threads_share_the_row_tiles():
    one, _ = _gemm()
    two, module = _gemm(threads=2)
    kernel = next(k for k in module.walk() if isinstance(k, cpu.KernelOp))
    assert (kernel.threads.value.data, kernel.parallel_tiles.value.data) == (2, 8)
    assert one.time_s / two.time_s == pytest.approx(2.0, rel=0.02)
    # More threads than cores time-share the two cores: no faster.
    four, _ = _gemm(threads=4)
    assert four.time_s >= two.time_s


def test_one_tile_kernels_gain_nothing_from_threads():
    """The MLP's first GEMM is one 64 x 256 output tile (as measured: no 2-thread gain)."""
    module = load_model("samples/mlp.model", {})
    compile_module(module, "cpu", Stage.HARDWARE, pipeline=_pipeline(2))
    kernels = [k for k in module.walk() if isinstance(k, cpu.KernelOp)]
    assert all(k.threads.value.data == 1 == k.parallel_tiles.value.data for k in kernels)


def test_gemm_time_follows_the_clock_and_the_shape():
    base, _ = _gemm(m=512, n=512, k=512)
    spec = load_device("host-cpu")
    fast, _ = _gemm(m=512, n=512, k=512, device=with_overrides(spec, ["clock_hz=7.63e9"]))
    # The FMAs run twice as fast; the tile copies still take the L2's time.
    assert base.kernels[0].extra["compute_s"] / fast.kernels[0].extra["compute_s"] == pytest.approx(2.0)
    assert 1.7 < base.time_s / fast.time_s < 2.0
    # Twice the K: twice the FLOPs, with the output tile's fixed cost spread over more of them.
    bigger, _ = _gemm(m=512, n=512, k=1024)
    assert 1.7 * base.time_s < bigger.time_s < 2 * base.time_s


def test_ragged_tiles_pay_for_padded_register_blocks():
    """N = 40 fills one 32-wide strip and masks most of a second: worse per FLOP than N = 256."""
    wide, _ = _gemm(m=256, n=256, k=256)
    ragged, _ = _gemm(m=256, n=40, k=256)
    per_flop = [r.time_s / r.kernels[0].flops for r in (wide, ragged)]
    assert per_flop[1] > 1.3 * per_flop[0]


def test_streams_follow_the_bandwidth_once_memory_bound():
    source = ELEMENTWISE.format(n=8192, fn="relu")
    spec = load_device("host-cpu")
    report, _ = _report(source)
    slow, _ = _report(source, device=with_overrides(spec, ["l3_bandwidth=1e10", "l3_bandwidth_per_core=5e9"]))
    slower, _ = _report(source, device=with_overrides(spec, ["l3_bandwidth=5e9", "l3_bandwidth_per_core=2.5e9"]))
    assert slow.kernels[0].bound == "memory" and slow.time_s > 3 * report.time_s
    assert slower.time_s / slow.time_s == pytest.approx(2.0, rel=0.01)


def test_exponentials_cost_polynomials():
    """An exp-like element is a polynomial (`CYCLES_PER_TRANSCENDENTAL`): with memory out of the way it dominates."""
    relu, _ = _report(ELEMENTWISE.format(n=8192, fn="relu"))
    gelu, module = _report(ELEMENTWISE.format(n=8192, fn="gelu"))
    kernel = next(k for k in module.walk() if isinstance(k, cpu.KernelOp))
    assert kernel.transcendentals.value.data == 8192 * 1024
    assert gelu.kernels[0].extra["compute_s"] > 5 * relu.kernels[0].extra["compute_s"]
    assert gelu.time_s >= relu.time_s
    fast = with_overrides(load_device("host-cpu"), ["l3_bandwidth=1e13", "l3_bandwidth_per_core=1e13"])
    relu, _ = _report(ELEMENTWISE.format(n=8192, fn="relu"), device=fast)
    gelu, _ = _report(ELEMENTWISE.format(n=8192, fn="gelu"), device=fast)
    assert gelu.time_s > 1.5 * relu.time_s and gelu.kernels[0].bound == "compute"


def test_data_beyond_the_l3_streams_from_dram():
    source = ELEMENTWISE.format(n=8192, fn="relu")
    report, _ = _report(source)
    small_l3, _ = _report(source, device=with_overrides(load_device("host-cpu"), ["l3_bytes=8388608"]))
    assert "l3" in report.kernels[0].bytes and "dram" in small_l3.kernels[0].bytes
    assert small_l3.time_s > report.time_s


def test_another_cpu_tiles_for_its_caches_and_prices_its_cores():
    spec = load_device("epyc-9654")
    report, module = _gemm(device=spec, threads=96)
    kernel = next(k for k in module.walk() if isinstance(k, cpu.KernelOp))
    assert list(kernel.tile_sizes.get_values()) == [64, 128, 128]
    # 16 row tiles on 96 threads: 16 cores busy, the rest idle.
    assert (kernel.threads.value.data, kernel.parallel_tiles.value.data) == (16, 16)
    one, _ = _gemm(device=spec)
    assert one.time_s / report.time_s == pytest.approx(16, rel=0.05)


def test_report_has_the_cpu_columns():
    report, _ = _gemm(m=128, n=128, k=128)
    data = report.as_json()
    assert data["target"] == "cpu" and data["device"] == "host-cpu"
    kernel = data["kernels"][0]
    assert {"time_s", "threads", "parallel_tiles", "micro_kernel", "compute_s", "memory_s"} <= set(kernel)
    assert data["total"]["time_s"] == pytest.approx(kernel["time_s"])
    assert data["total"]["peak_flops_per_s"] == pytest.approx(cpu_model.core_peak(load_device("host-cpu")))


def test_pipeline_option_threads_must_be_positive():
    with pytest.raises(Exception, match="threads must be at least 1"):
        module = compile_source(GEMM.format(m=8, n=8, k=8), "m.model")
        compile_module(module, "cpu", Stage.HARDWARE, pipeline=_pipeline(0))
    assert parse_pipeline("lower-to-hardware{threads=2}").passes[0].threads == 2
