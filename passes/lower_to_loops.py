"""
`lower-to-loops`: each `graph.kernel` becomes a `loop.kernel`: a tiled loop nest over buffers.

Preconditions: layout-stage IR whose kernels carry `tile_sizes` and
`loop_order` (run `assign-layout`, then `tile`).
Postconditions: the model function works on global `memref` buffers in the
layouts `assign-layout` chose (model inputs, params and results in the
logical layout); every kernel is a `loop.kernel` whose body is `scf.for`
tile loops, in `loop_order`, around: `loop.load` of the operand tiles each
op needs (bounds inference, `passes/_regions.py`), the kernel's graph ops on
tiles, and a `loop.store` of the result tile. A GEMM kernel's anchor matmul
accumulates over an inner `scf.for` reduction loop in an f32 register tile;
an attention kernel becomes a flash loop over key tiles (`loop.online_softmax`)
that never holds the whole score matrix; with a causal mask each query
tile's key loop ends at its diagonal (a bound computed with `arith` from the
query counter), skipping only wholly masked key tiles. Relayouts become `loop.copy`,
reshapes between kernels `loop.view`. Values are unchanged (up to f32
summation order); every new op carries its source op's location.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import (
    DenseArrayBase,
    IndexType,
    IntegerAttr,
    ModuleOp,
    IntegerType,
    TensorType,
    f32,
    i32,
    i64,
)
from xdsl.ir import Block, BlockArgument, Operation, Region, SSAValue
from xdsl.ir.affine import AffineExpr, AffineMap
from xdsl.passes import ModulePass

from strata.dialects import loop
from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import has_infinity
from strata.dialects.graph.kernel import KernelOp, YieldOp, anchor_matmul, attention_parts, kernel_bounds
from strata.dialects.graph.layout import RelayoutOp, layout_of
from strata.dialects.vocabulary import ORDER_ATTR, TILE_ATTR, IllegalSchedule
from strata.passes._regions import (
    NotTileable, Region as TileRegion, crop_of_whole, full, gathers_rows, operand_regions, region_key, shape_of,
    window_pad,
)


# --------------------------------------------------------------------------- helpers


def buffer_type(type_: TensorType):
    """The global buffer holding a tensor in its layout."""
    return loop.global_memref(type_.element_type, type_.get_shape(), layout_of(type_))


def tensor(shape, element_type) -> TensorType:
    return TensorType(element_type, list(shape))


def _accumulator(element_type):
    """A GEMM's accumulator type: f32 for floats; integers accumulate in i32, i64 in i64."""
    if isinstance(element_type, IntegerType):
        return i64 if element_type.width.data == 64 else i32
    return f32


def _pads_itself(op: Operation) -> bool:
    """An average pool with padding reads its unpadded input whole (`_regions`) and pads itself."""
    return isinstance(op, g.AvgPool2DOp) and any(op.pads.get_values())


def _index(value: int) -> arith.ConstantOp:
    return arith.ConstantOp(IntegerAttr(value, IndexType()))


# --------------------------------------------------------------------------- kernel lowering


