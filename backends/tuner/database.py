"""
The tuning database: every evaluated point, on disk, reused across runs.

One JSON object per line (JSON Lines), one line per evaluated point:

    {"format": 1, "kernel": "3f2a...", "target": "tpu", "device": "9c41...",
     "space_version": 1, "cost_model_version": "1",
     "point": {"tiles": [1, 128, 128, 64], "order": [0, 1, 2, 3]},
     "cost": 1.23e-05, "time": 1764000000.0}

`kernel` is `structural_hash` of the kernel, `device` the spec's
`DeviceSpec.fingerprint()` (every number of the device), `cost` seconds
(`null` for a point whose evaluation failed): the cost model's estimate.
A cpu estimate priced for more than one thread (`strata tune --target cpu
--threads N`) has `"threads"` (a record without it is of one thread). A
point timed by running it (`strata tune --measure`) also has
`"measured_time_s"` (the median seconds of native runs on this machine, on
the key's threads); records without it (older files) read as before, and
`lookup` ignores it. A lookup returns the costs whose kernel, target,
device, threads, space version and cost-model version all match exactly, so
a changed cost model, search space or thread count never reuses stale
figures.

Robustness: a line that is not JSON (corrupt, nested too deep, longer
than any record, or the truncated last line of a crashed writer), or not
a record of this format
(a cost that is not a positive number of seconds included), is skipped with
a `warnings.warn` naming the file and line; records from other space or
cost-model versions are skipped with one warning per file. Nothing in the
file ever raises.

Concurrency: a record is appended as one `os.write` of whole lines to a
file opened with `O_APPEND`, while holding an exclusive `fcntl.flock`;
readers take a shared lock, so they never see half a line. Locking is
POSIX-only: where `fcntl` is missing (Windows) appends fall back to the
single `O_APPEND` write, which keeps lines whole on local file systems but
is not guaranteed to. An append after a crashed writer's unterminated line
first ends that line, so the new record stays readable.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.backends.cost import COST_MODEL_VERSION
from strata.backends.tuner.space import SPACE_VERSION, normalise_point, point_key

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FORMAT = 1
"""The record format (the `format` field): bumped if the fields change."""

ENV_VAR = "STRATA_TUNING_DB"
MAX_LINE_WARNINGS = 10
"""Per read, individual warnings for bad lines; further ones are summed up."""


def default_path() -> Path:
    """
    `$STRATA_TUNING_DB` if set, else `$XDG_CACHE_HOME/strata/tuning.jsonl`,
    else `~/.cache/strata/tuning.jsonl`; its parent directory is created.
    """
    if os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR]).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(cache).expanduser() / "strata" / "tuning.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class TuningKey:
    """What a record must match exactly to be reused."""

    kernel: str
    """`structural_hash` of the kernel."""
    target: str
    device: str
    """`DeviceSpec.fingerprint()`."""
    threads: int = 1
    """cpu: the threads each kernel is priced (and timed) for (`--threads N`); 1 on the other targets."""
    space_version: int = SPACE_VERSION
    cost_model_version: str = COST_MODEL_VERSION


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "kernel": str,
    "target": str,
    "device": str,
    "space_version": int,
    "cost_model_version": str,
    "point": dict,
    "cost": (int, float, type(None)),
    "time": (int, float),
}


def _malformed(record: Any) -> str | None:
    """Why `record` is not a record of this format, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("format", FORMAT) != FORMAT:
        return f"record format {record.get('format')!r}, expected {FORMAT}"
    for name, kind in _FIELDS.items():
        if name not in record:
            return f"missing field '{name}'"
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"field '{name}' has the wrong type"
    cost = record["cost"]
    if cost is not None and not (math.isfinite(cost) and cost > 0):
        return f"cost {cost!r} is not a positive number of seconds"
    measured = record.get("measured_time_s")
    if measured is not None and (isinstance(measured, bool) or not isinstance(measured, (int, float))
                                 or not (math.isfinite(measured) and measured > 0)):
        return f"measured_time_s {measured!r} is not a positive number of seconds"
    threads = record.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        return f"threads {threads!r} is not a positive integer"
    return None


MAX_LINE_BYTES = 64 * 1024
"""A record is a few hundred bytes; a longer line is skipped unread (a file of one 5 GB line stays cheap)."""
MAX_BRACKETS = 64
"""A record opens 4 brackets; a line opening more is skipped before parsing: 100,000 nested ones would
overflow the C stack of `json` under the CLI's raised recursion limit."""


