"""
`graph.kernel`: a fused group of graph ops, one future kernel.

The region is isolated from above: its block arguments stand for the
kernel's inputs and `graph.yield` returns its outputs. The `kind` says which
lowering the tiler applies (`gemm`, `conv`, `attention`, `row`, `elementwise`,
`reduction`, `pool`, `gather`, `copy`); further decisions are attributes
written by later passes (`tile_sizes`, `loop_order`, `dataflow`, named in
`dialects/vocabulary.py`) and checked by the verifier, so an edited dump
that a lowering could not read is refused where it is parsed.

`kernel_bounds(kernel)` is the kernel's iteration space (the output's dims,
then the reduction extent of a GEMM or attention kernel): what `tile_sizes`
cuts.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import DenseArrayBase, StringAttr, TensorType, i64
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_op_definition,
    lazy_traits_def,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator, Pure, RecursiveMemoryEffect
from xdsl.utils.exceptions import VerifyException

from strata.dialects.graph import ops as g
from strata.dialects.graph.layout import logical_type
from strata.dialects.vocabulary import DATAFLOW_ATTR, DATAFLOWS, ORDER_ATTR, TILE_ATTR

KERNEL_KINDS = ("gemm", "conv", "attention", "row", "elementwise", "reduction", "pool", "gather", "copy")


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Terminator of a `graph.kernel` body: its operands are the kernel's results."""

    name = "graph.yield"

    values = var_operand_def(TensorType)

    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(KernelOp), Pure()))
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, *values: SSAValue):
        super().__init__(operands=[values])


@irdl_op_definition
class KernelOp(IRDLOperation):
    """
    A fused kernel: `results = body(inputs)`, evaluated as one unit.

    ```mlir
    %y = graph.kernel "gemm_0" (%x, %w, %b) {kind = "gemm"}
        : (tensor<8x16xf32>, tensor<16x4xf32>, tensor<4xf32>) -> tensor<8x4xf32> {
    ^bb0(%0: tensor<8x16xf32>, %1: tensor<16x4xf32>, %2: tensor<4xf32>):
      %3 = graph.matmul %0, %1 : tensor<8x16xf32>, tensor<16x4xf32> -> tensor<8x4xf32>
      %4 = graph.add %3, %2 : tensor<8x4xf32>, tensor<4xf32> -> tensor<8x4xf32>
      graph.yield %4 : tensor<8x4xf32>
    }
    ```
    """

    name = "graph.kernel"

    inputs = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    kernel_name = prop_def(StringAttr)
    kind = prop_def(StringAttr)
    body = region_def("single_block")

    traits = traits_def(IsolatedFromAbove(), RecursiveMemoryEffect())
    irdl_options = (ParsePropInAttrDict(),)
    assembly_format = (
        "$kernel_name `(` $inputs `)` attr-dict `:` functional-type($inputs, $outputs) $body"
    )

    def __init__(
        self,
        kernel_name: str,
        kind: str,
        inputs: Sequence[SSAValue],
        output_types: Sequence[Attribute],
        body: Region,
    ):
        super().__init__(
            operands=[inputs],
            result_types=[output_types],
            properties={"kernel_name": StringAttr(kernel_name), "kind": StringAttr(kind)},
            regions=[body],
        )

    def verify_(self) -> None:
        if self.kind.data not in KERNEL_KINDS:
            raise VerifyException(
                f"unknown kernel kind '{self.kind.data}' (kinds: {', '.join(KERNEL_KINDS)})"
            )
        block = self.body.block
        # The body sees logical tensors: types match up to the layout encoding.
        arg_types = [logical_type(a.type) for a in block.args]
        if arg_types != [logical_type(v.type) for v in self.inputs]:
            raise VerifyException("kernel block arguments must match the kernel inputs' types")
        terminator = block.last_op
        if not isinstance(terminator, YieldOp):
            raise VerifyException("kernel body must end with graph.yield")
        if [logical_type(v.type) for v in terminator.values] != [logical_type(r.type) for r in self.outputs]:
            raise VerifyException("graph.yield types must match the kernel result types")
        verify_schedule(self, kernel_bounds(self), len(self.outputs[0].type.get_shape()))


