"""
A walk over every subcommand with hostile arguments (issue 18): negative,
zero, NaN, infinite and huge numbers for every numeric flag; huge shapes
through -D; unknown targets, devices and spec keys; spec values out of
range; nonexistent, directory, FIFO, binary and non-UTF-8 files for every
path argument; outputs into missing folders, onto folders, onto /dev/full
and into FIFOs nothing reads; malformed `--schedule` strings.

Each case ends in exit 1 (or 2, a usage error) with a message, or in exit 0
where the input is legitimately fine (the case then checks the result),
within a time guard; never an internal error (exit 3), a traceback or a
Python exception class name. `main` runs in-process, so the fast walk
takes seconds; the exhaustive one (every spec key of every device at the
ends of its range) is marked slow.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from strata.compiler.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "samples" / "mlp.model")
EXCEPTION_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b")
GUARD_S = 60
"""The issue's bound: a clean answer within 60 s. A case past it is a hang."""

NUMBERS = ("-1", "0", "nan", "inf", "-inf", "1e308", "99999999999999999999999", "", "x", "1.5")
"""Hostile values for every numeric flag."""

BAD_INPUTS = ("{nope}", "{dir}", "{fifo}", "{binary}", "{latin1}", "{empty}", "/dev/zero")
"""Files no command can read as its input: missing, a folder, a FIFO, binary, not UTF-8, empty, endless."""

BAD_OUTPUTS = ("{missing}/out", "{dir}", "/dev/full", "{fifo}")
"""Outputs no command can write: into a missing folder, onto a folder, a full device, a FIFO nothing reads."""

BAD_SCHEDULES = ("tile=-1", "tile=x", "tile=1e308", "tp=0", "tp=-1", "dp=0", "pp=0", "pp=-1", "chips=-1",
                 "nosuch=1", "=", "", "tile", "dataflow=xx", "loop_order=-1", "channels_last=maybe", "tp=nan")

BAD_SPECS = ("clock_hz=1e308", "clock_hz=1e-308", "clock_hz=nan", "clock_hz=inf", "clock_hz=-1", "clock_hz=0",
             "clock_hz=x", "clock_hz", "=", "nosuch=1", "hbm_bandwidth=1e-308", "hbm_bytes=1e-12", "hbm_bytes=1",
             "sms=1e308", "sms=2.5", "smem_per_block_bytes=8")


class Hang(BaseException):
    """Raised by the time guard; a BaseException, so that `main` cannot report it as its own error."""


def _on_alarm(signum, frame):
    raise Hang(f"no answer within {GUARD_S} s")


@pytest.fixture
def files(tmp_path, monkeypatch):
    """The hostile files, a tuning database of the test's own, and a working folder for reproducers."""
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "binary").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "latin1").write_bytes("let caf\xe9 = 1\nmodel m(x: f32[4]) -> f32[4] {\n  return x\n}\n"
                                      .encode("latin-1"))
    (tmp_path / "empty").write_text("")
    (tmp_path / "plot.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATA_TUNING_DB", str(tmp_path / "tuning.jsonl"))
    return {"tmp": str(tmp_path), "dir": str(tmp_path / "dir"), "fifo": str(tmp_path / "fifo"),
            "binary": str(tmp_path / "binary"), "latin1": str(tmp_path / "latin1"), "empty": str(tmp_path / "empty"),
            "nope": str(tmp_path / "nope"), "missing": str(tmp_path / "missing"), "mlp": MLP,
            "db": str(tmp_path / "db.jsonl"), "plotdir": str(tmp_path / "plot.png"),
            "plotfifo": str(tmp_path / "fifo.png")}


def walk(argv: list[str], files: dict[str, str], capsys) -> tuple[int, str, str]:
    """Run `strata ARGV` in this process under the time guard; its exit status, stdout and stderr."""
    for name, path in files.items():  # not str.format: pass pipelines hold braces of their own
        argv = [a.replace("{" + name + "}", path) for a in argv]
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(GUARD_S)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean(code, out: str, err: str, allowed: tuple[int, ...]) -> None:
    text = out + err
    assert code in allowed, f"exit {code}, expected one of {allowed}:\n{err[-2000:]}"
    assert "internal error" not in text and "Traceback" not in text, err[-2000:]
    assert not EXCEPTION_NAME.search(text), EXCEPTION_NAME.search(text).group(0) + "\n" + err[-2000:]
    if code:
        assert "error" in text, f"exit {code} without an error message:\n{err[-2000:]}"


