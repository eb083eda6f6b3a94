"""shard: Megatron-style tensor parallelism and data parallelism, checked by executing every device's program."""

import threading

import numpy as np
import pytest

from strata.compiler.driver import Stage, compile_module, passes_between
from strata.compiler.execution import loop_interpreter, reference, spmd
from strata.compiler.frontend import compile_source, load_model
from strata.compiler.ir import make_context, parse_module, print_module
from strata.compiler.schedule import apply_schedule
from strata.dialects.vocabulary import SPLIT_ATTR, IllegalSchedule
from strata.passes.shard import ShardPass
from tests.support import REDUCED, assert_close, sample_values

BLOCK = """
let B = 4
let S = 8
let D = 64
let H = 4
model block(x: f32[B, S, D]) -> f32[B, S, 32] {
  param wq: f32[D, D]
  param wk: f32[D, D]
  param wv: f32[D, D]
  param wo: f32[D, D]
  param ln_g: f32[D]
  param w1: f32[D, 4*D]
  param b1: f32[4*D]
  param w2: f32[4*D, D]
  param wh: f32[D, 32]
  q = transpose(reshape(x @ wq, [B, S, H, D/H]), perm=[0, 2, 1, 3])
  k = transpose(reshape(x @ wk, [B, S, H, D/H]), perm=[0, 2, 1, 3])
  v = transpose(reshape(x @ wv, [B, S, H, D/H]), perm=[0, 2, 1, 3])
  o = reshape(transpose(attention(q, k, v, causal=true), perm=[0, 2, 1, 3]), [B, S, D])
  x = x + o @ wo
  x = x + gelu(rmsnorm(x, ln_g) @ w1 + b1) @ w2
  return x @ wh
}
"""


def _block():
    return compile_source(BLOCK, "block.model")


def _ops(module, name):
    return [op for op in module.walk() if op.name == name]


def _splits(module) -> dict[str, list]:
    """Each argument's name to its `strata.split` (axis, dim, groups), [] when whole."""
    fn = reference.model_function(module)
    result = {}
    for (_, name), attrs in zip(reference.argument_names(fn), fn.arg_attrs.data):
        split = attrs.data.get(SPLIT_ATTR)
        result[name] = [tuple(x.data if hasattr(x, "data") and isinstance(x.data, str) else x.value.data
                              for x in entry.data) for entry in split.data] if split else []
    return result


def _shard(module, **mesh):
    ShardPass(**mesh).apply(make_context(), module)
    module.verify()
    return module


def test_megatron_pattern_column_then_row_splits_and_two_all_reduces():
    module = _shard(_block(), tp=2)
    splits = _splits(module)
    for column in ("wq", "wk", "wv", "w1", "b1", "wh"):
        assert splits[column] == [("tp", 1 if column != "b1" else 0, 1)], column
    for row in ("wo", "w2"):
        assert splits[row] == [("tp", 0, 1)], row
    assert splits["x"] == [] and splits["ln_g"] == []
    # Attention splits by heads on its own: 4 heads, 2 per device.
    (softmax,) = _ops(module, "graph.softmax")
    assert softmax.results[0].type.get_shape() == (4, 2, 8, 8)
    assert len(_ops(module, "graph.all_reduce")) == 2
    # The output of the column-split head is gathered before the return.
    (gather,) = _ops(module, "graph.all_gather")
    assert gather.results[0].type.get_shape() == (4, 8, 32)


def test_a_sharded_module_prints_and_parses_back():
    module = _shard(_block(), tp=2, dp=2)
    text = print_module(module)
    assert print_module(parse_module(text, "block.mlir")) == text


