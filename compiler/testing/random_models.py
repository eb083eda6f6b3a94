"""
Hypothesis strategies for random, valid strata models.

    from hypothesis import given
    from strata.compiler.testing.random_models import models

    @given(models())
    def test_my_pass(model):
        module = model.module()          # verified graph IR, via the frontend
        inputs, params = model.values()  # seeded inputs and weights
        ...

`models()` draws a `Model`: the text of a `.model` file (`model.text`, which
`strata compile` accepts as is) and what a test needs to execute it. The
drawn models cover every operation of the language table (elementwise
binary and unary ops, `@` with batch broadcasting, reductions over negative
axes with `keepdims`, softmax, log_softmax, layernorm, rmsnorm, transpose,
reshape, concat, slice, `split` unpacked into several names, conv2d,
maxpool2d, avgpool2d, global_avgpool, gather, causal_mask, `attention` as
sugar and spelled out, cast), NumPy broadcasting, negative axes, `let`
constants, `def` blocks whose shape names are bound at each call site and
which take `NAME: int` parameters, blocks calling blocks, `repeat`, `param`
weights in the model and in blocks, and every dtype the reference executes
(`f32 f16 bf16 f8e4m3 f8e5m2 i8 i32 i64`). `graph_modules()` draws the same
models as graph IR.

Shapes are small (dims 1..8) so that every stage executes in milliseconds.
Drawing is sequential (`st.composite`): the number of ops, blocks and inputs
come from small integer ranges and each choice prefers the simplest option,
so hypothesis shrinks a failing model toward few ops, f32, rank-2 shapes and
the plainest spelling of each operation.

Numerics: values are kept tame so that executions that may differ in
rounding (a tiled GEMM sums in another order) stay comparable: divisions,
`log`, `sqrt`, `rsqrt` and `pow` read a guarded operand (`abs(b) + 1.0`),
a `causal_mask` always leaves at least one key per row, and a float is cast
to an integer only when it was computed exactly (every executor gives the
same bits), since truncation would turn a rounding difference into a jump
of one. `Model.tolerance` is the relative tolerance a comparison of two
executions should use, from the least precise float dtype in the model.

`growable_models()` draws models whose every dimension is a `let` constant
and whose operations stay valid for any value of them, for properties such
as "the cost does not decrease when a dimension grows" (`Model.grown`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from hypothesis import strategies as st

FLOATS = ("f32", "bf16", "f16", "f8e4m3", "f8e5m2")
INTS = ("i32", "i8", "i64")
DTYPES = FLOATS + INTS

TOLERANCE = {"f32": 1e-4, "f16": 1e-2, "bf16": 4e-2, "f8e4m3": 0.25, "f8e5m2": 0.5}
"""
Relative tolerance (of the largest magnitude of an output) between two
executions of a model whose least precise float dtype is the key. f32: the
summation order of a GEMM or a reduction; low precision: a result that lands
next to a rounding boundary may round one unit (2**-10 for f16, 2**-7 for
bf16, 2**-3 and 2**-2 for the f8 formats) differently, and flash attention
keeps its probabilities in f32 where the reference rounds them. Integer
outputs must be equal.
"""

OPERATIONS = (
    "unary", "binary", "matmul", "reduce", "softmax", "norm", "transpose", "reshape", "concat",
    "slice", "split", "conv2d", "pool", "gather", "causal_mask", "attention", "cast", "call", "repeat",
)
"""Kinds of statement `models()` draws (`ops=` selects a subset); `call` is a block call."""

WEIGHTS = {"binary": 3, "unary": 2, "matmul": 2}
"""How many times more often than the others these kinds are drawn."""

MAX_ELEMENTS = 4096
"""No drawn tensor holds more elements than this."""


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Model:
    """A drawn model: its `.model` text and what executing it needs."""

    text: str
    dtypes: frozenset[str] | None = None
    """Every dtype some value of the model has (default: those its text names)."""
    lets: tuple[tuple[str, int], ...] = ()
    """The `let` constants, in order (`grown` overrides one)."""
    overrides: tuple[tuple[str, int], ...] = ()
    """`-D` overrides the model is compiled with."""
    filename: str = "fuzz.model"

    def __post_init__(self):
        if self.dtypes is None:
            object.__setattr__(self, "dtypes", frozenset(d for d in DTYPES if re.search(rf"\b{d}\b", self.text)))

    def __repr__(self) -> str:
        extra = f", overrides={dict(self.overrides)}" if self.overrides else ""
        return f"Model(<<<\n{self.text}>>>{extra})"

    def module(self):
        """The model as verified graph IR (through the frontend)."""
        from strata.compiler.frontend import compile_source

        return compile_source(self.text, self.filename, dict(self.overrides))

    def values(self, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Seeded inputs and weights (as `strata run --seed` draws them), by name."""
        return module_values(self.module(), seed)

    @property
    def tolerance(self) -> float:
        """Relative tolerance of float outputs (see `TOLERANCE`); 0 when the model has no floats."""
        return max((TOLERANCE[d] for d in self.dtypes if d in TOLERANCE), default=0.0)

    def source(self) -> str:
        """The text with the `-D` overrides written into the `let`s: a file `strata compile` takes as is."""
        text = self.text
        for name, value in self.overrides:
            text = "\n".join(
                f"let {name} = {value}" if line.startswith(f"let {name} = ") else line for line in text.split("\n")
            )
        return text

    def grown(self, name: str, value: int) -> Model:
        """The same model with the `let` constant `name` set to `value`."""
        overrides = dict(self.overrides)
        overrides[name] = value
        return replace(self, overrides=tuple(overrides.items()))


