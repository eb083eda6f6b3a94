"""
Every construct of the model-language grammar, through `compile_source`.

Each test compiles a compact model and inspects the resulting `func.func`:
its argument and result types, and the sequence of graph ops.
"""

import math
import textwrap

import pytest
from xdsl.dialects import func

from strata.compiler.diagnostics import ModelError
from strata.compiler.frontend import compile_source
from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import type_str


def compile_text(text: str, overrides: dict[str, int] | None = None):
    return compile_source(textwrap.dedent(text), "t.model", overrides)


def model_func(module) -> func.FuncOp:
    (fn,) = [op for op in module.ops if isinstance(op, func.FuncOp)]
    return fn


def arg_types(module) -> list[str]:
    return [type_str(t) for t in model_func(module).function_type.inputs]


def result_types(module) -> list[str]:
    return [type_str(t) for t in model_func(module).function_type.outputs]


def op_names(module) -> list[str]:
    return [op.name for op in model_func(module).body.block.ops]


def graph_ops(module) -> list[str]:
    return [name for name in op_names(module) if name != "func.return"]


def constants(module) -> list[float]:
    return [op.value.value.data for op in model_func(module).body.block.ops if isinstance(op, g.ConstantOp)]


def fails(text: str, fragment: str, overrides=None) -> ModelError:
    with pytest.raises(ModelError) as info:
        compile_text(text, overrides)
    assert fragment in info.value.message
    return info.value


# --------------------------------------------------------------------------- lexical


def test_comments_everywhere():
    module = compile_text(
        """\
        # leading comment
        let B = 2  # after a let
        # between items

        model m(x: f32[B, 3]) {  # after the header
          # a comment line in the body
          y = relu(x)  # after a statement
          return y # no space before the hash is fine too
        }
        # trailing comment"""
    )
    assert arg_types(module) == ["f32[2, 3]"]
    assert graph_ops(module) == ["graph.relu"]


def test_comment_inside_brackets():
    module = compile_text(
        """\
        model m(x: f32[2, 3]) {
          y = reshape(x, [  # rows
            3,  # three
            2,  # two
          ])
          return y
        }
        """
    )
    assert result_types(module) == ["f32[3, 2]"]


def test_hash_inside_string_is_not_a_comment():
    fails('model m(x: f32[2]) {\n  return cast(x, dtype="f16 # no")\n}\n', 'got "f16 # no"')


def test_newlines_ignored_inside_parentheses_and_brackets():
    module = compile_text(
        """\
        model m(
          x: f32[
            2,
            3
          ],
          w: f32[3, 4],
        ) -> f32[
          2, 4
        ] {
          y = softmax(
            x
            @
            w,
            axis=-1
          )
          z = transpose(y, perm=[
            1,
            0
          ])
          return (
            transpose(z)
          )
        }
        """
    )
    assert arg_types(module) == ["f32[2, 3]", "f32[3, 4]"]
    assert result_types(module) == ["f32[2, 4]"]
    assert graph_ops(module) == ["graph.matmul", "graph.softmax", "graph.transpose", "graph.transpose"]


def test_newline_ends_a_statement_outside_brackets():
    fails("model m(x: f32[2]) {\n  y = x\n    + x\n  return y\n}\n", "unexpected '+' at the start of a line")


def test_blank_lines_crlf_and_tabs():
    text = "\r\n\r\nlet B = 2\r\n\r\n\r\nmodel m(x: f32[B]) {\r\n\r\n\ty = relu(x)\r\n\r\n\treturn y\r\n}\r\n\r\n"
    module = compile_source(text, "t.model")
    assert arg_types(module) == ["f32[2]"]
    assert graph_ops(module) == ["graph.relu"]


def test_single_line_body():
    module = compile_text("model m(x: f32[2]) { return relu(x) }")
    assert graph_ops(module) == ["graph.relu"]


