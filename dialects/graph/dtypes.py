"""
The element types of the model language and their xDSL builtin types.

`f8e4m3` is the finite-only E4M3 variant used in ML (`f8E4M3FN` in MLIR).
`i4` is the signless 4-bit integer `i4` (values -8..7, stored two to a
byte) and `u8` the unsigned `ui8` (0..255); both print and parse as MLIR
builtin integer types.
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    BFloat16Type,
    Float8E4M3FNType,
    Float8E5M2Type,
    Float16Type,
    Float32Type,
    IntegerType,
    Signedness,
    TensorType,
)
from xdsl.ir import Attribute

DTYPES: dict[str, Attribute] = {
    "f32": Float32Type(),
    "f16": Float16Type(),
    "bf16": BFloat16Type(),
    "f8e4m3": Float8E4M3FNType(),
    "f8e5m2": Float8E5M2Type(),
    "i4": IntegerType(4),
    "i8": IntegerType(8),
    "u8": IntegerType(8, Signedness.UNSIGNED),
    "i32": IntegerType(32),
    "i64": IntegerType(64),
}

FLOAT_DTYPES = frozenset({"f32", "f16", "bf16", "f8e4m3", "f8e5m2"})
INT_DTYPES = frozenset({"i4", "i8", "u8", "i32", "i64"})
F8_DTYPES = frozenset({"f8e4m3", "f8e5m2"})
QUANTIZED_INT_DTYPES = frozenset({"i4", "i8", "u8"})
"""Integer dtypes a quantized matmul/conv multiplies, accumulating exactly in `i32`."""
QUANTIZE_DTYPES = QUANTIZED_INT_DTYPES | F8_DTYPES
"""Result dtypes of `quantize`."""
DEQUANTIZE_DTYPES = QUANTIZE_DTYPES | {"i32"}
"""Operand dtypes of `dequantize`."""

INT_RANGES: dict[str, tuple[int, int]] = {
    "i4": (-8, 7),
    "i8": (-128, 127),
    "u8": (0, 255),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
}
"""The values each integer dtype holds, inclusive."""


def accumulation_dtypes(operand: str) -> frozenset[str]:
    """
    The result dtypes a `matmul`/`conv2d` of `operand`-typed operands may
    have: the operand dtype itself, `i32` for quantized integers (exact
    accumulation), `f32`/`bf16`/`f16` for f8 (accumulated in f32), `f32` for
    `bf16`/`f16`.
    """
    if operand in QUANTIZED_INT_DTYPES:
        return frozenset({operand, "i32"})
    if operand in F8_DTYPES:
        return frozenset({operand, "f32", "bf16", "f16"})
    if operand in ("bf16", "f16"):
        return frozenset({operand, "f32"})
    return frozenset({operand})


def dtype_name(element_type: Attribute) -> str:
    """Model-language name of an xDSL element type (`f32`, `bf16`, ...)."""
    for name, attr in DTYPES.items():
        if attr == element_type:
            return name
    raise ValueError(f"element type {element_type} is not a strata dtype")


def is_float(element_type: Attribute) -> bool:
    """Whether the element type is one of the float dtypes."""
    return dtype_name(element_type) in FLOAT_DTYPES


def has_infinity(element_type: Attribute) -> bool:
    """Whether a float dtype has -inf (a causal mask's value); `f8e4m3` has not."""
    return is_float(element_type) and dtype_name(element_type) != "f8e4m3"


def tensor_type(dtype: str, shape) -> TensorType:
    """`tensor<shape x dtype>` for a model-language dtype name."""
    return TensorType(DTYPES[dtype], list(shape))


def type_str(t: Attribute) -> str:
    """Print a tensor type as the model language writes it: `f32[2, 3]`."""
    if isinstance(t, TensorType):
        return f"{dtype_name(t.element_type)}[{', '.join(str(d) for d in t.get_shape())}]"
    return str(t)
