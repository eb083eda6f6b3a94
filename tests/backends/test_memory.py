"""backends/memory.py and the report's whole-model totals: memory per device, model vs issued FLOPs, batch."""

import json

import pytest

from strata.backends.cost import estimate, model_function
from strata.backends.memory import DeviceMemory, memory_per_device
from strata.compiler.cli import main
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import compile_source, load_model
from strata.dialects.device import module_device

MLP = "samples/mlp.model"
DECODE = """let B = 64
let D = 512
let N = 2048
model decode(x: bf16[B, 1, D]) -> bf16[B, 1, N] {
  param w: bf16[D, N]
  return x @ w
}
"""
BIG = """let D = 8192
let L = 40
def mlp(x: bf16[1, 1, D]) -> bf16[1, 1, D] {
  param w: bf16[D, 4 * D]
  param v: bf16[4 * D, D]
  return x + gelu(x @ w) @ v
}
model big(x: bf16[1, 1, D]) -> bf16[1, 1, D] {
  repeat L {
    x = mlp(x)
  }
  return x
}
"""


def _hardware(module, target):
    compile_module(module, target, Stage.HARDWARE)
    return module


def test_mlp_memory_by_hand():
    """Params (784x256 + 256 + 256x10 + 10 f32), the input (64x784 f32), and the peak of live
    activations: h (64x256) and the second GEMM's output (64x10) live together, 68,096 B."""
    module = _hardware(load_model(MLP, {}), "gpu")
    assert memory_per_device(model_function(module)) == [DeviceMemory(814_120, 200_704, 68_096)]
    total = estimate(module, module_device(module)).total()
    assert total["memory_per_device_bytes"] == 814_120 + 200_704 + 68_096
    assert total["devices"] == 1 and total["memory_capacity_bytes"] == 80_000_000_000


def test_lpu_memory_is_per_chip():
    module = load_model("samples/gpt2.model", {"S": 64})
    compile_module(module, "lpu", Stage.HARDWARE)
    report = estimate(module, module_device(module))
    assert len(report.memory) == report.chips >= 2
    # GPT-2's f32 weights (494,662,656 B at S=64), each resident on every chip that reads it: the
    # tied embedding table (50257 x 768) on the first chip (gather) and on the last (LM head).
    assert sum(m.params_bytes for m in report.memory) == 494_662_656 + 50257 * 768 * 4
    assert all(m.params_bytes > 0 for m in report.memory)


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_model_flops_batch_and_samples(target):
    module = _hardware(compile_source(DECODE, "decode.model"), target)
    total = estimate(module, module_device(module)).total()
    assert total["model_flops"] == 2 * 64 * 512 * 2048
    assert total["batch"] == 64 and total["samples_per_s"] == pytest.approx(64 / total["time_s"])
    assert total["utilisation"] == pytest.approx(total["model_flops"] / total["time_s"] / total["peak_flops_per_s"])
    assert total["issued_flops"] >= total["model_flops"]


def test_no_batch_when_inputs_do_not_lead_with_one():
    module = _hardware(compile_source("model m(x: f32[4, 8], y: f32[8]) -> f32[4, 8] {\n  return x + y\n}\n",
                                      "m.model"), "gpu")
    total = estimate(module, module_device(module)).total()
    assert total["batch"] is None and total["samples_per_s"] is None


def test_lpu_issued_flops_count_the_padding():
    """320-wide tiles pad GPT-2's GEMMs: issued FLOPs exceed the graph's, utilisation counts the graph's."""
    module = load_model("samples/gpt2.model", {"S": 64})
    compile_module(module, "lpu", Stage.HARDWARE)
    total = estimate(module, module_device(module)).total()
    assert total["issued_flops"] > total["model_flops"]