def _lines(handle) -> Iterator[tuple[int, bytes]]:
    """`(number, line)` of a binary file; a line over `MAX_LINE_BYTES` is cut there, the rest skipped unread."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:  # drop the rest of the long line, a bounded chunk at a time
                rest = handle.readline(MAX_LINE_BYTES)
                if not rest or rest.endswith(b"\n"):
                    break
        yield number, raw


def _oversized(raw: bytes) -> str | None:
    """Why `raw` is too big to be a record (checked before parsing it), or None."""
    if len(raw) > MAX_LINE_BYTES:
        return f"a line over {MAX_LINE_BYTES:,} bytes"
    if raw.count(b"[") + raw.count(b"{") > MAX_BRACKETS:
        return f"over {MAX_BRACKETS} brackets"
    return None


class TuningDatabase:
    """A JSON Lines tuning database at `path` (default: `default_path()`)."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = Path(path) if path is not None else default_path()

    # -- reading -------------------------------------------------------------

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """
        `(line number, record)` for every well-formed record, streaming
        (the file is read line by line, under a shared lock); lines that are
        not records of this format are skipped with a warning each.
        """
        try:
            handle = open(self.path, "rb")
        except FileNotFoundError:
            return
        bad = 0
        with handle, _locked(handle.fileno(), shared=True):
            for number, raw in _lines(handle):
                if not raw.strip():
                    continue
                try:
                    record, problem = None, _oversized(raw)
                    if problem is None:
                        record = json.loads(raw.decode("utf-8"))
                        problem = _malformed(record)
                except (UnicodeDecodeError, ValueError, RecursionError):
                    record, problem = None, "not valid JSON" + (
                        "" if raw.endswith(b"\n") else " (truncated last line)"
                    )
                if problem is not None:
                    bad += 1
                    if bad <= MAX_LINE_WARNINGS:
                        warnings.warn(f"{self.path}:{number}: skipped a tuning record: {problem}", stacklevel=2)
                    continue
                yield number, record
        if bad > MAX_LINE_WARNINGS:
            warnings.warn(f"{self.path}: skipped {bad} malformed lines in all", stacklevel=2)

    def load(self, keys: Iterable[TuningKey]) -> dict[TuningKey, dict[str, float]]:
        """
        For each key, `point_key -> cost` of its records, reading the file
        once (a later record of the same point wins; a failed point's cost is
        `inf`). Records of a space or cost-model version no key asks for are
        skipped with one warning.
        """
        wanted = {_key_tuple(k): k for k in keys}
        versions = {(k.space_version, k.cost_model_version) for k in wanted.values()}
        found: dict[TuningKey, dict[str, float]] = {k: {} for k in wanted.values()}
        stale: list[int] = []
        for number, record in self.records():
            if (record["space_version"], record["cost_model_version"]) not in versions:
                stale.append(number)
                continue
            key = wanted.get(_record_key(record))
            if key is not None:
                cost = record["cost"]
                found[key][point_key(record["point"])] = math.inf if cost is None else float(cost)
        if stale and versions:
            asked = ", ".join(f"space {s} / cost model {c}" for s, c in sorted(versions, key=str))
            warnings.warn(
                f"{self.path}:{stale[0]}: skipped {len(stale)} records of another space or "
                f"cost-model version (looking for {asked})",
                stacklevel=2,
            )
        return found

    def lookup(self, key: TuningKey) -> dict[str, float]:
        """`point_key -> cost` of the records matching `key` exactly."""
        return self.load([key])[key]

    def lookup_measured(self, key: TuningKey) -> dict[str, float]:
        """
        `point_key -> measured_time_s` of the timed records matching `key`
        exactly (its threads included); a later record of the same point wins.
        """
        found: dict[str, float] = {}
        wanted = _key_tuple(key)
        for _, record in self.records():
            if "measured_time_s" in record and _record_key(record) == wanted:
                found[point_key(record["point"])] = float(record["measured_time_s"])
        return found

    # -- writing -------------------------------------------------------------

    def record(self, key: TuningKey, point: Mapping[str, Any], cost: float, when: float | None = None) -> None:
        """Append one evaluated point."""
        self.record_many(key, [(point, cost)], when)

    def record_many(
        self, key: TuningKey, results: Iterable[tuple[Mapping[str, Any], float]], when: float | None = None
    ) -> None:
        """Append evaluated points, one line each, in one locked write."""
        stamp = time.time() if when is None else when
        self._append_lines([_line(key, point, cost, stamp) for point, cost in results])

    def record_measured(
        self, key: TuningKey, results: Iterable[tuple[Mapping[str, Any], float, float]], when: float | None = None,
    ) -> None:
        """Append timed points, `(point, estimate, measured seconds)` each, run on the key's threads."""
        stamp = time.time() if when is None else when
        measured = [
            _line(key, point, cost, stamp, {"measured_time_s": float(seconds)})
            for point, cost, seconds in results
        ]
        self._append_lines(measured)

    def _append_lines(self, lines: list[str]) -> None:
        if lines:
            self._append("".join(lines).encode("utf-8"))

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with _locked(fd, shared=False):
                size = os.fstat(fd).st_size
                if size and hasattr(os, "pread") and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # end a crashed writer's partial line
                while data:
                    written = os.write(fd, data)
                    data = data[written:]
        finally:
            os.close(fd)


def _key_tuple(key: TuningKey) -> tuple:
    return (key.kernel, key.target, key.device, key.threads, key.space_version, key.cost_model_version)


def _record_key(record: Mapping[str, Any]) -> tuple:
    """A record's `_key_tuple` (of one thread where it names none)."""
    return (record["kernel"], record["target"], record["device"], record.get("threads", 1),
            record["space_version"], record["cost_model_version"])


@contextmanager
def _locked(fd: int, shared: bool):
    """An advisory `flock` on `fd` for the block (nothing where fcntl is missing)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _line(key: TuningKey, point: Mapping[str, Any], cost: float, stamp: float,
          extra: Mapping[str, Any] | None = None) -> str:
    """One record as a JSON line: the key, the point, its estimate (null when not finite), `extra`, the time."""
    record = {
        "format": FORMAT,
        "kernel": key.kernel,
        "target": key.target,
        "device": key.device,
        **({"threads": key.threads} if key.threads != 1 else {}),
        "space_version": key.space_version,
        "cost_model_version": key.cost_model_version,
        "point": normalise_point(point),
        "cost": float(cost) if math.isfinite(cost) else None,
        **(extra or {}),
        "time": stamp,
    }
    return json.dumps(record, separators=(",", ":")) + "\n"
