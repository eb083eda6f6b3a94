"""
Elaborate a parsed model into graph IR.

Steps:
1. Check the program's structure: one `model`, unique names, no def named
   like an operation, no recursion between blocks.
2. Resolve `let` constants (in any order, `-D` overrides applied).
3. Walk the model body, inlining each block call with its shape names bound
   from the arguments, unrolling `repeat`, naming params by path, and
   emitting one graph op per operation at its source location.

The result is a `builtin.module` holding one `func.func` whose arguments are
the inputs, then the params in declaration order, marked with `graph.input`
and `graph.param`. Any error is a `ModelError` at the offending token.
"""

from __future__ import annotations

import difflib
import math
from collections import Counter
from dataclasses import dataclass, field

from xdsl.dialects import func
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FileLineColLoc,
    IntAttr,
    ModuleOp,
    StringAttr,
    TensorType,
)
from xdsl.ir import Block as IRBlock
from xdsl.ir import Operation, Region, SSAValue

from strata.compiler.diagnostics import ModelError, SourceLoc, StrataError
from strata.compiler.frontend import syntax as ast
from strata.compiler.frontend.operations import (
    OPERATIONS,
    REQUIRED,
    OpContext,
    Scalar,
    build_binary,
    build_matmul,
    build_unary,
    literal_text,
)
from strata.dialects.graph import INPUT_ATTR, PARAM_ATTR
from strata.dialects.vocabulary import BATCH_NAMES
from strata.dialects.graph import shapes
from strata.dialects.graph.dtypes import DTYPES, tensor_type, type_str

MAX_OPS = 100_000
"""More graph ops than this is an error, so a huge `repeat` cannot hang us. The
largest real models have a few thousand; elaborating 100,000 takes half a minute."""
MAX_STATEMENTS = 1_000_000
"""More executed statements (counting each unrolled one, and each block's
`return` once per call) than this is an error."""
MAX_NODES = 2_000_000
"""More syntax nodes evaluated (each statement's expressions, and a called
block's signature, once per execution) than this is an error: a statement
that makes no op can still hold a long expression, repeated or called."""
MAX_ELEMENTS = 2**48
"""Largest tensor (in elements) a model may declare or compute."""
MAX_CALL_DEPTH = 64
"""Deepest nesting of block calls (a block calling a block calling ...)."""
INT64 = (-(2**63), 2**63 - 1)
"""Range of an integer attribute (stored as i64)."""

Value = SSAValue | Scalar | int


def loc_attr(loc: SourceLoc) -> FileLineColLoc:
    """The IR location of a source position."""
    return FileLineColLoc(StringAttr(loc.file), IntAttr(loc.line), IntAttr(loc.col))


MAX_INT = 2**63 - 1
"""Integers of the language (shapes, `let` constants) are 64-bit: bigger ones are errors, not big ints."""
MAX_LITERAL = 2**1024
"""Largest magnitude of a literal folded in tensor arithmetic: beyond every dtype, f32 included."""

@dataclass
class Scope:
    """Names visible in one model or block instance."""

    name: str
    prefix: str
    """Path of this instance's params: `""` in the model, `attn.0.` in a block."""
    env: dict[str, Value] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    params: set[str] = field(default_factory=set)
    repeat_depth: int = 0
    """How many `repeat` bodies of this scope are being unrolled."""


