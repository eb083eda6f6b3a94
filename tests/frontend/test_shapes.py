"""
The shape rule of every operation, through the frontend, and the pure
functions of `dialects.graph.shapes` directly.
"""

import pytest
from xdsl.dialects import func

from strata.compiler.diagnostics import ModelError
from strata.compiler.frontend import compile_source
from strata.compiler.ir import print_module
from strata.dialects.graph import ops as g
from strata.dialects.graph import shapes
from strata.dialects.graph.dtypes import type_str


def compile_model(args: str, body: str, lets: str = ""):
    return compile_source(f"{lets}\nmodel m({args}) {{\n{body}\n}}\n", "t.model")


def model_func(module) -> func.FuncOp:
    (fn,) = [op for op in module.ops if isinstance(op, func.FuncOp)]
    return fn


def result_of(args: str, expr: str, lets: str = "") -> list[str]:
    fn = model_func(compile_model(args, f"  return {expr}", lets))
    return [type_str(t) for t in fn.function_type.outputs]


def ops_of(module) -> list:
    return [op for op in model_func(module).body.block.ops if op.name != "func.return"]


def shape_error(args: str, expr: str) -> str:
    with pytest.raises(ModelError) as info:
        compile_model(args, f"  return {expr}")
    return info.value.message


# --------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
@pytest.mark.parametrize(
    "a, b, result",
    [
        ("f32[2, 3]", "f32[2, 3]", "f32[2, 3]"),
        ("f32[2, 3]", "f32[3]", "f32[2, 3]"),
        ("f32[3]", "f32[2, 3]", "f32[2, 3]"),
        ("f32[2, 1]", "f32[1, 3]", "f32[2, 3]"),
        ("f32[4, 1, 3]", "f32[2, 1]", "f32[4, 2, 3]"),
        ("f32[]", "f32[2, 3]", "f32[2, 3]"),
        ("f32[2, 3]", "f32[]", "f32[2, 3]"),
        ("f32[1]", "f32[5, 1, 1]", "f32[5, 1, 1]"),
        ("i32[2, 3]", "i32[3]", "i32[2, 3]"),
    ],
)
def test_binary_broadcast(op, a, b, result):
    assert result_of(f"a: {a}, b: {b}", f"a {op} b") == [result]


@pytest.mark.parametrize("name", ["maximum", "minimum", "pow"])
def test_named_binary_broadcast(name):
    assert result_of("a: f32[4, 1], b: f32[5]", f"{name}(a, b)") == ["f32[4, 5]"]
    assert result_of("a: f32[4, 1]", f"{name}(a, 2)") == ["f32[4, 1]"]
    assert result_of("a: f32[4, 1]", f"{name}(0.5, a)") == ["f32[4, 1]"]


@pytest.mark.parametrize("a, b", [("f32[2, 3]", "f32[4, 3]"), ("f32[2, 3]", "f32[2]"), ("f32[3, 1, 2]", "f32[4, 3]")])
def test_binary_broadcast_mismatch_names_both_shapes(a, b):
    message = shape_error(f"a: {a}, b: {b}", "a + b")
    assert message == f"operands of '+' have shapes that do not broadcast: {a} and {b}"


def test_binary_scalar_literal_is_rank_zero_constant():
    module = compile_model("x: f16[2, 3]", "  return 2 * x")
    const, mul = ops_of(module)
    assert isinstance(const, g.ConstantOp) and type_str(const.result.type) == "f16[]"
    assert type_str(mul.result.type) == "f16[2, 3]"


@pytest.mark.parametrize(
    "name", ["relu", "gelu", "silu", "sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "abs", "erf"]
)
@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_unary_keeps_shape(name, dtype):
    module = compile_model(f"x: {dtype}[2, 3, 4]", f"  return {name}(x)")
    (op,) = ops_of(module)
    assert op.name == f"graph.{name}"
    assert type_str(op.results[0].type) == f"{dtype}[2, 3, 4]"


def test_negate_keeps_shape():
    assert result_of("x: f32[2, 3]", "-x") == ["f32[2, 3]"]
    assert result_of("x: f32[]", "-x") == ["f32[]"]


@pytest.mark.parametrize("name", ["gelu", "exp", "softmax", "layernorm", "causal_mask"])
def test_float_only_operations(name):
    assert shape_error("x: i32[2, 3]", f"{name}(x)") == f"{name} needs a float operand, got i32[2, 3]"


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "f8e4m3", "f8e5m2", "i8", "i32", "i64"])
def test_cast(dtype):
    module = compile_model("x: f32[2, 3]", f"  return cast(x, dtype={dtype})")
    (op,) = ops_of(module)
    assert isinstance(op, g.CastOp)
    assert type_str(op.result.type) == f"{dtype}[2, 3]"


# --------------------------------------------------------------------------- matmul


