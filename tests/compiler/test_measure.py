"""
`strata measure` and `strata tune --target cpu --measure` (compiler/measure.py),
the instrumented export (`export-mlir{instrument}`) and the measured records
of the tuning database. No assertion is about how fast anything runs: only
that every kernel is timed, the timers nest, the values are unchanged, and
the tuner keeps what its own records say is fastest.
"""

import json
import warnings

import numpy as np
import pytest

from strata.backends.cost import model_function
from strata.backends.tuner.database import TuningDatabase, TuningKey
from strata.backends.tuner.space import point_key
from strata.compiler import measure
from strata.compiler.cli import main
from strata.compiler.driver import attach_device
from strata.compiler.execution import native, reference, weights
from strata.compiler.frontend import load_model
from strata.dialects.vocabulary import TARGETS
from tests.support import REDUCED, assert_close

needs_mlir = pytest.mark.skipif(
    not native.tools_available(),
    reason="the MLIR/LLVM 22 tools are not installed (apt-get install mlir-22-tools llvm-22)",
)
needs_cpu = pytest.mark.skipif("cpu" not in TARGETS, reason="no cpu target")
needs_openmp = pytest.mark.skipif(
    not native.OPENMP_LIBRARY.exists(), reason="LLVM's OpenMP runtime is not installed (apt-get install libomp-22-dev)"
)

MLP = ["samples/mlp.model", "-D", "B=4"]


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@needs_mlir
@needs_cpu
def test_measure_json_times_every_kernel_of_the_report(capsys):
    # measure costs on this machine (`--device host`) unless a device is named.
    report = _json(capsys, ["compile", *MLP, "--target", "cpu", "--device", "host", "--report", "json"])
    measured = _json(capsys, ["measure", *MLP, "--target", "cpu", "--repeat", "3", "--report", "json"])
    assert measured["device"] == "host"
    assert [k["name"] for k in measured["kernels"]] == [k["name"] for k in report["kernels"]]
    assert measured["resolution_s"] > 0
    for kernel, costed in zip(measured["kernels"], report["kernels"]):
        assert kernel["time_s"] == pytest.approx(costed["time_s"])
        _check_measured(kernel, measured["resolution_s"])
    total = measured["total"]
    assert total["time_s"] == pytest.approx(report["total"]["time_s"])
    assert total["measured_time_s"] > 0
    assert total["kernels_measured_time_s"] == pytest.approx(sum(k["measured_time_s"] for k in measured["kernels"]))


@needs_mlir
@needs_cpu
def test_measure_in_several_processes_keeps_each_figure_fastest(capsys):
    measured = _json(capsys, ["measure", *MLP, "--repeat", "2", "--processes", "2", "--report", "json"])
    single = _json(capsys, ["measure", *MLP, "--repeat", "2", "--report", "json"])
    assert (measured["processes"], single["processes"]) == (2, 1)
    assert [k["name"] for k in measured["kernels"]] == [k["name"] for k in single["kernels"]]
    for kernel in measured["kernels"]:
        _check_measured(kernel, measured["resolution_s"])
    assert measured["total"]["time_s"] == pytest.approx(single["total"]["time_s"])
    assert measured["total"]["measured_time_s"] > 0


def _check_measured(kernel: dict, resolution_s: float) -> None:
    """A kernel's measured time (the clock's cost taken out: 0 at the least), its ratio and whether it was resolved."""
    seconds = kernel["measured_time_s"]
    assert seconds is not None and seconds >= 0
    assert kernel["resolved"] == (seconds >= resolution_s)
    if seconds:
        assert kernel["ratio"] == pytest.approx(kernel["time_s"] / seconds)
    else:
        assert kernel["ratio"] is None


def test_a_failing_measuring_process_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(measure, "CHILD", "import sys; sys.stderr.write('error: no such model'); sys.exit(1)")
    with pytest.raises(measure.MeasureError, match="error: no such model"):
        measure.measure_apart(["measure", "missing.model"], 2)


