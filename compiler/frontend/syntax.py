"""
Parse model-language text into a small typed AST.

The lark grammar (`model.lark`) is LALR(1); a postlexer drops newlines inside
parentheses and brackets, as in Python. Every AST node carries a `SourceLoc`.
Syntax errors become `ModelError`s that point at the offending token; this
module never lets a lark exception or a `RecursionError` escape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from strata.compiler.diagnostics import ModelError, SourceLoc

MAX_NESTING = 100
"""Deepest bracket nesting accepted; deeper input is rejected before parsing."""

MAX_TOKENS = 500_000
"""Longest file accepted, in tokens, counted before parsing: parsing takes some
25 us a token, and the largest real models have a few tens of thousands."""

_TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|[A-Za-z0-9_.]+|\S')
"""Roughly the lexer's tokens (a comment counts as one), cheap enough to count a huge file."""

KEYWORDS = frozenset({"let", "model", "def", "param", "return", "repeat"})
"""Reserved words: never usable as a name, even where the grammar would allow one."""

# --------------------------------------------------------------------------- AST


MAX_LITERAL_DIGITS = 4000
"""Longer integer literals are refused (no number the language uses has more digits)."""

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


class _Reserved(Exception):
    def __init__(self, tok: Token):
        self.tok = tok


_OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
_CLOSERS = {close: open_ for open_, close in _OPENERS.items()}


class _BracketNewlines:
    """
    Postlexer: drop newlines inside ( ) and [ ], merge repeated ones, reject
    keywords used as names, and remember the open brackets (`open`) so that
    a syntax error can name the one left unclosed.
    """

    always_accept = ("_NL",)

    def __init__(self):
        self.open: list[Token] = []

    def process(self, stream):
        self.open = []
        depth = 0
        last_nl = False
        for tok in stream:
            if tok.type in _OPENERS:
                self.open.append(tok)
                if len(self.open) > MAX_NESTING:
                    raise _TooDeep(tok)
                if tok.type != "LBRACE":
                    depth += 1
            elif tok.type in _CLOSERS:
                if self.open and self.open[-1].type == _CLOSERS[tok.type]:
                    self.open.pop()
                if tok.type != "RBRACE":
                    depth = max(0, depth - 1)
            elif tok.type == "NAME" and tok.value in KEYWORDS:
                raise _Reserved(tok)
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


class _ToAst(Transformer_NonRecursive):
    def __init__(self, filename: str):
        super().__init__()
        self.f = filename

    def _loc(self, tok: Token) -> SourceLoc:
        return _tok_loc(self.f, tok)

    @v_args(inline=True)
    def int_lit(self, tok):
        if len(tok) > MAX_LITERAL_DIGITS:
            # Python refuses to convert (and quadratically slows on) longer decimal strings.
            raise ModelError(self._loc(tok), f"an integer literal of {len(tok):,} digits is too long (at most"
                             f" {MAX_LITERAL_DIGITS:,})")
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
                    _expr_loc(child), "positional operand after a key=value attribute (operands come first)"
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


_POSTLEX = _BracketNewlines()
_PARSER = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer="contextual",
    propagate_positions=True,
    maybe_placeholders=True,
    postlex=_POSTLEX,
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


_EXPR_START = frozenset({"NAME", "INT", "FLOAT", "LPAR", "MINUS"})
_ATOM_START = _EXPR_START | {"STRING", "LSQB"}
_STATEMENT_START = frozenset({"LET", "MODEL", "DEF", "PARAM", "RETURN", "REPEAT", "RBRACE"})


_OPERATORS = frozenset({"PLUS", "MINUS", "STAR", "SLASH", "AT"})


def _expected(expected) -> str:
    """`; expected a, b or c`, grouping expression starts and operators."""
    wanted = {e for e in expected if e != "COMMENT"}
    lead, tail = [], []
    if _EXPR_START <= wanted:
        wanted -= _ATOM_START
        lead.append("an expression")
    if _OPERATORS <= wanted:
        wanted -= _OPERATORS
        lead.append("an operator")
    if "_NL" in wanted:
        wanted.discard("_NL")
        # A newline is worth naming beside an operator (`y = f(x) z`) or
        # alone (`} junk`); elsewhere it is noise.
        if "an operator" in lead or wanted <= {"$END"}:
            wanted.discard("$END")
            tail.append("end of line")
    names = lead + sorted({_TOKEN_NAMES.get(e, f"'{e.lower()}'") for e in wanted}) + tail
    if not names or len(names) > 6:
        return ""
    if len(names) == 1:
        return f"; expected {names[0]}"
    return f"; expected {', '.join(names[:-1])} or {names[-1]}"