@dataclass
class _TileBuilder:
    """Builds one kernel's loop nest; `ivs[i]` is dim `i`'s induction variable once bound."""

    kernel: KernelOp
    args: dict[SSAValue, SSAValue]
    tiles: tuple[int, ...]
    order: tuple[int, ...]

    def __post_init__(self):
        self.rank = len(shape_of(self.kernel.outputs[0]))
        self.bounds = kernel_bounds(self.kernel)
        self.ivs: list[SSAValue | None] = [None] * len(self.tiles)
        self.block: Block | None = None
        self.memo: list[dict] = [{}]
        self.location = self.kernel.location
        self.attention = attention_parts(self.kernel.body.block) if self.kernel.kind.data == "attention" else None
        self.anchor = anchor_matmul(self.kernel.body.block) if self.kernel.kind.data == "gemm" else None

    # ---- small emitters

    def emit(self, op: Operation, location=None) -> Operation:
        op.location = location or self.location
        self.block.add_op(op)
        return op

    def bound_ivs(self) -> list[SSAValue]:
        """One index per dim: its induction variable, or 0 outside its loop."""
        return [iv if iv is not None else self.zero for iv in self.ivs]

    def affine(self, offsets) -> AffineMap:
        return AffineMap(len(self.ivs), 0, tuple(offsets))

    def dim(self, index: int) -> AffineExpr:
        """The offset of dim `index`'s tile: its induction variable, or 0 if it is not cut."""
        if self.tiles[index] >= self.bounds[index]:
            return AffineExpr.constant(0)
        return AffineExpr.dimension(index)

    def cast(self, value: SSAValue, element_type, location) -> SSAValue:
        if value.type.element_type == element_type:
            return value
        return self.emit(g.CastOp(value, tensor(value.type.get_shape(), element_type)), location).results[0]

    def loop(self, dim: int, extent: int, step: int, inits: list[SSAValue], build, upper=None) -> list[SSAValue]:
        """
        `scf.for` over `dim` up to `extent`, or to the index value `upper`
        when given; `build()` fills its body and returns the values to yield.
        """
        lb = self.emit(_index(0)).result
        ub = upper or self.emit(_index(extent)).result
        st = self.emit(_index(step)).result
        body = Block(arg_types=[IndexType(), *(v.type for v in inits)])
        for_op = scf.ForOp(lb, ub, st, inits, Region(body))
        for_op.attributes["loop.dim"] = IntegerAttr(dim, i64)
        self.emit(for_op)
        outer, self.block = self.block, body
        self.ivs[dim] = body.args[0]
        self.memo.append({})
        yielded = build(list(body.args[1:]))
        body.add_op(scf.YieldOp(*yielded))
        body.last_op.location = self.location
        self.memo.pop()
        self.ivs[dim] = None
        self.block = outer
        return list(for_op.results)

    # ---- tiles of values

    def materialize(self, value: SSAValue, region: TileRegion, pad: float = 0.0) -> SSAValue:
        key = (value, region_key(region), pad)
        for scope in reversed(self.memo):
            if key in scope:
                return scope[key]
        tile = self._materialize(value, region, pad)
        self.memo[-1][key] = tile
        return tile

    def _materialize(self, value: SSAValue, region: TileRegion, pad: float) -> SSAValue:
        sizes = [s for _, s in region]
        if isinstance(value, BlockArgument):
            source = self.args[value]
            load = loop.LoadOp(source, self.bound_ivs(), self.affine([o for o, _ in region]), sizes, "onchip", pad)
            return self.emit(load).result
        op = value.owner
        if self.attention is not None and op is self.attention[1]:
            return self.flash(op, region)
        if op is self.anchor:
            return self.reduce_matmul(op, region)
        if gathers_rows(op):
            # Read the rows the ids select straight from the table's buffer.
            count = len(shape_of(op.ids))
            ids = self.materialize(op.ids, tuple(region[:count]), pad)
            rest = region[count:]
            gather = loop.GatherOp(
                self.args[op.table], self.bound_ivs(), ids, self.affine([o for o, _ in rest]), [s for _, s in rest], pad
            )
            return self.emit(gather, op.location).result
        if isinstance(op, g.CausalMaskOp):
            inner = self.materialize(op.input, region, pad)
            s, t = shape_of(op.input)[-2:]
            offsets = [region[-2][0] + (t - s), region[-1][0]]
            return self.emit(loop.CausalMaskOp(inner, self.bound_ivs(), self.affine(offsets)), op.location).result
        if crop_of_whole(op, region):
            return self.crop(self.materialize(value, full(shape_of(value)), pad), region, op.location, pad)
        operand_pad = window_pad(op)
        regions = operand_regions(op, region)
        tiles = [
            self.materialize(v, r, operand_pad if (operand_pad is not None and i == 0) else pad)
            for i, (v, r) in enumerate(zip(op.operands, regions))
        ]
        if isinstance(op, g.SliceOp):
            # The operand's tile region already starts at the slice.
            return tiles[0]
        properties = dict(op.properties)
        if isinstance(op, (g.Conv2DOp, g.Pool2DOp)) and not _pads_itself(op):
            # The loaded window already holds the padding.
            properties["pads"] = DenseArrayBase.from_list(i64, [0, 0, 0, 0])
        new = type(op).create(
            operands=tiles,
            result_types=[tensor(sizes, op.results[0].type.element_type)],
            properties=properties,
            attributes=dict(op.attributes),
        )
        return self.emit(new, op.location).results[0]

    def crop(self, tile: SSAValue, region: TileRegion, location, pad: float = 0.0) -> SSAValue:
        """
        The constant window `region` of a whole tile, by static slices; where
        the window reaches outside the tile (a padded conv's window of a
        value computed whole, such as a reshape), the outside holds `pad`,
        joined on (as a load pads outside its buffer).
        """
        element_type = tile.type.element_type
        for axis, (offset, size) in enumerate(region):
            shape = list(tile.type.get_shape())
            start = offset.value
            before, after = max(0, -start), max(0, start + size - shape[axis])
            if before or after:
                parts = []
                for count in (before, after):
                    edge = list(shape)
                    edge[axis] = count
                    parts.append(self.emit(g.ConstantOp(pad, tensor(edge, element_type)), location).result
                                 if count else None)
                joined = [v for v in (parts[0], tile, parts[1]) if v is not None]
                shape[axis] += before + after
                tile = self.emit(g.ConcatOp(joined, axis, tensor(shape, element_type)), location).result
                start += before
            if size == shape[axis]:
                continue
            shape[axis] = size
            piece = g.SliceOp(tile, axis, start, start + size, tensor(shape, element_type))
            tile = self.emit(piece, location).result
        return tile

    def reduce_matmul(self, op: g.MatmulOp, region: TileRegion) -> SSAValue:
        """
        `sum_k lhs[.., k-tile] @ rhs[k-tile, ..]` in a register accumulator:
        f32 for floats, i32 (i64 for i64) for integers, which wrap as the
        reference's integer matmul does.
        """
        red = len(self.tiles) - 1
        extent, step = shape_of(op.lhs)[-1], self.tiles[red]
        acc_element = _accumulator(op.result.type.element_type)
        acc_type = tensor([s for _, s in region], acc_element)
        init = self.emit(loop.FillOp(0.0, acc_type), op.location).result

        def body(iters):
            (acc,) = iters
            lhs_r, rhs_r = operand_regions(op, region, (self.dim(red), step))
            lhs = self.cast(self.materialize(op.lhs, lhs_r), acc_element, op.location)
            rhs = self.cast(self.materialize(op.rhs, rhs_r), acc_element, op.location)
            part = self.emit(g.MatmulOp.create(operands=[lhs, rhs], result_types=[acc_type],
                                               properties=dict(op.properties), attributes=dict(op.attributes)),
                             op.location).results[0]
            return [self.emit(g.AddOp(acc, part, acc_type), op.location).results[0]]

        (total,) = self.loop(red, extent, step, [init], body)
        return self.cast(total, op.result.type.element_type, op.location)

    def flash(self, op: g.MatmulOp, region: TileRegion) -> SSAValue:
        """Attention as a loop over key tiles with a running max and sum."""
        softmax = self.attention[0]
        red = len(self.tiles) - 1
        keys, step = shape_of(softmax.result)[-1], self.tiles[red]
        rows = [s for _, s in region[:-1]]
        stat = tensor(rows + [1], f32)
        acc_type = tensor([s for _, s in region], f32)
        inits = [
            self.emit(loop.FillOp(float("-inf"), stat), op.location).result,
            self.emit(loop.FillOp(0.0, stat), op.location).result,
            self.emit(loop.FillOp(0.0, acc_type), op.location).result,
        ]

        def body(iters):
            key_tile = (self.dim(red), step)
            scores = self.materialize(softmax.input, tuple(region[:-1]) + (key_tile,))
            values_r = operand_regions(op, region, key_tile)[1]
            values = self.materialize(op.rhs, values_r)
            step_op = loop.OnlineSoftmaxOp(
                self.cast(scores, f32, softmax.location), self.cast(values, f32, op.location), *iters
            )
            return list(self.emit(step_op, softmax.location).results)

        _, total, acc = self.loop(red, keys, step, inits, body, self.causal_keys(region))
        out = self.emit(g.DivOp(acc, total, acc_type), op.location).results[0]
        return self.cast(out, op.result.type.element_type, op.location)

    def causal_keys(self, region: TileRegion) -> SSAValue | None:
        """
        The end of a causal flash loop's keys for the query tile at
        `region`: key tiles past the tile's last row's diagonal are wholly
        masked and add nothing (their weights are exp(-inf) = 0), so the loop
        stops at `min(keys, q + rows + keys - queries)`. None (every key
        tile) without a mask, with the queries whole, or for a dtype whose
        mask is a finite value (f8e4m3), which does weigh in.
        """
        mask = self.attention[0].input.owner
        if not isinstance(mask, g.CausalMaskOp) or not has_infinity(mask.result.type.element_type):
            return None
        queries, keys = shape_of(mask.input)[-2:]
        rows = region[-2][1]
        iv = self.ivs[self.rank - 2]
        if iv is None or rows >= queries:
            return None
        reach = self.emit(_index(rows + keys - queries), mask.location).result
        end = self.emit(arith.AddiOp(iv, reach), mask.location).result
        whole = self.emit(_index(keys), mask.location).result
        return self.emit(arith.MinSIOp(end, whole), mask.location).result

    # ---- the nest

    def build(self, body: Block, out: SSAValue) -> None:
        self.block = body
        self.zero = self.emit(_index(0)).result
        result = self.kernel.body.block.last_op.values[0]
        # A dim kept whole needs no loop.
        parallel = [d for d in self.order if self.tiles[d] < self.bounds[d]]

        def nest(depth: int, iters):
            if depth == len(parallel):
                region = tuple((self.dim(d), self.tiles[d]) for d in range(self.rank))
                tile = self.materialize(result, region)
                store = loop.StoreOp(tile, out, self.bound_ivs(), self.affine([o for o, _ in region]))
                self.emit(store, result.owner.location if isinstance(result.owner, Operation) else None)
                return []
            d = parallel[depth]
            return self.loop(d, shape_of(self.kernel.outputs[0])[d], self.tiles[d], [], lambda it: nest(depth + 1, it))

        nest(0, [])