class Elaborator:
    def __init__(self, program: ast.Program, filename: str, overrides: dict[str, int]):
        self.program = program
        self.filename = filename
        self.lets = self._unique(program.lets, "constant")
        self.defs = self._unique(program.defs, "block")
        for name, defn in self.defs.items():
            if name in OPERATIONS:
                self.fail(defn.loc, f"block '{name}' has the name of an operation; rename it")
            if name in self.lets:
                self.fail(defn.loc, f"block '{name}' has the name of a constant; rename it")
        for name, value in overrides.items():
            if name not in self.lets:
                known = ", ".join(sorted(self.lets)) or "none"
                raise StrataError(
                    f"error: -D {name}: '{name}' is not a let constant of {filename}"
                    f" (its constants: {known})"
                )
            if not -MAX_INT <= value <= MAX_INT:
                raise StrataError(f"error: -D {name}={literal_text(value)} is beyond the 64-bit integers of the language")
        self.overrides = overrides
        self.consts: dict[str, int] = {}
        self._resolving: list[str] = []
        self.block = IRBlock()
        self.arg_attrs: list[DictionaryAttr] = []
        self.param_paths: dict[str, SourceLoc] = {}
        self.n_ops = 0
        self.n_statements = 0
        self.n_nodes = 0
        self._sizes: dict[int, int] = {}
        """Syntax nodes of a statement or block signature, by `id` (the AST outlives the elaboration)."""
        self.call_stack: list[str] = []
        self.last_loc = SourceLoc(filename, 1, 1)
        """The statement being elaborated (where a too-deep recursion is reported)."""

    # ----------------------------------------------------------------- helpers

    def fail(self, loc: SourceLoc, message: str):
        raise ModelError(loc, message)

    def _unique(self, items, what: str) -> dict:
        seen: dict = {}
        for item in items:
            if item.name in seen:
                self.fail(item.loc, f"{what} '{item.name}' is defined twice")
            seen[item.name] = item
        return seen

    def emit(self, op: Operation, loc: SourceLoc) -> Operation:
        op.location = loc_attr(loc)
        for result in op.results:
            count = shapes.num_elements(result.type.get_shape())
            if count > MAX_ELEMENTS:
                self.fail(
                    loc,
                    f"result {type_str(result.type)} has {count:,} elements, more than the limit of"
                    f" 2**48 ({MAX_ELEMENTS:,})",
                )
        self.block.add_op(op)
        self.n_ops += 1
        if self.n_ops > MAX_OPS:
            self.fail(loc, f"model too large: more than {MAX_OPS:,} operations (check repeat counts)")
        return op

    def op_context(self, loc: SourceLoc, name: str) -> OpContext:
        return OpContext(lambda op: self.emit(op, loc), self.fail, loc, name)

    # ----------------------------------------------------------------- constants

    def const(self, name: str, loc: SourceLoc) -> int | None:
        """Value of a `let` constant, or `None` if there is none of that name."""
        if name in self.consts:
            return self.consts[name]
        if name not in self.lets:
            return None
        if name in self.overrides:
            self.consts[name] = self.overrides[name]
            return self.consts[name]
        if name in self._resolving:
            cycle = " -> ".join(self._resolving[self._resolving.index(name):] + [name])
            self.fail(loc, f"constant '{name}' depends on itself ({cycle})")
        self._resolving.append(name)
        expr = self.lets[name].value
        value = self.eval_int(expr, Scope("let", ""))
        if not -MAX_INT <= value <= MAX_INT:
            # Arithmetic is checked as it goes; this is a literal (or its negation) too big.
            self.fail(expr.loc, f"{name} = {literal_text(value)} is beyond the 64-bit integers of the language")
        self._resolving.pop()
        self.consts[name] = value
        return value

    # ----------------------------------------------------------------- integer and attribute expressions

    def eval_int(self, expr: ast.Expr, scope: Scope) -> int:
        match expr:
            case ast.IntLit(value=value):
                return value
            case ast.Name(id=name, loc=loc):
                value = self.lookup(name, loc, scope)
                if isinstance(value, Scalar) and isinstance(value.value, int):
                    return value.value
                if isinstance(value, int):
                    return value
                if isinstance(value, SSAValue):
                    self.fail(loc, f"'{name}' is a tensor, but an integer is needed here")
                self.fail(loc, f"'{name}' is not an integer")
            case ast.Negate():
                operand, signs = _unwrap_negations(expr)
                value = self.eval_int(operand, scope)
                return -value if len(signs) % 2 else value
            case ast.Binary():
                first, chain = _binary_chain(expr)
                a = self.eval_int(first, scope)
                for node in chain:
                    a = self.int_binary(node, a, self.eval_int(node.rhs, scope))
                return a
            case ast.FloatLit(value=value, loc=loc):
                self.fail(loc, f"expected an integer, got {value}")
            case ast.StrLit(value=value, loc=loc):
                self.fail(loc, f"expected an integer, got the string \"{value}\"")
            case ast.ListExpr(loc=loc):
                self.fail(loc, "expected an integer, got a list")
        self.fail(expr.loc, "expected an integer expression")

    def int_binary(self, node: ast.Binary, a: int, b: int) -> int:
        op, loc = node.op, node.loc
        if op in "+-*":
            value = a + b if op == "+" else a - b if op == "-" else a * b
            if not -MAX_INT <= value <= MAX_INT:
                self.fail(loc, f"{_expr_text(node)} is {a} {op} {b}, beyond the 64-bit integers of the language")
            return value
        if op == "/":
            text = _expr_text(node)
            values = f"{a}/{b}"
            if b == 0:
                self.fail(loc, "division by zero" + (f": {text} is {values}" if text != values else ""))
            if a % b:
                what = f"{text} is {values}, which" if text != values else values
                self.fail(loc, f"{what} is not an integer (integer division must be exact)")
            return a // b
        self.fail(loc, f"'{op}' is not an integer operator (integers use + - * /)")

    def eval_float(self, expr: ast.Expr, scope: Scope) -> float:
        match expr:
            case ast.FloatLit(value=value) | ast.IntLit(value=value):
                return float(value)
            case ast.Name(id="inf") if self.lookup_optional("inf", scope) is None:
                return math.inf
            case ast.Name():
                return float(self.eval_int(expr, scope))
            case ast.Negate():
                operand, signs = _unwrap_negations(expr)
                value = self.eval_float(operand, scope)
                return -value if len(signs) % 2 else value
            case ast.Binary():
                first, chain = _binary_chain(expr)
                a = self.eval_float(first, scope)
                for node in chain:
                    b = self.eval_float(node.rhs, scope)
                    if node.op == "@":
                        self.fail(node.loc, "'@' is not allowed in a number")
                    if node.op == "/" and b == 0:
                        self.fail(node.loc, "division by zero")
                    try:
                        a = {"+": a + b, "-": a - b, "*": a * b}.get(node.op) if node.op != "/" else a / b
                    except OverflowError:
                        self.fail(node.loc, "number too large")
                return a
            case ast.StrLit(value=value, loc=loc):
                self.fail(loc, f"expected a number, got the string \"{value}\"")
        self.fail(expr.loc, "expected a number")

    def attr_int(self, expr: ast.Expr, scope: Scope, key: str) -> int:
        value = self.eval_int(expr, scope)
        if not INT64[0] <= value <= INT64[1]:
            self.fail(expr.loc, f"{key}={value} does not fit in a 64-bit integer")
        return value

    def eval_attr(self, expr: ast.Expr, kind: str, scope: Scope, key: str):
        if kind == "int":
            return self.attr_int(expr, scope, key)
        if kind == "float":
            return self.eval_float(expr, scope)
        if kind == "ints":
            if isinstance(expr, ast.ListExpr):
                return tuple(self.attr_int(item, scope, key) for item in expr.items)
            return (self.attr_int(expr, scope, key),)
        if kind == "bool":
            if isinstance(expr, ast.Name) and expr.id in ("true", "false"):
                return expr.id == "true"
            self.fail(expr.loc, f"{key} must be true or false, got {_expr_text(expr)}")
        if kind == "dtype":
            if isinstance(expr, ast.Name | ast.StrLit):
                name = expr.id if isinstance(expr, ast.Name) else expr.value
                if name in DTYPES:
                    return name
            hint = _suggest_dtype(expr.id) if isinstance(expr, ast.Name) else ""
            self.fail(expr.loc, f"{key} must be one of {', '.join(DTYPES)}, got {_expr_text(expr)}{hint}")
        raise AssertionError(kind)

    def eval_type(self, texpr: ast.TypeExpr, scope: Scope) -> TensorType:
        if texpr.dtype not in DTYPES:
            hint = _suggest_dtype(texpr.dtype)
            self.fail(texpr.loc, f"unknown dtype '{texpr.dtype}' (dtypes: {', '.join(DTYPES)}){hint}")
        dims = [self.eval_int(d, scope) for d in texpr.dims]
        for d, dim in zip(texpr.dims, dims):
            if dim <= 0:
                shown = "" if isinstance(d, ast.IntLit) else f" ({_expr_text(d)} = {dim})"
                self.fail(d.loc, f"dimension must be positive, got {dim}{shown}")
        count = shapes.num_elements(dims)
        if count > MAX_ELEMENTS:
            self.fail(
                texpr.loc,
                f"type {texpr.dtype}{shapes.fmt(dims)} has {count:,} elements, more than the"
                f" limit of 2**48 ({MAX_ELEMENTS:,})",
            )
        return tensor_type(texpr.dtype, dims)

    # ----------------------------------------------------------------- names

    def lookup_optional(self, name: str, scope: Scope) -> Value | None:
        if name in scope.env:
            return scope.env[name]
        if name in self.lets:
            return self.const(name, self.lets[name].loc)
        return None

    def lookup(self, name: str, loc: SourceLoc, scope: Scope) -> Value:
        value = self.lookup_optional(name, scope)
        if value is not None:
            return value
        if name == "inf":
            return Scalar(math.inf, loc)
        if name in OPERATIONS or name in self.defs:
            what = "an operation" if name in OPERATIONS else "a block"
            self.fail(loc, f"'{name}' is {what}; call it as {name}(...)")
        known = list(scope.env) + list(self.lets)
        self.fail(loc, f"unknown name '{name}'{_suggest(name, known)}")

    # ----------------------------------------------------------------- tensor expressions

    def eval_one(self, expr: ast.Expr, scope: Scope) -> SSAValue | Scalar:
        values = self.eval_multi(expr, scope)
        if len(values) != 1:
            self.fail(
                expr.loc,
                f"this gives {len(values)} values; unpack them with"
                f" '{', '.join('v%d' % i for i in range(len(values)))} = ...'",
            )
        return values[0]

    def eval_multi(self, expr: ast.Expr, scope: Scope) -> list[SSAValue | Scalar]:
        match expr:
            case ast.IntLit(value=value, loc=loc) | ast.FloatLit(value=value, loc=loc):
                return [Scalar(value, loc)]
            case ast.Name(id=name, loc=loc):
                value = self.lookup(name, loc, scope)
                return [Scalar(value, loc) if isinstance(value, int) else value]
            case ast.Negate():
                operand, signs = _unwrap_negations(expr)
                value = self.eval_one(operand, scope)
                for loc in reversed(signs):
                    if isinstance(value, Scalar):
                        value = Scalar(-value.value, loc)
                    else:
                        value = build_unary(self.op_context(loc, "unary '-'"), "neg", value)
                return [value]
            case ast.Binary():
                # Left-associative chains are walked iteratively, so a long
                # `a + a + ... + a` does not exhaust Python's stack.
                first, chain = _binary_chain(expr)
                a = self.eval_one(first, scope)
                for node in chain:
                    b = self.eval_one(node.rhs, scope)
                    ctx = self.op_context(node.loc, f"'{node.op}'")
                    if node.op == "@":
                        a = build_matmul(ctx, a, b)
                    elif isinstance(a, Scalar) and isinstance(b, Scalar):
                        a = self.fold(node.op, a, b, node.loc)
                    else:
                        a = build_binary(ctx, node.op, a, b)
                return [a]
            case ast.Call():
                return self.call(expr, scope)
            case ast.ListExpr(loc=loc):
                self.fail(loc, "a list is only allowed as an attribute value or an operand of concat/reshape")
            case ast.StrLit(loc=loc):
                self.fail(loc, "a string is only allowed as an attribute value")
        self.fail(expr.loc, "unsupported expression")

    def fold(self, op: str, a: Scalar, b: Scalar, loc: SourceLoc) -> Scalar:
        try:
            if op == "/":
                if b.value == 0:
                    self.fail(loc, "division by zero")
                return Scalar(a.value / b.value, loc)
            value = {"+": a.value + b.value, "-": a.value - b.value, "*": a.value * b.value}[op]
        except OverflowError:
            self.fail(loc, "number too large")
        if isinstance(value, int) and abs(value) > MAX_LITERAL:
            # No dtype holds it, and a chain of products would grow it without bound.
            self.fail(loc, "number too large")
        return Scalar(value, loc)

    def call(self, call: ast.Call, scope: Scope) -> list[SSAValue | Scalar]:
        if call.func in self.defs:
            return self.inline(self.defs[call.func], call, scope)
        spec = OPERATIONS.get(call.func)
        if spec is None:
            known = list(OPERATIONS) + list(self.defs)
            self.fail(call.loc, f"unknown operation '{call.func}'{_suggest(call.func, known)}")
        required = sum(1 for kind in spec.operands if not kind.endswith("?"))
        if not required <= len(call.args) <= len(spec.operands):
            most = len(spec.operands)
            count = f"{required}" if required == most else f"{required} to {most}"
            noun = "operand" if most == 1 else "operands"
            hint = f" (did you mean {spec.hint}?)" if spec.hint else ""
            self.fail(call.loc, f"{call.func} takes {count} {noun}, got {len(call.args)}{hint}")
        operands = [
            self.operand(kind, expr, scope, call.func)
            for kind, expr in zip(spec.operands, call.args)
        ]
        operands += [None] * (len(spec.operands) - len(operands))
        attrs = {}
        for kw in call.kwargs:
            if kw.name not in spec.attrs:
                if not spec.attrs:
                    self.fail(kw.loc, f"unknown attribute '{kw.name}': {call.func} takes no attributes")
                expected = ", ".join(spec.attrs)
                self.fail(
                    kw.loc,
                    f"unknown attribute '{kw.name}' for {call.func} (its attributes: {expected})"
                    f"{_suggest(kw.name, spec.attrs)}",
                )
            if kw.name in attrs:
                self.fail(kw.loc, f"attribute '{kw.name}' is given twice")
            attrs[kw.name] = self.eval_attr(kw.value, spec.attrs[kw.name].kind, scope, kw.name)
        for key, attr in spec.attrs.items():
            if key not in attrs:
                if attr.default is REQUIRED:
                    self.fail(call.loc, f"{call.func} needs the attribute {key}=...")
                attrs[key] = attr.default
        return spec.build(self.op_context(call.loc, call.func), *operands, **attrs)

    def operand(self, kind: str, expr: ast.Expr, scope: Scope, op: str):
        if kind == "tensors":
            if not isinstance(expr, ast.ListExpr):
                self.fail(expr.loc, f"{op} takes a list of tensors: {op}([a, b, ...])")
            return [self.eval_one(item, scope) for item in expr.items]
        if kind == "shape":
            if not isinstance(expr, ast.ListExpr):
                self.fail(expr.loc, f"{op} takes its shape as a list: {op}(x, [d0, d1, ...])")
            return [self.eval_int(item, scope) for item in expr.items]
        return self.eval_one(expr, scope)

    # ----------------------------------------------------------------- blocks

    def inline(self, defn: ast.Block, call: ast.Call, caller: Scope) -> list[SSAValue]:
        tensor_args = [a for a in defn.args if a.type is not None]
        int_args = [a for a in defn.args if a.type is None]
        if not len(tensor_args) <= len(call.args) <= len(defn.args):
            self.fail(
                call.loc,
                f"'{defn.name}' takes {_count(len(tensor_args), 'tensor argument')}"
                f" ({', '.join(a.name for a in tensor_args) or 'none'})"
                + (
                    f" and {_count(len(int_args), 'integer parameter')}"
                    f" ({', '.join(a.name for a in int_args)})"
                    if int_args else ""
                )
                + f", got {_count(len(call.args), 'positional argument')}",
            )
        values = [self.eval_one(e, caller) for e in call.args[: len(tensor_args)]]
        ints: dict[str, int] = {}
        for arg, expr in zip(int_args, call.args[len(tensor_args):]):
            ints[arg.name] = self.eval_int(expr, caller)
        int_names = {a.name for a in int_args}
        for kw in call.kwargs:
            if kw.name not in int_names:
                known = ", ".join(a.name for a in int_args)
                where = f"its integer parameters: {known}" if known else "it has none"
                self.fail(kw.loc, f"'{defn.name}' has no integer parameter '{kw.name}' ({where})")
            if kw.name in ints:
                self.fail(kw.loc, f"integer parameter '{kw.name}' is given twice")
            ints[kw.name] = self.eval_int(kw.value, caller)
        for arg in int_args:
            if arg.name not in ints:
                self.fail(call.loc, f"'{defn.name}' needs its integer parameter {arg.name}=...")

        # Binding the arguments evaluates the block's declared dims again at every call.
        self.count(defn, call.loc, statement=False)
        index = caller.calls[defn.name]
        caller.calls[defn.name] += 1
        scope = Scope(defn.name, f"{caller.prefix}{defn.name}.{index}.", dict(ints))
        self.bind_args(defn, call, tensor_args, values, scope)
        if len(self.call_stack) >= MAX_CALL_DEPTH:
            chain = self.call_stack + [defn.name]
            shown = " -> ".join(chain[:3] + ["..."] + chain[-2:])
            self.fail(call.loc, f"block calls are nested more than {MAX_CALL_DEPTH} deep ({shown})")
        self.call_stack.append(defn.name)
        try:
            return self.run_body(defn, scope)
        except ModelError as err:
            # Name the call: inside a block, shapes depend on the call site.
            base = getattr(err, "base_message", err.message)
            calls = getattr(err, "calls", []) + [f"in '{defn.name}' called at line {call.loc.line}"]
            shown = calls if len(calls) <= 4 else calls[:2] + [f"... {len(calls) - 3} more calls"] + calls[-1:]
            located = ModelError(err.loc, f"{base} ({', '.join(shown)})")
            located.base_message, located.calls = base, calls
            raise located from None
        finally:
            self.call_stack.pop()

    def bind_args(self, defn: ast.Block, call: ast.Call, args: list[ast.Arg], values, scope: Scope) -> None:
        """
        Bind the shape names of `defn`'s tensor arguments from the actual
        values at this call, then check every declared dimension.

        A name is bound where it stands alone as a dimension (`x: f32[N, D]`);
        it must then agree wherever it appears, in any argument.
        """
        declared = {}
        for arg, value, expr in zip(args, values, call.args):
            texpr = arg.type
            declared[arg.name] = f"{texpr.dtype}[{', '.join(_expr_text(d) for d in texpr.dims)}]"
            if isinstance(value, Scalar):
                self.fail(expr.loc, f"argument '{arg.name}' of '{defn.name}' must be {declared[arg.name]}, got a literal")
            mismatch = f"argument '{arg.name}' of '{defn.name}' must be {declared[arg.name]}, got {type_str(value.type)}"
            if texpr.dtype != type_str(value.type).split("[")[0]:
                self.fail(expr.loc, f"{mismatch} (dtype differs)")
            if len(texpr.dims) != len(value.type.get_shape()):
                self.fail(expr.loc, f"{mismatch} (rank {len(value.type.get_shape())}, expected {len(texpr.dims)})")
        origin: dict[str, tuple[str, int]] = {}
        for arg, value in zip(args, values):
            for i, (dim, size) in enumerate(zip(arg.type.dims, value.type.get_shape())):
                if isinstance(dim, ast.Name) and dim.id not in origin and self.lookup_optional(dim.id, scope) is None:
                    scope.env[dim.id] = size
                    origin[dim.id] = (arg.name, i)
        for arg, value, expr in zip(args, values, call.args):
            mismatch = f"argument '{arg.name}' of '{defn.name}' must be {declared[arg.name]}, got {type_str(value.type)}"
            for i, (dim, size) in enumerate(zip(arg.type.dims, value.type.get_shape())):
                for name in _names_in(dim):
                    if self.lookup_optional(name.id, scope) is None and name.id not in ("true", "false"):
                        self.fail(
                            name.loc,
                            f"cannot infer '{name.id}' from dimension {_expr_text(dim)} of argument"
                            f" '{arg.name}': a shape name is bound only where it stands alone as a"
                            f" dimension (in '{defn.name}' called at line {call.loc.line})",
                        )
                want = self.eval_int(dim, scope)
                if want == size:
                    continue
                if isinstance(dim, ast.IntLit):
                    why = f"dimension {i} is {size}, not {want}"
                elif isinstance(dim, ast.Name) and dim.id in origin:
                    where, index = origin[dim.id]
                    source = f"dimension {index}" if where == arg.name else f"dimension {index} of '{where}'"
                    why = f"dimension {i} is {size}, but {dim.id} = {want} from {source}"
                else:
                    why = f"dimension {i} is {size}, but {_expr_text(dim)} = {want}"
                self.fail(expr.loc, f"{mismatch}: {why}")
        for arg, value in zip(args, values):
            scope.env[arg.name] = value

    def check_returns(self, block: ast.Block) -> None:
        """`return` must appear exactly once, as the last statement, never in a repeat."""
        body = block.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.Return) and i != len(body) - 1:
                after = len(body) - 1 - i
                self.fail(
                    stmt.loc,
                    f"return must be the last statement of '{block.name}', but"
                    f" {_count(after, 'statement')} {'follows' if after == 1 else 'follow'} it",
                )
        stack = [stmt for stmt in body if isinstance(stmt, ast.Repeat)]
        while stack:
            for inner in stack.pop().body:
                if isinstance(inner, ast.Return):
                    self.fail(inner.loc, "return is not allowed inside repeat (return once, after the repeat)")
                if isinstance(inner, ast.Repeat):
                    stack.append(inner)
        if not body or not isinstance(body[-1], ast.Return):
            self.fail(block.end, f"'{block.name}' has no return statement: its body must end with 'return ...'")

    def run_body(self, block: ast.Block, scope: Scope) -> list[SSAValue]:
        body = block.body
        self.check_returns(block)
        for stmt in body[:-1]:
            self.statement(stmt, scope, block)
        ret = body[-1]
        self.count(ret, ret.loc)
        values = [self.eval_one(v, scope) for v in ret.values]
        for v, value in zip(ret.values, values):
            if isinstance(value, Scalar):
                self.fail(v.loc, "a returned value must be a tensor, not a literal")
        if block.results is not None:
            if len(block.results) != len(values):
                self.fail(
                    ret.loc,
                    f"'{block.name}' declares {len(block.results)} results but returns {len(values)}",
                )
            for v, value, texpr in zip(ret.values, values, block.results):
                declared = self.eval_type(texpr, scope)
                if value.type != declared:
                    self.fail(
                        v.loc,
                        f"returned value has type {type_str(value.type)}, but '{block.name}'"
                        f" declares {type_str(declared)}",
                    )
        return values

    def count(self, node: ast.Node, loc: SourceLoc, statement: bool = True) -> None:
        """Count one execution of a statement (or a block's signature, at a call) against the limits."""
        if id(node) not in self._sizes:
            self._sizes[id(node)] = _size(node)
        self.n_nodes += self._sizes[id(node)]
        self.n_statements += statement
        if self.n_statements > MAX_STATEMENTS:
            self.fail(loc, f"model too large: more than {MAX_STATEMENTS:,} statements executed (check repeat counts)")
        if self.n_nodes > MAX_NODES:
            self.fail(loc, f"model too large: more than {MAX_NODES:,} expression nodes evaluated (check repeat"
                           f" counts and block calls)")

    def _check_unrolled(self, loc, times: int, ops: int, statements: int, nodes: int) -> None:
        """A `repeat` of `times` whose first iteration took the counters from these values fits every limit."""
        for now, before, limit, size in (
            (self.n_ops, ops, MAX_OPS, "unroll the model to {:,} operations"),
            (self.n_statements, statements, MAX_STATEMENTS, "unroll the model to {:,} statements"),
            (self.n_nodes, nodes, MAX_NODES, "evaluate {:,} expression nodes"),
        ):
            total = now + (now - before) * (times - 1)
            if total > limit:
                self.fail(loc, f"repeat {times:,} would {size.format(total)} ({now - before:,} per iteration),"
                               f" more than the limit of {limit:,}")

    def statement(self, stmt: ast.Stmt, scope: Scope, block: ast.Block) -> None:
        self.last_loc = stmt.loc
        self.count(stmt, stmt.loc)
        match stmt:
            case ast.Param():
                self.param(stmt, scope)
            case ast.Assign(targets=targets, value=expr):
                values = self.eval_multi(expr, scope)
                if len(values) != len(targets):
                    names = ", ".join(f"v{i}" for i in range(len(values)))
                    verb = "is" if len(targets) == 1 else "are"
                    self.fail(
                        expr.loc,
                        f"this gives {_count(len(values), 'value')}, but"
                        f" {_count(len(targets), 'name')} {verb} assigned"
                        + (f" (unpack them: '{names} = ...')" if len(targets) == 1 else ""),
                    )
                for (name, loc), value in zip(targets, values):
                    self.bind(name, loc, value, scope)
            case ast.Repeat(count=count, body=body, loc=loc):
                times = self.eval_int(count, scope)
                if times < 0:
                    self.fail(count.loc, f"repeat count must not be negative, got {times}")
                if not body:
                    return
                if times > MAX_STATEMENTS:
                    self.fail(
                        count.loc,
                        f"repeat count {times:,} is too large: the model may unroll to at most"
                        f" {MAX_STATEMENTS:,} statements and {MAX_OPS:,} operations",
                    )
                for i in range(times):
                    ops, statements, nodes = self.n_ops, self.n_statements, self.n_nodes
                    scope.repeat_depth += 1
                    for inner in body:
                        self.statement(inner, scope, block)
                    scope.repeat_depth -= 1
                    if i == 0 and times > 1:
                        # Fail fast: predict the unrolled size from the first iteration.
                        self._check_unrolled(count.loc, times, ops, statements, nodes)
            case ast.Return(loc=loc):
                self.fail(loc, f"return must be the last statement of '{block.name}'")

    def bind(self, name: str, loc: SourceLoc, value, scope: Scope) -> None:
        if name in OPERATIONS or name in self.defs:
            self.fail(loc, f"'{name}' is an operation and cannot be assigned")
        if name in self.lets:
            self.fail(loc, f"'{name}' is a let constant and cannot be assigned")
        if isinstance(value, SSAValue) and isinstance(value.owner, Operation):
            value.name_hint = name
        scope.env[name] = value

    def param(self, stmt: ast.Param, scope: Scope) -> None:
        if stmt.name in scope.params:
            where = "the model" if not scope.prefix else f"'{scope.name}'"
            hint = (
                " (a param inside repeat is declared again on every iteration; declare it in a"
                " def block and call that block in the repeat)"
                if scope.repeat_depth else ""
            )
            self.fail(stmt.loc, f"param '{stmt.name}' is declared twice in {where}{hint}")
        if stmt.name in self.lets or stmt.name in OPERATIONS or stmt.name in self.defs:
            self.fail(stmt.loc, f"param '{stmt.name}' has the name of a constant or operation")
        scope.params.add(stmt.name)
        path = scope.prefix + stmt.name
        type_ = self.eval_type(stmt.type, scope)
        arg = self.block.insert_arg(type_, len(self.block.args))
        arg.location = loc_attr(stmt.loc)
        arg.name_hint = path
        self.arg_attrs.append(DictionaryAttr({PARAM_ATTR: StringAttr(path)}))
        self.param_paths[path] = stmt.loc
        scope.env[stmt.name] = arg

    # ----------------------------------------------------------------- model

    def model(self) -> ModuleOp:
        models = self.program.models
        if not models:
            self.fail(SourceLoc(self.filename, 1, 1), "the file has no 'model' block")
        if len(models) > 1:
            self.fail(models[1].loc, f"a file holds exactly one model; '{models[0].name}' is already defined")
        model = models[0]
        self._model = model
        self.check_recursion()
        for let in self.program.lets:
            # Every constant is checked, used or not (a cycle is an error).
            self.const(let.name, let.loc)
        scope = Scope(model.name, "")
        for arg in model.args:
            if arg.type is None:
                self.fail(arg.loc, "model arguments must be tensors (integer parameters belong to def blocks)")
            if arg.name in scope.env:
                self.fail(arg.loc, f"argument '{arg.name}' is declared twice")
            block_arg = self.block.insert_arg(self.eval_type(arg.type, scope), len(self.block.args))
            block_arg.location = loc_attr(arg.loc)
            block_arg.name_hint = arg.name
            self.arg_attrs.append(DictionaryAttr({INPUT_ATTR: StringAttr(arg.name)}))
            scope.env[arg.name] = block_arg
        for defn in self.defs.values():
            self.check_def_signature(defn)
        results = self.run_body(model, scope)
        self.check_unused_calls()
        ret = func.ReturnOp(*results)
        self.emit(ret, model.body[-1].loc)
        fn = func.FuncOp(
            model.name,
            ([a.type for a in self.block.args], [r.type for r in results]),
            Region(self.block),
            arg_attrs=ArrayAttr(self.arg_attrs),
        )
        fn.location = loc_attr(model.loc)
        return ModuleOp([fn])

    def batch(self) -> int | None:
        """
        The batch: the value of the `let` constant (named like a batch,
        `BATCH_NAMES`) that is the leading dim of every model input; None
        when the inputs do not share one.
        """
        model = self._model
        leading = {arg.type.dims[0].id if arg.type.dims and isinstance(arg.type.dims[0], ast.Name) else None
                   for arg in model.args if arg.type is not None}
        if len(leading) != 1:
            return None
        name = leading.pop()
        return self.const(name, model.loc) if name in BATCH_NAMES and name in self.lets else None

    def check_def_signature(self, defn: ast.Block) -> None:
        seen_int = False
        names: set[str] = set()
        for arg in defn.args:
            if arg.name in names:
                self.fail(arg.loc, f"argument '{arg.name}' is declared twice")
            names.add(arg.name)
            if arg.type is None:
                seen_int = True
            elif seen_int:
                self.fail(arg.loc, "tensor arguments must come before integer parameters")
            elif arg.type.dtype not in DTYPES:
                self.fail(arg.type.loc, f"unknown dtype '{arg.type.dtype}'{_suggest_dtype(arg.type.dtype)}")

    def check_unused_calls(self) -> None:
        """A def never called (or called only in `repeat 0`) still calls known operations: `check` says so."""
        for defn in self.defs.values():
            for callee, loc in _calls_in(defn.body):
                if callee not in self.defs and callee not in OPERATIONS:
                    known = list(OPERATIONS) + list(self.defs)
                    self.fail(loc, f"unknown operation '{callee}'{_suggest(callee, known)}")

    def check_recursion(self) -> None:
        calls = {name: list(_calls_in(defn.body)) for name, defn in self.defs.items()}
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            state[name] = 1
            for callee, loc in calls[name]:
                if callee not in self.defs:
                    continue
                if state.get(callee) == 1:
                    cycle = path[path.index(callee):] + [callee] if callee in path else [name, callee]
                    if len(cycle) == 2 and cycle[0] == cycle[1]:
                        self.fail(loc, f"'{callee}' calls itself: recursion between blocks is not allowed")
                    self.fail(loc, "recursion between blocks is not allowed: " + " -> ".join(cycle))
                if callee not in state:
                    visit(callee, path + [callee])
            state[name] = 2

        for name in self.defs:
            if name not in state:
                visit(name, [name])


