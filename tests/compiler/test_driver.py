"""
The driver: the default pipeline per target, `--dump-dir` dumps that re-parse
and resume, the manifest, IR printing between passes, decisions read back
from edited dumps, and failure reports with a reproducer.
"""

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from xdsl.dialects.builtin import TensorType
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from strata.compiler import ir
from strata.compiler.cli import main
from strata.compiler.driver import STAGE_ORDER, DumpOptions, Stage, default_pipeline, detect_stage, run_passes
from strata.compiler.frontend import load_model
from strata.dialects.graph import ops as g

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SMALL_GPT2 = ["-D", "S=16", "-D", "D=48", "-D", "H=4", "-D", "L=2"]
PASS_NAMES = ["shard", "fuse", "assign-layout", "tile", "lower-to-loops", "place-chips", "assign-dataflow",
              "lower-to-hardware"]
"""The default pipeline of every target."""


def pass_names(target: str) -> list[str]:
    return PASS_NAMES


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_default_pipeline_reaches_every_stage_in_order():
    for target in ("gpu", "tpu", "lpu"):
        stages = [stage for stage, _ in default_pipeline(target)]
        # `mlir` branches off the loop stage (export-mlir), outside the default pipeline.
        assert stages == [s for s in STAGE_ORDER[1:] if s != Stage.MLIR]
        names = [p.name for _, passes in default_pipeline(target) for p in passes]
        assert names == pass_names(target)


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_dump_dir_dumps_reparse_and_resume_to_the_same_result(target, tmp_path, capsys):
    dumps = tmp_path / "dumps"
    final = tmp_path / "final.mlir"
    code, _, err = run(
        ["compile", SAMPLES / "gpt2.model", *SMALL_GPT2, "--target", target, "--dump-dir", dumps, "-o", final], capsys
    )
    assert code == 0, err
    files = sorted(p.name for p in dumps.glob("*.mlir"))
    assert files == ["00-input.mlir"] + [f"{i:02d}-{name}.mlir" for i, name in enumerate(pass_names(target), 1)]
    manifest = json.loads((dumps / "manifest.json").read_text())["passes"]
    assert [p["name"] for p in manifest] == pass_names(target)
    for entry in manifest:
        # shard has nothing to do without a mesh (tp = dp = 1), assign-dataflow off the systolic
        # target; every other pass changes the IR.
        idle = entry["name"] == "shard" or (entry["name"] == "assign-dataflow" and target != "tpu")
        assert entry["changed"] is not idle and entry["time_s"] >= 0
        assert entry["ops_after"] == sum(entry["op_counts"].values())
        assert entry["options"].startswith(entry["name"])
    expected = final.read_text()
    for dump in sorted(dumps.glob("*.mlir")):
        code, out, err = run(["opt", dump], capsys)
        assert code == 0, f"{dump.name}: {err}"
        assert out == dump.read_text()
        resumed = tmp_path / f"resumed-{dump.name}"
        code, _, err = run(["compile", dump, "--target", target, "-o", resumed], capsys)
        assert code == 0, f"{dump.name}: {err}"
        assert resumed.read_text() == expected, f"resuming from {dump.name} changed the result"


def test_each_dump_is_at_its_stage(tmp_path, capsys):
    dumps = tmp_path / "d"
    run(["compile", SAMPLES / "mlp.model", "--target", "tpu", "--dump-dir", dumps, "-o", tmp_path / "o"], capsys)
    stages = [detect_stage(ir.parse_module(p.read_text(), p.name)) for p in sorted(dumps.glob("*.mlir"))]
    assert stages == [Stage.GRAPH, Stage.GRAPH, Stage.FUSED, Stage.LAYOUT, Stage.LAYOUT, Stage.LOOP, Stage.LOOP, Stage.LOOP,
                      Stage.HARDWARE]


