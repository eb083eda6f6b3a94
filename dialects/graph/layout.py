"""
Physical layouts: `#graph.layout` and the explicit `graph.relayout` op.

A layout says how a tensor of a given logical shape sits in memory: its
dimensions are first permuted by `order` (physical dim `i` is logical dim
`order[i]`), then the last `len(tile)` physical dims are split into
`ceil(d / t)` tiles of `t` elements each, padded up to whole tiles:

    logical [64, 200], order [0, 1], tile [8, 128]
      -> physical [8, 2, 8, 128]  (outer dims, then the tile's dims)

At the `layout` stage the layout is the encoding of every tensor type
between kernels (`tensor<1x8x8x16xf32, #graph.layout<[0, 2, 3, 1]>>`, NHWC);
at the `loop` stage it is the layout of every buffer's `memref`. The
logical shape and the values never change with the layout: a relayout is a
pure data movement. Everything here is pure and needs only xDSL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    ArrayAttr,
    IntAttr,
    MemRefLayoutAttr,
    MemRefType,
    NoneAttr,
    TensorType,
)
from xdsl.ir import Attribute, ParametrizedAttribute, SSAValue
from xdsl.ir.affine import AffineExpr, AffineMap
from xdsl.irdl import IRDLOperation, irdl_attr_definition, irdl_op_definition, operand_def, result_def, traits_def
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

# --------------------------------------------------------------------------- attribute


@irdl_attr_definition
class LayoutAttr(MemRefLayoutAttr, ParametrizedAttribute):
    """
    A dimension order and an optional tiling of the innermost physical dims.

    ```mlir
    #graph.layout<[0, 2, 3, 1]>                 // NHWC for an NCHW tensor
    #graph.layout<[0, 1], tile = [8, 128]>      // (8, 128)-tiled 2-D
    ```
    """

    name = "graph.layout"

    order: ArrayAttr[IntAttr]
    """Physical dim `i` holds logical dim `order[i]`."""
    tile: ArrayAttr[IntAttr]
    """Tile sizes of the last `len(tile)` physical dims; empty for no tiling."""

    def __init__(self, order: Sequence[int], tile: Sequence[int] = ()):
        super().__init__(ArrayAttr([IntAttr(d) for d in order]), ArrayAttr([IntAttr(t) for t in tile]))

    @property
    def perm(self) -> tuple[int, ...]:
        return tuple(d.data for d in self.order.data)

    @property
    def tiles(self) -> tuple[int, ...]:
        return tuple(t.data for t in self.tile.data)

    @property
    def is_logical(self) -> bool:
        """Row-major in logical order, untiled: what model inputs and outputs use."""
        return self.perm == tuple(range(len(self.perm))) and not self.tiles

    def verify(self) -> None:
        perm = self.perm
        if sorted(perm) != list(range(len(perm))):
            raise VerifyException(f"layout order {list(perm)} is not a permutation of 0..{len(perm) - 1}")
        if len(self.tiles) > len(perm):
            raise VerifyException(f"layout tiles {len(self.tiles)} dims of a rank-{len(perm)} tensor")
        if any(t <= 0 for t in self.tiles):
            raise VerifyException(f"layout tile sizes must be positive, got {list(self.tiles)}")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> list[Attribute]:
        parser.parse_punctuation("<")
        order = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)
        tile: list[int] = []
        if parser.parse_optional_punctuation(","):
            parser.parse_keyword("tile")
            parser.parse_punctuation("=")
            tile = parser.parse_comma_separated_list(parser.Delimiter.SQUARE, parser.parse_integer)
        parser.parse_punctuation(">")
        return [ArrayAttr([IntAttr(d) for d in order]), ArrayAttr([IntAttr(t) for t in tile])]

    def print_parameters(self, printer: Printer) -> None:
        text = f"<[{', '.join(map(str, self.perm))}]"
        if self.tiles:
            text += f", tile = [{', '.join(map(str, self.tiles))}]"
        printer.print_string(text + ">")

    def get_affine_map(self) -> AffineMap:
        """Logical index -> physical index: permute, then (outer, inner) per tile."""
        rank = len(self.perm)
        dims = [AffineExpr.dimension(self.perm[i]) for i in range(rank)]
        split = rank - len(self.tiles)
        outer = dims[:split] + [d // t for d, t in zip(dims[split:], self.tiles)]
        inner = [d % t for d, t in zip(dims[split:], self.tiles)]
        return AffineMap(rank, 0, tuple(outer + inner))


def logical_layout(rank: int) -> LayoutAttr:
    return LayoutAttr(range(rank))


def physical_shape(layout: LayoutAttr, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of the buffer holding a `shape` tensor in `layout`."""
    permuted = [shape[d] for d in layout.perm]
    split = len(permuted) - len(layout.tiles)
    outer = [math.ceil(d / t) for d, t in zip(permuted[split:], layout.tiles)]
    return (*permuted[:split], *outer, *layout.tiles)


