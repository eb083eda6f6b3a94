"""
The `loop` dialect: kernels as tiled loop nests over buffers with memory levels.

Only what upstream dialects lack. Loops are `scf.for` (with `iter_args` for
reductions that carry an accumulator); buffers are `memref`s in the
off-chip (`"global"`) memory space whose layout is a `#graph.layout`;
computation on tiles reuses `graph` ops on tile-shaped tensors. This
dialect adds the kernel boundary, the moves between memory levels and the
few tile ops that need the tile's position:

- `loop.kernel`: one kernel over global buffers (`ins`, then `outs`), with
  the iteration space, tile sizes and loop order it was lowered with.
- `loop.load` / `loop.store`: a tile between a global buffer and an on-chip
  (or register) tensor, at offsets given by an affine map of the loop
  induction variables; reads outside the buffer give `pad`, writes outside
  it are dropped, so edge tiles need no special case.
- `loop.gather`: the rows of a global table a tile of ids selects (an
  embedding lookup reads its rows, not the table).
- `loop.fill`: a tile of one value (an accumulator's initial value).
- `loop.causal_mask`: `graph.causal_mask` of a tile at a given position.
- `loop.online_softmax`: one step of a flash-attention key loop.
- `loop.copy` (relayout between buffers) and `loop.view` (a reshape of a
  logical-layout buffer), outside kernels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    DenseArrayBase,
    FloatAttr,
    Float64Type,
    IndexType,
    IntegerAttr,
    IntegerType,
    MemRefType,
    StringAttr,
    TensorType,
    f64,
    i64,
)
from xdsl.dialects import arith, func, memref, scf
from xdsl.ir import Attribute, BlockArgument, Dialect, Operation, Region, SSAValue
from xdsl.ir.affine import AffineConstantExpr, AffineMap
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    VarConstraint,
    base,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, Pure
from xdsl.utils.exceptions import VerifyException

from strata.dialects.graph import PARAM_ATTR
from strata.dialects.graph.kernel import KERNEL_KINDS
from strata.dialects.graph.layout import layout_of
from strata.dialects.graph.ops import CastOp, Conv2DOp, DequantizeOp, MatmulOp, TransposeOp, verify_collective
from strata.dialects.vocabulary import CHIP_ATTR, DATAFLOW_ATTR, DATAFLOWS, SHARDS_ATTR, type_bytes

LEVELS = ("global", "onchip", "register")
"""Memory levels, outermost first: off-chip buffers, on-chip tiles, registers."""
GLOBAL = StringAttr("global")


def global_memref(element_type: Attribute, shape: Sequence[int], layout: Attribute) -> MemRefType:
    """The type of an off-chip buffer holding a tensor in `layout`."""
    return MemRefType(element_type, shape, layout, GLOBAL)


def _ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


def _check_map(op: IRDLOperation, indices: Sequence[SSAValue], map_: AffineMap, rank: int) -> None:
    if map_.num_dims != len(indices):
        raise VerifyException(f"'{op.name}' map takes {map_.num_dims} indices, {len(indices)} given")
    if len(map_.results) != rank:
        raise VerifyException(f"'{op.name}' map gives {len(map_.results)} offsets for a rank-{rank} tile")


def _check_global(op: IRDLOperation, type_: Attribute) -> MemRefType:
    if not isinstance(type_, MemRefType) or type_.memory_space != GLOBAL:
        raise VerifyException(f"'{op.name}' needs a buffer in the \"global\" memory space, got {type_}")
    return type_


@irdl_op_definition
class EndOp(IRDLOperation):
    """Terminator of a `loop.kernel` body."""

    name = "loop.end"
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(KernelOp)))
    assembly_format = "attr-dict"


@irdl_op_definition
class KernelOp(IRDLOperation):
    """
    One kernel: its body reads `ins` and writes `outs`, all global buffers.

    `bounds` is the iteration space (the output's dims, then the extent of the
    reduction loop if the kernel has one), `tile_sizes` the tile of each, and
    `loop_order` the nesting of the parallel tile loops, outermost first.
    `ops` names the graph ops fused into it.

    ```mlir
    loop.kernel "gemm_0" ins(%x, %w : memref<...>, memref<...>) outs(%y : memref<...>)
        {kind = "gemm", bounds = array<i64: 8, 4, 16>, tile_sizes = array<i64: 8, 4, 16>,
         loop_order = array<i64: 0, 1>, ops = ["graph.matmul"]} {
    ^bb0(%a: memref<...>, %b: memref<...>, %c: memref<...>):
      ...
      loop.end
    }
    ```
    """

    name = "loop.kernel"

    ins = var_operand_def(MemRefType)
    outs = var_operand_def(MemRefType)
    kernel_name = prop_def(StringAttr)
    kind = prop_def(StringAttr)
    bounds = prop_def(DenseArrayBase)
    tile_sizes = prop_def(DenseArrayBase)
    loop_order = prop_def(DenseArrayBase)
    ops = prop_def(ArrayAttr[StringAttr])
    body = region_def("single_block")

    traits = traits_def(IsolatedFromAbove())
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = (
        "$kernel_name `ins` `(` $ins `:` type($ins) `)` `outs` `(` $outs `:` type($outs) `)` attr-dict-with-keyword $body"
    )

    def __init__(
        self,
        kernel_name: str,
        kind: str,
        ins: Sequence[SSAValue],
        outs: Sequence[SSAValue],
        bounds: Sequence[int],
        tile_sizes: Sequence[int],
        loop_order: Sequence[int],
        ops: Sequence[str],
        body: Region,
    ):
        super().__init__(
            operands=[ins, outs],
            properties={
                "kernel_name": StringAttr(kernel_name),
                "kind": StringAttr(kind),
                "bounds": _ints(bounds),
                "tile_sizes": _ints(tile_sizes),
                "loop_order": _ints(loop_order),
                "ops": ArrayAttr([StringAttr(o) for o in ops]),
            },
            regions=[body],
        )

    def verify_(self) -> None:
        verify_kernel(self)
        # The kind says which figures the passes and cost models compute (an
        # edited dump's "row" kernel around a matmul would be costed as a row).
        kind, body = self.kind.data, list(self.body.walk())
        for kinds, anchor, anchor_name in ((("gemm", "attention"), MatmulOp, "graph.matmul"),
                                           (("attention",), OnlineSoftmaxOp, "loop.online_softmax"),
                                           (("conv",), Conv2DOp, "graph.conv2d")):
            if (kind in kinds) != any(isinstance(op, anchor) for op in body):
                raise VerifyException(f"'{self.name}' of kind '{kind}' {'lacks' if kind in kinds else 'holds'}"
                                      f" a {anchor_name}: only {' and '.join(kinds)} kernels hold one")


MAX_TRIPS = 2**40
"""More iterations than any tile loop of a real kernel has: an edited dump's runaway bound."""