# --------------------------------------------------------------------------- the table


def _numeric_cases():
    """Every numeric flag of every subcommand, with every hostile number: a usage error or a clean refusal."""
    flags = [
        (["run", "{mlp}"], "--seed"), (["run", "{mlp}"], "--threads"), (["run", "{mlp}"], "--devices"),
        (["compile", "{mlp}", "--report", "none"], "--devices"),
        (["compile", "{mlp}", "--autotune", "--db", "{db}", "--report", "none"], "--budget"),
        (["compile", "{mlp}", "--autotune", "--db", "{db}", "--budget", "2", "--report", "none"], "--jobs"),
        (["compile", "{mlp}", "--autotune", "--db", "{db}", "--budget", "2", "--report", "none"], "--time-limit"),
        (["compile", "{mlp}", "--autotune", "--db", "{db}", "--budget", "2", "--report", "none"], "--seed"),
        (["tune", "{mlp}", "--db", "{db}"], "--budget"), (["tune", "{mlp}", "--db", "{db}", "--budget", "2"], "--jobs"),
        (["tune", "{mlp}", "--db", "{db}", "--budget", "2"], "--time-limit"),
        (["tune", "{mlp}", "--db", "{db}", "--budget", "2"], "--seed"),
        (["tune", "{mlp}", "--db", "{db}", "--budget", "2"], "--devices"),
        (["sweep", "{mlp}", "--vary", "sms=66,132", "-o", "{tmp}/r.csv", "--report", "none"], "--jobs"),
        (["sweep", "{mlp}", "--vary", "sms=66", "-o", "{tmp}/r.csv", "--report", "none"], "--devices"),
        (["sweep", "{mlp}", "--vary", "sms=66", "-o", "{tmp}/r.csv", "--report", "none", "--autotune",
          "--db", "{db}"], "--budget"),
        (["export", "{mlp}", "-o", "{tmp}/m.onnx"], "--seed"),
        (["fuzz", "--examples", "1", "--pass", "fuse"], "--seed"), (["fuzz", "--pass", "fuse"], "--examples"),
        (["measure", "{mlp}", "--repeat", "1"], "--seed"), (["measure", "{mlp}", "--repeat", "1"], "--threads"),
        (["measure", "{mlp}"], "--repeat"),
    ]
    # Values that are legitimately fine for a flag: (flag, value) -> the run succeeds (exit 0).
    fine = {
        ("--budget", "99999999999999999999999"),  # more than the space: the whole space, once
        ("--jobs", "99999999999999999999999"),  # at most the cores (and the points) are used
        ("--time-limit", "1e308"), ("--time-limit", "99999999999999999999999"), ("--time-limit", "1.5"),
        ("--seed", "0"),
    }
    for base, flag in flags:
        for value in NUMBERS:
            allowed = (0,) if (flag, value) in fine else (1, 2)
            yield pytest.param([*base, flag, value], allowed, id=f"{base[0]} {flag} {value or 'empty'}")


