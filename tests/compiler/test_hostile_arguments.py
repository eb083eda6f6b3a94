"""
Hostile arguments end in a clear exit 1 (or 2 for usage), never an internal
error (exit 3), a traceback or an exception class name (issue 18's classes
that this walk covers so far).
"""

import json
import re
from pathlib import Path

import pytest

from strata.compiler.cli import main

ROOT = Path(__file__).parents[2]
MLP = "samples/mlp.model"
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv, code, message", [
    (["run", MLP, "--seed", "-1"], 2, "a seed is between 0 and 2**63 - 1"),
    (["tune", MLP, "--seed", "x"], 2, "a seed is a whole number"),
    (["compile", MLP, "--plot", "{tmp}/x.txt"], 2, "written as .png, .svg or .pdf"),
    (["compile", MLP, "--plot", "{tmp}/plot"], 2, "written as .png, .svg or .pdf"),
    (["compile", MLP, "--plot", "{tmp}/missing/x.png"], 2, "no folder"),
    (["tune", MLP, "--db", "{tmp}"], 1, "is not a regular file"),
    (["compile", MLP, "--target", "lpu", "--schedule", "chips=-1"], 1, "chips must be 0 (as few as fit) or more"),
    (["compile", MLP, "--target", "cpu", "--schedule", "threads=0"], 1, "a thread count is between 1 and 256"),
    (["tune", MLP, "--target", "tpu", "--threads", "2"], 1, "--threads is for --target cpu"),
    (["compile", MLP, "--device", "a100", "--device-file", "backends/specs/h100.toml"], 1, "not both"),
    (["compile", MLP, "--spec", "smem_per_block_bytes=8"], 1, "it needs a device with more"),
])
def test_hostile_arguments_are_clean_errors(argv, code, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    argv = [str(ROOT / a) if a.startswith(("samples/", "backends/")) else a for a in argv]
    got, _, err = _run(argv, capsys)
    assert got == code, err
    assert message in err
    assert "Traceback" not in err and "internal error" not in err
    assert not EXCEPTION_NAME.search(err), err


def test_a_poisoned_tuning_database_is_not_trusted(tmp_path, capsys):
    """Records whose cost is negative, zero or not a number are skipped with a warning, never chosen."""
    import subprocess
    import sys

    db = tmp_path / "db.jsonl"
    clean = tmp_path / "clean.jsonl"
    assert main(["tune", str(ROOT / MLP), "--budget", "4", "--db", str(clean), "--report", "json"]) == 0
    honest = json.loads(capsys.readouterr().out)["total"]
    poisoned = []
    for line in clean.read_text().splitlines():
        for cost in (-1.0, 0.0, float("nan")):
            record = json.loads(line)
            record["cost"] = cost
            poisoned.append(json.dumps(record))
    db.write_text("\n".join(poisoned) + "\n")
    # In a process of its own, so that the warnings reach stderr as the user sees them.
    run = subprocess.run([sys.executable, "-m", "strata.compiler.cli", "tune", str(ROOT / MLP), "--budget", "4",
                          "--db", str(db), "--report", "json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    tuned = json.loads(run.stdout)["total"]
    assert "warning: " in run.stderr and "is not a positive number of seconds" in run.stderr
    assert "UserWarning" not in run.stderr and "Traceback" not in run.stderr
    assert tuned["tuned_time_s"] == pytest.approx(honest["tuned_time_s"])


def _model(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_integers_stay_within_64_bits(tmp_path, capsys):
    lets = "let A0 = 3\n" + "".join(f"let A{i} = A{i - 1} * A{i - 1}\n" for i in range(1, 41))
    path = _model(tmp_path, "big.model", lets + "model m(x: f32[4]) -> f32[4] {\n  return x\n}\n")
    code, _, err = _run(["check", path], capsys)
    assert code == 1 and "beyond the 64-bit integers of the language" in err and "big.model:7:" in err
    long = _model(tmp_path, "long.model", "model m(x: f32[" + "9" * 5000 + "]) -> f32[4] {\n  return x\n}\n")
    code, _, err = _run(["check", long], capsys)
    assert code == 1 and "an integer literal of 5,000 digits is too long" in err and "long.model:1:16" in err


def test_a_long_chain_of_elementwise_ops_compiles(tmp_path, capsys):
    body = "".join("  y = relu(y) + 1.0\n" if i % 2 else "  y = -y\n" for i in range(2000))
    path = _model(tmp_path, "chain.model", "model m(x: f32[4]) -> f32[4] {\n  y = x\n" + body + "  return y\n}\n")
    code, _, err = _run(["compile", path, "--emit", "loop", "-o", tmp_path / "chain.mlir", "--report", "none"], capsys)
    assert code == 0, err


def test_check_and_dumps_of_later_stages(tmp_path, capsys):
    loop = tmp_path / "loop.mlir"
    assert _run(["compile", ROOT / MLP, "--emit", "loop", "-o", loop, "--report", "none"], capsys)[0] == 0
    code, out, _ = _run(["check", loop], capsys)
    assert code == 0 and "ok: loop-stage IR" in out
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = _run(["compile", ROOT / MLP, "--dump-dir", blocker / "dumps", "-o", tmp_path / "x.mlir"], capsys)
    assert code == 1 and "cannot write the dump" in err and "Traceback" not in err


@pytest.mark.parametrize("step, message", [("0", "stepping by 0"), ("-4", "stepping by -4"),
                                           ("huge", "more than any kernel's tiles")])
def test_edited_tile_loops_are_refused_with_their_location(step, message, tmp_path, capsys):
    loop = tmp_path / "loop.mlir"
    assert _run(["compile", ROOT / MLP, "--emit", "loop", "-o", loop, "--report", "none"], capsys)[0] == 0
    text = loop.read_text()
    lb, ub, st = re.search(r"scf.for %\S+ = (%\S+) to (%\S+) step (%\S+)", text).groups()
    name, value = (ub, "9223372036854775807") if step == "huge" else (st, step)
    edited = re.sub(re.escape(name) + r" = arith.constant -?\d+ : index", f"{name} = arith.constant {value} : index",
                    text, count=1)
    loop.write_text(edited)
    for command in (["run", loop], ["opt", loop]):
        code, _, err = _run(command, capsys)
        assert code == 1 and message in err and "mlp.model:9:14" in err, err


@pytest.mark.parametrize("other", ["gpu", "lpu"])
def test_a_dump_compiled_for_another_target_is_refused(other, tmp_path, capsys):
    """A TPU hardware dump given --target lpu reported 0 FLOP, and --target gpu was an internal error."""
    dump = tmp_path / "tpu.mlir"
    assert _run(["compile", ROOT / MLP, "--target", "tpu", "--emit", "hardware", "-o", dump, "--report", "none"],
                capsys)[0] == 0
    code, _, err = _run(["compile", dump, "--target", other], capsys)
    assert code == 1 and f"the input was lowered for tpu device 'tpu-v4', not for --target {other}" in err


GATHER = "model m(ids: i64[4]) -> f32[4, 3] {\n  param table: f32[100, 3]\n  return gather(table, ids)\n}\n"


@pytest.mark.parametrize("through", [[], ["--through", "loop"]])
def test_gather_ids_out_of_range_are_refused(through, tmp_path, capsys):
    """Ids [0, 5, 999999, -1] of a 100-row table gave rows [0, 5, 99, 0]; -1 is the last row (ONNX)."""
    import numpy as np

    path = _model(tmp_path, "g.model", GATHER)
    table = np.arange(300, dtype=np.float32).reshape(100, 3)
    np.savez(tmp_path / "w.npz", table=table)
    np.savez(tmp_path / "bad.npz", ids=np.array([0, 5, 999999, -1]))
    np.savez(tmp_path / "ok.npz", ids=np.array([0, 5, -100, -1]))
    weights = ["--weights", tmp_path / "w.npz"]
    code, _, err = _run(["run", path, *weights, "--inputs", tmp_path / "bad.npz", *through], capsys)
    assert code == 1 and "g.model:3:10: error: gather id 999999 is out of range for a table of 100 rows" in err
    out = tmp_path / "out.npz"
    code, _, err = _run(["run", path, *weights, "--inputs", tmp_path / "ok.npz", *through, "-o", out], capsys)
    assert code == 0, err
    with np.load(out) as z:
        np.testing.assert_array_equal(z["out0"], table[[0, 5, 0, 99]])


def test_outputs_of_every_float8_load_back(tmp_path, capsys):
    """An f8e5m2 output (NumPy kind 'f') was written as is: NumPy could not load the file."""
    import numpy as np

    path = _model(tmp_path, "f8.model", "model m(out0: f8e5m2[4], out1: bf16[2]) -> (f8e5m2[4], bf16[2]) {\n"
                                        "  return -out0, out1 * 2.0\n}\n")
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    assert _run(["run", path, "-o", first], capsys)[0] == 0
    with np.load(first) as z:
        assert [z[k].dtype for k in z.files] == [np.float32, np.float32]
        a = {k: z[k] for k in z.files}
    code, _, err = _run(["run", path, "--inputs", first, "-o", second], capsys)
    assert code == 0, err
    with np.load(second) as z:
        np.testing.assert_array_equal(z["out0"], -a["out0"])


@pytest.mark.parametrize("source, message", [
    pytest.param("model m(a: f32[100000, 1], b: f32[1, 100000]) -> f32[] {\n  return sum(a @ b, axis=[0, 1])\n}\n",
                 "m.model:2:16: error: 'graph.matmul' needs 37.3 GiB (f32[100000, 100000], 37.3 GiB)", id="matmul"),
    pytest.param("model m(x: f32[1, 1, 4, 4], w: f32[1, 1, 1, 1]) -> f32[1, 1, 2, 2] {\n"
                 "  return conv2d(x, w, padding=100000, stride=100002)\n}\n",
                 "m.model:2:10: error: 'graph.conv2d' needs 149.0 GiB (f32[1, 1, 2, 2], 0.0 GiB; 149.0 GiB of padded"
                 " input", id="padding"),
])
def test_intermediates_too_big_to_run_are_refused_before_running(source, message, tmp_path):
    """Small inputs, a 37 GB intermediate: a MemoryError, since only inputs and weights were counted."""
    from strata.compiler.diagnostics import StrataError
    from strata.compiler.execution.reference import check_run_size
    from strata.compiler.frontend import load_model

    with pytest.raises(StrataError) as info:
        check_run_size(load_model(_model(tmp_path, "m.model", source)))
    assert message in str(info.value) and "shrink the model with -D" in str(info.value)
    check_run_size(load_model(str(ROOT / MLP)))


def _edit_first_loop(loop: Path, edit) -> None:
    """Replace the first tile loop's `ub` or `step` constant by what `edit(loc)` defines (computed ones)."""
    text = loop.read_text()
    _, ub, st = re.search(r"scf.for %\S+ = (%\S+) to (%\S+) step (%\S+)", text).groups()
    loop.write_text(edit(text, ub, st))


@pytest.mark.parametrize("what, message", [
    # Computed, so no verifier sees it: the loop interpreter stepped backwards (no iteration, zeros).
    pytest.param("step", "a loop from 0 to 256 steps by -8; steps must be positive", id="computed-negative-step"),
    # Within the verifier's 2^40 iterations, but past the kernel's 256 columns: it spun.
    pytest.param("ub", "a tile loop from 0 to 549755813888 leaves its kernel's dim, which spans 0 to 256",
                 id="bound-past-the-kernel"),
])
def test_the_loop_interpreter_refuses_runaway_loops(what, message, tmp_path, capsys):
    loop = tmp_path / "loop.mlir"
    assert _run(["compile", ROOT / MLP, "--emit", "loop", "-o", loop, "--report", "none"], capsys)[0] == 0

    def edit(text, ub, st):
        if what == "ub":
            return re.sub(re.escape(ub) + r" = arith.constant \d+ : index", f"{ub} = arith.constant 549755813888 : index",
                          text, count=1)
        # step = 0 - 128, computed with arith.subi.
        return re.sub(re.escape(st) + r" = arith.constant (\d+) : index",
                      f"%neg = arith.constant \\1 : index\n      %zero = arith.constant 0 : index\n"
                      f"      {st} = arith.subi %zero, %neg : index", text, count=1)

    _edit_first_loop(loop, edit)
    code, _, err = _run(["run", loop], capsys)
    assert code == 1 and message in err and "mlp.model:9:14" in err, err
