"""
NumPy reference executor of graph IR: the semantic oracle of the compiler.

`run_function` evaluates a `func.func` of `graph` ops op by op on NumPy
arrays; `run_module` binds a model's inputs and weights by name first. Every
compiled artefact is checked against what this module computes, so it favours
clarity and faithfulness to the spec and the op docstrings over speed, while staying fast
enough for real models (a ResNet-18 at 224x224 runs in seconds: convolutions
use im2col and one BLAS matmul per layer).

Semantics, beyond the op docstrings and the model-language spec:

- Values are NumPy arrays whose dtype is `numpy_dtype` of the IR element type
  (`bf16` is `ml_dtypes.bfloat16`, `f8e4m3` is `ml_dtypes.float8_e4m3fn`, ...).
- Float ops compute in float32 whatever the operand dtype, then round the
  result to the op's result dtype (round to nearest even), once per op. This
  is what hardware with f32 accumulation does, and it makes the oracle
  independent of how NumPy would handle low-precision types. `erf` and `gelu`
  compute in float64 (an fdlibm rational approximation, below).
- f8e4m3 has no infinities: a value that overflows it, or an infinity, rounds
  to NaN (ml_dtypes' non-saturating conversion), except the `-inf` written by
  `causal_mask`, which becomes the lowest finite value (-448) so a masked
  softmax still works.
- Integer arithmetic wraps modulo 2**bits. Integer division truncates toward
  zero; division by zero gives 0. Integer `pow` with a negative exponent gives
  the truncated real result (`1`, `+-1` for base -1, else 0). Integer `mean`
  and `avgpool2d` truncate toward zero.
- Float to integer conversion truncates toward zero, saturates at the
  integer range and maps NaN to 0 (ONNX leaves these cases undefined).
- `i4` values are held in int8 arrays with values -8..7 (arithmetic on
  them wraps modulo 16, float to `i4` saturates at -8..7); `u8` in uint8.
- Quantization follows ONNX exactly: `quantize` rounds `x / scale`
  (computed in f32) half to even, adds the zero point and saturates to the
  dtype's range (f8: to the largest finite value); `dequantize` computes
  `(q - zero_point) * scale` in f32 and rounds once; an integer `matmul` or
  `conv2d` into `i32` sums the products exactly (int64) and wraps to 32 bits,
  as MatMulInteger/ConvInteger do.
- Floating-point exceptions (overflow, 0/0, log of a negative) give the IEEE
  result (inf, NaN) silently.

Guarantees: every result has exactly the op's declared shape and dtype (a
mismatch raises `ExecutionError`); inputs are never modified; an op without a
handler raises `UnsupportedOpError` naming the op and its location. Region
ops such as `graph.kernel` have a handler that evaluates their body with
`run_block`, so fused IR computes exactly what the unfused IR did.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import ml_dtypes
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import (
    ArrayAttr,
    DictionaryAttr,
    FileLineColLoc,
    MemRefType,
    ModuleOp,
    StringAttr,
    TensorType,
    UnknownLoc,
)
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.traits import IsTerminator

from strata.compiler.diagnostics import StrataError
from strata.compiler.execution import spmd
from strata.dialects.graph import INPUT_ATTR, PARAM_ATTR
from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import INT_RANGES, dtype_name
from strata.dialects.graph.kernel import KernelOp
from strata.dialects.graph.layout import RelayoutOp, layout_of, physical_shape
from strata.dialects.graph.shapes import fmt

# --------------------------------------------------------------------------- errors


class ExecutionError(StrataError):
    """The reference executor could not evaluate the IR or its arguments."""


class UnsupportedOpError(ExecutionError):
    """The IR holds an operation the reference executor has no handler for."""


# --------------------------------------------------------------------------- dtypes

NUMPY_DTYPES: dict[str, np.dtype] = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "f8e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "f8e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "i8": np.dtype(np.int8),
    "u8": np.dtype(np.uint8),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    # After i8, so that an int8 array reads back as i8 (`model_dtype_name`).
    "i4": np.dtype(np.int8),
}
"""NumPy dtype of each model-language dtype name (`i4` is held in int8, values -8..7)."""

_LOW_PRECISION = frozenset(NUMPY_DTYPES[n] for n in ("f16", "bf16", "f8e4m3", "f8e5m2"))
_FLOAT_DTYPES = frozenset(NUMPY_DTYPES[n] for n in ("f32", "f16", "bf16", "f8e4m3", "f8e5m2"))


def numpy_dtype(element_type: Attribute) -> np.dtype:
    """NumPy dtype of an xDSL element type (`f32` -> float32, `bf16` -> bfloat16)."""
    try:
        return NUMPY_DTYPES[dtype_name(element_type)]
    except ValueError as err:
        raise ExecutionError(f"error: {err}") from None


def model_dtype_name(dtype: np.dtype) -> str:
    """Model-language name of one of the `NUMPY_DTYPES` (`float32` -> `f32`)."""
    for name, candidate in NUMPY_DTYPES.items():
        if candidate == dtype:
            return name
    raise ValueError(f"NumPy dtype {dtype} is not a strata dtype")


def is_float_dtype(dtype: np.dtype) -> bool:
    """Whether a NumPy dtype is a float, counting the ml_dtypes ones (kind 'V')."""
    return np.dtype(dtype) in _FLOAT_DTYPES or np.dtype(dtype).kind == "f"


def convert(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """
    Convert `value` to `dtype` with the executor's rounding rules.

    Floats round to nearest even; float to integer truncates toward zero,
    saturates and maps NaN to 0; integer to integer wraps. Returns `value`
    itself when it already has `dtype`.
    """
    value = np.asarray(value)
    dtype = np.dtype(dtype)
    if value.dtype == dtype:
        return value
    if is_float_dtype(dtype):
        if value.dtype in _LOW_PRECISION and dtype in _LOW_PRECISION:
            # ml_dtypes does not convert between every pair directly; f32
            # holds every low-precision value exactly, so this is one rounding.
            value = value.astype(np.float32)
        return value.astype(dtype)
    if is_float_dtype(value.dtype):
        return _float_to_int(value, dtype)
    return value.astype(dtype)


def convert_to(value: np.ndarray, element_type: Attribute) -> np.ndarray:
    """`convert` to the array dtype holding an IR element type, keeping `i4` in -8..7 (wrapped or saturated)."""
    if dtype_name(element_type) == "i4":
        return to_i4(value)
    return convert(value, numpy_dtype(element_type))


def to_i4(value: np.ndarray) -> np.ndarray:
    """
    `value` as `i4` held in int8: floats truncate and saturate to -8..7 (NaN
    to 0), integers wrap modulo 16, as `convert` does for other widths.
    """
    value = np.asarray(value)
    if is_float_dtype(value.dtype):
        t = np.trunc(value.astype(np.float64))
        return np.where(np.isnan(t), 0, np.clip(t, -8, 7)).astype(np.int8)
    return (((value.astype(np.int64) + 8) & 15) - 8).astype(np.int8)


def _float_to_int(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    t = np.trunc(value.astype(np.float64))
    # 2**(bits-1) is exact in float64, so these comparisons are exact.
    too_big = t >= float(info.max) + 1.0
    too_small = t < float(info.min)
    bad = too_big | too_small | np.isnan(t)
    out = np.where(bad, 0.0, t).astype(dtype)
    out[too_big] = info.max
    out[too_small] = info.min
    return out


def _compute_dtype(x: np.ndarray) -> np.ndarray:
    """Widen low-precision floats to float32, the dtype float ops compute in."""
    return x.astype(np.float32) if x.dtype in _LOW_PRECISION else x


# --------------------------------------------------------------------------- erf

# Piecewise rational approximations of erf/erfc from fdlibm's s_erf.c
# (FreeBSD msun, also Go's math/erf.go), evaluated in float64. Their error
# bounds are below 2**-57 relative on each piece, i.e. erf and erfc are
# correct to about one float64 ulp: far below float32 resolution.
#
# Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
# Developed at SunPro, a Sun Microsystems, Inc. business.
# Permission to use, copy, modify, and distribute this software is freely
# granted, provided that this notice is preserved.

_ERX = 8.45062911510467529297e-01
# erf(x) = x + x*R(x^2) on [0, 0.84375]
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
# erf(1 + s) = erx + P(s)/Q(s) on [0.84375, 1.25]
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
# erfc(x) = exp(-x^2 - 0.5625 + R(1/x^2)/S(1/x^2)) / x on [1.25, 1/0.35]
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
# ... and on [1/0.35, 28]
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)


def _poly(coeffs: Sequence[float], z: np.ndarray) -> np.ndarray:
    """Horner evaluation of `sum(coeffs[i] * z**i)`."""
    acc = z * coeffs[-1]
    acc += coeffs[-2]
    for c in reversed(coeffs[:-2]):
        acc *= z
        acc += c
    return acc


def _erf_and_erfc_of_abs(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(erf(a), erfc(a))` for `a >= 0` (float64); NaN stays NaN."""
    erf = np.empty_like(a)
    erfc = np.empty_like(a)
    erf[np.isnan(a)] = erfc[np.isnan(a)] = np.nan

    small = a < 0.84375
    x = a[small]
    z = x * x
    y = _poly(_PP, z) / _poly(_QQ, z)
    erf[small] = x + x * y
    # Above 1/4, 1 - erf loses bits; fdlibm's rearrangement keeps them.
    erfc[small] = np.where(x < 0.25, 1.0 - (x + x * y), 0.5 - (x * y + (x - 0.5)))

    mid = (a >= 0.84375) & (a < 1.25)
    s = a[mid] - 1.0
    pq = _poly(_PA, s) / _poly(_QA, s)
    erf[mid] = _ERX + pq
    erfc[mid] = (1.0 - _ERX) - pq

    for lo, hi, r_coeffs, s_coeffs in ((1.25, 1 / 0.35, _RA, _SA), (1 / 0.35, 28.0, _RB, _SB)):
        sel = (a >= lo) & (a < hi)
        x = a[sel]
        w = 1.0 / (x * x)
        # exp(-x*x) split as exp(-t*t) * exp((t-x)(t+x)) with t = x cut to
        # 20 mantissa bits, so t*t is exact and no precision is lost in x*x.
        t = (x.view(np.uint64) & np.uint64(0xFFFFFFFF00000000)).view(np.float64)
        tail = np.exp(-t * t - 0.5625) * np.exp((t - x) * (t + x) + _poly(r_coeffs, w) / _poly(s_coeffs, w)) / x
        erfc[sel] = tail
        erf[sel] = 1.0 - tail

    big = a >= 28.0
    erf[big] = 1.0
    erfc[big] = 0.0
    return erf, erfc


