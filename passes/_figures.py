"""
Static figures of a `loop.kernel`, read off its loop nest: the work and the
off-chip traffic it performs, its on-chip footprint, and the GEMMs it issues.

Assumes loop bounds are constants (as `lower-to-loops` emits them); every op
inside a loop counts once per iteration. Pure functions of the IR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xdsl.dialects import scf
from xdsl.ir import Block, Operation, SSAValue

from strata.dialects import loop
from strata.dialects.loop import INDEX_OPS, counters, index_value, iterations, trip_count, trips
from strata.dialects.graph import ops as g
from strata.dialects.graph.flops import TRANSCENDENTAL_OPS, op_flops
from strata.dialects.vocabulary import type_bytes

MATRIX_OPS = (g.MatmulOp, g.Conv2DOp)


nbytes = type_bytes


@dataclass
class Figures:
    """What a kernel does, summed over its loop nest."""

    flops: int = 0
    matrix_flops: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    onchip_bytes: int = 0
    register_bytes: int = 0
    """Accumulators (`loop.fill` at the register level)."""
    pipelined_bytes: int = 0
    """On-chip bytes loaded inside a reduction loop, which a copy pipeline multi-buffers."""
    reads_by_buffer: dict[int, int] = field(default_factory=dict)
    """Bytes read from each kernel argument, by argument position."""
    unit_ops: set[str] = field(default_factory=set)
    transcendentals: int = 0
    """Elements of exp-like functions the kernel evaluates (`TRANSCENDENTAL_OPS`, one exponential per
    softmax score): a CPU evaluates each as a polynomial of many vector ops, not one FLOP."""


def _online_softmax_flops(op: loop.OnlineSoftmaxOp) -> tuple[int, int]:
    scores, acc = op.scores.type.get_shape(), op.acc_in.type.get_shape()
    matrix = 2 * math.prod(acc) * scores[-1]
    return matrix, 5 * math.prod(scores) + 2 * math.prod(acc)


def _accumulates(op: Operation) -> bool:
    """`acc + product` carried by a reduction loop: part of the matrix op's work."""
    if not isinstance(op, g.AddOp):
        return False
    kinds = [type(v.owner) for v in op.operands]
    carried = any(isinstance(v.owner, Block) and isinstance(v.owner.parent_op(), scf.ForOp) for v in op.operands)
    return carried and any(k in MATRIX_OPS for k in kinds)


def _visit(
    block: Block, times: int, in_reduction: bool, args: dict[SSAValue, int], out: Figures,
    outer: dict[SSAValue, scf.ForOp] | None = None, bytes_of=nbytes,
) -> None:
    outer = outer or {}
    for op in block.ops:
        if isinstance(op, scf.ForOp):
            inner = in_reduction or bool(op.iter_args)
            nested = {**outer, op.body.block.args[0]: op}
            _visit(op.body.block, iterations(op, times, outer), inner, args, out, nested, bytes_of)
        elif isinstance(op, loop.LoadOp | loop.GatherOp):
            size = bytes_of(op.result.type)
            out.read_bytes += size * times
            out.onchip_bytes += size
            out.pipelined_bytes += size if in_reduction else 0
            position = args.get(op.source, -1)
            out.reads_by_buffer[position] = out.reads_by_buffer.get(position, 0) + size * times
        elif isinstance(op, loop.StoreOp):
            out.write_bytes += bytes_of(op.value.type) * times
        elif isinstance(op, loop.FillOp):
            out.register_bytes += bytes_of(op.result.type)
        elif isinstance(op, loop.OnlineSoftmaxOp):
            matrix, vector = _online_softmax_flops(op)
            out.matrix_flops += matrix * times
            out.flops += (matrix + vector) * times
            out.transcendentals += math.prod(op.scores.type.get_shape()) * times
            out.unit_ops |= {"matrix", "vector"}
        elif isinstance(op, loop.CausalMaskOp):
            out.flops += math.prod(op.result.type.get_shape()) * times
            out.unit_ops.add("vector")
        elif _accumulates(op):
            continue  # the MMA's own accumulation, inside its 2*M*N*K FLOPs
        elif isinstance(op, Operation) and op.dialect_name() == "graph":
            work = op_flops(op) * times
            out.flops += work
            if isinstance(op, TRANSCENDENTAL_OPS):
                out.transcendentals += math.prod(op.results[0].type.get_shape()) * times
            if isinstance(op, MATRIX_OPS):
                out.matrix_flops += work
                out.unit_ops.add("matrix")
            elif work:
                out.unit_ops.add("vector")
            else:
                out.unit_ops.add("movement")