def test_the_fastest_process_sets_a_row_its_ratio_and_whether_it_was_resolved():
    row = {"name": "gemm_0", "time_s": 2e-6}
    fastest = measure._fastest([5e-6, 4e-6, None])
    assert fastest == 4e-6 and measure._fastest([None, None]) is None
    assert measure._with_measured(row, fastest, 2e-8) == {**row, "measured_time_s": 4e-6, "ratio": 0.5,
                                                          "resolved": True}
    assert measure._with_measured(row, 1e-8, 2e-8)["resolved"] is False
    assert measure._with_measured(row, None, 2e-8) == {**row, "measured_time_s": None, "ratio": None,
                                                       "resolved": False}


def test_the_middle_mean_ignores_the_outer_quarters_and_resolves_below_a_clock_step():
    # A kernel of about 43 ns read by a clock in 10 ns steps (40 or 50, the median 40), and two disturbed runs.
    assert measure.middle_mean([40, 50, 40, 40, 50, 40, 0, 900]) == 42.5
    assert measure.middle_mean([7]) == 7


def test_every_slot_is_timed_less_the_clock_own_bracket():
    """`Instrumented.time`: per slot the middle mean of the runs, less one empty bracket (the `bracket` slot over
    EMPTY_BRACKETS), never below 0; the bracket itself is returned too."""
    import ctypes

    from strata.passes.export_mlir import EMPTY_BRACKETS

    slots = ["bracket", "gemm_0", "copy#0", "total"]
    timers = (ctypes.c_int64 * len(slots))()
    readings = iter([[25 * EMPTY_BRACKETS, 1025, 10, 2000]] * 4)

    def call():
        for i, ns in enumerate(next(readings)):
            timers[i] += ns

    build = measure.Instrumented(model=None, slots=slots, timers=timers)
    times = build.time(call, repeat=3, warmup=1)
    assert times == pytest.approx({"bracket": 25e-9, "gemm_0": 1000e-9, "copy#0": 0.0, "total": 1975e-9})


@needs_mlir
@needs_cpu
def test_kernel_timers_nest_in_the_whole_function():
    """In one run, the whole function's timer covers every kernel's and copy's."""
    module = load_model("samples/gpt2.model", REDUCED["gpt2"])
    attach_device(module, None, "cpu")
    build = measure.build_instrumented(measure.to_loops(module, "cpu"), "cpu")
    call, _ = build.model.prepare(*_values(module))
    call()
    ctypes_timers = list(build.timers)
    assert (build.slots[0], build.slots[-1]) == ("bracket", "total")
    assert ctypes_timers[-1] > 0 and all(t >= 0 for t in ctypes_timers)
    # The empty brackets run before the whole function's opens.
    assert ctypes_timers[0] > 0 and sum(ctypes_timers[1:-1]) <= ctypes_timers[-1]
    kernels = [s for s in build.slots[1:-1] if not s.startswith("copy#")]
    assert len(kernels) == len(set(kernels))


def _values(module):
    bound = weights.bind_values(model_function(module), 0)
    return bound.inputs, bound.params


@needs_mlir
@needs_cpu
@pytest.mark.parametrize("name", ["mlp", pytest.param("resnet18", marks=pytest.mark.slow)])
def test_instrumentation_does_not_change_the_values(name):
    """The instrumented build computes the un-instrumented build's outputs bit for bit, and the reference's."""
    module = load_model(f"samples/{name}.model", REDUCED[name])
    inputs, params = _values(module)
    want = reference.run_module(module.clone(), inputs, params)
    attach_device(module, None, "cpu")
    # ResNet-18 channels-last (the cpu's default is channels-first): its weights are relaid, once, at load.
    schedule = {"channels_last": "true"} if name == "resnet18" else None
    loops = measure.to_loops(module, "cpu", schedule)
    plain = native.compile_exported(native.export(loops, "cpu")).run(inputs, params)
    result = measure.measure(module, "cpu", inputs, params, repeat=1, schedule=schedule)
    for a, b in zip(plain, result.outputs, strict=True):
        assert np.array_equal(a, b)
    assert_close(want, result.outputs)
    if name == "resnet18":  # its weights are relaid once, at load: costed and timed apart, each a relayout
        relayouts = [k for k in result.at_load if k["kind"] == "relayout"]
        assert len(relayouts) == 20 and all(k["measured_time_s"] is not None for k in relayouts)
        assert all(k["measured_time_s"] is not None for k in result.kernels if k["kind"] == "relayout")
        assert not result.unestimated


