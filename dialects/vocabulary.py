"""
The words passes, cost models and the tuner share, defined once.

A leaf module (it imports only xDSL): the targets, the systolic dataflows,
the names of the schedule attributes that decisions write and lowerings
read, the exception a pass raises for a schedule that cannot be built (the
tuner's "illegal point"), element sizes, and what "the dtype of a model"
means when a report picks one peak to measure utilisation against.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from xdsl.ir import Attribute, Operation

TARGETS = ("gpu", "tpu", "lpu", "cpu")
"""The machine kinds strata compiles for; a device spec names one."""

ALL_TARGETS = ("gpu", "tpu", "lpu")
"""What `--target all` compares side by side: the accelerators. The `cpu` target (the
host, whose estimates `strata measure` checks against runs) is asked for by name."""

DATAFLOWS = ("ws", "os", "is")
"""Systolic dataflows: weight-, output- or input-stationary (the default first)."""

# Schedule attributes: written by the decision passes (tile, place-chips) or
# the tuner on `graph.kernel`/`loop.kernel`, verified by those ops, read by
# the lowerings.
TILE_ATTR = "tile_sizes"
"""`array<i64: ...>`: one tile size per dim of the kernel's iteration space."""
ORDER_ATTR = "loop_order"
"""`array<i64: ...>`: the parallel dims, outermost first (a permutation)."""
DATAFLOW_ATTR = "dataflow"
"""`"ws" | "os" | "is"`: the systolic dataflow of one kernel."""
CHIP_ATTR = "chip"
"""`i64`: the first LPU chip a kernel runs on (written by `place-chips`)."""
SHARDS_ATTR = "shards"
"""`i64`: how many consecutive chips a kernel's weights are sharded over."""
CHIPS_ATTR = "strata.chips"
"""Module `i64`: the chips (devices) the program uses, pinned by a user or written by `place-chips`."""

# Facts about the model the frontend records on the module, for reports.
MODEL_FLOPS_ATTR = "strata.model_flops"
"""Module `i64`: the graph's FLOPs (`dialects/graph/flops.py`), before any padding to tiles."""
BATCH_ATTR = "strata.batch"
"""Module `i64`: the batch, when every input's leading dim is the same `let` constant named like one."""
BATCH_NAMES = ("B", "batch", "BATCH", "batch_size")
"""`let` constants taken to be the batch when they are every input's leading dim."""

# The device mesh a sharded program runs on (written by `shard`): every
# pipeline stage (`chip`) is a group of `dp x tp` devices running one SPMD
# program on their local shards; device (stage, d, t) is number
# `stage * dp * tp + d * tp + t`.
MESH_AXES = ("dp", "tp")
"""Data parallelism (the batch split over replicas), tensor parallelism (weights split, Megatron-style)."""
MESH_ATTRS = {"dp": "strata.dp", "tp": "strata.tp"}
"""Module `i64` per mesh axis: the devices along it (absent: 1)."""


def mesh_sizes(module: Operation) -> dict[str, int]:
    """The devices along each mesh axis a module records (`MESH_ATTRS`; 1 where it is not split)."""
    sizes = {}
    for axis in MESH_AXES:
        attr = module.attributes.get(MESH_ATTRS[axis])
        sizes[axis] = attr.value.data if attr is not None else 1
    return sizes

SPLIT_ATTR = "strata.split"
"""
Argument attribute of a sharded program: `[axis, dim, groups]` triples, one
per mesh axis the argument is split over. The argument holds, along `dim`,
the device's block of each of `groups` equal parts (`groups` > 1 when the
dim is later split into that many parts, e.g. a fused QKV weight), so each
part is split evenly too.
"""


class IllegalSchedule(ValueError):
    """
    A schedule that cannot be built for the kernel or the device: tiles that
    do not divide or do not fit, a dataflow the target lacks. The tuner
    treats exactly this as an infeasible point; any other exception is a bug.
    """


class DoesNotFit(IllegalSchedule):
    """A kernel needs more of a memory than the device has."""


def element_bytes(element_type: Attribute) -> int | float:
    """
    Bytes of one element: its bit width / 8, so `i4` (stored two to a byte)
    counts 0.5; a whole number of bytes is an `int`; types without a width
    count as 4.
    """
    bits = _stored_bits(element_type)
    return bits // 8 if bits % 8 == 0 else bits / 8


def _stored_bits(element_type: Attribute) -> int:
    """Bits one element takes in memory: `i4` packs two to a byte, other sub-byte types take a byte."""
    bits = getattr(element_type, "bitwidth", 32)
    return bits if bits % 8 == 0 or bits == 4 else 8 * math.ceil(bits / 8)


def type_bytes(shaped_type: Attribute) -> int:
    """Bytes of a tensor or memref type: its elements at `element_bytes`, rounded up to a whole byte."""
    count = math.prod(shaped_type.get_shape())
    return math.ceil(count * _stored_bits(shaped_type.element_type) / 8)


def dtype_of(element_type: Attribute) -> str:
    """The element type as printed (`f32`, `bf16`, `i8`): the key of peaks per dtype."""
    return str(element_type)


def dominant_dtype(matrix_work: Iterable[tuple[str, int]], default: str) -> str:
    """
    The operand dtype carrying the most matrix FLOPs of a model, from
    `(dtype, matrix_flops)` pairs, one per kernel (ties: the first by name;
    `default` when no kernel multiplies matrices). Reports measure
    utilisation against the device's peak for this dtype on every target.
    """
    totals: dict[str, int] = {}
    for dtype, flops in matrix_work:
        if flops > 0:
            totals[dtype] = totals.get(dtype, 0) + flops
    return max(sorted(totals), key=lambda d: totals[d]) if totals else default