def erf(x: np.ndarray) -> np.ndarray:
    """Gauss error function, vectorised, in float64 (error about 1 float64 ulp)."""
    x = np.asarray(x, dtype=np.float64)
    e, _ = _erf_and_erfc_of_abs(np.abs(x))
    return np.copysign(e, x)


def erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function `1 - erf(x)`, accurate also where it is tiny."""
    x = np.asarray(x, dtype=np.float64)
    _, c = _erf_and_erfc_of_abs(np.abs(x))
    return np.where(x < 0, 2.0 - c, c)


# --------------------------------------------------------------------------- dispatch

Handler = Callable[..., "np.ndarray | Sequence[np.ndarray]"]
"""`handler(op, args)` -> the op's result value(s); `args` are operand values."""

HANDLERS: dict[type[Operation], Handler] = {}
"""The dispatch table: op class -> handler."""

_WIDEN: set[type[Operation]] = set()
_NEEDS_ENV: set[type[Operation]] = set()


def register(*op_classes: type[Operation], widen: bool = True, needs_env: bool = False):
    """
    Decorator registering a handler for `op_classes`.

    With `widen` (arithmetic ops) low-precision float operands reach the
    handler as float32; data movement ops keep their dtype. With `needs_env`
    the handler is called as `handler(op, args, env)`, `env` mapping every
    SSA value visible at the op to its array, for region ops whose bodies
    use values defined above them.
    """

    def decorate(handler: Handler) -> Handler:
        for cls in op_classes:
            HANDLERS[cls] = handler
            (_WIDEN.add if widen else _WIDEN.discard)(cls)
            (_NEEDS_ENV.add if needs_env else _NEEDS_ENV.discard)(cls)
        return handler

    return decorate


