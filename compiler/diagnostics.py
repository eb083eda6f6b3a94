"""
User-facing errors: one exception type the CLI turns into a clean message.

Every error a user can cause is a `StrataError`; the CLI prints its text and
exits with status 1, never a traceback. `ModelError` carries a location in a
`.model` file and formats as `FILE:LINE:COL: error: MESSAGE`, then the source
line and a caret under the offending token.
"""

from __future__ import annotations

from dataclasses import dataclass


class StrataError(Exception):
    """An error caused by the user's input; `str(err)` is the full message."""


@dataclass(frozen=True)
class SourceLoc:
    """A position in a model file: 1-based line and column, and token length."""

    file: str
    line: int
    col: int
    length: int = 1


class ModelError(StrataError):
    """An error at a location in a model file."""

    def __init__(self, loc: SourceLoc, message: str, source: str | None = None):
        self.loc = loc
        self.message = message
        self.source = source
        super().__init__(self.format())

    def with_source(self, source: str) -> ModelError:
        """The same error, formatted with the source line and caret."""
        return ModelError(self.loc, self.message, source)

    def format(self) -> str:
        """`FILE:LINE:COL: error: MESSAGE`, source line and caret when known."""
        loc = self.loc
        head = f"{loc.file}:{loc.line}:{loc.col}: error: {self.message}"
        line = source_line(self.source, loc.line) if self.source is not None else None
        if line is None:
            return head
        width = max(1, min(loc.length, len(line) - loc.col + 1))
        caret = " " * (loc.col - 1) + "^" + "~" * (width - 1)
        return f"{head}\n{line}\n{caret}"


def source_line(source: str, line: int) -> str | None:
    """The 1-based `line` of `source` with tabs expanded to one space each."""
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return None
    return lines[line - 1].replace("\t", " ")