def module_values(module, seed: int = 0):
    """Seeded inputs and weights of a graph module, by name (gather ids in range)."""
    from strata.compiler.execution import weights
    from strata.compiler.execution.reference import model_function

    fn = model_function(module)
    specs = weights.model_signature(fn)
    drawn = weights.random_values(specs, np.random.default_rng(seed), weights.integer_input_ranges(fn))
    return (
        {s.name: drawn[s.name] for s in specs if s.kind == "input"},
        {s.name: drawn[s.name] for s in specs if s.kind == "param"},
    )


# --------------------------------------------------------------------------- values and shapes


@dataclass
class Value:
    """A named value while a model is drawn."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    exact: bool = True
    """Every executor computes it bit for bit alike (inputs, data movement, correctly rounded ops)."""
    masked: bool = False
    """Holds the -inf of a `causal_mask`: only a softmax over the last axis may read it."""

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOATS


def broadcast(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...] | None:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return tuple(reversed(out))


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _fmt_float(x: float) -> str:
    text = repr(float(x))
    return text if any(c in text for c in ".e") else text + ".0"


# --------------------------------------------------------------------------- the drawing


@dataclass
class _Block:
    name: str
    text: str
    arg: Value
    """Type of the first argument, which is also the result's."""
    extra: Value | None
    """Type of a second tensor argument, if any."""
    int_param: tuple[str, int] | None


@dataclass
class _Scope:
    """One body being drawn: the model's, or a block's."""

    in_block: bool
    fdt: str
    dims: dict[int, str]
    """Dim value -> name to print it as (block shape names, block int params, `let`s)."""
    pool: list[Value] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    consumed: set[int] = field(default_factory=set)
    names: dict[str, int] = field(default_factory=dict)
    depth: int = 0


