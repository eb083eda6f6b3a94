"""The `fuse` pass: grouping rules, idempotence, and preserved meaning."""

import numpy as np
import pytest
from xdsl.dialects import func

from strata.compiler.execution import reference, weights
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import compile_source, load_model
from strata.compiler.ir import make_context, parse_module, print_module
from strata.dialects.graph import ops as g
from strata.dialects.graph.kernel import KernelOp
from strata.passes.fuse import FusePass

GPT2_SMALL = {"S": 16, "D": 48, "H": 4, "L": 2}


def _kernels(module):
    return [op for op in module.walk() if isinstance(op, KernelOp)]


def _fuse(module, **options):
    FusePass(**options).apply(make_context(), module)
    module.verify()
    return module


def _values(module, seed=0):
    """Inputs and weights for a graph-stage module (ids in range of their tables)."""
    fn = next(op for op in module.walk() if isinstance(op, func.FuncOp))
    specs = weights.model_signature(fn)
    values = weights.random_values(specs, np.random.default_rng(seed), weights.integer_input_ranges(fn))
    inputs = {s.name: values[s.name] for s in specs if s.kind == "input"}
    params = {s.name: values[s.name] for s in specs if s.kind == "param"}
    return inputs, params


def test_gpt2_attention_is_one_kernel_and_epilogues_ride_in_gemms():
    module = _fuse(load_model("samples/gpt2.model", GPT2_SMALL))
    kernels = _kernels(module)
    attention = [k for k in kernels if k.kind.data == "attention"]
    assert len(attention) == GPT2_SMALL["L"]
    for kernel in attention:
        names = [op.name for op in kernel.body.block.ops]
        assert names.count("graph.matmul") == 2
        assert {"graph.softmax", "graph.causal_mask"} <= set(names)
    graph_ops = len(
        [op for op in load_model("samples/gpt2.model", GPT2_SMALL).walk() if op.name.startswith("graph.")]
    )
    assert len(kernels) < graph_ops / 2
    # No bias add, activation or residual add is left outside a kernel.
    fn = next(op for op in module.walk() if isinstance(op, func.FuncOp))
    assert not [op for op in fn.body.block.ops if isinstance(op, g.AddOp | g.GeluOp)]
    gemms = [k for k in kernels if k.kind.data == "gemm"]
    with_gelu = [k for k in gemms if any(isinstance(op, g.GeluOp) for op in k.body.block.ops)]
    assert len(with_gelu) == GPT2_SMALL["L"]
    for kernel in with_gelu:
        assert any(isinstance(op, g.AddOp) for op in kernel.body.block.ops)  # the bias


def test_spelled_out_attention_fuses_like_the_sugar():
    sugar = "model m(q: f32[2, 8, 16], k: f32[2, 8, 16], v: f32[2, 8, 16]) {\n  return attention(q, k, v, causal=true)\n}\n"
    manual = (
        "model m(q: f32[2, 8, 16], k: f32[2, 8, 16], v: f32[2, 8, 16]) {\n"
        "  s = causal_mask((q @ transpose(k)) * 0.25)\n"
        "  return softmax(s, axis=-1) @ v\n}\n"
    )
    for text in (sugar, manual):
        kernels = _kernels(_fuse(compile_source(text, "t.model")))
        assert [k.kind.data for k in kernels] == ["attention"]


@pytest.mark.parametrize("options", [{}, {"attention": False}, {"epilogue": False}, {"prologue": False}])
@pytest.mark.parametrize(
    "path,overrides",
    [
        ("samples/mlp.model", {"B": 4}),
        ("samples/gpt2.model", GPT2_SMALL),
        ("samples/llama.model", {"S": 16, "D": 64, "H": 4, "KVH": 2, "F": 96, "V": 128}),
    ],
)
def test_fusion_preserves_values(path, overrides, options):
    module = load_model(path, overrides)
    inputs, params = _values(module)
    expected = reference.run_module(module, inputs, params)
    fused = _fuse(module, **options)
    assert _kernels(fused)
    for a, b in zip(expected, reference.run_module(fused, inputs, params)):
        np.testing.assert_array_equal(a, b)


ROPE = """model rope(x: f32[1, 2, 8, 16], cos: f32[8, 16], sin: f32[8, 16]) {
  x1 = slice(x, axis=-1, start=0, end=8)
  x2 = slice(x, axis=-1, start=8, end=16)
  return x * cos + concat([-x2, x1], axis=-1) * sin
}
"""


