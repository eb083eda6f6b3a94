"""
`export-mlir`: loop-stage IR to upstream MLIR only (`func`, `linalg`, `scf`,
`memref`, `arith`, `math`, `tensor`, `vector`, `bufferization`), which the real `mlir-opt`
accepts and can lower to LLVM for a CPU.

Preconditions: loop-stage IR (`lower-to-loops` output): `loop.kernel`s over
global buffers with `#graph.layout`s, `loop.copy`/`loop.view` between them.
Postconditions: the module holds only upstream ops and keeps the compiler's
structure:

- Every global buffer is a plain `memref` of its *physical* shape
  (`physical_shape` of its layout: permuted, tiled dims split into
  outer x inner), so the layouts the compiler chose are the layouts in memory.
- Every `loop.kernel` is a private `func.func @<model>_<kernel>` over those
  memrefs, called from the model function, with the kernel's decisions as
  `strata.*` attributes; its tile loops are kept as they are, except that
  one loop over output tiles per nest (the one with most iterations, among
  those carrying nothing) becomes an `scf.parallel` (`parallel_loop`).
- Tiles are `tensor` values (bufferized later by `one-shot-bufferize`).
  `loop.load` is a `linalg.generic` over the tile whose body maps each
  logical index (offset + i) through the layout (permute, then `divui`/`remui`
  by the tile sizes) and `memref.load`s it; where a tile can reach past the
  buffer (decided by interval arithmetic on the loop bounds) the index is
  clamped and the element replaced by `pad`. A store of a whole buffer that
  an elementwise op's `linalg.generic` computed (`loop.stores_in_place`) is
  that generic writing the buffer itself (`_computed_in_place`); another
  `loop.store` is an `scf.for`
  nest of `tensor.extract` + `memref.store`, its bounds clipped to the buffer
  (f32 rows of a row-major buffer: vector writes, where they lie inside it;
  a whole row-major buffer: one flat loop).
  `loop.fill` is `linalg.fill`, `loop.causal_mask` and `loop.online_softmax`
  are `linalg.generic`s, graph ops on tiles lower through `passes/_linalg.py`.
  A GEMM of f32 tiles loaded for it (`_micro_operands`) is the `vector`
  micro-kernel of `Emitter.vector_matmul`, its `b` loaded packed in column
  strips, with `memref.prefetch`es of the next iteration's tiles
  (`next_tile_prefetch`); f32 tiles of row-major buffers (2-D after
  leading unit dims, or rows of the buffer collapsed to 2-D, as a slice
  of the last dim: `_vector_rows`) are copied by vectors, row by row
  (`_vector_tile_load`; a row of more than `UNROLLED_VECTORS` vectors in
  a loop, `_by_vectors`), behind an `scf.if` where they may cross the edge;
  a tile that is its whole buffer as laid out is the buffer itself
  (`bufferization.to_tensor`), and one that is a contiguous slab of it, or
  a window of a product's `b` (a decode GEMM's k rows of its weight), a
  `tensor.extract_slice` of it, a view (`loop.reads_in_place`): copied by
  nothing; such a `b` the micro-kernel reads unpacked.
- `loop.copy` is `memref.copy` (same layout) or a relayout loop nest;
  `loop.view` is `memref.collapse_shape` + `memref.expand_shape`.
- The model function takes the logical inputs and params (as before, with
  their `graph.input`/`graph.param` attributes) and then one output memref
  per result (`strata.output = i`), which it fills (a result computed into
  its own allocation is computed into the output instead); it returns nothing and
  carries `llvm.emit_c_interface`, so it can be called through its C interface.
- Work that depends on the params alone (`loop.load_plan`: weights relaid
  into their kernels' layouts, per-channel scale products) is not in the
  model function but in `@<model>_load`, called once when the params are
  bound: it takes the model function's inputs and params, then one memref
  per buffer it prepares (`strata.prepared = i`), which the model function
  takes after its outputs and reads on every call. Without such work there
  is no load function and no prepared argument.
- With `instrument` (`strata measure`), the model function also brackets each
  kernel call and each `loop.copy` with calls of the external
  `strata_clock_ns()` and adds the elapsed time to a slot with
  `strata_timer_add(slot, ns)` (`_Timers`; C in `compiler/measure.py`), the
  whole function to the slot `total`, and, on entry, `EMPTY_BRACKETS` brackets
  around nothing to the first (`bracket`: the clock's own cost); the load
  function's kernels and copies each to a slot after those;
  `strata.timers` names the slots. Off by default: the export is then
  unchanged.

Values are unchanged: the numeric rules are the reference executor's (but
GEMMs use fused multiply-adds and `erf` a polynomial, see `_linalg.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, bufferization, func, memref, scf, tensor, vector
from xdsl.dialects.linalg import GenericOp
from xdsl.dialects.builtin import (
    AffineMapAttr,
    ArrayAttr,
    BoolAttr,
    DenseArrayBase,
    DictionaryAttr,
    FunctionType,
    IndexType,
    IntegerAttr,
    MemRefType,
    ModuleOp,
    StringAttr,
    TensorType,
    UnitAttr,
    VectorType,
    f32,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.ir.affine import (
    AffineBinaryOpExpr, AffineBinaryOpKind, AffineConstantExpr, AffineDimExpr, AffineExpr, AffineMap,
)
from xdsl.passes import ModulePass

from strata.dialects import loop
from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import dtype_name
from strata.dialects.graph.layout import LayoutAttr, layout_of, physical_shape, same_element_order
from strata.dialects.hardware import cpu
from strata.dialects.loop import INDEX_OPS
from strata.passes._linalg import (
    Emitter,
    EXP_FLUSH_BELOW,
    ExportError,
    PrefetchOp,
    _reassociation,
    causal_mask,
    conv2d,
    dequantize,
    dequantized_rows,
    dim,
    elem,
    VL,
    is_float,
    lower_graph_op,
    micro_kernel,
    f8_bits,
    is_f8,
    logical,
    shape,
    storage_type,
)

PAGE_BYTES = 4096
"""The virtual memory page of the host (x86-64, AArch64 Linux by default)."""

PREFETCH_LOCALITY = 2
"""
`memref.prefetch`'s locality of the GEMM's prefetches: 2 (x86 `prefetcht1`)
keeps the lines out of L1, which holds the strip the kernel sweeps.
"""

UPSTREAM_DIALECTS = ("builtin", "bufferization", "func", "linalg", "scf", "memref", "arith", "math", "tensor", "vector")
"""The dialects the exported IR may use."""

C_INTERFACE = "llvm.emit_c_interface"
OUTPUT_ATTR = "strata.output"
PREPARED_ATTR = "strata.prepared"
"""On an argument of the model function and of its load function: the i-th buffer the load function writes
once (`loop.load_plan`) and every call of the model function reads."""
LOAD_SUFFIX = "_load"
"""The load function of model `@m` is `@m_load` (module docstring)."""
LOAD_ATTR = "strata.load"
"""On the load function: it runs once when the params are bound, before any call of the model function."""
DTYPE_ATTR = "strata.dtype"
"""On an argument whose memref holds another element type (`u8`, `i4` in `i8`): the model's dtype of it."""


def plain_memref(type_: MemRefType) -> MemRefType:
    """
    The upstream memref holding a global buffer: its physical shape, no
    layout, no memory space, its elements in their `storage_type` (`u8` and
    `i4` in signless `i8`, one byte per value).
    """
    return MemRefType(storage_type(type_.element_type), physical_shape(layout_of(type_), type_.get_shape()))


def _storage(type_: Attribute) -> Attribute:
    """A tile or scalar type with its elements in their `storage_type`."""
    if isinstance(type_, TensorType):
        return TensorType(storage_type(type_.element_type), type_.get_shape())
    return storage_type(type_)


def _error(op: Operation, message: str) -> ExportError:
    return ExportError(f"{message} (at {op.location})")


# --------------------------------------------------------------------------- index ranges

Interval = tuple[int, int] | None


