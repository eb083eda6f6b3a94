"""
The `strata` command line through `compiler.cli.main`: the `check` summary,
`compile` / `opt` round trips, `--help`, pass pipelines, and clean errors
(exit status 1, a located message, never a traceback) for bad input.
"""

import argparse
import re
from pathlib import Path

import pytest

from strata.compiler.cli import build_parser, main

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


# --------------------------------------------------------------------------- check


def test_check_summary_line(capsys, monkeypatch):
    monkeypatch.chdir(SAMPLES.parent)
    code, out, err = run(["check", "samples/mlp.model"], capsys)
    assert code == 0 and err == ""
    assert re.fullmatch(
        r"samples/mlp\.model: ok: model 'mlp', 6 ops, 4 params \(203,530 parameters\), \d+(\.\d+)? [kMGTP]?FLOP\n",
        out,
    ), out


def test_check_summary_with_override(capsys, monkeypatch):
    monkeypatch.chdir(SAMPLES.parent)
    code, out, _ = run(["check", "samples/mlp.model", "-D", "B=1"], capsys)
    assert code == 0
    assert out.startswith("samples/mlp.model: ok: model 'mlp', 6 ops, 4 params (203,530 parameters), ")


def test_check_printed_ir(tmp_path, capsys):
    ir = tmp_path / "mlp.mlir"
    assert run(["compile", SAMPLES / "mlp.model", "--emit", "graph", "-o", ir], capsys)[0] == 0
    code, out, _ = run(["check", ir], capsys)
    assert code == 0
    assert out.startswith(f"{ir}: ok: model 'mlp', 6 ops, 4 params (203,530 parameters), ")


# --------------------------------------------------------------------------- compile and opt round trips


@pytest.mark.parametrize(
    "sample, defines",
    [("mlp", []), ("gpt2", ["-D", "L=1"]), ("gpt2", ["-D", "L=1", "-D", "S=16"])],
)
@pytest.mark.parametrize("debuginfo", [True, False])
def test_compile_then_opt_prints_identically(sample, defines, debuginfo, tmp_path, capsys):
    graph = tmp_path / "graph.mlir"
    flags = [] if debuginfo else ["--no-debuginfo"]
    code, out, err = run(["compile", SAMPLES / f"{sample}.model", *defines, "--emit", "graph", *flags, "-o", graph], capsys)
    assert (code, out, err) == (0, "", "")
    text = graph.read_text()
    assert "graph." in text and ("loc(" in text) == debuginfo
    code, out, err = run(["opt", graph, *flags], capsys)
    assert (code, err) == (0, "")
    assert out == text
    # And once more through opt's own -o.
    again = tmp_path / "again.mlir"
    assert run(["opt", graph, *flags, "-o", again], capsys)[0] == 0
    assert again.read_text() == text


def test_compile_to_stdout_matches_file(tmp_path, capsys):
    graph = tmp_path / "graph.mlir"
    run(["compile", SAMPLES / "mlp.model", "--emit", "graph", "-o", graph], capsys)
    code, out, _ = run(["compile", SAMPLES / "mlp.model", "--emit", "graph"], capsys)
    assert code == 0 and out == graph.read_text()


def test_gpt2_override_changes_the_graph(tmp_path, capsys):
    one = run(["compile", SAMPLES / "gpt2.model", "-D", "L=1", "--emit", "graph", "--no-debuginfo"], capsys)[1]
    two = run(["compile", SAMPLES / "gpt2.model", "-D", "L=2", "--emit", "graph", "--no-debuginfo"], capsys)[1]
    assert one.count("graph.matmul") < two.count("graph.matmul")
    assert '"attn.1.w_qkv"' in two and '"attn.1.w_qkv"' not in one


@pytest.mark.parametrize("passes", ["canonicalize", "cse", "canonicalize,cse"])
def test_opt_with_upstream_passes(passes, tmp_path, capsys):
    graph = tmp_path / "graph.mlir"
    run(["compile", SAMPLES / "mlp.model", "--emit", "graph", "-o", graph], capsys)
    code, out, err = run(["opt", graph, "-p", passes], capsys)
    assert (code, err) == (0, "")
    assert "func.func @mlp" in out and "graph.matmul" in out
    # The result is valid IR that opt reads back unchanged.
    result = tmp_path / "result.mlir"
    result.write_text(out)
    assert run(["opt", result], capsys)[1] == out


def test_opt_reads_stdin(tmp_path, capsys, monkeypatch):
    import io
    import sys

    graph = tmp_path / "graph.mlir"
    run(["compile", SAMPLES / "mlp.model", "--emit", "graph", "-o", graph], capsys)
    monkeypatch.setattr(sys, "stdin", io.StringIO(graph.read_text()))
    code, out, _ = run(["opt", "-"], capsys)
    assert code == 0 and out == graph.read_text()


@pytest.mark.parametrize(
    "pipeline",
    [
        "bogus",
        "canonicalize,bogus",
        "fuse{nope=1}",
        "canonicalize{",
    ],
)
def test_bad_pipeline(pipeline, tmp_path, capsys):
    graph = tmp_path / "graph.mlir"
    run(["compile", SAMPLES / "mlp.model", "--emit", "graph", "-o", graph], capsys)
    code, out, err = run(["opt", graph, "-p", pipeline], capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"error: bad pass pipeline '{pipeline}'")


