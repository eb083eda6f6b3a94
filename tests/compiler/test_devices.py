"""
One device description: `--device`, `--device-file` and `--spec` reach every
pass, the tuner and the cost model; dumps record the device and resume for it;
kernels that cannot fit are errors, never a silent price.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from strata.compiler.cli import main
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import load_model
from strata.compiler.ir import parse_module
from strata.dialects.device import default_device, load_device, module_device, with_overrides
from strata.dialects.hardware import simt, systolic

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SMALL_GPT2 = ["-D", "S=16", "-D", "D=48", "-D", "L=2"]


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err
    return code, out, err


def _largest(text: str, key: str) -> int:
    return max(int(v) for v in re.findall(rf"{key} = (\d+)", text))


@pytest.mark.parametrize("spec, capacity", [([], 166912), (["--spec", "smem_per_block_bytes=49152"], 49152)])
def test_gpu_kernels_fit_the_chosen_devices_shared_memory(spec, capacity, tmp_path, capsys):
    out = tmp_path / "hw.mlir"
    code, _, err = run(["compile", SAMPLES / "gpt2.model", "-D", "L=2", "-D", "S=128", "--target", "gpu",
                        "--device", "a100", *spec, "--emit", "hardware", "-o", out, "--report", "none"], capsys)
    assert code == 0, err
    text = out.read_text()
    assert _largest(text, "smem_bytes") <= capacity
    assert module_device(parse_module(text, "hw.mlir")).name == "a100"


def test_a_tiny_shared_memory_still_runs_equal_to_the_reference(tmp_path, capsys):
    want, got = tmp_path / "ref.npz", tmp_path / "hw.npz"
    assert run(["run", SAMPLES / "gpt2.model", *SMALL_GPT2, "-o", want], capsys)[0] == 0
    code, _, err = run(["run", SAMPLES / "gpt2.model", *SMALL_GPT2, "--target", "gpu", "--spec",
                        "smem_per_block_bytes=8192", "--through", "hardware", "-o", got], capsys)
    assert code == 0, err
    a, b = np.load(want)["out0"], np.load(got)["out0"]
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    module = load_model(str(SAMPLES / "gpt2.model"), {"S": 16, "D": 48, "L": 2})
    compile_module(module, "gpu", Stage.HARDWARE,
                   device=with_overrides(default_device("gpu"), ["smem_per_block_bytes=8192"]))
    assert max(k.smem_bytes.value.data for k in module.walk() if isinstance(k, simt.KernelOp)) <= 8192


def test_tpu_programs_fit_a_smaller_vmem():
    capacity = 4 * 2**20
    module = load_model(str(SAMPLES / "resnet18.model"), {})
    compile_module(module, "tpu", Stage.HARDWARE, device=with_overrides(default_device("tpu"),
                                                                         [f"vmem_bytes={capacity}"]))
    vmem = [p.vmem_bytes.value.data for p in module.walk() if isinstance(p, systolic.ProgramOp)]
    assert vmem and max(vmem) <= capacity


def test_a_kernel_that_cannot_fit_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(["compile", SAMPLES / "mlp.model", "--target", "gpu", "--spec", "smem_per_block_bytes=8",
                        "--report", "none", "--emit", "hardware", "-o", tmp_path / "x.mlir"], capsys)
    assert code == 1
    assert "needs" in err and "over the shared memory per block (smem_per_block_bytes = 8 B) of h100" in err
    assert "DoesNotFit" not in err


def test_a_dump_resumes_for_the_device_it_records(tmp_path, capsys):
    layout = tmp_path / "layout.mlir"
    assert run(["compile", SAMPLES / "gpt2.model", *SMALL_GPT2, "--device", "a100", "--spec",
                "smem_per_block_bytes=16384", "--emit", "layout", "-o", layout, "--report", "none"], capsys)[0] == 0
    code, out, err = run(["compile", layout, "--report", "json"], capsys)
    assert code == 0, err
    assert '"device": "a100"' in out
    hardware = tmp_path / "hw.mlir"
    assert run(["compile", layout, "--emit", "hardware", "-o", hardware, "--report", "none"], capsys)[0] == 0
    assert _largest(hardware.read_text(), "smem_bytes") <= 16384
    # Another device for a dump already shaped by one is refused.
    code, _, err = run(["compile", layout, "--device", "h100"], capsys)
    assert code == 1 and "lowered for device 'a100'" in err
    # --spec on a dump changes the recorded device, which is then another one.
    code, _, err = run(["compile", layout, "--spec", "smem_per_block_bytes=8192"], capsys)
    assert code == 1 and "cannot be resumed" in err


def test_opt_takes_the_device_options(tmp_path, capsys):
    fused = tmp_path / "fused.mlir"
    assert run(["compile", SAMPLES / "mlp.model", "--target", "tpu", "--emit", "graph", "-o", fused,
                "--report", "none"], capsys)[0] == 0
    code, out, err = run(["opt", fused, "--device", "tpu-v5e", "-p", "fuse,assign-layout,tile"], capsys)
    assert code == 0, err
    assert module_device(parse_module(out, "out.mlir")) == load_device("tpu-v5e")
    # --spec changes the device the dump records (tpu-v4), for the passes too.
    code, _, err = run(["opt", fused, "--spec", "vmem_bytes=1", "-p", "fuse,assign-layout,tile"], capsys)
    assert code == 1 and "over the VMEM (vmem_bytes = 1 B) of tpu-v4" in err
    empty = tmp_path / "empty.mlir"
    empty.write_text("builtin.module {\n}\n")
    code, _, err = run(["opt", empty, "--spec", "vmem_bytes=1"], capsys)
    assert code == 1 and "--spec changes a device" in err


def test_device_and_device_file_together_are_refused(capsys):
    code, _, err = run(["compile", SAMPLES / "mlp.model", "--device", "a100", "--device-file",
                        "backends/specs/h100.toml"], capsys)
    assert code == 1 and "not both" in err


def test_autotune_picks_only_schedules_that_fit(tmp_path, capsys):
    capacity = 32768
    out = tmp_path / "tuned.mlir"
    code, _, err = run(["compile", SAMPLES / "mlp.model", "--target", "gpu", "--device", "a100", "--spec",
                        f"smem_per_block_bytes={capacity}", "--autotune", "--budget", "6", "--db", tmp_path / "db.jsonl",
                        "--emit", "hardware", "-o", out, "--report", "none"], capsys)
    assert code == 0, err
    text = out.read_text()
    assert _largest(text, "smem_bytes") <= capacity
    assert module_device(parse_module(text, "tuned.mlir"))["smem_per_block_bytes"] == capacity


def test_the_tuner_reports_a_bug_with_the_point_instead_of_an_infinite_cost():
    from strata.compiler.tuning.autotune import EvaluationError, _safe
    from strata.dialects.vocabulary import DoesNotFit

    def illegal(point):
        raise DoesNotFit("too big")

    def buggy(point):
        raise KeyError("oops")

    assert _safe(illegal, {"tiles": (1,)}) == float("inf")
    with pytest.raises(EvaluationError, match=r"evaluating the point \{'tiles': \(2,\)\} failed: KeyError"):
        _safe(buggy, {"tiles": (2,)})
