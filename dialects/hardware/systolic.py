"""
The `systolic` dialect: programs for a TPU-style chip of systolic arrays.

`systolic.program` is one kernel as the chip runs it: its `loop.load` /
`loop.store` ops are the DMAs between HBM and the on-chip vector memory,
`systolic.matmul` ops run on the matrix units in the program's `dataflow`
(`os` output-, `ws` weight-, `is` input-stationary), and every other tile op
runs on the vector unit. The body is the loop nest the kernel was lowered
from, so a `systolic` module still executes.
"""

from __future__ import annotations

from xdsl.dialects.builtin import IntegerAttr, StringAttr
from xdsl.ir import Dialect
from xdsl.irdl import IRDLOperation, irdl_op_definition, lazy_traits_def, prop_def, traits_def
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator
from xdsl.utils.exceptions import VerifyException

from strata.dialects.hardware._kernel import KERNEL_FORMAT, HardwareKernelOp, MatrixOp
from strata.dialects.hardware._kernel import TransferOp as TransferBase
from strata.dialects.loop import AllGatherBase, AllReduceBase, ReduceScatterBase
from strata.dialects.vocabulary import DATAFLOWS


def _check_dataflow(op: IRDLOperation, dataflow: StringAttr) -> None:
    if dataflow.data not in DATAFLOWS:
        raise VerifyException(f"'{op.name}' dataflow must be one of {', '.join(DATAFLOWS)}, got '{dataflow.data}'")


@irdl_op_definition
class EndOp(IRDLOperation):
    """Terminator of a `systolic.program` body."""

    name = "systolic.end"
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(ProgramOp)))
    assembly_format = "attr-dict"


@irdl_op_definition
class ProgramOp(HardwareKernelOp):
    """
    One program on the systolic chip.

    `dataflow` maps every GEMM of `gemms` onto the arrays; `dma_in_bytes` and
    `dma_out_bytes` are the HBM traffic of its loads and stores (equal to the
    shared `read_bytes` / `write_bytes`), `vmem_bytes` the on-chip buffer
    space its tiles take, `vector_flops` the work left to the vector unit.

    ```mlir
    systolic.program "gemm_0" ins(%a, %b : ...) outs(%c : ...) attributes {kind = "gemm",
        dataflow = "ws", gemms = [array<i64: 1, 64, 256, 784>], vmem_bytes = 360448 : i64, ...} {
      ...
      systolic.end
    }
    ```
    """

    name = "systolic.program"

    dataflow = prop_def(StringAttr)
    dma_in_bytes = prop_def(IntegerAttr)
    dma_out_bytes = prop_def(IntegerAttr)
    vmem_bytes = prop_def(IntegerAttr)
    vector_flops = prop_def(IntegerAttr)

    traits = traits_def(IsolatedFromAbove())
    assembly_format = KERNEL_FORMAT

    def verify_(self) -> None:
        super().verify_()
        _check_dataflow(self, self.dataflow)
        if self.dma_in_bytes.value.data != self.read_bytes.value.data:
            raise VerifyException("'systolic.program' dma_in_bytes must equal read_bytes")
        if self.dma_out_bytes.value.data != self.write_bytes.value.data:
            raise VerifyException("'systolic.program' dma_out_bytes must equal write_bytes")


@irdl_op_definition
class MatmulOp(MatrixOp):
    """
    A tile product on the systolic arrays: `result = lhs @ rhs`, with `rhs`
    the weights (stationary under `ws`), `lhs` the inputs (stationary under
    `is`) or the outputs accumulating in place (`os`).

    ```mlir
    %c = systolic.matmul %a, %b {dataflow = "ws"} : tensor<128x128xbf16>,
        tensor<128x128xbf16> -> tensor<128x128xbf16>
    ```
    """

    name = "systolic.matmul"

    dataflow = prop_def(StringAttr)

    def verify_(self) -> None:
        super().verify_()
        _check_dataflow(self, self.dataflow)


@irdl_op_definition
class TransferOp(TransferBase):
    """
    Move a buffer between TPU chips over the ICI links (a pipeline stage boundary):
    `dest = source`, `source` on chip `from_chip`, `dest` on `to_chip`.

    ```mlir
    systolic.transfer %a, %b {from_chip = 0 : i64, to_chip = 1 : i64} : memref<...>
    ```
    """

    name = "systolic.transfer"


@irdl_op_definition
class AllReduceOp(AllReduceBase):
    """
    `loop.all_reduce` between the TPU chips of a group over the ICI torus:
    `dest = sum of source over the group`, costed as a ring or tree all-reduce.

    ```mlir
    systolic.all_reduce %a, %b {axis = "tp", devices = 2 : i64} : memref<...> -> memref<...>
    ```
    """

    name = "systolic.all_reduce"


@irdl_op_definition
class AllGatherOp(AllGatherBase):
    """`loop.all_gather` between the TPU chips of a group over the ICI torus, costed as a ring all-gather."""

    name = "systolic.all_gather"


@irdl_op_definition
class ReduceScatterOp(ReduceScatterBase):
    """`loop.reduce_scatter` between the TPU chips of a group over the ICI torus, costed as a ring reduce-scatter."""

    name = "systolic.reduce_scatter"


Systolic = Dialect("systolic", [TransferOp, AllReduceOp, AllGatherOp, ReduceScatterOp, ProgramOp, EndOp, MatmulOp], [])