def test_no_trailing_newline():
    module = compile_source("model m(x: f32[2]) {\n  return x\n}", "t.model")
    assert result_types(module) == ["f32[2]"]


def test_trailing_commas():
    module = compile_text(
        """\
        def f(x: f32[N], n: int,) -> (f32[N],) {
          return x
        }
        model m(x: f32[2, 3], y: f32[2, 3],) -> (f32[3, 2], f32[2, 3],) {
          return transpose(x, perm=[1, 0,],), f(y, 1,)
        }
        """.replace("f(y, 1,)", "reshape(f(reshape(y, [6,]), 1,), [2, 3,],)")
    )
    assert result_types(module) == ["f32[3, 2]", "f32[2, 3]"]


@pytest.mark.parametrize("keyword", ["let", "model", "def", "param", "return", "repeat"])
def test_keywords_are_reserved(keyword):
    error = fails(f"model m({keyword}: f32[2]) {{\n  return x\n}}\n", f"'{keyword}' is a keyword")
    assert (error.loc.line, error.loc.col) == (1, 9)


def test_names_may_contain_keywords_and_underscores():
    module = compile_text(
        """\
        let _B2 = 2
        model m(return_value: f32[_B2], model_x: f32[_B2]) {
          param_1 = return_value + model_x
          repeated = param_1
          return repeated
        }
        """
    )
    assert graph_ops(module) == ["graph.add"]


# --------------------------------------------------------------------------- let constants


@pytest.mark.parametrize(
    "expr, value",
    [
        ("7", 7),
        ("2 + 3", 5),
        ("10 - 4 - 3", 3),
        ("2 * 3 + 4", 10),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("24 / 4 / 3", 2),
        ("24 / (4 / 2)", 12),
        ("-3 + 5", 2),
        ("-(2 - 5)", 3),
        ("--4", 4),
        ("2 * -3 + 10", 4),
        ("A * 2 + A / 3", 84),
        ("(A + 4) / (A - 26) * 3", 12),
        ("4*A/3", 48),
    ],
)
def test_let_arithmetic(expr, value):
    module = compile_text(f"let A = 36\nlet X = {expr}\nmodel m(x: f32[X]) {{\n  return x\n}}\n")
    assert arg_types(module) == [f"f32[{value}]"]


def test_lets_in_any_order_and_after_the_model():
    module = compile_text(
        """\
        let A = B * 2
        model m(x: f32[A, C]) {
          return x
        }
        let B = C + 1
        let C = 3
        """
    )
    assert arg_types(module) == ["f32[8, 3]"]


@pytest.mark.parametrize(
    "lets, cycle",
    [
        ("let A = A", "A -> A"),
        ("let A = A + 1", "A -> A"),
        ("let A = B\nlet B = A", "A -> B -> A"),
        ("let A = B * 2\nlet B = C - 1\nlet C = A / 2", "A -> B -> C -> A"),
        ("let X = 3\nlet A = X + B\nlet B = (A)", "A -> B -> A"),
    ],
)
@pytest.mark.parametrize("used", [True, False])
def test_cyclic_lets(lets, cycle, used):
    dim = "A" if used else "2"
    fails(f"{lets}\nmodel m(x: f32[{dim}]) {{\n  return x\n}}\n", f"depends on itself ({cycle})")


def test_override_breaks_a_cycle_and_recomputes_dependents():
    text = "let D = 8\nlet H = 2\nlet Dh = D / H\nmodel m(x: f32[Dh]) {\n  return x\n}\n"
    assert arg_types(compile_text(text)) == ["f32[4]"]
    assert arg_types(compile_text(text, {"D": 16})) == ["f32[8]"]
    assert arg_types(compile_text(text, {"Dh": 5})) == ["f32[5]"]
    cyclic = "let A = A + 1\nmodel m(x: f32[A]) {\n  return x\n}\n"
    assert arg_types(compile_text(cyclic, {"A": 3})) == ["f32[3]"]


