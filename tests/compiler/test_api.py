"""The Python API (`import strata`) and the one installed package."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import strata
from strata.compiler.execution import reference

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"


def test_the_readme_example_runs():
    """The README's Python example, verbatim."""
    text = (ROOT / "README.md").read_text()
    example = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["compiled"].device.name == "tpu-v4"
    assert namespace["compiled"].device["vmem_bytes"] == 4 * 2**20
    assert np.allclose(namespace["outputs"][0], namespace["expected"][0], rtol=1e-4, atol=1e-6)
    assert "dlti.target_system_spec" in namespace["ir_text"] and '"name" = "a100"' in namespace["ir_text"]


def test_compile_reports_and_runs_like_the_command_line():
    model = strata.load(SAMPLES / "gpt2.model", defines={"S": 16, "D": 48, "L": 2})
    compiled = strata.compile(model, target="lpu", spec={"sram_bytes": 4_000_000})
    assert compiled.stage == "hardware" and compiled.report["device"] == "groq-lpu"
    assert compiled.report["total"]["chips"] > 1 and compiled.time_s == compiled.report["total"]["time_s"]
    want = reference.run_module(model.module, *_values(model))
    got = strata.run(compiled, *_values(model))
    assert all(np.allclose(w, g, rtol=1e-4, atol=1e-6) for w, g in zip(want, got))
    # the model itself is untouched: it compiles again for another device
    assert strata.compile(model, device="a100").device.name == "a100"


def _values(model):
    from strata.compiler.execution.weights import bind_values
    from strata.compiler.reports.stats import model_function

    bound = bind_values(model_function(model.module), 3)
    return bound.inputs, bound.params


def test_schedules_stages_and_parse():
    model = strata.parse("model m(x: f32[64, 64]) -> f32[64, 64] {\n  param w: f32[64, 64]\n  return x @ w\n}\n")
    loop = strata.compile(model, emit="loop", schedule={"tile": "16,16,16"})
    assert loop.report is None and "tile_sizes = array<i64: 16, 16, 16>" in loop.ir()
    with pytest.raises(strata.Error, match="needs the hardware stage"):
        loop.time_s


@pytest.mark.parametrize("call, message", [
    (lambda m: strata.compile(m, target="npu"), "unknown target 'npu'"),
    (lambda m: strata.compile(m, emit="assembly"), "unknown stage 'assembly'"),
    (lambda m: strata.compile(m, target="gpu", device="tpu-v4"), "is a tpu device, not one for target 'gpu'"),
    (lambda m: strata.compile(m, spec={"no_such_key": 1}), "unknown key 'no_such_key'"),
    (lambda m: strata.device("h200"), "unknown device 'h200'"),
    (lambda m: strata.load(SAMPLES / "missing.model"), "missing.model"),
])
def test_errors_raise_strata_error(call, message):
    with pytest.raises(strata.Error, match=re.escape(message)):
        call(strata.load(SAMPLES / "mlp.model"))


def test_the_wheel_installs_one_strata_package(tmp_path):
    """`pip install .` puts `strata` (and its dist-info) in site-packages, nothing named compiler, passes, ..."""
    build = tmp_path / "src"
    shutil.copytree(ROOT, build, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "__pycache__",
                                                               ".hypothesis", "Output"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(build)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("strata-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"strata", next(t for t in tops if t.endswith(".dist-info"))}
    for expected in ("strata/__init__.py", "strata/compiler/api.py", "strata/compiler/frontend/model.lark",
                     "strata/backends/specs/h100.toml", "strata/dialects/device.py", "strata/passes/place_chips.py"):
        assert expected in names
    assert not any(name.startswith("strata/compiler/strata/") for name in names)