class _Drawer:
    """Draws one model; methods take hypothesis' `draw`."""

    def __init__(self, draw, ops: Sequence[str], max_ops: int, dtypes: Sequence[str], blocks: bool):
        self.draw = draw
        kinds = [o for o in OPERATIONS if o in ops and (blocks or o not in ("call", "repeat"))]
        # Elementwise ops and GEMMs are the bulk of real models: drawn more often.
        self.ops = [o for o in kinds for _ in range(WEIGHTS.get(o, 1))] or kinds
        self.max_ops = max_ops
        self.dtypes = [d for d in DTYPES if d in dtypes]
        self.floats = [d for d in self.dtypes if d in FLOATS] or ["f32"]
        self.ints = [d for d in self.dtypes if d in INTS]
        self.inputs: list[Value] = []
        self.blocks: list[_Block] = []
        self.all_dtypes: set[str] = set()
        self.lets: dict[str, int] = {}

    # ----------------------------------------------------------------- naming and printing

    def fresh_name(self, scope: _Scope, prefix: str) -> str:
        n = scope.names.get(prefix, 0)
        scope.names[prefix] = n + 1
        return f"{prefix}{n}"

    def dim(self, scope: _Scope, d: int) -> str:
        return scope.dims.get(d, str(d))

    def type_text(self, scope: _Scope, dtype: str, shape: Sequence[int]) -> str:
        return f"{dtype}[{', '.join(self.dim(scope, d) for d in shape)}]"

    def emit(self, scope: _Scope, line: str) -> None:
        scope.lines.append(line)

    def bind(self, scope: _Scope, dtype: str, shape, *, exact: bool, masked: bool = False,
             name: str | None = None) -> Value:
        value = Value(name or self.fresh_name(scope, "h" if scope.in_block else "v"), dtype, tuple(shape),
                      exact, masked)
        scope.pool = [v for v in scope.pool if v.name != value.name] + [value]
        self.all_dtypes.add(dtype)
        return value

    def use(self, scope: _Scope, *values: Value) -> None:
        for v in values:
            scope.consumed.add(id(v))

    def result(self, scope: _Scope, inputs: Sequence[Value], expr: str, dtype: str, shape, *, exact: bool,
               masked: bool = False) -> Value:
        """Consume `inputs`, bind a new value and emit `NAME = expr`."""
        self.use(scope, *inputs)
        value = self.bind(scope, dtype, shape, exact=exact, masked=masked)
        self.emit(scope, f"{value.name} = {expr}")
        return value

    # ----------------------------------------------------------------- choices

    def choose(self, options: Sequence):
        return self.draw(st.sampled_from(list(options)))

    def chance(self, p: float) -> bool:
        """True with probability about `p`; shrinks to False."""
        return self.draw(st.integers(0, 99)) < int(p * 100)

    def pick(self, scope: _Scope, pred) -> Value | None:
        """A value of the pool satisfying `pred`, the most recent first (shrinks to chains)."""
        candidates = [v for v in reversed(scope.pool) if not v.masked and pred(v)]
        return self.choose(candidates) if candidates else None

    def shape(self, rank_lo: int = 1, rank_hi: int = 3, lo: int = 1, hi: int = 8) -> tuple[int, ...]:
        rank = self.draw(st.integers(rank_lo, rank_hi))
        return tuple(self.draw(st.integers(lo, hi)) for _ in range(rank))

    def fresh(self, scope: _Scope, dtype: str, shape, kind: str | None = None) -> Value:
        """A new model input or param of this type (in a block, always a param)."""
        self.all_dtypes.add(dtype)
        if kind is None:
            kind = "param" if scope.in_block or self.chance(0.5) else "input"
        if kind == "input" and not scope.in_block:
            value = Value(f"x{len(self.inputs)}", dtype, tuple(shape))
            self.inputs.append(value)
            return value
        value = Value(self.fresh_name(scope, "w"), dtype, tuple(shape))
        self.emit(scope, f"param {value.name}: {self.type_text(scope, dtype, shape)}")
        return value

    def operand(self, scope: _Scope, pred, dtype: str, shape_fn, kind: str | None = None) -> Value:
        """A pool value satisfying `pred`, or a fresh input/param of `shape_fn()`."""
        if self.chance(0.6):
            found = self.pick(scope, pred)
            if found is not None:
                return found
        return self.fresh(scope, dtype, shape_fn(), kind)

    def start_value(self, scope: _Scope, pred, make) -> Value | None:
        """The value an op reads first: from the pool, else fresh (model scope only)."""
        found = self.pick(scope, pred)
        if found is not None and (scope.in_block or self.chance(0.85)):
            return found
        if scope.in_block:
            return None
        return make()

    def float_value(self, scope: _Scope, rank_lo: int = 1, rank_hi: int = 3) -> Value | None:
        return self.start_value(
            scope, lambda v: v.is_float and rank_lo <= v.rank <= rank_hi,
            lambda: self.fresh(scope, scope.fdt, self.shape(max(rank_lo, 1), max(rank_lo, min(rank_hi, 3))),
                               "input"),
        )

    def image_value(self, scope: _Scope, min_hw: int, floats_only: bool) -> Value | None:
        """An NCHW value at least `min_hw` high and wide (conv2d, pools)."""
        return self.start_value(
            scope,
            lambda v: v.rank == 4 and (v.is_float or not floats_only) and v.shape[2] >= min_hw and v.shape[3] >= min_hw,
            lambda: self.fresh(
                scope, scope.fdt,
                (self.draw(st.integers(1, 2)), self.draw(st.integers(1, 4)), self.draw(st.integers(min_hw, 8)),
                 self.draw(st.integers(min_hw, 8))),
                "input",
            ),
        )

    def any_value(self, scope: _Scope, rank_lo: int = 0, rank_hi: int = 4) -> Value | None:
        def make():
            dtype = scope.fdt if not self.ints or self.chance(0.8) else self.choose(self.ints)
            return self.fresh(scope, dtype, self.shape(max(rank_lo, 1), max(rank_lo, min(rank_hi, 3))), "input")

        return self.start_value(scope, lambda v: rank_lo <= v.rank <= rank_hi, make)

    def axis_text(self, axis: int, rank: int) -> str:
        """`axis` written positive or negative."""
        return str(axis - rank if self.chance(0.5) else axis)

    # ----------------------------------------------------------------- the model

    def model(self) -> Model:
        # f32 half of the time (and what shrinking goes to), the others evenly.
        fdt = self.choose([self.floats[0]] * max(1, len(self.floats) - 1) + self.floats[1:])
        scope = _Scope(False, fdt, {})
        for i in range(self.draw(st.integers(0, 2))):
            name, value = "ABCD"[i], self.draw(st.integers(1, 8))
            if value not in scope.dims:
                self.lets[name] = value
                scope.dims[value] = name
        self.body(scope, self.max_ops)
        leaves = [v for v in scope.pool if id(v) not in scope.consumed]
        if not leaves:
            leaves = [scope.pool[-1]] if scope.pool else []
        if not leaves:
            x = self.fresh(scope, fdt, (2, 3), "input")
            leaves = [x]
        if not self.inputs:
            # A model needs an input: feed one into the first result.
            x = self.fresh(scope, leaves[0].dtype, leaves[0].shape, "input")
            v = self.bind(scope, x.dtype, x.shape, exact=False)
            self.emit(scope, f"{v.name} = {leaves[0].name} + {x.name}")
            leaves[0] = v
        args = ", ".join(f"{x.name}: {self.type_text(scope, x.dtype, x.shape)}" for x in self.inputs)
        results = ""
        if self.chance(0.3):
            types = [self.type_text(scope, v.dtype, v.shape) for v in leaves]
            results = " -> " + (types[0] if len(types) == 1 else f"({', '.join(types)})")
        lines = ["# drawn by compiler.testing.random_models.models()"]
        lines += [f"let {n} = {v}" for n, v in self.lets.items()]
        for block in self.blocks:
            lines += ["", block.text.rstrip("\n")]
        lines += ["", f"model fuzz({args}){results} {{"]
        lines += [f"  {line}" for line in scope.lines]
        lines += [f"  return {', '.join(v.name for v in leaves)}", "}", ""]
        self.all_dtypes.update(x.dtype for x in self.inputs)
        return Model("\n".join(lines), frozenset(self.all_dtypes), tuple(self.lets.items()))

    def body(self, scope: _Scope, at_most: int) -> None:
        """Up to `at_most` statements; each one is preceded by a draw that says whether it comes
        (so shrinking deletes statements one by one, as in a list)."""
        for index in range(at_most):
            if index > 0 and self.draw(st.integers(0, 99)) < 12:
                break
            for _attempt in range(4):
                kind = self.choose(self.ops)
                if getattr(self, f"op_{kind}")(scope):
                    break

    # ----------------------------------------------------------------- elementwise

    def op_unary(self, scope: _Scope) -> bool:
        x = self.float_value(scope, 0, 4)
        if x is None:
            return False
        fn = self.choose(["relu", "tanh", "neg", "sigmoid", "gelu", "silu", "exp", "abs", "erf",
                          "log", "sqrt", "rsqrt"])
        if fn == "neg":
            expr = f"-{x.name}"
        elif fn in ("log", "sqrt", "rsqrt"):
            expr = f"{fn}(abs({x.name}) + 1.0)"
        else:
            expr = f"{fn}({x.name})"
        self.result(scope, [x], expr, x.dtype, x.shape, exact=x.exact and fn in ("relu", "neg", "abs"))
        return True

    def broadcast_partner(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape that broadcasts with `shape`: trailing dims kept, set to 1, or grown from 1."""
        keep = self.draw(st.integers(0, len(shape)))
        out = []
        for d in shape[len(shape) - keep:]:
            if d == 1:
                out.append(self.draw(st.integers(1, 4)) if self.chance(0.3) else 1)
            else:
                out.append(1 if self.chance(0.3) else d)
        return tuple(out)

    def op_binary(self, scope: _Scope) -> bool:
        a = self.any_value(scope)
        if a is None:
            return False
        symbol = self.choose(["+", "-", "*", "/", "maximum", "minimum", "pow"])
        literal = self.chance(0.25)
        if literal:
            number = self.choose([2, 3, -1] if a.dtype in INTS else [0.5, 2.0, 1.5, -1.0, 3.0])
            b = None
            b_text = str(number) if a.dtype in INTS else _fmt_float(number)
            shape = a.shape
        else:
            def fits(v: Value) -> bool:
                out = broadcast(a.shape, v.shape)
                return v.dtype == a.dtype and out is not None and math.prod(out) <= MAX_ELEMENTS

            if scope.in_block:
                b = self.pick(scope, fits) or self.fresh(scope, a.dtype, self.broadcast_partner(a.shape))
            else:
                b = self.operand(scope, fits, a.dtype, lambda: self.broadcast_partner(a.shape))
            shape = broadcast(a.shape, b.shape)
            b_text = b.name
        float_ = a.dtype in FLOATS
        lhs = a.name
        if float_ and symbol == "/" and b is not None:
            b_text = f"(abs({b_text}) + 1.0)"
        if float_ and symbol == "pow":
            lhs = f"abs({a.name}) + 1.0"
            b_text = f"tanh({b_text})" if b is not None else b_text
        swap = b is not None and self.chance(0.2)
        if symbol in ("maximum", "minimum", "pow"):
            args = (b_text, lhs) if swap and symbol != "pow" else (lhs, b_text)
            expr = f"{symbol}({args[0]}, {args[1]})"
        else:
            if symbol in ("/", "pow") or not swap:
                left, right = lhs, b_text
            else:
                left, right = b_text, lhs
            expr = f"{left} {symbol} {right}"
        exact = a.dtype in INTS or (
            a.exact and (b is None or b.exact) and symbol in ("+", "-", "*", "/", "maximum", "minimum")
        )
        if literal and symbol == "-" and self.chance(0.3):
            expr = f"{b_text} - {a.name}"
        self.result(scope, [a, *([b] if b is not None else [])], expr, a.dtype, shape, exact=exact)
        return True

    def op_cast(self, scope: _Scope) -> bool:
        x = self.any_value(scope)
        if x is None:
            return False
        targets = [d for d in self.dtypes if d != x.dtype and (x.exact or d in FLOATS or x.dtype in INTS)]
        if not targets:
            return False
        dtype = self.choose(targets)
        self.result(scope, [x], f"cast({x.name}, dtype={dtype})", dtype, x.shape, exact=x.exact)
        return True

    # ----------------------------------------------------------------- contractions

    def op_matmul(self, scope: _Scope) -> bool:
        a = self.start_value(
            scope, lambda v: v.rank >= 2,
            lambda: self.fresh(scope, scope.fdt, self.shape(2, 3), "input"),
        )
        if a is None:
            return False
        k, batch = a.shape[-1], a.shape[:-2]
        n = self.draw(st.integers(1, 8))
        how = self.choose(["param", "pool", "batched"])
        b = None
        if how == "pool":
            b = self.pick(
                scope,
                lambda v: v.dtype == a.dtype and v.rank >= 2 and v.shape[-2] == k
                and broadcast(batch, v.shape[:-2]) is not None,
            )
        if b is None and how == "batched" and not scope.in_block:
            extra = self.broadcast_partner(batch) if batch else (self.draw(st.integers(1, 3)),)
            b = self.fresh(scope, a.dtype, extra + (k, n), "input")
        if b is None:
            b = self.fresh(scope, a.dtype, (k, n), "param")
        out_batch = broadcast(batch, b.shape[:-2])
        shape = out_batch + (a.shape[-2], b.shape[-1])
        if math.prod(shape) > MAX_ELEMENTS:
            return False
        self.result(scope, [a, b], f"{a.name} @ {b.name}", a.dtype, shape, exact=False)
        return True

    def op_conv2d(self, scope: _Scope) -> bool:
        x = self.image_value(scope, 3, floats_only=True)
        if x is None:
            return False
        n, c, h, w = x.shape
        groups = self.choose([1] + [g for g in _divisors(c) if g > 1])
        out = groups * self.draw(st.integers(1, 3))
        kh, kw = self.draw(st.integers(1, 3)), self.draw(st.integers(1, 3))
        attrs, stride, pads, dil = [], (1, 1), (0, 0, 0, 0), (1, 1)
        if self.chance(0.3):
            stride = (self.draw(st.integers(1, 2)), self.draw(st.integers(1, 2)))
            attrs.append(f"stride={stride[0]}" if stride[0] == stride[1] else f"stride=[{stride[0]}, {stride[1]}]")
        if self.chance(0.4):
            form = self.choose(["int", "pair", "four"])
            if form == "int":
                p = self.draw(st.integers(1, 2))
                pads = (p, p, p, p)
                attrs.append(f"padding={p}")
            elif form == "pair":
                ph, pw = self.draw(st.integers(0, 2)), self.draw(st.integers(0, 2))
                pads = (ph, pw, ph, pw)
                attrs.append(f"padding=[{ph}, {pw}]")
            else:
                pads = tuple(self.draw(st.integers(0, 2)) for _ in range(4))
                attrs.append(f"padding=[{', '.join(map(str, pads))}]")
        if self.chance(0.2):
            dil = (self.draw(st.integers(1, 2)),) * 2
            attrs.append(f"dilation={dil[0]}")
        if groups > 1:
            attrs.append(f"groups={groups}")
        oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // stride[0] + 1
        ow = (w + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // stride[1] + 1
        if oh < 1 or ow < 1 or n * out * oh * ow > MAX_ELEMENTS:
            return False
        wt = self.fresh(scope, x.dtype, (out, c // groups, kh, kw), "param")
        operands = [x.name, wt.name]
        if self.chance(0.5):
            operands.append(self.fresh(scope, x.dtype, (out,), "param").name)
        self.result(scope, [x], f"conv2d({', '.join(operands + attrs)})", x.dtype, (n, out, oh, ow), exact=False)
        return True

    # ----------------------------------------------------------------- reductions and rows

    def op_reduce(self, scope: _Scope) -> bool:
        x = self.any_value(scope, 1, 4)
        if x is None:
            return False
        fn = self.choose(["sum", "mean", "max", "min"])
        form = self.choose(["one", "all", "list"])
        attrs = []
        if form == "all":
            axes = list(range(x.rank))
        elif form == "one":
            axes = [self.draw(st.integers(0, x.rank - 1))]
            attrs.append(f"axis={self.axis_text(axes[0], x.rank)}")
        else:
            axes = sorted(self.draw(st.sets(st.integers(0, x.rank - 1), min_size=1, max_size=x.rank)))
            attrs.append(f"axis=[{', '.join(self.axis_text(a, x.rank) for a in axes)}]")
        keep = self.chance(0.4)
        if keep:
            attrs.append("keepdims=true")
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keep else tuple(
            d for i, d in enumerate(x.shape) if i not in axes
        )
        exact = x.dtype in INTS or (fn in ("max", "min") and x.exact)
        self.result(scope, [x], f"{fn}({', '.join([x.name] + attrs)})", x.dtype, shape, exact=exact)
        return True

    def op_softmax(self, scope: _Scope) -> bool:
        masked = [v for v in scope.pool if v.masked and id(v) not in scope.consumed]
        if masked and self.chance(0.7):
            x, axis = masked[-1], masked[-1].rank - 1
        else:
            x = self.float_value(scope, 1, 4)
            if x is None:
                return False
            axis = self.draw(st.integers(0, x.rank - 1))
        fn = self.choose(["softmax", "log_softmax"])
        attr = "" if axis == x.rank - 1 and self.chance(0.5) else f", axis={self.axis_text(axis, x.rank)}"
        self.result(scope, [x], f"{fn}({x.name}{attr})", x.dtype, x.shape, exact=False)
        return True

    def op_norm(self, scope: _Scope) -> bool:
        x = self.float_value(scope, 1, 4)
        if x is None:
            return False
        fn = self.choose(["layernorm", "rmsnorm"])
        axis = self.draw(st.integers(0, x.rank - 1)) if self.chance(0.4) else x.rank - 1
        pshape = x.shape[axis:]
        operands = [x.name]
        count = self.draw(st.integers(0, 2 if fn == "layernorm" else 1))
        for _ in range(count):
            operands.append(self.fresh(scope, x.dtype, pshape, "param").name)
        if axis != x.rank - 1 or self.chance(0.2):
            operands.append(f"axis={self.axis_text(axis, x.rank)}")
        if self.chance(0.2):
            operands.append("eps=0.001")
        self.result(scope, [x], f"{fn}({', '.join(operands)})", x.dtype, x.shape, exact=False)
        return True

    def op_causal_mask(self, scope: _Scope) -> bool:
        x = self.start_value(
            scope, lambda v: v.is_float and v.rank >= 2 and v.shape[-1] >= v.shape[-2],
            lambda: self.fresh(scope, scope.fdt, self.shape(1, 2) + (self.draw(st.integers(1, 4)),) * 2, "input"),
        )
        if x is None:
            return False
        if self.chance(0.5):
            fn = self.choose(["softmax", "log_softmax"])
            self.result(scope, [x], f"{fn}(causal_mask({x.name}), axis=-1)", x.dtype, x.shape, exact=False)
        else:
            self.result(scope, [x], f"causal_mask({x.name})", x.dtype, x.shape, exact=x.exact, masked=True)
        return True

    def op_attention(self, scope: _Scope) -> bool:
        q = self.float_value(scope, 2, 4)
        if q is None:
            return False
        batch, sq, dh = q.shape[:-2], q.shape[-2], q.shape[-1]
        causal = self.chance(0.5)
        sk = self.draw(st.integers(sq, max(sq, 8)) if causal else st.integers(1, 8))
        dv = self.draw(st.integers(1, 8))
        k = self.operand(scope, lambda v: v.dtype == q.dtype and v.shape == batch + (sk, dh), q.dtype,
                         lambda: batch + (sk, dh))
        sk = k.shape[-2]
        v_ = self.operand(scope, lambda v: v.dtype == q.dtype and v.shape[:-1] == batch + (sk,), q.dtype,
                          lambda: batch + (sk, dv))
        if self.chance(0.5):
            attrs = ", causal=true" if causal else ""
            if self.chance(0.3):
                attrs += ", scale=0.25"
            expr = f"attention({q.name}, {k.name}, {v_.name}{attrs})"
        else:
            scores = f"{q.name} @ transpose({k.name})"
            scale = self.choose(["* 0.5", "/ 2.0", ""])
            if scale:
                scores = f"({scores}) {scale}"
            if causal:
                scores = f"causal_mask({scores})"
            expr = f"softmax({scores}, axis=-1) @ {v_.name}"
        self.result(scope, [q, k, v_], expr, q.dtype, batch + (sq, v_.shape[-1]), exact=False)
        return True

    # ----------------------------------------------------------------- data movement

    def op_transpose(self, scope: _Scope) -> bool:
        x = self.any_value(scope, 2, 4)
        if x is None:
            return False
        if self.chance(0.5):
            perm = list(range(x.rank - 2)) + [x.rank - 1, x.rank - 2]
            expr = f"transpose({x.name})"
        else:
            perm = list(self.draw(st.permutations(range(x.rank))))
            text = [str(p - x.rank) if self.chance(0.2) else str(p) for p in perm]
            expr = f"transpose({x.name}, perm=[{', '.join(text)}])"
        self.result(scope, [x], expr, x.dtype, tuple(x.shape[p] for p in perm), exact=x.exact)
        return True

    def op_reshape(self, scope: _Scope) -> bool:
        x = self.any_value(scope, 1, 4)
        if x is None:
            return False
        total, dims = x.size, []
        rank = self.draw(st.integers(1, 4))
        for _ in range(rank - 1):
            dims.append(self.choose(_divisors(total)))
            total //= dims[-1]
        dims.append(total)
        text = [self.dim(scope, d) for d in dims]
        if self.chance(0.3):
            text[self.draw(st.integers(0, rank - 1))] = "-1"
        self.result(scope, [x], f"reshape({x.name}, [{', '.join(text)}])", x.dtype, dims, exact=x.exact)
        return True

    def op_concat(self, scope: _Scope) -> bool:
        x = self.any_value(scope, 1, 4)
        if x is None:
            return False
        axis = self.draw(st.integers(0, x.rank - 1))
        parts = [x]
        for _ in range(self.draw(st.integers(1, 2))):
            def same(v: Value) -> bool:
                return v.dtype == x.dtype and v.rank == x.rank and all(
                    a == b for i, (a, b) in enumerate(zip(v.shape, x.shape)) if i != axis
                )

            shape = tuple(self.draw(st.integers(1, 4)) if i == axis else d for i, d in enumerate(x.shape))
            parts.append(x if self.chance(0.2) else self.operand(scope, same, x.dtype, lambda: shape))
        out = tuple(sum(p.shape[axis] for p in parts) if i == axis else d for i, d in enumerate(x.shape))
        if math.prod(out) > MAX_ELEMENTS:
            return False
        attr = "" if axis == x.rank - 1 and self.chance(0.5) else f", axis={self.axis_text(axis, x.rank)}"
        self.result(scope, parts, f"concat([{', '.join(p.name for p in parts)}]{attr})", x.dtype, out,
                    exact=all(p.exact for p in parts))
        return True

    def op_slice(self, scope: _Scope) -> bool:
        x = self.any_value(scope, 1, 4)
        if x is None:
            return False
        axis = self.draw(st.integers(0, x.rank - 1))
        dim = x.shape[axis]
        start = self.draw(st.integers(0, dim - 1))
        end = self.draw(st.integers(start + 1, dim))
        shape = tuple(end - start if i == axis else d for i, d in enumerate(x.shape))
        expr = f"slice({x.name}, axis={self.axis_text(axis, x.rank)}, start={start}, end={end})"
        self.result(scope, [x], expr, x.dtype, shape, exact=x.exact)
        return True

    def op_split(self, scope: _Scope) -> bool:
        x = self.start_value(
            scope, lambda v: any(d >= 2 for d in v.shape),
            lambda: self.fresh(scope, scope.fdt, self.shape(1, 2) + (self.choose([2, 4, 6, 3, 8]),), "input"),
        )
        if x is None:
            return False
        axes = [i for i, d in enumerate(x.shape) if d >= 2]
        axis = self.choose(axes[::-1])
        parts = self.choose([p for p in _divisors(x.shape[axis]) if p >= 2][:3])
        shape = tuple(d // parts if i == axis else d for i, d in enumerate(x.shape))
        self.use(scope, x)
        outs = [self.bind(scope, x.dtype, shape, exact=x.exact) for _ in range(parts)]
        attr = "" if axis == x.rank - 1 and self.chance(0.5) else f", axis={self.axis_text(axis, x.rank)}"
        self.emit(scope, f"{', '.join(o.name for o in outs)} = split({x.name}, parts={parts}{attr})")
        return True

    def op_pool(self, scope: _Scope) -> bool:
        x = self.image_value(scope, 2, floats_only=False)
        if x is None:
            return False
        fn = self.choose(["maxpool2d", "avgpool2d", "global_avgpool"])
        n, c, h, w = x.shape
        if fn == "global_avgpool":
            shape, args = (n, c, 1, 1), ""
        else:
            kh, kw = self.draw(st.integers(1, min(3, h))), self.draw(st.integers(1, min(3, w)))
            args = f", kernel={kh}" if kh == kw else f", kernel=[{kh}, {kw}]"
            sh, sw = kh, kw
            if self.chance(0.4):
                sh = sw = self.draw(st.integers(1, 2))
                args += f", stride={sh}"
            ph = pw = 0
            if self.chance(0.4) and kh > 1 and kw > 1:
                ph, pw = self.draw(st.integers(0, kh - 1)), self.draw(st.integers(0, kw - 1))
                args += f", padding=[{ph}, {pw}]"
            oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            if oh < 1 or ow < 1:
                return False
            shape = (n, c, oh, ow)
        self.result(scope, [x], f"{fn}({x.name}{args})", x.dtype, shape, exact=x.exact and fn == "maxpool2d")
        return True

    def op_gather(self, scope: _Scope) -> bool:
        ids = None
        if scope.in_block or self.chance(0.3):
            # Only model inputs: their values are drawn in range of every table
            # they index (`integer_input_ranges`); a computed integer may not
            # be, and an id outside the table is an error, as in ONNX.
            ids = self.pick(scope, lambda v: v.dtype in INTS and v.rank <= 2 and any(v is x for x in self.inputs))
        if ids is None:
            if scope.in_block:
                return False
            ids = self.fresh(scope, self.choose(self.ints or ["i32"]), self.shape(1, 2), "input")
        rows = self.draw(st.integers(1, 8))
        table = self.operand(
            scope, lambda v: v.rank >= 1 and len(ids.shape) + v.rank - 1 <= 4, scope.fdt,
            lambda: (rows,) + self.shape(0, 2), "param",
        )
        shape = ids.shape + table.shape[1:]
        if math.prod(shape) > MAX_ELEMENTS:
            return False
        self.result(scope, [table, ids], f"gather({table.name}, {ids.name})", table.dtype, shape, exact=table.exact)
        return True

    # ----------------------------------------------------------------- blocks and repeat

    def new_block(self, scope: _Scope, arg: Value) -> _Block | None:
        if len(self.blocks) >= 3 or scope.depth >= 2:
            return None
        dims: dict[int, str] = {}
        for d in arg.shape:
            dims.setdefault(d, f"N{len(dims)}")
        int_param = None
        if self.chance(0.5):
            value = self.draw(st.integers(1, 8))
            if value not in dims:
                int_param = ("n", value)
                dims[value] = "n"
        inner = _Scope(True, scope.fdt if arg.dtype in INTS else arg.dtype, dims, depth=scope.depth + 1)
        x = Value("x", arg.dtype, arg.shape)
        inner.pool.append(x)
        extra = None
        if self.chance(0.3):
            candidates = [v for v in scope.pool if not v.masked and v is not arg]
            if candidates:
                other = self.choose(candidates[::-1])
                extra = Value("y", other.dtype, other.shape)
                for d in other.shape:
                    dims.setdefault(d, f"N{len(dims)}")
                inner.pool.append(extra)
        self.body(inner, 4)
        fits = [v for v in reversed(inner.pool)
                if not v.masked and v.dtype == x.dtype and broadcast(x.shape, v.shape) == x.shape and v is not x]
        if fits:
            ret = self.choose(fits)
            result = ret.name if ret.shape == x.shape and self.chance(0.5) else f"x + {ret.name}"
        else:
            result = "x"
        name = f"b{len(self.blocks)}"
        sig = [f"x: {self.type_text(inner, x.dtype, x.shape)}"]
        if extra is not None:
            sig.append(f"y: {self.type_text(inner, extra.dtype, extra.shape)}")
        if int_param is not None:
            sig.append("n: int")
        head = f"def {name}({', '.join(sig)}) -> {self.type_text(inner, x.dtype, x.shape)} {{"
        text = "\n".join([head] + [f"  {line}" for line in inner.lines] + [f"  return {result}", "}"])
        block = _Block(name, text, arg, extra, int_param)
        self.blocks.append(block)
        return block

    def call_text(self, scope: _Scope, block: _Block, x: Value) -> tuple[str, list[Value]] | None:
        args, used = [x.name], [x]
        if block.extra is not None:
            other = self.pick(scope, lambda v: v.dtype == block.extra.dtype and v.shape == block.extra.shape)
            if other is None:
                return None
            args.append(other.name)
            used.append(other)
        if block.int_param is not None:
            name, value = block.int_param
            args.append(f"{name}={value}" if self.chance(0.5) else str(value))
        return f"{block.name}({', '.join(args)})", used

    def block_for(self, scope: _Scope, x: Value) -> _Block | None:
        """A block taking and returning `x`'s type: an existing one, or a new one."""
        matching = [b for b in self.blocks if b.arg.dtype == x.dtype and b.arg.shape == x.shape]
        if matching and self.chance(0.6):
            return self.choose(matching)
        return self.new_block(scope, x)

    def op_call(self, scope: _Scope) -> bool:
        x = self.any_value(scope, 1, 4)
        if x is None:
            return False
        block = self.block_for(scope, x)
        if block is None:
            return False
        call = self.call_text(scope, block, x)
        if call is None:
            return False
        text, used = call
        self.result(scope, used, text, x.dtype, x.shape, exact=False)
        return True

    def op_repeat(self, scope: _Scope) -> bool:
        x = self.any_value(scope, 1, 4)
        if x is None:
            return False
        count = self.draw(st.integers(1, 3))
        if x.is_float and self.chance(0.3):
            fn = self.choose(["tanh", "relu", "sigmoid"])
            body = [f"{x.name} = {fn}({x.name}) + {x.name} * 0.5"]
            used = [x]
        else:
            block = self.block_for(scope, x)
            if block is None:
                return False
            call = self.call_text(scope, block, x)
            if call is None:
                return False
            text, used = call
            body = [f"{x.name} = {text}"]
        self.use(scope, *used)
        self.bind(scope, x.dtype, x.shape, exact=False, name=x.name)
        self.emit(scope, f"repeat {count} {{")
        for line in body:
            self.emit(scope, f"  {line}")
        self.emit(scope, "}")
        return True


@st.composite
def models(
    draw,
    ops: Sequence[str] = OPERATIONS,
    max_ops: int = 8,
    dtypes: Sequence[str] = DTYPES,
    blocks: bool = True,
) -> Model:
    """
    Random valid models (see the module docstring).

    `ops` restricts the kinds of statement drawn (`OPERATIONS`), `max_ops`
    bounds the statements of the model body (blocks add theirs), `dtypes`
    the dtypes values may have (the first float one is the one shrinking
    goes to), `blocks=False` leaves out `def` blocks and `repeat`.
    """
    unknown = set(ops) - set(OPERATIONS)
    if unknown:
        raise ValueError(f"unknown operation kinds {sorted(unknown)} (kinds: {', '.join(OPERATIONS)})")
    return _Drawer(draw, ops, max_ops, dtypes, blocks).model()


def graph_modules(**kwargs):
    """The models of `models(**kwargs)` as verified graph IR (a `builtin.module`)."""
    return models(**kwargs).map(lambda model: model.module())


# --------------------------------------------------------------------------- growable models


class _Statements:
    """The body of a drawn model: `param` declarations and `vN = expr` statements, numbered in order."""

    def __init__(self, dtype: str):
        self.dtype, self.lines, self.params, self.values = dtype, [], 0, 0

    def param(self, shape: str) -> str:
        self.params += 1
        self.lines.append(f"param w{self.params - 1}: {self.dtype}[{shape}]")
        return f"w{self.params - 1}"

    def bind(self, expr: str) -> str:
        self.values += 1
        self.lines.append(f"v{self.values - 1} = {expr}")
        return f"v{self.values - 1}"


def _image_body(draw, body: _Statements, max_ops: int) -> str:
    """A CNN over `x: [B, C, H, W]`: a conv, then relu/conv/pool/bias layers, pooled to `[B, F]`."""
    x = body.bind(f"conv2d(x, {body.param('F, C, 3, 3')}, padding=1)")
    for _ in range(draw(st.integers(0, max_ops))):
        kind = draw(st.sampled_from(["relu", "conv", "pool", "add"]))
        if kind == "relu":
            x = body.bind(f"relu({x})")
        elif kind == "conv":
            x = body.bind(f"conv2d({x}, {body.param('F, F, 3, 3')}, {body.param('F')}, padding=1)")
        elif kind == "pool":
            x = body.bind(f"maxpool2d({x}, kernel=3, stride=1, padding=1)")
        else:
            x = body.bind(f"{x} + {body.param('F, 1, 1')}")
    x = body.bind(f"reshape(global_avgpool({x}), [B, F])")
    return body.bind(f"{x} @ {body.param('F, F')}")


def _sequence_body(draw, body: _Statements, max_ops: int) -> str:
    """A transformer-like chain over `x: [B, S, D]` (GEMMs, norms, attention, residuals)."""
    x, shape = "x", ["B", "S", "D"]
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(["matmul", "unary", "bias", "softmax", "norm", "attention", "reduce",
                                     "transpose", "residual"]))
        last = shape[-1]
        if kind == "matmul":
            out = draw(st.sampled_from(["D", "F"]))
            x, shape = body.bind(f"{x} @ {body.param(f'{last}, {out}')}"), shape[:-1] + [out]
        elif kind == "unary":
            x = body.bind(f"{draw(st.sampled_from(['gelu', 'relu', 'tanh', 'silu']))}({x})")
        elif kind == "bias":
            x = body.bind(f"{x} + {body.param(last)}")
        elif kind == "softmax":
            x = body.bind(f"softmax({x})")
        elif kind == "norm":
            x = body.bind(f"layernorm({x}, {body.param(last)}, {body.param(last)})" if draw(st.booleans())
                          else f"rmsnorm({x}, {body.param(last)})")
        elif kind == "attention" and shape[-2] == "S":
            causal = ", causal=true" if draw(st.booleans()) else ""
            k = body.bind(f"{x} @ {body.param(f'{last}, {last}')}")
            v = body.bind(f"{x} @ {body.param(f'{last}, {last}')}")
            x = body.bind(f"attention({x}, {k}, {v}{causal})")
        elif kind == "reduce":
            x = body.bind(f"{x} - mean({x}, axis=-1, keepdims=true)")
        elif kind == "transpose":
            x = body.bind(f"transpose({x})")
            shape = shape[:-2] + [shape[-1], shape[-2]]
        elif kind == "residual" and shape == ["B", "S", "D"]:
            x = body.bind(f"x + {x}")
    return x