@needs_mlir
@needs_cpu
def test_tune_measure_never_keeps_a_schedule_measured_slower(tmp_path, capsys):
    db = tmp_path / "tuning.jsonl"
    data = _json(capsys, ["tune", *MLP, "--target", "cpu", "--measure", "--db", str(db), "--budget", "16",
                          "--candidates", "1", "--repeat", "2", "--report", "json"])
    measured = data["measured"]
    assert measured["measured_time_s"] <= measured["default_measured_time_s"]
    assert measured["kept"] in ("tuned", "default")
    records = [json.loads(line) for line in db.read_text().splitlines()]
    timed = [r for r in records if "measured_time_s" in r]
    assert timed and all(r.get("threads", 1) == 1 for r in timed)
    for kernel in measured["kernels"]:
        rows = kernel["candidates"]
        assert point_key(rows[0]["point"]) != point_key(rows[-1]["point"]) or len(rows) == 1
        assert kernel["tuned_measured_time_s"] == min(r["measured_time_s"] for r in rows)
        assert kernel["tuned_measured_time_s"] <= kernel["default_measured_time_s"]
        # What the database records for the kept point is what was compared.
        kept = [r for r in timed if point_key(r["point"]) == point_key(kernel["best_point"])
                and r["measured_time_s"] == kernel["tuned_measured_time_s"]]
        assert kept


@needs_mlir
@needs_cpu
@needs_openmp
def test_tune_measure_screens_with_the_estimates_of_its_threads(tmp_path, capsys):
    """`tune --measure --threads 2` searches and screens 2-thread estimates, and records them as such."""
    db = tmp_path / "tuning.jsonl"
    data = _json(capsys, ["tune", *MLP, "--target", "cpu", "--measure", "--threads", "2", "--db", str(db),
                          "--budget", "8", "--candidates", "1", "--repeat", "1", "--report", "json"])
    assert data["threads"] == 2 and data["measured"]["threads"] == 2
    records = [json.loads(line) for line in db.read_text().splitlines()]
    assert records and all(r["threads"] == 2 for r in records)


def test_database_keeps_measured_times_apart_from_estimates(tmp_path):
    db = TuningDatabase(tmp_path / "t.jsonl")
    key = TuningKey("k", "cpu", "d", threads=2)
    a, b = {"tiles": [64, 64, 64], "order": [0, 1]}, {"tiles": [32, 32, 32], "order": [1, 0]}
    db.record(key, a, 3e-6)  # an estimate only, as older files hold
    db.record_measured(key, [(a, 3e-6, 5e-6), (b, 4e-6, 2e-6)])
    assert db.lookup(key) == {point_key(a): 3e-6, point_key(b): 4e-6}
    assert db.lookup_measured(key) == {point_key(a): 5e-6, point_key(b): 2e-6}
    assert db.lookup_measured(TuningKey("other", "cpu", "d", threads=2)) == {}


def test_database_keeps_each_thread_count_apart(tmp_path):
    """A cpu estimate for 2 threads is never reused for 1 (nor a run on 2 threads), and a record naming no
    threads (every older file's) is of one."""
    path = tmp_path / "t.jsonl"
    db = TuningDatabase(path)
    one, two = TuningKey("k", "cpu", "d"), TuningKey("k", "cpu", "d", threads=2)
    point = {"tiles": [64, 64, 64], "order": [0, 1]}
    db.record(one, point, 3e-6)
    db.record_measured(two, [(point, 2e-6, 2.5e-6)])
    assert "threads" not in json.loads(path.read_text().splitlines()[0])
    assert db.lookup(one) == {point_key(point): 3e-6} and db.lookup(two) == {point_key(point): 2e-6}
    assert db.lookup_measured(one) == {} and db.lookup_measured(two) == {point_key(point): 2.5e-6}


