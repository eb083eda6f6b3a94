"""
Malformed or hostile input never crashes or hangs the frontend.

`compile_source` either returns a verified module or raises a `StrataError`
(a `ModelError` when the problem has a place in the file); any other
exception is a bug. The hypothesis tests mutate the samples' text; the
explicit cases are regressions for crashes and hangs found that way or by
hand.
"""

import random
import re
import time
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.compiler.cli import main
from strata.compiler.diagnostics import ModelError, StrataError
from strata.compiler.frontend import compile_source, elaborate

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MLP = (SAMPLES / "mlp.model").read_text()
# GPT-2 at toy size, so that each mutant compiles in milliseconds.
GPT2 = (
    (SAMPLES / "gpt2.model").read_text()
    .replace("let S = 1024", "let S = 8")
    .replace("let D = 768", "let D = 24")
    .replace("let H = 12", "let H = 2")
    .replace("let L = 12", "let L = 1")
)

HEADER = re.compile(r"^t\.model:(\d+):(\d+): error: \S")

TOKENS = [
    "(", ")", "[", "]", "{", "}", ",", ":", "=", "->", "+", "-", "*", "/", "@", "\n", " ", "#", '"',
    "x", "q", "h", "B", "D", "L", "model", "def", "let", "param", "return", "repeat", "int", "f32",
    "i32", "f32[]", "f16[2, 3]", "0", "1", "-1", "3", "1e-5", "inf", "-inf", "2.5", "1" + "0" * 30,
    "true", "false", "relu(", "split(", "attention(", "reshape(", "conv2d(", "gather(", "[-1]",
    "axis=", "parts=0", "perm=[9]", "stride=0", "repeat 1000000000 {", "repeat 100000 {",
    "\x00", "é", "\t", "\r", "\x0b", "\x0c", "\u2028", "\ufeff", "𝑥", "x, y = ", "return x, x",
    "def f(x: f32[N]) { return f(x) }", "let L = L", "let Q = 7 / 0",
]


@st.composite
def mutants(draw, base: str) -> str:
    """`base` with 1-4 random edits: character flips, deletions, token insertions, duplications, truncation."""
    text = base
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "delete", "insert", "insert", "duplicate", "truncate"]))
        pos = draw(st.integers(0, len(text)))
        if kind == "flip" and text:
            pos = min(pos, len(text) - 1)
            text = text[:pos] + draw(st.characters()) + text[pos + 1 :]
        elif kind == "byte" and text:
            pos = min(pos, len(text) - 1)
            text = text[:pos] + chr(draw(st.integers(0, 255))) + text[pos + 1 :]
        elif kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 30)) :]
        elif kind == "insert":
            text = text[:pos] + draw(st.sampled_from(TOKENS)) + text[pos:]
        elif kind == "duplicate":
            text = text[:pos] + text[pos : pos + draw(st.integers(1, 120))] + text[pos:]
        elif kind == "truncate":
            text = text[:pos]
    return text


def compiles_or_fails_cleanly(text: str, overrides=None) -> None:
    """The frontend's contract on any input."""
    try:
        compile_source(text, "t.model", overrides)
    except ModelError as err:
        message = str(err)
        match = HEADER.match(message)
        assert match, message
        assert "Traceback" not in message
        lines = message.split("\n")
        assert len(lines) in (1, 3), message
        line, col = int(match[1]), int(match[2])
        assert 1 <= line <= text.count("\n") + 1
        assert col >= 1
        if len(lines) == 3:
            assert re.fullmatch(r" *\^~*", lines[2]), message
            assert lines[2].index("^") == col - 1
    except StrataError as err:
        assert str(err).startswith("error: "), str(err)


def small_limits():
    """Keep every mutant cheap: a `repeat` grown by a mutation fails fast."""
    return mock.patch.multiple(elaborate, MAX_OPS=5000, MAX_STATEMENTS=5000)


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_bases_compile():
    compile_source(MLP, "t.model")
    compile_source(GPT2, "t.model")