def describe_location(op: Operation) -> str:
    """Where an op comes from: `file:line:col` when known, else its position."""
    loc = op.location
    source = _source_position(loc)
    if source is not None:
        return source
    parent = op.parent_op()
    position = ""
    block = op.parent_block()
    if block is not None:
        index = next(i for i, o in enumerate(block.ops) if o is op)
        position = f"operation #{index}"
        if isinstance(parent, func.FuncOp):
            position += f" of @{parent.sym_name.data}"
    if not isinstance(loc, UnknownLoc):
        return f"{loc} ({position})" if position else str(loc)
    return position or "unknown location"


def op_error(cls: type[ExecutionError], op: Operation, message: str) -> ExecutionError:
    """An error about `op`: `FILE:LINE:COL: error: ...` when its source is known."""
    source = _source_position(op.location)
    if source is not None:
        return cls(f"{source}: error: {message}")
    return cls(f"error: {message} (at {describe_location(op)})")


def _source_position(loc: Attribute) -> str | None:
    """The first `file:line:col` in a location, looking inside name, call-site
    and fused locations (a fused kernel's location lists all of its ops)."""
    if isinstance(loc, FileLineColLoc):
        return f"{loc.filename.data}:{loc.line.data}:{loc.column.data}"
    for param in getattr(loc, "parameters", ()):
        items = param.data if isinstance(param, ArrayAttr) else (param,)
        for item in items:
            if isinstance(item, Attribute):
                found = _source_position(item)
                if found is not None:
                    return found
    return None


def _last_uses(block: Block) -> tuple[list[Operation], dict[SSAValue, int]]:
    """The block's ops and, for each value they use, the index of its last use."""
    ops = list(block.ops)
    last: dict[SSAValue, int] = {}
    for i, op in enumerate(ops):
        # Uses inside nested regions count as uses by the op that holds them.
        for inner in op.walk():
            for v in inner.operands:
                last[v] = i
    return ops, last


