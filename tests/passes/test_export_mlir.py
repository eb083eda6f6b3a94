"""export-mlir and the MLIR backend: every sample, every target's tiling, through the real MLIR toolchain."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from strata.compiler import ir
from strata.compiler.execution import native, reference
from strata.compiler.cli import main
from strata.compiler.diagnostics import StrataError
from strata.compiler.testing.properties import compare_outputs
from strata.compiler.driver import Stage, compile_module, detect_stage
from strata.compiler.frontend import load_model
from strata.passes.export_mlir import UPSTREAM_DIALECTS
from tests.support import REDUCED, TINY, assert_close, sample_values

needs_mlir = pytest.mark.skipif(
    not native.tools_available(),
    reason="the MLIR/LLVM 22 tools are not installed (apt-get install mlir-22-tools llvm-22)",
)

ZOO = Path(__file__).parent / "export_mlir_zoo.model"


def _export(name: str, target: str):
    module = load_model(f"samples/{name}.model", REDUCED[name])
    compile_module(module, target, Stage.MLIR)
    return module


def test_export_holds_only_upstream_ops():
    module = _export("gpt2", "tpu")
    names = {op.name for op in module.walk()}
    assert {n.split(".")[0] for n in names} <= set(UPSTREAM_DIALECTS)
    assert {"linalg.generic", "scf.for", "memref.load", "memref.store", "func.call"} <= names
    assert detect_stage(module) == Stage.MLIR
    # The kernels keep the compiler's decisions; the model function has the C interface.
    funcs = [op for op in module.ops if op.name == "func.func"]
    assert any("strata.tile_sizes" in f.attributes for f in funcs)
    assert "llvm.emit_c_interface" in funcs[-1].attributes
    # It prints and parses back (detect_stage resumes from a dump).
    text = ir.print_module(module)
    assert detect_stage(ir.parse_module(text, "dump.mlir")) == Stage.MLIR


def test_buffers_keep_their_physical_layout():
    """A (8, 128)-tiled TPU buffer is exported with its physical shape [.., outer, 8, 128]."""
    module = _export("mlp", "tpu")
    text = ir.print_module(module, debuginfo=False)
    assert "memref<1x7x8x128xf32>" in text  # x: f32[4, 784] in tiles of (8, 128)


@needs_mlir
@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
@pytest.mark.parametrize("name", sorted(REDUCED))
def test_sample_verifies_and_runs_as_the_reference(name, target, tmp_path):
    module = load_model(f"samples/{name}.model", REDUCED[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, target, Stage.MLIR)
    # mlir-opt-22 parses and verifies the export as printed, locations included.
    path = tmp_path / "export.mlir"
    path.write_text(ir.print_module(module))
    native.verify_mlir(path)
    got = native.compile_exported(module, tmp_path / "build", opt_level=1).run(inputs, params)
    assert_close(want, got)


@needs_mlir
@pytest.mark.parametrize("target", ["gpu", "tpu"])
def test_every_language_op_runs_as_the_reference(target):
    """Ops the samples do not use: int and low-precision dtypes, pools with padding, grouped conv, ..."""
    module = load_model(str(ZOO), {})
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    got = native.run_module(module, target, inputs, params)
    # Dtypes and shapes equal, NaN and infinities in the same places, integers equal, floats within 1e-4.
    assert compare_outputs(want, got, 1e-4) is None


@needs_mlir
@pytest.mark.parametrize("sizes", ["2,3,5"])
@pytest.mark.parametrize("name", ["llama", "resnet18", "vit"])
def test_small_tiles_run_as_the_reference(name, sizes):
    """Many tiles, edge tiles and reduction loops of several steps."""
    from strata.compiler.driver import detect_stage as stage_of, passes_between, run_passes, DumpOptions
    from strata.compiler.schedule import apply_schedule

    module = load_model(f"samples/{name}.model", TINY[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    passes = apply_schedule(passes_between("tpu", stage_of(module), Stage.MLIR), {"sizes": sizes})
    run_passes(ir.make_context(), module, passes, DumpOptions())
    assert_close(want, native.compile_exported(module, opt_level=1).run(inputs, params))


@needs_mlir
def test_cli_emit_mlir_and_run_backend_mlir(tmp_path, capsys):
    model = ["samples/mlp.model", "-D", "B=4"]
    out = tmp_path / "mlp.mlir"
    assert main(["compile", *model, "--emit", "mlir", "--target", "tpu", "-o", str(out)]) == 0
    names = {op.name for op in ir.parse_module(out.read_text(), str(out)).walk()}
    assert "linalg.generic" in names and not any(n.startswith(("graph.", "loop.")) for n in names)
    subprocess.run([native.find_tool("mlir-opt-22"), str(out), "-o", "/dev/null"], check=True)
    assert main(["run", *model, "--backend", "mlir", "--target", "tpu", "-o", str(tmp_path / "m.npz")]) == 0
    assert main(["run", *model, "-o", str(tmp_path / "r.npz")]) == 0
    capsys.readouterr()
    mlir_out, ref_out = np.load(tmp_path / "m.npz"), np.load(tmp_path / "r.npz")
    assert_close([ref_out[k] for k in ref_out.files], [mlir_out[k] for k in mlir_out.files])


def test_emit_mlir_skips_lower_to_hardware():
    from strata.compiler.driver import passes_between

    names = [p.name for p in passes_between("gpu", Stage.GRAPH, Stage.MLIR)]
    assert names[-2:] == ["lower-to-loops", "export-mlir"]
    assert "lower-to-hardware" not in names
    with pytest.raises(StrataError, match="loop-stage"):
        passes_between("gpu", Stage.HARDWARE, Stage.MLIR)


def test_missing_tool_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(native, "LLVM_BIN", Path("/nonexistent"))
    with pytest.raises(StrataError, match="apt-get install mlir-22-tools"):
        native.find_tool("mlir-opt-22")
    assert main(["run", "samples/mlp.model", "-D", "B=4", "--backend", "mlir"]) == 1
    assert "apt-get install mlir-22-tools" in capsys.readouterr().err


@needs_mlir
def test_failing_tool_shows_command_and_stderr(tmp_path):
    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @f() {\n  %0 = arith.addf : f32\n}\n")
    with pytest.raises(StrataError) as err:
        native.build_shared_library(bad, tmp_path)
    message = str(err.value)
    assert "mlir-opt-22" in message and str(bad) in message and "error" in message
