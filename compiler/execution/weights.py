"""
Inputs and weights for executing a model: signatures, random values, `.npz` files.

A model is a `func.func` whose arguments are its inputs (`graph.input =
"name"`) and then its params (`graph.param = "path"`). `model_signature`
lists them as `ArgSpec`s; `random_values` invents values for them;
`load_npz` reads user-supplied ones and checks them against the signature;
`save_outputs` and `summarize` present the results.

Random values follow one rule that looks only at an argument's kind, dtype
and shape, never at its name or at the ops that use it:

- float params of rank >= 2: N(0, 1) / sqrt(fan_in), with fan_in the
  product of all dims but the first for rank 4 (a conv weight
  `[O, C/groups, KH, KW]`) and `shape[-2]` otherwise (the contracted dim of
  `x @ w` for `w: [..., K, N]`). A matmul or conv then maps unit-variance
  inputs to roughly unit-variance outputs, so values stay tame through deep
  networks (this is LeCun initialisation).
- float params of rank 0 or 1 (biases, norm scales and shifts): 1 + 0.1 *
  N(0, 1). Used as a scale this keeps a signal's magnitude; used as a shift
  it moves it by about one unit. Either way nothing grows with depth faster
  than linearly.
- float inputs: N(0, 1).
- quantized integer params (`i4`, `i8`, `u8`): uniform over the dtype's
  whole range (-8..7, -128..127, 0..255), as quantized weights are.
- other integer arguments: uniform in [0, n), where `n` is from `index_ranges`
  (see `integer_input_ranges`: the table size for gather ids), else 100,
  and never beyond the dtype's range.

`i4` values are held in int8 arrays (-8..7) and stored in `.npz` files the
same way, one int8 byte per value; `u8` as uint8.

Floats are drawn in float32 and rounded to the argument's dtype. The same
`rng` state and specs give the same values.

Every problem with a user's file is a `StrataError` whose message names the
file and the entry, never a traceback.
"""

from __future__ import annotations

import difflib
import os
import stat
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.dialects import func
from xdsl.ir import BlockArgument

from strata.compiler.execution import spmd
from strata.compiler.diagnostics import StrataError, open_output
from strata.compiler.execution.reference import (
    NUMPY_DTYPES,
    argument_names,
    convert,
    is_float_dtype,
    model_dtype_name,
    to_i4,
)
from strata.dialects.graph import ops as g
from strata.dialects.graph.kernel import KernelOp
from strata.dialects.graph.dtypes import FLOAT_DTYPES, INT_RANGES, QUANTIZED_INT_DTYPES, dtype_name
from strata.dialects.graph.shapes import fmt

DEFAULT_INT_RANGE = 100
"""Integer arguments not used as gather ids are drawn from [0, 100)."""

_FILE_LABEL = {"input": "inputs", "param": "weights"}


@dataclass(frozen=True)
class ArgSpec:
    """One model argument: its name (input name or param path), kind, shape and dtype."""

    name: str
    kind: str
    """`"input"` or `"param"`."""
    shape: tuple[int, ...]
    dtype: str
    """Model-language dtype name: `f32`, `bf16`, `i32`, ..."""

    @property
    def type_str(self) -> str:
        """The type as the model language writes it: `f32[768, 768]`."""
        return f"{self.dtype}{fmt(self.shape)}"

    @property
    def numpy_dtype(self) -> np.dtype:
        return NUMPY_DTYPES[self.dtype]


def model_signature(func_op: func.FuncOp) -> list[ArgSpec]:
    """The model's arguments, in argument order."""
    specs = []
    # A sharded program's arguments are one device's blocks; the model's are whole.
    shapes = spmd.whole_shapes(func_op)
    for (kind, name), arg, shape in zip(argument_names(func_op), func_op.body.block.args, shapes, strict=True):
        specs.append(ArgSpec(name, kind, shape, dtype_name(arg.type.element_type)))
    return specs