@pytest.mark.parametrize(
    "a, b, result",
    [
        ("f32[2, 3]", "f32[3, 4]", "f32[2, 4]"),
        ("f32[5, 2, 3]", "f32[3, 4]", "f32[5, 2, 4]"),
        ("f32[2, 3]", "f32[5, 3, 4]", "f32[5, 2, 4]"),
        ("f32[5, 1, 2, 3]", "f32[6, 3, 4]", "f32[5, 6, 2, 4]"),
        ("f32[1, 2, 3]", "f32[7, 3, 1]", "f32[7, 2, 1]"),
        ("i8[2, 3]", "i8[3, 4]", "i8[2, 4]"),
    ],
)
def test_matmul(a, b, result):
    assert result_of(f"a: {a}, b: {b}", "a @ b") == [result]


@pytest.mark.parametrize(
    "a, b, message",
    [
        ("f32[2, 3]", "f32[4, 5]", "'@' contraction dimensions differ: f32[2, 3] @ f32[4, 5] (3 vs 4)"),
        ("f32[3]", "f32[3, 4]", "'@' needs operands of rank >= 2, got f32[3] @ f32[3, 4]"),
        ("f32[2, 3]", "f32[3]", "'@' needs operands of rank >= 2, got f32[2, 3] @ f32[3]"),
        ("f32[2, 2, 3]", "f32[4, 3, 5]", "'@' batch dimensions do not broadcast: f32[2, 2, 3] @ f32[4, 3, 5]"),
        ("f32[2, 3]", "f16[3, 4]", "operands of '@' have different dtypes: f32[2, 3] and f16[3, 4]"),
    ],
)
def test_matmul_errors(a, b, message):
    assert shape_error(f"a: {a}, b: {b}", "a @ b") == message


# --------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("name, op", [("sum", "graph.sum"), ("mean", "graph.mean"), ("max", "graph.reduce_max"), ("min", "graph.reduce_min")])
@pytest.mark.parametrize(
    "attrs, result, axes",
    [
        ("", "f32[]", [0, 1, 2]),
        (", keepdims=true", "f32[1, 1, 1]", [0, 1, 2]),
        (", axis=0", "f32[3, 4]", [0]),
        (", axis=-1", "f32[2, 3]", [2]),
        (", axis=-1, keepdims=true", "f32[2, 3, 1]", [2]),
        (", axis=[0, 2]", "f32[3]", [0, 2]),
        (", axis=[2, 0]", "f32[3]", [0, 2]),
        (", axis=[-1, -3], keepdims=true", "f32[1, 3, 1]", [0, 2]),
        (", axis=[1], keepdims=false", "f32[2, 4]", [1]),
    ],
)
def test_reductions(name, op, attrs, result, axes):
    module = compile_model("x: f32[2, 3, 4]", f"  return {name}(x{attrs})")
    (reduce,) = ops_of(module)
    assert reduce.name == op
    assert type_str(reduce.result.type) == result
    assert list(reduce.axes.get_values()) == axes


@pytest.mark.parametrize(
    "attrs, message",
    [
        ("axis=3", "sum: axis 3 is out of range for rank 3"),
        ("axis=-4", "sum: axis -4 is out of range for rank 3"),
        ("axis=[0, -3]", "sum: axis list [0, -3] repeats an axis"),
    ],
)
def test_reduction_axis_errors(attrs, message):
    assert shape_error("x: f32[2, 3, 4]", f"sum(x, {attrs})") == message


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis, stored", [("", 2), (", axis=-1", 2), (", axis=0", 0), (", axis=-2", 1)])
def test_softmax_axis(name, axis, stored):
    module = compile_model("x: f32[2, 3, 4]", f"  return {name}(x{axis})")
    (op,) = ops_of(module)
    assert op.name == f"graph.{name}"
    assert op.axis.value.data == stored
    assert type_str(op.result.type) == "f32[2, 3, 4]"


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "args, call, axis",
    [
        ("g: f32[4], b: f32[4]", "layernorm(x, g, b)", 2),
        ("g: f32[4]", "layernorm(x, g)", 2),
        ("", "layernorm(x)", 2),
        ("g: f32[3, 4], b: f32[3, 4]", "layernorm(x, g, b, axis=1)", 1),
        ("g: f32[3, 4]", "layernorm(x, g, axis=-2)", 1),
        ("g: f32[2, 3, 4]", "layernorm(x, g, axis=0)", 0),
        ("g: f32[4]", "rmsnorm(x, g)", 2),
        ("", "rmsnorm(x)", 2),
        ("g: f32[3, 4]", "rmsnorm(x, g, axis=-2)", 1),
    ],
)
def test_norm_param_shapes(args, call, axis):
    module = compile_model("x: f32[2, 3, 4]" + (", " + args if args else ""), f"  return {call}")
    (op,) = ops_of(module)
    assert op.axis.value.data == axis
    assert type_str(op.results[0].type) == "f32[2, 3, 4]"