@pytest.mark.parametrize("mesh", [{"tp": 2}, {"dp": 2}, {"tp": 2, "dp": 2}, {"tp": 4}])
def test_the_sharded_graph_computes_what_the_whole_one_does(mesh):
    inputs, params = sample_values(_block())
    want = reference.run_module(_block(), inputs, params)
    assert_close(want, reference.run_module(_shard(_block(), **mesh), inputs, params))


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_tensor_and_data_parallel_block_runs_equal_at_loop_and_hardware_stages(target):
    inputs, params = sample_values(_block())
    want = reference.run_module(_block(), inputs, params)
    module = _block()
    passes = apply_schedule(passes_between(target, Stage.GRAPH, Stage.HARDWARE), {"tp": "2", "dp": "2"})
    compile_module(module, target, Stage.HARDWARE, pipeline=passes)
    assert {op.name.split(".")[0] for op in _ops(module, f"{_dialect(target)}.all_reduce")} == {_dialect(target)}
    assert_close(want, loop_interpreter.run_module(module, inputs, params))


def _dialect(target):
    return {"gpu": "simt", "tpu": "systolic", "lpu": "tsp"}[target]


def test_gpt2_at_reduced_sizes_splits_its_fused_qkv_by_parts_and_runs_equal():
    sizes = REDUCED["gpt2"]
    inputs, params = sample_values(load_model("samples/gpt2.model", sizes))
    want = reference.run_module(load_model("samples/gpt2.model", sizes), inputs, params)
    module = load_model("samples/gpt2.model", sizes)
    compile_module(module, "gpu", Stage.HARDWARE,
                   pipeline=apply_schedule(passes_between("gpu", Stage.GRAPH, Stage.HARDWARE), {"tp": "2"}))
    graph = _shard(load_model("samples/gpt2.model", sizes), tp=2)
    splits = _splits(graph)
    assert splits["attn.0.w_qkv"] == [("tp", 1, 3)]
    assert splits["mlp.1.w2"] == [("tp", 0, 1)]
    # Two all-reduces per layer (attention output, MLP output), as in Megatron-LM.
    assert len(_ops(module, "simt.all_reduce")) == 2 * sizes["L"]
    assert_close(want, loop_interpreter.run_module(module, inputs, params))


def test_an_op_that_cannot_take_a_split_operand_gets_it_whole():
    """A softmax over the split dim needs the whole row: gathered first."""
    text = """
model m(x: f32[4, 16]) -> f32[4, 32] {
  param w: f32[16, 32]
  return softmax(x @ w, axis=-1)
}
"""
    module = _shard(compile_source(text, "m.model"), tp=2)
    ops = [op.name for op in reference.model_function(module).body.block.ops]
    assert ops.index("graph.all_gather") < ops.index("graph.softmax")
    inputs, params = sample_values(compile_source(text, "m.model"))
    assert_close(reference.run_module(compile_source(text, "m.model"), inputs, params),
                 reference.run_module(module, inputs, params))


def test_a_weight_the_mesh_does_not_divide_stays_whole():
    text = """
model m(x: f32[4, 16]) -> f32[4, 6] {
  param w: f32[16, 6]
  return relu(x @ w)
}
"""
    module = _shard(compile_source(text, "m.model"), tp=4)
    assert _splits(module)["w"] == []
    assert not _ops(module, "graph.all_gather") and not _ops(module, "graph.all_reduce")


def test_shard_is_idempotent_and_refuses_another_mesh():
    module = _shard(_block(), tp=2)
    text = print_module(module)
    _shard(module, tp=2)
    _shard(module)
    assert print_module(module) == text
    with pytest.raises(IllegalSchedule, match="already sharded"):
        _shard(module, tp=4)


def test_tp_and_dp_of_one_leave_the_module_as_it_was():
    module = _block()
    text = print_module(module)
    assert print_module(_shard(module, tp=1, dp=1)) == text


def test_data_parallelism_needs_a_batch_that_divides():
    with pytest.raises(IllegalSchedule, match="does not split evenly"):
        _shard(_block(), dp=3)
    no_batch = compile_source("model m(x: f32[4, 16]) -> f32[4, 16] {\n  return relu(x)\n}\n", "m.model")
    with pytest.raises(IllegalSchedule, match="batch is not known"):
        _shard(no_batch, dp=2)