def integer_input_ranges(func_op: func.FuncOp) -> dict[str, int]:
    """
    For each integer argument used as the `ids` of a `graph.gather` (directly
    or through `graph.kernel` inputs),
    the smallest first dimension of the tables it indexes, by argument name.
    Values drawn below it are all valid ids.
    """
    names = [name for _, name in argument_names(func_op)]
    entry = func_op.body.block
    ranges: dict[str, int] = {}
    for op in func_op.walk():
        if not isinstance(op, g.GatherOp):
            continue
        ids = _through_kernels(op.ids)
        if isinstance(ids, BlockArgument) and ids.block is entry:
            name = names[ids.index]
            size = op.table.type.get_shape()[0]
            ranges[name] = min(size, ranges.get(name, size))
    return ranges


def _through_kernels(value):
    """Follow a `graph.kernel` block argument out to the value the kernel was given."""
    while isinstance(value, BlockArgument) and isinstance(value.block.parent_op(), KernelOp):
        value = value.block.parent_op().inputs[value.index]
    return value


# --------------------------------------------------------------------------- random values


def fan_in(shape: Sequence[int]) -> int:
    """Inputs feeding one output of a param of rank >= 2 (see the module docstring)."""
    if len(shape) == 4:
        return max(1, int(np.prod(shape[1:])))
    return max(1, shape[-2])


def random_value(spec: ArgSpec, rng: np.random.Generator, int_range: int = DEFAULT_INT_RANGE) -> np.ndarray:
    """A random value for one argument (the rule in the module docstring)."""
    dtype = spec.numpy_dtype
    if spec.dtype not in FLOAT_DTYPES:
        lo, hi = INT_RANGES[spec.dtype]
        if spec.kind == "param" and spec.dtype in QUANTIZED_INT_DTYPES:
            return np.asarray(rng.integers(lo, hi + 1, size=spec.shape, dtype=dtype))
        high = max(1, min(int_range, hi + 1))
        return np.asarray(rng.integers(0, high, size=spec.shape, dtype=dtype))
    x = rng.standard_normal(spec.shape, dtype=np.float32)
    if spec.kind == "param":
        if len(spec.shape) >= 2:
            x *= np.float32(1.0 / np.sqrt(fan_in(spec.shape)))
        else:
            x = np.float32(1.0) + np.float32(0.1) * x
    return convert(np.asarray(x), dtype)


def random_values(
    specs: Sequence[ArgSpec],
    rng: np.random.Generator,
    index_ranges: Mapping[str, int] | None = None,
) -> dict[str, np.ndarray]:
    """Random values for `specs`, by name, drawn in order from `rng`."""
    ranges = index_ranges or {}
    return {
        s.name: random_value(s, rng, ranges.get(s.name, DEFAULT_INT_RANGE)) for s in specs
    }


@dataclass
class BoundValues:
    """The values a run binds: inputs and weights by name, and which were drawn at random."""

    inputs: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    drawn: list[str]
    total: int


def bind_values(
    func_op: func.FuncOp,
    seed: int,
    given_inputs: Mapping[str, np.ndarray] | None = None,
    given_weights: Mapping[str, np.ndarray] | None = None,
) -> BoundValues:
    """
    Every input and weight of the model: the given ones, the others drawn
    from a generator seeded with `seed` (in signature order, so the same
    seed draws the same values whatever is given; integer inputs used as
    gather ids stay in range of their table).
    """
    specs = model_signature(func_op)
    given_inputs, given_weights = given_inputs or {}, given_weights or {}
    missing = [s for s in specs if s.name not in given_inputs and s.name not in given_weights]
    drawn = random_values(missing, np.random.default_rng(seed), integer_input_ranges(func_op))
    inputs = {s.name: given_inputs.get(s.name, drawn.get(s.name)) for s in specs if s.kind == "input"}
    params = {s.name: given_weights.get(s.name, drawn.get(s.name)) for s in specs if s.kind == "param"}
    return BoundValues(inputs, params, [s.name for s in missing], len(specs))


# --------------------------------------------------------------------------- npz files


