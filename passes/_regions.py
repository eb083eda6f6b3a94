"""
Tile regions: which part of each operand a graph op needs for a tile of its result.

A region is one `(offset, size)` per dim: `offset` an affine expression of
the loop induction variables (element offsets), `size` a static tile size.
`operand_regions(op, region)` is the bounds inference of one op (MLIR's
TilingInterface, Halide's bounds inference); it raises `NotTileable` where a
tile of the result cannot be computed from tiles of the operands (a
`concat` cut along its axis, a `reshape` that would need a strided tile).
`window_pad` says which value the load of a padded window must give.
Pure: no IR is built here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from xdsl.ir import BlockArgument, Operation, SSAValue
from xdsl.ir.affine import AffineBinaryOpExpr, AffineBinaryOpKind, AffineConstantExpr, AffineDimExpr, AffineExpr

from strata.dialects.graph import ops as g
from strata.dialects.vocabulary import IllegalSchedule

Region = tuple[tuple[AffineExpr, int], ...]


class NotTileable(IllegalSchedule):
    """A result tile that no operand tiles can produce."""


def const(value: int) -> AffineExpr:
    return AffineExpr.constant(value)


def shape_of(value: SSAValue) -> tuple[int, ...]:
    return tuple(value.type.get_shape())


def full(shape: Sequence[int]) -> Region:
    return tuple((const(0), d) for d in shape)


def is_full(dim: tuple[AffineExpr, int], extent: int) -> bool:
    offset, size = dim
    return isinstance(offset, AffineConstantExpr) and offset.value == 0 and size == extent


def region_key(region: Region) -> tuple:
    return tuple((str(o), s) for o, s in region)


def _broadcast(operand: SSAValue, region: Region, result_rank: int) -> Region:
    shape = shape_of(operand)
    lead = result_rank - len(shape)
    return tuple(
        (const(0), 1) if d == 1 else region[lead + j] for j, d in enumerate(shape)
    )


def _require_full(region: Region, shape: Sequence[int], axes: Sequence[int]) -> None:
    for axis in axes:
        if not is_full(region[axis], shape[axis]):
            raise NotTileable(f"axis {axis} must stay whole")


def _matmul(op: g.MatmulOp, region: Region, k_region: tuple[AffineExpr, int] | None) -> list[Region]:
    lhs, rhs = shape_of(op.lhs), shape_of(op.rhs)
    rank = len(region)
    k = k_region or (const(0), lhs[-1])
    batch = region[:-2]

    def side(shape, last_two):
        lead = rank - 2 - (len(shape) - 2)
        dims = [(const(0), 1) if d == 1 else batch[lead + j] for j, d in enumerate(shape[:-2])]
        return tuple(dims) + last_two

    return [side(lhs, (region[-2], k)), side(rhs, (k, region[-1]))]


def _window(region: Region, kernel, strides, dilations, pads, in_shape) -> list[tuple[AffineExpr, int]]:
    """Input rows/cols an output tile of a conv or pool reads (pads included)."""
    spatial = []
    for axis in range(2):
        offset, size = region[2 + axis]
        start = offset * strides[axis] - pads[axis]
        extent = (size - 1) * strides[axis] + (kernel[axis] - 1) * dilations[axis] + 1
        spatial.append((start, extent))
    return spatial


def _reshape(op: g.ReshapeOp, region: Region) -> list[Region]:
    """
    Reshape tiles that stay contiguous. With the dims after the last tiled
    one whole and the dims before it matching the source's leading dims,
    the tiled dim is a range of whole rows of the source: a split
    (`[S, H*D] -> [S, H, D]`, tile over H) or a merge of whole source dims
    (`[S, H, D] -> [S, H*D]`, tile a multiple of D), or a piece of one row
    of a merge (a divisor of D, `_piece_of_a_row`). Dims of size 1 before
    the tiled one may differ: a decode step's `[1, H, 1, D] -> [1, 1, H*D]`
    tiled along H*D is a merge of `[H, 1, D]`.
    """
    src, dst = shape_of(op.input), shape_of(op.result)
    tiled = [i for i, (dim, extent) in enumerate(zip(region, dst)) if not is_full(dim, extent)]
    if not tiled:
        return [full(src)]
    last = tiled[-1]
    if src[:last] == dst[:last]:
        return [_reshape_region(src, dst, region, last)]
    # The common leading dims, then only dims of size 1 on either side up to the tiled one.
    common = next(i for i in range(last) if i >= len(src) or src[i] != dst[i])
    if common >= len(src) - 1:
        raise NotTileable("reshape changes the dims before a tiled one")
    unit = common
    while unit < len(src) - 1 and src[unit] == 1:
        unit += 1
    if any(d != 1 for d in dst[common:last]):
        raise NotTileable("reshape changes the dims before a tiled one")
    inner = _reshape_region(src[unit:], dst[last:], region[last:], 0)
    return [tuple(region[:common]) + full(src[common:unit]) + inner]


def _reshape_region(src: Sequence[int], dst: Sequence[int], region: Region, last: int) -> Region:
    """The source region of `region` of a reshape `src -> dst` whose dims before `last` match and after it are whole."""
    offset, size = region[last]
    inner = math.prod(dst[last + 1 :])
    inner_src = math.prod(src[last + 1 :])
    lead = tuple(region[:last])
    if inner % inner_src == 0:
        f = inner // inner_src
        return lead + ((offset * f, size * f),) + full(src[last + 1 :])
    # Merge: dst[last] covers src[last] and whole dims after it.
    group = last + 1
    while group < len(src) and math.prod(src[group:]) > inner:
        group += 1
    f = math.prod(src[last + 1 : group])
    if math.prod(src[group:]) != inner:
        raise NotTileable("reshape merges dims into a tile that is not whole rows")
    if size % f == 0 and _is_step_multiple(offset, f):
        return lead + ((offset // f, size // f),) + full(src[last + 1 :])
    return lead + _piece_of_a_row(src[last:group], offset, size) + full(src[group:])


def _piece_of_a_row(merged: Sequence[int], offset: AffineExpr, size: int) -> Region:
    """
    The source region of a tile of `size` at `offset` along a dim that merges the source dims
    `merged`, where the tile lies within one row of the innermost of them (`size` divides it and
    `offset` steps by `size`): a decode step's `[1, H, 1, D] -> [1, H*D]` cut in k tiles of 8, a
    piece of one head. Each outer merged dim is the one index the offset falls in.
    """
    if merged[-1] % size or not _is_step_multiple(offset, size):
        raise NotTileable("reshape merges dims into a tile that is neither whole rows nor a piece of one")
    region = []
    for j, extent in enumerate(merged[:-1]):
        stride = math.prod(merged[j + 1 :])
        index = offset // stride if j == 0 else (offset // stride) % extent
        region.append((const(0) if extent == 1 else index, 1))
    return tuple(region) + ((offset % merged[-1], size),)


def _is_step_multiple(offset: AffineExpr, f: int) -> bool:
    """
    An offset that is a multiple of `f`: a bare induction variable (it steps
    by the tile size, a multiple of `f`), a constant multiple of `f` (a slice
    start), or a sum of those.
    """
    if isinstance(offset, AffineBinaryOpExpr) and offset.kind == AffineBinaryOpKind.Add:
        return _is_step_multiple(offset.lhs, f) and _is_step_multiple(offset.rhs, f)
    return isinstance(offset, AffineDimExpr) or (isinstance(offset, AffineConstantExpr) and offset.value % f == 0)


def crop_of_whole(op: Operation, region: Region) -> bool:
    """
    Whether `region` of a reshape is a window no operand tile gives (it cuts
    across the rows of a merge, say `slice(reshape(x[4, 2], [8]), 1, 3)`)
    at constant offsets: then the whole reshape is computed and the window
    cropped from it with static slices.
    """
    if not isinstance(op, g.ReshapeOp) or not all(isinstance(o, AffineConstantExpr) for o, _ in region):
        return False
    try:
        _reshape(op, region)
    except NotTileable:
        return True
    return False


def operand_regions(op: Operation, region: Region, k_region=None) -> list[Region]:
    """The region of each operand needed for `region` of `op`'s (single) result."""
    rank = len(region)
    if isinstance(op, (g.BinaryElementwiseOp, g.UnaryElementwiseOp, g.CastOp, g.CausalMaskOp, g.QuantizationOp)):
        return [_broadcast(v, region, rank) for v in op.operands]
    if isinstance(op, g.ConstantOp):
        return []
    if isinstance(op, g.MatmulOp):
        return _matmul(op, region, k_region)
    if isinstance(op, g.TransposeOp):
        perm = op.perm.get_values()
        inverse = [0] * len(perm)
        for i, p in enumerate(perm):
            inverse[p] = i
        return [tuple(region[inverse[j]] for j in range(len(perm)))]
    if isinstance(op, g.SliceOp):
        axis, start = op.axis.value.data, op.start.value.data
        offset, size = region[axis]
        return [tuple((offset + start, size) if i == axis else r for i, r in enumerate(region))]
    if isinstance(op, g.ReshapeOp):
        return _reshape(op, region)
    if isinstance(op, (g.SoftmaxOp, g.LogSoftmaxOp)):
        _require_full(region, shape_of(op.result), [op.axis.value.data])
        return [region]
    if isinstance(op, (g.LayerNormOp, g.RmsNormOp)):
        axis = op.axis.value.data
        _require_full(region, shape_of(op.result), range(axis, rank))
        return [region] + [_broadcast(v, region, rank) for v in op.operands[1:]]
    if isinstance(op, g.ReductionOp):
        src = shape_of(op.input)
        axes = set(op.axes.get_values())
        keep = op.keepdims is not None
        it = iter(region)
        out = []
        for axis, extent in enumerate(src):
            if axis in axes:
                out.append((const(0), extent))
                if keep:
                    next(it)
            else:
                out.append(next(it))
        return [tuple(out)]
    if isinstance(op, g.ConcatOp):
        axis = op.axis.value.data
        _require_full(region, shape_of(op.result), [axis])
        return [tuple((const(0), shape_of(v)[axis]) if i == axis else r for i, r in enumerate(region)) for v in op.operands]
    if isinstance(op, g.GatherOp):
        table, ids = shape_of(op.table), shape_of(op.ids)
        return [((const(0), table[0]),) + tuple(region[len(ids) :]), tuple(region[: len(ids)])]
    if isinstance(op, g.Conv2DOp):
        x, w = shape_of(op.input), shape_of(op.weight)
        groups = op.groups.value.data
        if groups != 1:
            _require_full(region, shape_of(op.result), [1])
        pads = op.pads.get_values()
        spatial = _window(region, w[2:], op.strides.get_values(), op.dilations.get_values(), pads[:2], x)
        channels = (const(0), x[1])
        regions = [(region[0], channels, *spatial), (region[1], (const(0), w[1]), (const(0), w[2]), (const(0), w[3]))]
        if op.bias is not None:
            regions.append((region[1],))
        return regions
    if isinstance(op, g.Pool2DOp):
        pads = op.pads.get_values()
        if isinstance(op, g.AvgPool2DOp) and any(pads):
            # The divisor counts only real elements: the op needs the true
            # border, so it reads the whole unpadded input and pads itself.
            _require_full(region, shape_of(op.result), [2, 3])
            x = shape_of(op.input)
            return [(region[0], region[1], (const(0), x[2]), (const(0), x[3]))]
        kernel = op.kernel.get_values()
        spatial = _window(region, kernel, op.strides.get_values(), (1, 1), pads[:2], shape_of(op.input))
        return [(region[0], region[1], *spatial)]
    if isinstance(op, g.GlobalAvgPoolOp):
        x = shape_of(op.input)
        return [(region[0], region[1], (const(0), x[2]), (const(0), x[3]))]
    raise NotTileable(f"no tiling rule for '{op.name}'")


def gathers_rows(op: Operation) -> bool:
    """A gather from a kernel argument: `lower-to-loops` reads only the rows its
    ids select (`loop.gather`), so its on-chip tile is the result's, not the table."""
    return isinstance(op, g.GatherOp) and isinstance(op.table, BlockArgument)


def window_pad(op: Operation) -> float | None:
    """The value padded windows read: 0 for convs and average pools, -inf for max pools."""
    if isinstance(op, g.MaxPool2DOp):
        return -math.inf
    if isinstance(op, (g.Conv2DOp, g.AvgPool2DOp)):
        return 0.0
    return None
