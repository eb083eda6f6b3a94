"""
`tile{sizes=... order=...}`: choose each kernel's tile sizes and loop order.

Preconditions: layout-stage IR (after `assign-layout`).
Postconditions: every `graph.kernel` carries `tile_sizes` (one per dim of its
iteration space: the output's dims, then the reduction extent of a GEMM or
attention kernel) and `loop_order` (the parallel dims, outermost first).
Only legal tiles are written: a dim that no tile of the kernel's ops can be
cut along (a softmax axis, a concat axis) keeps its whole extent, and the
reduction tile divides the reduction extent. The IR's values are untouched;
`lower-to-loops` reads the attributes, so a hand-edited dump compiles as
edited.

Defaults per target (`passes/targets.toml`): GEMMs take the target's GEMM
tile (128x128x64 on the GPU, 128 on the TPU, 320 on the LPU), attention 128
queries by 128 keys; other kernels are cut in half along their outermost
tileable dims until their on-chip tiles fit in half the on-chip memory (the
other half double-buffers). `sizes` (aligned to the innermost dims) and
`order` override the defaults for every kernel they fit.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, i64
from xdsl.ir import BlockArgument, SSAValue
from xdsl.ir.affine import AffineExpr
from xdsl.passes import ModulePass

from dialects.graph.kernel import KernelOp
from passes._regions import (
    NotTileable, Region, const, crop_of_whole, full, gathers_rows, operand_regions, region_key, shape_of,
)
from passes._targets import module_target, target_facts
from passes.lower_to_loops import ORDER_ATTR, TILE_ATTR, anchor_matmul, attention_parts, kernel_bounds

# --------------------------------------------------------------------------- helpers


def _element_bytes(value: SSAValue) -> int:
    width = getattr(value.type.element_type, "bitwidth", None)
    return max(1, (width or 32) // 8)


def footprint(kernel: KernelOp, tiles: tuple[int, ...]) -> int:
    """
    Bytes of the on-chip tiles one iteration reads and writes; raises
    `NotTileable` when the tiles cannot be computed.

    Follows the same bounds inference as `lower-to-loops`, with the reduction
    dim cut by its tile.
    """
    body = kernel.body.block
    rank = len(shape_of(kernel.outputs[0]))
    reduce_dim = len(tiles) - 1 if len(tiles) > rank else None
    bounds = kernel_bounds(kernel)
    k_tile = None
    if reduce_dim is not None:
        k_tile = (AffineExpr.dimension(rank) if tiles[-1] < bounds[-1] else const(0), tiles[-1])
    special = set()
    if kernel.kind.data == "gemm":
        special.add(anchor_matmul(body))
    parts = attention_parts(body) if kernel.kind.data == "attention" else None
    seen: set = set()
    total = 0

    def visit(value: SSAValue, region: Region) -> None:
        nonlocal total
        key = (value, region_key(region))
        if key in seen:
            return
        seen.add(key)
        if isinstance(value, BlockArgument):
            total += math.prod(s for _, s in region) * _element_bytes(value)
            return
        op = value.owner
        if gathers_rows(op):
            total += math.prod(s for _, s in region) * _element_bytes(op.table)
            visit(op.ids, tuple(region[: len(shape_of(op.ids))]))
            return
        if parts is not None and op is parts[1]:
            visit(parts[0].input, tuple(region[:-1]) + (k_tile,))
            visit(op.rhs, operand_regions(op, region, k_tile)[1])
            return
        if crop_of_whole(op, region):
            visit(value, full(shape_of(value)))
            return
        regions = operand_regions(op, region, k_tile if op in special else None)
        for operand, operand_region in zip(op.operands, regions):
            visit(operand, operand_region)

    out = body.last_op.values[0]
    region = tuple(
        (AffineExpr.dimension(d) if tiles[d] < bounds[d] else const(0), tiles[d]) for d in range(rank)
    )
    visit(out, region)
    return total + math.prod(tiles[:rank]) * _element_bytes(out)


def legal(kernel: KernelOp, tiles: tuple[int, ...]) -> bool:
    bounds = kernel_bounds(kernel)
    rank = len(shape_of(kernel.outputs[0]))
    if any(t < 1 or t > b for t, b in zip(tiles, bounds)):
        return False
    if len(bounds) > rank and bounds[-1] % tiles[-1]:
        return False
    try:
        footprint(kernel, tiles)
    except NotTileable:
        return False
    return True


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def _tileable(kernel: KernelOp, bounds: tuple[int, ...], rank: int) -> list[bool]:
    """Which output dims can be cut (each tried alone, the others whole)."""
    flags = []
    for d in range(rank):
        trial = list(bounds)
        trial[d] = max(1, bounds[d] // 2) if bounds[d] > 1 else 1
        flags.append(bounds[d] > 1 and legal(kernel, tuple(trial)))
    return flags


def default_tiles(kernel: KernelOp, target: str) -> tuple[int, ...]:
    """The target's default tile for `kernel` (see the module docstring)."""
    facts = target_facts(target)
    bounds = kernel_bounds(kernel)
    rank = len(shape_of(kernel.outputs[0]))
    cut = _tileable(kernel, bounds, rank)
    tiles = list(bounds)
    kind = kernel.kind.data
    if kind in ("gemm", "attention") and len(bounds) > rank:
        tm, tn, tk = facts.gemm_tile
        for d in range(rank - 2):
            tiles[d] = 1 if cut[d] else bounds[d]
        if kind == "gemm":
            tiles[rank - 2] = min(tm, bounds[rank - 2]) if cut[rank - 2] else bounds[rank - 2]
            tiles[rank - 1] = min(tn, bounds[rank - 1]) if cut[rank - 1] else bounds[rank - 1]
            tiles[rank] = _largest_divisor(bounds[rank], tk)
        else:
            tiles[rank - 2] = min(tm, bounds[rank - 2]) if cut[rank - 2] else bounds[rank - 2]
            tiles[rank] = _largest_divisor(bounds[rank], tn)
    # Cuts that are legal alone may not be together (a reshape of a tile
    # cut in two dims): grow the innermost cut tile until the whole is legal.
    while not legal(kernel, tuple(tiles)):
        open_dims = [d for d in range(len(bounds)) if tiles[d] < bounds[d]]
        if not open_dims:
            break
        d = open_dims[-1]
        # The reduction tile must divide its extent: whole it is.
        tiles[d] = bounds[d] if d >= rank else min(bounds[d], tiles[d] * 2)
    budget = facts.onchip_bytes // 2
    # Halve the outermost cuttable dim until the tiles fit.
    while footprint(kernel, tuple(tiles)) > budget:
        candidates = [d for d in range(rank) if cut[d] and tiles[d] > 1]
        if not candidates:
            break
        d = candidates[0]
        halved = list(tiles)
        halved[d] = math.ceil(tiles[d] / 2)
        # A cut that does not shrink the tiles (an operand read whole, like
        # the table of a gather from a value computed in the kernel) would
        # only multiply the traffic: stop cutting there.
        if not legal(kernel, tuple(halved)) or footprint(kernel, tuple(halved)) > 0.75 * footprint(kernel, tuple(tiles)):
            cut[d] = False
            continue
        tiles = halved
    return tuple(tiles)


