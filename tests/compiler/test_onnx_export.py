"""`strata export`: every sample as ONNX that passes onnx.checker and runs in onnxruntime equal to `strata run`."""

import numpy as np
import pytest

from strata.compiler.cli import main
from strata.compiler.execution import reference, weights
from strata.compiler.frontend import compile_source, load_model
from strata.compiler.onnx_export import to_onnx
from strata.passes.shard import ShardPass
from strata.compiler.ir import make_context
from tests.support import REDUCED

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _assert_close(want, got, tolerance=1e-5):
    for a, b in zip(want, got, strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= tolerance * max(np.abs(a).max(), 1e-30)


@pytest.mark.parametrize("sample", sorted(REDUCED))
def test_every_sample_runs_in_onnxruntime_equal_to_the_reference(sample):
    module = load_model(f"samples/{sample}.model", REDUCED[sample])
    bound = weights.bind_values(reference.model_function(module), 0, {}, {})
    model = to_onnx(module, bound.params)
    assert [i.name for i in model.graph.input] == list(bound.inputs)
    assert [i.name for i in model.graph.initializer][: len(bound.params)] == list(bound.params)
    _assert_close(reference.run_module(module, bound.inputs, bound.params), _session(model).run(None, bound.inputs))


OPS = """
model m(x: f32[2, 3, 8, 8], t: f32[2, 6]) -> (f32[2, 4, 4, 4], f32[2, 6], f32[2, 3], f32[2, 6]) {
  param w: f32[4, 3, 3, 3]
  param b: f32[4]
  param g: f32[6]
  c = conv2d(x, w, b, stride=1, padding=1)
  p = avgpool2d(maxpool2d(c, kernel=3, stride=1, padding=1), kernel=2)
  h = rmsnorm(t, g) + layernorm(t) * sigmoid(t) - tanh(t) / (abs(t) + 1.0)
  h = log_softmax(h, axis=-1) + softmax(h) + rsqrt(abs(h) + 0.5) + silu(h) + gelu(h) + exp(-h) * log(abs(h) + 1.0)
  s = minimum(maximum(h, 0.0), pow(abs(h), 1.5)) + erf(h) + sqrt(abs(h))
  r = mean(s, axis=-1, keepdims=true) + sum(s, axis=-1, keepdims=true) + max(s, axis=-1, keepdims=true) + min(s, axis=-1, keepdims=true)
  q, u = split(s, parts=2, axis=-1)
  return p, concat([slice(s, axis=-1, start=2, end=6), slice(s, axis=1, start=0, end=2)], axis=-1) * r, q + u, transpose(reshape(cast(cast(s, dtype=f16), dtype=f32), [6, 2]))
}
"""


def test_every_lowering_runs_equal():
    module = compile_source(OPS, "ops.model")
    bound = weights.bind_values(reference.model_function(module), 0, {}, {})
    model = to_onnx(module, bound.params)
    _assert_close(reference.run_module(module, bound.inputs, bound.params), _session(model).run(None, bound.inputs),
                  tolerance=1e-4)


def test_export_writes_a_checked_file_with_the_runs_weights(tmp_path, capsys):
    out, npz = tmp_path / "mlp.onnx", tmp_path / "out.npz"
    assert main(["export", "samples/mlp.model", "-o", str(out), "--seed", "3"]) == 0
    assert main(["run", "samples/mlp.model", "--seed", "3", "-o", str(npz)]) == 0
    capsys.readouterr()
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    module = load_model("samples/mlp.model")
    bound = weights.bind_values(reference.model_function(module), 3, {}, {})
    got = _session(model).run(None, bound.inputs)
    _assert_close([np.load(npz)["out0"]], got)


def test_a_sharded_model_is_refused(capsys):
    module = load_model("samples/mlp.model")
    ShardPass(tp=2).apply(make_context(), module)
    with pytest.raises(Exception, match="unsharded"):
        to_onnx(module, {})