def test_let_constant_as_scalar_operand():
    module = compile_text("let K = 3\nmodel m(x: f32[2]) {\n  return x * K\n}\n")
    assert constants(module) == [3.0]
    assert graph_ops(module) == ["graph.constant", "graph.mul"]


# --------------------------------------------------------------------------- model and results


def test_model_without_results():
    module = compile_text("model m(x: f32[2, 3]) {\n  return transpose(x)\n}\n")
    assert result_types(module) == ["f32[3, 2]"]
    assert model_func(module).sym_name.data == "m"


def test_model_with_single_result():
    module = compile_text("model m(x: f32[2, 3]) -> f32[3, 2] {\n  return transpose(x)\n}\n")
    assert result_types(module) == ["f32[3, 2]"]


@pytest.mark.parametrize("results", ["(f32[3, 2], f32[2, 3])", "(f32[3, 2], f32[2, 3],)", None])
def test_model_with_tuple_result(results):
    arrow = f" -> {results}" if results else ""
    module = compile_text(f"model m(x: f32[2, 3]){arrow} {{\n  return transpose(x), x\n}}\n")
    assert result_types(module) == ["f32[3, 2]", "f32[2, 3]"]
    assert op_names(module)[-1] == "func.return"


def test_parenthesized_single_result():
    module = compile_text("model m(x: f32[2]) -> (f32[2]) {\n  return x\n}\n")
    assert result_types(module) == ["f32[2]"]


def test_model_with_no_inputs():
    module = compile_text("model m() {\n  param w: f32[2]\n  return relu(w)\n}\n")
    assert arg_types(module) == ["f32[2]"]


def test_items_in_any_order():
    module = compile_text(
        """\
        model m(x: f32[N]) {
          return f(x)
        }
        def f(x: f32[K]) -> f32[K] {
          return g(x)
        }
        let N = 4
        def g(x: f32[K]) {
          return relu(x)
        }
        """
    )
    assert graph_ops(module) == ["graph.relu"]


# --------------------------------------------------------------------------- def blocks


def test_def_shape_names_bound_per_call():
    module = compile_text(
        """\
        def double(x: f32[N, D]) -> f32[N, 2*D] {
          return concat([x, x], axis=-1)
        }
        model m(a: f32[2, 3], b: f32[5, 7]) {
          return double(a), double(b)
        }
        """
    )
    assert result_types(module) == ["f32[2, 6]", "f32[5, 14]"]


def test_def_shape_name_repeated_must_agree():
    text = "def sq(x: f32[N, N]) {\n  return x @ x\n}\nmodel m(a: f32[SHAPE]) {\n  return sq(a)\n}\n"
    assert result_types(compile_text(text.replace("SHAPE", "3, 3"))) == ["f32[3, 3]"]
    fails(text.replace("SHAPE", "3, 4"), "dimension 1 is 4, but N = 3 from dimension 0")


def test_def_shape_names_shared_between_arguments():
    text = (
        "def f(x: f32[N, 2*D], y: f32[D]) {\n  a, b = split(x, parts=2)\n  return a + y\n}\n"
        "model m(x: f32[3, SHAPE], y: f32[4]) {\n  return f(x, y)\n}\n"
    )
    # D is bound by the second argument and used by the first.
    assert result_types(compile_text(text.replace("SHAPE", "8"))) == ["f32[3, 4]"]
    fails(text.replace("SHAPE", "6"), "dimension 1 is 6, but 2*D = 8")


def test_def_shape_name_bound_in_one_argument_checked_in_another():
    text = "def f(x: f32[N], y: f32[N]) {\n  return x + y\n}\nmodel m(x: f32[3], y: f32[4]) {\n  return f(x, y)\n}\n"
    fails(text, "argument 'y' of 'f' must be f32[N], got f32[4]: dimension 0 is 4, but N = 3 from dimension 0 of 'x'")