def _path_cases():
    """Every path argument given every unreadable file, and every output a place it cannot be written."""
    inputs = [
        ["check", "{}"], ["compile", "{}"], ["run", "{}"], ["tune", "{}", "--db", "{db}"], ["export", "{}", "-o",
        "{tmp}/m.onnx"], ["opt", "{}"], ["import", "{}", "-o", "{tmp}/m.model"],
        ["sweep", "{}", "--vary", "sms=66", "-o", "{tmp}/r.csv", "--report", "none"], ["fuzz", "--replay", "{}"],
        ["compile", "{mlp}", "--device-file", "{}"], ["run", "{mlp}", "--device-file", "{}"],
        ["tune", "{mlp}", "--device-file", "{}", "--db", "{db}"], ["opt", "{mlp}", "--device-file", "{}"],
        ["fuzz", "--examples", "1", "--device-file", "{}"], ["measure", "{}"],
        ["measure", "{mlp}", "--device-file", "{}"],
        ["sweep", "{mlp}", "--device-file", "{}", "--vary", "clock_hz=1e9", "-o", "{tmp}/r.csv", "--report", "none"],
        ["run", "{mlp}", "--inputs", "{}"], ["run", "{mlp}", "--weights", "{}"],
        ["export", "{mlp}", "--weights", "{}", "-o", "{tmp}/m.onnx"],
    ]
    for template in inputs:
        for bad in BAD_INPUTS:
            argv = [bad if a == "{}" else a for a in template]
            yield pytest.param(argv, (1, 2), id=f"{template[0]} {' '.join(template[1:3])} < {bad}")
    outputs = [
        ["compile", "{mlp}", "--emit", "graph", "-o", "{}"], ["run", "{mlp}", "-o", "{}"],
        ["export", "{mlp}", "-o", "{}"], ["opt", "{mlp}", "-o", "{}"],
        ["sweep", "{mlp}", "--vary", "sms=66", "-o", "{}", "--report", "none"],
    ]
    for template in outputs:
        for bad in BAD_OUTPUTS:
            argv = [a.replace("{}", bad) for a in template]
            yield pytest.param(argv, (1, 2), id=f"{template[0]} {template[-2]} > {bad}")
    plots = [["compile", "{mlp}", "--plot"],
             ["sweep", "{mlp}", "--vary", "sms=66,132", "-o", "{tmp}/r.csv", "--report", "none", "--plot"]]
    for template in plots:
        for bad in ("{missing}/out.png", "{dir}", "{plotdir}", "{plotfifo}", "{tmp}/x.txt", ""):
            yield pytest.param([*template, bad], (1, 2), id=f"{template[0]} --plot {bad or 'empty'}")
    for dumps in ("{binary}/dumps", "{binary}", "/dev/full", "/proc/strata-dumps"):
        yield pytest.param(["compile", "{mlp}", "--dump-dir", dumps, "--report", "none"], (1,),
                           id=f"compile --dump-dir {dumps}")
    # A tuning database that is no file strata may append to, or holds no records.
    for db in ("{dir}", "{fifo}", "/dev/full", "/dev/zero", "{missing}/x/db.jsonl"):
        yield pytest.param(["tune", "{mlp}", "--budget", "2", "--db", db], (1, 2) if "missing" not in db else (0,),
                           id=f"tune --db {db}")
    for db in ("{binary}", "{latin1}", "{empty}"):  # records that are not JSON are skipped with a warning
        yield pytest.param(["tune", "{mlp}", "--budget", "2", "--db", db], (0,), id=f"tune --db {db} (skipped)")
    # A sweep output that is not a CSV of this sweep.
    for out in ("{binary}", "{latin1}"):
        yield pytest.param(["sweep", "{mlp}", "--vary", "sms=66", "-o", out, "--report", "none"], (1,),
                           id=f"sweep -o {out}")


def _choice_cases():
    """Unknown targets, devices and spec keys; spec values out of range; -D too big or not integers."""
    for command in (["compile", "{mlp}"], ["run", "{mlp}"], ["tune", "{mlp}", "--db", "{db}", "--budget", "2"],
                    ["fuzz", "--examples", "1", "--pass", "fuse"], ["measure", "{mlp}", "--repeat", "1"]):
        name = command[0]
        yield pytest.param([*command, "--target", "nosuch"], (2,), id=f"{name} --target nosuch")
        for device in ("nosuch", "", "=", "../../etc/passwd", "tpu-v4" if name != "tune" else "groq-lpu"):
            # A device of another target than --target's default (gpu) is refused too.
            yield pytest.param([*command, "--device", device], (1, 2), id=f"{name} --device {device or 'empty'}")
        for spec in BAD_SPECS:
            # Legal figures too small for the model: `run` (the reference interpreter) and `fuse` ignore them.
            legal = spec in ("hbm_bytes=1", "smem_per_block_bytes=8") and name in ("run", "fuzz")
            allowed = (0, 1) if legal else (1, 2)
            yield pytest.param([*command, "--spec", spec], allowed, id=f"{name} --spec {spec or 'empty'}")
    yield pytest.param(["opt", "{mlp}", "--device", "h100", "--spec", "clock_hz=1e308"], (1,), id="opt --spec huge")
    yield pytest.param(["sweep", "{mlp}", "--target", "nosuch", "--vary", "sms=1", "-o", "{tmp}/r.csv"], (2,),
                       id="sweep --target nosuch")
    yield pytest.param(["sweep", "{mlp}", "--device", "nosuch", "--vary", "sms=1", "-o", "{tmp}/r.csv",
                        "--report", "none"], (1,), id="sweep --device nosuch")
    for vary in ("clock_hz=1e308", "nosuch=1", "sms=x", "sms=", "=1", "sms"):
        yield pytest.param(["sweep", "{mlp}", "--vary", vary, "-o", "{tmp}/r.csv", "--report", "none"], (1, 2),
                           id=f"sweep --vary {vary}")
    for define in ("B=0", "B=-1", "B=99999999999999999999999", "B=1e3", "B=x", "C=1", "=1", "B"):
        for command in (["check", "{mlp}"], ["compile", "{mlp}"], ["run", "{mlp}"], ["export", "{mlp}", "-o",
                        "{tmp}/m.onnx"]):
            yield pytest.param([*command, "-D", define], (1, 2), id=f"{command[0]} -D {define}")
        yield pytest.param(["sweep", "{mlp}", "-D", define, "-o", "{tmp}/r.csv", "--report", "none"], (1, 2),
                           id=f"sweep -D {define}")
    # Huge shapes: refused before any memory is taken (run), or costed as a model too big for the device.
    yield pytest.param(["run", "{mlp}", "-D", "B=4000000000"], (1,), id="run -D huge")
    yield pytest.param(["compile", "{mlp}", "-D", "B=9000000000000000000"], (1,), id="compile -D 2**63-ish")
    yield pytest.param(["check", "{mlp}", "-D", "B=4611686018427387904"], (1,), id="check -D 2**62")


