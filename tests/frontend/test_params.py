"""
Param path naming (`w`, `blk.0.w`, `outer.0.inner.2.w`) and the function
signature: inputs first, then params in declaration order, each marked with
its `graph.input` / `graph.param` argument attribute.
"""

import textwrap

import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import StringAttr

from strata.compiler.diagnostics import ModelError
from strata.compiler.frontend import compile_source
from strata.compiler.ir import parse_module, print_module
from strata.dialects.graph import INPUT_ATTR, PARAM_ATTR
from strata.dialects.graph.dtypes import type_str


def compile_text(text: str, overrides=None):
    return compile_source(textwrap.dedent(text), "t.model", overrides)


def model_func(module) -> func.FuncOp:
    (fn,) = [op for op in module.ops if isinstance(op, func.FuncOp)]
    return fn


def signature(module) -> list[tuple[str, str, str]]:
    """(kind, name, type) of every function argument, in order."""
    fn = model_func(module)
    rows = []
    for attrs, t in zip(fn.arg_attrs.data, fn.function_type.inputs):
        (key, value), = attrs.data.items()
        assert isinstance(value, StringAttr)
        rows.append(({INPUT_ATTR: "input", PARAM_ATTR: "param"}[key], value.data, type_str(t)))
    return rows


def param_paths(module) -> list[str]:
    return [name for kind, name, _ in signature(module) if kind == "param"]


def test_model_params_use_their_own_name():
    module = compile_text(
        """\
        model m(x: f32[2, 4]) {
          param w: f32[4, 3]
          param b: f32[3]
          return x @ w + b
        }
        """
    )
    assert signature(module) == [("input", "x", "f32[2, 4]"), ("param", "w", "f32[4, 3]"), ("param", "b", "f32[3]")]


def test_block_params_are_numbered_per_call_in_program_order():
    module = compile_text(
        """\
        def blk(x: f32[N, D]) {
          param w: f32[D, D]
          return x @ w
        }
        model m(x: f32[2, 4]) {
          y = blk(x)
          z = blk(y) + blk(x)
          return z
        }
        """
    )
    assert param_paths(module) == ["blk.0.w", "blk.1.w", "blk.2.w"]


def test_repeat_numbers_instances():
    module = compile_text(
        """\
        let L = 3
        def blk(x: f32[N, D]) {
          param w: f32[D, D]
          param b: f32[D]
          return x @ w + b
        }
        model m(x: f32[2, 4]) {
          param w: f32[4, 4]
          repeat L {
            x = blk(x)
          }
          return x @ w
        }
        """
    )
    assert param_paths(module) == ["w", "blk.0.w", "blk.0.b", "blk.1.w", "blk.1.b", "blk.2.w", "blk.2.b"]


def test_nested_blocks_give_nested_paths():
    module = compile_text(
        """\
        def inner(x: f32[N]) {
          param w: f32[N]
          return x * w
        }
        def outer(x: f32[N]) {
          param g: f32[N]
          repeat 3 {
            x = inner(x)
          }
          return x + g
        }
        model m(x: f32[4]) {
          return outer(x)
        }
        """
    )
    assert param_paths(module) == ["outer.0.g", "outer.0.inner.0.w", "outer.0.inner.1.w", "outer.0.inner.2.w"]


def test_counters_are_per_caller_instance():
    module = compile_text(
        """\
        def inner(x: f32[N]) {
          param w: f32[N]
          return x * w
        }
        def outer(x: f32[N]) {
          return inner(inner(x))
        }
        model m(x: f32[4]) {
          return outer(outer(x))
        }
        """
    )
    assert param_paths(module) == [
        "outer.0.inner.0.w",
        "outer.0.inner.1.w",
        "outer.1.inner.0.w",
        "outer.1.inner.1.w",
    ]


def test_counters_are_per_block_name():
    module = compile_text(
        """\
        def a(x: f32[N]) {
          param w: f32[N]
          return x * w
        }
        def b(x: f32[N]) {
          param w: f32[N]
          return x + w
        }
        model m(x: f32[4]) {
          return b(a(b(a(x))))
        }
        """
    )
    assert param_paths(module) == ["a.0.w", "b.0.w", "a.1.w", "b.1.w"]


def test_three_levels():
    module = compile_text(
        """\
        def leaf(x: f32[N]) {
          param w: f32[N]
          return x * w
        }
        def mid(x: f32[N]) {
          return leaf(leaf(x))
        }
        def top(x: f32[N]) {
          param s: f32[N]
          return mid(x) + mid(x) + s
        }
        model m(x: f32[2]) {
          repeat 2 {
            x = top(x)
          }
          return x
        }
        """
    )
    paths = param_paths(module)
    assert len(paths) == 2 * (1 + 2 * 2)
    assert paths[:5] == ["top.0.s", "top.0.mid.0.leaf.0.w", "top.0.mid.0.leaf.1.w", "top.0.mid.1.leaf.0.w", "top.0.mid.1.leaf.1.w"]
    assert paths[5:] == [p.replace("top.0.", "top.1.") for p in paths[:5]]
    assert len(set(paths)) == len(paths)