@st.composite
def growable_models(draw, max_ops: int = 6, dims: tuple[int, int] = (1, 64)) -> Model:
    """
    Models whose dimensions are all `let` constants (`B`, `S`, `D`, `F`, or
    `C`, `H`, `W` for images) and whose operations are valid for any value
    of them: `model.grown("D", 2 * D)` is the same model, bigger.
    """
    lo, hi = dims
    image = draw(st.booleans())
    names = ("B", "C", "H", "W", "F") if image else ("B", "S", "D", "F")
    lets = {n: draw(st.integers(lo, hi)) for n in names}
    if image:
        lets["B"] = min(lets["B"], 4)
    dtype = draw(st.sampled_from(["f32", "bf16", "f16"]))
    body = _Statements(dtype)
    x = (_image_body if image else _sequence_body)(draw, body, max_ops)
    signature = f"x: {dtype}[B, C, H, W]" if image else f"x: {dtype}[B, S, D]"
    text = "\n".join(
        ["# drawn by compiler.testing.random_models.growable_models()"]
        + [f"let {n} = {v}" for n, v in lets.items()]
        + ["", f"model grow({signature}) {{"]
        + [f"  {line}" for line in body.lines]
        + [f"  return {x}", "}", ""]
    )
    return Model(text, frozenset({dtype}), tuple(lets.items()))
