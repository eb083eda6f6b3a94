"""`strata sweep`: one row per point equal to its own `strata compile`, resumable, failures as rows, any executor."""

import builtins
import csv
import json

import pytest

from strata.compiler import sweep
from strata.compiler.cli import main

CONV = """
let N = 1
model conv(x: bf16[N, 16, 14, 14]) -> bf16[N, 32, 14, 14] {
  param w: bf16[32, 16, 3, 3]
  return relu(conv2d(x, w, padding=1))
}
"""
GRID = ["--target", "tpu", "--vary", "array_rows=32,64,128", "--vary", "num_arrays=1,2", "-D", "N=1,2"]


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "conv.model"
    path.write_text(CONV)
    return path


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err
    return code, out, err


def _sweep(model, out, capsys, *extra) -> dict:
    code, stdout, err = run(["sweep", model, *GRID, "-o", out, "--report", "json", *extra], capsys)
    assert code == 0, err
    return json.loads(stdout)


def test_each_row_equals_its_own_compile(model, tmp_path, capsys):
    result = _sweep(model, tmp_path / "r.csv", capsys)
    assert (result["evaluated"], result["cached"]) == (12, 0)
    rows = result["points"]
    assert len(rows) == 12 and {(r["array_rows"], r["num_arrays"], r["N"]) for r in rows} == {
        (a, n, b) for a in ("32", "64", "128") for n in ("1", "2") for b in ("1", "2")
    }
    for row in rows[::5]:
        code, out, _ = run([
            "compile", model, "--target", "tpu", "--spec", f"array_rows={row['array_rows']}",
            "--spec", f"num_arrays={row['num_arrays']}", "-D", f"N={row['N']}", "--report", "json",
        ], capsys)
        total = json.loads(out)["total"]
        assert code == 0 and row["error"] is None
        for name in ("time_s", "utilisation", "devices", "memory_per_device_bytes", "model_flops"):
            assert row[name] == total[name], name
        assert row["energy_j"] == pytest.approx(total["time_s"] * 170 * total["devices"])  # tpu-v4 power_mean_w
    # Bigger arrays are never slower on this conv.
    by = {(r["array_rows"], r["num_arrays"], r["N"]): r["time_s"] for r in rows}
    assert by[("128", "2", "2")] <= by[("32", "1", "2")]


def test_a_rerun_evaluates_only_what_is_missing(model, tmp_path, capsys):
    out = tmp_path / "r.csv"
    first = _sweep(model, out, capsys)
    assert _sweep(model, out, capsys)["evaluated"] == 0
    # An interrupted sweep: three finished rows and a half-written line survive; the rest is evaluated.
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:20])
    again = _sweep(model, out, capsys)
    assert (again["evaluated"], again["cached"]) == (9, 3)
    assert [r["time_s"] for r in again["points"]] == [r["time_s"] for r in first["points"]]
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == 12


def test_a_failing_point_is_a_row_with_its_error(model, tmp_path, capsys):
    code, out, err = run(["sweep", model, "--target", "tpu", "--vary", "array_rows=0,64", "-o", tmp_path / "r.csv",
                          "--report", "json"], capsys)
    assert code == 0, err
    bad, good = json.loads(out)["points"]
    assert bad["time_s"] is None and "array_rows" in bad["error"]
    assert good["error"] is None and good["time_s"] > 0


def test_parallel_jobs_give_the_same_rows(model, tmp_path, capsys):
    serial = _sweep(model, tmp_path / "a.csv", capsys)["points"]
    parallel = _sweep(model, tmp_path / "b.csv", capsys, "--jobs", "2")["points"]
    assert [r["time_s"] for r in serial] == [r["time_s"] for r in parallel]


def test_schedules_and_device_counts_are_columns(tmp_path, capsys):
    path = tmp_path / "mlp.model"
    path.write_text("let B = 8\nmodel m(x: f32[B, 64]) -> f32[B, 64] {\n  param w1: f32[64, 256]\n"
                    "  param w2: f32[256, 64]\n  return relu(x @ w1) @ w2\n}\n")
    code, out, err = run(["sweep", path, "--target", "gpu", "--schedule", "tp=1,2", "--devices", "2,4",
                          "-o", tmp_path / "r.csv", "--report", "json"], capsys)
    assert code == 0, err
    rows = json.loads(out)["points"]
    assert [(r["tp"], r["devices"]) for r in rows] == [("1", "2"), ("1", "4"), ("2", "2"), ("2", "4")]
    assert all(r["error"] is None for r in rows)
    assert rows[3]["chips"] == 2 and rows[0]["chips"] == 2
    code, again, _ = run(["sweep", path, "--target", "gpu", "--schedule", "tp=1,2", "--devices", "2,4",
                          "-o", tmp_path / "r.csv", "--report", "json"], capsys)
    assert json.loads(again)["points"] == rows  # read back from the file exactly as evaluated


def test_another_sweeps_file_is_refused(model, tmp_path, capsys):
    out = tmp_path / "r.csv"
    out.write_text("a,b\n1,2\n")
    code, _, err = run(["sweep", model, *GRID, "-o", out], capsys)
    assert code == 1 and "another sweep's columns" in err


def test_a_missing_ray_says_how_to_install_it(model, tmp_path, capsys, monkeypatch):
    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    code, _, err = run(["sweep", model, *GRID, "-o", tmp_path / "r.csv", "--executor", "ray"], capsys)
    assert code == 1 and "pip install 'strata[distributed]'" in err


@pytest.mark.slow
def test_ray_gives_the_same_numbers(model, tmp_path, capsys):
    pytest.importorskip("ray")
    local = _sweep(model, tmp_path / "a.csv", capsys)["points"]
    remote = _sweep(model, tmp_path / "b.csv", capsys, "--executor", "ray")["points"]
    assert [r["time_s"] for r in local] == [r["time_s"] for r in remote]
    assert _sweep(model, tmp_path / "b.csv", capsys, "--executor", "ray")["evaluated"] == 0


def test_plots(model, tmp_path, capsys):
    out = tmp_path / "r.csv"
    for extra in (["--plot", tmp_path / "a.png"], ["--plot", tmp_path / "b.png", "--pareto", "energy_j"]):
        code, _, err = run(["sweep", model, *GRID, "-o", out, "--report", "none", *extra], capsys)
        assert code == 0, err
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0
    code, _, err = run(["sweep", model, *GRID, "-o", out, "--plot", tmp_path / "c.png", "--plot-y", "nope"], capsys)
    assert code == 1 and "no column 'nope'" in err


def test_grid_and_argv():
    axes = sweep.parse_axes(["array_rows=32,64"], ["N=1,2,4"], ["tile=64,64,32;128,128,64"], "1,2")
    study = sweep.Sweep(models=("m.model",), target="tpu", axes=axes)
    points = sweep.grid(study)
    assert len(points) == 2 * 3 * 2 * 2
    assert sweep.point_argv(study, points[-1]) == [
        "compile", "m.model", "--target", "tpu", "--report", "json", "--spec", "array_rows=64", "-D", "N=4",
        "--schedule", "tile=128,128,64", "--devices", "2",
    ]
    with pytest.raises(sweep.StrataError, match="varied twice"):
        sweep.parse_axes(["N=1"], ["N=2"], [], None)