def lower_kernel(kernel: KernelOp, ins: list[SSAValue], out: SSAValue) -> loop.KernelOp:
    """The `loop.kernel` computing `kernel` from buffers `ins` into `out`."""
    tiles = kernel.attributes.get(TILE_ATTR)
    order = kernel.attributes.get(ORDER_ATTR)
    name = kernel.kernel_name.data
    if tiles is None or order is None:
        raise ValueError(f"kernel '{name}' has no {TILE_ATTR}/{ORDER_ATTR}: run 'tile' before 'lower-to-loops'")
    tiles, order = tuple(tiles.get_values()), tuple(order.get_values())
    bounds = kernel_bounds(kernel)
    if len(tiles) != len(bounds):
        raise ValueError(f"kernel '{name}' has {len(tiles)} tile sizes for its {len(bounds)} dims {list(bounds)}")
    body = Block(arg_types=[v.type for v in (*ins, out)])
    graph_args = kernel.body.block.args
    builder = _TileBuilder(kernel, dict(zip(graph_args, body.args[: len(ins)])), tiles, order)
    try:
        builder.build(body, body.args[-1])
    except NotTileable as err:
        raise IllegalSchedule(f"kernel '{name}' cannot be tiled by {list(tiles)}: {err}") from None
    body.add_op(loop.EndOp())
    body.last_op.location = kernel.location
    ops = [o.name for o in kernel.body.block.ops if not isinstance(o, YieldOp)]
    new = loop.KernelOp(name, kernel.kind.data, ins, [out], bounds, tiles, order, ops, Region(body))
    new.location = kernel.location
    # Decisions for later passes (a pinned dataflow) travel with the kernel.
    for key, value in kernel.attributes.items():
        if key not in (TILE_ATTR, ORDER_ATTR, "kind"):
            new.attributes[key] = value
    return new