def _calls_in(node):
    """Every (callee, location) of a call in a list of statements or an expression, in order."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if isinstance(item, ast.Call):
            yield item.func, item.loc
            children = list(item.args) + [kw.value for kw in item.kwargs]
        elif isinstance(item, ast.Node):
            children = [c for c in vars(item).values() if isinstance(c, ast.Node | list)]
        else:
            continue
        stack.extend(reversed(children))


def _names_in(expr: ast.Expr) -> list[ast.Name]:
    """The names an integer expression uses, in order."""
    names, stack = [], [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            names.append(node)
        elif isinstance(node, ast.Binary):
            stack += [node.rhs, node.lhs]
        elif isinstance(node, ast.Negate):
            stack.append(node.operand)
    return names


def _size(node: ast.Node) -> int:
    """
    Syntax nodes that executing `node` evaluates: a statement's expressions,
    or a block's signature (its argument and result types). A `repeat`
    counts only its count, its body counts as it runs; a block's body only
    when called.
    """
    size, stack = 0, [node]
    while stack:
        item = stack.pop()
        size += 1
        match item:
            case ast.Binary():
                stack += [item.lhs, item.rhs]
            case ast.Negate():
                stack.append(item.operand)
            case ast.Call():
                stack += item.args + [kw.value for kw in item.kwargs]
            case ast.ListExpr():
                stack += item.items
            case ast.TypeExpr():
                stack += item.dims
            case ast.Param():
                stack.append(item.type)
            case ast.Assign():
                stack.append(item.value)
            case ast.Return():
                stack += item.values
            case ast.Repeat():
                stack.append(item.count)
            case ast.Block():
                stack += [a.type for a in item.args if a.type is not None] + list(item.results or [])
    return size


def _binary_chain(expr: ast.Binary) -> tuple[ast.Expr, list[ast.Binary]]:
    """`a + b - c` as (`a`, [`+ b` node, `- c` node]): the left spine, innermost first."""
    chain = []
    node = expr
    while isinstance(node, ast.Binary):
        chain.append(node)
        node = node.lhs
    chain.reverse()
    return node, chain


def _unwrap_negations(expr: ast.Negate) -> tuple[ast.Expr, list[SourceLoc]]:
    """`--x` as (`x`, [loc of each '-', outermost first])."""
    signs = []
    node = expr
    while isinstance(node, ast.Negate):
        signs.append(node.loc)
        node = node.operand
    return node, signs


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2}


def _expr_text(expr: ast.Expr) -> str:
    """An expression as the user would write it (`D/H`, `2*D + 1`), for messages."""
    match expr:
        case ast.IntLit(value=v) | ast.FloatLit(value=v):
            return str(v)
        case ast.Name(id=n):
            return n
        case ast.StrLit(value=v):
            return f'"{v}"'
        case ast.ListExpr(items=items):
            return "[" + ", ".join(_expr_text(i) for i in items) + "]"
        case ast.Call(func=f):
            return f"{f}(...)"
        case ast.Negate():
            operand, signs = _unwrap_negations(expr)
            inner = _expr_text(operand)
            return "-" * len(signs) + (f"({inner})" if isinstance(operand, ast.Binary) else inner)
        case ast.Binary():
            first, chain = _binary_chain(expr)
            text = _expr_text(first)
            if len(chain) > 8:
                return f"{text} {chain[0].op} ... ({len(chain)} operators)"
            previous = None
            for node in chain:
                prec = _PRECEDENCE.get(node.op, 2)
                if previous is not None and previous < prec:
                    text = f"({text})"
                rhs = _expr_text(node.rhs)
                if isinstance(node.rhs, ast.Binary) and _PRECEDENCE.get(node.rhs.op, 2) <= prec:
                    rhs = f"({rhs})"
                text += f" {node.op} {rhs}" if prec == 1 else f"{node.op}{rhs}"
                previous = prec
            return text
    return "?"


def _count(n: int, noun: str) -> str:
    """`1 operand`, `2 operands`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _suggest(name: str, candidates) -> str:
    """`; did you mean 'x'?` for a close candidate (stricter for longer names)."""
    cutoff = 0.6 if len(name) <= 3 else 0.7
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=cutoff)
    return f"; did you mean '{close[0]}'?" if close else ""


_DTYPE_ALIASES = {
    "f64": "f32", "float64": "f32", "double": "f32", "float": "f32", "float32": "f32",
    "float16": "f16", "half": "f16", "bfloat16": "bf16",
    "int8": "i8", "int32": "i32", "int64": "i64", "int": "i32", "long": "i64",
}


def _suggest_dtype(name: str) -> str:
    """A dtype suggestion: common spellings (`float32`, `f64`), else a close one of the same kind."""
    if name in _DTYPE_ALIASES:
        return f"; did you mean '{_DTYPE_ALIASES[name]}'?"
    return _suggest(name, [d for d in DTYPES if d[:1] == name[:1]])
