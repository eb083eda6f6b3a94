"""
The `tsp` dialect: programs for a Groq-style LPU (tensor streaming processor).

The LPU has no caches and no off-chip memory on the critical path: weights
stay resident in the SRAM of the chip that uses them, operands stream from
SRAM through the functional units (MXM matrix, VXM vector, SXM switch and
transpose, MEM), and the compiler fixes the schedule statically. A model
whose weights exceed one chip's SRAM is split over several chips, and every
tensor that crosses chips moves by an explicit `tsp.transfer`.

`tsp.program` is one kernel placed on `chip`, in static order `slot`, using
`units`; `tsp.mxm` is a tile product on the MXM. The body is the loop nest
the kernel was lowered from, so a `tsp` module still executes.
"""

from __future__ import annotations

from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, StringAttr
from xdsl.ir import Dialect
from xdsl.irdl import IRDLOperation, irdl_op_definition, lazy_traits_def, prop_def, traits_def
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator
from xdsl.utils.exceptions import VerifyException

from strata.dialects.hardware._kernel import KERNEL_FORMAT, HardwareKernelOp, MatrixOp
from strata.dialects.hardware._kernel import TransferOp as TransferBase
from strata.dialects.loop import AllGatherBase, AllReduceBase, ReduceScatterBase

UNITS = ("mxm", "vxm", "sxm", "mem")
"""Functional units: matrix, vector, switch (transpose, shift, permute) and memory slices."""


@irdl_op_definition
class EndOp(IRDLOperation):
    """Terminator of a `tsp.program` body."""

    name = "tsp.end"
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(ProgramOp)))
    assembly_format = "attr-dict"


@irdl_op_definition
class ProgramOp(HardwareKernelOp):
    """
    One kernel on the LPU, at position `slot` of the static schedule of
    `chip`; a kernel whose weights exceed one chip's SRAM is split over
    `shards` chips from `chip` on (each holds a slice of the weights and
    computes a slice of the output, gathered on `chip`). `units` are the functional units its ops occupy; `weight_bytes`
    the parameters it reads, resident in that chip's SRAM; `stream_bytes`
    the activations it streams in and out.

    ```mlir
    tsp.program "gemm_0" ins(%a, %b : ...) outs(%c : ...) attributes {kind = "gemm",
        chip = 0 : i64, shards = 1 : i64, slot = 0 : i64, units = ["mem", "mxm", "vxm"],
        weight_bytes = 802816 : i64, stream_bytes = 266240 : i64, ...} {
      ...
      tsp.end
    }
    ```
    """

    name = "tsp.program"

    chip = prop_def(IntegerAttr)
    shards = prop_def(IntegerAttr)
    slot = prop_def(IntegerAttr)
    units = prop_def(ArrayAttr[StringAttr])
    weight_bytes = prop_def(IntegerAttr)
    stream_bytes = prop_def(IntegerAttr)

    traits = traits_def(IsolatedFromAbove())
    assembly_format = KERNEL_FORMAT

    def verify_(self) -> None:
        super().verify_()
        if self.chip.value.data < 0 or self.slot.value.data < 0 or self.shards.value.data < 1:
            raise VerifyException("'tsp.program' needs chip >= 0, slot >= 0 and shards >= 1")
        unknown = [u.data for u in self.units if u.data not in UNITS]
        if unknown:
            raise VerifyException(f"'tsp.program' unknown units {unknown} (units: {', '.join(UNITS)})")


@irdl_op_definition
class MxmOp(MatrixOp):
    """
    A tile product on the MXM: `result = lhs @ rhs`, `rhs` (the weights)
    installed in the array, `lhs` streamed through it.

    ```mlir
    %c = tsp.mxm %a, %b : tensor<320x320xf16>, tensor<320x320xf16> -> tensor<320x320xf16>
    ```
    """

    name = "tsp.mxm"


@irdl_op_definition
class TransferOp(TransferBase):
    """
    Move a buffer between chips over the chip-to-chip links:
    `dest = source`, `source` on chip `from_chip`, `dest` on `to_chip`.

    ```mlir
    tsp.transfer %a, %b {from_chip = 0 : i64, to_chip = 1 : i64} : memref<...>
    ```
    """

    name = "tsp.transfer"


@irdl_op_definition
class AllReduceOp(AllReduceBase):
    """
    `loop.all_reduce` between the LPU chips of a group over their chip-to-chip links:
    `dest = sum of source over the group`, costed as a ring or tree all-reduce.

    ```mlir
    tsp.all_reduce %a, %b {axis = "tp", devices = 2 : i64} : memref<...> -> memref<...>
    ```
    """

    name = "tsp.all_reduce"


@irdl_op_definition
class AllGatherOp(AllGatherBase):
    """`loop.all_gather` between the LPU chips of a group over their chip-to-chip links, costed as a ring all-gather."""

    name = "tsp.all_gather"


@irdl_op_definition
class ReduceScatterOp(ReduceScatterBase):
    """`loop.reduce_scatter` between the LPU chips of a group over their chip-to-chip links, costed as a ring."""

    name = "tsp.reduce_scatter"


Tsp = Dialect("tsp", [ProgramOp, EndOp, MxmOp, TransferOp, AllReduceOp, AllGatherOp, ReduceScatterOp], [])
