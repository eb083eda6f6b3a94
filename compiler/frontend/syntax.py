"""
Parse model-language text into a small typed AST.

The lark grammar (`model.lark`) is LALR(1); a postlexer drops newlines inside
parentheses and brackets, as in Python. Every AST node carries a `SourceLoc`.
Syntax errors become `ModelError`s that point at the offending token; this
module never lets a lark exception or a `RecursionError` escape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from compiler.diagnostics import ModelError, SourceLoc

MAX_NESTING = 100
"""Deepest bracket nesting accepted; deeper input is rejected before parsing."""

# --------------------------------------------------------------------------- AST


@dataclass
class Node:
    loc: SourceLoc


@dataclass
class IntLit(Node):
    value: int


@dataclass
class FloatLit(Node):
    value: float


@dataclass
class StrLit(Node):
    value: str


@dataclass
class Name(Node):
    id: str


@dataclass
class Negate(Node):
    operand: Expr


@dataclass
class Binary(Node):
    op: str
    lhs: Expr
    rhs: Expr


@dataclass
class Keyword(Node):
    name: str
    value: Expr


@dataclass
class Call(Node):
    func: str
    args: list[Expr]
    kwargs: list[Keyword]


@dataclass
class ListExpr(Node):
    items: list[Expr]


Expr = IntLit | FloatLit | StrLit | Name | Negate | Binary | Call | ListExpr


@dataclass
class TypeExpr(Node):
    dtype: str
    dims: list[Expr]


@dataclass
class Arg(Node):
    name: str
    type: TypeExpr | None
    """`None` for an integer parameter (`n: int`)."""


@dataclass
class Param(Node):
    name: str
    type: TypeExpr


@dataclass
class Assign(Node):
    targets: list[tuple[str, SourceLoc]]
    value: Expr


@dataclass
class Repeat(Node):
    count: Expr
    body: list[Stmt]


@dataclass
class Return(Node):
    values: list[Expr]


Stmt = Param | Assign | Repeat | Return


@dataclass
class Let(Node):
    name: str
    value: Expr


@dataclass
class Block(Node):
    """A `model` or `def`: `loc` is the name; `end` the closing brace."""

    kind: str
    name: str
    args: list[Arg]
    results: list[TypeExpr] | None
    body: list[Stmt]
    end: SourceLoc


@dataclass
class Program:
    lets: list[Let] = field(default_factory=list)
    defs: list[Block] = field(default_factory=list)
    models: list[Block] = field(default_factory=list)


# --------------------------------------------------------------------------- lark glue


class _TooDeep(Exception):
    def __init__(self, tok: Token):
        self.tok = tok


class _BracketNewlines:
    """Postlexer: drop newlines inside ( ) and [ ], merge repeated ones."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        last_nl = False
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
                if depth > MAX_NESTING:
                    raise _TooDeep(tok)
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            if tok.type == "_NL":
                if depth > 0 or last_nl:
                    continue
                last_nl = True
            else:
                last_nl = False
            yield tok


def _tok_loc(filename: str, tok: Token) -> SourceLoc:
    return SourceLoc(filename, tok.line or 1, tok.column or 1, max(1, len(str(tok))))


_GRAMMAR = (Path(__file__).parent / "model.lark").read_text()