def same_element_order(source: Attribute, dest: Attribute) -> bool:
    """
    Whether buffers of one logical shape in the layouts of types `source` and
    `dest` hold their elements in the same order: equal layouts, or untiled
    ones that differ only in where they put dims of size 1 (a 1x1
    convolution's OIHW and OHWI weights). A copy between them is a `memcpy`.
    """
    a, b = layout_of(source), layout_of(dest)
    if a == b:
        return True
    if a.tiles or b.tiles:
        return False
    shape = source.get_shape()
    return [d for d in a.perm if shape[d] > 1] == [d for d in b.perm if shape[d] > 1]


def layout_of(type_: Attribute) -> LayoutAttr:
    """The layout of a tensor or memref type; the logical one when it has none."""
    if isinstance(type_, TensorType) and isinstance(type_.encoding, LayoutAttr):
        return type_.encoding
    if isinstance(type_, MemRefType) and isinstance(type_.layout, LayoutAttr):
        return type_.layout
    return logical_layout(len(type_.get_shape()))


def with_layout(type_: TensorType, layout: LayoutAttr | None) -> TensorType:
    """`type_` with `layout` as its encoding (`None` strips it)."""
    return TensorType(type_.element_type, type_.get_shape(), layout if layout is not None else NoneAttr())


def logical_type(type_: Attribute) -> Attribute:
    """A tensor type without its layout encoding; other types unchanged."""
    if isinstance(type_, TensorType) and not isinstance(type_.encoding, NoneAttr):
        return with_layout(type_, None)
    return type_


def _check_layout_rank(op: IRDLOperation, type_: TensorType) -> None:
    layout = layout_of(type_)
    if len(layout.perm) != len(type_.get_shape()):
        raise VerifyException(
            f"'{op.name}' layout {layout} has rank {len(layout.perm)}, the tensor has rank {len(type_.get_shape())}"
        )


# --------------------------------------------------------------------------- ops


@irdl_op_definition
class RelayoutOp(IRDLOperation):
    """
    Copy a tensor into another physical layout: `result = input` as values.

    Only the encodings differ; the logical shape and dtype are the same.

    ```mlir
    %y = graph.relayout %x : tensor<8x16xf32, #graph.layout<[0, 1]>> -> tensor<8x16xf32, #graph.layout<[1, 0]>>
    ```
    """

    name = "graph.relayout"

    input = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, layout: LayoutAttr):
        super().__init__(operands=[input], result_types=[with_layout(SSAValue.get(input).type, layout)])

    def verify_(self) -> None:
        source, dest = self.input.type, self.result.type
        assert isinstance(source, TensorType) and isinstance(dest, TensorType)
        if logical_type(source) != logical_type(dest):
            raise VerifyException(
                f"'graph.relayout' changes the logical type: {logical_type(source)} -> {logical_type(dest)}"
            )
        _check_layout_rank(self, source)
        _check_layout_rank(self, dest)

