"""
The device description: one data file per machine, read once and carried by the IR.

Every device is one flat TOML file in `backends/specs/` (`h100.toml`, ...),
units in the key names (`clock_hz`, `hbm_bandwidth` in bytes/s,
`peak_flops_bf16` in FLOP/s, `smem_per_block_bytes`), and every number
followed by a `# source: ...` comment naming its public source. These files
are the only home of hardware facts: the figures the cost models price with
and the ones that shape the IR (the capacity kernel tiles must fit, layout
tiles, the preferred GEMM tile, tensor-core shapes).

- `load_device(name)` reads a shipped device, `load_device_file(path)` a
  user's own, `with_overrides(spec, ["array_rows=64"])` changes figures for a
  what-if run; all three validate and raise `SpecError` with the key at fault.
- `set_module_device(module, spec)` records the device on a module as MLIR's
  DLTI attribute (`dlti.target_system_spec`, one `dlti.target_device_spec`
  keyed by the target), and `module_device(module)` reads it back, so every
  pass, the tuner and the cost model read the same machine and a dump says
  which device it was lowered for.

`tomllib` drops comments, so the values come from `tomllib` and the
`# source:` comments from a line scan of the same file (`DeviceSpec.sources`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xdsl.dialects.builtin import ArrayAttr, DenseArrayBase, FloatAttr, IntegerAttr, ModuleOp, StringAttr, f64, i64
from xdsl.dialects.dlti import TargetDeviceSpecAttr, TargetSystemSpecAttr
from xdsl.ir import Attribute

from strata.dialects.vocabulary import DATAFLOWS, TARGETS

MAX_SPEC_BYTES = 1024 * 1024
"""A device spec is a page of TOML; a bigger file is not one (and is not read whole)."""

SPECS_DIR = Path(__file__).parent.parent / "backends" / "specs"
"""The shipped device files (they sit with the cost models that were calibrated on them)."""

DEVICES: dict[str, Path] = {path.stem: path for path in sorted(SPECS_DIR.glob("*.toml"))}
"""Shipped device name -> its spec file."""

DEFAULT_DEVICE: dict[str, str] = {"gpu": "h100", "tpu": "tpu-v4", "lpu": "groq-lpu", "cpu": "xeon-spr-2c"}
"""The device each target compiles for unless the user picks another."""

TILE_MEMORY: dict[str, str] = {
    "gpu": "smem_per_block_bytes", "tpu": "vmem_bytes", "lpu": "sram_bytes", "cpu": "l2_bytes_per_core",
}
"""Per target, the spec key of the memory one kernel's on-chip tiles must fit in."""

TILE_MEMORY_NAME: dict[str, str] = {"gpu": "shared memory per block", "tpu": "VMEM", "lpu": "SRAM", "cpu": "L2 cache per core"}

MEMORY: dict[str, str] = {"gpu": "hbm_bytes", "tpu": "hbm_bytes", "lpu": "sram_bytes", "cpu": "dram_bytes"}
"""Per target, the spec key of one device's memory: what its share of the weights and activations must fit."""

LAYOUT_TILE_KEYS: dict[str, tuple[str, ...]] = {
    "gpu": (),
    "tpu": ("vreg_sublanes", "vreg_lanes"),
    "lpu": ("vector_lanes",),
    "cpu": (),
}
"""Per target, the spec keys whose values tile a laid-out tensor's minor dims (none on the GPU)."""

_COMMON_REQUIRED = ("name", "target", "clock_hz", "preferred_gemm_tile")

REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "gpu": _COMMON_REQUIRED + (
        "hbm_bytes", "hbm_bandwidth", "sms", "peak_flops_bf16", "peak_flops_fp16",
        "peak_flops_tf32", "peak_flops_fp32", "smem_per_sm_bytes", "smem_per_block_bytes",
        "regs_per_sm", "l2_bytes",
    ),
    "tpu": _COMMON_REQUIRED + (
        "hbm_bytes", "hbm_bandwidth", "array_rows", "array_cols", "num_arrays",
        "peak_flops_bf16", "vmem_bytes", "vreg_sublanes", "vreg_lanes", "dataflow",
    ),
    "lpu": _COMMON_REQUIRED + (
        "sram_bytes", "sram_bandwidth", "mxm_rows", "mxm_cols", "peak_flops_fp16",
        "peak_ops_int8", "vector_lanes", "chip_to_chip_bandwidth",
    ),
    # A CPU's GEMM tiles are derived from its caches by `tile` (no preferred_gemm_tile
    # needed). Sizes per core are `_per_core`; bandwidths are bytes/s read, one core's
    # (`_per_core`) or the whole chip's; `fma_pipes` counts FMAs of `simd_lanes_f32`
    # lanes issued per clock (Zen 4's two 256-bit pipes are one 512-bit issue).
    "cpu": (
        "name", "target", "clock_hz", "cores", "simd_lanes_f32", "fma_pipes", "vector_registers",
        "peak_flops_fp32", "l1d_bytes_per_core", "l2_bytes_per_core", "l3_bytes", "l1_bandwidth_per_core",
        "l2_bandwidth_per_core", "l3_bandwidth", "dram_bandwidth", "dram_bytes",
    ),
}
"""Keys a spec file of each target must have (the passes and cost models rely on them)."""

OPTIONAL_KEYS: dict[str, tuple[str, ...]] = {
    "gpu": (
        "description", "max_clock_hz", "tensor_cores", "fp32_cores", "tensor_flop_per_cycle_per_sm",
        "peak_flops_fp8", "peak_ops_int8", "peak_flops_fp64", "peak_flops_fp64_tensor",
        "hbm_bandwidth_measured", "l2_bandwidth", "smem_bandwidth",
        "max_regs_per_thread", "max_threads_per_sm", "max_ctas_per_sm", "launch_latency_s", "graph_launch_latency_s",
        "nvlink_bandwidth", "pcie_bandwidth", "tdp_w", "gemm_efficiency", "gemm_fill_steps", "attention_efficiency",
        "attention_k_half", "mma_shape_f16", "mma_shape_bf16", "mma_shape_f32", "mma_shape_i8",
        "collective_bandwidth", "collective_step_latency_s", "collective_launch_latency_s",
        "sfu_exp_per_s", "attention_exp_overlap",
    ),
    "tpu": (
        "description", "tensorcores", "mxus_per_tensorcore",
        "vector_lanes", "vector_flops", "peak_ops_int8", "cmem_bytes",
        "ifmap_sram_bytes", "filter_sram_bytes", "ofmap_sram_bytes", "ici_links",
        "ici_link_bandwidth", "ici_ports", "ici_bandwidth", "pod_chips",
        "pod_bisection_bandwidth", "pod_allreduce_bandwidth", "power_mean_w",
        "launch_latency_s", "ici_hop_latency_s", "stationary_buffers",
    ),
    "lpu": (
        "description", "max_clock_hz", "mxm_planes", "mxm_macs", "vector_alus", "superlanes",
        "lanes_per_superlane", "chip_to_chip_links", "chip_to_chip_link_bandwidth",
        "chip_to_chip_latency_s", "chip_to_chip_pair_links", "stream_bandwidth",
        "mxm_install_bandwidth", "pipeline_fill_cycles", "chips_per_node", "max_system_chips",
        "max_system_latency_s", "power_w",
    ),
    "cpu": (
        "description", "preferred_gemm_tile", "max_clock_hz", "base_clock_hz", "l3_bandwidth_per_core",
        "dram_bandwidth_per_core", "l3_store_cost", "dram_store_cost", "dram_latency_s", "parallel_region_latency_s", "peak_flops_bf16", "dram_channels", "tdp_w",
        "link_bandwidth", "gemm_efficiency", "unpacked_gemm_efficiency", "cycles_per_flop", "cycles_per_map_byte",
        "cycles_per_map_op", "cycles_per_relayout_element", "cycles_per_product_vector", "cycles_per_product_element",
    ),
}
"""Keys the passes and cost models know beyond the required ones; overrides may set these too."""

