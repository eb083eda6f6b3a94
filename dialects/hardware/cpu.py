"""
The `cpu` dialect: kernels as a multi-core CPU with vector units runs them.

`cpu.kernel` is one kernel as strata's native code runs it on the host (the
MLIR export, `passes/export_mlir.py`): its parallel output tiles are shared
by `threads` cores (an OpenMP `scf.parallel`), each tile's working set
(`l2_bytes`: the loaded tiles and the accumulator) stays in one core's L2,
and a GEMM's tile product is a register-blocked micro-kernel (`cpu.fma`) of
`micro_kernel` = [mr, nr]: mr rows of `a` by nr columns of a packed strip of
`b` (`l1_bytes` of it, kept in L1) held in mr x nr / `vector_lanes` vector
accumulators, one FMA per accumulator and k. The body is the loop nest the
kernel was lowered from, so a `cpu` module still executes.

The dialect is named `cpu`, not after an ISA (xDSL registers `x86`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.dialects.builtin import BFloat16Type, DenseArrayBase, Float16Type, IntegerAttr, IntegerType, Signedness, f32
from xdsl.ir import Dialect, Operation
from xdsl.irdl import IRDLOperation, irdl_op_definition, lazy_traits_def, prop_def, traits_def
from xdsl.traits import HasParent, IsolatedFromAbove, IsTerminator
from xdsl.utils.exceptions import VerifyException

from strata.dialects.device import DeviceSpec
from strata.dialects.hardware._kernel import KERNEL_FORMAT, HardwareKernelOp, MatrixOp
from strata.dialects.hardware._kernel import TransferOp as TransferBase
from strata.dialects.graph.layout import layout_of
from strata.dialects.loop import AllGatherBase, AllReduceBase, GatherOp, ReduceScatterBase
from strata.dialects.vocabulary import type_bytes


VECTOR_LANES = 16
"""f32 lanes of the export's vectors (`VL` in `passes/_linalg.py`): AVX-512's; on narrower
machines LLVM splits them."""

SHORT_ROWS = range(9, 2 * VECTOR_LANES)
"""Row lengths whose row-wise ops (a reduction over the last dim, an elementwise op broadcasting
per row: softmax, the norms) the export writes as one masked vector per row (`row_lanes` lanes;
`Emitter.row_reduce`, `Emitter.row_elementwise`), and the cpu cost model prices so
(`backends/cpu.py`, `row_work`). As a loop nest, LLVM fully unrolls a row of 9 to 31 elements
and then vectorises across the rows, loading with gathers at the row's stride (more than 8
elements apart: no interleaved group, `max-interleave-group-factor`). Measured (64 rows, Zen 4,
1 thread, 2026-12-06), loop nests against rows: softmax of 10 2.26 against 1.01 us, of 20 4.40
against 1.53, of 31 4.56 against 1.87; layer norm of 16 2.9 against 0.52 us. Rows of 8 LLVM
interleaves (0.58 us either way), rows of 32 it vectorises along the row."""


def core_peak(spec: DeviceSpec) -> float:
    """One core's f32 FMA peak (FLOP/s): lanes x pipes x 2 x clock."""
    return spec["simd_lanes_f32"] * spec["fma_pipes"] * 2 * spec["clock_hz"]


def by_rows(shape: Sequence[int]) -> bool:
    """Whether a row-wise op over `shape` has rows the export writes one masked vector each (`SHORT_ROWS`)."""
    return len(shape) >= 2 and shape[-1] in SHORT_ROWS


def gathers_by_vectors(gather: GatherOp) -> bool:
    """
    Whether native code copies a `loop.gather`'s rows by vectors (`VECTOR_LANES` f32 at a time,
    one id read per row): an f32 table of rank 2 laid out row-major, tiles of whole vectors that
    divide its rows. Else a generic reads an id and computes the row's index per element.
    """
    table = gather.source.type
    layout = layout_of(table)
    row_tile = gather.result.type.get_shape()[len(gather.ids.type.get_shape()):]
    return (table.get_num_dims() == 2 and table.element_type == f32 and not layout.tiles
            and list(layout.perm) == [0, 1] and len(row_tile) == 1 and row_tile[0] % VECTOR_LANES == 0
            and table.get_shape()[1] % row_tile[0] == 0)


def is_half(element_type) -> bool:
    """A 16-bit float element type (bf16, f16), which native code computes in f32."""
    return isinstance(element_type, BFloat16Type | Float16Type)


