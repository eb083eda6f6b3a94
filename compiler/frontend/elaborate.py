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

from compiler.diagnostics import ModelError, SourceLoc, StrataError
from compiler.frontend import syntax as ast
from compiler.frontend.operations import (
    OPERATIONS,
    REQUIRED,
    OpContext,
    Scalar,
    build_binary,
    build_matmul,
    build_unary,
)
from dialects.graph import INPUT_ATTR, PARAM_ATTR
from dialects.graph import shapes
from dialects.graph.dtypes import DTYPES, tensor_type, type_str

MAX_OPS = 1_000_000
"""More graph ops than this is an error, so a huge `repeat` cannot hang us."""
MAX_ELEMENTS = 2**48
"""Largest tensor (in elements) a model may declare or compute."""

Value = SSAValue | Scalar | int


def loc_attr(loc: SourceLoc) -> FileLineColLoc:
    """The IR location of a source position."""
    return FileLineColLoc(StringAttr(loc.file), IntAttr(loc.line), IntAttr(loc.col))


@dataclass
class Scope:
    """Names visible in one model or block instance."""

    name: str
    prefix: str
    """Path of this instance's params: `""` in the model, `attn.0.` in a block."""
    env: dict[str, Value] = field(default_factory=dict)
    calls: Counter = field(default_factory=Counter)
    params: set[str] = field(default_factory=set)


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
        for name in overrides:
            if name not in self.lets:
                known = ", ".join(sorted(self.lets)) or "none"
                raise StrataError(
                    f"error: -D {name}: '{name}' is not a let constant of {filename}"
                    f" (its constants: {known})"
                )
        self.overrides = overrides
        self.consts: dict[str, int] = {}
        self._resolving: list[str] = []
        self.block = IRBlock()
        self.arg_attrs: list[DictionaryAttr] = []
        self.param_paths: dict[str, SourceLoc] = {}
        self.n_ops = 0

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
                self.fail(loc, f"result {type_str(result.type)} has {count} elements, more than {MAX_ELEMENTS}")
        self.block.add_op(op)
        self.n_ops += 1
        if self.n_ops > MAX_OPS:
            self.fail(loc, f"model too large: more than {MAX_OPS} operations (check repeat counts)")
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
        value = self.eval_int(self.lets[name].value, Scope("let", ""))
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
            case ast.Negate(operand=operand):
                return -self.eval_int(operand, scope)
            case ast.Binary(op=op, lhs=lhs, rhs=rhs, loc=loc):
                a, b = self.eval_int(lhs, scope), self.eval_int(rhs, scope)
                if op == "+":
                    return a + b
                if op == "-":
                    return a - b
                if op == "*":
                    return a * b
                if op == "/":
                    if b == 0:
                        self.fail(loc, "division by zero")
                    if a % b:
                        self.fail(loc, f"{a} is not divisible by {b} (integer division must be exact)")
                    return a // b
                self.fail(loc, f"'{op}' is not an integer operator")
            case ast.FloatLit(value=value, loc=loc):
                self.fail(loc, f"expected an integer, got {value}")
        self.fail(expr.loc, "expected an integer expression")

    def eval_float(self, expr: ast.Expr, scope: Scope) -> float:
        match expr:
            case ast.FloatLit(value=value) | ast.IntLit(value=value):
                return float(value)
            case ast.Name(id="inf") if self.lookup_optional("inf", scope) is None:
                return math.inf
            case ast.Name():
                return float(self.eval_int(expr, scope))
            case ast.Negate(operand=operand):
                return -self.eval_float(operand, scope)
            case ast.Binary(op=op, lhs=lhs, rhs=rhs, loc=loc) if op in "+-*/":
                a, b = self.eval_float(lhs, scope), self.eval_float(rhs, scope)
                if op == "/" and b == 0:
                    self.fail(loc, "division by zero")
                return {"+": a + b, "-": a - b, "*": a * b}.get(op, a / b if b else 0.0)
        self.fail(expr.loc, "expected a number")

    def eval_attr(self, expr: ast.Expr, kind: str, scope: Scope, key: str):
        if kind == "int":
            return self.eval_int(expr, scope)
        if kind == "float":
            return self.eval_float(expr, scope)
        if kind == "ints":
            if isinstance(expr, ast.ListExpr):
                return tuple(self.eval_int(item, scope) for item in expr.items)
            return (self.eval_int(expr, scope),)
        if kind == "bool":
            if isinstance(expr, ast.Name) and expr.id in ("true", "false"):
                return expr.id == "true"
            self.fail(expr.loc, f"{key} must be true or false")
        if kind == "dtype":
            if isinstance(expr, ast.Name | ast.StrLit):
                name = expr.id if isinstance(expr, ast.Name) else expr.value
                if name in DTYPES:
                    return name
            self.fail(expr.loc, f"{key} must be one of {', '.join(DTYPES)}")
        raise AssertionError(kind)

    def eval_type(self, texpr: ast.TypeExpr, scope: Scope) -> TensorType:
        if texpr.dtype not in DTYPES:
            hint = _suggest(texpr.dtype, DTYPES)
            self.fail(texpr.loc, f"unknown dtype '{texpr.dtype}' (dtypes: {', '.join(DTYPES)}){hint}")
        dims = [self.eval_int(d, scope) for d in texpr.dims]
        for d, dim in zip(texpr.dims, dims):
            if dim <= 0:
                self.fail(d.loc, f"dimension must be positive, got {dim}")
        if shapes.num_elements(dims) > MAX_ELEMENTS:
            self.fail(texpr.loc, f"type has more than {MAX_ELEMENTS} elements")
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
            self.fail(loc, f"'{name}' is an operation; call it as {name}(...)")
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
            case ast.Negate(operand=operand, loc=loc):
                value = self.eval_one(operand, scope)
                if isinstance(value, Scalar):
                    return [Scalar(-value.value, loc)]
                return [build_unary(self.op_context(loc, "unary '-'"), "neg", value)]
            case ast.Binary(op=op, lhs=lhs, rhs=rhs, loc=loc):
                a, b = self.eval_one(lhs, scope), self.eval_one(rhs, scope)
                ctx = self.op_context(loc, f"'{op}'")
                if op == "@":
                    return [build_matmul(ctx, a, b)]
                if isinstance(a, Scalar) and isinstance(b, Scalar):
                    return [self.fold(op, a, b, loc)]
                return [build_binary(ctx, op, a, b)]
            case ast.Call():
                return self.call(expr, scope)
            case ast.ListExpr(loc=loc):
                self.fail(loc, "a list is only allowed as an attribute value or an operand of concat/reshape")
            case ast.StrLit(loc=loc):
                self.fail(loc, "a string is only allowed as an attribute value")
        self.fail(expr.loc, "unsupported expression")

    def fold(self, op: str, a: Scalar, b: Scalar, loc: SourceLoc) -> Scalar:
        if op == "/":
            if b.value == 0:
                self.fail(loc, "division by zero")
            return Scalar(a.value / b.value, loc)
        return Scalar({"+": a.value + b.value, "-": a.value - b.value, "*": a.value * b.value}[op], loc)

    def call(self, call: ast.Call, scope: Scope) -> list[SSAValue | Scalar]:
        if call.func in self.defs:
            return self.inline(self.defs[call.func], call, scope)
        spec = OPERATIONS.get(call.func)
        if spec is None:
            known = list(OPERATIONS) + list(self.defs)
            self.fail(call.loc, f"unknown operation '{call.func}'{_suggest(call.func, known)}")
        required = sum(1 for kind in spec.operands if not kind.endswith("?"))
        if not required <= len(call.args) <= len(spec.operands):
            count = f"{required}" if required == len(spec.operands) else f"{required} to {len(spec.operands)}"
            hint = f" (did you mean {spec.hint}?)" if spec.hint else ""
            self.fail(call.loc, f"{call.func} takes {count} operands, got {len(call.args)}{hint}")
        operands = [
            self.operand(kind, expr, scope, call.func)
            for kind, expr in zip(spec.operands, call.args)
        ]
        operands += [None] * (len(spec.operands) - len(operands))
        attrs = {}
        for kw in call.kwargs:
            if kw.name not in spec.attrs:
                expected = ", ".join(spec.attrs) or "none"
                self.fail(kw.loc, f"unknown attribute '{kw.name}' for {call.func} (attributes: {expected})")
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
                f"'{defn.name}' takes {len(tensor_args)} tensor arguments"
                + (f" and {len(int_args)} integers" if int_args else "")
                + f", got {len(call.args)} positional arguments",
            )
        values = [self.eval_one(e, caller) for e in call.args[: len(tensor_args)]]
        ints: dict[str, int] = {}
        for arg, expr in zip(int_args, call.args[len(tensor_args):]):
            ints[arg.name] = self.eval_int(expr, caller)
        int_names = {a.name for a in int_args}
        for kw in call.kwargs:
            if kw.name not in int_names:
                self.fail(kw.loc, f"'{defn.name}' has no integer parameter '{kw.name}'")
            if kw.name in ints:
                self.fail(kw.loc, f"integer parameter '{kw.name}' is given twice")
            ints[kw.name] = self.eval_int(kw.value, caller)
        for arg in int_args:
            if arg.name not in ints:
                self.fail(call.loc, f"'{defn.name}' needs its integer parameter {arg.name}=...")

        index = caller.calls[defn.name]
        caller.calls[defn.name] += 1
        scope = Scope(defn.name, f"{caller.prefix}{defn.name}.{index}.", dict(ints))
        for arg, value, expr in zip(tensor_args, values, call.args):
            self.bind_arg(defn, arg, value, expr.loc, scope)
        return self.run_body(defn, scope)

    def bind_arg(self, defn: ast.Block, arg: ast.Arg, value, loc: SourceLoc, scope: Scope) -> None:
        """Bind shape names of `arg`'s declared type from the actual `value`."""
        if isinstance(value, Scalar):
            self.fail(loc, f"argument '{arg.name}' of '{defn.name}' must be a tensor, got a literal")
        actual = tuple(value.type.get_shape())
        texpr = arg.type
        declared = f"{texpr.dtype}[{', '.join(_expr_text(d) for d in texpr.dims)}]"
        mismatch = (
            f"argument '{arg.name}' of '{defn.name}' must be {declared}, got {type_str(value.type)}"
        )
        if len(texpr.dims) != len(actual) or texpr.dtype != type_str(value.type).split("[")[0]:
            self.fail(loc, mismatch)
        for dim, size in zip(texpr.dims, actual):
            if isinstance(dim, ast.Name) and self.lookup_optional(dim.id, scope) is None:
                scope.env[dim.id] = size
        for dim, size in zip(texpr.dims, actual):
            if self.eval_int(dim, scope) != size:
                self.fail(loc, f"{mismatch} ({_expr_text(dim)} = {self.eval_int(dim, scope)})")
        scope.env[arg.name] = value

    def run_body(self, block: ast.Block, scope: Scope) -> list[SSAValue]:
        body = block.body
        if not body or not isinstance(body[-1], ast.Return):
            self.fail(block.end, f"'{block.name}' must end with a return statement")
        for stmt in body[:-1]:
            self.statement(stmt, scope, block)
        ret = body[-1]
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

    def statement(self, stmt: ast.Stmt, scope: Scope, block: ast.Block) -> None:
        match stmt:
            case ast.Param():
                self.param(stmt, scope)
            case ast.Assign(targets=targets, value=expr):
                values = self.eval_multi(expr, scope)
                if len(values) != len(targets):
                    self.fail(
                        stmt.loc,
                        f"{len(targets)} names are assigned, but the right-hand side gives {len(values)} values",
                    )
                for (name, loc), value in zip(targets, values):
                    self.bind(name, loc, value, scope)
            case ast.Repeat(count=count, body=body, loc=loc):
                times = self.eval_int(count, scope)
                if times < 0:
                    self.fail(count.loc, f"repeat count must not be negative, got {times}")
                for _ in range(times):
                    for inner in body:
                        if isinstance(inner, ast.Return):
                            self.fail(inner.loc, "return is not allowed inside repeat")
                        self.statement(inner, scope, block)
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
            self.fail(stmt.loc, f"param '{stmt.name}' is declared twice in {where} (a param inside repeat is declared once per iteration; move it into a def block)")
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
        self.check_recursion()
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
                self.fail(arg.type.loc, f"unknown dtype '{arg.type.dtype}'{_suggest(arg.type.dtype, DTYPES)}")

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
                    self.fail(loc, "recursion between blocks: " + " -> ".join(cycle))
                if callee not in state:
                    visit(callee, path + [callee])
            state[name] = 2

        for name in self.defs:
            if name not in state:
                visit(name, [name])


def _calls_in(node):
    """Every (callee, location) of a call in a list of statements or an expression."""
    if isinstance(node, list):
        for item in node:
            yield from _calls_in(item)
        return
    if isinstance(node, ast.Call):
        yield node.func, node.loc
        for arg in node.args:
            yield from _calls_in(arg)
        for kw in node.kwargs:
            yield from _calls_in(kw.value)
        return
    for child in vars(node).values() if isinstance(node, ast.Node) else ():
        if isinstance(child, ast.Node | list):
            yield from _calls_in(child)


def _expr_text(expr: ast.Expr) -> str:
    match expr:
        case ast.IntLit(value=v) | ast.FloatLit(value=v):
            return str(v)
        case ast.Name(id=n):
            return n
        case ast.Negate(operand=o):
            return f"-{_expr_text(o)}"
        case ast.Binary(op=op, lhs=l, rhs=r):
            return f"{_expr_text(l)}{op}{_expr_text(r)}"
    return "?"


def _suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""
