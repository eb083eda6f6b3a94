"""
IR plumbing shared by the driver: the context with every dialect, printing,
parsing and verifying with errors that point at source locations.

Printing always includes locations by default (`loc(...)`), so a dump read
back by `strata opt` or `strata compile` keeps pointing into the `.model`
file. Parse and verify failures become `StrataError`s, never tracebacks.
"""

from __future__ import annotations

import io

from xdsl.context import Context
from xdsl.dialects import get_all_dialects
from xdsl.dialects.builtin import FileLineColLoc, FusedLoc, ModuleOp
from xdsl.ir import Operation
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import DiagnosticException, ParseError, VerifyException

from strata.compiler.diagnostics import StrataError, _clip, read_regular_file, source_line
from strata.dialects.graph import Graph
from strata.dialects.hardware import HARDWARE_DIALECTS
from strata.dialects.loop import Loop
from strata.passes._linalg import PrefetchOp

STRATA_DIALECTS = (Graph, Loop, *HARDWARE_DIALECTS)

MAX_QUOTED_SOURCE_BYTES = 16 * 1024 * 1024
"""The largest source file an error about an op quotes a line of (a model file is at most this)."""


def make_context() -> Context:
    """A context with xDSL's upstream dialects (lazily) and strata's own."""
    ctx = Context()
    for name, factory in get_all_dialects().items():
        if name not in {d.name for d in STRATA_DIALECTS}:
            ctx.register_dialect(name, factory)
    for dialect in STRATA_DIALECTS:
        ctx.load_dialect(dialect)
    # Upstream's `memref.prefetch`, which xDSL's memref dialect lacks: the
    # MLIR export emits it, and a printed export is read back.
    ctx.load_op(PrefetchOp)
    return ctx


def print_module(module: Operation, debuginfo: bool = True) -> str:
    """Print in the custom format, with `loc(...)` unless `debuginfo` is off."""
    out = io.StringIO()
    Printer(stream=out, print_debuginfo=debuginfo).print_op(module)
    out.write("\n")
    return out.getvalue()


def parse_module(text: str, filename: str, ctx: Context | None = None) -> ModuleOp:
    """Parse and verify IR text; errors say `FILE:LINE:COL: error: ...`."""
    ctx = ctx or make_context()
    parser = _Parser(ctx, text, filename)
    try:
        module = parser.parse_module()
    except ParseError as err:
        raise _located(text, filename, err.span, err.msg) from None
    except (VerifyException, DiagnosticException, ValueError) as err:
        # An attribute that fails its own checks while being parsed
        # (`#graph.layout<[0, 0]>`, `dataflow = 7`, `tile_sizes = "64"`):
        # xDSL raises without a place. Point at the token the parser stopped
        # on, just after the attribute, when it is still on the line of the op
        # being parsed; else (an op with regions) at the op's first token.
        here = parser._current_token.span
        op_start = getattr(err, "strata_op_span", here)
        span = here if here.get_location().line == op_start.get_location().line else op_start
        message = str(err).split("\n")[0]
        raise _located(text, filename, span, f"invalid attribute: {message}") from None
    verify_module(module)
    return module


class _Parser(Parser):
    """xDSL's parser, noting on an exception raised inside an op where that (innermost) op began."""

    def parse_operation(self) -> Operation:
        start = self._current_token.span
        try:
            return super().parse_operation()
        except (VerifyException, DiagnosticException, ValueError) as err:
            if not hasattr(err, "strata_op_span"):
                err.strata_op_span = start
            raise


def _located(text: str, filename: str, span, message: str) -> StrataError:
    """`FILE:LINE:COL: error: MESSAGE`, the line (control characters shown as U+FFFD) and a caret under `span`."""
    loc = span.get_location()
    line = source_line(text, loc.line) or ""
    width = max(1, min(span.end - span.start, len(line) - loc.col + 1))
    line, col, width = _clip(line, loc.col, width)
    caret = " " * (col - 1) + "^" + "~" * (width - 1)
    return StrataError(f"{filename}:{loc.line}:{loc.col}: error: {message}\n{line}\n{caret}")


def location_text(op: Operation) -> str | None:
    """`file:line:col` of an op's (first) source location, if it has one."""
    loc = op.location
    while isinstance(loc, FusedLoc):
        if not loc.locations.data:
            return None
        loc = loc.locations.data[0]
    if isinstance(loc, FileLineColLoc):
        return f"{loc.filename.data}:{loc.line.data}:{loc.column.data}"
    return None


def op_error(op: Operation, message: str) -> StrataError:
    """An error at `op`: its source location and source line when readable."""
    where = location_text(op)
    head = f"{where}: error: '{op.name}' {message}" if where else f"error: '{op.name}' {message}"
    if where:
        file, line, col = where.rsplit(":", 2)
        try:
            # The location comes from the IR, maybe an edited dump: read a regular file only, and boundedly.
            text = source_line(read_regular_file(file, MAX_QUOTED_SOURCE_BYTES).decode("utf-8"), int(line))
        except (StrataError, UnicodeDecodeError, ValueError):
            text = None
        if text is not None:
            head += f"\n{text}\n{' ' * (int(col) - 1)}^"
    return StrataError(head)


def verify_module(module: Operation) -> None:
    """Verify; on failure name the first failing op and its source location."""
    try:
        module.verify()
        return
    except (VerifyException, DiagnosticException, ValueError):
        pass
    for op in module.walk():
        try:
            op.verify_()
            op.verify(verify_nested_ops=False)
        except (VerifyException, DiagnosticException, ValueError) as err:
            message = str(err).split("\n")[0].removeprefix("Operation does not verify: ")
            raise op_error(op, f"op failed to verify: {message}") from None
    raise StrataError("error: the module does not verify")
