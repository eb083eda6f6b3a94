"""
The properties of `compiler/testing/properties.py` for every pass and every target,
on models drawn by `compiler/testing/random_models.py`.

Each test runs the `ci` profile (25 examples, models of up to 8 statements,
a failing model reported as drawn, unshrunk: `strata fuzz` shrinks) unless `STRATA_HYPOTHESIS_PROFILE=thorough` or `pytest --hypothesis-profile
thorough` selects the thorough one (500 examples, up to 12 statements,
shrinking); the
tests marked slow always run the thorough profile. Runs are derandomized:
the same code draws the same models.
"""

import contextlib
import io
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.compiler.cli import main
from strata.compiler.testing.fuzz import PROFILES, active_profile, hypothesis_settings
from strata.compiler.testing.properties import (
    Pipeline, PropertyFailure, autotuner, check_cost, check_cost_monotonic, check_model, check_tuned_not_worse,
    compile_to_hardware, interface, register_tuner,
)
from strata.compiler.testing.random_models import DTYPES, Model, graph_modules, growable_models, models

TARGETS = ("gpu", "tpu", "lpu", "cpu")
PROFILE = PROFILES[active_profile()]
THOROUGH = PROFILES["thorough"]
RUN = settings(**hypothesis_settings(PROFILE.test_examples, shrink=PROFILE.shrink))
DRAWN = models(max_ops=PROFILE.max_ops)

# --------------------------------------------------------------------------- the default pipelines


@pytest.mark.parametrize("target", TARGETS)
@RUN
@given(model=DRAWN)
def test_default_pipeline(target, model):
    """Every pass of the target's default pipeline, graph to hardware, and its cost report."""
    check_model(model, Pipeline.default(target))


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@settings(**hypothesis_settings(THOROUGH.test_examples))
@given(model=models(max_ops=THOROUGH.max_ops))
def test_default_pipeline_thorough(target, model):
    check_model(model, Pipeline.default(target))


# --------------------------------------------------------------------------- each pass, with its choices


@pytest.mark.parametrize("target", TARGETS)
@RUN
@given(model=DRAWN, attention=st.booleans(), epilogue=st.booleans(), prologue=st.booleans())
def test_fuse(target, model, attention, epilogue, prologue):
    spec = f"fuse{{attention={str(attention).lower()} epilogue={str(epilogue).lower()} prologue={str(prologue).lower()}}}"
    check_model(model, Pipeline.parse(spec, target))


@pytest.mark.parametrize("target", TARGETS)
@RUN
@given(model=DRAWN, channels_last=st.booleans(), tiled=st.booleans())
def test_assign_layout(target, model, channels_last, tiled):
    spec = f"assign-layout{{channels_last={str(channels_last).lower()} tiled={str(tiled).lower()}}}"
    check_model(model, Pipeline.parse(spec, target))


HARDWARE_OPTIONS = {
    "gpu": st.just(""),
    "tpu": st.just(""),
    "lpu": st.just(""),
    "cpu": st.sampled_from(["", "{threads=2}", "{threads=3}"]),
}
DATAFLOW_OPTIONS = {
    "tpu": st.sampled_from(["", "{dataflow=os}", "{dataflow=ws}", "{dataflow=is}"]),
}


@pytest.mark.parametrize("target", TARGETS)
@RUN
@given(model=DRAWN, data=st.data())
def test_small_tiles_to_hardware(target, model, data):
    """`tile` with tiny tiles (many tiles, edge tiles, K and key loops), `lower-to-loops`, `assign-dataflow`,
    `lower-to-hardware`."""
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=4), label="sizes")
    order = data.draw(st.sampled_from(["", " order=1,0", " order=2,0,1"]), label="order")
    dataflow = data.draw(DATAFLOW_OPTIONS.get(target, st.just("")), label="assign-dataflow options")
    hardware = data.draw(HARDWARE_OPTIONS[target], label="lower-to-hardware options")
    spec = (f"tile{{sizes={','.join(map(str, sizes))}{order}}},lower-to-loops,place-chips,assign-dataflow{dataflow},"
            f"lower-to-hardware{hardware}")
    check_model(model, Pipeline.parse(spec, target))


# --------------------------------------------------------------------------- cost models


@pytest.mark.parametrize("target", TARGETS)
@RUN
@given(model=growable_models(dims=(1, 256)), which=st.integers(0, 6), factor=st.integers(2, 4))
def test_cost_grows_with_every_dimension(target, model, which, factor):
    name, value = model.lets[which % len(model.lets)]
    check_cost(compile_to_hardware(model, target), target)
    check_cost_monotonic(model, name, value * factor, target)


