"""
The whole-model fidelity harness (benchmarks/fidelity.py, cases in
benchmarks/fidelity_cases.toml, results in docs/fidelity.md).

Fast: the case file is complete (every case has a source, a unit, a machine
and phases whose model files exist and pass `strata check` with the case's
-D sizes), and the harness's arithmetic (unit conversion, geometric-mean
error) is right. Slow: the harness runs every case and each one gives a
finite, positive predicted/measured ratio, and the acceptance figures are
reported. The acceptance thresholds themselves (geometric-mean error within
25%, no case off by more than 2x) are not asserted: the cost models do not
meet them yet, and docs/fidelity.md says which physics each large error
lacks.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from strata.compiler.cli import main as strata_main

ROOT = Path(__file__).parent.parent.parent
HARNESS = ROOT / "benchmarks" / "fidelity.py"


def _harness():
    spec = importlib.util.spec_from_file_location("fidelity", HARNESS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fidelity"] = module  # dataclasses and the worker pool look the module up by name
    spec.loader.exec_module(module)
    return module


fidelity = _harness()
CASES = fidelity.load_cases()


def test_enough_cases_over_the_three_machines():
    assert len(CASES) >= 12
    assert {c["target"] for c in CASES} == {"gpu", "tpu", "lpu"}
    assert len({c["id"] for c in CASES}) == len(CASES), "case ids are unique"
    kinds = {c["kind"] for c in CASES}
    assert {"llm-decode", "llm-throughput", "cnn", "attention"} <= kinds
    # LLM decode at batch 1 and at large batch, a multi-device LLM, a CNN at large batch
    assert any(c["kind"] == "llm-decode" and c["batch"] == 1 for c in CASES)
    assert any(c["kind"].startswith("llm") and c["batch"] >= 32 for c in CASES)
    assert any(c["kind"].startswith("llm") and c["tp"] * c["dp"] * max(c["pp"], 1) > 1 for c in CASES)
    assert any(c["kind"] == "cnn" and c["batch"] >= 64 for c in CASES)
    head_dims = {c["phase"][0]["defines"]["DH"] for c in CASES if c["kind"] == "attention"}
    assert {64, 128, 256} <= head_dims
    assert {c["role"] for c in CASES} == {"calibration", "validation"}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case_is_complete(case):
    assert fidelity.problems(case) == []
    assert case["source"].strip() and case["where"].strip()
    assert case["unit"] in {**fidelity.RATE_UNITS, **fidelity.TIME_UNITS}


def _phases():
    seen = {}
    for case in CASES:
        for phase in case["phase"]:
            key = (phase["model"], tuple(sorted(phase.get("defines", {}).items())))
            seen.setdefault(key, case["id"])
    return sorted(seen)


@pytest.mark.parametrize("model, defines", _phases(), ids=lambda v: v if isinstance(v, str) else None)
def test_phase_model_passes_strata_check(model, defines, capsys):
    args = ["check", str(ROOT / "benchmarks" / "models" / model)]
    for name, value in defines:
        args += ["-D", f"{name}={value}"]
    assert strata_main(args) == 0
    assert ": ok: model" in capsys.readouterr().out


def test_conversion_and_errors_by_hand():
    case = {"id": "x", "role": "validation", "kind": "llm-decode", "target": "gpu", "device": "a100",
            "devices": 1, "tp": 1, "dp": 1, "pp": 1, "unit": "tokens/s", "measured": 100.0, "work": 2,
            "phase": [{"model": "a", "count": 1}, {"model": "b", "count": 3}], "source": "s"}
    jobs = fidelity.jobs_of(case)
    results = {jobs[0]: {"time_s": 0.01, "error": None}, jobs[1]: {"time_s": 0.002, "error": None}}
    row = fidelity.evaluate(case, results)
    # one event = 0.01 + 3 x 0.002 = 0.016 s; 2 tokens per event
    assert row["event_s"] == pytest.approx(0.016)
    assert row["predicted"] == pytest.approx(125.0)
    assert row["ratio"] == pytest.approx(1.25) and row["time_ratio"] == pytest.approx(0.8)
    case_ms = {**case, "unit": "ms", "measured": 8.0}
    assert fidelity.evaluate(case_ms, results)["ratio"] == pytest.approx(2.0)
    case_tf = {**case, "unit": "TFLOPS", "measured": 100.0, "work": 1.6e12}
    assert fidelity.evaluate(case_tf, results)["predicted"] == pytest.approx(100.0)
    assert fidelity.geomean_error([2.0, 0.5]) == pytest.approx(1.0)
    assert fidelity.geomean_error([1.1, 1 / 1.1]) == pytest.approx(0.1)
    failed = fidelity.evaluate(case, {jobs[0]: {"time_s": None, "error": "boom"}, jobs[1]: results[jobs[1]]})
    assert failed["ratio"] is None and failed["errors"]


@pytest.mark.slow
def test_harness_runs_every_case_with_a_finite_ratio():
    """About 5 minutes on an idle 2-core machine: every case compiles and converts to its unit."""
    rows, summary, _ = fidelity.run(CASES, workers=2)
    assert len(rows) == len(CASES)
    for row in rows:
        assert not row["errors"], (row["id"], row["errors"])
        assert row["ratio"] is not None and math.isfinite(row["ratio"]) and row["ratio"] > 0, row["id"]
    for role in ("calibration", "validation", "all"):
        group = summary["groups"][role]
        assert group["failed"] == 0 and math.isfinite(group["geomean_error"])
    # reported, not asserted: the thresholds the cost models do not meet yet
    assert set(summary["acceptance"]) == {
        "geomean_error_within_25pct", "no_case_over_2x", "validation_no_worse_than_calibration"}
