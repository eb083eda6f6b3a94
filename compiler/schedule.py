"""
`--schedule KEY=VALUE`: pin a choice of the pipeline's passes by name.

A key is an option of a pass in the pipeline (`dataflow` of
lower-to-hardware, `chips`, `channels_last`, `attention`, ...), or one of the
aliases below; the value is parsed as that option's type. The pinned passes
are rebuilt with `dataclasses.replace`, so the choice lands in the IR as the
attributes those passes write, exactly as a tuned choice would.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from xdsl.passes import ModulePass

from strata.compiler.diagnostics import StrataError
from strata.dialects.vocabulary import DATAFLOWS

ALIASES = {"tile": "sizes", "tiles": "sizes", "loop_order": "order", "pp": "chips"}
"""Other names of options: `pp` (pipeline parallelism) is place-chips' `chips`."""


MAX_DEVICES = 65_536
"""The most devices (`--devices`, and each of `--schedule tp=, dp=, pp=`): past the largest machines built."""

MAX_THREADS = 256
"""The most threads a cpu kernel runs on (`--threads`, `--schedule threads=`)."""

DEVICE_COUNTS = ("tp", "dp", "pp")
"""Degrees of parallelism: device counts from 1 (`chips`, pp's pass option, also takes 0: as few as fit)."""


def parse_schedule(items: list[str]) -> dict[str, str]:
    schedule = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StrataError(f"error: --schedule expects KEY=VALUE, got '{item}'")
        if key in DEVICE_COUNTS and not (value.isdigit() and 1 <= int(value) <= MAX_DEVICES):
            raise StrataError(f"error: --schedule {key}={value}: tp and dp are device counts from 1 to"
                              f" {MAX_DEVICES:,} (and pp, the pipeline stages, too)")
        if key == "threads" and not (value.isdigit() and 1 <= int(value) <= MAX_THREADS):
            raise StrataError(f"error: --schedule threads={value}: a thread count is between 1 and {MAX_THREADS}")
        schedule[ALIASES.get(key, key)] = value
    return schedule


def _convert(pass_name: str, key: str, type_, text: str):
    options = [t for t in typing.get_args(type_) if t is not type(None)]
    if typing.get_origin(type_) in (typing.Union, types.UnionType) and len(options) == 1:
        type_ = options[0]  # an option that may be left unset (`channels_last`): set, it is of its type
    origin = typing.get_origin(type_)
    try:
        if type_ is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if type_ is int:
            return int(text)
        if origin is tuple:
            values = tuple(int(x) for x in text.split(",") if x.strip())
            if any(v < 0 for v in values):
                # tile sizes and loop orders alike: a negative one would silently mean what 0 means
                what = " (0 tiles a dim whole)" if key == "sizes" else ""
                raise StrataError(f"error: --schedule {key}={text}: {pass_name}'s option {key} takes whole numbers"
                                  f" from 0{what}")
            return values
        if key == "dataflow" and text not in DATAFLOWS:
            # off the systolic target the option is unused: a typo would pass unseen there
            raise StrataError(f"error: --schedule dataflow={text}: a systolic dataflow, one of {', '.join(DATAFLOWS)}")
        return text
    except ValueError:
        raise StrataError(f"error: --schedule {key}={text}: not a valid value for {pass_name}'s option {key}") from None


def apply_schedule(passes: list[ModulePass], schedule: dict[str, str]) -> list[ModulePass]:
    """`passes` with every option named in `schedule` set; unknown keys are errors."""
    used: set[str] = set()
    result = []
    for module_pass in passes:
        hints = typing.get_type_hints(type(module_pass))
        fields = {f.name for f in dataclasses.fields(module_pass)} - {"target"}
        changes = {
            key: _convert(module_pass.name, key, hints[key], value)
            for key, value in schedule.items() if key in fields
        }
        used |= set(changes)
        result.append(dataclasses.replace(module_pass, **changes) if changes else module_pass)
    unknown = sorted(set(schedule) - used)
    if unknown:
        valid = sorted(
            {f.name for p in passes for f in dataclasses.fields(p)} - {"target"} | set(ALIASES)
        )
        raise StrataError(
            f"error: --schedule {', '.join(unknown)}: no pass in the pipeline has such an option"
            f" (choices: {', '.join(valid)})"
        )
    return result