def kernel_figures(kernel: loop.KernelOp, bytes_of=nbytes) -> Figures:
    """The kernel's figures, its tiles' bytes by `bytes_of` (default `type_bytes`: an `i4` packed in half a byte)."""
    figures = Figures()
    # Buffer -> its position among the kernel's arguments, a dict so that a kernel of 20,000 inputs stays linear.
    positions = {arg: i for i, arg in enumerate(kernel.body.block.args)}
    _visit(kernel.body.block, 1, False, positions, figures, bytes_of=bytes_of)
    return figures


def _key_loop(kernel: loop.KernelOp) -> tuple[scf.ForOp, dict[SSAValue, scf.ForOp]] | None:
    """An attention kernel's key loop and the loops around it."""
    red = len(kernel.bounds.get_values()) - 1

    def find(block: Block, outer: dict) -> tuple | None:
        for op in block.ops:
            if isinstance(op, scf.ForOp):
                dim = op.attributes.get("loop.dim")
                if dim is not None and dim.value.data == red:
                    return op, outer
                found = find(op.body.block, {**outer, op.body.block.args[0]: op})
                if found:
                    return found
        return None

    return find(kernel.body.block, {})


def _causal_keys(kernel: loop.KernelOp, q: int, rows: int, keys: int) -> list[tuple[int, int]] | None:
    """
    `(rows, keys)` per query tile when the key loop's end depends on the
    query tile (a causal flash loop), else None. Keys are whole key tiles.
    """
    found = _key_loop(kernel)
    if found is None:
        return None
    key_loop, outer = found
    depends = counters(key_loop.ub)
    if not depends:
        return None
    q_loop = next((o for c, o in outer.items() if c in depends), None)
    if q_loop is None or depends != {q_loop.body.block.args[0]}:
        return None
    step = index_value(key_loop.step, {})
    tiles = []
    for start in range(*(index_value(v, {}) for v in (q_loop.lb, q_loop.ub, q_loop.step))):
        end = index_value(key_loop.ub, {q_loop.body.block.args[0]: start})
        tiles.append((min(rows, q - start), min(keys, trips(0, end, step) * step)))
    return tiles


def _shares_weight(kernel: loop.KernelOp) -> bool:
    """Batched rows times one rank-2 weight: one GEMM of all the rows (`graph.kernel.shares_weight`)."""
    matmul = next((op for op in kernel.body.walk() if isinstance(op, g.MatmulOp)), None)
    return matmul is not None and len(matmul.rhs.type.get_shape()) == 2 and len(matmul.lhs.type.get_shape()) > 2


def kernel_gemms(kernel: loop.KernelOp) -> list[tuple[int, int, int, int]]:
    """
    The kernel's GEMMs as `(count, M, N, K)`; a GEMM of batched rows against
    one rank-2 weight is one GEMM of all the rows; convs in SCALE-Sim's
    convention. Attention issues `scores = q @ k^T` then `p @ v` over the
    keys a query visits: all of them, or, where a causal key loop stops at
    each query tile's diagonal, their mean over the queries (whole key tiles).
    """
    bounds, kind = tuple(kernel.bounds.get_values()), kernel.kind.data
    if kind == "gemm":
        *batch, m, n, k = bounds
        if _shares_weight(kernel):
            return [(1, math.prod(batch) * m, n, k)]
        return [(math.prod(batch), m, n, k)]
    if kind == "attention":
        *batch, q, d, keys = bounds
        count = math.prod(batch)
        rows = kernel.tile_sizes.get_values()[len(bounds) - 3]
        causal = _causal_keys(kernel, q, rows, keys)
        if causal is not None:
            keys = max(1, -(-sum(m * n for m, n in causal) // q))
        return [(count, q, keys, d), (count, q, d, keys)]
    if kind == "conv":
        conv = next(op for op in kernel.body.walk() if isinstance(op, g.Conv2DOp))
        batch, filters, oh, ow = bounds
        _, per_group, kh, kw = conv.weight.type.get_shape()
        groups = conv.groups.value.data
        return [(groups, batch * oh * ow, filters // groups, kh * kw * per_group)]
    return []