@FUZZ
@given(text=mutants(MLP))
def test_mutated_mlp(text):
    with small_limits():
        compiles_or_fails_cleanly(text)


@FUZZ
@given(text=mutants(GPT2))
def test_mutated_gpt2(text):
    with small_limits():
        compiles_or_fails_cleanly(text)


@FUZZ
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup(tokens):
    with small_limits():
        compiles_or_fails_cleanly("model m(x: f32[2, 3]) {\n" + " ".join(tokens) + "\n}\n")
        compiles_or_fails_cleanly("".join(tokens))


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_as_text(data):
    compiles_or_fails_cleanly(data.decode("latin-1"))


# --------------------------------------------------------------------------- explicit cases


def fails_fast(text: str, fragment: str, seconds: float = 2.0, overrides=None) -> ModelError:
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        compile_source(text, "t.model", overrides)
    assert time.perf_counter() - start < seconds
    assert fragment in info.value.message, info.value.message
    compiles_or_fails_cleanly(text, overrides)
    return info.value


@pytest.mark.parametrize("closers", [True, False])
def test_deeply_nested_parentheses(closers):
    text = "model m(x: f32[2]) {\n  return " + "(" * 10000 + "x" + (")" * 10000 if closers else "") + "\n}\n"
    error = fails_fast(text, "brackets nested more than 100 deep")
    assert (error.loc.line, error.loc.col) == (2, 109)


def test_deeply_nested_brackets_and_braces():
    fails_fast("model m(x: f32[2]) {\n  return reshape(x, " + "[" * 5000 + "\n}\n", "nested more than 100 deep")
    fails_fast("model m(x: f32[2]) {\n" + "repeat 1 {\n" * 5000 + "  return x\n}\n", "nested more than 100 deep")


def test_nesting_just_under_the_limit_compiles():
    text = "model m(x: f32[2]) {\n  return " + "(" * 99 + "x" + ")" * 99 + "\n}\n"
    compile_source(text, "t.model")


def test_long_chain_of_scalars():
    """20000 terms: the parser and the evaluator walk chains without recursion."""
    terms = " + ".join(["1"] * 20000)
    let = " + ".join(["1"] * 2000)
    module = compile_source(f"let A = {let}\nmodel m(x: f32[A]) {{\n  return x * ({terms})\n}}\n", "t.model")
    fn = next(iter(module.ops))
    assert [op.name for op in fn.body.block.ops] == ["graph.constant", "graph.mul", "func.return"]
    assert fn.body.block.ops.first.value.value.data == 20000.0


def test_long_chain_of_tensors():
    module = compile_source("model m(x: f32[2]) {\n  return " + " + ".join(["x"] * 3000) + "\n}\n", "t.model")
    fn = next(iter(module.ops))
    assert len(list(fn.body.block.ops)) == 3000  # 2999 adds and the return


@pytest.mark.parametrize("operand", ["2", "x"])
def test_long_chain_of_negations(operand):
    count = 20000 if operand == "2" else 2000
    module = compile_source(f"model m(x: f32[2]) {{\n  return x * " + "-" * count + f"{operand}\n}}\n", "t.model")
    fn = next(iter(module.ops))
    names = [op.name for op in fn.body.block.ops]
    assert names.count("graph.neg") == (0 if operand == "2" else count)


def test_long_chain_in_a_block_signature():
    dim = " + ".join(["1"] * 5000)
    text = f"def f(x: f32[{dim}]) {{\n  return x\n}}\nmodel m(x: f32[4]) {{\n  return f(x)\n}}\n"
    error = fails_fast(text, "must be f32[1 + ... (4999 operators)], got f32[4]: dimension 0 is 4, but 1 + ... (4999 operators) = 5000")
    assert error.loc.line == 5