def test_def_shape_name_that_cannot_be_inferred():
    text = "def f(x: f32[2*D]) {\n  return x\n}\nmodel m(x: f32[4]) {\n  return f(x)\n}\n"
    error = fails(text, "cannot infer 'D' from dimension 2*D of argument 'x'")
    assert (error.loc.line, error.loc.col) == (1, 16)


def test_def_shape_names_usable_in_body():
    module = compile_text(
        """\
        def lin(x: f32[N, K], n: int) -> f32[N, n] {
          param w: f32[K, n]
          param b: f32[n]
          h = reshape(x, [N * K])
          return reshape(h, [N, K]) @ w + b
        }
        model m(x: f32[3, 4]) {
          return lin(x, 5)
        }
        """
    )
    assert result_types(module) == ["f32[3, 5]"]
    assert arg_types(module) == ["f32[3, 4]", "f32[4, 5]", "f32[5]"]


@pytest.mark.parametrize("call", ["f(x, 2, 3)", "f(x, 2, k=3)", "f(x, n=2, k=3)", "f(x, k=3, n=2)"])
def test_int_params_positional_and_keyword(call):
    module = compile_text(
        f"""\
        def f(x: f32[D], n: int, k: int) {{
          y = slice(x, axis=0, start=n, end=n + k)
          return reshape(y, [k, 1])
        }}
        model m(x: f32[8]) {{
          return {call}
        }}
        """
    )
    assert result_types(module) == ["f32[3, 1]"]
    (slice_op,) = [op for op in model_func(module).body.block.ops if isinstance(op, g.SliceOp)]
    assert (slice_op.start.value.data, slice_op.end.value.data) == (2, 5)


def test_int_param_in_shapes_attributes_and_repeat():
    module = compile_text(
        """\
        def f(x: f32[N, 3*n], n: int) {
          a, b = split(x, parts=n)
          repeat n {
            x = x + x
          }
          return x
        }
        model m(x: f32[2, 6]) {
          return f(x, 2)
        }
        """
    )
    assert graph_ops(module) == ["graph.split", "graph.add", "graph.add"]


def test_int_param_from_expression_and_let():
    module = compile_text(
        """\
        let H = 2
        def f(x: f32[S, D], heads: int) {
          return reshape(x, [S, heads, D / heads])
        }
        model m(x: f32[4, 8]) {
          return f(x, heads=H * 2)
        }
        """
    )
    assert result_types(module) == ["f32[4, 4, 2]"]


def test_def_calling_def():
    module = compile_text(
        """\
        def inner(x: f32[N]) {
          return relu(x)
        }
        def middle(x: f32[N]) {
          return inner(x) + inner(x)
        }
        def outer(x: f32[N]) {
          return middle(middle(x))
        }
        model m(x: f32[4]) {
          return outer(x)
        }
        """
    )
    assert graph_ops(module) == ["graph.relu", "graph.relu", "graph.add"] * 2


def test_def_with_several_results():
    module = compile_text(
        """\
        def halves(x: f32[N, D]) -> (f32[N, D/2], f32[N, D/2]) {
          a, b = split(x, parts=2)
          return a, b
        }
        model m(x: f32[2, 6]) {
          a, b = halves(x)
          return b, a
        }
        """
    )
    assert result_types(module) == ["f32[2, 3]", "f32[2, 3]"]


def test_def_unused_is_not_elaborated():
    module = compile_text(
        """\
        def broken(x: f32[N]) {
          return x @ x
        }
        model m(x: f32[2]) {
          return x
        }
        """
    )
    assert graph_ops(module) == []