def test_blocks_without_params_still_count():
    module = compile_text(
        """\
        def act(x: f32[N]) {
          return relu(x)
        }
        def lin(x: f32[N]) {
          param w: f32[N]
          return act(x) * w
        }
        model m(x: f32[4]) {
          return lin(act(lin(x)))
        }
        """
    )
    assert param_paths(module) == ["lin.0.w", "lin.1.w"]


def test_param_types_use_call_site_bindings():
    module = compile_text(
        """\
        def lin(x: f32[N, K], n: int) {
          param w: f32[K, n]
          return x @ w
        }
        model m(x: f32[2, 4]) {
          return lin(lin(x, 8), n=3)
        }
        """
    )
    assert signature(module)[1:] == [("param", "lin.0.w", "f32[4, 8]"), ("param", "lin.1.w", "f32[8, 3]")]


def test_inputs_first_then_params_in_declaration_order():
    module = compile_text(
        """\
        def blk(x: f32[N]) {
          param p: f32[N]
          return x * p
        }
        model m(a: f32[4], b: i32[3], c: f16[]) {
          param z: f32[4]
          y = blk(a)
          param y_w: f32[4]
          param a_w: f32[2, 2]
          return y * z * y_w, b, c, a_w
        }
        """
    )
    assert signature(module) == [
        ("input", "a", "f32[4]"),
        ("input", "b", "i32[3]"),
        ("input", "c", "f16[]"),
        ("param", "z", "f32[4]"),
        ("param", "blk.0.p", "f32[4]"),
        ("param", "y_w", "f32[4]"),
        ("param", "a_w", "f32[2, 2]"),
    ]
    # Unused params are still arguments.
    module = compile_text("model m(x: f32[2]) {\n  param unused: f32[7]\n  return x\n}\n")
    assert signature(module)[1] == ("param", "unused", "f32[7]")


def test_arg_names_and_locations():
    module = compile_text(
        """\
        def blk(x: f32[N]) {
          param w: f32[N]
          return x * w
        }
        model m(x: f32[4]) {
          return blk(x)
        }
        """
    )
    fn = model_func(module)
    assert [a.name_hint for a in fn.args] == ["x", "blk.0.w"]
    text = print_module(module)
    assert '%x: tensor<4xf32> {graph.input = "x"} loc("t.model":5:9)' in text
    assert '%blk.0.w: tensor<4xf32> {graph.param = "blk.0.w"} loc("t.model":2:9)' in text


def test_signature_survives_a_print_parse_round_trip():
    module = compile_text(
        """\
        def blk(x: f32[N]) {
          param w: f32[N]
          return x * w
        }
        model m(x: f32[4]) {
          repeat 2 {
            x = blk(x)
          }
          return x
        }
        """
    )
    text = print_module(module)
    again = parse_module(text, "dump.mlir")
    assert signature(again) == signature(module)
    assert print_module(again) == text


def test_param_named_like_an_input_shadows_it():
    module = compile_text("model m(x: f32[2]) {\n  param x: f32[2]\n  return x\n}\n")
    fn = model_func(module)
    ret = list(fn.body.block.ops)[-1]
    assert ret.operands[0] is fn.args[1]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ("  param w: f32[2]\n  param w: f32[2]\n  return x", "param 'w' is declared twice in the model"),
        ("  repeat 2 {\n    param w: f32[2]\n  }\n  return x", "declared again on every iteration"),
        ("  param relu: f32[2]\n  return x", "param 'relu' has the name of a constant or operation"),
        ("  param B: f32[2]\n  return x", "param 'B' has the name of a constant or operation"),
    ],
)
def test_param_errors(body, fragment):
    with pytest.raises(ModelError) as info:
        compile_text(f"let B = 2\nmodel m(x: f32[2]) {{\n{body}\n}}\n")
    assert fragment in info.value.message


def test_duplicate_param_in_block_names_the_block():
    text = "def f(x: f32[2]) {\n  param w: f32[2]\n  param w: f32[2]\n  return x\n}\nmodel m(x: f32[2]) {\n  return f(x)\n}\n"
    with pytest.raises(ModelError) as info:
        compile_text(text)
    assert info.value.message == "param 'w' is declared twice in 'f' (in 'f' called at line 7)"


def test_repeat_zero_declares_no_params():
    module = compile_text(
        "let L = 0\ndef f(x: f32[2]) {\n  param w: f32[2]\n  return x * w\n}\n"
        "model m(x: f32[2]) {\n  repeat L {\n    x = f(x)\n  }\n  return x\n}\n"
    )
    assert param_paths(module) == []