def test_the_fewest_devices_that_hold_the_weights(tmp_path, capsys):
    """43 GB of bf16 weights: one 80 GB H100; two 32 GiB TPU v4 chips by default (said on stderr), as
    pipeline stages with a transfer between them; pinning one chip is a clean error."""
    path = tmp_path / "big.model"
    path.write_text(BIG)
    assert main(["compile", str(path), "--target", "gpu", "--report", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["total"]["devices"] == 1 and "note:" not in err
    assert main(["compile", str(path), "--target", "tpu", "--report", "json"]) == 0
    out, err = capsys.readouterr()
    total = json.loads(out)["total"]
    assert total["devices"] == 2 and total["memory_per_device_bytes"] <= total["memory_capacity_bytes"]
    assert "note: compiled for 2 tpu devices, the fewest that hold the weights" in err
    assert sum(k["kind"] == "transfer" for k in json.loads(out)["kernels"]) == 1
    code = main(["compile", str(path), "--target", "tpu", "--devices", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "do not fit 1 tpu-v4 device of 34,359,738,368 B (hbm_bytes)" in err
    assert "need at least 2: pass --devices 2 or more" in err
    assert "Traceback" not in err and "reproducer" not in err


def test_activations_over_one_device_are_a_clean_error(tmp_path, capsys):
    """[100000, 1] @ [1, 100000] in f32: a 40 GB outer product (an elementwise multiply, `fuse`'s
    `outer_products`), over a TPU v4's 32 GiB whatever the devices."""
    path = tmp_path / "outer.model"
    path.write_text("model outer(x: f32[100000, 1]) -> f32[100000, 100000] {\n  param w: f32[1, 100000]\n"
                    "  return x @ w\n}\n")
    code = main(["compile", str(path), "--target", "tpu"])
    err = capsys.readouterr().err
    assert code == 1 and "tpu device 0 of 1 needs 40,000,800,000 B" in err
    assert "over the 34,359,738,368 B of HBM of tpu-v4" in err and "Traceback" not in err


def test_an_lpu_chip_over_its_sram_is_a_warning(capsys):
    """GPT-2 at S=1024 in f32: the last chip holds its weights and the 206 MB of logits twice (the kernels'
    layout and the output's), over the 220 MiB of SRAM; place-chips does not place activations yet."""
    assert main(["compile", "samples/gpt2.model", "--target", "lpu", "--report", "json"]) == 0
    out, err = capsys.readouterr()
    assert "warning: chip 2 holds 622,779,392 B (params 211,074,048, inputs 0, peak activations 411,705,344)" in err
    assert '"memory_per_device_bytes": 622779392' in out


@pytest.mark.slow
def test_llama2_70b_decode_needs_two_h100s_and_five_tpu_v4_chips(capsys):
    """138 GB of bf16 weights: one H100 is a clean error, the default is 2 H100s and 5 TPU v4 chips,
    and the GPU estimate never beats reading the weights once at HBM bandwidth."""
    model = "benchmarks/models/llama2_70b_decode.model"
    assert main(["compile", model, "--target", "gpu", "--devices", "1", "--report", "none"]) == 1
    assert "(138,624,385,024 B) do not fit 1 h100 device" in capsys.readouterr().err
    devices = {}
    for target in ("gpu", "tpu"):
        assert main(["compile", model, "--target", target, "--report", "json"]) == 0
        total = json.loads(capsys.readouterr().out)["total"]
        devices[target] = total["devices"]
        if target == "gpu":
            assert total["time_s"] >= 138e9 / 3.089e12
    assert devices == {"gpu": 2, "tpu": 5}


@pytest.mark.parametrize("target, weight_bytes", [("gpu", 256 * 512 // 2), ("cpu", 256 * 512)])
def test_int4_weights_take_the_bytes_the_target_stores_them_in(target, weight_bytes):
    """An i4 weight is half a byte an element where the target's kernels pack it (the GPU's), a
    byte on the cpu, where native code holds it in a byte (`cpu.storage_bytes`)."""
    source = ("model m(h: bf16[1, 1, 256]) {\n  param w: i4[256, 512]\n  param s: f32[512]\n"
              "  return h @ dequantize(w, s, dtype=bf16)\n}\n")
    module = _hardware(compile_source(source, "m.model"), target)
    report = estimate(module, module_device(module))
    assert report.memory[0].params_bytes == weight_bytes + 512 * 4