INTEGER_KEYS = frozenset({
    "sms", "tensor_cores", "fp32_cores", "tensor_flop_per_cycle_per_sm", "regs_per_sm",
    "max_regs_per_thread", "max_threads_per_sm", "max_ctas_per_sm",
    "tensorcores", "mxus_per_tensorcore", "num_arrays", "array_rows", "array_cols",
    "vreg_sublanes", "vreg_lanes", "vector_lanes", "ici_links", "ici_ports", "pod_chips",
    "mxm_rows", "mxm_cols", "mxm_planes", "mxm_macs", "vector_alus", "superlanes",
    "lanes_per_superlane", "chip_to_chip_links", "chip_to_chip_pair_links", "chips_per_node",
    "max_system_chips", "pipeline_fill_cycles", "stationary_buffers",
    "smem_per_block_bytes", "smem_per_sm_bytes", "vmem_bytes", "sram_bytes",
    "cores", "simd_lanes_f32", "fma_pipes", "vector_registers", "l1d_bytes_per_core", "l2_bytes_per_core",
    "l3_bytes", "dram_channels",
})
"""Counts: these must be whole numbers (bytes may be given as 1e9-style floats)."""

SHAPE_KEYS: dict[str, int] = {
    "preferred_gemm_tile": 3, "mma_shape_f16": 3, "mma_shape_bf16": 3, "mma_shape_f32": 3, "mma_shape_i8": 3,
}
"""Keys whose value is a list of positive whole numbers, with its length."""

STRING_CHOICES: dict[str, tuple[str, ...]] = {"target": TARGETS, "dataflow": DATAFLOWS}

FIGURE_RANGE = (1e-12, 1e18)
"""
The range of every number of a spec. The shipped devices span 7.8e-7 (a
latency in s) to 2e15 (FLOP/s); far outside it (`clock_hz=1e308`,
`hbm_bandwidth=1e-308`) the cost models' products overflow to inf or their
cycle counts out of the IR's 64-bit integers.
"""

MAX_COUNT = 2**31
"""The largest count (`sms`, `array_rows`, `sram_bytes`): a product of two stays within 64 bits."""


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

    def __reduce__(self):
        """Pickled as its fields (a `MappingProxyType` does not pickle): for work in other processes."""
        return DeviceSpec, (self.name, self.target, dict(self.values), dict(self.sources), self.path)

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

    # What the passes read: named views of the file's figures, per target.

    @property
    def tile_memory_bytes(self) -> int:
        """Capacity of the memory one kernel's on-chip tiles must fit in (`TILE_MEMORY`)."""
        return self.values[TILE_MEMORY[self.target]]

    @property
    def memory_bytes(self) -> int:
        """One device's memory (`MEMORY`): HBM on a GPU or TPU, SRAM on an LPU, DRAM on a CPU."""
        return int(self.values[MEMORY[self.target]])

    def tile_memory_text(self) -> str:
        """`shared memory per block (smem_per_block_bytes = 232448 B) of h100`: for errors."""
        key = TILE_MEMORY[self.target]
        return f"{TILE_MEMORY_NAME[self.target]} ({key} = {self.values[key]} B) of {self.name}"

    @property
    def register_file_bytes(self) -> int:
        """A GPU SM's register file (`regs_per_sm` 32-bit registers): the most one CTA's accumulators can hold."""
        return 4 * self.values["regs_per_sm"]

    @property
    def layout_tile(self) -> tuple[int, ...]:
        """The tile of a laid-out tensor's minor dims: (8, 128) vregs on a TPU, 320-wide vectors on an LPU."""
        return tuple(self.values[key] for key in LAYOUT_TILE_KEYS[self.target])

    @property
    def gemm_tile(self) -> tuple[int, int, int]:
        """The preferred (M, N, K) tile of a GEMM on this device."""
        return tuple(self.values["preferred_gemm_tile"])

    def mma_shape(self, dtype: str) -> tuple[int, ...]:
        """
        A GPU's tensor-core instruction shape (m, n, k) for matmul operands
        of `dtype` (the dtype reaching the matmul, not the accumulator's);
        () if it has none. 8-bit and i4 integers issue the s8 shape; f8
        operands the same m16n8k32 (PTX ISA, mma.sync for .e4m3/.e5m2) where
        the GPU has FP8 tensor cores, else, converted to f16 in registers,
        the f16 one.
        """
        if dtype in ("ui8", "i4"):
            dtype = "i8"
        elif dtype in ("f8E4M3FN", "f8E5M2"):
            dtype = "i8" if "peak_flops_fp8" in self.values else "f16"
        return tuple(self.values.get(f"mma_shape_{dtype}", ()))


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