def apply_sizes(kernel: KernelOp, base: tuple[int, ...], sizes: tuple[int, ...]) -> tuple[int, ...]:
    """`sizes` over the innermost dims of `base`, clamped; illegal ones ignored."""
    bounds = kernel_bounds(kernel)
    tiles = list(base)
    count = min(len(sizes), len(bounds))
    for i, size in enumerate(sizes[len(sizes) - count :]):
        d = len(bounds) - count + i
        tiles[d] = min(size, bounds[d]) if size > 0 else bounds[d]
    rank = len(shape_of(kernel.outputs[0]))
    if len(bounds) > rank:
        tiles[-1] = _largest_divisor(bounds[-1], tiles[-1])
    candidate = tuple(tiles)
    return candidate if legal(kernel, candidate) else base


def _ints(values) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class TilePass(ModulePass):
    """Write `tile_sizes` and `loop_order` on every kernel."""

    name = "tile"

    target: str = ""
    """`gpu`, `tpu` or `lpu`; empty means the target `fuse` recorded."""
    sizes: tuple[int, ...] = ()
    """Tile sizes of the innermost dims (0 = whole dim) for every kernel; empty = defaults."""
    order: tuple[int, ...] = ()
    """Loop order of the parallel dims, outermost first, for kernels of that rank."""
    keep: bool = True
    """Keep tiles a kernel already carries (from a dump or the tuner)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        target = self.target or module_target(op)
        for kernel in op.walk():
            if not isinstance(kernel, KernelOp):
                continue
            if self.keep and TILE_ATTR in kernel.attributes and not self.sizes:
                continue
            tiles = apply_sizes(kernel, default_tiles(kernel, target), self.sizes)
            rank = len(shape_of(kernel.outputs[0]))
            order = self.order if sorted(self.order) == list(range(rank)) else tuple(range(rank))
            kernel.attributes[TILE_ATTR] = _ints(tiles)
            kernel.attributes[ORDER_ATTR] = _ints(order)

    @classmethod
    def schedule_space(cls, ctx: Context, module_op: ModuleOp) -> tuple[TilePass, ...]:
        """Power-of-two tiles (32..256) of the two innermost dims and the reduction."""
        target = module_target(module_op)
        powers = (32, 64, 128, 256)
        return tuple(
            cls(target, sizes, (), False) for sizes in itertools.product(powers, repeat=3)
        )