def test_bad_pipeline_in_compile(capsys):
    code, out, err = run(["compile", SAMPLES / "mlp.model", "--pass-pipeline", "bogus"], capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: bad pass pipeline 'bogus'")


# --------------------------------------------------------------------------- invalid IR

BAD_ADD = """\
builtin.module {
  func.func @m(%a: tensor<2x3xf32>, %b: tensor<2x3xf32>) -> tensor<2x4xf32> {
    %0 = graph.add %a, %b : tensor<2x3xf32>, tensor<2x3xf32> -> tensor<2x4xf32>LOC
    func.return %0 : tensor<2x4xf32>
  }
}
"""


def test_invalid_ir_names_the_op_and_its_location(tmp_path, capsys):
    model = tmp_path / "src.model"
    model.write_text("model m(a: f32[2, 3], b: f32[2, 3]) {\n  return a + b\n}\n")
    bad = tmp_path / "bad.mlir"
    bad.write_text(BAD_ADD.replace("LOC", f' loc("{model}":2:12)'))
    for command in (["opt", bad], ["check", bad], ["compile", bad]):
        code, out, err = run(command, capsys)
        assert code == 1 and out == ""
        assert err == (
            f"{model}:2:12: error: 'graph.add' op failed to verify: 'graph.add' result shape [2, 4]"
            " should be [2, 3]\n"
            "  return a + b\n"
            "           ^\n"
        )


def test_invalid_ir_without_location_names_the_op(tmp_path, capsys):
    bad = tmp_path / "bad.mlir"
    bad.write_text(BAD_ADD.replace("LOC", ""))
    code, out, err = run(["opt", bad], capsys)
    assert code == 1 and out == ""
    assert "'graph.add' op failed to verify" in err
    assert "result shape [2, 4] should be [2, 3]" in err


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("builtin.module {\n  %0 = graph.nonsense : tensor<2xf32>\n}\n", "graph.nonsense"),
        ("builtin.module {\n  func.func @m() {\n    func.return\n", "bad.mlir:4:1: error:"),
        ("this is not IR\n", "bad.mlir:1:6: error: Operation this is not registered"),
        ("", "bad.mlir:1:1: error:"),
    ],
)
def test_unparsable_ir(text, fragment, tmp_path, capsys):
    bad = tmp_path / "bad.mlir"
    bad.write_text(text)
    code, out, err = run(["opt", bad], capsys)
    assert code == 1 and out == ""
    assert fragment in err.replace(str(tmp_path) + "/", "")


def test_unreadable_and_unwritable_paths(tmp_path, capsys):
    code, _, err = run(["opt", tmp_path / "missing.mlir"], capsys)
    assert code == 1 and "cannot read" in err
    code, _, err = run(["compile", SAMPLES / "mlp.model", "-o", tmp_path / "no" / "such" / "dir.mlir"], capsys)
    assert code == 1 and "cannot write" in err


def test_defines_on_ir_input_are_an_error(tmp_path, capsys):
    graph = tmp_path / "graph.mlir"
    run(["compile", SAMPLES / "mlp.model", "--emit", "graph", "-o", graph], capsys)
    code, _, err = run(["check", graph, "-D", "B=2"], capsys)
    assert code == 1 and err == "error: -D applies to .model files, not to IR input\n"


def test_model_errors_exit_1_without_traceback(tmp_path, capsys):
    model = tmp_path / "bad.model"
    model.write_text("model m(x: f32[2, 3]) {\n  return x @ x\n}\n")
    for command in ("check", "compile", "run"):
        code, out, err = run([command, model], capsys)
        assert code == 1 and out == ""
        assert err == (
            f"{model}:2:12: error: '@' contraction dimensions differ: f32[2, 3] @ f32[2, 3] (3 vs 2)\n"
            "  return x @ x\n"
            "           ^\n"
        )


# --------------------------------------------------------------------------- help


def subparsers() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_documented_command_exists():
    assert set(subparsers()) >= {"check", "compile", "run", "opt"}


@pytest.mark.parametrize("command", ["check", "compile", "run", "opt"])
def test_help_mentions_every_option(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: strata {command}")
    parser = subparsers()[command]
    for action in parser._actions:
        for option in action.option_strings:
            assert re.search(rf"(^|[\s\[,]){re.escape(option)}\b", out), f"{command} --help does not mention {option}"
        if not action.option_strings:
            assert action.metavar in out
        if action.help and action.help != argparse.SUPPRESS:
            assert action.help.split()[0] in out


@pytest.mark.parametrize(
    "command, options",
    [
        ("check", ["-D"]),
        ("compile", ["-D", "--target", "--emit", "-o", "--output", "--no-debuginfo", "--pass-pipeline",
                     "--print-ir-after-all", "--print-ir-after", "--print-ir-after-change", "--dump-dir", "--timing"]),
        ("run", ["-D", "--weights", "--inputs", "--seed", "-o", "--output", "--target", "--through"]),
        ("opt", ["-p", "--passes", "-o", "--output", "--no-debuginfo"]),
    ],
)
def test_help_lists_the_known_options(command, options, capsys):
    with pytest.raises(SystemExit):
        main([command, "-h"])
    out = capsys.readouterr().out
    for option in options:
        assert option in out


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("check", "compile", "run", "opt"):
        assert command in out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["check"], ["compile", "x.model", "--emit", "nowhere"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err
