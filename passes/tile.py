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

Defaults per device (the module's `dlti.target_system_spec`): GEMMs take
the device's `preferred_gemm_tile` (128x128x64 on the H100, 128 on a TPU,
320 on the LPU; on a CPU derived from its L1d and L2, `cpu_gemm_tile`:
256x256x128 on this host, and for a GEMM of few rows its weight's whole
rows where they fit, `cpu_few_rows_tile`), attention its first two entries as queries by keys, the
reduction tile the divisor of its extent nearest the preferred one; other
kernels are cut in half along their outermost tileable dims until their
on-chip tiles fit in half the memory tiles live in (`tile_memory_bytes`:
shared memory per block, VMEM, SRAM, a CPU core's L2; the other half
double-buffers). Then
per target: a TPU's GEMM tiles grow while they fit, each doubling where it
cuts HBM re-reads most (one program owns the chip's VMEM); a GPU's matrix
kernels shrink until their grid covers every SM, and a GEMM with more column
tiles than row tiles walks its rows innermost (`default_order`); on a CPU
run on `threads` threads (`--threads N`), a matrix kernel shrinks until each
thread has a tile, while a thread's share of its FLOPs outlasts forking the
threads `PARALLEL_GRAIN` times over (`_fill_machine`).
`sizes` (aligned to the innermost dims) and `order` override the defaults
for every kernel they fit.

The tiler owns the legality of tiles: `legal` (the tiles can be built),
`fits` (they fit the device), and `candidate_tiles`, the points the
autotuner searches. A kernel whose smallest legal tiles (or the tiles it
carries from a dump) do not fit the device is an error naming the kernel,
its need and the capacity (`DoesNotFit`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, f32, i64
from xdsl.ir import BlockArgument, SSAValue
from xdsl.ir.affine import AffineExpr
from xdsl.passes import ModulePass

from strata.dialects.device import DeviceSpec, resolve_device
from strata.dialects.graph.dtypes import dtype_name, is_float
from strata.dialects.graph.flops import op_flops
from strata.dialects.graph.kernel import KernelOp, anchor_matmul, attention_parts, kernel_bounds, shares_weight
from strata.dialects.hardware._kernel import matrix_operand_dtype
from strata.dialects.hardware.cpu import core_peak, widenable_dequantize
from strata.dialects.loop import STREAMED_ROWS
from strata.dialects.vocabulary import ORDER_ATTR, TILE_ATTR, DoesNotFit, element_bytes
from strata.passes._regions import (
    NotTileable, Region, const, crop_of_whole, full, gathers_rows, operand_regions, region_key, shape_of,
)

MAX_TILE = 1024
"""The largest tile `candidate_tiles` offers along one dim (whole dims up to it)."""

# --------------------------------------------------------------------------- helpers


def _element_bytes(value: SSAValue) -> int:
    return element_bytes(value.type.element_type)


def footprint(kernel: KernelOp, tiles: tuple[int, ...]) -> int:
    """Bytes of the on-chip tiles one iteration reads and writes (`tile_bytes`, both parts)."""
    loads, output = tile_bytes(kernel, tiles)
    return loads + output


def tile_bytes(kernel: KernelOp, tiles: tuple[int, ...]) -> tuple[int, int]:
    """
    `(loads, output)`: bytes of the tiles one iteration loads from global
    memory (the `loop.load`s and `loop.gather`s `lower-to-loops` emits: its
    figures' `onchip_bytes`, tested equal) and of the output tile; raises
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
    return total, math.prod(tiles[:rank]) * _element_bytes(out)


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


def _closest_divisor(n: int, target: int) -> int:
    """
    The divisor of `n` nearest `target` by ratio (the larger on a tie): a
    reduction tile must divide its extent, and for an extent like 197 the
    largest divisor under 128 is 1, a tile 128x too small.
    """
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(math.log(d / target)), -d))


def hbm_traffic(kernel: KernelOp, tiles: tuple[int, ...]) -> int:
    """
    Bytes the loop nest of `tiles` loads from global memory: one
    iteration's loads (`tile_bytes`) times the iterations, re-reads included,
    as `lower-to-loops` emits them.
    """
    loads, _ = tile_bytes(kernel, tiles)
    return loads * math.prod(-(-b // t) for b, t in zip(kernel_bounds(kernel), tiles))


def _grow_for_reuse(kernel: KernelOp, tiles: list[int], bounds: tuple[int, ...], rank: int, budget: int,
                    device: DeviceSpec) -> None:
    """
    Double the output tile along the parallel dim that cuts the loop nest's
    global-memory traffic most, or take the dim whole (up to `MAX_TILE`),
    while the tiles stay legal and within `budget` bytes of tile memory,
    until no such step cuts it. The whole dim is a step of its own because
    doubling can stall on a plateau: 257 rows in tiles of 128 or 256 are
    read in as many passes (two or three) either way. A GEMM's
    re-reads of one operand fall as the tile along the other grows, so on a
    machine whose one program owns the whole chip's on-chip memory (a TPU's
    VMEM) the largest tiles that fit are the fastest.
    """
    traffic = hbm_traffic(kernel, tuple(tiles))
    while True:
        best = None
        for d in range(rank):
            steps = {min(bounds[d], 2 * tiles[d], max(MAX_TILE, tiles[d]))}
            if bounds[d] <= MAX_TILE:
                steps.add(bounds[d])
            for size in sorted(steps - {tiles[d]}):
                grown = tuple(size if e == d else t for e, t in enumerate(tiles))
                if not legal(kernel, grown) or device_need(kernel, grown, device) > budget:
                    continue
                moved = hbm_traffic(kernel, grown)
                if moved < traffic and (best is None or moved <= best[0]):
                    best = (moved, grown)
        if best is None:
            return
        traffic, grown = best
        tiles[:] = grown


def _tileable(kernel: KernelOp, bounds: tuple[int, ...], rank: int) -> list[bool]:
    """Which output dims can be cut (each tried alone, the others whole)."""
    flags = []
    for d in range(rank):
        trial = list(bounds)
        trial[d] = max(1, bounds[d] // 2) if bounds[d] > 1 else 1
        flags.append(bounds[d] > 1 and legal(kernel, tuple(trial)))
    return flags


def accumulator_bytes(kernel: KernelOp, tiles: tuple[int, ...]) -> int:
    """
    Bytes of the accumulators `lower-to-loops` keeps across the reduction
    loop (its `loop.fill`s): a GEMM's output tile in f32 (i32, or i64 for
    i64), attention's f32 output tile and its running max and sum per row.
    """
    kind, rank = kernel.kind.data, len(shape_of(kernel.outputs[0]))
    if len(tiles) <= rank:
        return 0
    out_tile = math.prod(tiles[:rank])
    if kind == "attention":
        return 4 * out_tile + 2 * 4 * math.prod(tiles[: rank - 1])
    anchor = anchor_matmul(kernel.body.block) if kind == "gemm" else None
    if anchor is None:
        return 0
    element = anchor.result.type.element_type
    return out_tile * (8 if getattr(element, "bitwidth", 32) == 64 and not is_float(element) else 4)


def device_need(kernel: KernelOp, tiles: tuple[int, ...], device: DeviceSpec) -> int:
    """
    Bytes of `device.tile_memory_bytes` the tiles take, counted as the
    lowering counts them: on a GPU the loaded tiles (shared memory; the
    accumulators live in registers, and the copy pipeline multi-buffers
    loads only as far as they fit), elsewhere the loaded tiles and the
    accumulators (VMEM, SRAM).
    """
    loads, _ = tile_bytes(kernel, tiles)
    return loads if device.target == "gpu" else loads + accumulator_bytes(kernel, tiles)


def register_need(kernel: KernelOp, tiles: tuple[int, ...], device: DeviceSpec) -> int:
    """Bytes of a GPU CTA's register file its accumulators take (0 elsewhere: they are in `device_need`)."""
    return accumulator_bytes(kernel, tiles) if device.target == "gpu" else 0