def widened_dequantize(op: Operation) -> Operation | None:
    """
    The cast to f32 that is the one use of `op`, a dequantize to a 16-bit float (a weight
    dequantized for a bf16 GEMM, which computes in f32), in its block: native code dequantizes,
    rounds and widens each element in one loop (no 16-bit tile between two passes); else None.
    """
    from strata.dialects.graph import ops as g

    if not isinstance(op, g.DequantizeOp) or not is_half(op.result.type.element_type):
        return None
    uses = list(op.result.uses)
    user = uses[0].operation if len(uses) == 1 else None
    if not isinstance(user, g.CastOp) or user.result.type.element_type != f32 or user.parent_block() is not op.parent_block():
        return None
    return user


def widened_as_read(cast: Operation) -> bool:
    """
    Whether native code converts the input of `cast` (a cast to f32) to f32 as a GEMM's micro-kernel
    reads it, one row vector of `b` at a time, so that no f32 tile is written and read back: its one
    use is the `b` of a matrix product (the graph's or `cpu.fma`) of f32 tiles, `a` with unit leading
    dims and `b` of rank 2, and it widens a bf16 tile loaded as it is (a `loop.load`) or a dequantize
    to bf16 (`widened_dequantize`) of a loaded i4 or i8 tile by loaded scales, one per column of `b`
    or one for all, without a zero point.
    """
    from strata.dialects.graph import ops as g
    from strata.dialects.loop import LoadOp

    if not isinstance(cast, g.CastOp) or cast.result.type.element_type != f32:
        return False
    uses = list(cast.result.uses)
    if len(uses) != 1 or uses[0].index != 1 or uses[0].operation.parent_block() is not cast.parent_block():
        return False
    product = uses[0].operation
    if not isinstance(product, g.MatmulOp | MatrixOp) or product.operands[0] is cast.result:
        return False
    lhs, result = product.operands[0].type, product.results[0].type
    if (lhs.element_type != f32 or result.element_type != f32 or len(cast.result.type.get_shape()) != 2
            or len(lhs.get_shape()) < 2 or any(d != 1 for d in lhs.get_shape()[:-2])):
        return False
    source = cast.input.owner
    if isinstance(source, LoadOp):
        return isinstance(cast.input.type.element_type, BFloat16Type)
    if not widenable_dequantize(source) or widened_dequantize(source) is not cast:
        return False
    return all(isinstance(v.owner, LoadOp) for v in source.operands)


def widenable_dequantize(op: Operation) -> bool:
    """
    Whether `op` is a dequantize the micro-kernel can widen as it reads `b` (`widened_as_read`,
    given its operands are loaded tiles): to bf16, of an i4 or i8 tensor, by one scale per column
    of its last dim or one for all, without a zero point.
    """
    from strata.dialects.graph import ops as g

    if (not isinstance(op, g.DequantizeOp) or len(op.operands) != 2
            or not isinstance(op.result.type.element_type, BFloat16Type)):
        return False
    q, scale = op.operands
    columns = op.result.type.get_shape()[-1]
    return (isinstance(q.type.element_type, IntegerType) and q.type.element_type.width.data in (4, 8)
            and q.type.element_type.signedness.data == Signedness.SIGNLESS
            and list(scale.type.get_shape()) in ([], [1], [columns]))


def storage_bytes(shaped_type) -> int:
    """
    Bytes a tensor or memref of `shaped_type` takes in native code: export-mlir holds an `i4`
    element in a byte (its storage type), where `type_bytes` packs two to a byte, as a GPU's or
    TPU's int4 kernels do.
    """
    element = shaped_type.element_type
    if isinstance(element, IntegerType) and element.width.data == 4:
        return math.prod(shaped_type.get_shape())
    return type_bytes(shaped_type)


def row_lanes(r: int) -> int:
    """Lanes of the vector that holds a row of `r` (`SHORT_ROWS`) elements: one vector's, or two."""
    return VECTOR_LANES if r <= VECTOR_LANES else 2 * VECTOR_LANES


def _check_block(op: IRDLOperation, block: DenseArrayBase) -> None:
    values = block.get_values()
    if values and (len(values) != 2 or min(values) < 1):
        raise VerifyException(f"'{op.name}' micro_kernel must be empty or [mr, nr] >= 1, got {list(values)}")


@irdl_op_definition
class EndOp(IRDLOperation):
    """Terminator of a `cpu.kernel` body."""

    name = "cpu.end"
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(KernelOp)))
    assembly_format = "attr-dict"