class _ToAst(Transformer):
    def __init__(self, filename: str):
        super().__init__()
        self.f = filename

    def _loc(self, tok: Token) -> SourceLoc:
        return _tok_loc(self.f, tok)

    @v_args(inline=True)
    def int_lit(self, tok):
        return IntLit(self._loc(tok), int(tok))

    @v_args(inline=True)
    def float_lit(self, tok):
        return FloatLit(self._loc(tok), float(tok))

    @v_args(inline=True)
    def string_lit(self, tok):
        return StrLit(self._loc(tok), str(tok)[1:-1])

    @v_args(inline=True)
    def name(self, tok):
        return Name(self._loc(tok), str(tok))

    @v_args(inline=True)
    def negate(self, minus, operand):
        return Negate(self._loc(minus), operand)

    @v_args(inline=True)
    def binary(self, lhs, op, rhs):
        return Binary(self._loc(op), str(op), lhs, rhs)

    @v_args(inline=True)
    def keyword(self, name, value):
        return Keyword(self._loc(name), str(name), value)

    def call(self, children):
        name, *rest = children
        args, kwargs = [], []
        for child in rest:
            if child is None:
                continue
            if isinstance(child, Keyword):
                kwargs.append(child)
            elif kwargs:
                raise ModelError(
                    _expr_loc(child), "positional operand after a key=value attribute"
                )
            else:
                args.append(child)
        return Call(self._loc(name), str(name), args, kwargs)

    def list(self, children):
        bracket, *items = children
        return ListExpr(self._loc(bracket), [i for i in items if i is not None])

    def shape(self, children):
        bracket, *dims = children
        return (self._loc(bracket), [d for d in dims if d is not None])

    @v_args(inline=True)
    def type(self, dtype, shape):
        return TypeExpr(self._loc(dtype), str(dtype), shape[1])

    def results(self, children):
        return list(children)

    @v_args(inline=True)
    def arg(self, name, type_name, shape):
        if shape is None:
            if str(type_name) != "int":
                raise ModelError(
                    self._loc(type_name),
                    f"expected a tensor type like 'f32[N, D]' or 'int', got '{type_name}'",
                )
            return Arg(self._loc(name), str(name), None)
        return Arg(self._loc(name), str(name), TypeExpr(self._loc(type_name), str(type_name), shape[1]))

    def args(self, children):
        return list(children)

    @v_args(inline=True)
    def param_stmt(self, kw, name, type_):
        return Param(self._loc(name), str(name), type_)

    def assign(self, children):
        *names, value = children
        targets = [(str(n), self._loc(n)) for n in names]
        return Assign(targets[0][1], targets, value)

    @v_args(inline=True)
    def repeat_stmt(self, kw, count, body):
        return Repeat(self._loc(kw), count, body[0])

    def return_stmt(self, children):
        kw, *values = children
        return Return(self._loc(kw), values)

    @v_args(meta=True)
    def body(self, meta, children):
        stmts = [c for c in children if c is not None]
        end = SourceLoc(self.f, meta.end_line, max(1, meta.end_column - 1))
        return (stmts, end)

    @v_args(inline=True)
    def let_def(self, kw, name, value):
        return Let(self._loc(name), str(name), value)

    def _block(self, kind, children):
        _kw, name, args, _arrow, results, body = children
        stmts, end = body
        return Block(self._loc(name), kind, str(name), args or [], results, stmts, end)

    def model_block(self, children):
        return self._block("model", children)

    def def_block(self, children):
        return self._block("def", children)

    def start(self, children):
        program = Program()
        for item in children:
            if isinstance(item, Let):
                program.lets.append(item)
            elif isinstance(item, Block) and item.kind == "def":
                program.defs.append(item)
            elif isinstance(item, Block):
                program.models.append(item)
        return program


def _expr_loc(expr) -> SourceLoc:
    return expr.loc


_PARSER = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer="contextual",
    propagate_positions=True,
    maybe_placeholders=True,
    postlex=_BracketNewlines(),
)

_TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "_NL": "a newline",
    "$END": "end of file",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "COLON": "':'",
    "EQUAL": "'='",
    "ARROW": "'->'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "AT": "'@'",
    "LET": "'let'",
    "MODEL": "'model'",
    "DEF": "'def'",
    "PARAM": "'param'",
    "REPEAT": "'repeat'",
    "RETURN": "'return'",
}


def _describe_token(tok: Token) -> str:
    if tok.type == "$END":
        return "end of file"
    if tok.type == "_NL":
        return "end of line"
    return f"'{tok}'"


def _expected(expected) -> str:
    # Newlines are only expected where a statement could end; listing them
    # beside real tokens reads as noise.
    wanted = [e for e in expected if e not in ("COMMENT", "_NL")] or list(expected)
    names = sorted({_TOKEN_NAMES.get(e, f"'{e.lower()}'") for e in wanted})
    if len(names) > 6:
        return ""
    return "; expected " + " or ".join(names) if names else ""


def _syntax_error(filename: str, source: str, err: UnexpectedInput) -> ModelError:
    lines = source.splitlines() or [""]
    if isinstance(err, UnexpectedCharacters):
        ch = source[err.pos_in_stream] if err.pos_in_stream < len(source) else ""
        what = f"character {ch!r}" if ch.isprintable() else f"character {ch!r} (not text)"
        return ModelError(SourceLoc(filename, err.line, err.column), f"unexpected {what}")
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        tok = err.token
        return ModelError(
            _tok_loc(filename, tok),
            f"unexpected {_describe_token(tok)}{_expected(err.expected)}",
        )
    # End of input: point just past the last non-blank character.
    line = len(lines)
    while line > 1 and not lines[line - 1].strip():
        line -= 1
    col = len(lines[line - 1].rstrip()) + 1
    expected = getattr(err, "expected", None) or []
    return ModelError(
        SourceLoc(filename, line, col),
        f"unexpected end of file{_expected(expected)} (is a '}}' or ')' missing?)",
    )


def parse_program(source: str, filename: str) -> Program:
    """Parse model-language text; raise `ModelError` (with source) on a syntax error."""
    try:
        return _ToAst(filename).transform(_PARSER.parse(source))
    except ModelError as err:
        raise err.with_source(source) from None
    except VisitError as err:
        if isinstance(err.orig_exc, ModelError):
            raise err.orig_exc.with_source(source) from None
        raise
    except _TooDeep as err:
        raise ModelError(
            _tok_loc(filename, err.tok), f"brackets nested more than {MAX_NESTING} deep", source
        ) from None
    except UnexpectedInput as err:
        raise _syntax_error(filename, source, err).with_source(source) from None
    except RecursionError:
        raise ModelError(
            SourceLoc(filename, 1, 1), "expression nested too deeply to compile"
        ) from None
