"""
The `simt` dialect: GPU kernels (H100-class) as the compiler launches them.

`simt.kernel` is one CUDA kernel: a grid of thread blocks (CTAs), each
computing one tile of the iteration space with `block` threads; the tiles
its loads bring on chip live in shared memory, multi-buffered over `stages`
of the asynchronous copy pipeline; `simt.mma` marks the products that run
on the tensor cores with their instruction shape. The body is the loop nest
the kernel was lowered from, so a `simt` module still executes.
"""

from __future__ import annotations

from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr
from xdsl.ir import Dialect
from xdsl.irdl import irdl_op_definition, lazy_traits_def, prop_def, traits_def
from xdsl.irdl import IRDLOperation
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator
from xdsl.utils.exceptions import VerifyException

from strata.dialects.hardware._kernel import KERNEL_FORMAT, HardwareKernelOp, MatrixOp
from strata.dialects.hardware._kernel import TransferOp as TransferBase
from strata.dialects.loop import AllGatherBase, AllReduceBase, ReduceScatterBase, int_values

WARP = 32
"""Threads per warp on every NVIDIA GPU since Tesla (CUDA C Programming Guide, SIMT Architecture)."""
MAX_BLOCK_THREADS = 1024
"""Most threads in a block (CUDA C Programming Guide, Compute Capabilities table)."""
MAX_REGS_PER_THREAD = 255
"""Most 32-bit registers a thread may use (CUDA C Programming Guide, Compute Capabilities table)."""


@irdl_op_definition
class EndOp(IRDLOperation):
    """Terminator of a `simt.kernel` body."""

    name = "simt.end"
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(KernelOp)))
    assembly_format = "attr-dict"


@irdl_op_definition
class KernelOp(HardwareKernelOp):
    """
    One GPU kernel launch.

    `grid` is the number of CTAs along x, y, z (x = the innermost parallel
    tile loop), `block` the threads per CTA, `smem_bytes` the shared memory
    one CTA holds (the on-chip tiles times the copy `stages` for those loaded
    in the reduction loop), `regs_per_thread` the registers a thread needs
    for its share of the accumulator, `mma` the tensor-core instruction shape
    `[m, n, k]` (empty when the kernel does no matrix work). Shared figures
    as in `dialects.hardware._kernel`.

    ```mlir
    simt.kernel "gemm_0" ins(%a, %b : ...) outs(%c : ...) attributes {kind = "gemm",
        grid = array<i64: 2, 1, 1>, block = array<i64: 256, 1, 1>, smem_bytes = 98304 : i64,
        stages = 3 : i64, regs_per_thread = 96 : i64, mma = array<i64: 16, 8, 8>, ...} {
      ...
      simt.end
    }
    ```
    """

    name = "simt.kernel"

    grid = prop_def(DenseArrayBase)
    block = prop_def(DenseArrayBase)
    smem_bytes = prop_def(IntegerAttr)
    stages = prop_def(IntegerAttr)
    regs_per_thread = prop_def(IntegerAttr)
    mma = prop_def(DenseArrayBase)

    traits = traits_def(IsolatedFromAbove())
    assembly_format = KERNEL_FORMAT

    def verify_(self) -> None:
        super().verify_()
        grid, block = int_values(self, "grid"), int_values(self, "block")
        if len(grid) != 3 or min(grid) < 1:
            raise VerifyException(f"'simt.kernel' grid must be 3 positive extents, got {list(grid)}")
        threads = 1
        for extent in block:
            threads *= extent
        if len(block) != 3 or min(block) < 1 or threads % WARP or threads > MAX_BLOCK_THREADS:
            raise VerifyException(
                f"'simt.kernel' block {list(block)} must hold a whole number of {WARP}-thread warps,"
                f" at most {MAX_BLOCK_THREADS} threads"
            )
        if self.stages.value.data < 1 or self.smem_bytes.value.data < 0:
            raise VerifyException("'simt.kernel' needs stages >= 1 and smem_bytes >= 0")
        if not 1 <= self.regs_per_thread.value.data <= MAX_REGS_PER_THREAD:
            raise VerifyException(f"'simt.kernel' regs_per_thread must be in 1..{MAX_REGS_PER_THREAD},"
                                  f" got {self.regs_per_thread.value.data}")
        mma = int_values(self, "mma")
        if len(mma) not in (0, 3) or min(mma, default=1) < 1:
            raise VerifyException(f"'simt.kernel' mma is [m, n, k] of positive extents or empty, got {list(mma)}")


@irdl_op_definition
class MmaOp(MatrixOp):
    """
    A tile product on the tensor cores: `result = lhs @ rhs`, issued as
    `shape = [m, n, k]` MMA instructions by the CTA's warps.

    ```mlir
    %c = simt.mma %a, %b {shape = array<i64: 16, 8, 16>} : tensor<128x64xbf16>,
        tensor<64x128xbf16> -> tensor<128x128xbf16>
    ```
    """

    name = "simt.mma"

    shape = prop_def(DenseArrayBase)

    def verify_(self) -> None:
        super().verify_()
        shape = int_values(self, "shape")
        if len(shape) != 3 or min(shape) < 1:
            raise VerifyException(f"'simt.mma' shape is [m, n, k] of positive extents, got {list(shape)}")


@irdl_op_definition
class TransferOp(TransferBase):
    """
    Move a buffer between GPUs over NVLink (a pipeline stage boundary):
    `dest = source`, `source` on chip `from_chip`, `dest` on `to_chip`.

    ```mlir
    simt.transfer %a, %b {from_chip = 0 : i64, to_chip = 1 : i64} : memref<...>
    ```
    """

    name = "simt.transfer"


@irdl_op_definition
class AllReduceOp(AllReduceBase):
    """
    `loop.all_reduce` between the GPUs of a tensor- or data-parallel group over NVLink/NVSwitch:
    `dest = sum of source over the group`, costed as a ring or tree all-reduce.

    ```mlir
    simt.all_reduce %a, %b {axis = "tp", devices = 2 : i64} : memref<...> -> memref<...>
    ```
    """

    name = "simt.all_reduce"


@irdl_op_definition
class AllGatherOp(AllGatherBase):
    """`loop.all_gather` between the GPUs of a tensor- or data-parallel group over NVLink/NVSwitch, costed as a ring all-gather."""

    name = "simt.all_gather"


@irdl_op_definition
class ReduceScatterOp(ReduceScatterBase):
    """
    `loop.reduce_scatter` between the GPUs of a tensor- or data-parallel group over NVLink/NVSwitch,
    costed as a ring or a one-shot (switched) reduce-scatter.
    """

    name = "simt.reduce_scatter"


Simt = Dialect("simt", [TransferOp, AllReduceOp, AllGatherOp, ReduceScatterOp, KernelOp, EndOp, MmaOp], [])
