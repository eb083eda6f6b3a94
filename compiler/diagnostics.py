"""
User-facing errors: one exception type the CLI turns into a clean message.

Every error a user can cause is a `StrataError`; the CLI prints its text and
exits with status 1, never a traceback. `ModelError` carries a location in a
`.model` file and formats as `FILE:LINE:COL: error: MESSAGE`, then the source
line and a caret under the offending token. A long line is cut around the
caret, and control characters show as U+FFFD, so a message stays short and
never writes raw control bytes to the terminal.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_SHOWN = 4096
"""A quoted line up to this long is shown whole; a longer one (a generated
one-line model can be megabytes) is cut `SHOWN_AROUND` columns after the
caret's token and, when the caret is further right than this, as far before it."""
SHOWN_AROUND = 80

_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


class StrataError(Exception):
    """An error caused by the user's input; `str(err)` is the full message."""


class UnreadableFile(StrataError):
    """A file strata cannot or will not read; `reason` says why, without the path."""

    def __init__(self, path: str | Path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"error: cannot read {path}: {reason}")


def read_regular_file(path: str | Path, limit: int, what: str = "file") -> bytes:
    """
    The bytes of `path`, at most `limit` of them. Anything but a regular
    file is refused before reading: a FIFO would block forever and
    `/dev/zero` never ends. Raises `UnreadableFile` (a `StrataError`) whose
    reason names `what` the user meant to give (a model file, a device spec).
    """
    try:
        # Non-blocking, so that opening a FIFO with no writer returns at once.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise UnreadableFile(path, err.strerror or str(err)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableFile(path, f"not a regular file; give the path of a {what}")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise UnreadableFile(path, err.strerror or str(err)) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnreadableFile(path, f"larger than {limit:,} bytes; is it a {what}?")
    return data


def open_output(path: str | Path, mode: str = "w"):
    """
    `path` opened for writing (`mode` "w" or "wb"), created or truncated, as
    `open` would; but a FIFO that no process reads is an `OSError` (ENXIO,
    "a FIFO that no process reads") instead of blocking forever. A FIFO with
    a reader (`-o >(gzip > x.gz)`) and devices such as /dev/stdout still work.
    """
    import errno

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NONBLOCK", 0), 0o666)
    except OSError as err:
        if err.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "a FIFO that no process reads; start its reader first or give a file") from None
        raise
    os.set_blocking(fd, True)
    return os.fdopen(fd, mode) if "b" in mode else os.fdopen(fd, mode, encoding="utf-8")


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
        line, col, width = _clip(line, loc.col, width)
        caret = " " * (col - 1) + "^" + "~" * (width - 1)
        return f"{head}\n{line}\n{caret}"


def _clip(line: str, col: int, width: int) -> tuple[str, int, int]:
    """
    `line`, cut as `MAX_SHOWN` says (each cut marked `...`), and the caret's
    column and width in what is shown.
    """
    if len(line) <= MAX_SHOWN:
        return line, col, width
    end = min(len(line), col - 1 + min(width, SHOWN_AROUND) + SHOWN_AROUND)
    start = 0 if col <= MAX_SHOWN else col - 1 - SHOWN_AROUND
    before = "..." if start > 0 else ""
    after = "..." if end < len(line) else ""
    width = max(1, min(width, end - col + 1))
    return before + line[start:end] + after, col - start + len(before), width


def source_line(source: str, line: int) -> str | None:
    """
    The 1-based `line` of `source` with tabs as one space each and other
    control characters as U+FFFD (one column each, so the caret still lines up).
    """
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return None
    return _CONTROL.sub("\ufffd", lines[line - 1].replace("\t", " "))
