"""
The element types of the model language and their xDSL builtin types.

`f8e4m3` is the finite-only E4M3 variant used in ML (`f8E4M3FN` in MLIR).
"""

from __future__ import annotations

from xdsl.dialects.builtin import (
    BFloat16Type,
    Float8E4M3FNType,
    Float8E5M2Type,
    Float16Type,
    Float32Type,
    IntegerType,
    TensorType,
)
from xdsl.ir import Attribute

DTYPES: dict[str, Attribute] = {
    "f32": Float32Type(),
    "f16": Float16Type(),
    "bf16": BFloat16Type(),
    "f8e4m3": Float8E4M3FNType(),
    "f8e5m2": Float8E5M2Type(),
    "i8": IntegerType(8),
    "i32": IntegerType(32),
    "i64": IntegerType(64),
}

FLOAT_DTYPES = frozenset({"f32", "f16", "bf16", "f8e4m3", "f8e5m2"})
INT_DTYPES = frozenset({"i8", "i32", "i64"})


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