@pytest.mark.parametrize(
    "body",
    [
        "  repeat 1000000000 {\n    x = x + x\n  }\n  return x",
        "  repeat 1000000000 {\n    y = x\n  }\n  return x",
        "  repeat 100000 {\n    repeat 100000 {\n      y = x\n    }\n  }\n  return x",
        "  repeat 1000 {\n    repeat 1000 {\n      x = relu(x)\n    }\n  }\n  return x",
        "  repeat 600000 {\n    x = relu(relu(x))\n  }\n  return x",
        "  repeat 999999 {\n    x = f(x)\n  }\n  return x",
    ],
)
def test_huge_repeat_fails_fast(body):
    defs = "def f(x: f32[N]) {\n  repeat 10 {\n    x = relu(x)\n  }\n  return x\n}\n"
    error = fails_fast(defs + f"model m(x: f32[2]) {{\n{body}\n}}\n", "repeat")
    assert "more than the limit" in error.message or "too large" in error.message


def test_huge_repeat_from_an_override_fails_fast():
    text = "let L = 2\nmodel m(x: f32[2]) {\n  repeat L {\n    x = relu(x)\n  }\n  return x\n}\n"
    error = fails_fast(text, "repeat count 1,000,000,000 is too large", overrides={"L": 10**9})
    assert (error.loc.line, error.loc.col) == (3, 10)


def test_huge_repeat_with_empty_body_is_instant():
    start = time.perf_counter()
    compile_source("model m(x: f32[2]) {\n  repeat 1000000000000 {\n  }\n  return x\n}\n", "t.model")
    assert time.perf_counter() - start < 1


def test_deep_block_nesting():
    n = 200
    defs = "".join(f"def f{i}(x: f32[2]) {{\n  return f{i + 1}(x)\n}}\n" for i in range(n))
    text = defs + f"def f{n}(x: f32[2]) {{\n  return relu(x)\n}}\nmodel m(x: f32[2]) {{\n  return f0(x)\n}}\n"
    error = fails_fast(text, "block calls are nested more than 64 deep (f0 -> f1 -> f2 -> ... -> f63 -> f64)")
    assert "... 61 more calls" in error.message


def test_block_nesting_under_the_limit_compiles():
    n = 60
    defs = "".join(f"def f{i}(x: f32[2]) {{\n  return f{i + 1}(x)\n}}\n" for i in range(n))
    text = defs + f"def f{n}(x: f32[2]) {{\n  return relu(x)\n}}\nmodel m(x: f32[2]) {{\n  return f0(x)\n}}\n"
    compile_source(text, "t.model")


@pytest.mark.parametrize(
    "args",
    [
        "x: f32[100000000000, 100000000000]",
        "x: f32[" + "9" * 40 + "]",
        "x: f32[65536, 65536, 65537]",
    ],
)
def test_huge_dims(args):
    fails_fast(f"model m({args}) {{\n  return x\n}}\n", "more than the limit of 2**48")


@pytest.mark.parametrize(
    "expr",
    [
        "reshape(x, [-1, 1]) @ reshape(x, [1, -1])",
        "gather(reshape(x, [1000, -1]), cast(reshape(x, [1000000, 1000000]), dtype=i32))",
        "conv2d(x4, w4, padding=10000000)",
    ],
)
def test_huge_results(expr):
    args = "x: f32[1000000000000], x4: f32[1, 1, 1, 1], w4: f32[1, 1, 1, 1]"
    fails_fast(f"model m({args}) {{\n  return {expr}\n}}\n", "elements, more than the limit of 2**48")