def _schedule_cases():
    for schedule in BAD_SCHEDULES:
        for command in (["compile", "{mlp}", "--report", "none"], ["run", "{mlp}", "--through", "hardware"]):
            yield pytest.param([*command, "--schedule", schedule], (1, 2), id=f"{command[0]} --schedule {schedule}")
        yield pytest.param(["compile", "{mlp}", "--target", "tpu", "--report", "none", "--schedule", schedule],
                           (1, 2), id=f"compile tpu --schedule {schedule}")
        yield pytest.param(["sweep", "{mlp}", "--schedule", schedule, "-o", "{tmp}/r.csv", "--report", "none"],
                           (1, 2), id=f"sweep --schedule {schedule}")
    for pipeline in ("nosuch", "fuse{", "tile{sizes=abc}", "tile{sizes=-1}", "assign-dataflow{dataflow=zz}",
                     "fuse,assign-layout,tile,lower-to-loops,lower-to-hardware{target=tpu}"):
        yield pytest.param(["compile", "{mlp}", "--pass-pipeline", pipeline], (1, 2), id=f"--pass-pipeline {pipeline}")
    yield pytest.param(["compile", "{mlp}", "--print-ir-after", "nosuch"], (1,), id="--print-ir-after nosuch")
    for address in ("127.0.0.1:1", "nosuch", "127.0.0.1:99999"):
        yield pytest.param(["sweep", "{mlp}", "--vary", "sms=66", "-o", "{tmp}/r.csv", "--executor", "ray",
                            "--ray-address", address], (1,), id=f"sweep --ray-address {address}")


CASES = [*_numeric_cases(), *_path_cases(), *_choice_cases(), *_schedule_cases()]


@pytest.mark.parametrize("argv, allowed", CASES)
def test_hostile_arguments_end_cleanly(argv, allowed, files, capsys):
    assert_clean(*walk(argv, files, capsys), allowed)