def _check_shape(where: str, key: str, value: Any) -> tuple[int, ...]:
    length = SHAPE_KEYS[key]
    if (
        not isinstance(value, (list, tuple)) or len(value) != length
        or not all(_is_number(v) and v == int(v) and v > 0 for v in value)
    ):
        raise SpecError(f"{where}: key {key!r} must be a list of {length} positive whole numbers, got {value!r}")
    return tuple(int(v) for v in value)


def _check_value(where: str, key: str, value: Any) -> Any:
    """Validate one value; returns it, with integral floats of count keys made ints."""
    if key in SHAPE_KEYS:
        return _check_shape(where, key, value)
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
                        f"(spec files are one flat table; lists only for {', '.join(SHAPE_KEYS)})")
    if key in STRING_CHOICES or key in ("name", "description"):
        raise SpecError(f"{where}: key {key!r} must be a string, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"{where}: key {key!r} must be a positive number, got {value!r}")
    if key in INTEGER_KEYS:
        if value != int(value):
            raise SpecError(f"{where}: key {key!r} is a count and must be a whole number, got {value!r}")
        if value > MAX_COUNT:
            raise SpecError(f"{where}: key {key!r} is a count of at most {MAX_COUNT:,} (2**31), got {value:g}")
        return int(value)
    low, high = FIGURE_RANGE
    if key.endswith("_bytes"):
        low = 1  # a memory of less than a byte holds nothing: no chip count could place a weight
    if not low <= value <= high:
        raise SpecError(f"{where}: key {key!r} must lie between {low:g} and {high:g} (the units of its name),"
                        f" got {value:g}")
    return value


@lru_cache(maxsize=1)
def _numeric_keys() -> frozenset[str]:
    known = {key for keys in (*REQUIRED_KEYS.values(), *OPTIONAL_KEYS.values()) for key in keys}
    return frozenset(known - set(STRING_CHOICES) - set(SHAPE_KEYS) - {"name", "description"})


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
    for small, large in AT_MOST:
        if small in checked and large in checked and checked[small] > checked[large]:
            raise SpecError(f"{where}: {small} = {checked[small]} is more than {large} = {checked[large]};"
                            f" change both")
    return checked


MEASURED_SHARES: dict[str, str] = {"hbm_bandwidth": "hbm_bandwidth_measured"}
"""Datasheet key -> the measured key the cost models read instead when a spec has both."""

AT_MOST: tuple[tuple[str, str], ...] = (
    ("smem_per_block_bytes", "smem_per_sm_bytes"), ("l1d_bytes_per_core", "l2_bytes_per_core"),
)
"""Pairs `(a, b)` a spec must keep `a <= b` in (one block's shared memory is part of its SM's; a core's L1 is
smaller than its L2)."""


def _read_spec_bytes(path: Path) -> bytes:
    """
    The bytes of a spec file. Anything but a regular file is refused before
    reading (a FIFO would block forever, `/dev/zero` never ends), and so is
    a file over `MAX_SPEC_BYTES`.
    """
    try:
        # Non-blocking, so that opening a FIFO with no writer returns at once.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise SpecError(f"{path}: cannot read device spec: {err.strerror or err}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecError(f"{path}: cannot read device spec: not a regular file; give a .toml file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SpecError(f"{path}: cannot read device spec: {err.strerror or err}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: cannot read device spec: larger than {MAX_SPEC_BYTES:,} bytes; give a .toml file")
    return data


def load_device_file(path: str | Path) -> DeviceSpec:
    """
    Read and validate a device spec file (a shipped one or the user's own).
    """
    path = Path(path)
    try:
        text = _read_spec_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: cannot read device spec: byte {err.start} is not UTF-8 text;"
                        f" give a .toml file") from None
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
    """The shipped device `target` compiles for by default (`DEFAULT_DEVICE`)."""
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
        if isinstance(raw, str) and key in SHAPE_KEYS:
            value = [_parse_number(part) for part in raw.strip("[]").split(",")]
        elif isinstance(raw, str):
            number = _parse_number(raw)
            if number is not None:
                value = number
            elif not (key in STRING_CHOICES or isinstance(spec.values.get(key), str)):
                raise SpecError(f"{where}: value {raw!r} is not a number")
        value = _check_value(where, key, value)
        old = spec.values.get(key)
        values[key] = value
        sources[key] = f"override {key}={raw}" + (f" (was {old!r})" if old is not None else "")
    given = {key for key, _ in items}
    for peak, measured in MEASURED_SHARES.items():
        # The cost model prices with the measured figure: an override of the
        # datasheet one scales it (keeping the measured share), else it would change nothing.
        if peak in given and measured in spec.values and measured not in given:
            share = spec.values[measured] / spec.values[peak]
            values[measured] = values[peak] * share
            sources[measured] = f"{share:.0%} of override {peak}={values[peak]!r} (was {spec.values[measured]!r})"
    values = validate(values, f"{spec.name} with overrides")
    return DeviceSpec(spec.name, spec.target, values, sources, spec.path)