def _constant(value: SSAValue) -> int | None:
    owner = value.owner
    if isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr):
        return owner.value.value.data
    return None


def _verify_tile_loop(kernel: IRDLOperation, loop_op: scf.ForOp) -> None:
    """A tile loop steps forward by a positive constant and ends within `MAX_TRIPS` iterations."""
    step, lb, ub = _constant(loop_op.step), _constant(loop_op.lb), _constant(loop_op.ub)
    if step is not None and step <= 0:
        raise VerifyException(f"'{kernel.name}' has a tile loop stepping by {step}; steps must be positive")
    if None not in (step, lb, ub) and (ub - lb) // step > MAX_TRIPS:
        raise VerifyException(f"'{kernel.name}' has a tile loop of {(ub - lb) // step} iterations, more than any"
                              f" kernel's tiles ({MAX_TRIPS})")


def int_values(op: IRDLOperation, name: str) -> tuple[int, ...]:
    """
    The values of `op`'s `array<i64: ...>` property `name`; an edited dump's
    `array<f32: ...>` there fails verification, not a later pass.
    """
    attr = getattr(op, name)
    if not isinstance(attr.elt_type, IntegerType):
        raise VerifyException(f"'{op.name}' {name} must be an array<i64: ...>, got {attr}")
    return tuple(attr.get_values())


KIND_BOUNDS = {"gemm": 3, "attention": 3, "conv": 4}
"""The fewest iteration dims a kernel of these kinds has (M, N, K and batch ones; conv's N, F, OH, OW);
the passes and cost models unpack them."""


def verify_kernel(op: IRDLOperation) -> None:
    """What every kernel over global buffers must satisfy (loop and hardware kernels)."""
    bounds, tiles = int_values(op, "bounds"), int_values(op, "tile_sizes")
    if min(bounds, default=1) < 1:
        raise VerifyException(f"'{op.name}' bounds {list(bounds)} must be positive")
    kind = op.kind.data
    if kind not in KERNEL_KINDS:
        raise VerifyException(f"'{op.name}' unknown kind '{kind}' (kinds: {', '.join(KERNEL_KINDS)})")
    if len(bounds) < KIND_BOUNDS.get(kind, 0) or (kind == "conv" and len(bounds) != 4):
        raise VerifyException(f"'{op.name}' of kind '{kind}' has {'' if kind == 'conv' else 'at least '}"
                              f"{KIND_BOUNDS[kind]} bounds, got {list(bounds)}")
    if len(bounds) != len(tiles):
        raise VerifyException(f"'{op.name}' has {len(bounds)} bounds but {len(tiles)} tile sizes")
    if any(t <= 0 or t > b for t, b in zip(tiles, bounds)):
        raise VerifyException(f"'{op.name}' tile sizes {list(tiles)} must be in 1..bounds {list(bounds)}")
    order = int_values(op, "loop_order")
    if sorted(order) != list(range(len(order))) or len(order) > len(bounds):
        raise VerifyException(f"'{op.name}' loop_order {list(order)} is not a permutation of the parallel dims")
    for value in (*op.ins, *op.outs):
        _check_global(op, value.type)
    block = op.body.block
    if [a.type for a in block.args] != [v.type for v in (*op.ins, *op.outs)]:
        raise VerifyException(f"'{op.name}' block arguments must match its ins and outs")
    dataflow = op.attributes.get(DATAFLOW_ATTR)
    if dataflow is not None and not (isinstance(dataflow, StringAttr) and dataflow.data in DATAFLOWS):
        raise VerifyException(f"'{op.name}' {DATAFLOW_ATTR} must be one of {', '.join(DATAFLOWS)}, got {dataflow}")
    for loop_op in block.walk():
        if isinstance(loop_op, scf.ForOp):
            _verify_tile_loop(op, loop_op)
    for key, least in ((CHIP_ATTR, 0), (SHARDS_ATTR, 1)):
        value = op.attributes.get(key)
        if value is not None and not (isinstance(value, IntegerAttr) and value.value.data >= least):
            raise VerifyException(f"'{op.name}' {key} must be an integer of at least {least}, got {value}")