def test_database_skips_a_bad_measured_time(tmp_path):
    path = tmp_path / "t.jsonl"
    db = TuningDatabase(path)
    key = TuningKey("k", "cpu", "d")
    db.record_measured(key, [({"tiles": [8]}, 1e-6, 2e-6)])
    record = json.loads(path.read_text())
    path.write_text(path.read_text() + json.dumps({**record, "measured_time_s": -1.0}) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert db.lookup_measured(key) == {point_key({"tiles": [8]}): 2e-6}
    assert any("measured_time_s" in str(w.message) for w in caught)


def test_measure_refuses_other_targets(capsys):
    assert main(["measure", *MLP, "--target", "gpu"]) == 1
    assert "give --target cpu" in capsys.readouterr().err


def test_measure_refuses_a_bad_repeat(capsys):
    assert main(["measure", *MLP, "--repeat", "0"]) == 1
    assert "--repeat must be between 1 and 10000" in capsys.readouterr().err
    assert main(["measure", *MLP, "--processes", "0"]) == 1
    assert "--processes must be between 1 and 20" in capsys.readouterr().err


def test_tune_measure_refuses_other_targets(capsys):
    assert main(["tune", *MLP, "--target", "tpu", "--measure"]) == 1
    assert "give --target cpu" in capsys.readouterr().err


def test_measure_without_the_toolchain_says_what_to_install(capsys, monkeypatch):
    def missing(name):
        raise native.MlirToolError(f"error: '{name}' was not found; the mlir backend needs the LLVM/MLIR 22 tools:"
                                   " apt-get install mlir-22-tools llvm-22")

    monkeypatch.setattr(native, "find_tool", missing)
    assert main(["measure", *MLP, "--target", "cpu"]) == 1
    assert "apt-get install mlir-22-tools" in capsys.readouterr().err


def test_measure_refuses_device_parallelism(capsys):
    assert main(["measure", *MLP, "--schedule", "tp=2"]) == 1
    assert "this one CPU" in capsys.readouterr().err


@needs_mlir
@needs_cpu
def test_work_at_load_is_reported_and_timed_apart(capsys, tmp_path):
    """
    The scale product over params alone runs once, at load: `at_load`, in no slot of the call's,
    timed apart by running the load function again (with `--processes`, the fastest process's).
    """
    from tests.passes.test_export_mlir import AT_LOAD

    path = tmp_path / "m.model"
    path.write_text(AT_LOAD)
    report = _json(capsys, ["compile", str(path), "--target", "cpu", "--device", "host", "--report", "json"])
    for processes in ("1", "2"):
        measured = _json(capsys, ["measure", str(path), "--repeat", "3", "--processes", processes, "--report", "json"])
        assert [k["name"] for k in report["at_load"]] == [k["name"] for k in measured["at_load"]] == ["elementwise_0"]
        assert "elementwise_0" not in {k["name"] for k in measured["kernels"]}
        assert [k["name"] for k in measured["kernels"]] == [k["name"] for k in report["kernels"]]
        assert not measured["unestimated"]
        for kernel in measured["at_load"]:
            _check_measured(kernel, measured["resolution_s"])
        total = measured["total"]
        assert report["total"]["load_time_s"] > 0
        assert total["load_time_s"] == pytest.approx(report["total"]["load_time_s"])
        assert total["load_measured_time_s"] == pytest.approx(measured["at_load"][0]["measured_time_s"] or 0.0)
        assert total["time_s"] == pytest.approx(sum(k["time_s"] for k in measured["kernels"]))


@needs_mlir
@needs_cpu
@needs_openmp
def test_measure_prices_the_threads_it_runs_on(capsys):
    """`measure --threads 2` runs on 2 threads and compares with the cost model's estimate for 2, as `compile --threads 2` gives it."""
    # B=16: the first GEMM's share of each thread outlasts `PARALLEL_GRAIN` forks ten times over. The
    # fork's latency is pinned: the session's host probe, taken while other work held a core, once
    # measured one so long that no kernel was cut for two threads.
    mlp = [MLP[0], "-D", "B=16", "--spec", "parallel_region_latency_s=5e-7"]
    report = _json(capsys, ["compile", *mlp, "--target", "cpu", "--device", "host", "--threads", "2", "--report", "json"])
    measured = _json(capsys, ["measure", *mlp, "--threads", "2", "--repeat", "2", "--report", "json"])
    assert measured["threads"] == 2
    assert [k["time_s"] for k in measured["kernels"]] == pytest.approx([k["time_s"] for k in report["kernels"]])
    assert [k["threads"] for k in measured["kernels"]] == [k["threads"] for k in report["kernels"]]
    assert max(k["threads"] for k in measured["kernels"]) == 2
