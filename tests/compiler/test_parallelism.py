"""
`--devices N` with `--schedule tp=, dp=, pp=`: sharded programs compile, run
equal to the reference, and are reported on N devices; the tuner searches the
split of N when none is pinned.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from strata.backends.tuner.database import TuningDatabase
from strata.compiler.cli import main
from strata.compiler.frontend import compile_source
from strata.compiler.tuning.autotune import Options, autotune, mesh_candidates
from strata.dialects.device import default_device
from tests.passes.test_shard import BLOCK

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SMALL_GPT2 = ["-D", "S=16", "-D", "D=48", "-D", "H=4", "-D", "L=2"]


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err
    return code, out, err


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_gpt2_with_tensor_parallelism_runs_equal_to_the_reference_through_hardware(target, tmp_path, capsys):
    want, got = tmp_path / "want.npz", tmp_path / "got.npz"
    assert run(["run", SAMPLES / "gpt2.model", *SMALL_GPT2, "-o", want], capsys)[0] == 0
    code, _, err = run(["run", SAMPLES / "gpt2.model", *SMALL_GPT2, "--target", target, "--devices", "2",
                        "--schedule", "tp=2", "--through", "hardware", "-o", got], capsys)
    assert code == 0, err
    a, b = np.load(want)["out0"], np.load(got)["out0"]
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()


@pytest.mark.parametrize("tp", [2, 4])
def test_gpt2_with_sequence_parallelism_runs_equal_to_the_reference_through_hardware(tp, tmp_path, capsys):
    want, got, ir = tmp_path / "want.npz", tmp_path / "got.npz", tmp_path / "hw.mlir"
    assert run(["run", SAMPLES / "gpt2.model", *SMALL_GPT2, "-o", want], capsys)[0] == 0
    sharded = ["--devices", tp, "--schedule", f"tp={tp}", "--schedule", "sp=1"]
    code, _, err = run(["run", SAMPLES / "gpt2.model", *SMALL_GPT2, *sharded, "--through", "hardware", "-o", got],
                       capsys)
    assert code == 0, err
    a, b = np.load(want)["out0"], np.load(got)["out0"]
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    code, out, err = run(["compile", SAMPLES / "gpt2.model", *SMALL_GPT2, *sharded, "--emit", "hardware"], capsys)
    assert code == 0, err
    assert out.count("simt.reduce_scatter") == 2 * 2 and "simt.all_reduce" not in out


def test_sequence_parallelism_without_tensor_parallelism_is_a_clear_error(tmp_path, capsys):
    model = tmp_path / "block.model"
    model.write_text(BLOCK)
    code, _, err = run(["compile", model, "--schedule", "sp=1", "--report", "none"], capsys)
    assert code == 1 and "needs tp > 1" in err, err


def test_the_report_counts_stages_times_the_mesh(tmp_path, capsys):
    model = tmp_path / "block.model"
    model.write_text(BLOCK)
    code, out, err = run(["compile", model, "--target", "gpu", "--devices", "8", "--schedule", "tp=2",
                          "--schedule", "dp=2", "--report", "json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["total"]["devices"] == 8 and report["total"]["chips"] == 2
    kinds = {k["kind"] for k in report["kernels"]}
    assert {"all_reduce", "all_gather"} <= kinds
    # pp names the pipeline stages: the same compile.
    code, out2, _ = run(["compile", model, "--target", "gpu", "--schedule", "pp=2", "--schedule", "tp=2",
                         "--schedule", "dp=2", "--report", "json"], capsys)
    assert code == 0 and json.loads(out2)["total"] == report["total"]


@pytest.mark.parametrize("argv, message", [
    (["--devices", "6", "--schedule", "tp=4"], "--devices 6 is not a multiple of tp x dp = 4"),
    (["--devices", "8", "--schedule", "tp=2", "--schedule", "pp=2"], "makes 4 pipeline stages, not --schedule pp=2"),
    (["--schedule", "tp=0"], "tp and dp are device counts from 1"),
    (["--schedule", "dp=3"], "does not split evenly over dp=3"),
])
def test_parallelism_that_does_not_fit_is_a_clear_error(argv, message, tmp_path, capsys):
    model = tmp_path / "block.model"
    model.write_text(BLOCK)
    code, _, err = run(["compile", model, "--target", "gpu", *argv, "--report", "none"], capsys)
    assert code == 1 and message in err, err


def test_run_needs_a_stage_to_apply_a_schedule(capsys):
    code, _, err = run(["run", SAMPLES / "mlp.model", "--schedule", "tp=2"], capsys)
    assert code == 1 and "give --through STAGE" in err


def test_mesh_candidates_keep_the_pinned_degrees():
    # 10 splits of 8 devices, 6 of them with tp > 1 also with sequence parallelism.
    assert len(mesh_candidates(8, {})) == 16
    assert mesh_candidates(4, {"tp": 2}) == [
        {"tp": 2, "dp": 1, "pp": 2, "sp": 0}, {"tp": 2, "dp": 1, "pp": 2, "sp": 1},
        {"tp": 2, "dp": 2, "pp": 1, "sp": 0}, {"tp": 2, "dp": 2, "pp": 1, "sp": 1},
    ]
    assert {m["tp"] for m in mesh_candidates(4, {"sp": 1})} == {2, 4}


def test_the_tuner_searches_the_split_of_the_devices_and_keeps_the_cheapest(tmp_path):
    module = compile_source(BLOCK, "block.model")
    options = Options(budget=4, db=TuningDatabase(tmp_path / "db.jsonl"), devices=4)
    tuned, report = autotune(module, "gpu", default_device("gpu"), options)
    assert len(report.meshes) == len(mesh_candidates(4, {}))
    timed = [m for m in report.meshes if "time_s" in m]
    best = min(timed, key=lambda m: m["time_s"])
    assert report.mesh == {a: best[a] for a in ("tp", "dp", "pp", "sp")}
    assert any(m["sp"] == 1 and "time_s" in m for m in report.meshes)
    assert tuned.attributes["strata.chips"].value.data == report.mesh["pp"]
    assert report.tuned_time_s <= report.default_time_s * (1 + 1e-9)
    pinned = autotune(compile_source(BLOCK, "block.model"), "gpu", default_device("gpu"),
                      Options(budget=4, db=None, devices=4, pinned={"tp": 2}))[1]
    assert {m["tp"] for m in pinned.meshes} == {2} and pinned.mesh["tp"] == 2
    # A decode-shaped model has no rows to scatter: sp=1 is the sp=0 program, not costed twice.
    decode = "let B = 4\nmodel m(x: f32[B, 1, 64]) -> f32[B, 1, 64] {\n  param w1: f32[64, 256]\n" \
             "  param w2: f32[256, 64]\n  return x + relu(x @ w1) @ w2\n}\n"
    report = autotune(compile_source(decode, "m.model"), "gpu", default_device("gpu"),
                      Options(budget=4, db=None, devices=2, pinned={"tp": 2}))[1]
    assert [("time_s" in m, m["sp"]) for m in report.meshes] == [(True, 0), (False, 1)]
    assert "scatters nothing" in report.meshes[1]["error"]


def test_compile_autotune_on_devices_reports_them(tmp_path, capsys):
    model = tmp_path / "block.model"
    model.write_text(BLOCK)
    code, out, err = run(["compile", model, "--target", "tpu", "--devices", "4", "--autotune", "--budget", "4",
                          "--db", tmp_path / "db.jsonl", "--report", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)["total"]["devices"] == 4