@irdl_op_definition
class LoadOp(IRDLOperation):
    """
    Read a tile: `result[t] = source[map(indices) + t]`, or `pad` outside `source`.

    Offsets and the tile are in the logical index space; the buffer's layout
    says where each element sits. `level` is where the tile lives.

    ```mlir
    %t = loop.load %a[%i, %k] {map = affine_map<(d0, d1) -> (d0 * 8, d1 * 16)>,
        level = "onchip", pad = 0.0 : f64} : memref<...> -> tensor<8x16xf32>
    ```
    """

    name = "loop.load"

    source = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    result = result_def(TensorType)
    map = prop_def(AffineMapAttr)
    level = prop_def(StringAttr)
    pad = prop_def(FloatAttr[Float64Type])

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$source `[` $indices `]` attr-dict `:` type($source) `->` type($result)"

    def __init__(self, source: SSAValue, indices: Sequence[SSAValue], map_: AffineMap, shape: Sequence[int],
                 level: str = "onchip", pad: float = 0.0):
        memref = SSAValue.get(source).type
        super().__init__(
            operands=[source, indices],
            result_types=[TensorType(memref.element_type, shape)],
            properties={"map": AffineMapAttr(map_), "level": StringAttr(level), "pad": FloatAttr(pad, f64)},
        )

    def verify_(self) -> None:
        memref = _check_global(self, self.source.type)
        if self.level.data not in LEVELS[1:]:
            raise VerifyException(f"'loop.load' level must be onchip or register, got '{self.level.data}'")
        if self.result.type.element_type != memref.element_type:
            raise VerifyException("'loop.load' tile and buffer element types differ")
        _check_map(self, self.indices, self.map.data, memref.get_num_dims())
        if len(self.result.type.get_shape()) != memref.get_num_dims():
            raise VerifyException("'loop.load' tile rank differs from the buffer's")


@irdl_op_definition
class GatherOp(IRDLOperation):
    """
    Read the rows a tile of ids selects: `result[i, t] = source[ids[i], map(indices) + t]`,
    or `pad` where `map(indices) + t` falls outside the row.

    `ids` is an on-chip tile of integers; each names a row of `source` as in
    `graph.gather`: a negative id counts from the end, an id outside `[-V, V)`
    is an error of the loop interpreter and clamped into `[0, V)` by native
    code (`--backend mlir`), which does not check; the map gives the offsets
    of the other dims. Only the selected rows cross from `source`, not the
    table (an embedding lookup reads `len(ids)` rows).

    ```mlir
    %rows = loop.gather %table[%i, %j] by %ids {map = affine_map<(d0, d1) -> (d1 * 64)>,
        pad = 0.0 : f64} : memref<50257x768xf32, ...>, tensor<16xi64> -> tensor<16x64xf32>
    ```
    """

    name = "loop.gather"

    source = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    ids = operand_def(TensorType)
    result = result_def(TensorType)
    map = prop_def(AffineMapAttr)
    pad = prop_def(FloatAttr[Float64Type])

    traits = traits_def(Pure())
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = (
        "$source `[` $indices `]` `by` $ids attr-dict `:` type($source) `,` type($ids) `->` type($result)"
    )

    def __init__(self, source: SSAValue, indices: Sequence[SSAValue], ids: SSAValue, map_: AffineMap,
                 sizes: Sequence[int], pad: float = 0.0):
        memref = SSAValue.get(source).type
        shape = [*SSAValue.get(ids).type.get_shape(), *sizes]
        super().__init__(
            operands=[source, indices, ids],
            result_types=[TensorType(memref.element_type, shape)],
            properties={"map": AffineMapAttr(map_), "pad": FloatAttr(pad, f64)},
        )

    def verify_(self) -> None:
        memref = _check_global(self, self.source.type)
        if self.result.type.element_type != memref.element_type:
            raise VerifyException("'loop.gather' tile and table element types differ")
        if not isinstance(self.ids.type.element_type, IntegerType):
            raise VerifyException("'loop.gather' ids must be integers")
        _check_map(self, self.indices, self.map.data, memref.get_num_dims() - 1)
        ids_rank = len(self.ids.type.get_shape())
        if list(self.result.type.get_shape()[:ids_rank]) != list(self.ids.type.get_shape()):
            raise VerifyException("'loop.gather' tile must start with the ids' shape")
        if len(self.result.type.get_shape()) != ids_rank + memref.get_num_dims() - 1:
            raise VerifyException("'loop.gather' tile rank must be the ids' rank plus the row's")