def load_npz(
    path: str,
    specs: Sequence[ArgSpec],
    kind: str | None = None,
    *,
    allow_missing: bool = False,
) -> dict[str, np.ndarray]:
    """
    Read the `kind` ("input" or "param") arguments of `specs` from an `.npz`.

    Without `kind`, `specs` must all be of one kind, which is used (an empty
    `specs` accepts only an empty file).

    Each entry is converted to its argument's dtype (floats from any float
    or integer array, rounding; integers from integer arrays whose values
    fit). An entry the model does not have, a wrong shape, a dtype that does
    not convert, or a file that is not an `.npz` archive (or not a
    regular file: a FIFO, a device) raises
    `StrataError`; so does a missing entry unless `allow_missing`, in which
    case only the entries present are returned.
    """
    if kind is None:
        kinds = {s.kind for s in specs}
        if len(kinds) > 1:
            raise ValueError("load_npz needs `kind` when specs mix inputs and params")
        kind = kinds.pop() if kinds else None
    if kind is not None and kind not in _FILE_LABEL:
        raise ValueError(f"kind must be 'input' or 'param', not {kind!r}")
    where = f"error: {_FILE_LABEL.get(kind, 'arguments')} file {path}"
    wanted = {s.name: s for s in specs if s.kind == kind}
    with _open_npz(path, where) as archive:
        present = list(archive.files)
        _check_names(where, kind, present, wanted, allow_missing)
        values = {}
        for name, spec in wanted.items():
            if name in present:
                values[name] = _check_entry(where, spec, _read_entry(archive, name, where))
    return values