@pytest.mark.parametrize(
    "args, call, message",
    [
        ("g: f32[3]", "layernorm(x, g)", "layernorm parameter has type f32[3], but input f32[2, 3, 4] normalised from axis 2 needs f32[4]"),
        ("g: f32[4], b: f32[3, 4]", "layernorm(x, g, b)", "layernorm parameter has type f32[3, 4], but input f32[2, 3, 4] normalised from axis 2 needs f32[4]"),
        ("g: f32[4]", "layernorm(x, g, axis=1)", "layernorm parameter has type f32[4], but input f32[2, 3, 4] normalised from axis 1 needs f32[3, 4]"),
        ("g: f16[4]", "rmsnorm(x, g)", "rmsnorm parameter has type f16[4], but input f32[2, 3, 4] normalised from axis 2 needs f32[4]"),
    ],
)
def test_norm_param_errors(args, call, message):
    assert shape_error(f"x: f32[2, 3, 4], {args}", call) == message


# --------------------------------------------------------------------------- data movement


@pytest.mark.parametrize(
    "x, attrs, result, perm",
    [
        ("f32[2, 3]", "", "f32[3, 2]", [1, 0]),
        ("f32[2, 3, 4]", "", "f32[2, 4, 3]", [0, 2, 1]),
        ("f32[5, 2, 3, 4]", "", "f32[5, 2, 4, 3]", [0, 1, 3, 2]),
        ("f32[2, 3, 4]", ", perm=[2, 0, 1]", "f32[4, 2, 3]", [2, 0, 1]),
        ("f32[2, 3, 4]", ", perm=[-1, 0, -2]", "f32[4, 2, 3]", [2, 0, 1]),
        ("f32[2, 3, 4, 5]", ", perm=[0, 2, 1, 3]", "f32[2, 4, 3, 5]", [0, 2, 1, 3]),
        ("f32[7]", ", perm=[0]", "f32[7]", [0]),
    ],
)
def test_transpose(x, attrs, result, perm):
    module = compile_model(f"x: {x}", f"  return transpose(x{attrs})")
    (op,) = ops_of(module)
    assert type_str(op.result.type) == result
    assert list(op.perm.get_values()) == perm


@pytest.mark.parametrize(
    "x, attrs, message",
    [
        ("f32[3]", "", "transpose needs rank >= 2 to swap the last two axes, got f32[3]"),
        ("f32[2, 3]", ", perm=[0]", "transpose: perm [0] is not a permutation of the 2 axes of [2, 3]"),
        ("f32[2, 3]", ", perm=[1, 1]", "transpose: perm [1, 1] is not a permutation of the 2 axes of [2, 3]"),
    ],
)
def test_transpose_errors(x, attrs, message):
    assert shape_error(f"x: {x}", f"transpose(x{attrs})") == message


@pytest.mark.parametrize(
    "target, result",
    [
        ("[6, 4]", "f32[6, 4]"),
        ("[24]", "f32[24]"),
        ("[-1]", "f32[24]"),
        ("[2, -1]", "f32[2, 12]"),
        ("[-1, 3, 2]", "f32[4, 3, 2]"),
        ("[1, 2, 1, 12]", "f32[1, 2, 1, 12]"),
        ("[2, 3, 4]", "f32[2, 3, 4]"),
        ("[A, -1]", "f32[8, 3]"),
        ("[A / 2, A * 3 / 4]", "f32[4, 6]"),
    ],
)
def test_reshape(target, result):
    assert result_of("x: f32[2, 3, 4]", f"reshape(x, {target})", "let A = 8") == [result]


def test_reshape_to_scalar_and_back():
    assert result_of("x: f32[1, 1]", "reshape(x, [])") == ["f32[]"]
    assert result_of("x: f32[]", "reshape(x, [1, 1, 1])") == ["f32[1, 1, 1]"]


@pytest.mark.parametrize(
    "target, message",
    [
        ("[5, 5]", "reshape: cannot reshape [2, 3, 4] (24 elements) into [5, 5] (25 elements)"),
        ("[-1, 5]", "reshape: cannot reshape [2, 3, 4] into [-1, 5]"),
        ("[-1, -1]", "reshape target [-1, -1] has more than one -1"),
        ("[-2, -12]", "reshape target [-2, -12] has a negative dimension"),
        ("x", "reshape takes its shape as a list: reshape(x, [d0, d1, ...])"),
    ],
)
def test_reshape_errors(target, message):
    assert shape_error("x: f32[2, 3, 4]", f"reshape(x, {target})") == message


@pytest.mark.parametrize(
    "args, call, result, axis",
    [
        ("a: f32[2, 3], b: f32[2, 5]", "concat([a, b])", "f32[2, 8]", 1),
        ("a: f32[2, 3], b: f32[2, 5]", "concat([a, b], axis=-1)", "f32[2, 8]", 1),
        ("a: f32[2, 3], b: f32[4, 3]", "concat([a, b], axis=0)", "f32[6, 3]", 0),
        ("a: f32[2, 3], b: f32[4, 3]", "concat([a, b, a], axis=-2)", "f32[8, 3]", 0),
        ("a: f32[2, 3]", "concat([a])", "f32[2, 3]", 1),
        ("a: f32[1, 2, 3], b: f32[1, 5, 3]", "concat([a, b, b], axis=1)", "f32[1, 12, 3]", 1),
    ],
)
def test_concat(args, call, result, axis):
    module = compile_model(args, f"  return {call}")
    (op,) = ops_of(module)
    assert type_str(op.result.type) == result
    assert op.axis.value.data == axis