@irdl_op_definition
class StoreOp(IRDLOperation):
    """
    Write a tile: `dest[map(indices) + t] = value[t]` where inside `dest`.

    ```mlir
    loop.store %t, %c[%i, %j] {map = affine_map<(d0, d1) -> (d0 * 8, d1 * 4)>}
        : tensor<8x4xf32> -> memref<...>
    ```
    """

    name = "loop.store"

    value = operand_def(TensorType)
    dest = operand_def(MemRefType)
    indices = var_operand_def(IndexType)
    map = prop_def(AffineMapAttr)

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$value `,` $dest `[` $indices `]` attr-dict `:` type($value) `->` type($dest)"

    def __init__(self, value: SSAValue, dest: SSAValue, indices: Sequence[SSAValue], map_: AffineMap):
        super().__init__(operands=[value, dest, indices], properties={"map": AffineMapAttr(map_)})

    def verify_(self) -> None:
        memref = _check_global(self, self.dest.type)
        if self.value.type.element_type != memref.element_type:
            raise VerifyException("'loop.store' tile and buffer element types differ")
        _check_map(self, self.indices, self.map.data, memref.get_num_dims())
        if len(self.value.type.get_shape()) != memref.get_num_dims():
            raise VerifyException("'loop.store' tile rank differs from the buffer's")


@irdl_op_definition
class FillOp(IRDLOperation):
    """
    A tile with every element `value`, held at `level` (an accumulator).

    ```mlir
    %acc = loop.fill {value = 0.0 : f64, level = "register"} : tensor<8x4xf32>
    ```
    """

    name = "loop.fill"

    result = result_def(TensorType)
    value = prop_def(FloatAttr[Float64Type])
    level = prop_def(StringAttr)

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "attr-dict `:` type($result)"

    def __init__(self, value: float, type_: TensorType, level: str = "register"):
        super().__init__(
            result_types=[type_], properties={"value": FloatAttr(value, f64), "level": StringAttr(level)}
        )


@irdl_op_definition
class CausalMaskOp(IRDLOperation):
    """
    `graph.causal_mask` of a tile whose first element sits at (row, col) =
    `map(indices)` of the whole matrix: `-inf` where `col + j > row + i`.

    ```mlir
    %m = loop.causal_mask %s[%i, %j] {map = affine_map<(d0, d1) -> (d0 * 16, d1 * 16)>} : tensor<1x16x16xf32>
    ```
    """

    name = "loop.causal_mask"

    input = operand_def(TensorType)
    indices = var_operand_def(IndexType)
    result = result_def(TensorType)
    map = prop_def(AffineMapAttr)

    traits = traits_def(Pure())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$input `[` $indices `]` attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue, indices: Sequence[SSAValue], map_: AffineMap):
        super().__init__(
            operands=[input, indices],
            result_types=[SSAValue.get(input).type],
            properties={"map": AffineMapAttr(map_)},
        )

    def verify_(self) -> None:
        if len(self.map.data.results) != 2:
            raise VerifyException("'loop.causal_mask' map must give (row, col)")
        if self.map.data.num_dims != len(self.indices):
            raise VerifyException("'loop.causal_mask' map and indices differ in count")
        if self.result.type != self.input.type or len(self.input.type.get_shape()) < 2:
            raise VerifyException("'loop.causal_mask' needs a rank >= 2 tile and returns its type")


@irdl_op_definition
class OnlineSoftmaxOp(IRDLOperation):
    """
    One key-tile step of flash attention; the score matrix is never whole.

    With scores `s` (`[..., q, k]`), values `v` (`[..., k, d]`) and the running
    row max `m`, row sum `l` (`[..., q, 1]`) and output `acc` (`[..., q, d]`):
    `m' = max(m, rowmax(s))`, `p = exp(s - m')`, `c = exp(m - m')`,
    `l' = l * c + rowsum(p)`, `acc' = acc * c + p @ v`. After the last
    tile, `acc / l` is `softmax(s) @ v`.

    ```mlir
    %m2, %l2, %a2 = loop.online_softmax %s, %v, %m, %l, %a
        : tensor<1x16x16xf32>, tensor<1x16x8xf32>, tensor<1x16x1xf32>, tensor<1x16x1xf32>, tensor<1x16x8xf32>
    ```
    """

    name = "loop.online_softmax"

    M: ClassVar = VarConstraint("M", base(TensorType))
    A: ClassVar = VarConstraint("A", base(TensorType))

    scores = operand_def(TensorType)
    values = operand_def(TensorType)
    max_in = operand_def(M)
    sum_in = operand_def(M)
    acc_in = operand_def(A)
    max_out = result_def(M)
    sum_out = result_def(M)
    acc_out = result_def(A)

    traits = traits_def(Pure())
    assembly_format = (
        "$scores `,` $values `,` $max_in `,` $sum_in `,` $acc_in attr-dict `:` type($scores) `,` type($values)"
        " `,` type($max_in) `,` type($sum_in) `,` type($acc_in)"
    )

    def __init__(self, scores, values, max_in, sum_in, acc_in):
        super().__init__(
            operands=[scores, values, max_in, sum_in, acc_in],
            result_types=[SSAValue.get(max_in).type, SSAValue.get(sum_in).type, SSAValue.get(acc_in).type],
        )

    def verify_(self) -> None:
        s, v = self.scores.type.get_shape(), self.values.type.get_shape()
        m, l, a = (x.type.get_shape() for x in (self.max_in, self.sum_in, self.acc_in))
        q, k, d = s[-2], s[-1], v[-1]
        if v[-2] != k or m[-2:] != (q, 1) or l != m or a[-2:] != (q, d):
            raise VerifyException(
                f"'loop.online_softmax' shapes do not agree: scores {s}, values {v}, max {m}, sum {l}, acc {a}"
            )