def pressure(kernel: KernelOp, tiles: tuple[int, ...], device: DeviceSpec) -> float:
    """The largest share of a capacity the tiles take: over 1 means they do not fit."""
    share = device_need(kernel, tiles, device) / device.tile_memory_bytes
    if device.target == "gpu":
        share = max(share, register_need(kernel, tiles, device) / device.register_file_bytes)
    return share


def fits(kernel: KernelOp, tiles: tuple[int, ...], device: DeviceSpec) -> bool:
    """Whether `kernel`'s tiles fit the memory tiles live in on `device` (and, on a GPU, its registers)."""
    return pressure(kernel, tiles, device) <= 1


def check_fits(kernel: KernelOp, tiles: tuple[int, ...], device: DeviceSpec, pinned: bool = False) -> None:
    """Raise `DoesNotFit` naming the kernel, its need and the capacity when its tiles do not fit `device`."""
    remedy = "smaller tiles (--schedule tile=...) or a device with more" if pinned else "a device with more"
    where = f"kernel '{kernel.kernel_name.data}' needs"
    need = device_need(kernel, tiles, device)
    if need > device.tile_memory_bytes:
        raise DoesNotFit(f"{where} {need} B of on-chip tiles with tile_sizes {list(tiles)}, over the"
                         f" {device.tile_memory_text()}; it needs {remedy}")
    registers = register_need(kernel, tiles, device)
    if device.target == "gpu" and registers > device.register_file_bytes:
        raise DoesNotFit(f"{where} {registers} B of accumulator registers with tile_sizes {list(tiles)}, over"
                         f" the register file (regs_per_sm = {device['regs_per_sm']} x 4 B) of {device.name};"
                         f" it needs {remedy}")