# --------------------------------------------------------------------------- iteration space and schedule


def anchor_matmul(body: Block) -> g.MatmulOp | None:
    return next((op for op in body.ops if isinstance(op, g.MatmulOp)), None)


def attention_parts(body: Block) -> tuple[g.SoftmaxOp, g.MatmulOp] | None:
    """The softmax and the `softmax @ v` matmul of an attention kernel."""
    for op in body.ops:
        if isinstance(op, g.MatmulOp) and isinstance(op.lhs.owner, g.SoftmaxOp):
            return op.lhs.owner, op
    return None


def shares_weight(kernel: KernelOp) -> bool:
    """
    A GEMM whose batched activations `[B..., M, K]` all multiply one rank-2
    weight `[K, N]` (decode steps, `[B, S, D] @ [D, N]`): one GEMM with
    `M' = B... x M` rows, so a tile may take rows of several batch elements
    and the weight panel streams once per row tile, not once per element.
    """
    anchor = anchor_matmul(kernel.body.block) if kernel.kind.data == "gemm" else None
    return anchor is not None and len(_shape(anchor.rhs)) == 2 and len(_shape(anchor.lhs)) > 2


def _shape(value: SSAValue) -> tuple[int, ...]:
    return tuple(value.type.get_shape())


def reduction_extent(kernel: KernelOp) -> int | None:
    """The extent of the kernel's reduction loop: K of a GEMM, the keys of attention."""
    body = kernel.body.block
    if kernel.kind.data == "attention":
        parts = attention_parts(body)
        return _shape(parts[0].result)[-1] if parts else None
    if kernel.kind.data == "gemm":
        anchor = anchor_matmul(body)
        return _shape(anchor.lhs)[-1] if anchor else None
    return None


def kernel_bounds(kernel: KernelOp) -> tuple[int, ...]:
    """The iteration space: the output's dims, then the reduction extent if any."""
    out = _shape(kernel.outputs[0])
    extent = reduction_extent(kernel)
    return out + ((extent,) if extent is not None else ())


def _int_array(op: IRDLOperation, key: str) -> tuple[int, ...] | None:
    attr = op.attributes.get(key)
    if attr is None:
        return None
    if not isinstance(attr, DenseArrayBase) or attr.elt_type != i64:
        raise VerifyException(f"'{op.name}' {key} must be an array<i64: ...>, got {attr}")
    return tuple(attr.get_values())


def verify_schedule(op: IRDLOperation, bounds: Sequence[int], rank: int) -> None:
    """
    Check the schedule attributes a kernel may carry against its iteration
    space: `tile_sizes` one size in 1..bound per dim, `loop_order` a
    permutation of the `rank` parallel dims, `dataflow` one of `DATAFLOWS`.
    """
    tiles = _int_array(op, TILE_ATTR)
    if tiles is not None:
        if len(tiles) != len(bounds):
            raise VerifyException(
                f"'{op.name}' {TILE_ATTR} has {len(tiles)} sizes for an iteration space of {len(bounds)} dims"
                f" {list(bounds)}"
            )
        for dim, (tile, bound) in enumerate(zip(tiles, bounds)):
            if not 1 <= tile <= bound:
                raise VerifyException(f"'{op.name}' {TILE_ATTR}[{dim}] = {tile} is outside 1..{bound}")
    order = _int_array(op, ORDER_ATTR)
    if order is not None and sorted(order) != list(range(rank)):
        raise VerifyException(f"'{op.name}' {ORDER_ATTR} {list(order)} is not a permutation of 0..{rank - 1}")
    dataflow = op.attributes.get(DATAFLOW_ATTR)
    if dataflow is not None and not (isinstance(dataflow, StringAttr) and dataflow.data in DATAFLOWS):
        raise VerifyException(f"'{op.name}' {DATAFLOW_ATTR} must be one of {', '.join(DATAFLOWS)}, got {dataflow}")