@irdl_op_definition
class CopyOp(IRDLOperation):
    """
    Copy `source` into `dest` (same logical shape and dtype, other layouts).

    ```mlir
    loop.copy %a, %b : memref<4x8xf32, #graph.layout<[0, 1]>, "global"> -> memref<4x8xf32, #graph.layout<[1, 0]>, "global">
    ```
    """

    name = "loop.copy"

    source = operand_def(MemRefType)
    dest = operand_def(MemRefType)
    assembly_format = "$source `,` $dest attr-dict `:` type($source) `->` type($dest)"

    def __init__(self, source: SSAValue, dest: SSAValue):
        super().__init__(operands=[source, dest])

    def verify_(self) -> None:
        a, b = self.source.type, self.dest.type
        if a.get_shape() != b.get_shape() or a.element_type != b.element_type:
            raise VerifyException("'loop.copy' buffers differ in shape or element type")


@irdl_op_definition
class ViewOp(IRDLOperation):
    """
    The same row-major buffer seen with another shape (`graph.reshape`).

    ```mlir
    %v = loop.view %a : memref<4x8xf32, #graph.layout<[0, 1]>, "global"> -> memref<32xf32, #graph.layout<[0]>, "global">
    ```
    """

    name = "loop.view"

    source = operand_def(MemRefType)
    result = result_def(MemRefType)

    traits = traits_def(Pure())
    assembly_format = "$source attr-dict `:` type($source) `->` type($result)"

    def __init__(self, source: SSAValue, result_type: MemRefType):
        super().__init__(operands=[source], result_types=[result_type])

    def verify_(self) -> None:
        a, b = self.source.type, self.result.type
        if math.prod(a.get_shape()) != math.prod(b.get_shape()) or a.element_type != b.element_type:
            raise VerifyException("'loop.view' changes the element count or type")
        for t in (a, b):
            layout = t.layout
            if getattr(layout, "is_logical", True) is False:
                raise VerifyException("'loop.view' needs buffers in the logical (row-major) layout")


class CollectiveBase(IRDLOperation):
    """
    Base of the collectives on buffers (`loop.all_reduce`, `loop.all_gather`,
    `loop.reduce_scatter` and the hardware dialects' own): the `graph` op of
    the same name from `source` into `dest`, both in the logical layout.
    """

    source = operand_def(MemRefType)
    dest = operand_def(MemRefType)
    axis = prop_def(StringAttr)
    devices = prop_def(IntegerAttr)

    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = "$source `,` $dest attr-dict `:` type($source) `->` type($dest)"

    def __init__(self, source: SSAValue, dest: SSAValue, properties: dict[str, Attribute]):
        super().__init__(operands=[source, dest], properties=dict(properties))

    def verify_(self) -> None:
        a, b = self.source.type, self.dest.type
        if a.element_type != b.element_type:
            raise VerifyException(f"'{self.name}' buffers differ in element type")
        for t in (a, b):
            if getattr(t.layout, "is_logical", True) is False:
                raise VerifyException(f"'{self.name}' needs buffers in the logical (row-major) layout")
        verify_collective(self, a.get_shape(), b.get_shape())


class AllReduceBase(CollectiveBase):
    """`dest = sum of source over the devices of the group`."""


class AllGatherBase(CollectiveBase):
    """`dest` = the devices' blocks of `source` joined along `dim` (see `graph.all_gather`)."""

    dim = prop_def(IntegerAttr)
    groups = prop_def(IntegerAttr)


class ReduceScatterBase(CollectiveBase):
    """`dest` = this device's block along `dim` of the sum of `source` over the group (see `graph.reduce_scatter`)."""

    dim = prop_def(IntegerAttr)
    groups = prop_def(IntegerAttr)


@irdl_op_definition
class AllReduceOp(AllReduceBase):
    """
    `graph.all_reduce` on buffers.

    ```mlir
    loop.all_reduce %a, %b {axis = "tp", devices = 2 : i64} : memref<...> -> memref<...>
    ```
    """

    name = "loop.all_reduce"


@irdl_op_definition
class AllGatherOp(AllGatherBase):
    """`graph.all_gather` on buffers."""

    name = "loop.all_gather"


@irdl_op_definition
class ReduceScatterOp(ReduceScatterBase):
    """`graph.reduce_scatter` on buffers."""

    name = "loop.reduce_scatter"


COLLECTIVE_PROPERTIES = ("axis", "devices", "dim", "groups")
"""The properties a collective keeps from one stage to the next."""


def collective_properties(op: IRDLOperation) -> dict[str, Attribute]:
    """What a collective of any stage says, for its lowering to the next."""
    return {name: op.properties[name] for name in COLLECTIVE_PROPERTIES if name in op.properties}