def test_print_ir_after_options(tmp_path, capsys):
    model = SAMPLES / "mlp.model"
    _, _, err = run(["compile", model, "--print-ir-after-all", "-o", tmp_path / "o"], capsys)
    headers = re.findall(r"// -----// IR Dump After (\S+).*\((\S+)\) //----- //", err)
    assert [name for _, name in headers] == PASS_NAMES
    _, _, err = run(["compile", model, "--print-ir-after", "tile", "-o", tmp_path / "o"], capsys)
    assert err.count("IR Dump After") == 1 and "(tile)" in err and "tile_sizes" in err
    _, _, err = run(["compile", model, "--emit", "loop", "--print-ir-after-change", "-o", tmp_path / "o"], capsys)
    assert err.count("IR Dump After") == 4
    _, _, err = run(["compile", model, "--timing", "-o", tmp_path / "o"], capsys)
    assert [line.split()[0].split("{")[0] for line in err.splitlines()] == PASS_NAMES
    assert all(re.search(r"ms  ops \d+ -> \d+", line) for line in err.splitlines())


def test_edited_dump_decisions_are_read_back(tmp_path, capsys):
    """Tile sizes written by `tile` are data: editing them in a dump changes the loops."""
    dumps = tmp_path / "d"
    run(["compile", SAMPLES / "mlp.model", "--target", "gpu", "--emit", "loop", "--dump-dir", dumps,
         "-o", tmp_path / "o"], capsys)
    tiled = (dumps / "04-tile.mlir").read_text()
    edited, count = re.subn(r'(graph.kernel "gemm_0"[^\n]*?)tile_sizes = array<i64: [0-9, ]+>',
                            r"\1tile_sizes = array<i64: 16, 32, 8>", tiled)
    assert count == 1
    (tmp_path / "edited.mlir").write_text(edited)
    code, out, err = run(["compile", tmp_path / "edited.mlir", "--emit", "loop"], capsys)
    assert code == 0, err
    assert "tile_sizes = array<i64: 16, 32, 8>" in out
    assert "arith.constant 8 : index" in out


def test_failing_pass_reports_and_writes_a_reproducer(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tempfile.tempdir = None  # read TMPDIR again
    try:
        code, _, err = run(["compile", SAMPLES / "mlp.model", "--pass-pipeline", "fuse,lower-to-loops"], capsys)
    finally:
        tempfile.tempdir = None
    assert code == 1
    assert "pass 'lower-to-loops' failed" in err and "run 'tile' before 'lower-to-loops'" in err
    # Into the temporary folder, never the working directory.
    (reproducer,) = (tmp_path / "tmp").glob("strata-reproducer-*.mlir")
    assert str(reproducer) in err and not list(tmp_path.glob("*.mlir"))
    text = reproducer.read_text()
    assert text.startswith("// Replay with: strata opt") and "graph.kernel" in text
    assert detect_stage(ir.parse_module(text, "r.mlir")) == Stage.FUSED
    code, _, err = run(["opt", reproducer, "-p", "lower-to-loops"], capsys)
    assert code == 1 and "run 'tile' before 'lower-to-loops'" in err


@dataclass(frozen=True)
class BreakShapesPass(ModulePass):
    """Leaves invalid IR: gives a matmul a wrong result type."""

    name = "break-shapes"

    def apply(self, ctx, op) -> None:
        matmul = next(o for o in op.walk() if isinstance(o, g.MatmulOp))
        wrong = TensorType(matmul.result.type.element_type, [1, 1])
        Rewriter.replace_value_with_new_type(matmul.result, wrong)


def test_pass_leaving_invalid_ir_names_the_pass_the_op_and_the_model_line(tmp_path):
    module = load_model(str(SAMPLES / "mlp.model"), {})
    with pytest.raises(Exception) as info:
        run_passes(ir.make_context(), module, [BreakShapesPass()], DumpOptions(dump_dir=tmp_path))
    message = str(info.value)
    assert "pass 'break-shapes' failed" in message
    assert "graph.matmul" in message and "mlp.model:" in message
    assert (tmp_path / "strata-reproducer.mlir").exists()