def _open_npz(path: str, where: str):
    # Only a regular file: np.load would block forever on a FIFO and read /dev/zero until memory runs out.
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise StrataError(f"{where}: no such file") from None
    except OSError as err:
        raise StrataError(f"{where}: cannot read it ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise StrataError(f"{where}: is a directory, not an .npz file")
    if not stat.S_ISREG(mode):
        raise StrataError(f"{where}: not a regular file; give the path of an .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise StrataError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise StrataError(f"{where}: is a directory, not an .npz file") from None
    except OSError as err:
        # NumPy reports content it cannot recognise as OSError too.
        reason = err.strerror or "not an .npz archive"
        raise StrataError(f"{where}: cannot read it ({reason})") from None
    except zipfile.BadZipFile as err:
        raise StrataError(f"{where}: not a valid .npz archive ({err})") from None
    except (ValueError, EOFError):
        # NumPy guesses that unknown content is a pickle; it is just not ours.
        raise StrataError(f"{where}: not a valid .npz archive") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise StrataError(f"{where}: holds a single .npy array, not an .npz archive of named arrays")
    return archive


def _read_entry(archive, name: str, where: str) -> np.ndarray:
    try:
        value = archive[name]
        if not isinstance(value, np.ndarray):
            # NpzFile hands back the raw bytes of a member that is no .npy.
            raise ValueError("not a NumPy array")
        return value
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise StrataError(f"{where}: '{name}' holds Python objects, not numbers") from None
        if "not a valid dtype descriptor" in str(err):
            # float8_e5m2 saved as is: its header names a dtype NumPy alone cannot rebuild.
            raise StrataError(f"{where}: '{name}' has a dtype NumPy cannot read back ({_ML_DTYPES_HINT})") from None
        raise StrataError(f"{where}: '{name}' is corrupt ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise StrataError(f"{where}: '{name}' is corrupt ({err})") from None


def _check_names(
    where: str, kind: str | None, present: Sequence[str], wanted: Mapping[str, ArgSpec], allow_missing: bool
) -> None:
    extra = [n for n in present if n not in wanted]
    if extra:
        name = extra[0]
        hint = difflib.get_close_matches(name, list(wanted), n=1)
        more = f" (and {len(extra) - 1} more entries)" if len(extra) > 1 else ""
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        noun = kind or "argument"
        raise StrataError(f"{where}: '{name}' is not {_article(kind)} {noun} of the model{suggestion}{more}")
    missing = [s for n, s in wanted.items() if n not in present]
    if missing and not allow_missing:
        listed = ", ".join(f"'{s.name}' ({s.type_str})" for s in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise StrataError(f"{where}: missing {listed}{more}")


def _article(kind: str | None) -> str:
    return "a" if kind == "param" else "an"


def _check_entry(where: str, spec: ArgSpec, value: np.ndarray) -> np.ndarray:
    if value.shape != spec.shape:
        raise StrataError(
            f"{where}: '{spec.name}' has shape {fmt(value.shape)}, the model needs {fmt(spec.shape)}"
        )
    target = spec.numpy_dtype
    src = value.dtype
    if is_float_dtype(target):
        ok = is_float_dtype(src) or src.kind in "biu"
    else:
        ok = src.kind in "biu" and _fits(value, INT_RANGES[spec.dtype])
    if not ok:
        lo, hi = INT_RANGES.get(spec.dtype, (None, None))
        raise StrataError(
            f"{where}: '{spec.name}' has dtype {src}, which does not convert to {spec.dtype}"
            + (f" (values out of range: {spec.dtype} holds {lo}..{hi})" if src.kind in "biu" else "")
            # bf16 and most float8s saved as is come back as raw bytes.
            + (f" ({_ML_DTYPES_HINT})" if src.kind == "V" else "")
        )
    return to_i4(value) if spec.dtype == "i4" else convert(value, target)


_ML_DTYPES_HINT = "an ml_dtypes array saved as is? save it widened to float32, as strata run -o does"


def _fits(value: np.ndarray, bounds: tuple[int, int]) -> bool:
    if value.size == 0 or value.dtype.kind == "b":
        return True
    return int(value.min()) >= bounds[0] and int(value.max()) <= bounds[1]


# --------------------------------------------------------------------------- outputs


def save_outputs(path: str, outputs: Sequence[np.ndarray]) -> None:
    """
    Write outputs to an `.npz` at exactly `path`, as `out0`, `out1`, ...

    The ml_dtypes floats (bf16, every float8) are widened to float32,
    exactly, since NumPy cannot read them back without ml_dtypes (f16 stays);
    `load_npz` converts them back to the argument's dtype.
    """
    save_npz(path, {f"out{i}": value for i, value in enumerate(outputs)}, "outputs")


def save_npz(path: str, values: Mapping[str, np.ndarray], label: str = "weights") -> None:
    """
    Write named arrays (weights by param path, or outputs) to an `.npz` that
    `load_npz` reads back exactly: ml_dtypes floats widened to float32, `i4`
    as its int8 bytes (one per value), everything else as is.
    """
    arrays = {}
    for name, value in values.items():
        value = np.asarray(value)
        # User-defined dtypes are the ml_dtypes ones; whether they report kind 'f'
        # (float8_e5m2) or 'V' (bfloat16), the .npy header cannot name them.
        if value.dtype.isbuiltin == 2:
            value = value.astype(np.float32)
        arrays[name] = value
    try:
        with open_output(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as err:
        raise StrataError(f"error: cannot write {label} file {path}: {err.strerror or err}") from None


def _dtype_label(dtype: np.dtype) -> str:
    try:
        return model_dtype_name(dtype)
    except ValueError:
        return str(dtype)


def summarize(outputs: Sequence[np.ndarray]) -> str:
    """
    One line per output: `out0: f32[64, 10] mean=... std=... min=... max=...`.

    Statistics are over the finite values; NaN and infinity counts are
    appended when there are any.
    """
    lines = []
    for i, value in enumerate(outputs):
        value = np.asarray(value)
        head = f"out{i}: {_dtype_label(value.dtype)}{fmt(value.shape)}"
        x = value.astype(np.float64).ravel()
        finite = x[np.isfinite(x)]
        if finite.size:
            head += (
                f" mean={finite.mean():.6g} std={finite.std():.6g}"
                f" min={finite.min():.6g} max={finite.max():.6g}"
            )
        elif x.size == 0:
            head += " (empty)"
        nans, infs = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        if nans:
            head += f" nan={nans}"
        if infs:
            head += f" inf={infs}"
        lines.append(head)
    return "\n".join(lines)
