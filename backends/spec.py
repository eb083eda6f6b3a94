"""
Device specs: the hardware figures the cost models read, loaded from data files.

Every device is one flat TOML file in `backends/specs/` (`h100.toml`, ...),
units in the key names (`clock_hz`, `hbm_bytes`, `hbm_bandwidth` in bytes/s,
`peak_flops_bf16` in FLOP/s, `launch_latency_s`), and every number followed by
a `# source: ...` comment naming its public source. `load_device(name)` reads a
shipped device; `load_device_file(path)` reads and validates a user's own;
`with_overrides(spec, ["array_rows=64"])` changes figures for a what-if run.

`tomllib` drops comments, so the values come from `tomllib` and the
`# source:` comments from a line scan of the same file (`DeviceSpec.sources`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

SPECS_DIR = Path(__file__).parent / "specs"

DEVICES: dict[str, Path] = {path.stem: path for path in sorted(SPECS_DIR.glob("*.toml"))}
"""Shipped device name -> its spec file."""

DEFAULT_DEVICE: dict[str, str] = {"gpu": "h100", "tpu": "tpu-v4", "lpu": "groq-lpu"}
"""The device each target is costed on unless the user picks another."""

TARGETS = ("gpu", "tpu", "lpu")

_COMMON_REQUIRED = ("name", "target", "clock_hz", "onchip_bytes")

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "gpu": _COMMON_REQUIRED + (
        "hbm_bytes", "hbm_bandwidth", "sms", "peak_flops_bf16", "peak_flops_fp16",
        "peak_flops_tf32", "peak_flops_fp32", "smem_per_sm_bytes", "regs_per_sm", "l2_bytes",
    ),
    "tpu": _COMMON_REQUIRED + (
        "hbm_bytes", "hbm_bandwidth", "array_rows", "array_cols", "num_arrays",
        "peak_flops_bf16", "vmem_bytes",
    ),
    "lpu": _COMMON_REQUIRED + (
        "sram_bytes", "sram_bandwidth", "mxm_rows", "mxm_cols", "peak_flops_fp16",
        "peak_ops_int8", "vector_lanes", "chip_to_chip_bandwidth",
    ),
}
"""Keys a spec file of each target must have (the cost models rely on them)."""

OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {
    "gpu": (
        "description", "max_clock_hz", "tensor_cores", "fp32_cores", "tensor_flop_per_cycle_per_sm",
        "peak_flops_fp8", "peak_ops_int8", "peak_flops_fp64", "peak_flops_fp64_tensor",
        "hbm_bandwidth_measured", "l2_bandwidth", "smem_per_block_bytes", "smem_bandwidth",
        "max_regs_per_thread", "max_threads_per_sm", "max_ctas_per_sm", "launch_latency_s",
        "nvlink_bandwidth", "pcie_bandwidth", "tdp_w",
    ),
    "tpu": (
        "description", "dataflow", "tensorcores", "mxus_per_tensorcore", "vreg_sublanes",
        "vreg_lanes", "vector_lanes", "vector_flops", "peak_ops_int8", "cmem_bytes",
        "ifmap_sram_bytes", "filter_sram_bytes", "ofmap_sram_bytes", "ici_links",
        "ici_link_bandwidth", "ici_ports", "ici_bandwidth", "pod_chips",
        "pod_bisection_bandwidth", "pod_allreduce_bandwidth", "power_mean_w",
        "launch_latency_s",
    ),
    "lpu": (
        "description", "max_clock_hz", "mxm_planes", "mxm_macs", "vector_alus", "superlanes",
        "lanes_per_superlane", "chip_to_chip_links", "chip_to_chip_link_bandwidth",
        "chip_to_chip_latency_s", "chip_to_chip_pair_links", "stream_bandwidth",
        "mxm_install_bandwidth", "pipeline_fill_cycles", "chips_per_node", "max_system_chips",
        "max_system_latency_s", "power_w",
    ),
}
"""Keys the cost models know beyond the required ones; overrides may set these too."""

INTEGER_KEYS = frozenset({
    "sms", "tensor_cores", "fp32_cores", "tensor_flop_per_cycle_per_sm", "regs_per_sm",
    "max_regs_per_thread", "max_threads_per_sm", "max_ctas_per_sm",
    "tensorcores", "mxus_per_tensorcore", "num_arrays", "array_rows", "array_cols",
    "vreg_sublanes", "vreg_lanes", "vector_lanes", "ici_links", "ici_ports", "pod_chips",
    "mxm_rows", "mxm_cols", "mxm_planes", "mxm_macs", "vector_alus", "superlanes",
    "lanes_per_superlane", "chip_to_chip_links", "chip_to_chip_pair_links", "chips_per_node",
    "max_system_chips", "pipeline_fill_cycles",
})
"""Counts: these must be whole numbers (bytes may be given as 1e9-style floats)."""

STRING_CHOICES: dict[str, tuple[str, ...]] = {"target": TARGETS, "dataflow": ("os", "ws", "is")}


class SpecError(ValueError):
    """A device spec file or override is missing, malformed or out of range."""


@dataclass(frozen=True, eq=False)
class DeviceSpec(Mapping[str, Any]):
    """
    One device's figures: a read-only mapping from spec key to value.

    `spec["clock_hz"]`, `spec.get("l2_bandwidth")`; `sources[key]` is the text
    of that key's `# source:` comment (absent when the file gives none).
    """

    name: str
    target: str
    values: Mapping[str, Any]
    """Every key of the file, `name` and `target` included."""
    sources: Mapping[str, str] = field(default_factory=dict)
    """Key -> the text after `# source:` on that key's line (or the override that set it)."""
    path: Path | None = None
    """The file it was read from (None when built in memory)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    def __getitem__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise KeyError(f"device spec {self.name!r} has no key {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceSpec):
            return NotImplemented
        return (self.name, self.target, dict(self.values)) == (other.name, other.target, dict(other.values))

    def __hash__(self) -> int:
        return hash((self.name, self.target, tuple(sorted(self.values.items()))))

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"DeviceSpec(name={self.name!r}, target={self.target!r}, {len(self.values)} keys{where})"

    def fingerprint(self) -> str:
        """
        A short stable hash of the values: part of a tuning-database key.
        """
        text = json.dumps(dict(sorted(self.values.items())), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _comment_start(text: str) -> int:
    """Index of the `#` that starts a TOML comment in `text`, or -1 (skips `#` in strings)."""
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
        i += 1
    return -1


_KEY_LINE = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=(.*)$")


def parse_sources(text: str) -> dict[str, str]:
    """
    Key -> source text of every `key = value  # source: ...` line of a flat TOML file.
    """
    sources: dict[str, str] = {}
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if not match:
            continue
        rest = match.group(2)
        start = _comment_start(rest)
        if start < 0:
            continue
        comment = rest[start + 1:].strip()
        if comment.lower().startswith("source:"):
            sources[match.group(1)] = comment[len("source:"):].strip()
    return sources


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(where: str, key: str, value: Any) -> Any:
    """Validate one value; returns it, with integral floats of count keys made ints."""
    if isinstance(value, str):
        choices = STRING_CHOICES.get(key)
        if choices and value not in choices:
            raise SpecError(f"{where}: key {key!r} must be one of {', '.join(choices)}, got {value!r}")
        if key in INTEGER_KEYS or key in _numeric_keys():
            raise SpecError(f"{where}: key {key!r} must be a number, got the string {value!r}")
        return value
    if not _is_number(value):
        kind = "a table" if isinstance(value, dict) else type(value).__name__
        raise SpecError(f"{where}: key {key!r} must be a positive number or a string, got {kind} "
                        f"(spec files are one flat table)")
    if key in STRING_CHOICES or key in ("name", "description"):
        raise SpecError(f"{where}: key {key!r} must be a string, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"{where}: key {key!r} must be a positive number, got {value!r}")
    if key in INTEGER_KEYS:
        if value != int(value):
            raise SpecError(f"{where}: key {key!r} is a count and must be a whole number, got {value!r}")
        return int(value)
    return value


@lru_cache(maxsize=1)
def _numeric_keys() -> frozenset[str]:
    known = {key for keys in (*REQUIRED_KEYS.values(), *OPTIONAL_KEYS.values()) for key in keys}
    return frozenset(known - set(STRING_CHOICES) - {"name", "description"})


def validate(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """
    Check a flat key -> value table as a spec; returns it with counts as ints.

    Raises `SpecError` naming `where` (the file) and the offending key: an
    unknown target, a missing required key, a non-positive or non-finite
    number, a fractional count, a nested table or array.
    """
    checked = {key: _check_value(where, key, value) for key, value in values.items()}
    target = checked.get("target")
    if target is None:
        raise SpecError(f"{where}: missing required key 'target' (one of {', '.join(TARGETS)})")
    name = checked.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{where}: missing required key 'name' (a non-empty string)")
    missing = [key for key in REQUIRED_KEYS[target] if key not in checked]
    if missing:
        raise SpecError(f"{where}: missing required key{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(key) for key in missing)} for target {target!r}")
    return checked


def load_device_file(path: str | Path) -> DeviceSpec:
    """
    Read and validate a device spec file (a shipped one or the user's own).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read device spec: {err.strerror or err}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: invalid TOML: {err}") from None
    values = validate(raw, str(path))
    sources = {key: src for key, src in parse_sources(text).items() if key in values}
    return DeviceSpec(values["name"], values["target"], values, sources, path)


@lru_cache(maxsize=None)
def _load_shipped(name: str) -> DeviceSpec:
    return load_device_file(DEVICES[name])


def load_device(name: str) -> DeviceSpec:
    """
    The shipped device `name` (a key of `DEVICES`), or the spec file at path `name`.
    """
    if name in DEVICES:
        return _load_shipped(name)
    if name.endswith(".toml") or Path(name).is_file():
        return load_device_file(name)
    raise SpecError(f"unknown device {name!r}; shipped devices: {', '.join(DEVICES)} "
                    f"(or give the path of a .toml spec file)")


def default_device(target: str) -> DeviceSpec:
    """The shipped device `target` is costed on by default (`DEFAULT_DEVICE`)."""
    if target not in DEFAULT_DEVICE:
        raise SpecError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return load_device(DEFAULT_DEVICE[target])


def _parse_number(text: str) -> int | float | None:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def with_overrides(spec: DeviceSpec, overrides: Iterable[str] | Mapping[str, Any]) -> DeviceSpec:
    """
    A copy of `spec` with `KEY=VALUE` overrides applied (`["array_rows=64", "clock_hz=1.5e9"]`).

    VALUE is parsed as an int, else a float (a string only for string keys
    such as `dataflow`). KEY must be a key of the spec or one the cost models
    know for its target; `name` and `target` cannot be changed. Raises
    `SpecError` for an unknown key (listing the valid ones), a malformed
    item, or a value the spec file itself could not hold (non-positive,
    fractional count, bad choice).
    """
    items = list(overrides.items()) if isinstance(overrides, Mapping) else None
    if items is None:
        items = []
        for item in overrides:
            key, sep, text = str(item).partition("=")
            if not sep or not key.strip():
                raise SpecError(f"{spec.name}: override {item!r} is not KEY=VALUE")
            items.append((key.strip(), text.strip()))
    valid = sorted((set(spec.values) | set(REQUIRED_KEYS[spec.target]) | set(OPTIONAL_KEYS[spec.target]))
                   - {"name", "target"})
    values = dict(spec.values)
    sources = dict(spec.sources)
    for key, raw in items:
        where = f"{spec.name}: override {key}={raw}"
        if key not in valid:
            raise SpecError(f"{where}: unknown key {key!r}; valid keys for {spec.target} "
                            f"device {spec.name!r}: {', '.join(valid)}")
        value = raw
        if isinstance(raw, str):
            number = _parse_number(raw)
            if number is not None:
                value = number
            elif not (key in STRING_CHOICES or isinstance(spec.values.get(key), str)):
                raise SpecError(f"{where}: value {raw!r} is not a number")
        value = _check_value(where, key, value)
        old = spec.values.get(key)
        values[key] = value
        sources[key] = f"override {key}={raw}" + (f" (was {old!r})" if old is not None else "")
    values = validate(values, f"{spec.name} with overrides")
    return DeviceSpec(spec.name, spec.target, values, sources, spec.path)