@pytest.mark.parametrize(
    "args, call, message",
    [
        ("a: f32[2, 3], b: f32[3, 3]", "concat([a, b])", "concat operands [2, 3] and [3, 3] differ outside axis 1"),
        ("a: f32[2, 3], b: f32[2, 3, 1]", "concat([a, b])", "concat operands [2, 3] and [2, 3, 1] differ outside axis 1"),
        ("a: f32[2, 3], b: i32[2, 3]", "concat([a, b])", "concat operands have different dtypes: f32[2, 3] and i32[2, 3]"),
        ("a: f32[2, 3]", "concat([])", "concat needs at least one tensor in its list"),
        ("a: f32[2, 3]", "concat([a], axis=2)", "concat: axis 2 is out of range for rank 2"),
    ],
)
def test_concat_errors(args, call, message):
    assert shape_error(args, call) == message


@pytest.mark.parametrize(
    "attrs, result, stored",
    [
        ("axis=0, start=0, end=1", "f32[1, 6, 4]", (0, 0, 1)),
        ("axis=1, start=2, end=6", "f32[2, 4, 4]", (1, 2, 6)),
        ("axis=-1, start=1, end=3", "f32[2, 6, 2]", (2, 1, 3)),
        ("axis=-2, start=5, end=6", "f32[2, 1, 4]", (1, 5, 6)),
        ("axis=2, start=0, end=4", "f32[2, 6, 4]", (2, 0, 4)),
    ],
)
def test_slice(attrs, result, stored):
    module = compile_model("x: f32[2, 6, 4]", f"  return slice(x, {attrs})")
    (op,) = ops_of(module)
    assert type_str(op.result.type) == result
    assert (op.axis.value.data, op.start.value.data, op.end.value.data) == stored


@pytest.mark.parametrize("start, end", [(0, 0), (3, 2), (-1, 2), (0, 7), (6, 7)])
def test_slice_bounds(start, end):
    message = shape_error("x: f32[2, 6, 4]", f"slice(x, axis=1, start={start}, end={end})")
    assert message == (
        f"slice needs 0 <= start < end <= 6 on axis 1 of [2, 6, 4], got start={start}, end={end}"
    )


@pytest.mark.parametrize(
    "attrs, count, result",
    [
        ("parts=3", 3, "f32[2, 4]"),
        ("parts=2, axis=0", 2, "f32[1, 12]"),
        ("parts=4, axis=-1", 4, "f32[2, 3]"),
        ("parts=1", 1, "f32[2, 12]"),
        ("parts=12", 12, "f32[2, 1]"),
    ],
)
def test_split(attrs, count, result):
    names = ", ".join(f"v{i}" for i in range(count))
    module = compile_model("x: f32[2, 12]", f"  {names} = split(x, {attrs})\n  return {names}")
    (op,) = ops_of(module)
    assert len(op.results) == count
    assert [type_str(r.type) for r in op.results] == [result] * count


@pytest.mark.parametrize(
    "attrs, message",
    [
        ("parts=5", "split: dimension 12 (axis 1 of [2, 12]) is not divisible by parts=5"),
        ("parts=3, axis=0", "split: dimension 2 (axis 0 of [2, 12]) is not divisible by parts=3"),
        ("parts=0", "split needs parts >= 1, got 0"),
        ("axis=0", "split needs the attribute parts=..."),
    ],
)
def test_split_errors(attrs, message):
    with pytest.raises(ModelError) as info:
        compile_model("x: f32[2, 12]", f"  a, b = split(x, {attrs})\n  return a")
    assert info.value.message == message


@pytest.mark.parametrize(
    "table, ids, result",
    [
        ("f32[100, 16]", "i32[2, 8]", "f32[2, 8, 16]"),
        ("f32[100, 16]", "i64[5]", "f32[5, 16]"),
        ("f32[100]", "i32[3, 4]", "f32[3, 4]"),
        ("f32[10, 2, 3]", "i8[4]", "f32[4, 2, 3]"),
        ("bf16[10, 4]", "i32[]", "bf16[4]"),
    ],
)
def test_gather(table, ids, result):
    assert result_of(f"t: {table}, i: {ids}", "gather(t, i)") == [result]


def test_gather_errors():
    assert shape_error("t: f32[10, 4], i: f32[3]", "gather(t, i)") == "gather ids must be integers, got f32[3]"
    assert shape_error("t: f32[], i: i32[3]", "gather(t, i)") == "gather table must have rank >= 1"


@pytest.mark.parametrize("x", ["f32[4, 4]", "f32[2, 3, 5]", "f32[1, 2, 8, 8]"])
def test_causal_mask(x):
    assert result_of(f"x: {x}", "causal_mask(x)") == [x]


def test_causal_mask_needs_rank_two():
    assert shape_error("x: f32[4]", "causal_mask(x)") == "causal_mask needs rank >= 2, got [4]"