def test_a_failing_device_ends_the_run_without_hanging_the_others():
    """One device raising stops its peers waiting in a collective: the error comes out, nothing hangs."""
    module = _shard(_block(), tp=2)
    inputs, params = sample_values(_block())
    calls = {"n": 0}
    lock = threading.Lock()

    def flaky(fn, args):
        with lock:
            calls["n"] += 1
            first = calls["n"] == 1
        if first:
            raise RuntimeError("device failed")
        return reference.run_function(fn, args)

    fn = reference.model_function(module)
    pools = {"input": inputs, "param": params}
    args = [pools[kind][name] for kind, name in reference.argument_names(fn)]
    with pytest.raises(RuntimeError, match="device failed"):
        spmd.run(module, fn, args, flaky)
    assert calls["n"] == 2


def test_blocks_of_an_argument_join_back_to_it():
    whole = np.arange(4 * 6 * 12).reshape(4, 6, 12)
    for dim, groups, devices in ((0, 1, 2), (2, 3, 2), (2, 1, 4), (1, 3, 2)):
        parts = [spmd.block(whole, dim, devices, d, groups) for d in range(devices)]
        assert all(p.shape[dim] == whole.shape[dim] // devices for p in parts)
        np.testing.assert_array_equal(spmd.join(parts, dim, groups), whole)


# --------------------------------------------------------------------------- sequence parallelism


@pytest.mark.parametrize("mesh", [{"tp": 2}, {"tp": 4}, {"tp": 2, "dp": 2}])
def test_sequence_parallelism_reduce_scatters_the_rows_and_runs_equal(mesh):
    """sp: each all-reduce becomes a reduce-scatter along S; norms and residual adds run on 1/tp of the rows."""
    module = _shard(_block(), **mesh, sp=True)
    tp = mesh["tp"]
    assert not _ops(module, "graph.all_reduce")
    scatters = _ops(module, "graph.reduce_scatter")
    assert len(scatters) == 2 and all(op.dim.value.data == 1 for op in scatters)
    assert ("tp", 1, 1) in _splits(module)["x"]
    (norm,) = _ops(module, "graph.rmsnorm")
    assert norm.results[0].type.get_shape()[1] == 8 // tp
    # One all-gather of the rows before each column-parallel GEMM (x before wq/wk/wv, the norm before w1,
    # x before the head), and the head's output before the return.
    assert len(_ops(module, "graph.all_gather")) == 4 + (1 if "dp" in mesh else 0)
    inputs, params = sample_values(_block())
    assert_close(reference.run_module(_block(), inputs, params), reference.run_module(module, inputs, params))


@pytest.mark.parametrize("target, tp", [("gpu", 2), ("gpu", 4), ("tpu", 2), ("lpu", 2)])
def test_gpt2_with_sequence_parallelism_runs_equal_at_loop_and_hardware_stages(target, tp):
    sizes = REDUCED["gpt2"]
    inputs, params = sample_values(load_model("samples/gpt2.model", sizes))
    want = reference.run_module(load_model("samples/gpt2.model", sizes), inputs, params)
    # The loop stage is the same on every target: checked once.
    for stage in (Stage.LOOP, Stage.HARDWARE) if (target, tp) == ("gpu", 2) else (Stage.HARDWARE,):
        module = load_model("samples/gpt2.model", sizes)
        passes = apply_schedule(passes_between(target, Stage.GRAPH, stage), {"tp": str(tp), "sp": "1"})
        compile_module(module, target, stage, pipeline=passes)
        prefix = "loop" if stage is Stage.LOOP else _dialect(target)
        # Megatron-LM with sequence parallelism: per layer two reduce-scatters and two all-gathers, no all-reduce.
        assert len(_ops(module, f"{prefix}.reduce_scatter")) == 2 * sizes["L"]
        assert not _ops(module, f"{prefix}.all_reduce")
        assert len(_ops(module, f"{prefix}.all_gather")) == 2 * sizes["L"] + 1
        assert_close(want, loop_interpreter.run_module(module, inputs, params))


def test_sequence_parallelism_all_reduces_where_no_row_dim_divides():
    """A decode step ([B, 1, D]) has no sequence to scatter: the partial sums are all-reduced as without sp."""
    text = """
let B = 4
model m(x: f32[B, 1, 16]) -> f32[B, 1, 16] {
  param w1: f32[16, 64]
  param w2: f32[64, 16]
  return x + relu(x @ w1) @ w2
}
"""
    module = _shard(compile_source(text, "m.model"), tp=2, sp=True)
    assert len(_ops(module, "graph.all_reduce")) == 1 and not _ops(module, "graph.reduce_scatter")
    inputs, params = sample_values(compile_source(text, "m.model"))
    assert_close(reference.run_module(compile_source(text, "m.model"), inputs, params),
                 reference.run_module(module, inputs, params))


def test_sequence_parallelism_needs_tensor_parallelism():
    with pytest.raises(IllegalSchedule, match="needs tp > 1"):
        _shard(_block(), dp=2, sp=True)


def test_reduce_scatter_is_the_sum_cut_into_blocks():
    """Run on two devices by hand: each gets its block of the sum (groups: its block of each part)."""
    values = [np.arange(24, dtype=np.float32).reshape(2, 12) * (d + 1) for d in range(2)]
    total = values[0] + values[1]
    for dim, groups in ((0, 1), (1, 1), (1, 3)):
        got = {}

        def device(rank, dim=dim, groups=groups):
            got[rank] = spmd.reduce_scatter(values[rank], "tp", 2, dim, groups)

        meeting = spmd._Meeting({"dp": 1, "tp": 2})
        threads = []
        for rank in range(2):
            def work(rank=rank):
                spmd._current.device = spmd._Device(meeting, {"dp": 0, "tp": rank})
                device(rank)
            threads.append(threading.Thread(target=work))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for rank in range(2):
            np.testing.assert_array_equal(got[rank], spmd.block(total, dim, 2, rank, groups))
        np.testing.assert_array_equal(spmd.join([got[0], got[1]], dim, groups), total)


QUANTIZED = """
let B = 2
let S = 4
let D = 32
let F = 64
model qblock(x: f32[B, S, D]) -> f32[B, S, D] {
  param w1: i4[D, F]
  param s1: f32[F]
  param w2: i8[F, D]
  param s2: f32[D]
  param w3: i8[D, F]
  param s3: f32[F]
  param w4: f8e4m3[F, D]
  param st: f32[]
  h = relu(x @ dequantize(w1, s1 * st, dtype=f32))
  y = x + h @ dequantize(w2, s2 * st, dtype=f32)
  a = dequantize(matmul(quantize(y, 0.0625, dtype=i8), w3, dtype=i32), s3 * 0.0625)
  return y + matmul(quantize(relu(a), 0.25, dtype=f8e4m3), w4, dtype=f32)
}
"""


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_quantized_weights_split_like_their_float_twins_and_run_equal(target):
    """`x @ dequantize(w, s)` splits w and its per-channel scale (columns, then rows: the scale stays whole;
    a per-tensor scale shared by both stays whole); an int8 GEMM's dequantize takes its scale's columns;
    quantize passes a row split on to an fp8 GEMM."""
    inputs, params = sample_values(compile_source(QUANTIZED, "q.model"))
    want = reference.run_module(compile_source(QUANTIZED, "q.model"), inputs, params)
    graph = _shard(compile_source(QUANTIZED, "q.model"), tp=2)
    splits = _splits(graph)
    assert splits["w1"] == splits["w3"] == [("tp", 1, 1)] and splits["s1"] == splits["s3"] == [("tp", 0, 1)]
    assert splits["w2"] == splits["w4"] == [("tp", 0, 1)] and splits["s2"] == splits["st"] == []
    # Megatron's two all-reduces per column/row pair, and no weight gathered.
    assert len(_ops(graph, "graph.all_reduce")) == 2 and not _ops(graph, "graph.all_gather")
    assert_close(want, reference.run_module(graph, inputs, params))
    module = compile_source(QUANTIZED, "q.model")
    compile_module(module, target, Stage.HARDWARE,
                   pipeline=apply_schedule(passes_between(target, Stage.GRAPH, Stage.HARDWARE), {"tp": "2"}))
    assert_close(want, loop_interpreter.run_module(module, inputs, params))