def _unclosed(filename: str, bracket: Token, before: str) -> ModelError:
    return ModelError(_tok_loc(filename, bracket), f"'{bracket}' is never closed ({before})")


def _acceptable(err: UnexpectedInput) -> set[str]:
    """The tokens the parser would really accept (LALR's own list is approximate)."""
    parser = getattr(err, "interactive_parser", None)
    if parser is not None:
        try:
            return set(parser.accepts())
        except Exception:  # noqa: BLE001 - the approximate list is good enough
            pass
    return set(getattr(err, "expected", None) or [])


def _syntax_error(filename: str, source: str, err: UnexpectedInput) -> ModelError:
    lines = source.split("\n")
    open_brackets = list(_POSTLEX.open)
    if isinstance(err, UnexpectedCharacters):
        ch = source[err.pos_in_stream] if err.pos_in_stream < len(source) else ""
        what = f"character {ch!r}" if ch.isprintable() else f"character {ch!r} (not text)"
        return ModelError(SourceLoc(filename, err.line, err.column), f"unexpected {what}")
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        tok = err.token
        # A keyword or '}' inside ( ) or [ ]: the bracket was left open.
        inner = open_brackets[-1] if open_brackets else None
        if tok.type in _STATEMENT_START and inner is not None and inner.type in ("LPAR", "LSQB"):
            return _unclosed(filename, inner, f"{_describe_token(tok)} on line {tok.line} comes first")
        if tok.type in _OPERATORS and not lines[tok.line - 1][: tok.column - 1].strip():
            return ModelError(
                _tok_loc(filename, tok),
                f"unexpected {_describe_token(tok)} at the start of a line: a statement ends at"
                " the end of its line (wrap a long expression in parentheses to continue it)",
            )
        if tok.type in _CLOSERS and inner is not None and inner.type != _CLOSERS[tok.type]:
            return ModelError(
                _tok_loc(filename, tok),
                f"closing '{tok}' does not match the opening '{inner}' at line {inner.line}, column {inner.column}",
            )
        return ModelError(
            _tok_loc(filename, tok),
            f"unexpected {_describe_token(tok)}{_expected(_acceptable(err))}",
        )
    if open_brackets:
        return _unclosed(filename, open_brackets[-1], "the file ends first")
    # End of input: point just past the last non-blank character.
    line = len(lines)
    while line > 1 and not lines[line - 1].strip():
        line -= 1
    col = len(lines[line - 1].rstrip()) + 1
    return ModelError(SourceLoc(filename, line, col), f"unexpected end of file{_expected(_acceptable(err))}")


_LINE_BREAKS = re.compile("\r(?!\n)|[\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def display_source(source: str) -> str:
    """
    The source as error messages show it: characters that Python's
    `splitlines` (used to pick the quoted line) treats as line breaks, but
    the lexer does not, become spaces, so the quoted line and the caret
    match the reported line and column.
    """
    return _LINE_BREAKS.sub(" ", source)


def parse_program(source: str, filename: str) -> Program:
    """Parse model-language text; raise `ModelError` (with source) on a syntax error."""
    shown = display_source(source)
    too_many = next(islice(_TOKEN.finditer(source), MAX_TOKENS, None), None)
    if too_many is not None:
        # Refused before parsing: a megabyte one-line model took minutes to reach the op limit.
        offset = too_many.start()
        line = source.count("\n", 0, offset) + 1
        col = offset - (source.rfind("\n", 0, offset) + 1) + 1
        raise ModelError(
            SourceLoc(filename, line, col, len(too_many.group())),
            f"model too large: the file holds more than {MAX_TOKENS:,} tokens",
            shown,
        )
    try:
        return _ToAst(filename).transform(_PARSER.parse(source))
    except ModelError as err:
        raise err.with_source(shown) from None
    except VisitError as err:
        if isinstance(err.orig_exc, ModelError):
            raise err.orig_exc.with_source(shown) from None
        raise
    except _TooDeep as err:
        raise ModelError(
            _tok_loc(filename, err.tok), f"brackets nested more than {MAX_NESTING} deep", shown
        ) from None
    except _Reserved as err:
        raise ModelError(
            _tok_loc(filename, err.tok),
            f"'{err.tok}' is a keyword and cannot be used as a name",
            shown,
        ) from None
    except UnexpectedInput as err:
        raise _syntax_error(filename, source, err).with_source(shown) from None
    except RecursionError:
        raise ModelError(
            SourceLoc(filename, 1, 1), "expression nested too deeply to compile", shown
        ) from None