# --------------------------------------------------------------------------- convolution and pooling


@pytest.mark.parametrize(
    "x, w, attrs, result, stored",
    [
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]", "", "f32[1, 4, 6, 6]", ([1, 1], [0, 0, 0, 0], [1, 1], 1)),
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]", ", padding=1", "f32[1, 4, 8, 8]", ([1, 1], [1, 1, 1, 1], [1, 1], 1)),
        ("f32[2, 3, 8, 8]", "f32[4, 3, 3, 3]", ", stride=2, padding=1", "f32[2, 4, 4, 4]", ([2, 2], [1, 1, 1, 1], [1, 1], 1)),
        ("f32[1, 3, 9, 8]", "f32[4, 3, 3, 3]", ", stride=[2, 1]", "f32[1, 4, 4, 6]", ([2, 1], [0, 0, 0, 0], [1, 1], 1)),
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3, 1]", ", padding=[1, 0]", "f32[1, 4, 8, 8]", ([1, 1], [1, 0, 1, 0], [1, 1], 1)),
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]", ", padding=[1, 2, 0, 0]", "f32[1, 4, 7, 8]", ([1, 1], [1, 2, 0, 0], [1, 1], 1)),
        ("f32[1, 3, 9, 9]", "f32[4, 3, 3, 3]", ", dilation=2", "f32[1, 4, 5, 5]", ([1, 1], [0, 0, 0, 0], [2, 2], 1)),
        ("f32[1, 3, 9, 9]", "f32[4, 3, 3, 3]", ", dilation=[2, 1]", "f32[1, 4, 5, 7]", ([1, 1], [0, 0, 0, 0], [2, 1], 1)),
        ("f32[1, 4, 8, 8]", "f32[6, 2, 3, 3]", ", groups=2", "f32[1, 6, 6, 6]", ([1, 1], [0, 0, 0, 0], [1, 1], 2)),
        ("f32[1, 8, 8, 8]", "f32[8, 1, 3, 3]", ", groups=8, padding=1", "f32[1, 8, 8, 8]", ([1, 1], [1, 1, 1, 1], [1, 1], 8)),
        ("f32[1, 3, 224, 224]", "f32[64, 3, 7, 7]", ", stride=2, padding=3", "f32[1, 64, 112, 112]", ([2, 2], [3, 3, 3, 3], [1, 1], 1)),
        ("f32[1, 3, 7, 7]", "f32[2, 3, 1, 1]", ", stride=3", "f32[1, 2, 3, 3]", ([3, 3], [0, 0, 0, 0], [1, 1], 1)),
    ],
)
def test_conv2d(x, w, attrs, result, stored):
    module = compile_model(f"x: {x}, w: {w}", f"  return conv2d(x, w{attrs})")
    (op,) = ops_of(module)
    assert type_str(op.result.type) == result
    strides, pads, dilations, groups = stored
    assert list(op.strides.get_values()) == strides
    assert list(op.pads.get_values()) == pads
    assert list(op.dilations.get_values()) == dilations
    assert op.groups.value.data == groups


def test_conv2d_bias():
    module = compile_model("x: f32[1, 3, 8, 8], w: f32[4, 3, 3, 3], b: f32[4]", "  return conv2d(x, w, b, padding=1)")
    (op,) = ops_of(module)
    assert op.bias is not None
    assert type_str(op.result.type) == "f32[1, 4, 8, 8]"


@pytest.mark.parametrize(
    "x, w, attrs, message",
    [
        ("f32[3, 8, 8]", "f32[4, 3, 3, 3]", "", "conv2d input must be [N, C, H, W], got [3, 8, 8]"),
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3]", "", "conv2d weight must be [O, C/groups, KH, KW], got [4, 3, 3]"),
        ("f32[1, 3, 8, 8]", "f32[4, 2, 3, 3]", "", "conv2d weight [4, 2, 3, 3] needs 3 input channels (C/groups) for input [1, 3, 8, 8]"),
        ("f32[1, 4, 8, 8]", "f32[6, 2, 3, 3]", ", groups=3", "conv2d: groups=3 must divide input channels 4 and output channels 6"),
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]", ", stride=0", "conv2d: stride must be positive, got [0, 0]"),
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]", ", padding=-1", "conv2d: padding must not be negative, got [-1, -1, -1, -1]"),
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]", ", dilation=[1, 0]", "conv2d: dilation must be positive, got [1, 0]"),
        ("f32[1, 3, 8, 8]", "f32[4, 3, 3, 3]", ", stride=[1, 2, 3]", "stride must be an integer or a list [h, w], got [1, 2, 3]"),
        ("f32[1, 3, 2, 8]", "f32[4, 3, 3, 3]", "", "conv2d kernel 3x3 does not fit the padded input [1, 3, 2, 8]"),
    ],
)
def test_conv2d_errors(x, w, attrs, message):
    assert shape_error(f"x: {x}, w: {w}", f"conv2d(x, w{attrs})") == message


