"""
Shape rules of the graph operations, as pure functions on tuples of ints.

Both the frontend (to compute result types and report errors at the model
source) and the op verifiers (to check parsed IR) use these functions, so a
rule is written once. Each function raises `ShapeError` with a message that
names the shapes involved; it never returns an invalid shape.
"""

from __future__ import annotations

from collections.abc import Sequence

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A shape rule was violated; the message names both shapes."""


def fmt(shape: Sequence[int]) -> str:
    """Print a shape as the model language writes it: `[2, 3]`."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def normalize_axis(axis: int, rank: int) -> int:
    """Turn a possibly negative axis into one in `[0, rank)`."""
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    """Normalise a list of axes, rejecting repeats."""
    result = tuple(normalize_axis(a, rank) for a in axes)
    if len(set(result)) != len(result):
        raise ShapeError(f"axis list {list(axes)} repeats an axis")
    return result


def broadcast(a: Shape, b: Shape) -> Shape:
    """NumPy broadcasting of two shapes."""
    rank = max(len(a), len(b))
    pa = (1,) * (rank - len(a)) + tuple(a)
    pb = (1,) * (rank - len(b)) + tuple(b)
    out = []
    for da, db in zip(pa, pb):
        if da != db and 1 not in (da, db):
            raise ShapeError(f"shapes {fmt(a)} and {fmt(b)} do not broadcast")
        out.append(max(da, db) if 0 not in (da, db) else 0)
    return tuple(out)


def matmul(a: Shape, b: Shape) -> Shape:
    """`[..., M, K] @ [..., K, N] -> [..., M, N]`, batch dims broadcast."""
    if len(a) < 2 or len(b) < 2:
        raise ShapeError(
            f"matmul needs operands of rank >= 2, got {fmt(a)} and {fmt(b)}"
        )
    if a[-1] != b[-2]:
        raise ShapeError(
            f"matmul contraction dims differ: {fmt(a)} @ {fmt(b)} ({a[-1]} vs {b[-2]})"
        )
    try:
        batch = broadcast(a[:-2], b[:-2])
    except ShapeError:
        raise ShapeError(
            f"matmul batch dims of {fmt(a)} and {fmt(b)} do not broadcast"
        ) from None
    return batch + (a[-2], b[-1])