def test_a_concat_takes_its_elementwise_producers():
    """RoPE is one copy kernel: the concat reads `-x2` and its epilogue's add reads `x * cos` inside it."""
    module = compile_source(ROPE, "rope.model")
    inputs, params = _values(module)
    expected = reference.run_module(module, inputs, params)
    fused = _fuse(module)
    [kernel] = _kernels(fused)
    assert kernel.kind.data == "copy"
    names = [op.name for op in kernel.body.block.ops]
    assert {"graph.neg", "graph.mul", "graph.add", "graph.slice", "graph.concat"} <= set(names)
    np.testing.assert_array_equal(expected[0], reference.run_module(fused, inputs, params)[0])
    # Without prologues the producers (and the slices) keep kernels of their own.
    assert len(_kernels(_fuse(compile_source(ROPE, "rope.model"), prologue=False))) == 5


OUTER = """model outer(p: bf16[1, 4, 3, 1], v: bf16[4, 1, 16], w: i8[1, 1, 16], u: i8[3, 1]) -> bf16[1, 4, 3, 16] {
  q = cast(u @ w, dtype=bf16)
  return p @ v + q
}
"""


def test_a_float_product_over_k_of_one_is_an_elementwise_multiply():
    """`p[.., M, 1] @ v[.., 1, N]` becomes `p * v` (batch dims broadcast alike), bit for bit; an integer one
    (i8 x i8 accumulating in i32) stays a GEMM."""
    module = compile_source(OUTER, "outer.model")
    inputs, params = _values(module)
    expected = reference.run_module(module, inputs, params)
    fused = _fuse(module)
    ops = [op for kernel in _kernels(fused) for op in kernel.body.block.ops]
    [product] = [op for op in ops if isinstance(op, g.MulOp)]
    assert product.result.type.get_shape() == (1, 4, 3, 16)
    assert len([op for op in ops if isinstance(op, g.MatmulOp)]) == 1  # the integer one
    np.testing.assert_array_equal(expected[0], reference.run_module(fused, inputs, params)[0])
    kept = _fuse(compile_source(OUTER, "outer.model"), outer_products=False)
    assert len([op for kernel in _kernels(kept) for op in kernel.body.block.ops if isinstance(op, g.MatmulOp)]) == 2


def test_fuse_is_idempotent_and_round_trips():
    module = _fuse(load_model("samples/gpt2.model", GPT2_SMALL))
    text = print_module(module)
    assert print_module(_fuse(module)) == text
    assert print_module(parse_module(text, "dump.mlir")) == text


def test_every_op_keeps_a_location():
    module = load_model("samples/gpt2.model", GPT2_SMALL)
    compile_module(module, "gpu", Stage.FUSED)
    fn = next(op for op in module.walk() if isinstance(op, func.FuncOp))
    for op in fn.body.walk():
        assert "unknown" not in str(op.location), op.name


def test_schedule_space_covers_the_switches():
    module = load_model("samples/mlp.model", {"B": 4})
    space = FusePass.schedule_space(make_context(), module)
    assert len(space) == 8 and len(set(space)) == 8


def test_gather_id_ranges_are_seen_through_kernels():
    module = _fuse(load_model("samples/gpt2.model", GPT2_SMALL))
    fn = next(op for op in module.walk() if isinstance(op, func.FuncOp))
    assert weights.integer_input_ranges(fn) == {"tokens": 50257}


def test_non_causal_attention_is_one_kernel(tmp_path):
    """Regression: without a causal mask the scale's user was looked up on the wrong op."""
    from strata.compiler.frontend import load_model
    from strata.passes.fuse import FusePass
    from strata.compiler.ir import make_context
    from strata.dialects.graph.kernel import KernelOp

    path = tmp_path / "a.model"
    path.write_text(
        "model a(q: f32[1, 2, 8, 4], k: f32[1, 2, 8, 4], v: f32[1, 2, 8, 4]) -> f32[1, 2, 8, 4] {\n"
        "  return attention(q, k, v)\n}\n"
    )
    module = load_model(str(path), {})
    FusePass().apply(make_context(), module)
    kernels = [op for op in module.walk() if isinstance(op, KernelOp)]
    assert [k.kind.data for k in kernels] == ["attention"]