@pytest.mark.parametrize(
    "defs, cycle",
    [
        ("def f(x: f32[2]) {\n  return f(x)\n}\n", "'f' calls itself"),
        ("def f(x: f32[2]) {\n  return g(x)\n}\ndef g(x: f32[2]) {\n  return f(x)\n}\n", "f -> g -> f"),
        (
            "def f(x: f32[2]) {\n  return g(x)\n}\ndef g(x: f32[2]) {\n  return h(x)\n}\n"
            "def h(x: f32[2]) {\n  repeat 0 {\n    x = f(x)\n  }\n  return x\n}\n",
            "f -> g -> h -> f",
        ),
    ],
)
@pytest.mark.parametrize("called", [True, False])
def test_recursion_is_an_error(defs, cycle, called):
    body = "  return f(x)" if called else "  return x"
    fails(f"{defs}model m(x: f32[2]) {{\n{body}\n}}\n", cycle)


# --------------------------------------------------------------------------- repeat


def test_repeat_unrolls():
    module = compile_text("model m(x: f32[2]) {\n  repeat 3 {\n    x = x + x\n  }\n  return x\n}\n")
    assert graph_ops(module) == ["graph.add"] * 3


@pytest.mark.parametrize("overrides, count", [(None, 2), ({"L": 5}, 5), ({"L": 0}, 0)])
def test_repeat_let_count_can_be_overridden(overrides, count):
    module = compile_text(
        "let L = 2\nmodel m(x: f32[2]) {\n  repeat L {\n    x = relu(x)\n  }\n  return x\n}\n", overrides
    )
    assert graph_ops(module) == ["graph.relu"] * count


def test_repeat_count_expression_and_zero():
    text = "let L = 2\nmodel m(x: f32[2]) {{\n  repeat {} {{\n    x = relu(x)\n  }}\n  return x\n}}\n"
    assert len(graph_ops(compile_text(text.format("2 * L + 1")))) == 5
    assert graph_ops(compile_text(text.format("0"))) == []
    assert graph_ops(compile_text(text.format("L - 2"))) == []


def test_repeat_empty_body():
    module = compile_text("model m(x: f32[2]) {\n  repeat 1000000000 {\n  }\n  repeat 3 {}\n  return x\n}\n")
    assert graph_ops(module) == []


def test_nested_repeat():
    module = compile_text(
        """\
        model m(x: f32[2]) {
          repeat 2 {
            x = relu(x)
            repeat 3 {
              x = exp(x)
            }
          }
          return x
        }
        """
    )
    assert graph_ops(module) == (["graph.relu"] + ["graph.exp"] * 3) * 2


def test_names_bound_inside_repeat_are_visible_after():
    module = compile_text(
        """\
        model m(x: f32[2]) {
          repeat 2 {
            y = relu(x)
            x = y + x
          }
          return y
        }
        """
    )
    assert graph_ops(module) == ["graph.relu", "graph.add", "graph.relu", "graph.add"]
    fn = model_func(module)
    ret = list(fn.body.block.ops)[-1]
    # `y` after the loop is the second iteration's relu.
    assert ret.operands[0].owner is [op for op in fn.body.block.ops if isinstance(op, g.ReluOp)][1]


def test_name_bound_only_in_zero_repeat_is_unknown():
    fails("model m(x: f32[2]) {\n  repeat 0 {\n    y = relu(x)\n  }\n  return y\n}\n", "unknown name 'y'")


def test_repeat_of_block_call():
    module = compile_text(
        """\
        let L = 3
        def layer(x: f32[N, D]) {
          param w: f32[D, D]
          return relu(x @ w)
        }
        model m(x: f32[2, 4]) {
          repeat L {
            x = layer(x)
          }
          return x
        }
        """
    )
    assert graph_ops(module) == ["graph.matmul", "graph.relu"] * 3


# --------------------------------------------------------------------------- statements


def test_rebinding():
    module = compile_text(
        """\
        model m(x: f32[2]) {
          y = relu(x)
          y = y + x
          x = y * y
          return x
        }
        """
    )
    assert graph_ops(module) == ["graph.relu", "graph.add", "graph.mul"]