def reduce(shape: Shape, axes: Sequence[int], keepdims: bool) -> Shape:
    """Shape after reducing over normalised `axes`."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def norm_params(shape: Shape, axis: int) -> Shape:
    """Shape that `gamma`/`beta` of a normalisation over `axis..` must have."""
    return tuple(shape[axis:])


def transpose(shape: Shape, perm: Sequence[int]) -> Shape:
    """Permuted shape; `perm` must be a permutation of the axes."""
    if sorted(perm) != list(range(len(shape))):
        raise ShapeError(
            f"perm {list(perm)} is not a permutation of the {len(shape)} axes of {fmt(shape)}"
        )
    return tuple(shape[p] for p in perm)


def reshape(shape: Shape, target: Sequence[int]) -> Shape:
    """Resolve at most one `-1` in `target`; element count must be preserved."""
    if sum(1 for d in target if d == -1) > 1:
        raise ShapeError(f"reshape target {fmt(target)} has more than one -1")
    if any(d < -1 for d in target):
        raise ShapeError(f"reshape target {fmt(target)} has a negative dimension")
    total = _product(shape)
    known = _product(d for d in target if d != -1)
    if -1 in target:
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape {fmt(shape)} into {fmt(target)}")
        return tuple(total // known if d == -1 else d for d in target)
    if known != total:
        raise ShapeError(
            f"cannot reshape {fmt(shape)} ({total} elements) into {fmt(target)} ({known} elements)"
        )
    return tuple(target)


def concat(shapes: Sequence[Shape], axis: int) -> Shape:
    """Join shapes that agree everywhere but along `axis`."""
    if not shapes:
        raise ShapeError("concat needs at least one operand")
    first = shapes[0]
    for other in shapes[1:]:
        if len(other) != len(first) or any(
            x != y for i, (x, y) in enumerate(zip(first, other)) if i != axis
        ):
            raise ShapeError(
                f"concat operands {fmt(first)} and {fmt(other)} differ outside axis {axis}"
            )
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1 :]


def slice_(shape: Shape, axis: int, start: int, end: int) -> Shape:
    """Shape with `end - start` along `axis`; needs `0 <= start < end <= dim`."""
    if not 0 <= start < end <= shape[axis]:
        raise ShapeError(
            f"slice needs 0 <= start < end <= {shape[axis]} on axis {axis} of {fmt(shape)},"
            f" got start={start}, end={end}"
        )
    return shape[:axis] + (end - start,) + shape[axis + 1 :]


def split(shape: Shape, parts: int, axis: int) -> Shape:
    """Shape of each of the `parts` results."""
    if parts < 1:
        raise ShapeError(f"split needs parts >= 1, got {parts}")
    if shape[axis] % parts:
        raise ShapeError(
            f"dimension {shape[axis]} (axis {axis} of {fmt(shape)}) is not divisible by parts={parts}"
        )
    return shape[:axis] + (shape[axis] // parts,) + shape[axis + 1 :]


def _window(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + pad - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(
    x: Shape,
    w: Shape,
    strides: Sequence[int],
    pads: Sequence[int],
    dilations: Sequence[int],
    groups: int,
) -> Shape:
    """
    ONNX Conv output shape: `x [N, C, H, W]`, `w [O, C/groups, KH, KW]`.

    `pads` is `[top, left, bottom, right]`.
    """
    if len(x) != 4:
        raise ShapeError(f"conv2d input must be [N, C, H, W], got {fmt(x)}")
    if len(w) != 4:
        raise ShapeError(f"conv2d weight must be [O, C/groups, KH, KW], got {fmt(w)}")
    _check_window_attrs(strides, pads, dilations)
    n, c, h, wd = x
    o, cg, kh, kw = w
    if groups < 1 or c % groups or o % groups:
        raise ShapeError(
            f"groups={groups} must divide input channels {c} and output channels {o}"
        )
    if cg != c // groups:
        raise ShapeError(
            f"conv2d weight {fmt(w)} needs {c // groups} input channels (C/groups) for input {fmt(x)}"
        )
    oh = _window(h, kh, strides[0], pads[0] + pads[2], dilations[0])
    ow = _window(wd, kw, strides[1], pads[1] + pads[3], dilations[1])
    if oh < 1 or ow < 1:
        raise ShapeError(
            f"conv2d kernel {kh}x{kw} does not fit the padded input {fmt(x)}"
        )
    return (n, o, oh, ow)


def pool2d(x: Shape, kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int]) -> Shape:
    """ONNX MaxPool/AveragePool output shape (floor mode)."""
    if len(x) != 4:
        raise ShapeError(f"pooling input must be [N, C, H, W], got {fmt(x)}")
    if any(k < 1 for k in kernel):
        raise ShapeError(f"pooling kernel must be positive, got {list(kernel)}")
    _check_window_attrs(strides, pads, (1, 1))
    if pads[0] >= kernel[0] or pads[2] >= kernel[0] or pads[1] >= kernel[1] or pads[3] >= kernel[1]:
        raise ShapeError(f"pooling padding {list(pads)} must be smaller than the kernel {list(kernel)}")
    n, c, h, w = x
    oh = _window(h, kernel[0], strides[0], pads[0] + pads[2], 1)
    ow = _window(w, kernel[1], strides[1], pads[1] + pads[3], 1)
    if oh < 1 or ow < 1:
        raise ShapeError(f"pooling kernel {list(kernel)} does not fit the input {fmt(x)}")
    return (n, c, oh, ow)


def _check_window_attrs(strides: Sequence[int], pads: Sequence[int], dilations: Sequence[int]) -> None:
    if any(s < 1 for s in strides):
        raise ShapeError(f"stride must be positive, got {list(strides)}")
    if any(p < 0 for p in pads):
        raise ShapeError(f"padding must not be negative, got {list(pads)}")
    if any(d < 1 for d in dilations):
        raise ShapeError(f"dilation must be positive, got {list(dilations)}")


def gather(table: Shape, ids: Shape) -> Shape:
    """Embedding lookup: `ids.shape + table.shape[1:]`."""
    if len(table) < 1:
        raise ShapeError("gather table must have rank >= 1")
    return tuple(ids) + tuple(table[1:])


def causal_mask(shape: Shape) -> Shape:
    """`causal_mask` keeps the shape; it needs rank >= 2."""
    if len(shape) < 2:
        raise ShapeError(f"causal_mask needs rank >= 2, got {fmt(shape)}")
    return shape


def sharded(shape: Shape, dim: int, devices: int, groups: int = 1) -> Shape:
    """One device's block of `shape` split over `devices` along `dim` (each of `groups` parts evenly)."""
    dim = normalize_axis(dim, len(shape))
    if devices < 1 or groups < 1 or shape[dim] % (devices * groups):
        raise ShapeError(
            f"dim {dim} of {fmt(shape)} does not split evenly into {groups} part(s) over {devices} devices"
        )
    return tuple(s // devices if d == dim else s for d, s in enumerate(shape))


def gathered(shape: Shape, dim: int, devices: int) -> Shape:
    """The whole of `shape`, one device's block of a split along `dim`, from `devices` devices."""
    dim = normalize_axis(dim, len(shape))
    return tuple(s * devices if d == dim else s for d, s in enumerate(shape))


def scattered(shape: Shape, dim: int, devices: int) -> Shape:
    """One device's block of `shape` split along `dim` over `devices` devices (`gathered`'s inverse)."""
    dim = normalize_axis(dim, len(shape))
    return tuple(s // devices if d == dim else s for d, s in enumerate(shape))


def _product(dims) -> int:
    result = 1
    for d in dims:
        result *= d
    return result


def num_elements(shape: Sequence[int]) -> int:
    """Number of elements of a tensor of this shape."""
    return _product(shape)