@pytest.mark.parametrize("target", TARGETS)
@settings(**hypothesis_settings(min(PROFILE.test_examples, 6), shrink=PROFILE.shrink))
@given(model=models(max_ops=5))
def test_tuned_schedule_never_costs_more(target, model):
    """`tuned-not-worse` with the real autotuner (a small budget per kernel)."""
    assert check_tuned_not_worse(model, target, autotuner())


def test_tuned_schedule_hook():
    """`tuned-not-worse` is skipped without a tuner, holds for one at least as good, fails for a worse one."""
    model = Model("let M = 64\nmodel m(x: f32[M, 96]) {\n  param w: f32[96, 80]\n  return relu(x @ w)\n}\n")
    assert check_tuned_not_worse(model, "gpu") is False

    def tuner_with(spec):
        def tune(module, target):
            from strata.compiler.pipeline import parse_pipeline

            return compile_to_hardware(Model(model.text), target, list(parse_pipeline(spec).passes))

        return tune

    try:
        register_tuner(tuner_with("fuse{target=gpu},assign-layout,tile,lower-to-loops,lower-to-hardware"))
        assert check_tuned_not_worse(model, "gpu") is True
        register_tuner(tuner_with("fuse{target=gpu},assign-layout,tile{sizes=1,1,1},lower-to-loops,lower-to-hardware"))
        with pytest.raises(PropertyFailure) as failure:
            check_tuned_not_worse(model, "gpu")
        assert failure.value.name == "tuned-not-worse"
    finally:
        register_tuner(None)


# --------------------------------------------------------------------------- the strategies themselves

LANGUAGE_OPS = {
    "add", "sub", "mul", "div", "maximum", "minimum", "pow", "matmul", "relu", "gelu", "silu", "sigmoid", "tanh",
    "exp", "log", "sqrt", "rsqrt", "abs", "erf", "neg", "sum", "mean", "reduce_max", "reduce_min", "softmax",
    "log_softmax", "layernorm", "rmsnorm", "transpose", "reshape", "concat", "slice", "split", "conv2d",
    "maxpool2d", "avgpool2d", "global_avgpool", "gather", "causal_mask", "cast",
}
FEATURES = {
    "a def block": r"\ndef b\d", "a block int parameter": r"n: int", "repeat": r"repeat \d \{",
    "a let constant": r"\nlet [A-D] = ", "keepdims": r"keepdims=true", "a negative axis": r"axis=-\d",
    "a permutation": r"perm=\[", "causal attention sugar": r"attention\([^\n]*causal=true",
    "spelled-out attention": r"softmax\([^\n]*@ transpose", "multi-result unpacking": r"\w+, \w+ = split\(",
    "declared results": r"\) -> \(", "a block calling a block": r"\n  h\d+ = b\d\(",
    "a batched matmul": r"@ x\d", "conv groups": r"groups=\d", "a dilation": r"dilation=2",
}


def test_strategies_cover_the_language():
    """Drawn models hold every operation of the language table, every dtype and every construct."""
    seen_ops, texts, seen_dtypes = set(), [], set()

    def collect(examples, **kwargs):
        @settings(**hypothesis_settings(examples))
        @given(model=models(**kwargs))
        def draw(model):
            module = model.module()
            seen_ops.update(op.name.removeprefix("graph.") for op in module.walk())
            seen_dtypes.update(model.dtypes)
            texts.append(model.text)

        draw()

    collect(200)
    # The families with many spellings, drawn alone so that each spelling shows up.
    for family, examples in (("unary", 40), ("binary", 25), ("reduce", 10), ("pool", 10), ("conv2d", 10)):
        collect(examples, ops=(family,), max_ops=6)
    assert LANGUAGE_OPS - seen_ops == set()
    assert set(DTYPES) - seen_dtypes == set()
    text = "\n".join(texts)
    assert [what for what, pattern in FEATURES.items() if not re.search(pattern, text)] == []


@RUN
@given(module=graph_modules())
def test_graph_modules_are_verified_graph_ir(module):
    module.verify()
    assert all(line.startswith(("input", "param", "result")) for line in interface(module))


@settings(**hypothesis_settings(10))
@given(model=models())
def test_drawn_text_is_a_model_file_strata_accepts(model):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drawn.model"
        path.write_text(model.text)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["check", str(path)]) == 0
    assert ": ok: model 'fuzz'" in out.getvalue()
    inputs, params = model.values(seed=3)
    again_inputs, again_params = model.values(seed=3)
    assert all((inputs[k] == again_inputs[k]).all() for k in inputs)
    assert all((params[k] == again_params[k]).all() for k in params)
