"""
`strata fuzz` finds bugs planted in the passes: each test breaks a pass on
purpose (monkeypatched), runs `strata fuzz` through `compiler.cli.main`, and
checks that it exits 1 naming the broken property, prints a shrunk model,
and writes it to a `.model` file that `strata compile` accepts.
"""

import re

import pytest

from strata.compiler.cli import main
from strata.dialects.graph import ops as g
from strata.passes import assign_layout, fuse, lower_to_loops


def fuzz(tmp_path, capsys, *args: str) -> tuple[str, str]:
    """Run `strata fuzz ARGS`; it must fail. Returns its stdout and the shrunk model."""
    failure = tmp_path / "failure.model"
    status = main(["fuzz", *args, "-o", str(failure)])
    out, err = capsys.readouterr()
    assert status == 1, out + err
    assert failure.exists(), out
    model = failure.read_text()
    assert model in out
    return out, model


def statements(model: str) -> list[str]:
    body = model[model.index("model fuzz(") :]
    return [line for line in body.split("\n")[1:] if line.startswith("  ") and not line.startswith(("  param ", "  return "))]


def compiles(path, capsys, *args: str) -> None:
    assert main(["compile", str(path), *args]) == 0
    capsys.readouterr()


def test_swapped_operands_in_fuse(tmp_path, capsys, monkeypatch):
    """`fuse` puts a sub or div into a kernel with its operands swapped."""
    materialize = fuse.materialize

    def swapping(group, name, order):
        kernel = materialize(group, name, order)
        for op in kernel.body.block.ops:
            if isinstance(op, (g.SubOp, g.DivOp)):
                op.operands = [op.operands[1], op.operands[0]]
        return kernel

    monkeypatch.setattr(fuse, "materialize", swapping)
    out, model = fuzz(tmp_path, capsys, "--pass", "fuse", "--examples", "60")
    assert "property 'semantics' failed" in out
    assert re.search(r" [-/] |- ", model) and len(statements(model)) <= 3, model
    compiles(tmp_path / "failure.model", capsys, "--emit", "fused")


def test_swapped_operands_in_lower_to_loops(tmp_path, capsys, monkeypatch):
    """`lower-to-loops` computes the tile of a sub or div with its operands swapped."""
    materialize = lower_to_loops._TileBuilder._materialize

    def swapping(self, value, region, pad):
        tile = materialize(self, value, region, pad)
        if isinstance(getattr(value, "owner", None), (g.SubOp, g.DivOp)) and isinstance(tile.owner, (g.SubOp, g.DivOp)):
            tile.owner.operands = [tile.owner.operands[1], tile.owner.operands[0]]
        return tile

    monkeypatch.setattr(lower_to_loops._TileBuilder, "_materialize", swapping)
    out, model = fuzz(tmp_path, capsys, "--pass", "lower-to-loops", "--examples", "60", "--target", "gpu")
    assert "property 'semantics' failed" in out and "after 'lower-to-loops'" in out
    assert len(statements(model)) <= 3, model
    compiles(tmp_path / "failure.model", capsys, "--target", "gpu")


def test_dropped_relayout_in_assign_layout(tmp_path, capsys, monkeypatch):
    """`assign-layout` drops its relayouts: results leave in a physical layout."""
    monkeypatch.setattr(assign_layout._Assigner, "relayout", lambda self, value, layout, cache, before: value)
    out, model = fuzz(tmp_path, capsys, "--pass", "assign-layout", "--target", "tpu", "--examples", "30")
    assert "property 'interface' failed" in out and "physical layout" in out
    assert len(statements(model)) <= 1, model
    compiles(tmp_path / "failure.model", capsys, "--target", "tpu")


def test_dropped_relayout_copy_in_lower_to_loops(tmp_path, capsys, monkeypatch):
    """`lower-to-loops` drops the copy of a relayout: a kernel reads a buffer that was never laid out."""
    lower_function = lower_to_loops.lower_function

    def dropping(fn):
        lower_function(fn)
        for op in list(fn.body.block.ops):
            if op.name == "loop.copy":
                op.detach()
                op.erase()

    monkeypatch.setattr(lower_to_loops, "lower_function", dropping)
    out, model = fuzz(tmp_path, capsys, "--pass", "lower-to-loops", "--target", "tpu", "--examples", "30")
    assert "property 'semantics' failed" in out
    assert len(statements(model)) <= 1, model
    compiles(tmp_path / "failure.model", capsys, "--target", "tpu")


def test_clean_passes_pass(capsys):
    """The same runs on the real passes find nothing."""
    assert main(["fuzz", "--pass", "fuse", "--examples", "10"]) == 0
    assert "10 examples checked" in capsys.readouterr().out


def test_bad_arguments(capsys):
    assert main(["fuzz", "--pass", "no-such-pass"]) == 1
    assert "no-such-pass" in capsys.readouterr().err
    assert main(["fuzz", "--examples", "0"]) == 1
    assert "--examples" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fuzz", "--pass", "fuse", "--pass-pipeline", "fuse"])
    capsys.readouterr()


def test_replay(tmp_path, capsys):
    model = tmp_path / "m.model"
    model.write_text("model m(x: f32[2, 3]) {\n  param w: f32[3, 4]\n  return relu(x @ w) - 1.0\n}\n")
    assert main(["fuzz", "--replay", str(model), "--target", "lpu"]) == 0
    assert "every property holds" in capsys.readouterr().out


def test_replay_checks_the_tuner_too(tmp_path, capsys, monkeypatch):
    """A replay of the default pipeline runs `tuned-not-worse`, as the run that wrote the model did."""
    from strata.compiler.testing import properties

    def worse():
        def tune(module, target):
            from strata.compiler.driver import Stage, compile_module

            compile_module(module, target, Stage.HARDWARE)
            for kernel in module.walk():
                if kernel.name == "cpu.kernel":
                    kernel.threads = type(kernel.threads)(2, 64)  # a fork and join it does not need
            return module

        return tune

    monkeypatch.setattr(properties, "autotuner", worse)
    model = tmp_path / "m.model"
    model.write_text("model m(x: f32[2, 3]) {\n  param w: f32[3, 4]\n  return relu(x @ w) - 1.0\n}\n")
    assert main(["fuzz", "--replay", str(model), "--target", "cpu"]) == 1
    assert "property 'tuned-not-worse' fails" in capsys.readouterr().out

