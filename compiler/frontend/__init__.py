"""
The model-language frontend: text to verified graph IR.

`compile_source` and `load_model` parse a `.model` file, elaborate it into a
`builtin.module` with one `func.func` (see `elaborate`), and verify it. Every
error in the user's file surfaces as a `ModelError` with the source line.
"""

from __future__ import annotations

from xdsl.dialects.builtin import IntegerAttr, ModuleOp

from strata.compiler.diagnostics import ModelError, SourceLoc, read_regular_file
from strata.compiler.frontend.elaborate import Elaborator
from strata.compiler.frontend.syntax import display_source, parse_program
from strata.dialects.vocabulary import BATCH_ATTR, MODEL_FLOPS_ATTR

MAX_SOURCE_BYTES = 16 * 1024 * 1024


def compile_source(source: str, filename: str, overrides: dict[str, int] | None = None) -> ModuleOp:
    """Parse and elaborate model text into verified graph IR."""
    program = parse_program(source, filename)
    elaborator = None
    try:
        elaborator = Elaborator(program, filename, overrides or {})
        module = elaborator.model()
    except ModelError as err:
        raise err.with_source(display_source(source)) from None
    except RecursionError:
        loc = elaborator.last_loc if elaborator is not None else SourceLoc(filename, 1, 1)
        raise ModelError(loc, "model nested too deeply to compile", display_source(source)) from None
    module.verify()
    _record_model_facts(module, elaborator.batch())
    return module


def _record_model_facts(module: ModuleOp, batch: int | None) -> None:
    """The graph's FLOPs and the batch (when known) on the module, for reports at any later stage."""
    from strata.compiler.reports.stats import model_stats

    module.attributes[MODEL_FLOPS_ATTR] = IntegerAttr(model_stats(module).flops, 64)
    if batch is not None:
        module.attributes[BATCH_ATTR] = IntegerAttr(batch, 64)


def read_source(path: str) -> str:
    """Read a model file as text; unreadable or non-UTF-8 input is a located error."""
    data = read_regular_file(path, MAX_SOURCE_BYTES, "model file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        # Show the line with the bad bytes as U+FFFD, the caret under the first.
        shown = display_source(data.decode("utf-8", errors="replace"))
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, err.start) + 1
        col = len(data[line_start : err.start].decode("utf-8")) + 1
        raise ModelError(
            SourceLoc(path, line, col),
            f"the file is not UTF-8 text (byte 0x{data[err.start]:02x}); is it a model file?",
            shown,
        ) from None
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise ModelError(
            SourceLoc(path, line, col),
            "the file contains a NUL byte; is it a model file?",
            display_source(text.replace("\x00", "\ufffd")),
        ) from None
    return text


def load_model(path: str, overrides: dict[str, int] | None = None) -> ModuleOp:
    """Read, parse and elaborate a `.model` file."""
    return compile_source(read_source(path), path, overrides)