@irdl_op_definition
class KernelOp(HardwareKernelOp):
    """
    One kernel on the CPU's cores.

    `parallel_tiles` output tiles (the iterations of its tile loops over
    output dims) are shared by `threads` cores, `ceil(parallel_tiles /
    threads)` each; `l2_bytes` is one tile's working set (its loaded tiles
    and accumulator), within a core's L2; a GEMM's tile product runs as
    `micro_kernel` = [mr, nr] register blocks (empty: no micro-kernel, the
    tile ops are vectorised loops) over `vector_lanes`-wide f32 vectors,
    with `packed_bytes` of `b` packed once per tile and `l1_bytes` of it (one
    strip of nr columns) kept in L1; `transcendentals` counts the exp-like
    elements it evaluates (polynomials on the vector units).

    ```mlir
    cpu.kernel "gemm_0" ins(%a, %b : ...) outs(%c : ...) attributes {kind = "gemm",
        threads = 2 : i64, parallel_tiles = 32 : i64, micro_kernel = array<i64: 12, 32>,
        vector_lanes = 16 : i64, l1_bytes = 16384 : i64, l2_bytes = 327680 : i64, ...} {
      ...
      cpu.end
    }
    ```
    """

    name = "cpu.kernel"

    threads = prop_def(IntegerAttr)
    parallel_tiles = prop_def(IntegerAttr)
    micro_kernel = prop_def(DenseArrayBase)
    vector_lanes = prop_def(IntegerAttr)
    l1_bytes = prop_def(IntegerAttr)
    l2_bytes = prop_def(IntegerAttr)
    packed_bytes = prop_def(IntegerAttr)
    transcendentals = prop_def(IntegerAttr)

    traits = traits_def(IsolatedFromAbove())
    assembly_format = KERNEL_FORMAT

    def verify_(self) -> None:
        super().verify_()
        for name in ("threads", "parallel_tiles", "vector_lanes"):
            if getattr(self, name).value.data < 1:
                raise VerifyException(f"'cpu.kernel' {name} must be >= 1")
        for name in ("l1_bytes", "l2_bytes", "packed_bytes", "transcendentals"):
            if getattr(self, name).value.data < 0:
                raise VerifyException(f"'cpu.kernel' {name} must be >= 0")
        if self.threads.value.data > self.parallel_tiles.value.data:
            raise VerifyException("'cpu.kernel' threads must be at most parallel_tiles (a tile runs on one core)")
        _check_block(self, self.micro_kernel)
        if self.micro_kernel.get_values() and self.kind.data not in ("gemm", "attention", "conv"):
            raise VerifyException(f"'cpu.kernel' of kind '{self.kind.data}' has no GEMM micro-kernel")
        if self.kind.data == "conv" and self.packed_bytes.value.data:
            raise VerifyException("'cpu.kernel' of kind 'conv' packs nothing (its implicit GEMM reads the weight in place)")

    def block(self) -> tuple[int, ...]:
        """The micro-kernel's (mr, nr), or () without one."""
        return tuple(self.micro_kernel.get_values())


@irdl_op_definition
class FmaOp(MatrixOp):
    """
    A tile product on the vector units: `result = lhs @ rhs`, as
    `micro_kernel` = [mr, nr] register blocks of FMAs (empty: a vectorised
    loop nest).

    ```mlir
    %c = cpu.fma %a, %b {micro_kernel = array<i64: 12, 32>} : tensor<128x128xf32>,
        tensor<128x256xf32> -> tensor<128x256xf32>
    ```
    """

    name = "cpu.fma"

    micro_kernel = prop_def(DenseArrayBase)

    def verify_(self) -> None:
        super().verify_()
        _check_block(self, self.micro_kernel)


@irdl_op_definition
class TransferOp(TransferBase):
    """
    Move a buffer between two CPU sockets or hosts (a pipeline stage boundary):
    `dest = source`, `source` on `from_chip`, `dest` on `to_chip`.

    ```mlir
    cpu.transfer %a, %b {from_chip = 0 : i64, to_chip = 1 : i64} : memref<...>
    ```
    """

    name = "cpu.transfer"


@irdl_op_definition
class AllReduceOp(AllReduceBase):
    """
    `loop.all_reduce` between the CPUs of a group: `dest = sum of source over the
    group`, costed as a ring or tree all-reduce over `link_bandwidth`.

    ```mlir
    cpu.all_reduce %a, %b {axis = "tp", devices = 2 : i64} : memref<...> -> memref<...>
    ```
    """

    name = "cpu.all_reduce"


@irdl_op_definition
class AllGatherOp(AllGatherBase):
    """`loop.all_gather` between the CPUs of a group, costed as a ring all-gather over `link_bandwidth`."""

    name = "cpu.all_gather"


@irdl_op_definition
class ReduceScatterOp(ReduceScatterBase):
    """`loop.reduce_scatter` between the CPUs of a group, costed as a ring reduce-scatter over `link_bandwidth`."""

    name = "cpu.reduce_scatter"


Cpu = Dialect("cpu", [TransferOp, AllReduceOp, AllGatherOp, ReduceScatterOp, KernelOp, EndOp, FmaOp], [])