def param_buffers(fn: func.FuncOp) -> dict[SSAValue, SSAValue]:
    """
    Each buffer of a loop-stage function that holds a param's values (the
    param, its views, its relaid copies) to that param: the weights the
    placement, the memory model and the LPU schedule keep resident.
    """
    block = fn.body.block
    attrs = fn.arg_attrs.data if fn.arg_attrs else [None] * len(block.args)
    params = {arg: arg for arg, a in zip(block.args, attrs) if a is not None and PARAM_ATTR in a.data}
    for op in block.ops:
        if isinstance(op, CopyOp) and op.source in params:
            params[op.dest] = params[op.source]
        elif isinstance(op, ViewOp) and op.source in params:
            params[op.result] = params[op.source]
    return params


@dataclass(frozen=True)
class LoadPlan:
    """What of a function runs once, when its params are loaded (`load_plan`)."""

    ops: frozenset[Operation]
    """The kernels and copies that run at load, not on every call."""
    written: frozenset[SSAValue]
    """The buffers they write (fresh allocations)."""
    prepared: tuple[SSAValue, ...]
    """Those of them the call reads (directly or through views), in program order."""


def load_plan(fn: func.FuncOp, kernel_types: tuple[type, ...] = ()) -> LoadPlan:
    """
    The work of a loop- or hardware-stage function that depends on its params
    alone, run once when the params are loaded instead of on every call, as
    ONNX Runtime folds initializers, TVM binds params and IREE hoists constant
    expressions into globals: every `loop.copy` of a param-derived buffer (a
    weight relaid into its kernel's layout) and every kernel (`loop.kernel`, or
    `kernel_types`) whose `ins` are all param-derived and whose results are no
    larger than them (a per-channel scale product; never a dequantized copy of
    a weight that would multiply its resident bytes, IREE's size threshold).
    A param-derived buffer is a param, a view of one, or the result of such
    work. Its results must be fresh allocations written by nothing else and
    not returned (an output is written on every call).
    """
    block = fn.body.block
    attrs = fn.arg_attrs.data if fn.arg_attrs else [None] * len(block.args)
    params = {arg for arg, a in zip(block.args, attrs) if a is not None and PARAM_ATTR in a.data}
    roots = view_roots(block)
    returned = block.last_op.operands if isinstance(block.last_op, func.ReturnOp) else ()
    blocked = {roots.get(v, v) for v in returned}
    while True:
        derived, hoisted = set(params), set()
        for op in block.ops:
            if isinstance(op, ViewOp):
                if op.source in derived:
                    derived.add(op.result)
                continue
            moved = _kernel_buffers(op, kernel_types)
            if moved is None:
                continue
            ins, outs = moved
            fresh = all(isinstance(v.owner, memref.AllocOp) and v not in blocked for v in outs)
            small = isinstance(op, CopyOp) or _bytes(outs) <= _bytes(ins)
            if ins and fresh and small and all(v in derived for v in ins):
                hoisted.add(op)
                derived.update(outs)
        # A buffer written at load must not be written again by the call.
        per_call = {roots.get(v, v) for op in block.ops if op not in hoisted
                    for v in (_kernel_buffers(op, kernel_types) or ((), ()))[1]}
        clash = {v for op in hoisted for v in _kernel_buffers(op, kernel_types)[1] if v in per_call}
        if not clash:
            break
        blocked |= clash
    written = {v for op in hoisted for v in _kernel_buffers(op, kernel_types)[1]}
    read = {roots.get(v, v) for op in block.ops if op not in hoisted and not isinstance(op, ViewOp)
            for v in op.operands}
    prepared = tuple(op.memref for op in block.ops
                     if isinstance(op, memref.AllocOp) and op.memref in written and op.memref in read)
    return LoadPlan(frozenset(hoisted), frozenset(written), prepared)


def buffer_touches(fn: func.FuncOp, kernel_types: tuple[type, ...] = (),
                   skip: frozenset[Operation] = frozenset()) -> list[tuple[Operation, tuple[SSAValue, ...]]]:
    """Each kernel (`loop.kernel`, or `kernel_types`) and `loop.copy` of the function but `skip`, in
    program order, with the buffers it reads and then those it writes (views as they are: `view_roots`)."""
    touches = []
    for op in fn.body.block.ops:
        moved = None if op in skip else _kernel_buffers(op, kernel_types)
        if moved is not None:
            touches.append((op, (*moved[0], *moved[1])))
    return touches


def _bytes(buffers) -> int:
    return sum(type_bytes(v.type) for v in buffers)


def view_roots(block) -> dict[SSAValue, SSAValue]:
    """Each view of the block to the buffer it views (through views of views)."""
    roots: dict[SSAValue, SSAValue] = {}
    for op in block.ops:
        if isinstance(op, ViewOp):
            roots[op.result] = roots.get(op.source, op.source)
    return roots


def _kernel_buffers(op: Operation, kernel_types: tuple[type, ...]) -> tuple[tuple, tuple] | None:
    """The buffers a kernel or copy reads and writes; None for any other op."""
    if isinstance(op, CopyOp):
        return (op.source,), (op.dest,)
    if isinstance(op, (KernelOp, *kernel_types)):
        return tuple(op.ins), tuple(op.outs)
    return None


# --------------------------------------------------------------------------- trip counts


INDEX_OPS = {
    arith.AddiOp: lambda a, b: a + b,
    arith.SubiOp: lambda a, b: a - b,
    arith.MuliOp: lambda a, b: a * b,
    arith.MinSIOp: min,
    arith.MaxSIOp: max,
}
"""The index arithmetic a loop bound may be computed with."""


