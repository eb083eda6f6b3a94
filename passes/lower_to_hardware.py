"""
`lower-to-hardware{target=...}`: every `loop.kernel` becomes its device's
hardware op (`simt.kernel`, `systolic.program` or `tsp.program`).

Preconditions: loop-stage IR; on an LPU every kernel carries the `chip` and
`shards` that `place-chips` wrote.
Postconditions: no `loop.kernel` is left; every hardware op fits its device.

The loop nest moves unchanged into the hardware op (so the module still
executes); matrix products inside it become the target's matrix-unit op;
the op records the mapping that target needs, computed from the loop nest
(`passes/_figures.py`) and the module's device (`dialects/device.py`):

- gpu: one CTA per parallel tile (the grid), threads per CTA, shared memory
  for the tiles times the copy-pipeline stages (fewer stages when they would
  not fit `smem_per_block_bytes`), registers per thread, the tensor-core MMA
  shape of the device for the element type.
- tpu: the dataflow of the arrays (the kernel's `dataflow` attribute, which
  `assign-dataflow` or the tuner wrote, else the device's `dataflow`), the
  DMA traffic, the VMEM footprint and the vector-unit work.
- lpu: the chip and shards `place-chips` chose, a static slot per chip, the
  functional units, and an explicit `tsp.transfer` for every buffer read on
  a chip other than the one that produced it.
- cpu: what strata's native code does with the kernel (`passes/export_mlir.py`):
  the iterations of its parallel tile loop, the threads (cores) that share
  them, the GEMM micro-kernel's register block and whether `b` is packed, the
  L1 strip and the L2 working set of one tile.

Decisions are only read here. The pass fails with a message naming the
kernel if its bounds are not constant, if it lacks a placement on an LPU, or
if it needs more shared memory or VMEM than the device has (`DoesNotFit`).
Options `accumulators_per_thread`, `elements_per_thread` and `copy_stages`
are heuristics of the GPU mapping, not hardware facts; `threads` is the
CPU's thread count (`--threads N`), a choice of the run, not of the chip.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, ModuleOp, StringAttr
from xdsl.ir import Attribute, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from strata.dialects import loop
from strata.dialects.graph import ops as g
from strata.dialects.hardware import COLLECTIVE_OPS, TRANSFER_OPS, cpu, simt, systolic, tsp
from strata.dialects.hardware._kernel import HardwareKernelOp, MatrixOp, int_attr, ints, matrix_operand_dtype
from strata.passes import _linalg
from strata.passes._figures import Figures, kernel_figures, kernel_gemms
from strata.passes.export_mlir import _micro_operands
from strata.passes.place_chips import kernel_weights
from strata.dialects.device import DeviceSpec, resolve_device
from strata.dialects.vocabulary import (
    CHIP_ATTR, CHIPS_ATTR, DATAFLOW_ATTR, DATAFLOWS, SHARDS_ATTR, DoesNotFit, IllegalSchedule,
)

# --------------------------------------------------------------------------- shared helpers


def _common(kernel: loop.KernelOp, figures: Figures) -> dict[str, Attribute]:
    return {
        "kind": kernel.kind,
        "ops": kernel.ops,
        "bounds": kernel.bounds,
        "tile_sizes": kernel.tile_sizes,
        "loop_order": kernel.loop_order,
        "flops": int_attr(figures.flops),
        "matrix_flops": int_attr(figures.matrix_flops),
        "read_bytes": int_attr(figures.read_bytes),
        "write_bytes": int_attr(figures.write_bytes),
        "onchip_bytes": int_attr(figures.onchip_bytes),
        "gemms": ArrayAttr([ints(gemm) for gemm in kernel_gemms(kernel)]),
    }


DIALECT = {"gpu": "simt", "tpu": "systolic", "lpu": "tsp", "cpu": "cpu"}
"""The hardware dialect of each target."""


def _check_fits(kernel: loop.KernelOp, need: int, what: str, device: DeviceSpec) -> None:
    if need > device.tile_memory_bytes:
        raise DoesNotFit(
            f"kernel '{kernel.kernel_name.data}' needs {need} B of {what} with tile_sizes"
            f" {list(kernel.tile_sizes.get_values())}, over the {device.tile_memory_text()}; it needs smaller"
            f" tiles (--schedule tile=...) or a device with more"
        )


def _move_body(kernel: loop.KernelOp, end: type[Operation], matrix: type[MatrixOp], mapping) -> Region:
    """Detach `kernel`'s body, with its terminator and matmuls in the target's ops."""
    region = kernel.detach_region(kernel.body)
    block = region.block
    terminator = block.last_op
    new_end = end()
    new_end.location = terminator.location
    block.insert_op_before(new_end, terminator)
    terminator.detach()
    terminator.erase()
    for op in list(region.walk()):
        if isinstance(op, g.MatmulOp):
            new = matrix(op.lhs, op.rhs, op.result.type, mapping)
            new.location = op.location
            op.parent_block().insert_op_before(new, op)
            op.result.replace_all_uses_with(new.result)
            op.detach()
            op.erase()
    return region


def _replace(kernel: loop.KernelOp, new: HardwareKernelOp) -> None:
    new.location = kernel.location
    kernel.parent_block().insert_op_before(new, kernel)
    kernel.detach()
    kernel.erase()


# --------------------------------------------------------------------------- gpu


def _warps(threads: int) -> int:
    return max(simt.WARP, min(simt.MAX_BLOCK_THREADS, -(-threads // simt.WARP) * simt.WARP))


@dataclass(frozen=True)
class GpuHeuristics:
    """Choices of the GPU mapping that are not hardware facts (pass options)."""

    accumulators_per_thread: int
    elements_per_thread: int
    copy_stages: int


def lower_gpu(kernel: loop.KernelOp, ins, device: DeviceSpec, heuristics: GpuHeuristics) -> simt.KernelOp:
    figures = kernel_figures(kernel)
    bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
    order = kernel.loop_order.get_values()
    counts = [-(-bounds[d] // tiles[d]) for d in reversed(order)]
    grid = (counts + [1, 1, 1])[:2] + [math.prod(counts[2:])]
    out_tile = math.prod(tiles[d] for d in order)
    matrix = figures.matrix_flops > 0
    per_thread = heuristics.accumulators_per_thread if matrix else heuristics.elements_per_thread
    threads = _warps(-(-out_tile // per_thread))
    steps = -(-bounds[-1] // tiles[-1]) if len(bounds) > len(order) else 1
    stages = min(heuristics.copy_stages, steps) if figures.pipelined_bytes else 1
    fixed = figures.onchip_bytes - figures.pipelined_bytes
    while stages > 1 and fixed + stages * figures.pipelined_bytes > device.tile_memory_bytes:
        stages -= 1
    smem = fixed + stages * figures.pipelined_bytes
    _check_fits(kernel, smem, "shared memory", device)
    if figures.register_bytes > device.register_file_bytes:
        raise DoesNotFit(
            f"kernel '{kernel.kernel_name.data}' needs {figures.register_bytes} B of accumulator registers with"
            f" tile_sizes {list(kernel.tile_sizes.get_values())}, over the register file (regs_per_sm ="
            f" {device['regs_per_sm']} x 4 B) of {device.name}; it needs smaller tiles (--schedule tile=...)"
        )
    mma = device.mma_shape(matrix_operand_dtype(kernel.body) or "f32") if matrix else ()
    # Each thread keeps its share of the f32 accumulators (or of the output
    # tile) in registers, plus about 32 for addresses, indices and fragments.
    accumulators = figures.register_bytes // 4 or out_tile
    regs = min(255, -(-accumulators // threads) + 32)
    mapping = {
        "grid": ints(grid),
        "block": ints([threads, 1, 1]),
        "smem_bytes": int_attr(smem),
        "stages": int_attr(stages),
        "regs_per_thread": int_attr(regs),
        "mma": ints(mma),
    }
    shape = {"shape": ints(mma or device.mma_shape("f32") or (16, 8, 8))}
    common = _common(kernel, figures)
    body = _move_body(kernel, simt.EndOp, simt.MmaOp, shape)
    return simt.KernelOp(kernel.kernel_name.data, ins, kernel.outs, common, mapping, body)


# --------------------------------------------------------------------------- tpu


def lower_tpu(kernel: loop.KernelOp, ins, device: DeviceSpec) -> systolic.ProgramOp:
    pinned = kernel.attributes.get(DATAFLOW_ATTR)
    dataflow = pinned.data if isinstance(pinned, StringAttr) else device["dataflow"]
    if dataflow not in DATAFLOWS:
        raise IllegalSchedule(
            f"kernel '{kernel.kernel_name.data}': dataflow must be one of {', '.join(DATAFLOWS)}, got '{dataflow}'"
        )
    figures = kernel_figures(kernel)
    vmem = figures.onchip_bytes + figures.register_bytes
    _check_fits(kernel, vmem, "VMEM", device)
    mapping = {
        "dataflow": StringAttr(dataflow),
        "dma_in_bytes": int_attr(figures.read_bytes),
        "dma_out_bytes": int_attr(figures.write_bytes),
        "vmem_bytes": int_attr(vmem),
        "vector_flops": int_attr(figures.flops - figures.matrix_flops),
    }
    common = _common(kernel, figures)
    body = _move_body(kernel, systolic.EndOp, systolic.MatmulOp, {"dataflow": StringAttr(dataflow)})
    return systolic.ProgramOp(kernel.kernel_name.data, ins, kernel.outs, common, mapping, body)


# --------------------------------------------------------------------------- lpu


def _units(figures: Figures) -> list[str]:
    units = ["mem"]
    units += ["mxm"] if "matrix" in figures.unit_ops else []
    units += ["vxm"] if "vector" in figures.unit_ops else []
    units += ["sxm"] if "movement" in figures.unit_ops else []
    return units


def lower_lpu(kernel: loop.KernelOp, ins, chip: int, shards: int, slot: int, roots) -> tsp.ProgramOp:
    figures = kernel_figures(kernel)
    weight_reads = sum(b for i, b in figures.reads_by_buffer.items() if 0 <= i < len(ins) and kernel.ins[i] in roots)
    mapping = {
        "chip": int_attr(chip),
        "shards": int_attr(shards),
        "slot": int_attr(slot),
        "units": ArrayAttr([StringAttr(u) for u in _units(figures)]),
        "weight_bytes": int_attr(sum(kernel_weights(kernel, roots).values())),
        "stream_bytes": int_attr(figures.read_bytes - weight_reads + figures.write_bytes),
    }
    common = _common(kernel, figures)
    body = _move_body(kernel, tsp.EndOp, tsp.MxmOp, {})
    return tsp.ProgramOp(kernel.kernel_name.data, ins, kernel.outs, common, mapping, body)


# --------------------------------------------------------------------------- cpu


def parallel_iterations(kernel: loop.KernelOp) -> int:
    """
    Iterations of the kernel's parallel tile loop: the export makes the
    output-tile loop with the most iterations an `scf.parallel` (the others
    stay sequential), so that is the work its threads share.
    """
    bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
    rank = len(kernel.loop_order.get_values())
    return max((-(-bounds[d] // tiles[d]) for d in range(rank)), default=1)


def cpu_micro_kernel(kernel: loop.KernelOp) -> tuple[tuple[int, int], bool]:
    """
    The register block (mr rows, nr columns) of the export's vector
    micro-kernel for the kernel's first matmul, or its convolution's implicit
    GEMM, or () when the export gives it none (not f32, batched matmuls, grouped,
    ...), and whether `b` is packed (both operands plain tile loads:
    `_micro_operands`; never for a convolution).
    """
    matmul = next((op for op in kernel.body.walk() if isinstance(op, g.MatmulOp)), None)
    if matmul is None:
        # A convolution the export runs as an implicit GEMM through the same micro-kernel
        # (`W[O, K] @ cols[K, N*Y*X]`, the weight read in place: nothing packed).
        conv = next((op for op in kernel.body.walk() if isinstance(op, g.Conv2DOp)), None)
        block = _linalg.implicit_gemm_block(conv) if conv is not None else None
        if block is None:
            return (), False
        mr, vectors = block
        return (mr, vectors * _linalg.VL), False
    lhs, rhs = matmul.lhs.type, matmul.rhs.type
    lhs_shape, rhs_shape = lhs.get_shape(), rhs.get_shape()
    if len(rhs_shape) != 2 or any(d != 1 for d in lhs_shape[:-2]):
        return (), False
    block = _linalg.micro_kernel(lhs_shape[-2:], rhs_shape, lhs.element_type, rhs.element_type,
                                 matmul.result.type.element_type)
    if block is None:
        return (), False
    mr, vectors = block
    return (mr, vectors * _linalg.VL), _micro_operands(matmul) is not None


def lower_cpu(kernel: loop.KernelOp, ins, threads: int, device: DeviceSpec) -> cpu.KernelOp:
    figures = kernel_figures(kernel, cpu.storage_bytes)
    working_set = figures.onchip_bytes + figures.register_bytes
    _check_fits(kernel, working_set, "L2 working set", device)
    parallel = parallel_iterations(kernel)
    block, packed = cpu_micro_kernel(kernel)
    l1_bytes = packed_bytes = 0
    if packed:
        bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
        rank = len(kernel.loop_order.get_values())
        k_tile, n_tile = tiles[-1], tiles[rank - 1]
        nr = block[1]
        l1_bytes = 4 * k_tile * nr
        packed_bytes = 4 * k_tile * -(-min(n_tile, bounds[rank - 1]) // nr) * nr
    mapping = {
        "threads": int_attr(min(threads, parallel)),
        "parallel_tiles": int_attr(parallel),
        "micro_kernel": ints(block),
        "vector_lanes": int_attr(device["simd_lanes_f32"]),
        "l1_bytes": int_attr(l1_bytes),
        "l2_bytes": int_attr(working_set),
        "packed_bytes": int_attr(packed_bytes),
        "transcendentals": int_attr(figures.transcendentals),
    }
    common = _common(kernel, figures)
    body = _move_body(kernel, cpu.EndOp, cpu.FmaOp, {"micro_kernel": ints(block)})
    return cpu.KernelOp(kernel.kernel_name.data, ins, kernel.outs, common, mapping, body)


# --------------------------------------------------------------------------- chips


def _placement(kernel: loop.KernelOp, target: str) -> tuple[int, int]:
    chip, shards = kernel.attributes.get(CHIP_ATTR), kernel.attributes.get(SHARDS_ATTR)
    if isinstance(chip, IntegerAttr) and isinstance(shards, IntegerAttr):
        return chip.value.data, shards.value.data
    if target != "lpu":
        return 0, 1  # one device unless place-chips says otherwise
    raise ValueError(
        f"kernel '{kernel.kernel_name.data}' has no {CHIP_ATTR}/{SHARDS_ATTR}: run 'place-chips' before"
        f" 'lower-to-hardware' on an LPU"
    )


def lower_function(fn: func.FuncOp, device: DeviceSpec, chips: int, lower) -> None:
    """
    Lower every kernel of `fn` with `lower(kernel, ins, chip, shards, slot,
    params)` on the chip `place-chips` chose, moving every buffer read on
    another chip than the one that wrote it with the target's transfer op.
    """
    roots = loop.param_buffers(fn)
    transfer = TRANSFER_OPS[DIALECT[device.target]]
    home: dict[SSAValue, int] = {}
    moved: dict[tuple[SSAValue, int], SSAValue] = {}
    slots: dict[int, int] = {}
    for op in list(fn.body.block.ops):
        if isinstance(op, loop.CopyOp | loop.ViewOp):
            # Copies and views stay on their source's chip.
            source, result = (op.source, op.dest) if isinstance(op, loop.CopyOp) else (op.source, op.result)
            if source in home:
                home[result] = home[source]
            continue
        if isinstance(op, loop.CollectiveBase):
            _lower_collective(op, COLLECTIVE_OPS[DIALECT[device.target]], home, chips > 1)
            continue
        if not isinstance(op, loop.KernelOp):
            continue
        chip, shards = _placement(op, device.target)
        ins = [_on_chip(v, chip, op, roots, home, moved, transfer) for v in op.ins]
        new = lower(op, ins, chip, shards, slots.get(chip, 0), roots)
        if chips > 1 and device.target != "lpu":
            new.attributes[CHIP_ATTR] = IntegerAttr(chip, 64)
        slots[chip] = slots.get(chip, 0) + 1
        for out in op.outs:
            home[out] = chip
        _replace(op, new)


def _lower_collective(op: loop.CollectiveBase, ops, home: dict[SSAValue, int], staged: bool) -> None:
    """A collective runs among the devices of the stage that holds its operand (as its result then does)."""
    kind = op.name.split(".")[1]  # all_reduce, all_gather, reduce_scatter: the same name on every dialect
    new = ops[kind](op.source, op.dest, loop.collective_properties(op))
    chip = home.get(op.source, 0)
    home[op.dest] = chip
    if staged:
        new.attributes[CHIP_ATTR] = IntegerAttr(chip, 64)
    new.location = op.location
    Rewriter.replace_op(op, new)


def _on_chip(value, chip, kernel, roots, home, moved, transfer) -> SSAValue:
    """`value` as seen on `chip`: itself (weights are resident where read), or a copy moved there."""
    if value in roots or home.get(value, 0) == chip:
        return value
    key = (value, chip)
    if key not in moved:
        alloc = memref.AllocOp([], [], value.type)
        move = transfer(value, alloc.memref, home.get(value, 0), chip)
        for op in (alloc, move):
            op.location = kernel.location
            kernel.parent_block().insert_op_before(op, kernel)
        moved[key] = alloc.memref
        home[alloc.memref] = chip
    return moved[key]


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class LowerToHardwarePass(ModulePass):
    """Lower every `loop.kernel` to the hardware dialect of the module's device."""

    name = "lower-to-hardware"

    target: str = ""
    """`gpu`, `tpu`, `lpu` or `cpu`: must match the module's device (empty: the recorded device)."""
    accumulators_per_thread: int = 64
    """gpu: f32 accumulators per thread of a GEMM CTA (CUTLASS's 128x128 tile on 256 threads)."""
    elements_per_thread: int = 8
    """gpu: output elements per thread of other kernels."""
    copy_stages: int = 3
    """gpu: depth of the global-to-shared copy pipeline (CUTLASS sm80 multistage default)."""
    threads: int = 1
    """cpu: threads sharing each kernel's parallel tile loop (`--threads N`; the native run's default, 1)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        device = resolve_device(op, self.target)
        heuristics = GpuHeuristics(self.accumulators_per_thread, self.elements_per_thread, self.copy_stages)
        if min(dataclasses.astuple(heuristics)) < 1:
            raise ValueError(f"lower-to-hardware: GPU heuristics must be at least 1, got {heuristics}")
        if self.threads < 1:
            raise ValueError(f"lower-to-hardware: threads must be at least 1, got {self.threads}")
        pinned = op.attributes.get(CHIPS_ATTR)
        chips = pinned.value.data if isinstance(pinned, IntegerAttr) else 1
        lower = {
            "gpu": lambda kernel, ins, *_: lower_gpu(kernel, ins, device, heuristics),
            "tpu": lambda kernel, ins, *_: lower_tpu(kernel, ins, device),
            "lpu": lower_lpu,
            "cpu": lambda kernel, ins, *_: lower_cpu(kernel, ins, self.threads, device),
        }[device.target]
        for fn in [f for f in op.walk() if isinstance(f, func.FuncOp) and not f.is_declaration]:
            lower_function(fn, device, chips, lower)
        if device.target == "lpu" and CHIPS_ATTR not in op.attributes:
            op.attributes[CHIPS_ATTR] = IntegerAttr(1, 64)