@pytest.mark.parametrize(
    "expr",
    [
        "maxpool2d(x, kernel=1, stride=100000000000000000000)",
        "avgpool2d(x, kernel=[1, 1], stride=[1, 100000000000000000000])",
        "conv2d(x, w, stride=100000000000000000000)",
        "conv2d(x, w, dilation=100000000000000000000)",
        "conv2d(x, w, padding=[0, 0, 0, 100000000000000000000])",
        "softmax(x, axis=100000000000000000000)",
        "slice(x, axis=0, start=0, end=100000000000000000000)",
        "conv2d(x, w, groups=-100000000000000000000)",
    ],
)
def test_attribute_values_beyond_64_bits(expr):
    """Regression: these crashed with a ValueError building the i64 attribute."""
    args = "x: f32[1, 1, 4, 4], w: f32[1, 1, 1, 1]"
    with pytest.raises(ModelError):
        compile_source(f"model m({args}) {{\n  return {expr}\n}}\n", "t.model")


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("x * 1" + "0" * 400, "literal 100000...000 (401 digits) is too large for f32"),
        ("cast(x, dtype=i32) + 3000000000", "literal 3000000000 is out of range for i32"),
        ("cast(x, dtype=i8) * -129", "literal -129 is out of range for i8"),
        ("x * (1" + "0" * 400 + " * 1.0)", "number too large"),
    ],
)
def test_huge_literals(expr, fragment):
    fails_fast(f"model m(x: f32[2]) {{\n  return {expr}\n}}\n", fragment)


def test_int_literal_limits_are_accepted():
    compile_source("model m(x: i8[2]) {\n  return x + 127, x + -128, x - -128 + 1\n}\n", "t.model")


@pytest.mark.parametrize("text", ["", "\n\n\n", "   \t  ", "# only a comment", "# one\n# two\n\n# three\n", "\ufeff"])
def test_empty_files(text):
    with pytest.raises(ModelError) as info:
        compile_source(text, "t.model")
    assert info.value.message in ("the file has no 'model' block", "unexpected character '\\ufeff' (not text)")


@pytest.mark.parametrize("seed", range(8))
def test_binary_junk(seed, tmp_path, monkeypatch, capsys):
    data = random.Random(seed).randbytes(4096)
    compiles_or_fails_cleanly(data.decode("latin-1"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.model").write_bytes(data)
    assert main(["check", "t.model"]) == 1
    out, err = capsys.readouterr()
    assert HEADER.match(err) and "Traceback" not in err


@pytest.mark.parametrize(
    "text",
    [
        "model m(x: f32[2]) {\n  return x\n}\n" * 3,
        "model",
        "model m",
        "model m(",
        "model m(x",
        "model m(x:",
        "model m(x: f32",
        "model m(x: f32[",
        "model m(x: f32[2]",
        "model m(x: f32[2])",
        "model m(x: f32[2]) {",
        "model m(x: f32[2]) {\n  return",
        "model m(x: f32[2]) {\n  return x",
        "model m(x: f32[2]) {\n  return x\n",
        "}}}}",
        ")))",
        "]]]",
        "model m(x: f32[2]) {\n  return x\n}\n}",
        "def",
        "def f(x: f32[N]) -> ",
        "let",
        "let A",
        "let A = ",
        "let A = (",
        'model m(x: f32[2]) {\n  return cast(x, dtype="f16\n}\n',
        "model m(x: f32[2]) {\n  return x @@ x\n}\n",
        "model m(x: f32[2]) {\n  return x..x\n}\n",
        "model m(x: f32[2]) {\n  return 1e\n}\n",
        "model m(x: f32[2]) {\n  return 1.2.3\n}\n",
        "model m(x: f32[2]) {\n  return x\n} model n(y: f32[2]) {\n  return y\n}\n",
        "model 𝑚(x: f32[2]) {\n  return x\n}\n",
        "model m(x: f32[2]) {\n  return x # comment without newline at end}",
    ],
)
def test_truncated_and_garbled(text):
    compiles_or_fails_cleanly(text)
    with pytest.raises(ModelError):
        compile_source(text, "t.model")


def test_very_many_statements():
    body = "".join(f"  y{i} = x\n" for i in range(5000))
    module = compile_source(f"model m(x: f32[2]) {{\n{body}  return y4999\n}}\n", "t.model")
    assert len(list(next(iter(module.ops)).body.block.ops)) == 1


def test_very_long_line_error_is_located():
    text = "model m(x: f32[2]) {\n  return x" + " + x" * 500 + " + y\n}\n"
    error = fails_fast(text, "unknown name 'y'")
    assert (error.loc.line, error.loc.col) == (2, 2014)