def test_every_subcommand_is_walked():
    """A new subcommand joins the walk: every one the parser knows has cases above."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    walked = {case.values[0][0] for case in CASES} | {"targets"}
    missing = sorted(set(commands) - walked)
    assert not missing, f"subcommands without hostile cases in this walk: {missing}"


@pytest.mark.parametrize("command", sorted(next(a for a in build_parser()._actions if a.dest == "command").choices))
@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_every_subcommand_given_a_bad_file(command, bad, files, capsys):
    """Whatever its arguments, a subcommand handed an unreadable file as its first one ends cleanly."""
    assert_clean(*walk([command, bad], files, capsys), (0, 1, 2))


# --------------------------------------------------------------------------- legitimate extremes: correct results


def test_a_huge_time_limit_and_budget_tune_as_without_them(files, capsys):
    base = ["tune", "{mlp}", "--budget", "4", "--db", "{db}", "--report", "json"]
    code, out, err = walk(base, files, capsys)
    assert code == 0, err
    plain = json.loads(out)["total"]
    code, out, err = walk([*base, "--time-limit", "1e308"], files, capsys)
    assert code == 0, err
    limited = json.loads(out)["total"]
    assert (limited["default_time_s"], limited["tuned_time_s"]) == (plain["default_time_s"], plain["tuned_time_s"])


def test_more_devices_than_stages_says_how_many_it_used(files, capsys):
    code, out, err = walk(["compile", "{mlp}", "--devices", "1000", "--report", "json"], files, capsys)
    assert code == 0, err
    assert json.loads(out)["total"]["devices"] == 3
    assert "note: --devices 1000: the model uses 3 devices (3 pipeline stages of 1)" in err
    code, _, err = walk(["compile", "{mlp}", "--schedule", "pp=1000", "--report", "none"], files, capsys)
    assert code == 0 and "note: --schedule pp=1000: the model uses 3 devices" in err


def test_an_output_fifo_with_a_reader_is_written(files, capsys):
    """A FIFO nothing reads is refused at once; one with a reader (`-o >(gzip > x.gz)`) gets the whole output."""
    import threading

    got = []
    reader = threading.Thread(target=lambda: got.append(Path(files["fifo"]).read_text()))
    reader.start()
    code, _, err = walk(["compile", "{mlp}", "--emit", "graph", "-o", "{fifo}"], files, capsys)
    reader.join(timeout=30)
    assert code == 0, err
    assert got and got[0].startswith("builtin.module") and "func.func @mlp" in got[0]
    assert got[0].rstrip().endswith("} loc(unknown)")  # the whole module


def test_a_failing_ray_start_is_a_clean_error(files, capsys, monkeypatch):
    """ray.init failing (no resources, a broken install) was an internal error."""
    ray = pytest.importorskip("ray")

    def broken(*args, **kwargs):
        raise RuntimeError("Failed to start the GCS server")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", broken)
    code, _, err = walk(["sweep", "{mlp}", "--vary", "sms=66", "-o", "{tmp}/r.csv", "--executor", "ray"], files,
                        capsys)
    assert code == 1 and "cannot start a local Ray instance: Failed to start the GCS server" in err
    assert_clean(code, "", err, (1,))


def test_a_sweep_of_which_no_point_succeeds_fails(files, capsys):
    """Every point failing was exit 0; the rows (with their errors) are still written."""
    code, out, err = walk(["sweep", "{mlp}", "--vary", "hbm_bytes=1,2", "-o", "{tmp}/r.csv", "--report", "json"],
                          files, capsys)
    assert code == 1 and "none of the 2 points succeeded" in err and "more than one h100 holds" in err
    assert [row["error"] is not None for row in json.loads(out)["points"]] == [True, True]
    code, _, err = walk(["sweep", "{mlp}", "--vary", "sms=0,132", "-o", "{tmp}/s.csv", "--report", "none"],
                        files, capsys)
    assert code == 0, err  # one point failing is a row with its error


def test_spec_figures_are_bounded(files, capsys):
    """`clock_hz=1e308` and friends overflowed the cost models (inf times, 64-bit attributes): refused, with the range."""
    for spec, message in (("clock_hz=1e308", "'clock_hz' must lie between 1e-12 and 1e+18"),
                          ("hbm_bytes=0.5", "'hbm_bytes' must lie between 1 and 1e+18"),
                          ("sms=1e12", "'sms' is a count of at most 2,147,483,648")):
        code, _, err = walk(["compile", "{mlp}", "--spec", spec], files, capsys)
        assert code == 1 and message in err, err


# --------------------------------------------------------------------------- exhaustive: every spec key at its ends


@pytest.mark.slow
@pytest.mark.parametrize("device", ["h100", "tpu-v4", "groq-lpu"])
def test_every_spec_key_at_the_ends_of_its_range(device, files, capsys):
    """Each numeric figure of each device at its smallest and largest accepted value: a report of finite numbers or a clean error."""
    from strata.dialects import device as specs

    spec = specs.load_device(device)
    low, high = specs.FIGURE_RANGE
    for key, value in spec.values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        ends = ("1", str(specs.MAX_COUNT)) if key in specs.INTEGER_KEYS else (
            "1" if key.endswith("_bytes") else f"{low:g}", f"{high:g}")
        for end in ends:
            code, out, err = walk(["compile", "{mlp}", "--device", device, "--spec", f"{key}={end}",
                                   "--report", "json"], files, capsys)
            assert_clean(code, out, err, (0, 1))
            if code == 0:
                assert not re.search(r"\b(Infinity|NaN)\b", out), f"{key}={end}: {out[:400]}"