@pytest.mark.parametrize("name", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize(
    "x, attrs, result, stored",
    [
        ("f32[1, 3, 8, 8]", "kernel=2", "f32[1, 3, 4, 4]", ([2, 2], [2, 2], [0, 0, 0, 0])),
        ("f32[1, 3, 9, 9]", "kernel=2", "f32[1, 3, 4, 4]", ([2, 2], [2, 2], [0, 0, 0, 0])),
        ("f32[1, 3, 8, 8]", "kernel=3, stride=1", "f32[1, 3, 6, 6]", ([3, 3], [1, 1], [0, 0, 0, 0])),
        ("f32[1, 3, 112, 112]", "kernel=3, stride=2, padding=1", "f32[1, 3, 56, 56]", ([3, 3], [2, 2], [1, 1, 1, 1])),
        ("f32[1, 3, 8, 6]", "kernel=[4, 2]", "f32[1, 3, 2, 3]", ([4, 2], [4, 2], [0, 0, 0, 0])),
        ("f32[1, 3, 8, 6]", "kernel=[4, 2], stride=[2, 1]", "f32[1, 3, 3, 5]", ([4, 2], [2, 1], [0, 0, 0, 0])),
        ("f32[2, 1, 5, 5]", "kernel=5", "f32[2, 1, 1, 1]", ([5, 5], [5, 5], [0, 0, 0, 0])),
    ],
)
def test_pool(name, x, attrs, result, stored):
    module = compile_model(f"x: {x}", f"  return {name}(x, {attrs})")
    (op,) = ops_of(module)
    assert op.name == f"graph.{name}"
    assert type_str(op.result.type) == result
    kernel, strides, pads = stored
    assert list(op.kernel.get_values()) == kernel
    assert list(op.strides.get_values()) == strides
    assert list(op.pads.get_values()) == pads


@pytest.mark.parametrize(
    "x, attrs, message",
    [
        ("f32[3, 8, 8]", "kernel=2", "maxpool2d: pooling input must be [N, C, H, W], got [3, 8, 8]"),
        ("f32[1, 3, 8, 8]", "kernel=0", "maxpool2d: pooling kernel must be positive, got [0, 0]"),
        ("f32[1, 3, 8, 8]", "kernel=2, padding=2", "maxpool2d: pooling padding [2, 2, 2, 2] must be smaller than the kernel [2, 2]"),
        ("f32[1, 3, 2, 2]", "kernel=3", "maxpool2d: pooling kernel [3, 3] does not fit the input [1, 3, 2, 2]"),
        ("f32[1, 3, 8, 8]", "stride=2", "maxpool2d needs the attribute kernel=..."),
    ],
)
def test_pool_errors(x, attrs, message):
    assert shape_error(f"x: {x}", f"maxpool2d(x, {attrs})") == message


@pytest.mark.parametrize("x, result", [("f32[2, 3, 8, 8]", "f32[2, 3, 1, 1]"), ("bf16[1, 512, 7, 5]", "bf16[1, 512, 1, 1]")])
def test_global_avgpool(x, result):
    assert result_of(f"x: {x}", "global_avgpool(x)") == [result]


def test_global_avgpool_needs_rank_four():
    assert shape_error("x: f32[2, 3, 8]", "global_avgpool(x)") == (
        "global_avgpool needs an [N, C, H, W] input, got f32[2, 3, 8]"
    )


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize(
    "q, k, v, result",
    [
        ("f32[8, 16]", "f32[8, 16]", "f32[8, 16]", "f32[8, 16]"),
        ("f32[2, 4, 8, 16]", "f32[2, 4, 10, 16]", "f32[2, 4, 10, 32]", "f32[2, 4, 8, 32]"),
        ("f32[4, 1, 16]", "f32[4, 6, 16]", "f32[4, 6, 8]", "f32[4, 1, 8]"),
    ],
)
@pytest.mark.parametrize("causal", ["true", "false"])
def test_attention_shape(q, k, v, result, causal):
    assert result_of(f"q: {q}, k: {k}, v: {v}", f"attention(q, k, v, causal={causal})") == [result]


def test_attention_expansion_op_sequence():
    module = compile_model("q: f32[2, 8, 16], k: f32[2, 8, 16], v: f32[2, 8, 16]", "  return attention(q, k, v, causal=true)")
    ops = ops_of(module)
    assert [op.name for op in ops] == [
        "graph.transpose",
        "graph.matmul",
        "graph.constant",
        "graph.mul",
        "graph.causal_mask",
        "graph.softmax",
        "graph.matmul",
    ]
    transpose, scores, scale, scaled, masked, probs, out = ops
    fn = model_func(module)
    q, k, v = fn.args
    assert transpose.input == k and list(transpose.perm.get_values()) == [0, 2, 1]
    assert list(scores.operands) == [q, transpose.result]
    assert scale.value.value.data == 0.25  # 1/sqrt(16)
    assert list(scaled.operands) == [scores.result, scale.result]
    assert probs.axis.value.data == 2
    assert list(out.operands) == [probs.results[0], v]
    assert type_str(scores.result.type) == "f32[2, 8, 8]"


def test_attention_without_causal_has_no_mask():
    module = compile_model("q: f32[8, 4], k: f32[8, 4], v: f32[8, 4]", "  return attention(q, k, v)")
    assert [op.name for op in ops_of(module)] == [
        "graph.transpose", "graph.matmul", "graph.constant", "graph.mul", "graph.softmax", "graph.matmul",
    ]


def test_attention_explicit_scale():
    module = compile_model("q: f32[8, 4], k: f32[8, 4], v: f32[8, 4]", "  return attention(q, k, v, scale=0.125)")
    (const,) = [op for op in ops_of(module) if isinstance(op, g.ConstantOp)]
    assert const.value.value.data == 0.125


@pytest.mark.parametrize(
    "sugar, spelled",
    [
        ("attention(q, k, v, causal=true)", "softmax(causal_mask((q @ transpose(k)) * 0.25), axis=-1) @ v"),
        ("attention(q, k, v)", "softmax((q @ transpose(k)) * 0.25, axis=-1) @ v"),
        ("attention(q, k, v, scale=0.5)", "softmax((q @ transpose(k)) * 0.5, axis=-1) @ v"),
        ("attention(q, k, v, causal=true, scale=2)", "softmax(causal_mask(q @ transpose(k) * 2), axis=2) @ v"),
    ],
)
def test_attention_is_exactly_its_spelled_out_form(sugar, spelled):
    args = "q: f32[2, 8, 16], k: f32[2, 12, 16], v: f32[2, 12, 4]"
    a = print_module(compile_model(args, f"  return {sugar}"), debuginfo=False)
    b = print_module(compile_model(args, f"  return {spelled}"), debuginfo=False)
    assert a == b


@pytest.mark.parametrize(
    "q, k, v, message",
    [
        ("f32[8, 16]", "f32[8, 8]", "f32[8, 16]", "attention q f32[8, 16] and k f32[8, 8] differ in head dim"),
        ("f32[8, 16]", "f32[8, 16]", "f32[6, 16]", "attention k f32[8, 16] and v f32[6, 16] differ in sequence length"),
        ("f32[16]", "f32[8, 16]", "f32[8, 16]", "attention needs q, k, v of rank >= 2"),
        ("f32[8, 16]", "f16[8, 16]", "f32[8, 16]", "attention operands have different dtypes: f32[8, 16], f16[8, 16], f32[8, 16]"),
        ("i32[8, 16]", "i32[8, 16]", "i32[8, 16]", "attention needs a float operand, got i32[8, 16]"),
    ],
)
def test_attention_errors(q, k, v, message):
    assert shape_error(f"q: {q}, k: {k}, v: {v}", "attention(q, k, v)") == message


# --------------------------------------------------------------------------- shapes.py, directly


@pytest.mark.parametrize(
    "a, b, out",
    [
        ((), (), ()),
        ((3,), (), (3,)),
        ((2, 3), (3,), (2, 3)),
        ((2, 1), (1, 3), (2, 3)),
        ((5, 1, 4), (3, 1), (5, 3, 4)),
        ((0,), (1,), (0,)),
        ((1,), (0,), (0,)),
    ],
)
def test_broadcast_rule(a, b, out):
    assert shapes.broadcast(a, b) == out
    assert shapes.broadcast(b, a) == out


@pytest.mark.parametrize("a, b", [((2,), (3,)), ((2, 3), (3, 2)), ((0,), (2,))])
def test_broadcast_rule_errors(a, b):
    with pytest.raises(shapes.ShapeError, match=r"do not broadcast"):
        shapes.broadcast(a, b)


@pytest.mark.parametrize(
    "a, b, out",
    [
        ((2, 3), (3, 4), (2, 4)),
        ((7, 2, 3), (3, 4), (7, 2, 4)),
        ((1, 2, 3), (5, 3, 4), (5, 2, 4)),
    ],
)
def test_matmul_rule(a, b, out):
    assert shapes.matmul(a, b) == out


@pytest.mark.parametrize(
    "a, b, match",
    [
        ((3,), (3, 4), "rank >= 2"),
        ((2, 3), (4, 5), r"contraction dims differ: \[2, 3\] @ \[4, 5\] \(3 vs 4\)"),
        ((2, 2, 3), (3, 3, 4), "batch dims"),
    ],
)
def test_matmul_rule_errors(a, b, match):
    with pytest.raises(shapes.ShapeError, match=match):
        shapes.matmul(a, b)


def test_normalize_axis_rules():
    assert shapes.normalize_axis(-1, 3) == 2
    assert shapes.normalize_axis(0, 1) == 0
    with pytest.raises(shapes.ShapeError, match="out of range for rank 3"):
        shapes.normalize_axis(3, 3)
    with pytest.raises(shapes.ShapeError):
        shapes.normalize_axis(0, 0)
    assert shapes.normalize_axes([-1, 0], 3) == (2, 0)
    with pytest.raises(shapes.ShapeError, match="repeats an axis"):
        shapes.normalize_axes([1, -2], 3)


@pytest.mark.parametrize(
    "shape, axes, keep, out",
    [
        ((2, 3, 4), (1,), False, (2, 4)),
        ((2, 3, 4), (1,), True, (2, 1, 4)),
        ((2, 3, 4), (0, 1, 2), False, ()),
        ((2, 3, 4), (), False, (2, 3, 4)),
    ],
)
def test_reduce_rule(shape, axes, keep, out):
    assert shapes.reduce(shape, axes, keep) == out


def test_norm_params_rule():
    assert shapes.norm_params((2, 3, 4), 1) == (3, 4)
    assert shapes.norm_params((2, 3, 4), 2) == (4,)


def test_transpose_rule():
    assert shapes.transpose((2, 3, 4), (2, 0, 1)) == (4, 2, 3)
    with pytest.raises(shapes.ShapeError, match="not a permutation"):
        shapes.transpose((2, 3), (0, 2))


@pytest.mark.parametrize(
    "shape, target, out",
    [((2, 3, 4), (-1,), (24,)), ((2, 3, 4), (4, -1), (4, 6)), ((), (1, 1), (1, 1)), ((6,), (6,), (6,)), ((2, 3), (-1, 0), None), ((2, 3), (7,), None)],
)
def test_reshape_rule(shape, target, out):
    if out is None:
        with pytest.raises(shapes.ShapeError):
            shapes.reshape(shape, target)
    else:
        assert shapes.reshape(shape, target) == out


def test_concat_rule():
    assert shapes.concat([(2, 3), (2, 5)], 1) == (2, 8)
    assert shapes.concat([(2, 3)], 0) == (2, 3)
    with pytest.raises(shapes.ShapeError, match="at least one"):
        shapes.concat([], 0)
    with pytest.raises(shapes.ShapeError, match=r"\[2, 3\] and \[3, 3\] differ outside axis 1"):
        shapes.concat([(2, 3), (3, 3)], 1)


def test_slice_and_split_rules():
    assert shapes.slice_((4, 6), 1, 2, 6) == (4, 4)
    with pytest.raises(shapes.ShapeError, match="start=3, end=3"):
        shapes.slice_((4, 6), 1, 3, 3)
    assert shapes.split((4, 6), 3, 1) == (4, 2)
    with pytest.raises(shapes.ShapeError, match="not divisible by parts=4"):
        shapes.split((4, 6), 4, 1)
    with pytest.raises(shapes.ShapeError, match="parts >= 1"):
        shapes.split((4, 6), -1, 1)


@pytest.mark.parametrize(
    "x, w, strides, pads, dilations, groups, out",
    [
        ((1, 3, 8, 8), (4, 3, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, (1, 4, 6, 6)),
        ((1, 3, 8, 8), (4, 3, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, (1, 4, 4, 4)),
        ((1, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 0, 0, 0), (1, 1), 1, (1, 4, 7, 6)),
        ((1, 3, 9, 9), (4, 3, 3, 3), (1, 1), (0, 0, 0, 0), (3, 3), 1, (1, 4, 3, 3)),
        ((2, 6, 5, 5), (6, 1, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 6, (2, 6, 5, 5)),
    ],
)
def test_conv2d_rule(x, w, strides, pads, dilations, groups, out):
    assert shapes.conv2d(x, w, strides, pads, dilations, groups) == out


def test_conv2d_rule_errors():
    with pytest.raises(shapes.ShapeError, match="groups=0"):
        shapes.conv2d((1, 4, 8, 8), (4, 4, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 0)
    with pytest.raises(shapes.ShapeError, match="does not fit"):
        shapes.conv2d((1, 3, 4, 4), (4, 3, 3, 3), (1, 1), (0, 0, 0, 0), (2, 2), 1)


@pytest.mark.parametrize(
    "x, kernel, strides, pads, out",
    [
        ((1, 3, 8, 8), (2, 2), (2, 2), (0, 0, 0, 0), (1, 3, 4, 4)),
        ((1, 3, 7, 7), (3, 3), (2, 2), (1, 1, 1, 1), (1, 3, 4, 4)),
        ((1, 3, 5, 5), (2, 2), (2, 2), (0, 0, 0, 0), (1, 3, 2, 2)),
    ],
)
def test_pool2d_rule(x, kernel, strides, pads, out):
    assert shapes.pool2d(x, kernel, strides, pads) == out


def test_gather_causal_and_count_rules():
    assert shapes.gather((10, 4), (2, 3)) == (2, 3, 4)
    assert shapes.gather((10,), ()) == ()
    with pytest.raises(shapes.ShapeError):
        shapes.gather((), (2,))
    assert shapes.causal_mask((3, 4)) == (3, 4)
    with pytest.raises(shapes.ShapeError):
        shapes.causal_mask((3,))
    assert shapes.num_elements(()) == 1
    assert shapes.num_elements((2, 3, 4)) == 24
    assert shapes.fmt(()) == "[]"
    assert shapes.fmt((2, 3)) == "[2, 3]"
