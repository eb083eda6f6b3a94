"""ONNX through the command line: `strata import`, `.onnx` models given to check/compile/run/tune, and round trips."""

import json

import numpy as np
import pytest

from strata.compiler.cli import main
from strata.compiler.execution import reference, weights
from strata.compiler.frontend import compile_source, load_model
from strata.compiler.onnx_export import to_onnx
from strata.compiler.onnx_import import import_proto
from tests.support import REDUCED

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err
    return code, out, err


def _signature(module) -> list[tuple]:
    """Each op of the graph with its types and properties; constants rounded to f32 (ONNX stores them so)."""
    ops = []
    for op in reference.model_function(module).body.block.ops:
        props = {k: str(v) for k, v in op.properties.items()}
        if op.name == "graph.constant":
            props["value"] = float(np.float32(op.value.value.data))
        ops.append((op.name, [str(o.type) for o in op.operands], [str(r.type) for r in op.results], props))
    return ops


@pytest.mark.parametrize("sample", sorted(REDUCED))
def test_model_to_onnx_to_model_gives_the_same_graph(sample):
    module = load_model(f"samples/{sample}.model", REDUCED[sample])
    bound = weights.bind_values(reference.model_function(module), 0, {}, {})
    imported = import_proto(to_onnx(module, bound.params), {}, f"{sample}.onnx")
    again = compile_source(imported.text, f"{sample}.model")
    assert _signature(again) == _signature(module)
    # The same params with the same values (paths such as `attn.0.w_qkv` become identifiers, `attn_0_w_qkv`).
    assert sorted(imported.weights) == sorted(name.replace(".", "_") for name in bound.params)
    for name, value in bound.params.items():
        np.testing.assert_array_equal(imported.weights[name.replace(".", "_")], value)


SAMPLES = [("mlp", []), ("gpt2", ["-D", "S=16", "-D", "D=48", "-D", "L=2"]), ("resnet18", [])]


@pytest.mark.parametrize("sample, defines", SAMPLES)
def test_exported_samples_run_in_onnxruntime_equal_to_strata_run(sample, defines, tmp_path, capsys):
    model, out = tmp_path / f"{sample}.onnx", tmp_path / "out.npz"
    assert run(["export", f"samples/{sample}.model", *defines, "--seed", "0", "-o", model], capsys)[0] == 0
    assert run(["run", f"samples/{sample}.model", *defines, "--seed", "0", "-o", out], capsys)[0] == 0
    module = load_model(f"samples/{sample}.model", {d.split("=")[0]: int(d.split("=")[1]) for d in defines[1::2]})
    inputs = weights.bind_values(reference.model_function(module), 0, {}, {}).inputs
    got = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, inputs)[0]
    want = np.load(out)["out0"]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_an_onnx_file_is_a_model_for_every_command(tmp_path, capsys):
    model = tmp_path / "mlp.onnx"
    assert run(["export", "samples/mlp.model", "-o", model], capsys)[0] == 0
    code, out, _ = run(["check", model], capsys)
    assert code == 0 and "ok: model 'mlp'" in out
    code, out, _ = run(["compile", model, "--target", "tpu", "--report", "json"], capsys)
    assert code == 0 and json.loads(out)["total"]["time_s"] > 0
    code, _, err = run(["tune", model, "--target", "gpu", "--budget", "4", "--db", tmp_path / "db.jsonl"], capsys)
    assert code == 0, err
    # The initializers are the weights: the same outputs as the model it was exported from.
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run(["run", model, "-o", a], capsys)[0] == 0
    assert run(["run", "samples/mlp.model", "-o", b], capsys)[0] == 0
    np.testing.assert_array_equal(np.load(a)["out0"], np.load(b)["out0"])
    # --weights overrides initializers one by one.
    zeros = tmp_path / "w.npz"
    np.savez(zeros, b2=np.zeros(10, np.float32))
    assert run(["run", model, "--weights", zeros, "-o", a], capsys)[0] == 0
    assert not np.array_equal(np.load(a)["out0"], np.load(b)["out0"])


def test_strata_import_writes_a_model_and_its_weights(tmp_path, capsys):
    model = tmp_path / "mlp.onnx"
    assert run(["export", "samples/mlp.model", "--seed", "5", "-o", model], capsys)[0] == 0
    code, _, err = run(["import", model, "-o", tmp_path / "imported.model"], capsys)
    assert code == 0, err
    text = (tmp_path / "imported.model").read_text()
    assert "model mlp(x: f32[64, 784]) -> f32[64, 10]" in text
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert run(["run", tmp_path / "imported.model", "--weights", tmp_path / "imported.weights.npz", "-o", a],
               capsys)[0] == 0
    assert run(["run", "samples/mlp.model", "--seed", "5", "-o", b], capsys)[0] == 0
    # Inputs are drawn with seed 0 both times; the weights are the exported ones (seed 5).
    module = load_model("samples/mlp.model")
    bound = weights.bind_values(reference.model_function(module), 5, {}, {})
    inputs = weights.bind_values(reference.model_function(module), 0, {}, bound.params).inputs
    want = reference.run_module(module, inputs, bound.params)[0]
    np.testing.assert_allclose(np.load(a)["out0"], want, rtol=1e-6)


def test_an_unsupported_operator_and_a_missing_dim_are_clean_errors(tmp_path, capsys):
    helper = onnx.helper
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.INT64, None)
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"], name="nz")], "g", [x], [y])
    path = tmp_path / "nz.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    code, _, err = run(["check", path], capsys)
    assert code == 1 and "dim 'batch' has no value; give -D batch=N" in err
    code, _, err = run(["check", path, "-D", "batch=2"], capsys)
    assert code == 1 and "NonZero" in err and "node 0 'nz'" in err
    code, _, err = run(["import", "samples/mlp.model", "-o", tmp_path / "x.model"], capsys)
    assert code == 1 and "reads .onnx files" in err


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
@pytest.mark.parametrize("block", ["cnn", "transformer"])
def test_imported_blocks_run_equal_to_onnxruntime_through_the_loop_stage(block, target, tmp_path):
    from strata.compiler.driver import Stage, compile_module
    from strata.compiler.execution import loop_interpreter
    from tests.compiler.test_onnx_import import _cnn, _transformer, feeds_for

    model = _cnn() if block == "cnn" else _transformer()
    imported = import_proto(model, {"batch": 2}, f"{block}.onnx")
    module = compile_source(imported.text, f"{block}.model")
    compile_module(module, target, Stage.LOOP)
    feeds = feeds_for(model, {"batch": 2}, int_high=11)
    got = loop_interpreter.run_module(module, {imported.inputs[k]: v for k, v in feeds.items()}, imported.weights)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for a, b in zip(want, got, strict=True):
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()


def test_a_torch_onnx_export_imports_and_runs_equal(tmp_path):
    """What users bring: a model exported by `torch.onnx.export` (skipped where torch is not installed)."""
    torch = pytest.importorskip("torch")
    from strata.compiler.onnx_import import import_onnx

    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.SiLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4), torch.nn.GELU(),
    ).eval()
    x = torch.randn(2, 3, 8, 8)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (x,), str(path), opset_version=17, input_names=["x"], output_names=["y"])
    imported = import_onnx(str(path), {})
    module = compile_source(imported.text, "net.model")
    got = reference.run_module(module, {imported.inputs["x"]: x.numpy()}, imported.weights)[0]
    want = net(x).detach().numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