def test_rebinding_changes_type():
    module = compile_text("model m(x: f32[2, 3]) {\n  x = transpose(x)\n  x = cast(x, dtype=f16)\n  return x\n}\n")
    assert result_types(module) == ["f16[3, 2]"]


def test_rebinding_shape_name_of_block():
    # A tensor may take the name of a shape variable after the binding.
    module = compile_text("def f(x: f32[N]) {\n  N = relu(x)\n  return N\n}\nmodel m(x: f32[2]) {\n  return f(x)\n}\n")
    assert graph_ops(module) == ["graph.relu"]


def test_multi_result_unpacking():
    module = compile_text(
        """\
        model m(x: f32[2, 12]) {
          q, k, v = split(x, parts=3)
          return q, k, v
        }
        """
    )
    assert result_types(module) == ["f32[2, 4]"] * 3
    ops = list(model_func(module).body.block.ops)
    assert list(ops[-1].operands) == list(ops[0].results)


def test_there_are_no_tuple_expressions():
    fails("model m(x: f32[4, 6]) {\n  a, b = split(x, parts=2)\n  a, b = b, a\n  return a\n}\n", "unexpected ','")


def test_param_anywhere_in_the_body():
    module = compile_text(
        """\
        model m(x: f32[2]) {
          y = relu(x)
          param w: f32[2]
          y = y * w
          param b: f32[2]
          return y + b
        }
        """
    )
    assert arg_types(module) == ["f32[2]", "f32[2]", "f32[2]"]


# --------------------------------------------------------------------------- types and literals


def test_scalar_types():
    module = compile_text(
        """\
        model m(s: f32[], x: f32[3]) -> (f32[], f32[3]) {
          param t: f32[]
          return s * t, x * s
        }
        """
    )
    assert arg_types(module) == ["f32[]", "f32[3]", "f32[]"]
    assert result_types(module) == ["f32[]", "f32[3]"]


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "f8e4m3", "f8e5m2", "i8", "i32", "i64"])
def test_every_dtype(dtype):
    module = compile_text(f"model m(x: {dtype}[2, 3]) {{\n  return transpose(x)\n}}\n")
    assert result_types(module) == [f"{dtype}[3, 2]"]


@pytest.mark.parametrize(
    "literal, value",
    [
        ("1e-5", 1e-5),
        ("0.125", 0.125),
        ("2.", 2.0),
        (".5", 0.5),
        ("1E3", 1000.0),
        ("2.5e+2", 250.0),
        ("3e0", 3.0),
        ("7", 7.0),
        ("-2", -2.0),
        ("inf", math.inf),
        ("-inf", -math.inf),
        ("--inf", math.inf),
        ("(1 + 2) * 0.5", 1.5),
        ("1 / 4", 0.25),
    ],
)
def test_number_literals(literal, value):
    module = compile_text(f"model m(x: f32[2]) {{\n  return x + {literal}\n}}\n")
    assert constants(module) == [value]
    assert graph_ops(module) == ["graph.constant", "graph.add"]


def test_literal_takes_the_other_operand_dtype():
    module = compile_text("model m(x: bf16[2], i: i32[2]) {\n  return 2.5 * x, i - 1\n}\n")
    consts = [op for op in model_func(module).body.block.ops if isinstance(op, g.ConstantOp)]
    assert [type_str(c.result.type) for c in consts] == ["bf16[]", "i32[]"]
    assert result_types(module) == ["bf16[2]", "i32[2]"]


def test_float_attributes():
    module = compile_text(
        "model m(x: f32[2, 4]) {\n  return layernorm(x, eps=1e-3), rmsnorm(x, eps=0.5), layernorm(x)\n}\n"
    )
    eps = [op.epsilon.value.data for op in model_func(module).body.block.ops if hasattr(op, "epsilon")]
    assert eps == [1e-3, 0.5, 1e-5]