# --------------------------------------------------------------------------- the device in the IR

DEVICE_ATTR = "dlti.target_system_spec"
"""The module attribute that records the device: `#dlti.target_system_spec<"gpu" = #dlti.target_device_spec<...>>`."""


def _entry(value: Any) -> Attribute:
    if isinstance(value, str):
        return StringAttr(value)
    if isinstance(value, tuple):
        return DenseArrayBase.from_list(i64, list(value))
    if isinstance(value, int):
        return IntegerAttr(value, i64)
    return FloatAttr(float(value), f64)


def _value(attr: Attribute) -> Any:
    if isinstance(attr, StringAttr):
        return attr.data
    if isinstance(attr, DenseArrayBase):
        return tuple(attr.get_values())
    if isinstance(attr, IntegerAttr):
        return attr.value.data
    if isinstance(attr, FloatAttr):
        return attr.value.data
    raise SpecError(f"device attribute entry {attr} is not a string, integer, float or array<i64>")


def device_attr(spec: DeviceSpec) -> TargetSystemSpecAttr:
    """The device as a DLTI system spec with one device, keyed by its target."""
    entries = {key: _entry(value) for key, value in spec.values.items()}
    return TargetSystemSpecAttr({spec.target: TargetDeviceSpecAttr(entries)})


def device_from_attr(attr: TargetSystemSpecAttr) -> DeviceSpec:
    """The `DeviceSpec` a module attribute records; validated as a spec file would be."""
    if len(attr.entries) != 1 or not isinstance(attr.entries.data[0].value, TargetDeviceSpecAttr):
        raise SpecError(f"'{DEVICE_ATTR}' must hold exactly one '#dlti.target_device_spec'")
    # Keyed by the device's own entries: xDSL 0.74's DLTI map attributes
    # compare equal whatever they hold, so neither map can be the key.
    return _device_from_entries(attr.entries.data[0].value.entries)


@lru_cache(maxsize=64)
def _device_from_entries(entries: ArrayAttr) -> DeviceSpec:
    values = {}
    for entry in entries:
        if not isinstance(entry.key, StringAttr):
            raise SpecError(f"'{DEVICE_ATTR}': device keys must be strings, got {entry.key}")
        values[entry.key.data] = _value(entry.value)
    values = validate(values, f"the module's '{DEVICE_ATTR}'")
    return DeviceSpec(values["name"], values["target"], values, {})


def module_device(module: ModuleOp) -> DeviceSpec | None:
    """The device recorded on `module`, or None."""
    attr = module.attributes.get(DEVICE_ATTR)
    if attr is None:
        return None
    if not isinstance(attr, TargetSystemSpecAttr):
        raise SpecError(f"'{DEVICE_ATTR}' must be a '#dlti.target_system_spec', got {attr}")
    return device_from_attr(attr)


def set_module_device(module: ModuleOp, spec: DeviceSpec) -> None:
    module.attributes[DEVICE_ATTR] = device_attr(spec)


def resolve_device(module: ModuleOp, target: str = "") -> DeviceSpec:
    """
    The device a pass lowers `module` for: the one recorded on it, else the
    default device of `target` (or of the GPU), which is then recorded.

    Raises `SpecError` when `target` is given and the module was lowered
    for a device of another target.
    """
    device = module_device(module)
    if device is None:
        device = default_device(target or "gpu")
        set_module_device(module, device)
    elif target and device.target != target:
        raise SpecError(
            f"the module is compiled for {device.target} device '{device.name}', not for target '{target}'"
        )
    return device
