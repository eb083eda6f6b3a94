"""
What the three hardware dialects share: the kernel op every target wraps a
loop nest in, and the matrix-unit op that replaces `graph.matmul` inside it.

A hardware kernel keeps the `loop.kernel` it was lowered from (its buffers,
iteration space, tile sizes, loop order and executable body) and adds the
figures every cost model needs, computed from that body: `flops` (all work),
`matrix_flops` (the part on the matrix unit), `read_bytes` / `write_bytes`
(off-chip traffic the loop nest performs, re-reads included), `onchip_bytes`
(on-chip tile footprint) and `gemms` (each GEMM the kernel issues as
`[count, M, N, K]`; convs in SCALE-Sim's convention `M = batch*OH*OW`,
`N = filters`, `K = KH*KW*C`; attention as `q @ k^T` then `p @ v` over
the keys a query visits, on average where a causal key loop stops at the
diagonal). Each target adds its mapping.

`operand_dtype()` is the dtype the matrix units multiply: that of the
operands reaching the kernel's first matmul, before the lowering widened
them to the accumulator (a weight-only `x: bf16 @ dequantize(w: i4, s)`
multiplies bf16, though its first input is the stored i4 weight).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    TensorType,
    i64,
)
from xdsl.ir import Attribute, Region, SSAValue
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    VarConstraint,
    base,
    operand_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import IsolatedFromAbove, Pure
from xdsl.utils.exceptions import VerifyException

from strata.dialects.graph import ops as g
from strata.dialects.graph import shapes
from strata.dialects.loop import KIND_BOUNDS, int_values, verify_kernel
from strata.dialects.vocabulary import dtype_of, element_bytes

KERNEL_FORMAT = (
    "$kernel_name `ins` `(` $ins `:` type($ins) `)` `outs` `(` $outs `:` type($outs) `)`"
    " attr-dict-with-keyword $body"
)
FIGURES = ("flops", "matrix_flops", "read_bytes", "write_bytes", "onchip_bytes")


def ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def int_attr(value: int) -> IntegerAttr:
    return IntegerAttr(value, i64)


class HardwareKernelOp(IRDLOperation):
    """Base of `simt.kernel`, `systolic.program` and `tsp.program` (see module doc)."""

    ins = var_operand_def(MemRefType)
    outs = var_operand_def(MemRefType)
    kernel_name = prop_def(StringAttr)
    kind = prop_def(StringAttr)
    ops = prop_def(ArrayAttr[StringAttr])
    bounds = prop_def(DenseArrayBase)
    tile_sizes = prop_def(DenseArrayBase)
    loop_order = prop_def(DenseArrayBase)
    flops = prop_def(IntegerAttr)
    matrix_flops = prop_def(IntegerAttr)
    read_bytes = prop_def(IntegerAttr)
    write_bytes = prop_def(IntegerAttr)
    onchip_bytes = prop_def(IntegerAttr)
    gemms = prop_def(ArrayAttr[DenseArrayBase])
    body = region_def("single_block")

    traits = traits_def()
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())

    def __init__(
        self,
        kernel_name: str,
        ins: Sequence[SSAValue],
        outs: Sequence[SSAValue],
        common: Mapping[str, Attribute],
        mapping: Mapping[str, Attribute],
        body: Region,
    ):
        properties = {"kernel_name": StringAttr(kernel_name), **common, **mapping}
        super().__init__(operands=[ins, outs], properties=properties, regions=[body])

    def figure(self, name: str) -> int:
        return getattr(self, name).value.data

    def gemm_list(self) -> list[tuple[int, int, int, int]]:
        return [tuple(g.get_values()) for g in self.gemms]

    def operand_dtype(self) -> str:
        """
        The dtype the matrix units multiply (`matrix_operand_dtype` of the
        body); a kernel without a matmul: its first input's, else its output's.
        """
        dtype = matrix_operand_dtype(self.body)
        if dtype is not None:
            return dtype
        values = list(self.ins) or list(self.outs)
        return dtype_of(values[0].type.element_type)

    def verify_(self) -> None:
        verify_kernel(self)
        for name in FIGURES:
            if self.figure(name) < 0:
                raise VerifyException(f"'{self.name}' {name} must be >= 0")
        for gemm in self.gemms:
            if not isinstance(gemm.elt_type, IntegerType):
                raise VerifyException(f"'{self.name}' gemms entries are array<i64: count, M, N, K>, got {gemm}")
        for gemm in self.gemm_list():
            if len(gemm) != 4 or min(gemm) <= 0:
                raise VerifyException(f"'{self.name}' gemms entries are [count, M, N, K] > 0, got {list(gemm)}")
        if self.kind.data in KIND_BOUNDS and not self.gemms.data:
            raise VerifyException(f"'{self.name}' of kind '{self.kind.data}' issues GEMMs: its gemms cannot be empty")


def _before_accumulator_cast(value: SSAValue) -> SSAValue:
    """
    The matmul operand `value` before the cast the loop lowering inserts to
    widen it to the accumulator type (`lower_to_loops`: f32 for floats, i32
    for integers); `value` itself when it is no such widening cast.
    """
    owner = value.owner
    if isinstance(owner, g.CastOp) and owner.input.type.element_type != value.type.element_type:
        return owner.input
    return value


def _width_bits(element_type: Attribute) -> int:
    return getattr(element_type, "bitwidth", 32)


def matrix_operand_dtype(body: Region) -> str | None:
    """The `dtype_of` of `matrix_operand_type(body)`, or None without a matmul."""
    element_type = matrix_operand_type(body)
    return None if element_type is None else dtype_of(element_type)


def matrix_operand_type(body: Region) -> Attribute | None:
    """
    The element type the first matmul of `body` (a `graph.matmul` in a loop
    kernel, a target's `MatrixOp` in a hardware one) multiplies, or None
    without one.

    Both operands are taken before their accumulator cast: a weight-only
    `x: bf16 @ dequantize(w: i4, s)` multiplies bf16 (the dequantized
    weight), an int8 GEMM i8, an fp8 one f8E4M3FN. Operands of two dtypes
    (`cast(x: bf16, f32) @ w: f32`) run at the wider one's rate, which is
    the type the hardware multiplies in; equal widths take the lhs's.
    """
    for op in body.walk():
        if isinstance(op, (MatrixOp, g.MatmulOp)):
            lhs = _before_accumulator_cast(op.lhs).type.element_type
            rhs = _before_accumulator_cast(op.rhs).type.element_type
            return rhs if _width_bits(rhs) > _width_bits(lhs) else lhs
    return None


def stored_width(value: SSAValue) -> int | float:
    """
    Bytes per element of the off-chip buffer a kernel-body value was loaded
    from, following its first operand back through casts, dequantizes and
    other one-input ops to the `loop.load` (0.5 for an i4 weight that a
    fused `dequantize` widens on chip); the value's own width if no load.
    """
    seen = value
    while True:
        owner = seen.owner
        source = getattr(owner, "source", None)
        if source is not None and isinstance(source.type, MemRefType) and owner.name == "loop.load":
            return element_bytes(source.type.element_type)
        if not isinstance(owner, IRDLOperation) or not owner.operands:
            return element_bytes(value.type.element_type)
        seen = owner.operands[0]


def matrix_operand_widths(body: Region) -> tuple[int | float, int | float] | None:
    """`stored_width` of the lhs and rhs of the first matmul of `body`, or None without one."""
    for op in body.walk():
        if isinstance(op, (MatrixOp, g.MatmulOp)):
            return stored_width(op.lhs), stored_width(op.rhs)
    return None


class MatrixOp(IRDLOperation):
    """Base of the matrix-unit ops: `result = lhs @ rhs` (batched, NumPy semantics)."""

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)"

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: TensorType, mapping: Mapping[str, Attribute]):
        super().__init__(operands=[lhs, rhs], result_types=[result_type], properties=dict(mapping))

    def verify_(self) -> None:
        types = (self.lhs.type, self.rhs.type, self.result.type)
        if len({t.element_type for t in types}) != 1:
            raise VerifyException(f"'{self.name}' operands and result must have one element type")
        try:
            expected = shapes.matmul(self.lhs.type.get_shape(), self.rhs.type.get_shape())
        except shapes.ShapeError as err:
            raise VerifyException(f"'{self.name}' {err}") from None
        if tuple(expected) != tuple(self.result.type.get_shape()):
            raise VerifyException(f"'{self.name}' result shape must be {list(expected)}")


class TransferOp(IRDLOperation):
    """
    Base of the device-to-device moves (`simt.transfer`, `systolic.transfer`,
    `tsp.transfer`): `dest = source`, `source` on chip `from_chip`, `dest` on
    `to_chip`, over the interconnect the device spec describes.
    """

    T: ClassVar = VarConstraint("T", base(MemRefType))
    source = operand_def(T)
    dest = operand_def(T)
    from_chip = prop_def(IntegerAttr)
    to_chip = prop_def(IntegerAttr)

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$source `,` $dest attr-dict `:` type($source)"

    def __init__(self, source: SSAValue, dest: SSAValue, from_chip: int, to_chip: int):
        super().__init__(
            operands=[source, dest],
            properties={"from_chip": int_attr(from_chip), "to_chip": int_attr(to_chip)},
        )

    def verify_(self) -> None:
        if self.from_chip.value.data == self.to_chip.value.data:
            raise VerifyException(f"'{self.name}' moves between two different chips")
        if min(self.from_chip.value.data, self.to_chip.value.data) < 0:
            raise VerifyException(f"'{self.name}' chips are numbered from 0")
