"""assign-dataflow: each matrix kernel gets the runnable dataflow with the fewest array cycles; pins win."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xdsl.dialects.builtin import StringAttr

import strata
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import load_model
from strata.compiler.ir import make_context
from strata.compiler.pipeline import parse_pipeline
from strata.dialects import loop
from strata.dialects.hardware import systolic
from strata.dialects.hardware.systolic_math import runnable_dataflows
from strata.dialects.vocabulary import IllegalSchedule
from tests.support import assert_close

# One decode step's attention scores: a query row per head against a cache of keys.
DECODE_SCORES = """
model scores(q: bf16[{b}, {h}, {m}, {d}], k: bf16[{b}, {h}, {d}, {t}]) -> bf16[{b}, {h}, {m}, {t}] {{
  return q @ k
}}
"""


def _programs(source: str, spec=None, schedule=None):
    compiled = strata.compile(strata.parse(source), target="tpu", spec=spec, schedule=schedule)
    return [op for op in compiled.module.walk() if isinstance(op, systolic.ProgramOp)], compiled


def test_pins_win_over_the_option_and_the_option_over_the_choice():
    module = load_model("samples/mlp.model", {"B": 8})
    compile_module(module, "tpu", Stage.LOOP)
    first = next(op for op in module.walk() if isinstance(op, loop.KernelOp))
    first.attributes["dataflow"] = StringAttr("os")
    parse_pipeline("assign-dataflow{dataflow=is},lower-to-hardware{target=tpu}").apply(make_context(), module)
    programs = [op for op in module.walk() if isinstance(op, systolic.ProgramOp)]
    matrix = [p for p in programs if p.gemm_list()]
    assert [p.dataflow.data for p in matrix] == ["os"] + ["is"] * (len(matrix) - 1)
    matmuls = [op for op in programs[0].walk() if isinstance(op, systolic.MatmulOp)]
    assert matmuls and all(m.dataflow.data == "os" for m in matmuls)
    assert programs[0].gemm_list() == [(1, 8, 256, 784)]


def test_one_query_row_holds_the_query_stationary():
    # M = 1: keys stationary take T / 128 folds of one streamed row each;
    # the query stationary streams all T keys through one fold.
    programs, compiled = _programs(DECODE_SCORES.format(b=4, h=2, m=1, d=128, t=2048))
    assert [p.dataflow.data for p in programs] == ["is"]
    pinned, pinned_compiled = _programs(DECODE_SCORES.format(b=4, h=2, m=1, d=128, t=2048), schedule={"dataflow": "ws"})
    assert pinned[0].dataflow.data == "ws"
    assert compiled.time_s < pinned_compiled.time_s


def test_a_square_gemm_keeps_the_devices_own_dataflow():
    programs, _ = _programs(DECODE_SCORES.format(b=1, h=1, m=512, d=512, t=512))
    assert [p.dataflow.data for p in programs] == ["ws"]


def test_an_output_stationary_array_runs_only_os():
    assert runnable_dataflows("os") == ("os",)
    assert runnable_dataflows("ws") == ("ws", "is")
    programs, _ = _programs(DECODE_SCORES.format(b=4, h=2, m=1, d=128, t=2048), spec={"dataflow": "os"})
    assert [p.dataflow.data for p in programs] == ["os"]


def test_other_targets_are_unchanged():
    module = load_model("samples/mlp.model", {"B": 8})
    compile_module(module, "gpu", Stage.LOOP)
    before = str(module)
    parse_pipeline("assign-dataflow").apply(make_context(), module)
    assert str(module) == before


def test_a_bad_option_is_refused():
    module = load_model("samples/mlp.model", {"B": 8})
    compile_module(module, "tpu", Stage.LOOP)
    with pytest.raises(IllegalSchedule, match="dataflow must be one of"):
        parse_pipeline("assign-dataflow{dataflow=xs}").apply(make_context(), module)


def test_the_choice_executes_as_the_reference():
    model = strata.parse(DECODE_SCORES.format(b=2, h=2, m=1, d=16, t=1024))
    compiled = strata.compile(model, target="tpu")
    assert [p.dataflow.data for p in compiled.module.walk() if isinstance(p, systolic.ProgramOp)] == ["is"]
    assert_close(strata.run(model, seed=0), strata.run(compiled, seed=0))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.sampled_from([1, 2, 8, 64, 200]), d=st.sampled_from([64, 128, 256]), t=st.sampled_from([16, 128, 1000, 2048]))
def test_the_choice_is_never_slower_than_the_other_runnable_dataflow(m, d, t):
    source = DECODE_SCORES.format(b=2, h=2, m=m, d=d, t=t)
    programs, chosen = _programs(source)
    for flow in runnable_dataflows("ws"):
        _, pinned = _programs(source, schedule={"dataflow": flow})
        assert chosen.time_s <= pinned.time_s * (1 + 1e-12)