def index_value(value: SSAValue, ivs: dict[SSAValue, int]) -> int:
    """An index value from constants, the index arithmetic above and the loop counters `ivs`."""
    if value in ivs:
        return ivs[value]
    op = value.owner
    if isinstance(op, arith.ConstantOp):
        return op.value.value.data
    if type(op) in INDEX_OPS:
        return INDEX_OPS[type(op)](index_value(op.lhs, ivs), index_value(op.rhs, ivs))
    raise ValueError("loop bounds must be constants, loop counters or index arithmetic of them")


def weight_rows(op: Operation, lanes: int) -> tuple[int, ...] | None:
    """
    For a `loop.load` of a weight used only as an ungrouped
    `graph.conv2d`'s weight, held in (o, ...) order (a permutation of its
    dims without tiles), whole but for a tile of output channels that
    divides them, its rows (c x kh x kw) whole vectors of `lanes`: the
    order of the weight's dims (c: 1, i: 2, j: 3) in its rows. Such a tile
    is a run of whole rows of the buffer: export-mlir copies it row by row,
    by vectors, as the [O, K] operand of the convolution's product (the
    implicit GEMM in f32, the im2col product otherwise; K then follows that
    order), and the cpu cost model prices no strided walk for it. None
    otherwise.
    """
    uses = list(op.result.uses) if isinstance(op, LoadOp) else []
    if len(uses) != 1:
        return None
    user = uses[0].operation
    if not isinstance(user, Conv2DOp) or user.weight is not op.result or user.groups.value.data != 1:
        return None
    layout, logical = layout_of(op.source.type), op.source.type.get_shape()
    perm = list(layout.perm)
    tile = op.result.type.get_shape()
    if layout.tiles or len(perm) != 4 or perm[0] != 0 or list(tile[1:]) != list(logical[1:]) \
            or logical[0] % tile[0]:
        return None
    if not all(isinstance(e, AffineConstantExpr) and e.value == 0 for e in op.map.data.results[1:]):
        return None
    if math.prod(logical[1:]) % lanes:
        return None  # rows not whole vectors: the element-by-element load
    return tuple(perm[1:])


def stores_in_place(op: Operation) -> bool:
    """
    Whether a `loop.store` writes its whole buffer as it is laid out (row-major, at offset 0, in the
    buffer's element type) a value an elementwise op computed (not the add of a tile product into its
    accumulator): export-mlir then has that op's loop write the buffer itself, copying nothing
    (where the op is one `linalg.generic`), and the cpu cost model prices no store pass for it.
    """
    if not isinstance(op, StoreOp):
        return False
    from strata.dialects.graph import ops as g
    from strata.dialects.hardware._kernel import MatrixOp

    producer = op.value.owner
    if not isinstance(producer, (g.BinaryElementwiseOp, g.UnaryElementwiseOp, g.CastOp, g.QuantizeOp, g.DequantizeOp)):
        return False
    if any(isinstance(v.owner, MatmulOp | MatrixOp) for v in producer.operands) or op.value.uses.get_length() != 1:
        return False
    dest, tile = op.dest.type, op.value.type
    layout = layout_of(dest)
    return (tuple(tile.get_shape()) == tuple(dest.get_shape()) and tile.element_type == dest.element_type
            and not layout.tiles and list(layout.perm) == list(range(len(tile.get_shape())))
            and all(isinstance(e, AffineConstantExpr) and e.value == 0 for e in op.map.data.results))


STREAMED_ROWS = 8
"""The most rows of a slab of a product's `b` read in place: the micro-kernel walks the slab strip by
strip, one stream of memory per row, and more streams than this outrun the hardware prefetchers (the
Zen 4 guest, 2026-12-07: `[1, 16384] @ w: bf16[16384, 4096]` from DRAM 7.8 to 10.5 ms in slabs of 8
rows, 11.7 to 17.1 in slabs of 16; a decode step's output projection, `[1, 4096] @ dequantize(i4[4096,
4096])` in slabs of 128 rows, 5.2 to 5.4 ms read in place, 3.6 copied)."""


def reads_in_place(op: Operation) -> bool:
    """
    Whether a `loop.load` reads its tile where it lies (`in_place_slab`), for an op other than a
    matrix product (whose operands the micro-kernel packs; but the `b` of a product of one row,
    `single_row_rhs`, a decode step's GEMV, uses each element once: packing it would only copy it)
    or a convolution's weight held as rows (`weight_rows`): export-mlir then reads the buffer
    itself (a `tensor.extract_slice` of it), copying nothing, and the cpu cost model prices no
    copy phase for it. A product's `b` (`product_rhs`) is read in place whole, or in windows of at
    most `STREAMED_ROWS` rows (`in_place_window`: rows of a tile split by columns for more threads
    are runs of their own).
    """
    if not isinstance(op, LoadOp) or weight_rows(op, 1) is not None:
        return False
    # The hardware dialects import this module: their matrix op is looked up when called.
    from strata.dialects.hardware._kernel import MatrixOp

    def feeds_matmul(value: SSAValue) -> bool:
        # A graph.matmul, or what lower-to-hardware made of it (cpu.fma), as the cost model sees it.
        return any(isinstance(use.operation, MatmulOp | MatrixOp)
                   or isinstance(use.operation, TransposeOp) and feeds_matmul(use.operation.result)
                   for use in value.uses)

    if feeds_matmul(op.result) and not single_row_rhs(op.result):
        return False
    if not product_rhs(op.result):
        return in_place_slab(op)
    tile, source = op.result.type.get_shape(), op.source.type.get_shape()
    return in_place_window(op) and (tuple(tile) == tuple(source) or tile[-2] <= STREAMED_ROWS)


