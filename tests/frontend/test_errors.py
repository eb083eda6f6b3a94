"""
Golden text of every category of model-file error.

Each case compiles a small model and checks the full message: the header
`t.model:LINE:COL: error: MESSAGE`, the source line, and the caret under the
offending token. Errors that only the command line can produce (unreadable
bytes, `-D` overrides) are checked through `compiler.cli.main`, which must
exit with status 1 and never print a traceback.
"""

import textwrap
import time

import pytest

from strata.compiler.cli import main
from strata.compiler.diagnostics import ModelError, StrataError
from strata.compiler.frontend import compile_source


def error_text(source: str, overrides: dict[str, int] | None = None) -> str:
    with pytest.raises(ModelError) as info:
        compile_source(textwrap.dedent(source), "t.model", overrides)
    return str(info.value)


CASES = [
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          hidden = relu(x)
          return hiden + x
        }
        """,
        """\
        t.model:3:10: error: unknown name 'hiden'; did you mean 'hidden'?
          return hiden + x
                 ^~~~~
        """,
        id="unknown-name-suggest",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return x + zzz
        }
        """,
        """\
        t.model:2:14: error: unknown name 'zzz'
          return x + zzz
                     ^~~
        """,
        id="unknown-name",
    ),
    pytest.param(
        """\
        model m(x: f32[N, 3]) {
          return x
        }
        """,
        """\
        t.model:1:16: error: unknown name 'N'
        model m(x: f32[N, 3]) {
                       ^
        """,
        id="unknown-name-in-model-shape",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return relu + x
        }
        """,
        """\
        t.model:2:10: error: 'relu' is an operation; call it as relu(...)
          return relu + x
                 ^~~~
        """,
        id="operation-as-name",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return relux(x)
        }
        """,
        """\
        t.model:2:10: error: unknown operation 'relux'; did you mean 'relu'?
          return relux(x)
                 ^~~~~
        """,
        id="unknown-operation-suggest",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return frobnicate(x)
        }
        """,
        """\
        t.model:2:10: error: unknown operation 'frobnicate'
          return frobnicate(x)
                 ^~~~~~~~~~
        """,
        id="unknown-operation",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return softmax(x, axes=1)
        }
        """,
        """\
        t.model:2:21: error: unknown attribute 'axes' for softmax (its attributes: axis); did you mean 'axis'?
          return softmax(x, axes=1)
                            ^~~~
        """,
        id="unknown-attribute",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return relu(x, alpha=1)
        }
        """,
        """\
        t.model:2:18: error: unknown attribute 'alpha': relu takes no attributes
          return relu(x, alpha=1)
                         ^~~~~
        """,
        id="attribute-on-op-without",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return softmax(x, axis=1, axis=0)
        }
        """,
        """\
        t.model:2:29: error: attribute 'axis' is given twice
          return softmax(x, axis=1, axis=0)
                                    ^~~~
        """,
        id="attribute-twice",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return slice(x, axis=1, start=0)
        }
        """,
        """\
        t.model:2:10: error: slice needs the attribute end=...
          return slice(x, axis=1, start=0)
                 ^~~~~
        """,
        id="missing-attribute",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return relu(x, x)
        }
        """,
        """\
        t.model:2:10: error: relu takes 1 operand, got 2
          return relu(x, x)
                 ^~~~
        """,
        id="operand-count-one",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return layernorm()
        }
        """,
        """\
        t.model:2:10: error: layernorm takes 1 to 3 operands, got 0
          return layernorm()
                 ^~~~~~~~~
        """,
        id="operand-count-range",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return max(x, x)
        }
        """,
        """\
        t.model:2:10: error: max takes 1 operand, got 2 (did you mean maximum(a, b)?)
          return max(x, x)
                 ^~~
        """,
        id="operand-count-hint",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3], y: f32[4, 3]) {
          return x + y
        }
        """,
        """\
        t.model:2:12: error: operands of '+' have shapes that do not broadcast: f32[2, 3] and f32[4, 3]
          return x + y
                   ^
        """,
        id="broadcast-mismatch",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3], y: f32[4, 3]) {
          return x @ y
        }
        """,
        """\
        t.model:2:12: error: '@' contraction dimensions differ: f32[2, 3] @ f32[4, 3] (3 vs 4)
          return x @ y
                   ^
        """,
        id="matmul-contraction",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3], y: f32[3]) {
          return x @ y
        }
        """,
        """\
        t.model:2:12: error: '@' needs operands of rank >= 2, got f32[2, 3] @ f32[3]
          return x @ y
                   ^
        """,
        id="matmul-rank",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 2, 3], y: f32[3, 3, 4]) {
          return x @ y
        }
        """,
        """\
        t.model:2:12: error: '@' batch dimensions do not broadcast: f32[2, 2, 3] @ f32[3, 3, 4]
          return x @ y
                   ^
        """,
        id="matmul-batch",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3], y: f16[2, 3]) {
          return x * y
        }
        """,
        """\
        t.model:2:12: error: operands of '*' have different dtypes: f32[2, 3] and f16[2, 3] (use cast)
          return x * y
                   ^
        """,
        id="dtype-mismatch",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3], y: bf16[3, 3]) {
          return x @ y
        }
        """,
        """\
        t.model:2:12: error: operands of '@' have different dtypes: f32[2, 3] and bf16[3, 3]
          return x @ y
                   ^
        """,
        id="dtype-mismatch-matmul",
    ),
    pytest.param(
        """\
        let D = 10
        let H = 3
        model m(x: f32[2, D/H]) {
          return x
        }
        """,
        """\
        t.model:3:20: error: D/H is 10/3, which is not an integer (integer division must be exact)
        model m(x: f32[2, D/H]) {
                           ^
        """,
        id="nondivisible-let",
    ),
    pytest.param(
        """\
        let D = 12
        let H = 5
        model m(x: f32[2, 12]) {
          return reshape(x, [2, D/H, 4])
        }
        """,
        """\
        t.model:4:26: error: D/H is 12/5, which is not an integer (integer division must be exact)
          return reshape(x, [2, D/H, 4])
                                 ^
        """,
        id="nondivisible-reshape",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 10]) {
          a, b, c = split(x, parts=3)
          return a
        }
        """,
        """\
        t.model:2:13: error: split: dimension 10 (axis 1 of [2, 10]) is not divisible by parts=3
          a, b, c = split(x, parts=3)
                    ^~~~~
        """,
        id="split-parts",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = relu(x)
        }
        """,
        """\
        t.model:3:1: error: 'm' has no return statement: its body must end with 'return ...'
        }
        ^
        """,
        id="missing-return",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return x
          y = relu(x)
        }
        """,
        """\
        t.model:2:3: error: return must be the last statement of 'm', but 1 statement follows it
          return x
          ^~~~~~
        """,
        id="return-not-last",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          repeat 2 {
            return x
          }
          return x
        }
        """,
        """\
        t.model:3:5: error: return is not allowed inside repeat (return once, after the repeat)
            return x
            ^~~~~~
        """,
        id="return-in-repeat",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          repeat 0 {
            return x
          }
          return x
        }
        """,
        """\
        t.model:3:5: error: return is not allowed inside repeat (return once, after the repeat)
            return x
            ^~~~~~
        """,
        id="return-in-repeat-zero",
    ),
    pytest.param(
        """\
        def f(x: f32[2]) {
          return f(x)
        }
        model m(x: f32[2]) {
          return f(x)
        }
        """,
        """\
        t.model:2:10: error: 'f' calls itself: recursion between blocks is not allowed
          return f(x)
                 ^
        """,
        id="recursion-direct",
    ),
    pytest.param(
        """\
        def f(x: f32[2]) {
          return g(x)
        }
        def g(x: f32[2]) {
          return relu(f(x))
        }
        model m(x: f32[2]) {
          return f(x)
        }
        """,
        """\
        t.model:5:15: error: recursion between blocks is not allowed: f -> g -> f
          return relu(f(x))
                      ^
        """,
        id="recursion-mutual",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) -> (f32[2, 4]) {
          return x
        }
        """,
        """\
        t.model:2:10: error: returned value has type f32[2, 3], but 'm' declares f32[2, 4]
          return x
                 ^
        """,
        id="result-type-mismatch",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) -> (f16[2, 3]) {
          return x
        }
        """,
        """\
        t.model:2:10: error: returned value has type f32[2, 3], but 'm' declares f16[2, 3]
          return x
                 ^
        """,
        id="result-dtype-mismatch",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) -> (f32[2, 3], f32[2, 3]) {
          return x
        }
        """,
        """\
        t.model:2:3: error: 'm' declares 2 results but returns 1
          return x
          ^~~~~~
        """,
        id="result-count-mismatch",
    ),
    pytest.param(
        """\
        def f(x: f32[N, D]) -> f32[N, D] {
          return transpose(x)
        }
        model m(x: f32[2, 3]) {
          return f(x)
        }
        """,
        """\
        t.model:2:10: error: returned value has type f32[3, 2], but 'f' declares f32[2, 3] (in 'f' called at line 5)
          return transpose(x)
                 ^~~~~~~~~
        """,
        id="def-result-mismatch",
    ),
    pytest.param(
        """\
        def f(x: f32[N, 4]) {
          return x
        }
        model m(x: f32[2, 10]) {
          return f(x)
        }
        """,
        """\
        t.model:5:12: error: argument 'x' of 'f' must be f32[N, 4], got f32[2, 10]: dimension 1 is 10, not 4
          return f(x)
                   ^
        """,
        id="call-arg-literal-dim",
    ),
    pytest.param(
        """\
        def f(x: f32[N, N]) {
          return x
        }
        model m(x: f32[3, 4]) {
          return f(x)
        }
        """,
        """\
        t.model:5:12: error: argument 'x' of 'f' must be f32[N, N], got f32[3, 4]: dimension 1 is 4, but N = 3 from dimension 0
          return f(x)
                   ^
        """,
        id="call-arg-name-dim",
    ),
    pytest.param(
        """\
        def f(x: f32[N, 2*N]) {
          return x
        }
        model m(x: f32[3, 4]) {
          return f(x)
        }
        """,
        """\
        t.model:5:12: error: argument 'x' of 'f' must be f32[N, 2*N], got f32[3, 4]: dimension 1 is 4, but 2*N = 6
          return f(x)
                   ^
        """,
        id="call-arg-expr-dim",
    ),
    pytest.param(
        """\
        def f(x: f32[N, D]) {
          return x
        }
        model m(x: f32[3]) {
          return f(x)
        }
        """,
        """\
        t.model:5:12: error: argument 'x' of 'f' must be f32[N, D], got f32[3] (rank 1, expected 2)
          return f(x)
                   ^
        """,
        id="call-arg-rank",
    ),
    pytest.param(
        """\
        def f(x: f32[N]) {
          return x
        }
        model m(x: i32[3]) {
          return f(x)
        }
        """,
        """\
        t.model:5:12: error: argument 'x' of 'f' must be f32[N], got i32[3] (dtype differs)
          return f(x)
                   ^
        """,
        id="call-arg-dtype",
    ),
    pytest.param(
        """\
        let D = 8
        def f(x: f32[N, D]) {
          return x
        }
        model m(x: f32[3, 4]) {
          return f(x)
        }
        """,
        """\
        t.model:6:12: error: argument 'x' of 'f' must be f32[N, D], got f32[3, 4]: dimension 1 is 4, but D = 8
          return f(x)
                   ^
        """,
        id="call-arg-let-dim",
    ),
    pytest.param(
        """\
        def f(x: f32[N], y: f32[N]) {
          return x + y
        }
        model m(x: f32[3]) {
          return f(x)
        }
        """,
        """\
        t.model:5:10: error: 'f' takes 2 tensor arguments (x, y), got 1 positional argument
          return f(x)
                 ^
        """,
        id="call-arg-count",
    ),
    pytest.param(
        """\
        def f(x: f32[N], n: int) {
          return x
        }
        model m(x: f32[3]) {
          return f(x)
        }
        """,
        """\
        t.model:5:10: error: 'f' needs its integer parameter n=...
          return f(x)
                 ^
        """,
        id="call-int-param-missing",
    ),
    pytest.param(
        """\
        def f(x: f32[N], n: int) {
          return x
        }
        model m(x: f32[3]) {
          return f(x, k=2)
        }
        """,
        """\
        t.model:5:15: error: 'f' has no integer parameter 'k' (its integer parameters: n)
          return f(x, k=2)
                      ^
        """,
        id="call-int-param-unknown",
    ),
    pytest.param(
        """\
        def f(x: f32[N], n: int) {
          return x
        }
        model m(x: f32[3]) {
          return f(x, 1, n=2)
        }
        """,
        """\
        t.model:5:18: error: integer parameter 'n' is given twice
          return f(x, 1, n=2)
                         ^
        """,
        id="call-int-param-twice",
    ),
    pytest.param(
        """\
        def g(x: f32[N, D]) {
          param w: f32[D, D]
          return x + w
        }
        def f(x: f32[N, D]) {
          return g(x)
        }
        model m(x: f32[3, 4]) {
          return f(x)
        }
        """,
        """\
        t.model:3:12: error: operands of '+' have shapes that do not broadcast: f32[3, 4] and f32[4, 4] (in 'g' called at line 6, in 'f' called at line 9)
          return x + w
                   ^
        """,
        id="error-inside-block",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          repeat 2 {
            param w: f32[3]
            x = x + w
          }
          return x
        }
        """,
        """\
        t.model:3:11: error: param 'w' is declared twice in the model (a param inside repeat is declared again on every iteration; declare it in a def block and call that block in the repeat)
            param w: f32[3]
                  ^
        """,
        id="duplicate-param-repeat",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          param w: f32[3]
          param w: f32[3]
          return x + w
        }
        """,
        """\
        t.model:3:9: error: param 'w' is declared twice in the model
          param w: f32[3]
                ^
        """,
        id="duplicate-param",
    ),
    pytest.param(
        """\
        model m(x: f33[2, 3]) {
          return x
        }
        """,
        """\
        t.model:1:12: error: unknown dtype 'f33' (dtypes: f32, f16, bf16, f8e4m3, f8e5m2, i4, i8, u8, i32, i64); did you mean 'f32'?
        model m(x: f33[2, 3]) {
                   ^~~
        """,
        id="unknown-dtype",
    ),
    pytest.param(
        """\
        model m(x: float[2, 3]) {
          return x
        }
        """,
        """\
        t.model:1:12: error: unknown dtype 'float' (dtypes: f32, f16, bf16, f8e4m3, f8e5m2, i4, i8, u8, i32, i64); did you mean 'f32'?
        model m(x: float[2, 3]) {
                   ^~~~~
        """,
        id="unknown-dtype-far",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 0]) {
          return x
        }
        """,
        """\
        t.model:1:19: error: dimension must be positive, got 0
        model m(x: f32[2, 0]) {
                          ^
        """,
        id="nonpositive-dim-zero",
    ),
    pytest.param(
        """\
        let D = 4
        model m(x: f32[2, D-5]) {
          return x
        }
        """,
        """\
        t.model:2:20: error: dimension must be positive, got -1 (D - 5 = -1)
        model m(x: f32[2, D-5]) {
                           ^
        """,
        id="nonpositive-dim-expr",
    ),
    pytest.param(
        """\
        let B = 4
        model m(x: f32[B, 3]) {
          return x
        }
        """,
        """\
        t.model:2:16: error: dimension must be positive, got 0 (B = 0)
        model m(x: f32[B, 3]) {
                       ^
        """,
        {'B': 0},
        id="nonpositive-dim-override",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = x + * x
          return y
        }
        """,
        """\
        t.model:2:11: error: unexpected '*'; expected an expression
          y = x + * x
                  ^
        """,
        id="syntax-unexpected-token",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = relu(x) x
          return y
        }
        """,
        """\
        t.model:2:15: error: unexpected 'x'; expected an operator, '}' or end of line
          y = relu(x) x
                      ^
        """,
        id="syntax-unexpected-token-expected",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = relu(x
          return y
        }
        """,
        """\
        t.model:2:11: error: '(' is never closed ('return' on line 3 comes first)
          y = relu(x
                  ^
        """,
        id="syntax-unclosed-paren",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = reshape(x, [6, 1
          return y
        }
        """,
        """\
        t.model:2:18: error: '[' is never closed ('return' on line 3 comes first)
          y = reshape(x, [6, 1
                         ^
        """,
        id="syntax-unclosed-bracket",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = relu(x]
          return y
        }
        """,
        """\
        t.model:2:13: error: closing ']' does not match the opening '(' at line 2, column 11
          y = relu(x]
                    ^
        """,
        id="syntax-mismatched-bracket",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = relu(x)
        """,
        """\
        t.model:1:23: error: '{' is never closed (the file ends first)
        model m(x: f32[2, 3]) {
                              ^
        """,
        id="syntax-truncated",
    ),
    pytest.param(
        'model m(x: f32[2, 3]) {\n  y = relu(x',
        """\
        t.model:2:11: error: '(' is never closed (the file ends first)
          y = relu(x
                  ^
        """,
        id="syntax-truncated-call",
    ),
    pytest.param(
        'let A =',
        """\
        t.model:1:8: error: unexpected end of file; expected an expression
        let A =
               ^
        """,
        id="syntax-truncated-let",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = x $ x
          return y
        }
        """,
        """\
        t.model:2:9: error: unexpected character '$'
          y = x $ x
                ^
        """,
        id="syntax-character",
    ),
    pytest.param(
        """\
        model m(return: f32[2]) {
          return return
        }
        """,
        """\
        t.model:1:9: error: 'return' is a keyword and cannot be used as a name
        model m(return: f32[2]) {
                ^~~~~~
        """,
        id="syntax-keyword-as-name",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          y = x
            + x
          return y
        }
        """,
        """\
        t.model:3:5: error: unexpected '+' at the start of a line: a statement ends at the end of its line (wrap a long expression in parentheses to continue it)
            + x
            ^
        """,
        id="syntax-line-continuation",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return x
        } junk
        """,
        """\
        t.model:3:3: error: unexpected 'junk'; expected end of line
        } junk
          ^~~~
        """,
        id="syntax-garbage-after-brace",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return softmax(axis=1, x)
        }
        """,
        """\
        t.model:2:26: error: positional operand after a key=value attribute (operands come first)
          return softmax(axis=1, x)
                                 ^
        """,
        id="syntax-positional-after-keyword",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return x
        }
        model n(x: f32[2, 3]) {
          return x
        }
        """,
        """\
        t.model:4:7: error: a file holds exactly one model; 'm' is already defined
        model n(x: f32[2, 3]) {
              ^
        """,
        id="two-models",
    ),
    pytest.param(
        """\
        let A = 3
        """,
        """\
        t.model:1:1: error: the file has no 'model' block
        let A = 3
        ^
        """,
        id="no-model",
    ),
    pytest.param(
        '',
        """\
        t.model:1:1: error: the file has no 'model' block
        """,
        id="no-model-empty",
    ),
    pytest.param(
        """\
        let A = B
        let B = A
        model m(x: f32[2, 3]) {
          return x
        }
        """,
        """\
        t.model:1:5: error: constant 'A' depends on itself (A -> B -> A)
        let A = B
            ^
        """,
        id="cyclic-let",
    ),
    pytest.param(
        """\
        let A = A + 1
        model m(x: f32[2, 3]) {
          return x
        }
        """,
        """\
        t.model:1:5: error: constant 'A' depends on itself (A -> A)
        let A = A + 1
            ^
        """,
        id="cyclic-let-self",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 9]) {
          a, b = split(x, parts=3)
          return a
        }
        """,
        """\
        t.model:2:10: error: this gives 3 values, but 2 names are assigned
          a, b = split(x, parts=3)
                 ^~~~~
        """,
        id="unpack-count",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 9]) {
          y = split(x, parts=3)
          return y
        }
        """,
        """\
        t.model:2:7: error: this gives 3 values, but 1 name is assigned (unpack them: 'v0, v1, v2 = ...')
          y = split(x, parts=3)
              ^~~~~
        """,
        id="multi-value-single-name",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return 1.0
        }
        """,
        """\
        t.model:2:10: error: a returned value must be a tensor, not a literal
          return 1.0
                 ^~~
        """,
        id="return-literal",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          param g: f32[2]
          return layernorm(x, g)
        }
        """,
        """\
        t.model:3:10: error: layernorm parameter has type f32[2], but input f32[2, 3] normalised from axis 1 needs f32[3]
          return layernorm(x, g)
                 ^~~~~~~~~
        """,
        id="layernorm-param",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return softmax(x, axis=2)
        }
        """,
        """\
        t.model:2:10: error: softmax: axis 2 is out of range for rank 2
          return softmax(x, axis=2)
                 ^~~~~~~
        """,
        id="axis-out-of-range",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return reshape(x, [4, 2])
        }
        """,
        """\
        t.model:2:10: error: reshape: cannot reshape [2, 3] (6 elements) into [4, 2] (8 elements)
          return reshape(x, [4, 2])
                 ^~~~~~~
        """,
        id="reshape-count",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return reshape(x, [-1, -1])
        }
        """,
        """\
        t.model:2:10: error: reshape target [-1, -1] has more than one -1
          return reshape(x, [-1, -1])
                 ^~~~~~~
        """,
        id="reshape-two-minus-one",
    ),
    pytest.param(
        """\
        model m(x: f32[2], n: int) {
          return x
        }
        """,
        """\
        t.model:1:20: error: model arguments must be tensors (integer parameters belong to def blocks)
        model m(x: f32[2], n: int) {
                           ^
        """,
        id="model-int-arg",
    ),
    pytest.param(
        """\
        def relu(x: f32[2]) {
          return x
        }
        model m(x: f32[2]) {
          return x
        }
        """,
        """\
        t.model:1:5: error: block 'relu' has the name of an operation; rename it
        def relu(x: f32[2]) {
            ^~~~
        """,
        id="def-named-like-op",
    ),
    pytest.param(
        """\
        let B = 2
        model m(x: f32[2, 3]) {
          B = x
          return B
        }
        """,
        """\
        t.model:3:3: error: 'B' is a let constant and cannot be assigned
          B = x
          ^
        """,
        id="assign-let",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          relu = x
          return x
        }
        """,
        """\
        t.model:2:3: error: 'relu' is an operation and cannot be assigned
          relu = x
          ^~~~
        """,
        id="assign-op",
    ),
    pytest.param(
        """\
        def f(x: f32[2]) {
          return x
        }
        def f(x: f32[2]) {
          return x
        }
        model m(x: f32[2]) {
          return f(x)
        }
        """,
        """\
        t.model:4:5: error: block 'f' is defined twice
        def f(x: f32[2]) {
            ^
        """,
        id="duplicate-def",
    ),
    pytest.param(
        """\
        let A = 1
        let A = 2
        model m(x: f32[2, 3]) {
          return x
        }
        """,
        """\
        t.model:2:5: error: constant 'A' is defined twice
        let A = 2
            ^
        """,
        id="duplicate-let",
    ),
    pytest.param(
        """\
        model m(x: f32[2], x: f32[2]) {
          return x
        }
        """,
        """\
        t.model:1:20: error: argument 'x' is declared twice
        model m(x: f32[2], x: f32[2]) {
                           ^
        """,
        id="duplicate-arg",
    ),
    pytest.param(
        """\
        model m(x: f32[1, 3, 8, 8], w: f32[4, 2, 3, 3]) {
          return conv2d(x, w)
        }
        """,
        """\
        t.model:2:10: error: conv2d weight [4, 2, 3, 3] needs 3 input channels (C/groups) for input [1, 3, 8, 8]
          return conv2d(x, w)
                 ^~~~~~
        """,
        id="conv-channels",
    ),
    pytest.param(
        """\
        model m(x: f32[1, 3, 8, 8], w: f32[4, 3, 3, 3], b: f32[3]) {
          return conv2d(x, w, b)
        }
        """,
        """\
        t.model:2:10: error: conv2d bias has type f32[3], needs f32[4]
          return conv2d(x, w, b)
                 ^~~~~~
        """,
        id="conv-bias",
    ),
    pytest.param(
        """\
        model m(x: f32[1, 3, 2, 2], w: f32[4, 3, 3, 3]) {
          return conv2d(x, w)
        }
        """,
        """\
        t.model:2:10: error: conv2d kernel 3x3 does not fit the padded input [1, 3, 2, 2]
          return conv2d(x, w)
                 ^~~~~~
        """,
        id="conv-window",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return gather(x, x)
        }
        """,
        """\
        t.model:2:10: error: gather ids must be integers, got f32[2, 3]
          return gather(x, x)
                 ^~~~~~
        """,
        id="gather-float-ids",
    ),
    pytest.param(
        """\
        model m(x: i32[2]) {
          return sigmoid(x)
        }
        """,
        """\
        t.model:2:10: error: sigmoid needs a float operand, got i32[2]
          return sigmoid(x)
                 ^~~~~~~
        """,
        id="unary-int",
    ),
    pytest.param(
        """\
        model m(x: i32[2]) {
          return sqrt(-x)
        }
        """,
        """\
        t.model:2:10: error: sqrt needs a float operand, got i32[2]
          return sqrt(-x)
                 ^~~~
        """,
        id="negate-int",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          repeat -1 {
            x = relu(x)
          }
          return x
        }
        """,
        """\
        t.model:2:10: error: repeat count must not be negative, got -1
          repeat -1 {
                 ^
        """,
        id="repeat-negative",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          repeat x {
            x = relu(x)
          }
          return x
        }
        """,
        """\
        t.model:2:10: error: 'x' is a tensor, but an integer is needed here
          repeat x {
                 ^
        """,
        id="repeat-tensor-count",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          repeat 1000000000 {
            x = relu(x)
          }
          return x
        }
        """,
        """\
        t.model:2:10: error: repeat count 1,000,000,000 is too large: the model may unroll to at most 1,000,000 statements and 100,000 operations
          repeat 1000000000 {
                 ^~~~~~~~~~
        """,
        id="repeat-huge",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          repeat 600000 {
            x = relu(x)
            x = relu(x)
          }
          return x
        }
        """,
        """\
        t.model:2:10: error: repeat 600,000 would unroll the model to 1,200,000 operations (2 per iteration), more than the limit of 100,000
          repeat 600000 {
                 ^~~~~~
        """,
        id="repeat-too-many-ops",
    ),
    pytest.param(
        """\
        let A = 4 / 0
        model m(x: f32[2, 3]) {
          return x
        }
        """,
        """\
        t.model:1:11: error: division by zero
        let A = 4 / 0
                  ^
        """,
        id="div-zero-let",
    ),
    pytest.param(
        """\
        model m(x: f32[2.5]) {
          return x
        }
        """,
        """\
        t.model:1:16: error: expected an integer, got 2.5
        model m(x: f32[2.5]) {
                       ^~~
        """,
        id="float-dim",
    ),
    pytest.param(
        """\
        model m(x: f32[100000000000, 100000000000]) {
          return x
        }
        """,
        """\
        t.model:1:12: error: type f32[100000000000, 100000000000] has 10,000,000,000,000,000,000,000 elements, more than the limit of 2**48 (281,474,976,710,656)
        model m(x: f32[100000000000, 100000000000]) {
                   ^~~
        """,
        id="huge-type",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3], y: f32[2, 4]) {
          return concat([x, y], axis=0)
        }
        """,
        """\
        t.model:2:10: error: concat operands [2, 3] and [2, 4] differ outside axis 0
          return concat([x, y], axis=0)
                 ^~~~~~
        """,
        id="concat-mismatch",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return concat(x, axis=0)
        }
        """,
        """\
        t.model:2:17: error: concat takes a list of tensors: concat([a, b, ...])
          return concat(x, axis=0)
                        ^
        """,
        id="concat-not-list",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return transpose(x, perm=[0, 0])
        }
        """,
        """\
        t.model:2:10: error: transpose: perm [0, 0] is not a permutation of the 2 axes of [2, 3]
          return transpose(x, perm=[0, 0])
                 ^~~~~~~~~
        """,
        id="transpose-perm",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return slice(x, axis=1, start=2, end=5)
        }
        """,
        """\
        t.model:2:10: error: slice needs 0 <= start < end <= 3 on axis 1 of [2, 3], got start=2, end=5
          return slice(x, axis=1, start=2, end=5)
                 ^~~~~
        """,
        id="slice-range",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return sum(x, keepdims=1)
        }
        """,
        """\
        t.model:2:26: error: keepdims must be true or false, got 1
          return sum(x, keepdims=1)
                                 ^
        """,
        id="keepdims-not-bool",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return cast(x, dtype=f64)
        }
        """,
        """\
        t.model:2:24: error: dtype must be one of f32, f16, bf16, f8e4m3, f8e5m2, i4, i8, u8, i32, i64, got f64; did you mean 'f32'?
          return cast(x, dtype=f64)
                               ^~~
        """,
        id="cast-bad-dtype",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return cast(x, dtype=bf15)
        }
        """,
        """\
        t.model:2:24: error: dtype must be one of f32, f16, bf16, f8e4m3, f8e5m2, i4, i8, u8, i32, i64, got bf15; did you mean 'bf16'?
          return cast(x, dtype=bf15)
                               ^~~~
        """,
        id="cast-bad-dtype-suggest",
    ),
    pytest.param(
        """\
        model m(x: i32[2]) {
          return x * 1.5
        }
        """,
        """\
        t.model:2:14: error: literal 1.5 is not a valid i32 value (an integer is needed)
          return x * 1.5
                     ^~~
        """,
        id="int-literal-float",
    ),
    pytest.param(
        """\
        model m(x: i8[2]) {
          return x + 300
        }
        """,
        """\
        t.model:2:14: error: literal 300 is out of range for i8
          return x + 300
                     ^~~
        """,
        id="int-literal-range",
    ),
    pytest.param(
        """\
        model m(x: f32[1, 1, 4, 4]) {
          return maxpool2d(x, kernel=1, stride=100000000000000000000)
        }
        """,
        """\
        t.model:2:40: error: stride=100000000000000000000 does not fit in a 64-bit integer
          return maxpool2d(x, kernel=1, stride=100000000000000000000)
                                               ^~~~~~~~~~~~~~~~~~~~~
        """,
        id="stride-too-big",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return x + "s"
        }
        """,
        """\
        t.model:2:14: error: a string is only allowed as an attribute value
          return x + "s"
                     ^~~
        """,
        id="string-operand",
    ),
    pytest.param(
        """\
        model m(x: f32[2, 3]) {
          return x + [1, 2]
        }
        """,
        """\
        t.model:2:14: error: a list is only allowed as an attribute value or an operand of concat/reshape
          return x + [1, 2]
                     ^
        """,
        id="list-operand",
    ),
    pytest.param(
        """\
        model m(q: f32[4, 8], k: f32[4, 16]) {
          return attention(q, k, k)
        }
        """,
        """\
        t.model:2:10: error: attention q f32[4, 8] and k f32[4, 16] differ in head dim
          return attention(q, k, k)
                 ^~~~~~~~~
        """,
        id="attention-head-dim",
    ),
    pytest.param(
        """\
        def f(x: f32[N], n: int) {
          return x
        }
        model m(x: f32[3]) {
          return f(x, x)
        }
        """,
        """\
        t.model:5:15: error: 'x' is a tensor, but an integer is needed here
          return f(x, x)
                      ^
        """,
        id="int-param-is-tensor",
    ),
    pytest.param(
        """\
        def f(n: int, x: f32[N]) {
          return x
        }
        model m(x: f32[3]) {
          return f(2, x)
        }
        """,
        """\
        t.model:1:15: error: tensor arguments must come before integer parameters
        def f(n: int, x: f32[N]) {
                      ^
        """,
        id="tensor-after-int-param",
    ),
    pytest.param(
        """\
        def f(x: f32[N], n: float) {
          return x
        }
        model m(x: f32[3]) {
          return x
        }
        """,
        """\
        t.model:1:21: error: expected a tensor type like 'f32[N, D]' or 'int', got 'float'
        def f(x: f32[N], n: float) {
                            ^~~~~
        """,
        id="arg-type-not-int",
    ),
    pytest.param(
        """\
        def f(x: f32[N], y: f32[N]) {
          return x + y
        }
        model m(x: f32[3], y: f32[4]) {
          return f(x, y)
        }
        """,
        """\
        t.model:5:15: error: argument 'y' of 'f' must be f32[N], got f32[4]: dimension 0 is 4, but N = 3 from dimension 0 of 'x'
          return f(x, y)
                      ^
        """,
        id="call-arg-cross",
    ),
    pytest.param(
        """\
        def f(x: f32[2*D]) {
          return x
        }
        model m(x: f32[4]) {
          return f(x)
        }
        """,
        """\
        t.model:1:16: error: cannot infer 'D' from dimension 2*D of argument 'x': a shape name is bound only where it stands alone as a dimension (in 'f' called at line 5)
        def f(x: f32[2*D]) {
                       ^
        """,
        id="call-arg-cannot-infer",
    ),
    pytest.param(
        """\
        def f(x: f32[N]) {
          return x
        }
        model m(x: f32[4]) {
          return f(1.0)
        }
        """,
        """\
        t.model:5:12: error: argument 'x' of 'f' must be f32[N], got a literal
          return f(1.0)
                   ^~~
        """,
        id="call-arg-literal",
    ),
    pytest.param(
        """\
        def f(x: f32[N]) {
          return x
        }
        model m(x: f32[4]) {
          return f + x
        }
        """,
        """\
        t.model:5:10: error: 'f' is a block; call it as f(...)
          return f + x
                 ^
        """,
        id="block-as-name",
    ),
    pytest.param(
        """\
        def f(x: f32[N]) {
          return x + y
        }
        model m(x: f32[4]) {
          y = relu(x)
          return f(x)
        }
        """,
        """\
        t.model:2:14: error: unknown name 'y' (in 'f' called at line 6)
          return x + y
                     ^
        """,
        id="unknown-name-in-def",
    ),
    pytest.param(
        """\
        def f(x: f32[N, D]) {
          repeat 2 {
            x = slice(x, axis=1, start=1, end=3)
          }
          return x
        }
        model m(x: f32[2, 3]) {
          return f(x)
        }
        """,
        """\
        t.model:3:9: error: slice needs 0 <= start < end <= 2 on axis 1 of [2, 2], got start=1, end=3 (in 'f' called at line 8)
            x = slice(x, axis=1, start=1, end=3)
                ^~~~~
        """,
        id="error-in-repeat-in-block",
    ),
    pytest.param(
        """\
        model m(x: f32[2]) {
          return (((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((x)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))
        }
        """,
        """\
        t.model:2:109: error: brackets nested more than 100 deep
          return (((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((x)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))
                                                                                                                    ^
        """,
        id="brackets-too-deep",
    ),
    pytest.param(
        """\
        model m(x: f32[2]) {
          let = relu(x)
          return x
        }
        """,
        """\
        t.model:2:3: error: 'let' is a keyword and cannot be used as a name
          let = relu(x)
          ^~~
        """,
        id="keyword-as-assign-target",
    ),
]


@pytest.mark.parametrize("source, expected, overrides", [
    pytest.param(*case.values[:2], case.values[2] if len(case.values) > 2 else None, id=case.id)
    for case in CASES
])
def test_error_message(source, expected, overrides):
    assert error_text(source, overrides) == textwrap.dedent(expected).rstrip("\n")


@pytest.mark.parametrize("source, expected, overrides", [
    pytest.param(*case.values[:2], case.values[2] if len(case.values) > 2 else None, id=case.id)
    for case in CASES
])
def test_error_through_cli(source, expected, overrides, tmp_path, monkeypatch, capsys):
    """`strata check` prints the same message on stderr, exits 1, no traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.model").write_text(textwrap.dedent(source))
    defines = [arg for name, value in (overrides or {}).items() for arg in ("-D", f"{name}={value}")]
    assert main(["check", "t.model", *defines]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == textwrap.dedent(expected).rstrip("\n") + "\n"
    assert "Traceback" not in err


def check_bytes(data: bytes, tmp_path, monkeypatch, capsys) -> str:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.model").write_bytes(data)
    assert main(["check", "t.model"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    return err


def test_non_utf8_bytes(tmp_path, monkeypatch, capsys):
    data = b"model m(x: f32[2]) {\n  return x \xff\xfe\n}\n"
    assert check_bytes(data, tmp_path, monkeypatch, capsys) == (
        "t.model:2:12: error: the file is not UTF-8 text (byte 0xff); is it a model file?\n"
        "  return x \ufffd\ufffd\n"
        "           ^\n"
    )


def test_non_utf8_column_counts_characters(tmp_path, monkeypatch, capsys):
    """The column of a bad byte counts characters, not bytes, before it."""
    data = 'model m(x: f32[2]) {\n  y = "é" \x80\n}\n'.encode().replace(b"\xc2\x80", b"\x80")
    assert check_bytes(data, tmp_path, monkeypatch, capsys) == (
        "t.model:2:11: error: the file is not UTF-8 text (byte 0x80); is it a model file?\n"
        '  y = "é" \ufffd\n'
        "          ^\n"
    )


def test_nul_byte(tmp_path, monkeypatch, capsys):
    data = b"model m(x: f32[2]) {\n  return\x00 x\n}\n"
    assert check_bytes(data, tmp_path, monkeypatch, capsys) == (
        "t.model:2:9: error: the file contains a NUL byte; is it a model file?\n"
        "  return\ufffd x\n"
        "        ^\n"
    )


def test_binary_file(tmp_path, monkeypatch, capsys):
    """Line and caret stay aligned although the bytes hold \\v, \\f, \\x1c... (not line breaks)."""
    err = check_bytes(bytes(range(256)) * 4, tmp_path, monkeypatch, capsys)
    head, line, caret = err.rstrip("\n").split("\n")
    assert head == "t.model:2:118: error: the file is not UTF-8 text (byte 0x80); is it a model file?"
    assert len(line) >= 118 and line[117] == "\ufffd"
    assert caret == " " * 117 + "^"


def test_form_feed_does_not_shift_the_quoted_line():
    text = "model m(x: f32[2]) {\f\n  y = x\f+ x\n  return z\n}\n"
    assert error_text(text) == (
        "t.model:3:10: error: unknown name 'z'\n"
        "  return z\n"
        "         ^"
    )


def test_vertical_tab_is_an_unexpected_character():
    text = "model m(x: f32[2]) {\n  y = x\v+ x\n  return y\n}\n"
    assert error_text(text) == (
        "t.model:2:8: error: unexpected character '\\x0b' (not text)\n"
        "  y = x + x\n"
        "       ^"
    )


def test_unreadable_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["check", "missing.model"]) == 1
    out, err = capsys.readouterr()
    assert err == "error: cannot read missing.model: No such file or directory\n"


MLP = """\
let B = 4
model m(x: f32[B, 8]) {
  param w: f32[8, 2]
  return x @ w
}
"""


def test_define_of_unknown_constant(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.model").write_text(MLP)
    assert main(["check", "t.model", "-D", "Q=3"]) == 1
    out, err = capsys.readouterr()
    assert err == "error: -D Q: 'Q' is not a let constant of t.model (its constants: B)\n"
    assert "Traceback" not in err


def test_define_of_unknown_constant_is_a_strata_error():
    with pytest.raises(StrataError) as info:
        compile_source(MLP, "t.model", {"Q": 3})
    assert not isinstance(info.value, ModelError)
    assert str(info.value) == "error: -D Q: 'Q' is not a let constant of t.model (its constants: B)"


def test_define_with_no_constants():
    with pytest.raises(StrataError) as info:
        compile_source("model m(x: f32[2]) {\n  return x\n}\n", "t.model", {"B": 3})
    assert str(info.value) == "error: -D B: 'B' is not a let constant of t.model (its constants: none)"


def test_define_overrides_the_let(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.model").write_text(MLP)
    assert main(["check", "t.model", "-D", "B=2"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("t.model: ok: model 'm', 1 ops, 1 params (16 parameters)")


@pytest.mark.parametrize("define", ["B", "B=x", "1B=2", "B=1.5"])
def test_malformed_define(define, tmp_path, monkeypatch, capsys):
    """argparse rejects a malformed -D with status 2 and a usage message."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.model").write_text(MLP)
    with pytest.raises(SystemExit) as info:
        main(["check", "t.model", "-D", define])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_error_in_lets_reported_even_if_unused():
    text = "let A = 10 / 4\nmodel m(x: f32[2]) {\n  return x\n}\n"
    assert error_text(text) == (
        "t.model:1:12: error: 10/4 is not an integer (integer division must be exact)\n"
        "let A = 10 / 4\n"
        "           ^"
    )


def test_error_location_with_tabs_and_crlf():
    text = "model m(x: f32[2]) {\r\n\treturn\tx + y\r\n}\r\n"
    assert error_text(text) == (
        "t.model:2:13: error: unknown name 'y'\n"
        " return x + y\n"
        "            ^"
    )


# --------------------------------------------------------------------------- hostile sizes (issue 18)


def quick_error(text: str, seconds: float = 3.0, overrides=None) -> ModelError:
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        compile_source(text, "t.model", overrides)
    assert time.perf_counter() - start < seconds
    return info.value


def test_a_megabyte_one_line_model_is_refused_before_parsing():
    """4.8 MB, 1.2M ops on one line: refused after 105 s, echoing the whole line (9 MB of stderr)."""
    error = quick_error("model m(x: f32[4]) -> f32[4] {\n  return x" + " + x" * 1_200_000 + "\n}\n")
    assert error.message == "model too large: the file holds more than 500,000 tokens"
    head, line, caret = str(error).split("\n")
    assert head.startswith("t.model:2:") and len(line) < 200 and line.startswith("...") and line.endswith("...")
    assert line[caret.index("^")] == "x"


def test_a_long_line_is_cut_around_the_caret():
    error = quick_error("model m(x: f32[4]) -> f32[4] {\n  return x" + " + x" * 3000 + " + y" + " + x" * 3000 + "\n}\n")
    head, line, caret = str(error).split("\n")
    assert head == "t.model:2:12014: error: unknown name 'y'"
    assert len(line) < 200 and line[caret.index("^")] == "y" and caret.endswith("^")


def test_control_characters_are_not_echoed():
    error = quick_error("model m(x: f32[4]) -> f32[4] {\n  return z # \x1b[31m\x07\n}\n")
    assert str(error).split("\n")[1] == "  return z # \ufffd[31m\ufffd"


@pytest.mark.parametrize("body, fragment", [
    # Under the statement limit, over the op limit: predicted from the first iteration.
    pytest.param("  repeat 999990 {\n    y = relu(y)\n  }\n",
                 "repeat 999,990 would unroll the model to 999,991 operations", id="ops"),
    # Block calls are not free: each call's return and signature count.
    pytest.param("  repeat 999990 {\n    y = f(y)\n  }\n",
                 "repeat 999,990 would unroll the model to 1,999,982 statements (2 per iteration)", id="calls"),
    # A statement that makes no op still evaluates its expression every time.
    pytest.param("  repeat 100000 {\n    z = " + " + ".join(["1.5"] * 100) + "\n  }\n",
                 "repeat 100,000 would evaluate 20,000,005 expression nodes (200 per iteration)", id="nodes"),
])
def test_repeats_are_refused_before_they_unroll(body, fragment):
    text = "def f(x: f32[4]) -> f32[4] {\n  return x\n}\nmodel m(x: f32[4]) -> f32[4] {\n  y = relu(x)\n"
    error = quick_error(text + body + "  return y\n}\n")
    assert fragment in error.message and (error.loc.line, error.loc.col) == (6, 10)


def test_integers_beyond_64_bits_in_lets_and_folds():
    error = quick_error("let A = 99999999999999999999\nmodel m(x: f32[4]) -> f32[4] {\n  return x\n}\n")
    assert str(error).split("\n")[0] == (
        "t.model:1:9: error: A = 99999999999999999999 is beyond the 64-bit integers of the language")
    # A product of literals in tensor arithmetic grew without bound (an internal error at 4,300 digits).
    product = "*".join(["99999999999"] * 1000)
    error = quick_error(f"model m(x: f32[4]) -> f32[4] {{\n  return x * ({product})\n}}\n")
    assert error.message == "number too large" and error.loc.line == 2


def test_a_define_beyond_64_bits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.model").write_text("let B = 2\nmodel m(x: f32[B]) -> f32[B] {\n  return x\n}\n")
    assert main(["check", "t.model", "-D", "B=99999999999999999999999"]) == 1
    assert capsys.readouterr().err == "error: -D B=99999999999999999999999 is beyond the 64-bit integers of the language\n"
