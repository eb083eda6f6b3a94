"""lower-to-loops (with assign-layout and tile): every sample, every target, executes as the reference."""

import numpy as np
import pytest
from xdsl.dialects.builtin import UnknownLoc

from strata.compiler.execution import loop_interpreter, reference
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import load_model
from strata.compiler.ir import parse_module, print_module
from strata.compiler.pipeline import parse_pipeline
from strata.dialects import loop
from tests.support import REDUCED, TINY, assert_close, sample_values

@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
@pytest.mark.parametrize("name", sorted(REDUCED))
def test_sample_runs_the_same_through_loop(name, target):
    module = load_model(f"samples/{name}.model", REDUCED[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, target, Stage.LOOP)
    assert any(isinstance(op, loop.KernelOp) for op in module.walk())
    assert_close(want, loop_interpreter.run_module(module, inputs, params))
    # Every op keeps a location.
    assert all(not isinstance(op.location, UnknownLoc) for op in module.walk() if op.name != "builtin.module")
    text = print_module(module)
    assert print_module(parse_module(text, "dump.mlir")) == text


@pytest.mark.parametrize("sizes", ["4,4,4", "8,16,8", "2,3,5"])
@pytest.mark.parametrize("name", ["llama", "resnet18", "vit"])
def test_small_tiles_keep_values(name, sizes):
    """Many tiles, edge tiles and K/key loops of several steps: still the reference."""
    module = load_model(f"samples/{name}.model", TINY[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, "tpu", Stage.LAYOUT)
    from strata.compiler.ir import make_context

    parse_pipeline(f"tile{{sizes={sizes}}},lower-to-loops").apply(make_context(), module)
    module.verify()
    loops = [op for op in module.walk() if op.name == "scf.for"]
    assert len(loops) > 10
    assert_close(want, loop_interpreter.run_module(module, inputs, params))


def _causal_kernel(dtype: str, tiles, causal: bool = True):
    """48 queries over 64 keys (the diagonal 16 keys in), lowered with `tiles`."""
    from strata.compiler.frontend import compile_source
    from strata.compiler.tuning.spaces import apply_point
    from strata.dialects.graph.kernel import KernelOp

    flag = "true" if causal else "false"
    source = (
        f"model m(q: {dtype}[1, 2, 48, 16], k: {dtype}[1, 2, 64, 16], v: {dtype}[1, 2, 64, 16])"
        f" -> {dtype}[1, 2, 48, 16] {{\n  return attention(q, k, v, causal={flag})\n}}\n"
    )
    graph = compile_source(source, "causal.model")
    module = graph.clone()
    compile_module(module, "gpu", Stage.LAYOUT)
    for op in module.walk():
        if isinstance(op, KernelOp):
            apply_point(op, {"tiles": tiles, "order": (0, 1, 2, 3)})
    compile_module(module, "gpu", Stage.LOOP)
    kernel = next(op for op in module.walk() if isinstance(op, loop.KernelOp))
    return graph, module, kernel


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
@pytest.mark.parametrize("tiles", [(1, 1, 16, 16, 16), (1, 2, 32, 16, 8), (1, 1, 8, 16, 64), (1, 1, 48, 16, 16)])
def test_causal_key_loop_stops_at_the_diagonal_and_keeps_values(dtype, tiles):
    graph, module, _ = _causal_kernel(dtype, tiles)
    rng = np.random.default_rng(1)
    inputs = {n: rng.standard_normal((1, 2, 48 if n == "q" else 64, 16)).astype(np.float32) for n in "qkv"}
    from strata.compiler.testing.properties import compare_outputs

    want, got = reference.run_module(graph, inputs, {}), loop_interpreter.run_module(module, inputs, {})
    assert compare_outputs(want, got, {"f32": 1e-4, "bf16": 4e-2}[dtype]) is None


def test_causal_attention_does_the_triangle_of_the_work():
    from strata.passes._figures import kernel_figures, kernel_gemms

    tiles = (1, 1, 16, 16, 16)
    _, _, causal = _causal_kernel("f32", tiles)
    _, _, full = _causal_kernel("f32", tiles, causal=False)
    # Query tiles at 0, 16, 32 see keys up to 32, 48, 64: 9 of 12 key tiles.
    assert kernel_figures(causal).matrix_flops * 12 == kernel_figures(full).matrix_flops * 9
    # The GEMMs run over the keys a query visits on average: (16*32 + 16*48 + 16*64) / 48 = 48.
    assert kernel_gemms(causal) == [(2, 48, 48, 16), (2, 48, 16, 48)]
    assert kernel_gemms(full) == [(2, 48, 64, 16), (2, 48, 16, 64)]
    # Queries kept whole: one tile, every key.
    _, _, whole = _causal_kernel("f32", (1, 1, 48, 16, 16))
    assert kernel_gemms(whole) == kernel_gemms(full)


def test_f8e4m3_causal_attention_visits_every_key():
    """Its mask value is finite (-448), so masked tiles still weigh in the softmax."""
    from strata.passes._figures import kernel_figures

    _, _, causal = _causal_kernel("f8e4m3", (1, 1, 16, 16, 16))
    _, _, full = _causal_kernel("f8e4m3", (1, 1, 16, 16, 16), causal=False)
    assert not [op for op in causal.walk() if op.name == "arith.minsi"]
    assert kernel_figures(causal).matrix_flops == kernel_figures(full).matrix_flops


def test_gather_reads_only_the_rows_it_selects():
    """An embedding lookup of 8 ids in a 1000-row table moves 8 rows, not the table."""
    from strata.compiler.frontend import compile_source
    from strata.passes._figures import kernel_figures

    source = "model m(ids: i32[8]) -> f32[8, 64] {\n  param table: f32[1000, 64]\n  return gather(table, ids)\n}\n"
    module = compile_source(source, "gather.model")
    compile_module(module, "gpu", Stage.LOOP)
    kernel = next(op for op in module.walk() if isinstance(op, loop.KernelOp))
    assert [op for op in kernel.walk() if isinstance(op, loop.GatherOp)]
    figures = kernel_figures(kernel)
    assert figures.read_bytes == 8 * 64 * 4 + 8 * 4  # the rows and the ids
    assert figures.reads_by_buffer[0] == 8 * 64 * 4


def test_gather_verifier_names_the_problem():
    from strata.compiler.diagnostics import StrataError

    text = (
        'func.func @f(%t: memref<10x4xf32, #graph.layout<[0, 1]>, "global">, %ids: tensor<3xf32>) {\n'
        '  %r = loop.gather %t[] by %ids {map = affine_map<() -> (0)>, pad = 0.0 : f64}'
        ' : memref<10x4xf32, #graph.layout<[0, 1]>, "global">, tensor<3xf32> -> tensor<3x4xf32>\n'
        "  func.return\n}\n"
    )
    with pytest.raises(StrataError, match="'loop.gather' ids must be integers"):
        parse_module(text, "bad.mlir")


PADDED_WINDOW_OF_A_RESHAPE = """\
model m(x: f32[1, 32]) {
  param w: f32[4, 2, 3, 3]
  y = conv2d(reshape(x, [1, 2, 4, 4]), w, padding=1)
  return maxpool2d(reshape(y, [1, 2, 8, 4]), kernel=3, stride=2, padding=1)
}
"""


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_padded_window_of_a_value_computed_whole(target):
    """
    A padded conv (and max pool) reading a reshape fused into its kernel:
    the reshape is computed whole and its window, reaching one row and
    column outside it, is padded on chip (zeros; -inf for the pool). It
    used to be a slice from -1, which the verifier rejected.
    """
    from strata.compiler.frontend import compile_source

    module = compile_source(PADDED_WINDOW_OF_A_RESHAPE, "m.model")
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    compile_module(module, target, Stage.LOOP)
    assert_close(want, loop_interpreter.run_module(module, inputs, params))


OUTPUT_PROJECTION = """model o(a: f32[1, 8, 1, {d}]) -> f32[1, 1, {k}] {{
  param w: f32[{k}, {k}]
  return reshape(a, [1, 1, {k}]) @ w
}}
"""


def test_a_reshape_merging_heads_is_tiled_by_whole_heads_or_pieces_of_one():
    """
    A decode step's output projection reads its heads `[1, H, 1, D]` as `[1, 1, H*D]`: the unit dims
    before the merged one differ, and a K tile of whole heads (a multiple of D) is legal, and so is
    a piece of one head (a divisor of D, its head and offset `k floordiv D` and `k mod D`). By default
    the cpu's few-rows tile of one row takes `loop.STREAMED_ROWS` = 8 rows of the weight, a piece of
    a head; pinned K tiles of 256 (two heads of 128) and 32 are kept. With heads of 96 a pinned K
    tile of 64 is neither, and is ignored (the default, 8, is a piece). With heads of 12 the default
    8 is neither: `tile` steps it to the next divisor of K that is legal (12, one head), not to the
    whole K. Each executes as the reference.
    """
    from strata.compiler.frontend import compile_source
    from strata.compiler.ir import make_context
    from strata.dialects.device import load_device

    for d, pinned, k in ((128, "", 8), (128, "{sizes=256,256}", 256), (128, "{sizes=256,32}", 32),
                         (96, "{sizes=256,64}", 8), (12, "", 12)):
        module = compile_source(OUTPUT_PROJECTION.format(d=d, k=8 * d), "o.model")
        inputs, params = sample_values(module)
        want = reference.run_module(module, inputs, params)
        compile_module(module, "cpu", Stage.LAYOUT, device=load_device("epyc-9654"))
        parse_pipeline(f"tile{pinned},lower-to-loops").apply(make_context(), module)
        (kernel,) = [op for op in module.walk() if isinstance(op, loop.KernelOp)]
        assert kernel.tile_sizes.get_values()[-1] == k
        assert_close(want, loop_interpreter.run_module(module, inputs, params))