def run_block(
    block: Block,
    args: Sequence[np.ndarray],
    outer: Mapping[SSAValue, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """
    Evaluate `block` with its arguments bound to `args`; return the values of
    its terminator's operands.

    `outer` supplies values defined outside the block (for region ops that
    are not isolated from above). Intermediate values are dropped after their
    last use so that large models fit in memory.
    """
    if len(args) != len(block.args):
        raise ExecutionError(f"error: block takes {len(block.args)} arguments, got {len(args)}")
    env: dict[SSAValue, np.ndarray] = dict(outer) if outer else {}
    env.update(zip(block.args, args))
    ops, last = _last_uses(block)
    for i, op in enumerate(ops):
        if op.has_trait(IsTerminator):
            return [_lookup(env, v, op) for v in op.operands]
        for result, value in zip(op.results, _execute(op, env)):
            if result in last:
                env[result] = value
        # Free values whose last use was this op (only this block's own).
        for v in op.operands:
            if last.get(v) == i and (outer is None or v not in outer):
                env.pop(v, None)
    raise ExecutionError("error: block has no terminator")


def _lookup(env: Mapping[SSAValue, np.ndarray], value: SSAValue, op: Operation) -> np.ndarray:
    try:
        return env[value]
    except KeyError:
        raise op_error(ExecutionError, op, f"'{op.name}' uses a value that is not defined") from None


def _execute(op: Operation, env: Mapping[SSAValue, np.ndarray]) -> list[np.ndarray]:
    """Run one op through its handler; check and round its results."""
    handler = HANDLERS.get(type(op))
    if handler is None:
        raise op_error(UnsupportedOpError, op, f"the reference executor does not support '{op.name}'")
    args = [_lookup(env, v, op) for v in op.operands]
    if type(op) in _WIDEN:
        args = [_compute_dtype(a) for a in args]
    out = handler(op, args, env) if type(op) in _NEEDS_ENV else handler(op, args)
    values = list(out) if isinstance(out, (list, tuple)) else [out]
    if len(values) != len(op.results):
        raise op_error(
            ExecutionError, op, f"'{op.name}' produced {len(values)} values for {len(op.results)} results"
        )
    return [_finish(op, r.type, v) for r, v in zip(op.results, values)]


def _finish(op: Operation, result_type: Attribute, value: np.ndarray) -> np.ndarray:
    """Round a handler's value to the declared result dtype; check its shape."""
    if not isinstance(result_type, TensorType):
        raise op_error(ExecutionError, op, f"'{op.name}' has a non-tensor result {result_type}")
    value = convert_to(np.asarray(value), result_type.element_type)
    expected = tuple(result_type.get_shape())
    if value.shape != expected:
        raise op_error(
            ExecutionError,
            op,
            f"'{op.name}' computed shape {fmt(value.shape)}, its declared result shape is {fmt(expected)}",
        )
    return value


# --------------------------------------------------------------------------- size check

MAX_RUN_BYTES = 2 * 2**30
"""Most bytes a run's intermediate values may hold at once (counted as the
executors compute: low-precision floats in f32), so that a run stays well
within 4 GB with NumPy's temporaries; inputs and weights are checked apart."""


def check_run_size(module: ModuleOp) -> None:
    """
    Refuse, before anything runs, a model whose intermediate values would not
    fit in memory (a `[100000, 1] @ [1, 100000]`, a huge padding), instead
    of failing for memory half-way.

    Value types are static, so this walks the function as the executors run
    it: a tensor lives from its op to its last use, a buffer (`memref.alloc`)
    to the end; at each op it adds the op's results and its own scratch (a
    convolution's padded input and im2col columns). Raises `ExecutionError`
    naming the first op where that exceeds `MAX_RUN_BYTES`.
    """
    _check_block(model_function(module).body.block, 0)


def _check_block(block: Block, held_outside: int) -> None:
    ops, last = _last_uses(block)
    live: dict[SSAValue, int] = {}
    for i, op in enumerate(ops):
        held = held_outside + sum(live.values())
        results = {r: _value_bytes(r) for r in op.results if _allocates(op, r)}
        scratch = _scratch_bytes(op)
        own = sum(results.values()) + scratch
        if held + own > MAX_RUN_BYTES:
            what = [f"{_type_text(r.type)}, {_gib(size)}" for r, size in results.items()]
            what += [f"{_gib(scratch)} of padded input and columns"] if scratch else []
            also = f"; {_gib(held + own)} with the values still live" if held else ""
            raise op_error(
                ExecutionError, op,
                f"'{op.name}' needs {_gib(own)} ({'; '.join(what)}){also}: more than the"
                f" {_gib(MAX_RUN_BYTES)} `strata run` may use; shrink the model with -D NAME=VALUE",
            )
        for region in op.regions:
            for inner in region.blocks:
                _check_block(inner, held)
        for result, size in results.items():
            if result in last or isinstance(result.type, MemRefType):
                live[result] = size
        for v in op.operands:
            if last.get(v) == i and not isinstance(v.type, MemRefType):
                live.pop(v, None)


def _allocates(op: Operation, result: SSAValue) -> bool:
    """Whether `result` is new memory: every tensor; of buffers, only allocations (not views)."""
    if isinstance(result.type, MemRefType):
        return isinstance(op, memref.AllocOp)
    return isinstance(result.type, TensorType)


def _element_bytes(element_type: Attribute) -> int:
    """Bytes an element takes while computed: floats narrower than f32 are widened to it."""
    try:
        dtype = NUMPY_DTYPES[dtype_name(element_type)]
    except (ValueError, KeyError):
        return 8  # not a model dtype (index, upstream MLIR types): assume the widest
    return max(dtype.itemsize, 4) if dtype in _FLOAT_DTYPES else dtype.itemsize


def _value_bytes(value: SSAValue) -> int:
    type_ = value.type
    if isinstance(type_, MemRefType):
        # A buffer is held in its physical layout (tiled dims padded up to whole tiles).
        shape = physical_shape(layout_of(type_), type_.get_shape())
    else:
        shape = type_.get_shape()
    return math.prod(max(d, 0) for d in shape) * _element_bytes(type_.element_type)


def _scratch_bytes(op: Operation) -> int:
    """What an op allocates besides its results: a padded input; a convolution's im2col columns."""
    if not isinstance(op, g.Conv2DOp | g.Pool2DOp):
        return 0
    x_type = op.operands[0].type
    n, c, h, w = x_type.get_shape()
    top, left, bottom, right = op.pads.get_values()
    size = _element_bytes(x_type.element_type)
    padded = n * c * (h + top + bottom) * (w + left + right) * size if any((top, left, bottom, right)) else 0
    if not isinstance(op, g.Conv2DOp):
        return padded
    _, _, oh, ow = op.results[0].type.get_shape()
    _, cg, kh, kw = op.operands[1].type.get_shape()
    groups = op.groups.value.data
    return padded + n * groups * cg * kh * kw * oh * ow * size


def _type_text(type_: Attribute) -> str:
    try:
        name = dtype_name(type_.element_type)
    except ValueError:
        name = str(type_.element_type)
    return f"{name}{fmt(type_.get_shape())}"


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


# --------------------------------------------------------------------------- entry points


def run_function(func_op: func.FuncOp, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """
    Evaluate `func_op` on `args` (one array per block argument, in order).

    Each argument must have the declared shape; its dtype is converted to the
    declared one (with `convert`) when that is meaningful: integers to
    integers or floats, floats to floats. Returns one array per `func.return` operand;
    none of them shares memory with an argument.
    """
    block = func_op.body.block
    name = func_op.sym_name.data
    if len(args) != len(block.args):
        raise ExecutionError(f"error: @{name} takes {len(block.args)} arguments, got {len(args)}")
    bound = [_bind_argument(name, i, arg.type, a) for i, (arg, a) in enumerate(zip(block.args, args))]
    with np.errstate(all="ignore"):
        outputs = run_block(block, bound)
    return [
        o.copy() if any(np.may_share_memory(o, a) for a in bound) else o for o in outputs
    ]


def _bind_argument(func_name: str, index: int, arg_type: Attribute, value) -> np.ndarray:
    value = np.asarray(value)
    assert isinstance(arg_type, TensorType)
    want = numpy_dtype(arg_type.element_type)
    shape = tuple(arg_type.get_shape())
    what = f"argument #{index} of @{func_name}"
    if value.shape != shape:
        raise ExecutionError(f"error: {what} has shape {fmt(value.shape)}, the function needs {fmt(shape)}")
    if not _castable(value.dtype, want):
        raise ExecutionError(
            f"error: {what} has dtype {value.dtype}, which does not convert to {dtype_name(arg_type.element_type)}"
        )
    if dtype_name(arg_type.element_type) == "i4" and not is_float_dtype(value.dtype) and value.size:
        if int(value.min()) < -8 or int(value.max()) > 7:
            raise ExecutionError(f"error: {what} holds values outside -8..7, the range of i4")
    return convert_to(value, arg_type.element_type)


def _castable(src: np.dtype, dst: np.dtype) -> bool:
    if is_float_dtype(dst):
        return is_float_dtype(src) or src.kind in "biu"
    return src.kind in "biu"


def argument_names(func_op: func.FuncOp, count: int | None = None) -> list[tuple[str, str]]:
    """
    `(kind, name)` of each block argument (of the first `count`), in order:
    kind `"input"` for a `graph.input` argument, `"param"` for a
    `graph.param` one.
    """
    attrs = func_op.arg_attrs
    count = len(func_op.body.block.args) if count is None else count
    dicts = list(attrs.data) if isinstance(attrs, ArrayAttr) else []
    names: list[tuple[str, str]] = []
    for i in range(count):
        entry = dicts[i].data if i < len(dicts) and isinstance(dicts[i], DictionaryAttr) else {}
        for key, kind in ((INPUT_ATTR, "input"), (PARAM_ATTR, "param")):
            attr = entry.get(key)
            if isinstance(attr, StringAttr):
                names.append((kind, attr.data))
                break
        else:
            raise ExecutionError(
                f"error: argument #{i} of @{func_op.sym_name.data} has neither a"
                f" '{INPUT_ATTR}' nor a '{PARAM_ATTR}' attribute"
            )
    return names


def model_function(module: ModuleOp) -> func.FuncOp:
    """The single `func.func` of a model module."""
    funcs = [op for op in module.ops if isinstance(op, func.FuncOp)]
    if len(funcs) != 1:
        raise ExecutionError(f"error: a model module must hold exactly one func.func, found {len(funcs)}")
    return funcs[0]


def run_module(
    module: ModuleOp,
    inputs: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
) -> list[np.ndarray]:
    """
    Run the model of `module`: bind each `graph.input` argument to
    `inputs[name]` and each `graph.param` one to `weights[path]`, then
    `run_function`. Missing or unknown names raise `ExecutionError`.
    """
    func_op = model_function(module)
    names = argument_names(func_op)
    pools = {"input": inputs, "param": weights}
    for kind, pool in pools.items():
        wanted = {n for k, n in names if k == kind}
        missing = [n for k, n in names if k == kind and n not in pool]
        extra = sorted(set(pool) - wanted)
        if missing:
            raise ExecutionError(f"error: no value given for {kind} {', '.join(repr(n) for n in missing)}")
        if extra:
            article = "an" if kind == "input" else "a"
            raise ExecutionError(
                f"error: {', '.join(repr(n) for n in extra)} is not {article} {kind} of the model"
            )
    args = [pools[kind][name] for kind, name in names]
    return spmd.run(module, func_op, args, run_function)


# --------------------------------------------------------------------------- elementwise


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncating toward zero; x / 0 is 0."""
    safe = np.where(b == 0, 1, b)
    q = a // safe
    # Floor division rounds down; step back toward zero when inexact and the
    # operands have opposite signs.
    q = q + ((q * safe != a) & ((a < 0) != (safe < 0)))
    return np.where(b == 0, 0, q)


def _int_pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer power; a negative exponent gives the truncated real result."""
    a, b = np.broadcast_arrays(a, b)
    neg = b < 0
    out = np.power(a, np.where(neg, 0, b))
    odd = (b % 2) != 0
    frac = np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0)).astype(a.dtype)
    return np.where(neg, frac, out)


def _is_int(x: np.ndarray) -> bool:
    return x.dtype.kind in "iu"


_BINARY: dict[type[Operation], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    g.AddOp: np.add,
    g.SubOp: np.subtract,
    g.MulOp: np.multiply,
    g.MaximumOp: np.maximum,
    g.MinimumOp: np.minimum,
    g.DivOp: lambda a, b: _int_div(a, b) if _is_int(a) else a / b,
    g.PowOp: lambda a, b: _int_pow(a, b) if _is_int(a) else np.power(a, b),
}


@register(*_BINARY)
def _binary(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    a, b = args
    return _BINARY[type(op)](a, b)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


_UNARY: dict[type[Operation], Callable[[np.ndarray], np.ndarray]] = {
    g.ReluOp: lambda x: np.maximum(x, x.dtype.type(0)),
    g.GeluOp: lambda x: 0.5 * x * erfc(-x.astype(np.float64) / np.sqrt(2.0)),
    g.SiluOp: lambda x: x * _sigmoid(x),
    g.SigmoidOp: _sigmoid,
    g.TanhOp: np.tanh,
    g.ExpOp: np.exp,
    g.LogOp: np.log,
    g.SqrtOp: np.sqrt,
    g.RsqrtOp: lambda x: 1.0 / np.sqrt(x),
    g.AbsOp: np.abs,
    g.ErfOp: erf,
    g.NegOp: np.negative,
}


@register(*_UNARY)
def _unary(op: Operation, args: list[np.ndarray]) -> np.ndarray:
    return _UNARY[type(op)](args[0])


@register(g.CastOp, widen=False)
def _cast(op: g.CastOp, args: list[np.ndarray]) -> np.ndarray:
    return convert_to(args[0], op.result.type.element_type)


@register(g.ConstantOp)
def _constant(op: g.ConstantOp, args: list[np.ndarray]) -> np.ndarray:
    return np.full(tuple(op.result.type.get_shape()), op.value.value.data, dtype=np.float64)


# --------------------------------------------------------------------------- contractions


def _accumulator(op: Operation, *args: np.ndarray) -> list[np.ndarray]:
    """
    Operands of a contraction as it accumulates: integers into a wider result
    (`i8 x i8 -> i32`) in int64, exact for any depth below 2**32 (then
    wrapped to 32 bits when the result is rounded, as MatMulInteger does);
    everything else as it came (floats already widened to f32).
    """
    result = op.results[0].type.element_type
    if _is_int(args[0]) and numpy_dtype(result) != args[0].dtype:
        return [a.astype(np.int64) for a in args]
    return list(args)


@register(g.MatmulOp)
def _matmul(op: g.MatmulOp, args: list[np.ndarray]) -> np.ndarray:
    return np.matmul(*_accumulator(op, args[0], args[1]))


def _windows(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    pad_value: float,
) -> np.ndarray:
    """
    View of the sliding windows of NCHW `x`: `[N, C, OH, OW, KH, KW]`, with
    `x` padded by `pads` ([top, left, bottom, right]) of `pad_value`.
    """
    top, left, bottom, right = pads
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    win = sliding_window_view(x, span, axis=(2, 3))
    # Sliding with step 1 then striding gives exactly ONNX's floor-mode count
    # of windows: floor((padded - span) / stride) + 1.
    return win[:, :, :: strides[0], :: strides[1], :: dilations[0], :: dilations[1]]


@register(g.Conv2DOp)
def _conv2d(op: g.Conv2DOp, args: list[np.ndarray]) -> np.ndarray:
    x, w = _accumulator(op, args[0], args[1])
    bias = args[2] if op.bias is not None else None
    groups = op.groups.value.data
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    win = _windows(
        x, (kh, kw), op.strides.get_values(), op.pads.get_values(), op.dilations.get_values(), 0
    )
    oh, ow = win.shape[2:4]
    # im2col: [N, G, Cg*KH*KW, OH*OW], then one batched matmul per group,
    # whose [N, G, O/G, OH*OW] result is already in NCHW order.
    cols = win.reshape(n, groups, cg, oh, ow, kh, kw).transpose(0, 1, 2, 5, 6, 3, 4)
    cols = cols.reshape(n, groups, cg * kh * kw, oh * ow)
    wg = w.reshape(groups, o // groups, cg * kh * kw)
    out = np.matmul(wg, cols).reshape(n, o, oh, ow)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return out


# --------------------------------------------------------------------------- quantization


def integer_range(element_type: Attribute) -> tuple[int, int]:
    """The values an integer element type holds (`i4`: -8..7)."""
    return INT_RANGES[dtype_name(element_type)]


def saturate_to_float(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """f32 `value` rounded to nearest even in the float `dtype`, out-of-range values (and infinities) saturated to its largest finite value."""
    if dtype in _LOW_PRECISION and dtype not in (NUMPY_DTYPES["f16"], NUMPY_DTYPES["bf16"]):
        top = np.float32(ml_dtypes.finfo(dtype).max)
        # Rounding happens after the clip: a value between the largest
        # finite one and the next (unrepresentable) step rounds down to it anyway.
        value = np.clip(value, -top, top)
    return value.astype(dtype)


@register(g.QuantizeOp, widen=False)
def _quantize(op: g.QuantizeOp, args: list[np.ndarray]) -> np.ndarray:
    x = args[0].astype(np.float32)
    scale = args[1].astype(np.float32)
    result = op.result.type.element_type
    scaled = x / scale
    if is_float_dtype(numpy_dtype(result)):
        return saturate_to_float(scaled, numpy_dtype(result))
    lo, hi = integer_range(result)
    zero = args[2].astype(np.float64) if op.zero_point is not None else 0.0
    # np.rint rounds half to even; the zero point is added exactly (float64
    # holds every f32 value and every zero point), then saturated.
    q = np.clip(np.rint(scaled).astype(np.float64) + zero, lo, hi)
    # NaN has no integer; ONNX leaves it undefined, this gives the zero point.
    q = np.where(np.isnan(q), np.broadcast_to(zero, q.shape), q)
    return convert_to(q.astype(np.int64), result)


@register(g.DequantizeOp, widen=False)
def _dequantize(op: g.DequantizeOp, args: list[np.ndarray]) -> np.ndarray:
    q, scale = args[0], args[1].astype(np.float32)
    if _is_int(q):
        zero = args[2].astype(np.int64) if op.zero_point is not None else 0
        shifted = (q.astype(np.int64) - zero).astype(np.float32)
    else:
        shifted = q.astype(np.float32)
    return shifted * scale


# --------------------------------------------------------------------------- reductions

_REDUCE: dict[type[Operation], Callable[..., np.ndarray]] = {
    g.SumOp: np.sum,
    g.MeanOp: np.mean,
    g.ReduceMaxOp: np.max,
    g.ReduceMinOp: np.min,
}


@register(*_REDUCE)
def _reduce(op: g.ReductionOp, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    axes = tuple(op.axes.get_values())
    keepdims = op.keepdims is not None
    if type(op) is g.SumOp and _is_int(x):
        # np.sum widens small ints; the sum must wrap in the operand's dtype.
        return np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    return _REDUCE[type(op)](x, axis=axes, keepdims=keepdims)


@register(g.SoftmaxOp)
def _softmax(op: g.SoftmaxOp, args: list[np.ndarray]) -> np.ndarray:
    x, axis = args[0], op.axis.value.data
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@register(g.LogSoftmaxOp)
def _log_softmax(op: g.LogSoftmaxOp, args: list[np.ndarray]) -> np.ndarray:
    x, axis = args[0], op.axis.value.data
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _norm_params(op: Operation, args: list[np.ndarray], names: Sequence[str]) -> list:
    """Optional operands by name (`scale`, `bias`), None where absent."""
    rest = iter(args[1:])
    return [next(rest) if getattr(op, name) is not None else None for name in names]


@register(g.LayerNormOp)
def _layernorm(op: g.LayerNormOp, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    scale, bias = _norm_params(op, args, ("scale", "bias"))
    axes = tuple(range(op.axis.value.data, x.ndim))
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    y = centered / np.sqrt(var + np.float32(op.epsilon.value.data))
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y


@register(g.RmsNormOp)
def _rmsnorm(op: g.RmsNormOp, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    (scale,) = _norm_params(op, args, ("scale",))
    axes = tuple(range(op.axis.value.data, x.ndim))
    y = x / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + np.float32(op.epsilon.value.data))
    return y * scale if scale is not None else y


def _masked_value(dtype: np.dtype) -> float:
    """-inf, or the lowest finite value of a dtype without infinities (f8e4m3)."""
    if np.isinf(np.array(-np.inf, dtype=np.float32).astype(dtype).astype(np.float32)):
        return -np.inf
    return float(ml_dtypes.finfo(dtype).min)


@register(g.CausalMaskOp)
def _causal_mask(op: g.CausalMaskOp, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    s, t = x.shape[-2:]
    masked = np.arange(t)[None, :] > np.arange(s)[:, None] + (t - s)
    fill = _masked_value(numpy_dtype(op.result.type.element_type))
    return np.where(masked, x.dtype.type(fill), x)


# --------------------------------------------------------------------------- data movement


@register(g.TransposeOp, widen=False)
def _transpose(op: g.TransposeOp, args: list[np.ndarray]) -> np.ndarray:
    return np.transpose(args[0], op.perm.get_values())


@register(g.ReshapeOp, widen=False)
def _reshape(op: g.ReshapeOp, args: list[np.ndarray]) -> np.ndarray:
    return args[0].reshape(tuple(op.result.type.get_shape()))


@register(RelayoutOp, widen=False)
def _relayout(op: RelayoutOp, args: list[np.ndarray]) -> np.ndarray:
    # Values are logical at every stage; a relayout only moves bytes.
    return args[0]


@register(g.ConcatOp, widen=False)
def _concat(op: g.ConcatOp, args: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(args, axis=op.axis.value.data)


@register(g.SliceOp, widen=False)
def _slice(op: g.SliceOp, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    index = [slice(None)] * x.ndim
    index[op.axis.value.data] = slice(op.start.value.data, op.end.value.data)
    return x[tuple(index)]


@register(g.SplitOp, widen=False)
def _split(op: g.SplitOp, args: list[np.ndarray]) -> list[np.ndarray]:
    return np.split(args[0], len(op.outputs), axis=op.axis.value.data)


def gather_rows(op: Operation, ids: np.ndarray, rows: int) -> np.ndarray:
    """
    The table rows `ids` select, as ONNX Gather reads them: a negative id
    counts from the end (-1 is the last row); an id outside `[-rows, rows)`
    is an error naming `op` (clamping it gave a plausible wrong row).
    """
    ids = ids.astype(np.int64)
    bad = (ids < -rows) | (ids >= rows)
    if bad.any():
        raise op_error(
            ExecutionError, op,
            f"gather id {int(ids[bad].flat[0])} is out of range for a table of {rows:,} rows"
            f" (ids must be in [-{rows:,}, {rows:,}))",
        )
    return np.where(ids < 0, ids + rows, ids)


@register(g.GatherOp, widen=False)
def _gather(op: g.GatherOp, args: list[np.ndarray]) -> np.ndarray:
    table, ids = args
    return np.take(table, gather_rows(op, ids, table.shape[0]), axis=0)


# --------------------------------------------------------------------------- kernels


@register(KernelOp, widen=False)
def _kernel(op: KernelOp, args: list[np.ndarray]) -> list[np.ndarray]:
    # Isolated from above: the operands are the block arguments and
    # graph.yield returns the results. The ops inside round as they would
    # outside, so fusion never changes the reference's values.
    return run_block(op.body.block, args)


# --------------------------------------------------------------------------- pooling


def _pool_attrs(op: g.Pool2DOp) -> tuple[tuple[int, ...], ...]:
    return op.kernel.get_values(), op.strides.get_values(), op.pads.get_values()


@register(g.MaxPool2DOp)
def _maxpool2d(op: g.MaxPool2DOp, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    kernel, strides, pads = _pool_attrs(op)
    # Padding never wins: every window holds a real cell (pads < kernel).
    low = -np.inf if is_float_dtype(x.dtype) else np.iinfo(x.dtype).min
    return _windows(x, kernel, strides, pads, (1, 1), low).max(axis=(-2, -1))


@register(g.AvgPool2DOp)
def _avgpool2d(op: g.AvgPool2DOp, args: list[np.ndarray]) -> np.ndarray:
    x = args[0]
    if _is_int(x):
        x = x.astype(np.float64)
    kernel, strides, pads = _pool_attrs(op)
    total = _windows(x, kernel, strides, pads, (1, 1), 0).sum(axis=(-2, -1))
    ones = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
    count = _windows(ones, kernel, strides, pads, (1, 1), 0).sum(axis=(-2, -1))
    return total / count


@register(g.GlobalAvgPoolOp)
def _global_avgpool(op: g.GlobalAvgPoolOp, args: list[np.ndarray]) -> np.ndarray:
    return np.mean(args[0], axis=(2, 3), keepdims=True)


# --------------------------------------------------------------------------- collectives


@register(g.AllReduceOp, widen=False)
def _all_reduce(op: g.AllReduceOp, args: list[np.ndarray]) -> np.ndarray:
    return spmd.all_reduce(args[0], op.axis.data, op.devices.value.data)


@register(g.AllGatherOp, widen=False)
def _all_gather(op: g.AllGatherOp, args: list[np.ndarray]) -> np.ndarray:
    return spmd.all_gather(args[0], op.axis.data, op.devices.value.data, op.dim.value.data, op.groups.value.data)


@register(g.ReduceScatterOp, widen=False)
def _reduce_scatter(op: g.ReduceScatterOp, args: list[np.ndarray]) -> np.ndarray:
    return spmd.reduce_scatter(args[0], op.axis.data, op.devices.value.data, op.dim.value.data, op.groups.value.data)