def _fill_rows(tiles: list[int], bounds: tuple[int, ...], cut: list[bool], rank: int, rows: int) -> None:
    """A shared-weight GEMM's row tile of `rows` spans batch dims too, innermost first (`shares_weight`)."""
    left = max(1, rows // tiles[rank - 2])
    for d in reversed(range(rank - 2)):
        if cut[d]:
            tiles[d] = min(bounds[d], left)
        left = max(1, left // tiles[d])


def cpu_gemm_tile(device: DeviceSpec) -> tuple[int, int, int]:
    """
    A CPU's f32 GEMM tile (rows, columns, k), from its caches, for the
    native code's blocking (Goto and van de Geijn's): each core computes a
    rows x columns accumulator tile over k-tiles; `b`'s k x columns tile is
    packed once into strips of nr = 2 vectors (`simd_lanes_f32` lanes)
    that the register-blocked micro-kernel sweeps with every block of
    rows of `a`.

    - k: the largest power of two whose packed strip (k x nr x 4 B) takes
      at most half the L1d (`l1d_bytes_per_core`), the other half holding
      the rows of `a` and the accumulators streaming past it;
    - rows x columns: of the powers of two whose working set, `a`'s rows x
      k, the packed k x columns of `b` and the f32 rows x columns
      accumulator, takes at most a quarter of the L2 (`l2_bytes_per_core`;
      the rest holds the row panel of `a` that the column tiles share, the
      next tile's operands streaming in and the finished output tile
      streaming out), the pair that does the most arithmetic per element
      it copies in, 2 x rows x columns / (rows + columns) flops per element
      of `a` and `b` (the tiles of `a` and `b` come from L3 or DRAM; the
      micro-kernel's work on them is in L1 and L2), the squarer on a tie.

    On this host (48 KiB L1d, 2 MiB L2): 256 x 256 x 128 (a 512 KiB
    working set; 128 x 256 x 128, 320 KiB, copies in 1.5 times as much per
    flop and measured 10-15% slower on the 1024^3 GEMM); on an EPYC 9654
    (32 KiB, 1 MiB): 128 x 128 x 128.
    """
    strip = 2 * device["simd_lanes_f32"] * 4
    k = 1 << max(0, int(math.log2(max(1, device["l1d_bytes_per_core"] // 2 // strip))))
    budget = device["l2_bytes_per_core"] // 4

    def working_set(rows: int, columns: int) -> int:
        return 4 * (rows * k + k * columns + rows * columns)

    sizes = [1 << i for i in range(16)]
    fitting = [(r, c) for r in sizes for c in sizes if working_set(r, c) <= budget]
    rows, columns = max(fitting, key=lambda t: (t[0] * t[1] / (t[0] + t[1]), -abs(t[0] - t[1]), t[1]))
    return rows, columns, k


FEW_ROWS = 8
"""A CPU GEMM whose rows (batch rows included) are at most 1/`FEW_ROWS` of `cpu_gemm_tile`'s takes
`cpu_few_rows_tile` (a decode step's GEMV)."""

FEW_ROWS_MIN_K = 16
"""The shortest k tile `cpu_few_rows_tile` takes within the L2 budget of an f32 tile."""

def streamed_b(kernel: KernelOp) -> bool:
    """
    Whether the cpu micro-kernel reads a GEMM's rank-2 `b` unpacked, where it lies, `a` of unit
    leading dims: a bf16 weight it widens in its registers (`cpu.widened_as_read`), an i4 or i8
    one dequantized to bf16 (`cpu.widenable_dequantize`), an f32 one multiplied by one row
    (`loop.single_row_rhs`); not a `b` copied and packed as an f32 tile.
    """
    anchor = anchor_matmul(kernel.body.block)
    if (anchor is None or len(anchor.rhs.type.get_shape()) != 2
            or any(d != 1 for d in anchor.lhs.type.get_shape()[:-2])):
        return False
    b = anchor.rhs
    if widenable_dequantize(b.owner):
        return True
    if not isinstance(b, BlockArgument):
        return False
    one_row = math.prod(anchor.lhs.type.get_shape()[:-1]) == 1
    return dtype_name(b.type.element_type) == "bf16" or b.type.element_type == f32 and one_row


def cpu_few_rows_tile(device: DeviceSpec, columns: int, depth: int, streamed: bool = False) -> tuple[int, int] | None:
    """
    The (columns, k) tile of a CPU GEMM with few rows (`FEW_ROWS`): `b`'s whole rows. Where the
    micro-kernel reads `b` unpacked (`streamed_b`: widened in its registers, or f32 against
    one row), k is `loop.STREAMED_ROWS` and the tile, one contiguous slab of `b`, is read where it lies
    (`loop.in_place_slab`), so only an f32 row of accumulators is stored (at most half the L2);
    else k is the largest power of two (at least `FEW_ROWS_MIN_K`) that keeps the f32 k x columns
    tile it copies in a quarter of the L2 (`cpu_gemm_tile`'s budget); else None (`cpu_gemm_tile`'s
    tile). With few rows each element of `b` feeds few FMAs, so no square tile pays for itself; what
    costs is fetching `b`, and a tile of whole rows is one contiguous block of it, where a tile of
    128 columns reads pieces a row apart. Measured (`strata measure`, 1 thread, the Zen 4 guest,
    2026-12-07), copying the tiles: `[1, 1024] @ w: bf16[1024, 4096]`, its 8 MiB in the L3, 4096 x
    16 tiles 351 us, 128 x 1024 652, 128 x 128 396 to 490; `[1, 4096] @ dequantize(w: i4[4096,
    11008])` from DRAM 13.9 ms in 128 x 128, 9.8 in 11008 x 32, 29.6 in 3712 x 16 (part of the
    rows); `[1, 4096] @ w: bf16[4096, 32000]` 33.8 ms in 128 x 128, 20.4 in 32000 x 8, 34.9 in
    32000 x 16. Read in place, from DRAM (3 processes' fastest of 5 to 10 runs, 2026-12-07 19:45
    UTC): `[1, 16384] @ w: bf16[16384, 4096]` (128 MiB) 6.6 to 11.4 ms at k = 1, 8.4 to 8.8 at 4,
    7.8 to 10.5 at 8, 11.7 to 17.1 at 16 and 15.1 at 32 (the copied 4096 x 16 tiles 11.9); the
    bf16[4096, 32000] weight 9.7 to 22 ms at k = 8, 13.4 to 16.9 at 4, 13.3 to 17.5 at 16, 18.2 at
    2 and 27.4 at 1 (its 125 KiB accumulator row read and written per k step); the int4
    [4096, 11008] 8.6 at k = 1, 8.1 at 4, 7.9 at 16 (9.7 copied).
    """
    budget = device["l2_bytes_per_core"] // 4
    if streamed:
        # Only the f32 accumulator row is stored; it keeps to half the L2, as `TilePass` bounds
        # every tile's footprint.
        k = _closest_divisor(depth, STREAMED_ROWS)
        return (columns, k) if 4 * columns <= 2 * budget and k <= STREAMED_ROWS else None
    if 4 * columns * FEW_ROWS_MIN_K <= budget:
        k = 1 << int(math.log2(max(1, budget // (4 * columns))))
        return columns, _closest_divisor(depth, max(1, k))
    return None


def _rows(tiles: list[int], bounds: tuple[int, ...], rank: int, kernel: KernelOp) -> int:
    """The rows a GEMM tile multiplies: its row tile, times its batch dims' where they share the weight."""
    rows = tiles[rank - 2]
    return rows * math.prod(tiles[:rank - 2]) if shares_weight(kernel) else rows


def gemm_tile(device: DeviceSpec) -> tuple[int, int, int]:
    """The device's preferred GEMM tile: its `preferred_gemm_tile`, or on a CPU without one, `cpu_gemm_tile`."""
    if device.target == "cpu" and "preferred_gemm_tile" not in device:
        return cpu_gemm_tile(device)
    return device.gemm_tile


PARALLEL_GRAIN = 10
"""A CPU's matrix kernel is cut for more threads only where each thread's share of its FLOPs, at one
core's FMA peak, takes this many times the fork and join of a parallel region
(`parallel_region_latency_s`): the MLP's first GEMM (B=64: 25.7 MFLOP, 110 us a thread on 2) is cut in
two, its 10-column head (0.33 MFLOP) is not."""


def default_tiles(kernel: KernelOp, device: DeviceSpec, threads: int = 1) -> tuple[int, ...]:
    """The device's default tile for `kernel` on `threads` threads (a CPU's; see the module docstring)."""
    bounds = kernel_bounds(kernel)
    rank = len(shape_of(kernel.outputs[0]))
    cut = _tileable(kernel, bounds, rank)
    tiles = list(bounds)
    kind = kernel.kind.data
    streamed = False
    if kind in ("gemm", "attention") and len(bounds) > rank:
        tm, tn, tk = gemm_tile(device)
        for d in range(rank - 2):
            tiles[d] = 1 if cut[d] else bounds[d]
        if kind == "gemm":
            tiles[rank - 2] = min(tm, bounds[rank - 2]) if cut[rank - 2] else bounds[rank - 2]
            tiles[rank - 1] = min(tn, bounds[rank - 1]) if cut[rank - 1] else bounds[rank - 1]
            tiles[rank] = _closest_divisor(bounds[rank], tk)
            if shares_weight(kernel):
                _fill_rows(tiles, bounds, cut, rank, tm)
            if device.target == "cpu" and _rows(tiles, bounds, rank, kernel) * FEW_ROWS <= tm:
                unpacked = streamed_b(kernel)
                few = cpu_few_rows_tile(device, bounds[rank - 1], bounds[rank], unpacked)
                if few is not None:
                    tiles[rank - 1], tiles[rank] = few
                    streamed = unpacked
        else:
            tiles[rank - 2] = min(tm, bounds[rank - 2]) if cut[rank - 2] else bounds[rank - 2]
            tiles[rank] = _closest_divisor(bounds[rank], tn)
    # Cuts that are legal alone may not be together (a reshape of a tile
    # cut in two dims): grow the innermost cut tile until the whole is legal.
    while not legal(kernel, tuple(tiles)):
        open_dims = [d for d in range(len(bounds)) if tiles[d] < bounds[d]]
        if not open_dims:
            break
        d = open_dims[-1]
        # The reduction tile must divide its extent: the next divisor (a
        # reshaped operand needs whole rows of its source or a piece of one).
        tiles[d] = (min(x for x in range(tiles[d] + 1, bounds[d] + 1) if bounds[d] % x == 0) if d >= rank
                    else min(bounds[d], tiles[d] * 2))
    budget = device.tile_memory_bytes // 2
    # A streamed `b` in slabs of whole rows is read where it lies (`loop.reads_in_place`): only its
    # f32 accumulator row is stored.
    in_place = streamed and tiles[rank] <= STREAMED_ROWS
    # Halve the outermost cuttable dim until the tiles fit.
    while not in_place and footprint(kernel, tuple(tiles)) > budget:
        candidates = [d for d in range(rank) if cut[d] and tiles[d] > 1]
        if not candidates:
            break
        d = candidates[0]
        halved = list(tiles)
        if kind == "attention" and d == rank - 1 and tiles[rank] > 16:
            # Cutting the head dim repeats `q @ k^T` and the softmax per
            # split; a smaller key block only adds loop steps (FlashAttention-3
            # keeps the whole head dim at 256 and shrinks its key block).
            halved[rank] = _closest_divisor(bounds[rank], tiles[rank] // 2)
            if halved[rank] < tiles[rank] and legal(kernel, tuple(halved)):
                tiles = halved
                continue
            halved = list(tiles)
        halved[d] = math.ceil(tiles[d] / 2)
        # A cut that does not shrink the tiles (an operand read whole, like
        # the table of a gather from a value computed in the kernel) would
        # only multiply the traffic: stop cutting there.
        if not legal(kernel, tuple(halved)) or footprint(kernel, tuple(halved)) > 0.75 * footprint(kernel, tuple(tiles)):
            cut[d] = False
            continue
        tiles = halved
    if kind == "gemm" and len(bounds) > rank and device.target == "tpu":
        # One TPU program owns the chip's VMEM (its arrays split the tile's
        # folds among themselves), so nothing is lost by growing its tiles.
        # A GPU's tiles are CTAs spread over the SMs: growing them would
        # idle SMs.
        _grow_for_reuse(kernel, tiles, bounds, rank, budget, device)
    if kind in ("gemm", "attention", "conv") and device.target == "gpu":
        # The instruction multiplies the matmul's operands, not the kernel's
        # first input (a weight-only GEMM's first input may be its i4 weight).
        mma = device.mma_shape(matrix_operand_dtype(kernel.body) or "f32") or (16, 8, 16)
        _fill_machine(kernel, tiles, bounds, rank, cut, device["sms"], mma[:2])
    if kind in ("gemm", "attention", "conv") and device.target == "cpu" and threads > 1:
        _fill_machine(kernel, tiles, bounds, rank, cut, _useful_threads(kernel, device, threads),
                      (1, 2 * device["simd_lanes_f32"]))
    return _shrink_to_fit(kernel, tuple(tiles), bounds, device)


def _useful_threads(kernel: KernelOp, device: DeviceSpec, threads: int) -> int:
    """The most of `threads` (and of the CPU's cores) whose shares of `kernel` each outlast `PARALLEL_GRAIN` forks."""
    fork_s = device.get("parallel_region_latency_s", 0.0)
    flops = sum(op_flops(op) for op in kernel.body.walk())
    useful = int(flops / (core_peak(device) * PARALLEL_GRAIN * fork_s)) if fork_s else threads
    return max(1, min(threads, device["cores"], useful))


def _fill_machine(kernel: KernelOp, tiles: list[int], bounds: tuple[int, ...], rank: int, cut: list[bool],
                  slots: int, floor: tuple[int, int]) -> None:
    """
    A GPU runs one tile per CTA: a grid of fewer CTAs than SMs idles the
    rest (ViT's 197-token attention in 128-query tiles is 24 CTAs on 132
    SMs); a CPU runs a kernel's parallel tiles on its threads. Halve the
    largest cuttable tile of a matrix kernel until there are `slots` tiles,
    keeping the rows and columns at least `floor` wide (a GPU's tensor-core
    instruction, `mma_shape`; a CPU's micro-kernel's two vectors of columns).
    A shared-weight GEMM's rows span its batch dims (`shares_weight`): they
    are one tile edge, cut outermost first.
    """
    edges = [[d] for d in range(rank)]
    if shares_weight(kernel):
        edges = [list(range(rank - 1)), [rank - 1]]
    floors = {rank - 2: floor[0], rank - 1: floor[1] if kernel.kind.data == "gemm" else 1}
    while math.prod(-(-b // t) for b, t in zip(bounds[:rank], tiles[:rank])) < slots:
        options = []
        for dims in edges:
            size = math.prod(tiles[d] for d in dims)
            open_dims = [d for d in dims if cut[d] and tiles[d] > 1]
            if open_dims and size > max(floors.get(d, 1) for d in dims):
                options.append((size, dims[-1], open_dims[0]))
        if not options:
            return
        d = max(options)[2]
        halved = list(tiles)
        halved[d] = max(floors.get(d, 1) if len(edges) == rank else 1, -(-tiles[d] // 2))
        # A cut that pads the edge tile (10 columns in tiles of 8) issues
        # work nobody asked for: the dim stays as it is.
        padded = -(-bounds[d] // halved[d]) * halved[d]
        if padded > -(-bounds[d] // tiles[d]) * tiles[d] or not legal(kernel, tuple(halved)):
            cut[d] = False
            continue
        tiles[:] = halved


def _shrink_to_fit(kernel: KernelOp, tiles: tuple[int, ...], bounds: tuple[int, ...], device: DeviceSpec) -> tuple[int, ...]:
    """
    Tiles still over the device's capacity (a device with little on-chip memory): halve,
    among all dims the reduction included, the one whose cut shrinks the
    footprint most, until they fit or nothing shrinks them (then `tile`
    reports the kernel does not fit).
    """
    rank = len(shape_of(kernel.outputs[0]))
    need = pressure(kernel, tiles, device)
    while need > 1:
        best = None
        for d in range(len(bounds)):
            if tiles[d] == 1:
                continue
            halved = list(tiles)
            halved[d] = math.ceil(tiles[d] / 2) if d < rank else _largest_divisor(bounds[d], tiles[d] // 2)
            halved = tuple(halved)
            if legal(kernel, halved) and (smaller := pressure(kernel, halved, device)) < need:
                if best is None or smaller < best[0]:
                    best = (smaller, halved)
        if best is None:
            break
        need, tiles = best
    return tiles


def apply_sizes(
    kernel: KernelOp, base: tuple[int, ...], sizes: tuple[int, ...], device: DeviceSpec
) -> tuple[int, ...]:
    """`sizes` over the innermost dims of `base`, clamped; illegal or unfitting ones ignored."""
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
    return candidate if legal(kernel, candidate) and fits(kernel, candidate, device) else base


def _powers(bound: int, low: int = 8) -> list[int]:
    values = [p for p in (2**i for i in range(3, 11)) if low <= p < bound]
    return sorted(set(values + ([bound] if bound <= MAX_TILE else [])) or {bound})


def _spatial(bound: int, low: int = 4) -> list[int]:
    """An image dim's tiles: powers of two and the divisors (no ragged edge tile), from `low` up."""
    powers = [2**i for i in range(2, 11) if low <= 2**i < bound]
    divisors = [d for d in range(low, bound) if bound % d == 0]
    return sorted(set(powers + divisors) | {min(bound, MAX_TILE)})


def dim_candidates(kernel: KernelOp) -> list[list[int]]:
    """
    Tile candidates per dim: whole or 1 for batch dims (also powers of two
    for the batch dims of a shared-weight GEMM, whose rows span them),
    powers of two for the rest; a conv's output channels are its GEMM's N (powers of two) and
    its image rows and columns also take their divisors, so a tile can
    cover the image exactly (56 = 4 x 14, 8 x 7); the reduction tile divides
    its extent.
    """
    bounds = kernel_bounds(kernel)
    rank = len(shape_of(kernel.outputs[0]))
    conv = kernel.kind.data == "conv"
    shared = shares_weight(kernel)
    candidates = []
    for d, bound in enumerate(bounds):
        if d >= rank:
            candidates.append(sorted({p for p in _powers(bound, 16) if bound % p == 0} | {bound}))
        elif conv and d >= 2:
            candidates.append(_spatial(bound))
        elif d < rank - 2 and shared:
            candidates.append(sorted({1, *_powers(bound)}))
        elif d < rank - 2 and not (conv and d == 1):
            candidates.append(sorted({1, bound}))
        else:
            candidates.append(_powers(bound))
    return candidates


def candidate_tiles(kernel: KernelOp, device: DeviceSpec) -> list[tuple[int, ...]]:
    """Every legal tile of `kernel` from `dim_candidates` that fits `device`: the tuner's tile space."""
    return [
        tiles for tiles in itertools.product(*dim_candidates(kernel))
        if legal(kernel, tiles) and fits(kernel, tiles, device)
    ]


def loop_orders(kernel: KernelOp) -> list[tuple[int, ...]]:
    """
    The loop orders the tuner tries: the natural one, the two innermost dims
    swapped, and for a shared-weight GEMM its columns outermost (every row
    of every batch element inside them, as `default_order` may choose).
    """
    rank = len(shape_of(kernel.outputs[0]))
    orders = [tuple(range(rank))]
    if rank >= 2:
        orders.append(tuple(range(rank - 2)) + (rank - 1, rank - 2))
    if rank >= 3 and shares_weight(kernel):
        orders.append((rank - 1, *range(rank - 1)))
    return orders


def default_order(kernel: KernelOp, tiles: tuple[int, ...], device: DeviceSpec) -> tuple[int, ...]:
    """
    The natural loop order, except for a GPU GEMM with more column tiles than
    row tiles, which walks its rows innermost: consecutive CTAs (a wave) then share a weight panel and sweep every row of it (of every
    batch element, for a shared weight), so a wide weight (an LM head)
    streams once instead of once per row tile. This is
    CUTLASS 3's rasterisation heuristic (sm90 tile scheduler: along M when
    tiles_n > tiles_m).
    """
    rank = len(shape_of(kernel.outputs[0]))
    natural = tuple(range(rank))
    if kernel.kind.data != "gemm" or rank < 2 or device.target != "gpu":
        return natural
    bounds = kernel_bounds(kernel)
    rows = list(range(rank - 1)) if shares_weight(kernel) else [rank - 2]
    row_tiles = math.prod(-(-bounds[d] // tiles[d]) for d in rows)
    column_tiles = -(-bounds[rank - 1] // tiles[rank - 1])
    if column_tiles <= row_tiles:
        return natural
    return tuple(d for d in natural if d not in rows and d != rank - 1) + (rank - 1, *rows)


def _ints(values) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class TilePass(ModulePass):
    """Write `tile_sizes` and `loop_order` on every kernel."""

    name = "tile"

    target: str = ""
    """`gpu`, `tpu` or `lpu`: must match the module's device (empty: the device `fuse` recorded)."""
    sizes: tuple[int, ...] = ()
    """Tile sizes of the innermost dims (0 = whole dim) for every kernel; empty = defaults."""
    order: tuple[int, ...] = ()
    """Loop order of the parallel dims, outermost first, for kernels of that rank."""
    keep: bool = True
    """Keep tiles a kernel already carries (from a dump or the tuner)."""
    threads: int = 1
    """cpu: the threads the native code runs each kernel's parallel tiles on (`--threads N`)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        if self.threads < 1:
            raise ValueError(f"tile: threads must be at least 1, got {self.threads}")
        device = resolve_device(op, self.target)
        for kernel in op.walk():
            if not isinstance(kernel, KernelOp):
                continue
            if self.keep and TILE_ATTR in kernel.attributes and not self.sizes:
                check_fits(kernel, tuple(kernel.attributes[TILE_ATTR].get_values()), device, pinned=True)
                continue
            tiles = apply_sizes(kernel, default_tiles(kernel, device, self.threads), self.sizes, device)
            check_fits(kernel, tiles, device, pinned=bool(self.sizes))
            rank = len(shape_of(kernel.outputs[0]))
            order = self.order if sorted(self.order) == list(range(rank)) else default_order(kernel, tiles, device)
            kernel.attributes[TILE_ATTR] = _ints(tiles)
            kernel.attributes[ORDER_ATTR] = _ints(order)