def product_rhs(value: SSAValue) -> bool:
    """
    Whether `value` is the 2-D `b` of a matrix product (the graph's or `cpu.fma`), directly or
    through casts and a dequantize of it.
    """
    from strata.dialects.hardware._kernel import MatrixOp

    uses = list(value.uses)
    if len(uses) != 1 or len(value.type.get_shape()) != 2:
        return False
    user = uses[0].operation
    if isinstance(user, CastOp) or isinstance(user, DequantizeOp) and uses[0].index == 0:
        return product_rhs(user.results[0])
    return isinstance(user, MatmulOp | MatrixOp) and uses[0].index == 1


def single_row_rhs(value: SSAValue) -> bool:
    """Whether `value`'s one use is the 2-D `b` of a matrix product (the graph's or `cpu.fma`) whose `a` has one row."""
    from strata.dialects.hardware._kernel import MatrixOp

    uses = list(value.uses)
    if len(uses) != 1 or uses[0].index != 1 or not isinstance(uses[0].operation, MatmulOp | MatrixOp):
        return False
    lhs = uses[0].operation.operands[0].type.get_shape()
    return len(value.type.get_shape()) == 2 and math.prod(lhs[:-1]) == 1


def in_place_window(op: LoadOp) -> bool:
    """
    Whether a load's tile is a window of its buffer that can be read where it lies, a run of
    memory per row: in the buffer's own element type, of the logical, row-major layout, each
    extent a divisor of the buffer's (no tile reaches past the edge).
    """
    source, tile = op.source.type, op.result.type
    layout, logical, extent = layout_of(source), source.get_shape(), tile.get_shape()
    return (tile.element_type == source.element_type and not layout.tiles
            and list(layout.perm) == list(range(len(extent))) and not any(n % e for n, e in zip(logical, extent)))


def in_place_slab(op: LoadOp) -> bool:
    """
    Whether a load's tile is one run of its buffer's memory, in the buffer's own element type: of
    the logical, row-major layout, unit dims, then at most one dim of part of the buffer's extent
    (a divisor of it: no tile reaches past the edge), then whole dims read from 0 (the whole
    buffer, or a [k, N] tile of whole rows of a [K, N] weight).
    """
    if not in_place_window(op):
        return False
    logical, extent = op.source.type.get_shape(), op.result.type.get_shape()
    partial = [d for d in range(len(extent)) if extent[d] != logical[d]]
    if len(partial) > 1 or partial and any(extent[d] != 1 for d in range(partial[0])):
        return False
    first_whole = partial[0] + 1 if partial else 0
    return all(isinstance(e, AffineConstantExpr) and e.value == 0 for e in op.map.data.results[first_whole:])


def counters(value: SSAValue) -> set[SSAValue]:
    """The loop counters an index value depends on."""
    if isinstance(value, BlockArgument):
        return {value}
    op = value.owner
    return set().union(*(counters(v) for v in op.operands)) if op.operands else set()


def trips(lb: int, ub: int, step: int) -> int:
    return max(0, -(-(ub - lb) // step))


def trip_count(op: scf.ForOp) -> int:
    """Iterations of a loop with constant bounds."""
    return trips(*(index_value(v, {}) for v in (op.lb, op.ub, op.step)))


def iterations(op: scf.ForOp, times: int, outer: dict[SSAValue, scf.ForOp]) -> int:
    """
    How often `op`'s body runs in all: `times` runs of `op` by its trip
    count, or, when its bounds depend on enclosing loop counters (a causal
    flash loop's keys end at the query tile's diagonal), summed over the
    values those counters take.
    """
    bounds = (op.lb, op.ub, op.step)
    depends = set().union(*(counters(v) for v in bounds))
    if not depends:
        return times * trip_count(op)
    if not depends <= outer.keys():
        raise ValueError("a loop bound depends on a value that is not an enclosing loop's counter")
    loops = [loop_op for counter, loop_op in outer.items() if counter in depends]  # outermost first
    ranges = [range(*(index_value(v, {}) for v in (o.lb, o.ub, o.step))) for o in loops]
    total = 0
    for point in itertools.product(*ranges):
        env = dict(zip((o.body.block.args[0] for o in loops), point))
        total += trips(*(index_value(v, env) for v in bounds))
    runs = math.prod(len(r) for r in ranges)
    return times // runs * total if runs else 0


Loop = Dialect(
    "loop",
    [
        KernelOp, EndOp, LoadOp, GatherOp, StoreOp, FillOp, CausalMaskOp, OnlineSoftmaxOp, CopyOp, ViewOp,
        AllReduceOp, AllGatherOp, ReduceScatterOp,
    ],
    [],
)