def interval(expr: AffineExpr, dims: Sequence[Interval]) -> Interval:
    """The range of an affine expression of dims with known ranges (None: unknown)."""
    if isinstance(expr, AffineConstantExpr):
        return (expr.value, expr.value)
    if isinstance(expr, AffineDimExpr):
        return dims[expr.position]
    if isinstance(expr, AffineBinaryOpExpr):
        a, b = interval(expr.lhs, dims), interval(expr.rhs, dims)
        if a is None or b is None:
            return None
        kind = expr.kind
        if kind == AffineBinaryOpKind.Add:
            return (a[0] + b[0], a[1] + b[1])
        if kind == AffineBinaryOpKind.Mul:
            products = [x * y for x in a for y in b]
            return (min(products), max(products))
        if b[0] == b[1] and b[0] > 0:
            c = b[0]
            if kind == AffineBinaryOpKind.FloorDiv:
                return (a[0] // c, a[1] // c)
            if kind == AffineBinaryOpKind.CeilDiv:
                return (-(-a[0] // c), -(-a[1] // c))
            if kind == AffineBinaryOpKind.Mod:
                return (0, c - 1)
    return None


def physical_index(em: Emitter, layout: LayoutAttr, index: Sequence[SSAValue]) -> list[SSAValue]:
    """Logical (non-negative) indices -> physical ones: permute, then split tiled dims."""
    permuted = [index[d] for d in layout.perm]
    split = len(permuted) - len(layout.tiles)
    outer, inner = [], []
    for i, t in zip(permuted[split:], layout.tiles):
        if t == 1:
            outer.append(i)
            inner.append(em.index(0))
        else:
            outer.append(em.v(arith.DivUIOp(i, em.index(t))))
            inner.append(em.v(arith.RemUIOp(i, em.index(t))))
    return [*permuted[:split], *outer, *inner]


def _for(em: Emitter, lb: SSAValue, ub: SSAValue, step: SSAValue, build) -> None:
    """An `scf.for` without results; `build(emitter, iv)` fills its body."""
    body = Block(arg_types=[IndexType()])
    inner = em.at(body)
    build(inner, body.args[0])
    inner.add(scf.YieldOp())
    em.add(scf.ForOp(lb, ub, step, [], Region(body)))


UNROLLED_VECTORS = 32
"""The most vectors a row copy (`_by_vectors`) writes out one by one; a longer row is a loop over
`VECTORS_PER_STEP` at a time: a 65536-column tile unrolled into 4096 transfers made a 5.7 MB export
that mlir-opt did not finish bufferizing in 15 minutes."""

VECTORS_PER_STEP = 8
"""Vectors a step of a long row's copy loop moves (`_by_vectors`; the largest divisor of the count up to it)."""


def _by_vectors(em: Emitter, count: int, body, carried: SSAValue | None = None) -> SSAValue | None:
    """
    `body(emitter, column, carried)` for each of `count` vectors of a row (`column` = i * VL, an
    index), threading `carried` (a tensor being written; None for stores to a memref): unrolled up
    to `UNROLLED_VECTORS`, else an `scf.for` over steps of `VECTORS_PER_STEP`.
    """
    if count <= UNROLLED_VECTORS:
        for i in range(count):
            carried = body(em, em.index(i * VL), carried)
        return carried
    step = max(d for d in range(1, VECTORS_PER_STEP + 1) if count % d == 0)

    def steps(e: Emitter, iv: SSAValue, value: SSAValue | None = None):
        base = e.v(arith.MuliOp(iv, e.index(step * VL)))
        for i in range(step):
            value = body(e, e.v(arith.AddiOp(base, e.index(i * VL))) if i else base, value)
        return value

    if carried is None:
        _for(em, em.index(0), em.index(count // step), em.index(1), steps)
        return None
    return em.for_(0, count // step, 1, carried, steps)


def _nest(em: Emitter, bounds: Sequence[tuple[SSAValue, SSAValue]], build, ivs=()) -> None:
    """Nested `scf.for`s over `[lb, ub)` per dim; `build(emitter, ivs)` fills the innermost body."""
    if len(ivs) == len(bounds):
        build(em, list(ivs))
        return
    lb, ub = bounds[len(ivs)]
    _for(em, lb, ub, em.index(1), lambda inner, iv: _nest(inner, bounds, build, (*ivs, iv)))


# --------------------------------------------------------------------------- kernels


class _KernelExporter:
    """Translates one `loop.kernel` body into the body of a `func.func`."""

    def __init__(self, output_rank: int = 0):
        self.values: dict[SSAValue, SSAValue] = {}
        self.ranges: dict[SSAValue, Interval] = {}
        self.output_rank = output_rank
        self.in_parallel = False
        self.loops: list[tuple[SSAValue, SSAValue, SSAValue, SSAValue]] = []
        """The loops around the op being translated, outermost first: (old counter, new lb, ub, step)."""
        self.entry: Emitter | None = None
        """The function's body, where an op added lands before the loops being translated (each loop
        is added to its block once its body is done)."""
        self.finite: dict[SSAValue, SSAValue] = {}
        """Per buffer of scales, whether all of them are finite (`scales_finite`)."""

    def get(self, value: SSAValue) -> SSAValue:
        return self.values[value]

    def range_of(self, value: SSAValue) -> Interval:
        return self.ranges.get(value)

    def block(self, old: Block, em: Emitter) -> None:
        for op in old.ops:
            em.location = op.location
            self.op(op, em)

    def op(self, op: Operation, em: Emitter) -> None:
        if isinstance(op, arith.ConstantOp):
            new = em.add(op.clone())
            self.values[op.result] = new.results[0]
            if isinstance(op.result.type, IndexType):
                value = op.value.value.data
                self.ranges[op.result] = (value, value)
        elif type(op) in INDEX_OPS:
            self.values[op.result] = em.add(type(op)(self.get(op.lhs), self.get(op.rhs))).results[0]
            a, b = self.range_of(op.lhs), self.range_of(op.rhs)
            if a is not None and b is not None:
                # Each of these ops is monotone or bilinear: its extremes lie at the corners.
                corners = [INDEX_OPS[type(op)](x, y) for x in a for y in b]
                self.ranges[op.result] = (min(corners), max(corners))
        elif isinstance(op, scf.ForOp):
            self.for_(op, em)
        elif isinstance(op, scf.YieldOp):
            em.add(scf.YieldOp(*(self.get(v) for v in op.operands)))
        elif isinstance(op, loop.EndOp):
            pass
        elif isinstance(op, loop.LoadOp):
            if not _feeds_micro_kernel(op) and _conv_weight_rows(op) is None:
                self.values[op.result] = self.load(op, em)
        elif isinstance(op, loop.GatherOp):
            self.values[op.result] = self.gather(op, em)
        elif isinstance(op, loop.StoreOp):
            self.store(op, em)
        elif isinstance(op, loop.FillOp):
            self.values[op.result] = em.fill(_pad(op, op.value.value.data), shape(op.result), elem(op.result))
        elif isinstance(op, (loop.CausalMaskOp, loop.OnlineSoftmaxOp)) and any(
                is_f8(logical(v)) for v in (*op.operands, *op.results) if isinstance(v.type, TensorType)):
            raise _error(op, f"export-mlir does not support '{op.name}' on f8 values; cast them to f32 first")
        elif isinstance(op, loop.CausalMaskOp):
            dims = [self.get(v) for v in op.indices]
            row, col = (em.affine(e, dims) for e in op.map.data.results)
            self.values[op.result] = causal_mask(em, self.get(op.input), row, col)
        elif isinstance(op, loop.OnlineSoftmaxOp):
            results = online_softmax(em, *(self.get(v) for v in op.operands))
            self.values.update(zip(op.results, results))
        elif op.name.startswith("graph."):
            if _accumulated_matmul(op) is not None or _feeds_micro_kernel(op):
                return  # emitted by the add that consumes it, into its accumulator; or packed there
            if cpu.widened_dequantize(op) is not None or cpu.widened_as_read(op):
                return  # emitted by the cast that widens it, in one loop; or in the micro-kernel
            if isinstance(op, g.CastOp) and cpu.widened_dequantize(op.input.owner) is op:
                deq = op.input.owner
                self.values[op.result] = dequantize(em, deq, [self.get(v) for v in deq.operands], logical(op.result))
                return
            fused = _accumulating_add(op)
            try:
                if fused is not None or (isinstance(op, g.MatmulOp) and _micro_operands(op) is not None):
                    matmul, acc = fused if fused is not None else (op, None)
                    acc = None if acc is None else self.get(acc)
                    operands = _micro_operands(matmul)
                    if operands is not None:
                        self.values[op.result] = em.cast(self.micro_matmul(matmul, operands, acc, em), elem(op.result))
                        return
                    self.values[op.result] = self.unpacked_matmul(matmul, acc, elem(op.result), em)
                    return
                if isinstance(op, g.Conv2DOp) and _conv_weight_rows(op.weight.owner) is not None:
                    w_load = op.weight.owner
                    bias = self.get(op.bias) if op.bias is not None else None
                    rows = self.conv_weight(w_load, em)
                    self.values[op.result] = conv2d(em, op, self.get(op.input), None, bias,
                                                    (rows, _conv_weight_rows(w_load)))
                    return
                results = lower_graph_op(em, op, [self.get(v) for v in op.operands])
            except ExportError as err:
                raise _error(op, str(err)) from None
            self.values.update(zip(op.results, results))
        else:
            raise _error(op, f"export-mlir does not support '{op.name}' inside a kernel")

    def for_(self, op: scf.ForOp, em: Emitter) -> None:
        old = op.body.block
        body = Block(arg_types=[IndexType(), *(_storage(a.type) for a in old.args[1:])])
        self.values.update(zip(old.args, body.args))
        lb, ub, step = (self.range_of(v) for v in (op.lb, op.ub, op.step))
        # A bound computed from outer counters (a causal key loop) has a range: its top bounds the counter.
        if lb is not None and ub is not None and step is not None and lb[0] == lb[1] \
                and step[0] == step[1] and step[0] > 0 and ub[1] > lb[0]:
            last = lb[0] + (ub[1] - 1 - lb[0]) // step[0] * step[0]
            self.ranges[old.args[0]] = (lb[0], last)
        self.loops.append((old.args[0], self.get(op.lb), self.get(op.ub), self.get(op.step)))
        if self.parallel_loop(op) is op:
            # Iterations write disjoint output tiles: one `scf.parallel`
            # dim, spread over the threads (`native`, `--threads`).
            self.in_parallel = True
            for inner in old.ops:
                if not isinstance(inner, scf.YieldOp):
                    em.location = inner.location
                    self.op(inner, em.at(body))
            self.in_parallel = False
            self.loops.pop()
            em.at(body).add(scf.ReduceOp())
            em.add(scf.ParallelOp([self.get(op.lb)], [self.get(op.ub)], [self.get(op.step)], Region(body)))
            return
        self.block(old, em.at(body))
        self.loops.pop()
        new = scf.ForOp(self.get(op.lb), self.get(op.ub), self.get(op.step),
                        [self.get(v) for v in op.iter_args], Region(body))
        new.attributes.update(op.attributes)
        em.add(new)
        self.values.update(zip(op.results, new.results))

    def unpacked_matmul(self, matmul: g.MatmulOp, acc: SSAValue | None, out_elem, em: Emitter) -> SSAValue:
        """
        `[acc +] a @ b` with `b` unpacked (`Emitter.matmul`). Where a cast feeds `b`
        (`cpu.widened_as_read`) the micro-kernel widens its row vectors to f32 in the registers: the
        cast's bf16 tile, or its dequantize's quantized tile, by one of two loops chosen once a call:
        where every scale is finite (`scales_finite`, the usual case), without the rounding's NaN
        test; else with it.
        """
        a = self.get(matmul.lhs)
        cast = matmul.rhs.owner
        if not cpu.widened_as_read(cast):
            return em.matmul(a, self.get(matmul.rhs), out_elem, acc, None)
        source = cast.input.owner
        if not isinstance(source, g.DequantizeOp):
            return em.matmul(a, self.get(cast.input), out_elem, acc, lambda e, raw, _column: e.widen_bf16(raw))
        b, scale = self.get(source.input), self.get(source.scale)
        return em.if_(self.scales_finite(source.scale.owner),
                      lambda e: e.matmul(a, b, out_elem, acc, dequantized_rows(scale, finite=True)),
                      lambda e: e.matmul(a, b, out_elem, acc, dequantized_rows(scale)))

    def scales_finite(self, load: loop.LoadOp) -> SSAValue:
        """Whether every scale of the buffer `load` reads a tile of is finite (`Emitter.all_finite`): tested
        once a call, before the kernel's loops, not at every k step that loads the same tile again."""
        buffer = self.get(load.source)
        if buffer not in self.finite:
            self.finite[buffer] = self.entry.all_finite(self.entry.v(bufferization.ToTensorOp(buffer, restrict=True)))
        return self.finite[buffer]

    def micro_matmul(self, matmul: g.MatmulOp, operands, acc: SSAValue | None, em: Emitter) -> SSAValue:
        """
        `[acc +] a @ b` through the vector micro-kernel: `a` loaded row-major
        (packing it by row blocks would gather with scalar stores, costlier
        than the kernel's strided broadcasts), `b` loaded packed by column
        strips, leading unit dims dropped and restored.
        """
        a_load, b_load, transposed, block = operands
        m, k = shape(a_load.result)[-2:]
        n = shape(matmul.result)[-1]
        a = em.reshape(self.load(a_load, em), [m, k])
        pack = ("rows" if transposed else "cols", block[1] * VL)
        b = self.load(b_load, em, pack)
        if acc is not None:
            acc = em.reshape(acc, [m, n])
        prefetch = self.next_tile_prefetch(b_load, em, pack)
        return em.reshape(em.packed_matmul(a, b, [m, n], block, acc, prefetch), shape(matmul.result))

    def conv_weight(self, op: loop.LoadOp, em: Emitter) -> SSAValue:
        """
        A convolution's weight tile (`_conv_weight_rows`: the whole buffer,
        or a tile of its output channels) as [O, K] rows in its physical
        order, copied by vectors from the buffer collapsed to 2-D: no
        transposition to the logical (o, c, i, j) order, which costs a
        scatter per element.
        """
        buffer = self.get(op.source)
        dims = buffer.type.get_shape()
        flat = em.v(memref.CollapseShapeOp(
            operands=[buffer], result_types=[MemRefType(buffer.type.element_type, [dims[0], math.prod(dims[1:])])],
            properties={"reassociation": _reassociation([[0], list(range(1, len(dims)))])},
        ))
        first = em.affine(op.map.data.results[0], [self.get(v) for v in op.indices])
        return _vector_load(em, flat, [first, None], [shape(op.result)[0], math.prod(dims[1:])], None)

    def next_indices(self, indices: Sequence[SSAValue], em: Emitter, depth: int | None = None) -> list[SSAValue]:
        """
        `indices` (loop counters and constants) as the next iteration of the
        `depth` outermost loops around the op being translated (all of them
        by default) will have them: the innermost of those steps, and where
        it reaches its bound it restarts and the next one out steps, and so
        on; past the last iteration the outermost counter runs past its
        bound (the caller clamps).
        """
        return self._next(indices, em, depth)[0]

    def last_inner_step(self, em: Emitter, depth: int) -> SSAValue | None:
        """
        Whether every loop inside the `depth` outermost ones around the op
        runs its last iteration (None: there are none).
        """
        if depth >= len(self.loops):
            return None
        inner = self.loops[depth:]
        saved, self.loops = self.loops, inner
        try:
            return self._next([], em)[1]
        finally:
            self.loops = saved

    def _next(self, indices: Sequence[SSAValue], em: Emitter, depth: int | None = None):
        """`next_indices`, and whether the outermost of the loops wraps (or steps past its bound)."""
        loops = self.loops[:depth]
        following: dict[SSAValue, SSAValue] = {}
        carry = None  # whether the loops inside this one have all wrapped (None: this is the innermost)
        for counter, lb, ub, step in reversed(loops):
            now = self.get(counter)
            stepped = em.v(arith.AddiOp(now, step))
            if carry is None:
                wrap = em.cmpi(stepped, ub, "sge")
            else:
                stepped = em.select(carry, stepped, now)
                wrap = em.and_(carry, em.cmpi(stepped, ub, "sge"))
            following[counter] = em.select(wrap, lb, stepped) if counter is not loops[0][0] else stepped
            carry = wrap
        return [following.get(v, self.get(v)) for v in indices], carry

    def _next_origin(self, op: loop.LoadOp | loop.StoreOp, em: Emitter, tile: Sequence[int], logical: Sequence[int],
                     depth: int | None = None) -> list[SSAValue]:
        """The origin of the tile `op` reads or writes next (`next_indices`), clamped into its buffer."""
        dims = self.next_indices(op.indices, em, depth)
        starts = []
        for d, expr in enumerate(op.map.data.results):
            # The last tile's successor is moved back inside the buffer (it prefetches itself).
            top = max(0, logical[d] - tile[d])
            starts.append(em.v(arith.MaxSIOp(em.v(arith.MinSIOp(em.affine(expr, dims), em.index(top))), em.index(0))))
        return starts

    def next_tile_prefetch(self, b_load: loop.LoadOp, em: Emitter, pack: tuple[str, int]):
        """
        A `prefetch(e, s, p, blocks, strips)` for `Emitter.vector_matmul`
        (None where there is nothing to prefetch): before row block `p` of
        strip `s`, it prefetches

        - its share (one in `blocks`) of the cache lines of strip `s` of the
          `b` tile that the next iteration of the loops around `b_load`
          loads (a row-major f32 buffer), into L2 and beyond; and
        - its share (one in `blocks x strips`) of the lines of the output
          tile that the next iteration of the loops around the kernel's
          store writes (a row-major f32 buffer), for writing;

        each origin clamped into its buffer. The arithmetic of the current
        tile then hides the memory latency of the next one's copies (its
        packing of `b` would wait for DRAM or L3 otherwise: a wide LM head,
        a `b` that outgrows L2; the store of its output for the lines'
        ownership), in small batches, so that few misses queue at a time.
        """
        if not self.loops:
            return None
        parts = []
        source_type = b_load.source.type
        layout, logical = layout_of(source_type), source_type.get_shape()
        tile = shape(b_load.result)
        # Rows of the tile a page or more apart are copied as one stream per row, which the
        # hardware prefetcher follows; prefetching them by software only adds page walks.
        if _vector_copyable(layout, tile, elem(b_load.result), pack) and logical[1] * 4 < PAGE_BYTES:
            parts.append((self.get(b_load.source), tile, self._next_origin(b_load, em, tile, logical), False, None))
        store = self._output_store()
        if store is not None:
            op, depth = store
            dest_type = op.dest.type
            layout, logical = layout_of(dest_type), dest_type.get_shape()
            tile = shape(op.value)
            if _vector_copyable(layout, tile, elem(op.value), None):
                # Only while the loops inside the store's (the reduction) run their last step:
                # earlier, the lines would take L2 from the current tiles for longer.
                when = self.last_inner_step(em, depth)
                parts.append((self.get(op.dest), tile, self._next_origin(op, em, tile, logical, depth), True, when))
        if not parts:
            return None

        def prefetch(e: Emitter, s: SSAValue, p: SSAValue, blocks: int, strips: int) -> None:
            # Call number s * blocks + p of blocks x strips per tile.
            call = e.v(arith.AddiOp(e.v(arith.MuliOp(s, e.index(blocks))), p))
            for buffer, tile, starts, write, when in parts:
                # The tile's lines, numbered row by row (in memory order), split evenly among the calls.
                per_row = -(-tile[-1] // VL)
                lines = tile[-2] * per_row
                chunk = -(-lines // (blocks * strips))
                first = e.v(arith.MuliOp(call, e.index(chunk)))
                last = e.v(arith.MinSIOp(e.v(arith.AddiOp(first, e.index(chunk))), e.index(lines)))
                if when is not None:
                    last = e.select(when, last, first)

                def line(e2: Emitter, t: SSAValue, buffer=buffer, per_row=per_row, starts=starts, write=write):
                    r = e2.v(arith.DivUIOp(t, e2.index(per_row)))
                    c = e2.v(arith.MuliOp(e2.v(arith.RemUIOp(t, e2.index(per_row))), e2.index(VL)))
                    index = [*starts[:-2], e2.v(arith.AddiOp(starts[-2], r)), e2.v(arith.AddiOp(starts[-1], c))]
                    e2.add(PrefetchOp(buffer, index, write=write, locality=PREFETCH_LOCALITY))

                _for(e, first, last, e.index(1), line)

        return prefetch

    def _output_store(self) -> tuple[loop.StoreOp, int] | None:
        """The `loop.store` of the innermost loop around the op being translated that holds one, and its depth."""
        for depth in range(len(self.loops), 0, -1):
            block = self.loops[depth - 1][0].owner
            for op in block.ops:
                if isinstance(op, loop.StoreOp):
                    return op, depth
        return None

    def parallel_loop(self, op: scf.ForOp) -> scf.ForOp | None:
        """
        The loop to run in parallel among `op` and the tile loops nested
        directly in it: those over output dims (`loop.dim` below the output
        rank) that carry nothing, outside any parallel loop; of them, the one
        with the most iterations (so that a 64-row GEMM spreads its columns).
        """
        if self.in_parallel:
            return None
        best, trips = None, 0
        while isinstance(op, scf.ForOp) and self._parallel_dim(op):
            lb, ub, step = (self.range_of(v) for v in (op.lb, op.ub, op.step))
            if lb is None or ub is None or step is None or lb[0] != lb[1] or ub[0] != ub[1] or step[0] <= 0:
                break
            count = -(-(ub[0] - lb[0]) // step[0])
            if count > trips:
                best, trips = op, count
            loops = [o for o in op.body.block.ops if o.regions]
            if len(loops) != 1 or any(isinstance(o, (loop.StoreOp, loop.LoadOp)) for o in op.body.block.ops):
                break
            op = loops[0]
            # Bounds of the inner loop must be known: they are constants of its parent body.
            for value in (op.lb, op.ub, op.step) if isinstance(op, scf.ForOp) else ():
                if value.owner.parent_block() is not None and isinstance(value.owner, arith.ConstantOp):
                    v = value.owner.value.value.data
                    self.ranges.setdefault(value, (v, v))
        return best if trips > 1 else None

    def _parallel_dim(self, op: scf.ForOp) -> bool:
        dim = op.attributes.get("loop.dim")
        return (not op.iter_args and not op.results and isinstance(dim, IntegerAttr)
                and dim.value.data < self.output_rank)

    def _offsets(self, op, em: Emitter, tile: Sequence[int], logical: Sequence[int]):
        """Offset values and, per dim, whether the tile may reach outside the buffer."""
        dims = [self.get(v) for v in op.indices]
        dim_ranges = [self.range_of(v) for v in op.indices]
        offsets, guards = [], []
        for d, expr in enumerate(op.map.data.results):
            offsets.append(None if isinstance(expr, AffineConstantExpr) and expr.value == 0 else em.affine(expr, dims))
            r = interval(expr, dim_ranges)
            guards.append(r is None or r[0] < 0 or r[1] + tile[d] > logical[d])
        return offsets, guards

    @staticmethod
    def _element_index(e: Emitter, offsets, guards, logical, tile_index: Sequence[SSAValue]):
        """Inside a generic: the buffer index of each tile index, and the in-bounds test."""
        index, inside = [], None
        for d in range(len(offsets)):
            i = tile_index[d]
            if offsets[d] is not None:
                i = e.v(arith.AddiOp(i, offsets[d]))
            if guards[d]:
                # Unsigned: a negative index is out of range too.
                ok = e.cmpi(i, e.index(logical[d]), "ult")
                inside = ok if inside is None else e.and_(inside, ok)
                i = e.select(ok, i, e.index(0))
            index.append(i)
        return index, inside

    def load(self, op: loop.LoadOp, em: Emitter, pack: tuple[str, int] | None = None) -> SSAValue:
        """
        The tile as a tensor; `pack` lays a `b` operand out for the GEMM
        micro-kernel as [N / nr, K, nr] (see `Emitter.vector_matmul`): of
        a [K, N] tile with `("cols", nr)`, of a [N, K] tile (a transposed
        operand) with `("rows", nr)`.
        """
        source_type = op.source.type
        layout, logical = layout_of(source_type), source_type.get_shape()
        tile, t = shape(op.result), elem(op.result)
        buffer = self.get(op.source)
        offsets, guards = self._offsets(op, em, tile, logical)
        if pack is None and loop.reads_in_place(op):
            # Read in place: the kernel never writes its inputs, and bufferization copies a
            # `to_tensor` before any write into it; a slab or a window is a view of the buffer.
            whole = em.v(bufferization.ToTensorOp(buffer, restrict=True))
            if tuple(tile) == tuple(logical):
                return whole
            starts = [0 if o is None else o for o in offsets]
            return em.v(tensor.ExtractSliceOp(whole, starts, list(tile), [1] * len(tile), _storage(op.result.type)))
        if pack is None and not any(guards) and _vector_rows(layout, logical, tile, t, offsets):
            # An f32 window whose leading dims merge into rows (a slice of the last dim).
            return _vector_rows_load(em, buffer, logical, offsets, tile)
        if not _vector_copyable(layout, tile, t, pack):
            return self._generic_load(op, em, pack, layout, logical, tile, t, buffer, offsets, guards)
        if not any(guards):
            return _vector_tile_load(em, buffer, offsets, tile, pack)
        # A tile that may cross the buffer's edge: vectors when this one lies inside, else element by element.
        inside = None
        for d, guarded in enumerate(guards):
            if not guarded:
                continue
            start = offsets[d] if offsets[d] is not None else em.index(0)
            ok = em.and_(em.cmpi(start, em.index(0), "sge"),
                         em.cmpi(em.v(arith.AddiOp(start, em.index(tile[d]))), em.index(logical[d]), "sle"))
            inside = ok if inside is None else em.and_(inside, ok)
        then_block, else_block = Block(), Block()
        fast = _vector_tile_load(em.at(then_block), buffer, offsets, tile, pack)
        em.at(then_block).add(scf.YieldOp(fast))
        slow = self._generic_load(op, em.at(else_block), pack, layout, logical, tile, t, buffer, offsets, guards)
        em.at(else_block).add(scf.YieldOp(slow))
        return em.v(scf.IfOp(inside, [fast.type], Region(then_block), Region(else_block)))

    def _generic_load(self, op, em: Emitter, pack, layout, logical, tile, t, buffer, offsets, guards) -> SSAValue:
        """`load` element by element: a `linalg.generic` mapping each index through the layout, padding outside."""
        pad = _pad(op)
        out_shape = list(tile)
        if pack is not None:
            kind, width = pack
            n_dim = 0 if kind == "rows" else 1
            strips = -(-tile[n_dim] // width)
            out_shape = [strips, tile[1 - n_dim], width]

        def body(e: Emitter, _out):
            in_tile = None
            if pack is None:
                tile_index = [e.loop_index(d) for d in range(len(tile))]
            else:
                # "rows": loops (strip, column, k), so that k innermost walks a row of the buffer.
                lane = e.loop_index(1 if kind == "rows" else 2)
                col = e.v(arith.AddiOp(e.v(arith.MuliOp(e.loop_index(0), e.index(width))), lane))
                if tile[n_dim] % width:
                    # The last strip reaches past the tile: zeros there.
                    in_tile = e.cmpi(col, e.index(tile[n_dim]), "ult")
                    col = e.select(in_tile, col, e.index(0))
                k = e.loop_index(2 if kind == "rows" else 1)
                tile_index = [col, k] if kind == "rows" else [k, col]
            index, inside = self._element_index(e, offsets, guards, logical, tile_index)
            value = e.v(memref.LoadOp.get(buffer, physical_index(e, layout, index)))
            if inside is not None:
                value = e.select(inside, value, e.scalar(pad, t))
            if in_tile is not None:
                value = e.select(in_tile, value, e.scalar(0, t))
            return value

        if pack is not None and pack[0] == "rows":
            return em.generic([], [], out_shape, t, body, out_map=AffineMap(3, 0, (dim(0), dim(2), dim(1))))
        return em.generic([], [], out_shape, t, body)

    def gather(self, op: loop.GatherOp, em: Emitter) -> SSAValue:
        """`out[i..., j...] = table[clip(wrap(ids[i...])), offsets + j...]`, a generic over the ids (wrap: -1 is the last row)."""
        source_type = op.source.type
        layout, logical = layout_of(source_type), source_type.get_shape()
        tile, t = shape(op.result), elem(op.result)
        count = len(shape(op.ids))
        buffer = self.get(op.source)
        offsets, guards = self._offsets(op, em, tile[count:], logical[1:])
        pad = _pad(op)

        def table_row(e: Emitter, id_) -> SSAValue:
            row = e.v(arith.IndexCastOp(id_, IndexType()))
            # As ONNX Gather (and `strata run`): a negative id counts from the end. An id outside
            # [-V, V), which compiled code does not check, is clamped into [0, V).
            row = e.select(e.cmpi(row, e.index(0), "slt"), e.add_(row, e.index(logical[0])), row)
            return e.v(arith.MaxSIOp(e.v(arith.MinSIOp(row, e.index(logical[0] - 1))), e.index(0)))

        if cpu.gathers_by_vectors(op) and not any(guards):
            return _gather_rows(em, buffer, self.get(op.ids), tile, offsets[0], table_row)

        def body(e: Emitter, id_, _out):
            row = table_row(e, id_)
            tile_index = [e.loop_index(count + d) for d in range(len(offsets))]
            rest, inside = self._element_index(e, offsets, guards, logical[1:], tile_index)
            value = e.v(memref.LoadOp.get(buffer, physical_index(e, layout, [row, *rest])))
            if inside is not None:
                value = e.select(inside, value, e.scalar(pad, t))
            return value

        ids_map = AffineMap(len(tile), 0, tuple(AffineExpr.dimension(d) for d in range(count)))
        return em.generic([self.get(op.ids)], [ids_map], tile, t, body)

    def store(self, op: loop.StoreOp, em: Emitter) -> None:
        if loop.stores_in_place(op) and self._computed_in_place(op):
            return
        dest_type = op.dest.type
        layout, logical = layout_of(dest_type), dest_type.get_shape()
        value = self.get(op.value)
        tile = shape(op.value)
        dest = self.get(op.dest)
        offsets, guards = self._offsets(op, em, tile, logical)
        bounds = []
        for d in range(len(tile)):
            lb, ub = em.index(0), em.index(tile[d])
            if guards[d] and offsets[d] is not None:
                # Only the part of the tile inside the buffer: [max(0, -o), min(T, S - o)).
                lb = em.v(arith.MaxSIOp(lb, em.v(arith.SubiOp(em.index(0), offsets[d]))))
                ub = em.v(arith.MinSIOp(ub, em.v(arith.SubiOp(em.index(logical[d]), offsets[d]))))
            elif guards[d]:
                ub = em.index(min(tile[d], logical[d]))
            bounds.append((lb, ub))

        def build(e: Emitter, ivs):
            element = e.v(tensor.ExtractOp(value, ivs, elem(op.value)))
            index = [iv if off is None else e.v(arith.AddiOp(iv, off)) for iv, off in zip(ivs, offsets)]
            e.add(memref.StoreOp.get(element, dest, physical_index(e, layout, index)))

        row_major = not layout.tiles and list(layout.perm) == list(range(len(tile)))
        if not (elem(op.value) == f32 and len(tile) >= 2 and tile[-1] % VL == 0 and row_major):
            if len(tile) >= 2 and row_major and list(tile) == list(logical) and all(o is None for o in offsets):
                # The whole buffer, contiguous: one flat loop, which LLVM vectorises (a nest of short
                # rows it unrolls and then gathers and scatters across the rows, `SHORT_ROWS`).
                count = math.prod(tile)
                flat, into = em.reshape(value, [count]), _view(em, dest, MemRefType(dest_type.element_type, [count]))

                def build_flat(e: Emitter, ivs):
                    e.add(memref.StoreOp.get(e.v(tensor.ExtractOp(flat, ivs, elem(op.value))), into, ivs))

                _nest(em, [(em.index(0), em.index(count))], build_flat)
                return
            _nest(em, bounds, build)
            return

        # Row-major f32: each row of the tile by vectors, when its columns lie inside the buffer.
        def build_rows(e: Emitter, ivs):
            index = [iv if off is None else e.v(arith.AddiOp(iv, off)) for iv, off in zip(ivs, offsets)]
            start = offsets[-1] if offsets[-1] is not None else e.index(0)

            def one(e2: Emitter, c: SSAValue, _carried) -> None:
                vec = e2.read_vector(value, [*ivs, c])
                col = e2.v(arith.AddiOp(start, c))
                e2.add(vector.TransferWriteOp(vec, dest, [*index, col], ArrayAttr([BoolAttr.from_bool(True)]),
                                              permutation_map=AffineMapAttr(AffineMap(len(tile), 0, (dim(len(tile) - 1),)))))

            _by_vectors(e, tile[-1] // VL, one)

        if not guards[-1]:
            _nest(em, bounds[:-1], build_rows)
            return
        start = offsets[-1] if offsets[-1] is not None else em.index(0)
        inside = em.and_(em.cmpi(start, em.index(0), "sge"),
                         em.cmpi(em.v(arith.AddiOp(start, em.index(tile[-1]))), em.index(logical[-1]), "sle"))
        fast, slow = Block(), Block()
        _nest(em.at(fast), bounds[:-1], build_rows)
        em.at(fast).add(scf.YieldOp())
        _nest(em.at(slow), bounds, build)
        em.at(slow).add(scf.YieldOp())
        em.add(scf.IfOp(inside, [], Region(fast), Region(slow)))


    def _computed_in_place(self, op: loop.StoreOp) -> bool:
        """
        For a store `loop.stores_in_place`: the `linalg.generic` that computed the value (through
        reshapes) made to write the buffer itself, viewed in its shape as a writable tensor in place of
        its fresh `tensor.empty`, so that nothing is left to copy; False (nothing changed) where the
        value came otherwise (a row's masked vectors, `Emitter.row_elementwise`).
        """
        value = self.get(op.value)
        if value.uses.get_length():
            return False
        producer = value.owner
        while isinstance(producer, tensor.ExpandShapeOp | tensor.CollapseShapeOp):
            value = producer.operands[0]
            if value.uses.get_length() != 1:
                return False
            producer = value.owner
        if not isinstance(producer, GenericOp) or len(producer.outputs) != 1:
            return False
        init = producer.outputs[0]
        if not isinstance(init.owner, tensor.EmptyOp) or init.uses.get_length() != 1:
            return False
        scratch = Block()
        em = Emitter(scratch)
        dest = self.get(op.dest)
        view = _view(em, dest, MemRefType(dest.type.element_type, list(shape(init))))
        writable = em.v(bufferization.ToTensorOp(view, restrict=True, writable=True))
        empty = init.owner
        for new in list(scratch.ops):
            new.detach()
            empty.parent_block().insert_op_before(new, empty)
        init.replace_all_uses_with(writable)
        empty.detach()
        empty.erase()
        return True


def _pad(op: Operation, value: float | None = None) -> float | int:
    """
    The padding of a load or gather (`value` None), or the value of a fill,
    as its tile holds it: f8 as its bits; an integer load pads with 0.
    """
    t = op.result.type.element_type
    if not is_float(t) and not is_f8(t):
        return 0 if value is None else int(value)
    value = op.pad.value.data if value is None else value
    return f8_bits(value, t) if is_f8(t) else value


def _vector_copyable(layout: LayoutAttr, tile, t, pack) -> bool:
    """
    A tile that `_vector_tile_load` copies: f32 from a row-major buffer, 2-D
    after leading unit dims (a [1, S, D] activation), in whole vectors (16
    x 16 blocks transposed); a packed tile is 2-D.
    """
    rank = len(tile)
    if rank < 2 or t != f32 or layout.tiles or list(layout.perm) != list(range(rank)) or any(d != 1 for d in tile[:-2]):
        return False
    if pack is not None and rank != 2:
        return False
    if pack is None:
        return tile[-1] % VL == 0
    kind, width = pack
    if kind == "cols":
        return tile[1] % width == 0 and width % VL == 0
    return tile[0] % width == 0 and width % VL == 0 and tile[1] % VL == 0


def _gather_rows(em: Emitter, table: SSAValue, ids: SSAValue, tile, column: SSAValue | None, table_row) -> SSAValue:
    """
    A gather `cpu.gathers_by_vectors`: the rows `ids` select, `tile[-1]` columns each from
    `column`, copied by vectors, one id read and clamped per row (`table_row`), where a generic
    over every element reads its id and computes the row's index per element (6 clocks an element).
    """
    count = len(tile) - 1
    width = tile[-1]
    flat_ids = em.reshape(ids, [math.prod(tile[:count])])
    out = em.empty([math.prod(tile[:count]), width], elem(table))

    def row(e: Emitter, r: SSAValue, dest: SSAValue) -> SSAValue:
        source_row = table_row(e, e.v(tensor.ExtractOp(flat_ids, [r], elem(flat_ids))))

        def one(e2: Emitter, c: SSAValue, dest2: SSAValue) -> SSAValue:
            start = e2.v(arith.AddiOp(c, column)) if column is not None else c
            return e2.write_vector(e2.read_vector(table, [source_row, start]), dest2, [r, c])

        return e.along_vectors(width, dest, one)

    return em.reshape(em.for_(0, math.prod(tile[:count]), 1, out, row), list(tile))


def _vector_rows(layout: LayoutAttr, logical, tile, t, offsets) -> bool:
    """
    Whether an f32 tile of a row-major buffer, inside it, is a run of rows of the buffer
    collapsed to 2-D (`_vector_rows_load`), with leading dims that are not all 1: after its
    first leading dim of more than one element, every leading dim whole and at offset 0 (a
    slice of the last dim of [B, H, S, D], RoPE's halves). Whole vectors per row.
    """
    rank = len(tile)
    if rank < 3 or t != f32 or layout.tiles or list(layout.perm) != list(range(rank)) or tile[-1] % VL:
        return False
    lead = [d for d in range(rank - 1) if tile[d] != 1]
    if len(lead) < 2 and all(d == rank - 2 for d in lead):
        return False  # `_vector_copyable`'s case: 2-D after leading unit dims
    return all(tile[d] == logical[d] and offsets[d] is None for d in range(lead[0] + 1, rank - 1))


def _vector_rows_load(em: Emitter, buffer: SSAValue, logical, offsets, tile) -> SSAValue:
    """The tile of `_vector_rows` copied by vectors, row by row, from the buffer collapsed to [rows, columns]."""
    rows = math.prod(logical[:-1])
    flat = em.v(memref.CollapseShapeOp(
        operands=[buffer], result_types=[MemRefType(buffer.type.element_type, [rows, logical[-1]])],
        properties={"reassociation": _reassociation([list(range(len(logical) - 1)), [len(logical) - 1]])},
    ))
    first = None
    for d, offset in enumerate(offsets[:-1]):
        if offset is None:
            continue
        scaled = em.v(arith.MuliOp(offset, em.index(math.prod(logical[d + 1:-1])))) if d < len(logical) - 2 else offset
        first = scaled if first is None else em.v(arith.AddiOp(first, scaled))
    copied = _vector_load(em, flat, [first, offsets[-1]], [math.prod(tile[:-1]), tile[-1]], None)
    return em.reshape(copied, list(tile))


def _vector_tile_load(em: Emitter, buffer: SSAValue, offsets, tile, pack) -> SSAValue:
    """
    The tile `buffer[..., o0 : o0 + rows, o1 : o1 + cols]` (inside the
    buffer; leading dims of 1) copied by vectors of `VL`: as a tensor of
    the tile's shape, or packed as `load`'s `pack` says. `("rows", w)`
    transposes 16 x 16 blocks in registers (a transposing
    `vector.transfer_read`, lowered to shuffles).
    """
    if len(tile) > 2:
        lead = [em.index(0) if o is None else o for o in offsets[:-2]]
        flat = _vector_load(em, buffer, offsets[-2:], tile[-2:], pack, lead)
        return em.reshape(flat, list(tile))
    return _vector_load(em, buffer, offsets, tile, pack)


def _vector_load(em: Emitter, buffer: SSAValue, offsets, tile, pack, lead=()) -> SSAValue:
    """`_vector_tile_load` of a 2-D tile; `lead` are the buffer's indices before its last two dims."""
    rows, cols = tile
    lead = list(lead)
    o0, o1 = (em.index(0) if o is None else o for o in offsets)
    kind, width = pack if pack is not None else ("cols", cols)
    t = elem(buffer)
    if kind == "rows":
        out = em.empty([rows // width, cols, width], t)

        def by_strip_t(e: Emitter, q: SSAValue, dest: SSAValue) -> SSAValue:
            def by_k(e2: Emitter, kb: SSAValue, dest2: SSAValue) -> SSAValue:
                k = e2.v(arith.MuliOp(kb, e2.index(VL)))
                col = e2.v(arith.AddiOp(k, o1))
                base = e2.v(arith.AddiOp(e2.v(arith.MuliOp(q, e2.index(width))), o0))
                for c in range(0, width, VL):
                    row = e2.v(arith.AddiOp(base, e2.index(c))) if c else base
                    # 16 rows of the buffer (n), 16 columns each (k), transposed in registers.
                    block = [e2.read_vector(buffer, [*lead, e2.v(arith.AddiOp(row, e2.index(j))) if j else row, col])
                             for j in range(VL)]
                    for i, value in enumerate(_transpose16(e2, block)):
                        kk = e2.v(arith.AddiOp(k, e2.index(i))) if i else k
                        dest2 = e2.write_vector(value, dest2, [q, kk, e2.index(c)])
                return dest2

            return e.for_(0, cols // VL, 1, dest, by_k)

        return em.for_(0, rows // width, 1, out, by_strip_t)
    # Row by row (each row's strips in turn when packing): the buffer is read
    # as one stream per row, which the hardware prefetcher follows; a packed
    # tile is written strip by strip.
    strip = pack is not None
    out = em.empty([cols // width, rows, width] if strip else [rows, cols], t)

    def by_row(e: Emitter, k: SSAValue, dest: SSAValue) -> SSAValue:
        row = e.v(arith.AddiOp(k, o0))

        def strip_of_row(e2: Emitter, q: SSAValue, dest2: SSAValue) -> SSAValue:
            base = e2.v(arith.AddiOp(e2.v(arith.MuliOp(q, e2.index(width))), o1))

            def one(e3: Emitter, c: SSAValue, dest3: SSAValue) -> SSAValue:
                value = e3.read_vector(buffer, [*lead, row, e3.v(arith.AddiOp(base, c))])
                return e3.write_vector(value, dest3, [q, k, c] if strip else [k, c])

            return _by_vectors(e2, width // VL, one, dest2)

        if strip:
            return e.for_(0, cols // width, 1, dest, strip_of_row)
        return strip_of_row(e, e.index(0), dest)

    return em.for_(0, rows, 1, out, by_row)


def _transpose16(em: Emitter, rows: list[SSAValue]) -> list[SSAValue]:
    """
    The transpose of 16 vectors of 16 f32 lanes: four stages of two-input
    `vector.shuffle`s (one `vpermt2ps` each on AVX-512), each swapping the
    off-diagonal blocks of half the size of the last.
    """
    rows = list(rows)
    half = VL // 2
    vt = VectorType(f32, [VL])
    while half:
        low = DenseArrayBase.from_list(i64, [j if not j & half else VL + j - half for j in range(VL)])
        high = DenseArrayBase.from_list(i64, [j + half if not j & half else VL + j for j in range(VL)])
        for i in range(VL):
            if i & half:
                continue
            a, b = rows[i], rows[i + half]
            rows[i] = em.v(vector.ShuffleOp(a, b, low, result_type=vt))
            rows[i + half] = em.v(vector.ShuffleOp(a, b, high, result_type=vt))
        half //= 2
    return rows


def _uses(value: SSAValue) -> list:
    return list(value.uses)


def _accumulating_add(op: Operation) -> tuple[g.MatmulOp, SSAValue] | None:
    """`(matmul, acc)` when `op` is `acc + matmul(...)` with the matmul used only there and `acc` of the result's type."""
    if not isinstance(op, g.AddOp):
        return None
    for mine, other in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
        owner = mine.owner
        if (isinstance(owner, g.MatmulOp) and owner.parent_block() is op.parent_block()
                and len(_uses(mine)) == 1 and other.type == op.result.type == mine.type):
            return owner, other
    return None


def _single_use_in_block(value: SSAValue, user: Operation) -> bool:
    """`value` is used once, by `user`, in `user`'s block, with no store or loop between them."""
    if len(_uses(value)) != 1 or value.owner.parent_block() is not user.parent_block():
        return False
    between = value.owner.next_op
    while between is not None and between is not user:
        if isinstance(between, loop.StoreOp) or between.regions:
            return False
        between = between.next_op
    return between is user


def _micro_operands(matmul: g.MatmulOp):
    """
    `(a_load, b_load, transposed, block)` when `matmul` multiplies f32
    tiles the vector micro-kernel takes: `a` [1.., M, K] a `loop.load`, `b`
    [K, N] a `loop.load` or the `graph.transpose` of one ([N, K]), each used
    only there; the loads are then emitted at the matmul, `b` packed.
    """
    lhs, rhs = matmul.lhs, matmul.rhs
    if lhs is rhs or elem(matmul.result) != f32 or len(shape(rhs)) != 2 or any(d != 1 for d in shape(lhs)[:-2]):
        return None
    a_load, b_load, transposed = lhs.owner, rhs.owner, False
    if isinstance(b_load, g.TransposeOp) and list(b_load.perm.get_values()) == [1, 0] \
            and _single_use_in_block(rhs, matmul):
        b_load, transposed, rhs = b_load.input.owner, True, b_load.input
    if not isinstance(a_load, loop.LoadOp) or not isinstance(b_load, loop.LoadOp):
        return None
    if not transposed and loop.reads_in_place(b_load):
        return None  # one row: `b` read where it lies, unpacked (`loop.single_row_rhs`)
    if not _single_use_in_block(lhs, matmul):
        return None
    b_user = _uses(rhs)[0].operation if len(_uses(rhs)) == 1 else None
    if b_user is None or not _single_use_in_block(rhs, b_user):
        return None
    m, k = shape(lhs)[-2:]
    n = shape(matmul.result)[-1]
    block = micro_kernel((m, k), (k, n), elem(lhs), elem(rhs), f32)
    if block is None:
        return None
    return a_load, b_load, transposed, block


def _conv_weight_rows(op: Operation) -> tuple[int, ...] | None:
    """`loop.weight_rows` at the export's vector width: the K order of a weight loaded as rows, else None."""
    return loop.weight_rows(op, VL)


def _feeds_micro_kernel(op: Operation) -> bool:
    """`op` (a load, or a transpose) is emitted by `_KernelExporter.micro_matmul` at its matmul."""
    if not op.results or len(_uses(op.results[0])) != 1:
        return False
    user = _uses(op.results[0])[0].operation
    if isinstance(user, g.TransposeOp) and isinstance(op, loop.LoadOp):
        if len(_uses(user.result)) != 1:
            return False
        user = _uses(user.result)[0].operation
    if not isinstance(user, g.MatmulOp) or not isinstance(op, (loop.LoadOp, g.TransposeOp)):
        return False
    return _micro_operands(user) is not None


def _accumulated_matmul(op: Operation) -> g.AddOp | None:
    """The add that accumulates matmul `op` (see `_accumulating_add`), if any."""
    if not isinstance(op, g.MatmulOp):
        return None
    uses = _uses(op.result)
    if len(uses) == 1 and _accumulating_add(uses[0].operation) is not None \
            and _accumulating_add(uses[0].operation)[0] is op:
        return uses[0].operation
    return None


def online_softmax(em: Emitter, s, v, m, l, acc) -> list[SSAValue]:
    """One flash-attention key step (`loop.online_softmax`), in f32."""
    rank = len(shape(s))
    t = elem(m)
    m_shape, s_shape, acc_shape = shape(m), shape(s), shape(acc)
    neg_inf = float("-inf")
    rowmax = em.reduce(s, [rank - 1], "max", True)
    new_max = em.elementwise(lambda e, a, b: e.max_(a, b), m_shape, t, m, rowmax)
    # Rows with no unmasked key yet keep max -inf: scale by 0, not NaN.
    safe = em.elementwise(
        lambda e, a: e.select(e.cmpf(a, e.scalar(neg_inf, t), "oeq"), e.scalar(0.0, t), a), m_shape, t, new_max
    )
    # No subnormals: p feeds a product whose multiplies would take assists on them (`Emitter.exp`).
    p = em.elementwise(lambda e, a, b: e.exp(e.sub(a, b), EXP_FLUSH_BELOW), s_shape, t, s, safe)
    scale = em.elementwise(
        lambda e, a, b: e.select(e.cmpf(a, e.scalar(neg_inf, t), "oeq"), e.scalar(0.0, t),
                                 e.exp(e.sub(a, b), EXP_FLUSH_BELOW)),
        m_shape, t, m, safe,
    )
    row_sum = em.reduce(p, [rank - 1], "sum", True)
    new_sum = em.elementwise(lambda e, a, b, c: e.add_(e.mul(a, b), c), m_shape, t, l, scale, row_sum)
    scaled = em.elementwise(lambda e, a, b: e.mul(a, b), acc_shape, t, acc, scale)
    new_acc = em.matmul(p, v, t, acc=scaled)
    return [new_max, new_sum, new_acc]


def export_kernel(kernel: loop.KernelOp, name: str) -> func.FuncOp:
    """A private `func.func` computing `kernel` over its plain memrefs."""
    old = kernel.body.block
    types = [plain_memref(a.type) for a in old.args]
    body = Block(arg_types=types)
    exporter = _KernelExporter(len(kernel.outs[0].type.get_shape()) if kernel.outs else 0)
    exporter.values.update(zip(old.args, body.args))
    em = Emitter(body, kernel.location)
    exporter.entry = em
    exporter.block(old, em)
    em.location = kernel.location
    em.add(func.ReturnOp())
    fn = func.FuncOp(name, FunctionType.from_lists(types, []), Region(body), "private")
    fn.location = kernel.location
    fn.attributes["strata.kernel"] = kernel.kernel_name
    fn.attributes["strata.kind"] = kernel.kind
    for key in ("bounds", "tile_sizes", "loop_order"):
        fn.attributes[f"strata.{key}"] = getattr(kernel, key)
    return fn


# --------------------------------------------------------------------------- the model function


def _copy(em: Emitter, op: loop.CopyOp, source: SSAValue, dest: SSAValue) -> None:
    """
    A relayout: element (logical index) by element, or `memref.copy` (a `memcpy`) when both buffers
    hold the elements in the same order (`same_element_order`), through flat views where their
    physical shapes differ.
    """
    src_layout, dst_layout = layout_of(op.source.type), layout_of(op.dest.type)
    if same_element_order(op.source.type, op.dest.type):
        if source.type.get_shape() != dest.type.get_shape():
            count = math.prod(op.source.type.get_shape())
            source = _view(em, source, MemRefType(source.type.element_type, [count]))
            dest = _view(em, dest, MemRefType(dest.type.element_type, [count]))
        em.add(memref.CopyOp(source, dest))
        return
    logical = op.source.type.get_shape()
    bounds = [(em.index(0), em.index(d)) for d in logical]

    def build(e: Emitter, ivs):
        value = e.v(memref.LoadOp.get(source, physical_index(e, src_layout, ivs)))
        e.add(memref.StoreOp.get(value, dest, physical_index(e, dst_layout, ivs)))

    _nest(em, bounds, build)


def _view(em: Emitter, source: SSAValue, result_type: MemRefType) -> SSAValue:
    """A row-major reshape of a contiguous memref: collapse to 1-D, then expand."""
    src_shape = source.type.get_shape()
    out_shape = result_type.get_shape()
    if tuple(src_shape) == tuple(out_shape):
        return source
    if not src_shape or not out_shape:
        raise ExportError("export-mlir cannot view a rank-0 buffer")
    flat = source
    element = source.type.element_type
    count = 1
    for d in src_shape:
        count *= d
    if len(src_shape) != 1:
        flat = em.v(memref.CollapseShapeOp(
            operands=[source], result_types=[MemRefType(element, [count])],
            properties={"reassociation": _reassociation([list(range(len(src_shape)))])},
        ))
    if len(out_shape) == 1:
        return flat
    return em.v(memref.ExpandShapeOp(
        operands=[flat, []], result_types=[MemRefType(element, list(out_shape))],
        properties={
            "reassociation": _reassociation([list(range(len(out_shape)))]),
            "static_output_shape": DenseArrayBase.from_list(i64, list(out_shape)),
        },
    ))


def _symbol(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in text)


CLOCK_FUNCTION = "strata_clock_ns"
"""`int64_t strata_clock_ns(void)`: the instrumented export's clock (monotonic nanoseconds), linked in from C."""
TIMER_FUNCTION = "strata_timer_add"
"""`void strata_timer_add(int64_t slot, int64_t ns)`: adds `ns` to the instrumented export's timer `slot`."""
TIMERS_ATTR = "strata.timers"
"""On an instrumented model function: the name of each timer slot (`bracket`, kernel names, `copy#J` for the J-th
`loop.copy`, then `total`, then those of the load function's kernels and copies)."""
BRACKET_SLOT = "bracket"
"""The instrumented model function's first slot: `EMPTY_BRACKETS` brackets around nothing, run on entry."""
EMPTY_BRACKETS = 16
"""Empty brackets per call: their mean is what the clock calls alone add to every slot (`compiler/measure.py`)."""


class _Timers:
    """
    Opt-in instrumentation of a model function: each kernel call and each
    copy between kernels is bracketed by `strata_clock_ns()` calls and its
    elapsed nanoseconds added to its own slot (`strata_timer_add`), the
    whole function's to the slot `total` (the load function's slots, if
    any, follow it). On entry, before `total`'s bracket opens, `EMPTY_BRACKETS` brackets around nothing add to the first
    slot, `bracket`, so that the caller can take the clock's own share out of
    the others. Only calls are added, so the values computed are unchanged.
    """

    def __init__(self) -> None:
        self.names: list[str] = []

    def start(self, em: Emitter) -> SSAValue:
        return em.v(func.CallOp(CLOCK_FUNCTION, [], [i64]))

    def _add(self, em: Emitter, start: SSAValue, slot: int) -> None:
        end = em.v(func.CallOp(CLOCK_FUNCTION, [], [i64]))
        index = em.v(arith.ConstantOp(IntegerAttr(slot, i64)))
        em.add(func.CallOp(TIMER_FUNCTION, [index, em.v(arith.SubiOp(end, start))], []))

    def stop(self, em: Emitter, start: SSAValue, name: str) -> None:
        self._add(em, start, len(self.names))
        self.names.append(name)

    def empty_brackets(self, em: Emitter) -> None:
        """`EMPTY_BRACKETS` brackets around nothing, in an `scf.for`, into the next slot (`bracket`)."""
        slot = len(self.names)
        _for(em, em.index(0), em.index(EMPTY_BRACKETS), em.index(1), lambda e, _iv: self._add(e, self.start(e), slot))
        self.names.append(BRACKET_SLOT)

    @staticmethod
    def slot(op: Operation, copies: dict[Operation, int]) -> str:
        """A kernel's slot is its name; the J-th `loop.copy` of the function (`copies`) is `copy#J`."""
        return op.kernel_name.data if isinstance(op, loop.KernelOp) else f"copy#{copies[op]}"

    @staticmethod
    def declarations() -> list[func.FuncOp]:
        return [func.FuncOp.external(CLOCK_FUNCTION, [], [i64]), func.FuncOp.external(TIMER_FUNCTION, [i64, i64], [])]


def export_function(fn: func.FuncOp, instrument: bool = False) -> list[func.FuncOp]:
    """
    The kernels of a loop-stage function as private funcs, then the function
    itself (with `instrument`, timed kernel by kernel: `_Timers`), and, when
    some of its work depends on its params alone (`loop.load_plan`), the
    function `@<model>_load` that does that work once (module docstring).
    """
    old = fn.body.block
    name = fn.sym_name.data
    arg_types = [plain_memref(a.type) for a in old.args]
    results = list(fn.function_type.outputs.data)
    for r in results:
        if not isinstance(r, MemRefType):
            raise ExportError(f"export-mlir needs loop-stage IR: @{name} returns {r}; lower it to loops first")
    out_types = [plain_memref(t) for t in results]
    plan = loop.load_plan(fn)
    prepared_types = [plain_memref(v.type) for v in plan.prepared]
    body = Block(arg_types=arg_types + out_types + prepared_types)
    for new, arg in zip(body.args, old.args):
        new.name_hint = arg.name_hint
    outs = body.args[len(arg_types):len(arg_types) + len(out_types)]
    for i, out in enumerate(outs):
        out.name_hint = f"out{i}"
    prepared = dict(zip(plan.prepared, _prepared_args(body, len(arg_types) + len(out_types))))
    values: dict[SSAValue, SSAValue] = {**dict(zip(old.args, body.args)), **prepared}
    # A result computed into its own allocation is computed into its output
    # buffer instead: no allocation (page faults) and no copy at the end.
    returned = list(old.last_op.operands) if isinstance(old.last_op, func.ReturnOp) else []
    direct: dict[SSAValue, SSAValue] = {}
    for value, out in zip(returned, outs):
        if isinstance(value.owner, memref.AllocOp) and returned.count(value) == 1 \
                and plain_memref(value.type) == out.type:
            direct[value] = out
    em = Emitter(body, fn.location)
    kernels: list[func.FuncOp] = []
    used: set[str] = set()
    timers = _Timers() if instrument else None
    copies = {op: j for j, op in enumerate(op for op in old.ops if isinstance(op, loop.CopyOp))}
    if timers is not None:
        timers.empty_brackets(em)
    whole = timers.start(em) if timers else None
    for op in old.ops:
        em.location = op.location
        if op in plan.ops:
            continue  # run once, by the load function
        if isinstance(op, memref.AllocOp) and op.memref in plan.written:
            continue  # written once, by the load function
        if isinstance(op, loop.ViewOp) and op.source not in values:
            continue  # a view of a buffer only the load function holds
        timed = timers is not None and isinstance(op, (loop.KernelOp, loop.CopyOp))
        start = timers.start(em) if timed else None
        if isinstance(op, func.ReturnOp):
            for value, out in zip(op.operands, outs):
                if values[value] is not out:
                    em.add(memref.CopyOp(values[value], out))
            if timers is not None:
                timers.stop(em, whole, "total")
            em.add(func.ReturnOp())
        else:
            _export_op(em, op, values, direct, name, kernels, used)
        if timed:
            timers.stop(em, start, _Timers.slot(op, copies))
    arg_attrs = list(fn.arg_attrs.data) if isinstance(fn.arg_attrs, ArrayAttr) else [DictionaryAttr({})] * len(arg_types)
    arg_attrs += [DictionaryAttr({OUTPUT_ATTR: IntegerAttr(i, i64)}) for i in range(len(out_types))]
    # A buffer held in another type (u8, i4 in i8) says its dtype, for the caller's arrays.
    for i, type_ in enumerate([a.type for a in old.args] + results):
        if storage_type(type_.element_type) != type_.element_type:
            arg_attrs[i] = DictionaryAttr({**arg_attrs[i].data, DTYPE_ATTR: StringAttr(dtype_name(type_.element_type))})
    new = func.FuncOp(name, FunctionType.from_lists([a.type for a in body.args], []), Region(body),
                      arg_attrs=ArrayAttr(arg_attrs + _prepared_attrs(len(prepared))))
    new.location = fn.location
    new.attributes[C_INTERFACE] = UnitAttr()
    functions = [new]
    if plan.ops:
        functions.insert(0, _load_function(fn, plan, arg_types, arg_attrs[:len(arg_types)], name, kernels, used,
                                           timers, copies))
    if timers is not None:
        new.attributes[TIMERS_ATTR] = ArrayAttr([StringAttr(n) for n in timers.names])
    return [*kernels, *functions]


def _load_function(fn: func.FuncOp, plan: loop.LoadPlan, arg_types, arg_attrs, name: str,
                   kernels: list[func.FuncOp], used: set[str], timers: _Timers | None,
                   copies: dict[Operation, int]) -> func.FuncOp:
    """
    `@<model>_load(inputs and params..., prepared...)`: the work of `plan`, in
    program order, writing the buffers the model function reads into its
    `prepared` arguments (the others it allocates and frees itself); with
    `timers`, each kernel and copy timed into a slot of its own, after the
    model function's (a copy's `copy#J` numbered among all of them, `copies`).
    """
    old = fn.body.block
    body = Block(arg_types=arg_types + [plain_memref(v.type) for v in plan.prepared])
    for new, arg in zip(body.args, old.args):
        new.name_hint = arg.name_hint
    values = {**dict(zip(old.args, body.args)), **dict(zip(plan.prepared, _prepared_args(body, len(arg_types))))}
    em = Emitter(body, fn.location)
    for op in old.ops:
        em.location = op.location
        if isinstance(op, memref.AllocOp) and (op.memref in values or op.memref not in plan.written):
            continue  # a prepared argument, or a buffer of the call's
        if isinstance(op, loop.ViewOp) and op.source not in values:
            continue
        if op not in plan.ops and not isinstance(op, (arith.ConstantOp, memref.AllocOp, loop.ViewOp)):
            continue
        timed = timers is not None and op in plan.ops
        start = timers.start(em) if timed else None
        _export_op(em, op, values, {}, name, kernels, used)
        if timed:
            timers.stop(em, start, _Timers.slot(op, copies))
    em.add(func.ReturnOp())
    load = func.FuncOp(f"{name}{LOAD_SUFFIX}", FunctionType.from_lists([a.type for a in body.args], []),
                       Region(body), arg_attrs=ArrayAttr(arg_attrs + _prepared_attrs(len(plan.prepared))))
    load.location = fn.location
    load.attributes[C_INTERFACE] = UnitAttr()
    load.attributes[LOAD_ATTR] = UnitAttr()
    return load


def _prepared_args(body: Block, first: int) -> list[SSAValue]:
    """The block's arguments from `first` on, the prepared buffers, named `prepared0`, ..."""
    args = list(body.args[first:])
    for i, arg in enumerate(args):
        arg.name_hint = f"prepared{i}"
    return args


def _prepared_attrs(count: int) -> list[DictionaryAttr]:
    """The argument attributes of `count` prepared buffers (`PREPARED_ATTR`)."""
    return [DictionaryAttr({PREPARED_ATTR: IntegerAttr(i, i64)}) for i in range(count)]


def _export_op(em: Emitter, op: Operation, values: dict[SSAValue, SSAValue], direct: dict[SSAValue, SSAValue],
               name: str, kernels: list[func.FuncOp], used: set[str]) -> None:
    """One op between the kernels of a model function, its operands and results mapped through `values`."""
    if isinstance(op, arith.ConstantOp):
        values[op.result] = em.v(op.clone())
    elif isinstance(op, memref.AllocOp) and op.memref in direct:
        values[op.memref] = direct[op.memref]
    elif isinstance(op, memref.AllocOp):
        values[op.memref] = em.v(memref.AllocOp([], [], plain_memref(op.memref.type)))
    elif isinstance(op, loop.KernelOp):
        kernel_name = _symbol(f"{name}_{op.kernel_name.data}")
        while kernel_name in used:
            kernel_name += "_"
        used.add(kernel_name)
        kernels.append(export_kernel(op, kernel_name))
        em.add(func.CallOp(kernel_name, [values[v] for v in (*op.ins, *op.outs)], []))
    elif isinstance(op, loop.CopyOp):
        _copy(em, op, values[op.source], values[op.dest])
    elif isinstance(op, loop.ViewOp):
        values[op.result] = _view(em, values[op.source], plain_memref(op.result.type))
    else:
        raise _error(op, f"export-mlir needs loop-stage IR; it does not support '{op.name}' between kernels")


def check_upstream(module: ModuleOp) -> None:
    """Every op of `module` is in one of `UPSTREAM_DIALECTS`."""
    for op in module.walk():
        if op.name.split(".")[0] not in UPSTREAM_DIALECTS:
            raise _error(op, f"export-mlir left a non-upstream op '{op.name}'")


def export_module(module: ModuleOp, instrument: bool = False) -> None:
    """Rewrite a loop-stage module in place into upstream MLIR (timed per kernel with `instrument`)."""
    new_ops: list[Operation] = _Timers.declarations() if instrument else []
    for op in list(module.ops):
        if isinstance(op, func.FuncOp) and not op.is_declaration:
            new_ops += export_function(op, instrument)
        elif isinstance(op, func.FuncOp):
            new_ops.append(op.clone())
        else:
            raise _error(op, f"export-mlir does not support '{op.name}' at module level")
    for op in list(module.ops):
        op.detach()
        op.erase(safe_erase=False)
    module.body.block.add_ops(new_ops)
    check_upstream(module)


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class ExportMlirPass(ModulePass):
    """Export loop-stage IR to upstream MLIR dialects (func, linalg, scf, memref, arith, math, tensor)."""

    name = "export-mlir"

    instrument: bool = False
    """Time every kernel and copy of the model function (`_Timers`; `strata measure`)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        export_module(op, self.instrument)