def test_inf_can_be_shadowed():
    module = compile_text("model m(x: f32[2], inf: f32[2]) {\n  return x + inf\n}\n")
    assert graph_ops(module) == ["graph.add"]


@pytest.mark.parametrize("dtype", ['"f16"', "f16"])
def test_string_attribute_value(dtype):
    module = compile_text(f"model m(x: f32[2]) {{\n  return cast(x, dtype={dtype})\n}}\n")
    assert result_types(module) == ["f16[2]"]


@pytest.mark.parametrize("flag, expected", [("true", True), ("false", False)])
def test_booleans(flag, expected):
    module = compile_text(
        f"model m(q: f32[4, 8]) {{\n  return attention(q, q, q, causal={flag}), sum(q, axis=1, keepdims={flag})\n}}\n"
    )
    assert ("graph.causal_mask" in graph_ops(module)) is expected
    assert result_types(module)[1] == ("f32[4, 1]" if expected else "f32[4]")


@pytest.mark.parametrize(
    "attr, result",
    [
        ("axis=[0, 2]", "f32[3]"),
        ("axis=[-1, 0,]", "f32[3]"),
        ("axis=[1]", "f32[2, 4]"),
        ("axis=1", "f32[2, 4]"),
        ("axis=[]", "f32[2, 3, 4]"),
    ],
)
def test_lists(attr, result):
    module = compile_text(f"model m(x: f32[2, 3, 4]) {{\n  return sum(x, {attr})\n}}\n")
    assert result_types(module) == [result]


def test_list_items_are_int_expressions():
    module = compile_text("let A = 2\nmodel m(x: f32[2, 3, 4]) {\n  return transpose(x, perm=[A, A - 2, 3 / 3])\n}\n")
    assert result_types(module) == ["f32[4, 2, 3]"]


# --------------------------------------------------------------------------- expressions


@pytest.mark.parametrize(
    "expr, ops",
    [
        ("a * b @ c", ["graph.mul", "graph.matmul"]),
        ("a @ c * b", ["graph.matmul", "graph.mul"]),
        ("a + b * a", ["graph.mul", "graph.add"]),
        ("(a + b) * a", ["graph.add", "graph.mul"]),
        ("a - b - a", ["graph.sub", "graph.sub"]),
        ("-a @ c", ["graph.neg", "graph.matmul"]),
        ("-(a @ c)", ["graph.matmul", "graph.neg"]),
        ("a / b / a", ["graph.div", "graph.div"]),
        ("relu(a) + -b", ["graph.relu", "graph.neg", "graph.add"]),
    ],
)
def test_precedence(expr, ops):
    module = compile_text(f"model m(a: f32[2, 2], b: f32[2, 2], c: f32[2, 2]) {{\n  return {expr}\n}}\n")
    assert graph_ops(module) == ops


def test_left_associativity():
    module = compile_text("model m(a: f32[2], b: f32[2], c: f32[2]) {\n  return a - b - c\n}\n")
    first, second = list(model_func(module).body.block.ops)[:2]
    fn = model_func(module)
    a, b, c = fn.args
    assert list(first.operands) == [a, b]
    assert list(second.operands) == [first.results[0], c]


def test_scalar_arithmetic_is_folded():
    module = compile_text("model m(x: f32[2]) {\n  return x * (2 * 3 - 1 / 2)\n}\n")
    assert constants(module) == [5.5]
    assert graph_ops(module) == ["graph.constant", "graph.mul"]


def test_call_with_expression_operands():
    module = compile_text("model m(x: f32[2], y: f32[2]) {\n  return maximum(x + y, -(x * 2))\n}\n")
    assert graph_ops(module) == ["graph.add", "graph.constant", "graph.mul", "graph.neg", "graph.maximum"]


def test_positional_after_keyword_is_an_error():
    fails("model m(x: f32[2]) {\n  return softmax(axis=0, x)\n}\n", "positional operand after a key=value")