def lower_function(fn: func.FuncOp) -> None:
    """Rewrite `fn`'s body from tensors between kernels to buffers."""
    block = fn.body.block
    # The buffers go in a new block that replaces the old one: inserting and
    # erasing arguments one at a time renumbers all the others each time,
    # quadratic in the number of params (20,000 params took minutes).
    new_block = Block(arg_types=[buffer_type(arg.type) for arg in block.args])
    values: dict[SSAValue, SSAValue] = {}
    for arg, new_arg in zip(block.args, new_block.args):
        new_arg.name_hint = arg.name_hint
        values[arg] = new_arg
    old_ops = list(block.ops)
    for op in old_ops:
        new_ops: list[Operation] = []
        if isinstance(op, KernelOp):
            alloc = memref.AllocOp([], [], buffer_type(op.outputs[0].type))
            new_ops = [alloc, lower_kernel(op, [values[v] for v in op.inputs], alloc.memref)]
            values[op.outputs[0]] = alloc.memref
        elif isinstance(op, RelayoutOp):
            alloc = memref.AllocOp([], [], buffer_type(op.result.type))
            new_ops = [alloc, loop.CopyOp(values[op.input], alloc.memref)]
            values[op.result] = alloc.memref
        elif isinstance(op, g.CollectiveOp):
            alloc = memref.AllocOp([], [], buffer_type(op.result.type))
            kind = {g.AllReduceOp: loop.AllReduceOp, g.AllGatherOp: loop.AllGatherOp,
                    g.ReduceScatterOp: loop.ReduceScatterOp}[type(op)]
            new_ops = [alloc, kind(values[op.input], alloc.memref, loop.collective_properties(op))]
            values[op.result] = alloc.memref
        elif isinstance(op, g.ReshapeOp):
            view = loop.ViewOp(values[op.input], buffer_type(op.result.type))
            new_ops = [view]
            values[op.result] = view.result
        elif isinstance(op, func.ReturnOp):
            new_ops = [func.ReturnOp(*(values[v] for v in op.operands))]
        elif isinstance(op, g.ConstantOp) and not op.result.uses:
            pass
        else:
            raise ValueError(f"'{op.name}' outside a kernel cannot be lowered to loops")
        for new in new_ops:
            new.location = op.location
            new_block.add_op(new)
    fn.body.insert_block_before(new_block, block)
    fn.body.detach_block(block)
    for op in reversed(old_ops):
        op.detach()
        op.erase(safe_erase=False)
    fn.update_function_type()


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class LowerToLoopsPass(ModulePass):
    """Lower every `graph.kernel` to a tiled `loop.kernel` over global buffers."""

    name = "lower-to-loops"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for fn in list(op.walk()):
            if isinstance(fn, func.FuncOp) and not fn.is_declaration:
                lower_function(fn)

