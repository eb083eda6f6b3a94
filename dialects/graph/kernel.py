"""
`graph.kernel`: a fused group of graph ops, one future kernel.

The region is isolated from above: its block arguments stand for the
kernel's inputs and `graph.yield` returns its outputs. The `kind` says which
lowering the tiler applies (`gemm`, `conv`, `attention`, `row`, `elementwise`,
`reduction`, `pool`, `gather`, `copy`); further decisions (layouts, tiles)
are added as attributes by later passes.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import StringAttr, TensorType
from xdsl.ir import Attribute, Region, SSAValue
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

from dialects.graph.layout import logical_type

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
