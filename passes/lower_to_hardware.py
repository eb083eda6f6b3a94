"""
`lower-to-hardware{target=...}`: every `loop.kernel` becomes its target's
hardware op (`simt.kernel`, `systolic.program` or `tsp.program`).

The loop nest moves unchanged into the hardware op (so the module still
executes); matrix products inside it become the target's matrix-unit op;
the op records the mapping that target needs, computed from the loop nest
(`passes/_figures.py`) and the target facts (`passes/targets.toml`):

- gpu: one CTA per parallel tile (the grid), threads per CTA, shared memory
  for the tiles times the copy-pipeline stages, registers per thread, the
  tensor-core MMA shape for the element type.
- tpu: the dataflow of the arrays (the kernel's `dataflow` attribute if the
  tuner or a user set one, else the pass option, else the target default),
  the DMA traffic, the vector-memory footprint and the vector-unit work.
- lpu: chips (weights resident in SRAM; the fewest chips that hold them, or
  `chips` if given, or the count in the module's `tsp.chips` attribute, each
  a run of kernels, cut where the fewest activation bytes cross between
  chips; a kernel whose weights exceed one chip is sharded over several,
  and then chips are filled in turn), a static slot per chip, the
  functional units, and an explicit `tsp.transfer` for every buffer read on
  a chip other than the one that produced it.

Decisions read from the IR: `dataflow` on a `loop.kernel`, `tsp.chips` on
the module. The pass fails with a message if a kernel's bounds are not
constant or a kernel cannot fit any chip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func, memref
from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, ModuleOp, StringAttr
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass

from dialects import loop
from dialects.graph import PARAM_ATTR
from dialects.graph import ops as g
from dialects.hardware import simt, systolic, tsp
from dialects.hardware._kernel import HardwareKernelOp, MatrixOp, int_attr, ints
from passes._figures import Figures, kernel_figures, kernel_gemms, nbytes
from passes._targets import TARGET_ATTR, TARGETS, module_target, target_facts, target_table

DATAFLOW_ATTR = "dataflow"
"""A `loop.kernel` attribute pinning the systolic dataflow of that kernel."""


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


def _element_name(kernel: loop.KernelOp) -> str:
    type_ = kernel.outs[0].type.element_type
    return str(type_)


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


def lower_gpu(kernel: loop.KernelOp) -> simt.KernelOp:
    table, facts = target_table("gpu"), target_facts("gpu")
    figures = kernel_figures(kernel)
    bounds, tiles = kernel.bounds.get_values(), kernel.tile_sizes.get_values()
    order = kernel.loop_order.get_values()
    counts = [-(-bounds[d] // tiles[d]) for d in reversed(order)]
    grid = (counts + [1, 1, 1])[:2] + [math.prod(counts[2:])]
    out_tile = math.prod(tiles[d] for d in order)
    matrix = figures.matrix_flops > 0
    per_thread = table["accumulators_per_thread"] if matrix else table["elements_per_thread"]
    threads = _warps(-(-out_tile // per_thread))
    steps = -(-bounds[-1] // tiles[-1]) if len(bounds) > len(order) else 1
    stages = min(table["copy_stages"], steps) if figures.pipelined_bytes else 1
    fixed = figures.onchip_bytes - figures.pipelined_bytes
    while stages > 1 and fixed + stages * figures.pipelined_bytes > facts.onchip_bytes:
        stages -= 1
    smem = fixed + stages * figures.pipelined_bytes
    mma = table["mma"].get(_element_name(kernel), []) if matrix else []
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
    shape = {"shape": ints(mma or table["mma"]["f32"])}
    common = _common(kernel, figures)
    body = _move_body(kernel, simt.EndOp, simt.MmaOp, shape)
    return simt.KernelOp(kernel.kernel_name.data, kernel.ins, kernel.outs, common, mapping, body)


# --------------------------------------------------------------------------- tpu


def lower_tpu(kernel: loop.KernelOp, dataflow: str) -> systolic.ProgramOp:
    pinned = kernel.attributes.get(DATAFLOW_ATTR)
    dataflow = pinned.data if isinstance(pinned, StringAttr) else dataflow or target_table("tpu")["dataflow"]
    if dataflow not in systolic.DATAFLOWS:
        raise ValueError(f"kernel '{kernel.kernel_name.data}': dataflow must be one of os, ws, is, got '{dataflow}'")
    figures = kernel_figures(kernel)
    mapping = {
        "dataflow": StringAttr(dataflow),
        "dma_in_bytes": int_attr(figures.read_bytes),
        "dma_out_bytes": int_attr(figures.write_bytes),
        "vmem_bytes": int_attr(figures.onchip_bytes + figures.register_bytes),
        "vector_flops": int_attr(figures.flops - figures.matrix_flops),
    }
    common = _common(kernel, figures)
    body = _move_body(kernel, systolic.EndOp, systolic.MatmulOp, {"dataflow": StringAttr(dataflow)})
    return systolic.ProgramOp(kernel.kernel_name.data, kernel.ins, kernel.outs, common, mapping, body)


# --------------------------------------------------------------------------- lpu


def _param_roots(fn: func.FuncOp) -> dict[SSAValue, SSAValue]:
    """Each buffer derived from a param (through copies and views) to that param."""
    block = fn.body.block
    attrs = fn.arg_attrs.data if fn.arg_attrs else [None] * len(block.args)
    roots = {arg: arg for arg, a in zip(block.args, attrs) if a is not None and PARAM_ATTR in a.data}
    for op in block.ops:
        if isinstance(op, loop.CopyOp) and op.source in roots:
            roots[op.dest] = roots[op.source]
        elif isinstance(op, loop.ViewOp) and op.source in roots:
            roots[op.result] = roots[op.source]
    return roots


def _weights(kernel: loop.KernelOp, roots) -> dict[SSAValue, int]:
    return {roots[v]: nbytes(roots[v].type) for v in kernel.ins if v in roots}


def assign_chips(
    kernels: list[loop.KernelOp], roots, capacity: int, chips: int, crossing: list[int] | None = None,
) -> list[tuple[int, int]]:
    """
    `(first chip, shards)` per kernel, in order. Each chip holds a run of
    kernels whose weights fit its SRAM; `chips` runs (0: the fewest that
    fit), cut where the fewest activation bytes cross (`crossing[b]`: the
    bytes live from before kernel `b` to it or later, each a `tsp.transfer`),
    then where the heaviest chip is lightest. A kernel whose weights exceed
    one chip is sharded over as many fresh chips as they need; a model with
    one fills each chip in turn (or, with `chips`, the smallest per-chip
    budget whose filling uses at most `chips`).
    """
    per_kernel = [_weights(k, roots) for k in kernels]
    if not kernels:
        return []
    if any(sum(w.values()) > capacity for w in per_kernel):
        return _filled(kernels, per_kernel, capacity, chips)
    fewest = max(c + s for c, s in _pack(kernels, per_kernel, capacity, capacity))
    count = min(chips or fewest, len(kernels))
    runs = _cheapest_runs(per_kernel, capacity, count, crossing or [0] * (len(kernels) + 1))
    if runs is None:  # cannot happen with count >= fewest; kept as a guard
        return _filled(kernels, per_kernel, capacity, chips)
    return [(chip, 1) for chip, (start, end) in enumerate(runs) for _ in range(start, end)]


def _filled(kernels, per_kernel, capacity: int, chips: int) -> list[tuple[int, int]]:
    """Fill each chip in turn (with `chips`, under the smallest budget that fits in them)."""
    total = sum(sum(w.values()) for w in per_kernel)
    if chips <= 0:
        return _pack(kernels, per_kernel, capacity, capacity)
    low, high = -(-total // chips), capacity
    best = _pack(kernels, per_kernel, capacity, high)
    while low < high:
        middle = (low + high) // 2
        packed = _pack(kernels, per_kernel, capacity, middle)
        if max(c + s for c, s in packed) <= chips:
            best, high = packed, middle
        else:
            low = middle + 1
    return best


def _cheapest_runs(per_kernel, capacity: int, count: int, crossing: list[int]) -> list[tuple[int, int]] | None:
    """
    `count` consecutive runs `[start, end)` of kernels, each within
    `capacity` bytes of distinct weights, minimising the bytes crossing the
    cuts, then the heaviest run (dynamic programming over cut positions).
    """
    n = len(per_kernel)
    weight = [[0] * (n + 1) for _ in range(n + 1)]
    for start in range(n):
        seen: dict = {}
        for end in range(start + 1, n + 1):
            seen.update(per_kernel[end - 1])
            weight[start][end] = sum(seen.values())
    inf = (math.inf, math.inf)
    # best[c][end]: (crossing bytes, heaviest run) of the first `end` kernels in `c` runs.
    best = [[inf] * (n + 1) for _ in range(count + 1)]
    cut = [[0] * (n + 1) for _ in range(count + 1)]
    best[0][0] = (0, 0)
    for c in range(1, count + 1):
        for end in range(c, n + 1):
            for start in range(c - 1, end):
                if best[c - 1][start] == inf or weight[start][end] > capacity:
                    continue
                cost, heaviest = best[c - 1][start]
                candidate = (cost + (crossing[start] if start else 0), max(heaviest, weight[start][end]))
                if candidate < best[c][end]:
                    best[c][end], cut[c][end] = candidate, start
    if best[count][n] == inf:
        return None
    runs, end = [], n
    for c in range(count, 0, -1):
        runs.append((cut[c][end], end))
        end = cut[c][end]
    return runs[::-1]


def _crossing(fn: func.FuncOp, kernels: list[loop.KernelOp], roots) -> list[int]:
    """`crossing[b]`: bytes of activations (and inputs) made before kernel `b` and read by it or later."""
    order = {k: i for i, k in enumerate(kernels)}
    made: dict[SSAValue, int] = {arg: -1 for arg in fn.body.block.args if arg not in roots}
    last: dict[SSAValue, int] = {}
    for op in fn.body.block.ops:
        if isinstance(op, loop.CopyOp | loop.ViewOp):
            source, result = (op.source, op.dest) if isinstance(op, loop.CopyOp) else (op.source, op.result)
            if source in made:
                made[result] = made[source]
        elif isinstance(op, loop.KernelOp):
            for value in op.ins:
                if value in made:
                    last[value] = order[op]
            for value in op.outs:
                made[value] = order[op]
    crossing = [0] * (len(kernels) + 1)
    for value, end in last.items():
        for boundary in range(made[value] + 1, end + 1):
            crossing[boundary] += nbytes(value.type)
    return crossing


def _pack(kernels, per_kernel, capacity: int, budget: int) -> list[tuple[int, int]]:
    chip, used, placed, result = 0, 0, set(), []
    for weights in per_kernel:
        new = sum(size for root, size in weights.items() if root not in placed)
        if new > capacity:
            first = chip + 1 if used else chip
            shards = -(-sum(weights.values()) // capacity)
            result.append((first, shards))
            chip, used, placed = first + shards, 0, set()
            continue
        if used and used + new > budget:
            chip, used, placed = chip + 1, 0, set()
            new = sum(weights.values())
        used += new
        placed |= set(weights)
        result.append((chip, 1))
    return result


def _units(figures: Figures) -> list[str]:
    units = ["mem"]
    units += ["mxm"] if "matrix" in figures.unit_ops else []
    units += ["vxm"] if "vector" in figures.unit_ops else []
    units += ["sxm"] if "movement" in figures.unit_ops else []
    return units


def lower_lpu(fn: func.FuncOp, chips: int) -> int:
    """Place, schedule and lower every kernel of `fn`; return the chips used."""
    roots = _param_roots(fn)
    kernels = [op for op in fn.body.block.ops if isinstance(op, loop.KernelOp)]
    crossing = _crossing(fn, kernels, roots)
    placement = assign_chips(kernels, roots, target_facts("lpu").onchip_bytes, chips, crossing)
    home: dict[SSAValue, int] = {}
    moved: dict[tuple[SSAValue, int], SSAValue] = {}
    slots: dict[int, int] = {}
    placed = dict(zip(kernels, placement))
    for op in list(fn.body.block.ops):
        if isinstance(op, loop.CopyOp | loop.ViewOp):
            # Copies and views stay on their source's chip.
            source, result = (op.source, op.dest) if isinstance(op, loop.CopyOp) else (op.source, op.result)
            if source in home:
                home[result] = home[source]
            continue
        if not isinstance(op, loop.KernelOp):
            continue
        kernel, (chip, shards) = op, placed[op]
        ins = [_on_chip(v, chip, kernel, roots, home, moved) for v in kernel.ins]
        figures = kernel_figures(kernel)
        weight_reads = sum(b for i, b in figures.reads_by_buffer.items() if 0 <= i < len(ins) and kernel.ins[i] in roots)
        mapping = {
            "chip": int_attr(chip),
            "shards": int_attr(shards),
            "slot": int_attr(slots.get(chip, 0)),
            "units": ArrayAttr([StringAttr(u) for u in _units(figures)]),
            "weight_bytes": int_attr(sum(_weights(kernel, roots).values())),
            "stream_bytes": int_attr(figures.read_bytes - weight_reads + figures.write_bytes),
        }
        slots[chip] = slots.get(chip, 0) + 1
        common = _common(kernel, figures)
        body = _move_body(kernel, tsp.EndOp, tsp.MxmOp, {})
        new = tsp.ProgramOp(kernel.kernel_name.data, ins, kernel.outs, common, mapping, body)
        for out in kernel.outs:
            home[out] = chip
        _replace(kernel, new)
    return max((chip + shards for chip, shards in placement), default=1)


def _on_chip(value, chip, kernel, roots, home, moved) -> SSAValue:
    """`value` as seen on `chip`: itself, or a copy moved there by a `tsp.transfer`."""
    if value in roots or home.get(value, 0) == chip:
        return value
    key = (value, chip)
    if key not in moved:
        alloc = memref.AllocOp([], [], value.type)
        transfer = tsp.TransferOp(value, alloc.memref, home.get(value, 0), chip)
        for op in (alloc, transfer):
            op.location = kernel.location
            kernel.parent_block().insert_op_before(op, kernel)
        moved[key] = alloc.memref
        home[alloc.memref] = chip
    return moved[key]


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class LowerToHardwarePass(ModulePass):
    """
    Lower every `loop.kernel` to the target's hardware dialect.

    Options: `target` (default: the module's `strata.target`), `dataflow`
    (tpu: os, ws or is for kernels without their own `dataflow` attribute),
    `chips` (lpu: spread the weights over this many chips; 0 = as few as fit).
    """

    name = "lower-to-hardware"

    target: str = ""
    dataflow: str = ""
    chips: int = 0

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = self.target or module_target(op)
        if target not in TARGETS:
            raise ValueError(f"lower-to-hardware: unknown target '{target}' (targets: {', '.join(TARGETS)})")
        op.attributes[TARGET_ATTR] = StringAttr(target)
        for fn in [f for f in op.walk() if isinstance(f, func.FuncOp) and not f.is_declaration]:
            if target == "lpu":
                pinned = op.attributes.get(tsp.CHIPS_ATTR)
                chips = self.chips or (pinned.value.data if isinstance(pinned, IntegerAttr) else 0)
                used = lower_lpu(fn, chips)
                op.attributes[tsp.CHIPS_ATTR] = IntegerAttr(used, 64)
                continue
            for kernel in [k for k in fn.body.block.ops if isinstance(k, loop.KernelOp)]:
                new = lower_gpu(kernel) if target == "gpu" else lower_tpu(kernel, self.dataflow)
                _replace(kernel, new)

    @classmethod
    def schedule_space(cls, ctx: Context, module_op: ModuleOp) -> tuple[LowerToHardwarePass, ...]:
        target = module_target(module_op)
        if target == "tpu":
            return tuple(cls(target=target, dataflow=d) for d in systolic.DATAFLOWS)
        return (cls(target=target),)
