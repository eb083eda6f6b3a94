"""
Interpreter of loop- and hardware-stage IR: runs tiled loop nests on whole
tiles with NumPy. A hardware kernel runs the loop nest it wraps; its matrix-unit
op is a matmul and `tsp.transfer` a copy.

A global buffer is a NumPy array of its *physical* shape (`physical_shape`
of its `#graph.layout`): a relayout really moves elements, and every
`loop.load`/`loop.store` translates logical tile indices to physical ones
through the layout, so a wrong layout or a wrong tile offset gives wrong
numbers. Tiles are NumPy arrays; graph ops on tiles run through the
reference executor's handlers, so both stages share one semantics, and the
ops only loop and hardware IR have are dispatched the same way (`register`,
one handler per op class, in `HANDLERS`).
`run_module` takes the same inputs and weights as `reference.run_module`
and returns the logical outputs.

Loops are checked as they start, since their bounds may be computed: a
non-positive step, a tile loop reaching outside its kernel's dim
(`loop.dim` into the kernel's `bounds`), or more iterations than
`MAX_ITERATIONS` left for the run (an edited dump's runaway bound) is an
error at the loop's location, never a spin or a silently skipped loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from xdsl.dialects import arith, func, memref, scf
from xdsl.dialects.builtin import IntegerAttr, MemRefType, ModuleOp
from xdsl.ir import Block, Operation, SSAValue

from strata.compiler.execution import reference, spmd
from strata.compiler.execution.reference import ExecutionError, convert, numpy_dtype, op_error
from strata.dialects import loop
from strata.dialects.hardware import END_OPS, HardwareKernelOp, MatrixOp, TransferOp
from strata.dialects.graph.layout import LayoutAttr, layout_of, physical_shape
from strata.dialects.loop import INDEX_OPS

MAX_ITERATIONS = 1_000_000
"""Loop iterations one run may take, all loops together. Each runs NumPy on
whole tiles, so this is hours of work; a full-size GPT-2 takes some 270,000."""

_BUDGET = "iterations left"
"""The key of the run's `_Budget` in every env (never an SSA value)."""


class _Budget:
    """Loop iterations the run has left, shared by all its scopes."""

    def __init__(self) -> None:
        self.left = MAX_ITERATIONS

# --------------------------------------------------------------------------- layouts


def _physical_index(layout: LayoutAttr, index: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Logical index arrays -> physical ones: permute, then split tiled dims."""
    permuted = [index[d] for d in layout.perm]
    split = len(permuted) - len(layout.tiles)
    outer = [i // t for i, t in zip(permuted[split:], layout.tiles)]
    inner = [i % t for i, t in zip(permuted[split:], layout.tiles)]
    return (*permuted[:split], *outer, *inner)


def to_physical(value: np.ndarray, layout: LayoutAttr) -> np.ndarray:
    out = np.zeros(physical_shape(layout, value.shape), value.dtype)
    index = np.indices(value.shape, sparse=True)
    out[_physical_index(layout, tuple(index))] = value
    return out


def to_logical(buffer: np.ndarray, layout: LayoutAttr, shape: tuple[int, ...]) -> np.ndarray:
    index = np.indices(shape, sparse=True)
    return buffer[_physical_index(layout, tuple(index))]


def _tile_index(offsets, sizes, shape):
    """Broadcastable logical index arrays of a tile and the in-bounds mask."""
    index, inside = [], True
    rank = len(sizes)
    for d, (o, s) in enumerate(zip(offsets, sizes)):
        axis = np.arange(o, o + s).reshape([-1 if i == d else 1 for i in range(rank)])
        ok = (axis >= 0) & (axis < shape[d])
        inside = inside & ok
        index.append(np.clip(axis, 0, max(shape[d] - 1, 0)))
    return tuple(index), inside


class _Buffer:
    """A global buffer: its physical array, layout and logical shape."""

    def __init__(self, data: np.ndarray, type_: MemRefType):
        self.data = data
        self.layout = layout_of(type_)
        self.shape = tuple(type_.get_shape())

    def load(self, offsets, sizes, pad: float) -> np.ndarray:
        index, inside = _tile_index(offsets, sizes, self.shape)
        values = self.data[_physical_index(self.layout, index)]
        if np.all(inside):
            return values
        fill = convert(np.asarray(pad, np.float64), self.data.dtype) if self.data.dtype.kind == "f" else 0
        return np.where(inside, values, fill).astype(self.data.dtype)

    def gather(self, rows: np.ndarray, offsets, sizes, pad: float) -> np.ndarray:
        """Rows `rows` (in range, see `reference.gather_rows`), each cut at `offsets`/`sizes`, `pad` outside."""
        ids = rows
        lead = (1,) * ids.ndim
        rows = rows.reshape(ids.shape + (1,) * len(sizes))
        rest, inside = _tile_index(offsets, sizes, self.shape[1:])
        index = (rows, *(r.reshape(lead + r.shape) for r in rest))
        values = np.broadcast_to(self.data[_physical_index(self.layout, index)], ids.shape + tuple(sizes))
        if np.all(inside):
            return values
        fill = convert(np.asarray(pad, np.float64), self.data.dtype) if self.data.dtype.kind == "f" else 0
        return np.where(np.reshape(inside, lead + np.shape(inside)), values, fill).astype(self.data.dtype)

    def store(self, offsets, tile: np.ndarray) -> None:
        if tile.ndim == 0:
            # A rank-0 buffer: there is no index to mask (ml_dtypes types
            # refuse the masked (1,)-array a 0-d mask gives).
            self.data[...] = tile
            return
        index, inside = _tile_index(offsets, tile.shape, self.shape)
        inside = np.broadcast_to(inside, tile.shape)
        full = tuple(np.broadcast_to(i, tile.shape) for i in index)
        physical = _physical_index(self.layout, tuple(i[inside] for i in full))
        self.data[physical] = tile[inside]

    def logical(self) -> np.ndarray:
        return to_logical(self.data, self.layout, self.shape)


# --------------------------------------------------------------------------- ops


def _offsets(op, env) -> tuple[int, ...]:
    ivs = [env[v] for v in op.indices]
    return op.map.data.eval(ivs, [])


def _online_softmax(s, v, m, l, acc):
    new_max = np.maximum(m, s.max(axis=-1, keepdims=True))
    # Rows with no unmasked key yet keep max -inf: scale by 0, not NaN.
    safe = np.where(np.isneginf(new_max), 0.0, new_max)
    p = np.exp(s - safe)
    scale = np.where(np.isneginf(m), 0.0, np.exp(m - safe))
    return new_max, l * scale + p.sum(axis=-1, keepdims=True), acc * scale + p @ v


def _run_block(block: Block, env: dict) -> list:
    for op in block.ops:
        if isinstance(op, (scf.YieldOp, func.ReturnOp)):
            return [env[v] for v in op.operands]
        if isinstance(op, (loop.EndOp, *END_OPS)):
            return []
        _run_op(op, env)
    return []


# --------------------------------------------------------------------------- dispatch

LoopHandler = Callable[[Operation, dict], None]
"""`handler(op, env)` binds the op's results in `env` (or writes the buffers it stores to)."""

HANDLERS: dict[type[Operation], LoopHandler] = {}
"""The dispatch table of the ops only loop and hardware IR have; graph ops on tiles use the reference's."""


def register(*op_classes: type[Operation]):
    """Decorator registering a handler for `op_classes` (and their subclasses), as `reference.register` does."""

    def decorate(handler: LoopHandler) -> LoopHandler:
        for cls in op_classes:
            HANDLERS[cls] = handler
        return handler

    return decorate


def _handler(cls: type[Operation]) -> LoopHandler | None:
    return next((HANDLERS[base] for base in cls.__mro__ if base in HANDLERS), None)


def _run_op(op: Operation, env: dict) -> None:
    handler = _handler(type(op))
    if handler is not None:
        handler(op, env)
    elif type(op) in reference.HANDLERS:
        for result, value in zip(op.results, reference._execute(op, env)):
            env[result] = value
    else:
        raise op_error(ExecutionError, op, f"the loop interpreter does not support '{op.name}'")


@register(arith.ConstantOp)
def _constant(op, env) -> None:
    env[op.result] = op.value.value.data


@register(*INDEX_OPS)
def _index_arithmetic(op, env) -> None:
    env[op.result] = INDEX_OPS[type(op)](env[op.lhs], env[op.rhs])


@register(memref.AllocOp)
def _alloc(op, env) -> None:
    type_ = op.memref.type
    shape = physical_shape(layout_of(type_), type_.get_shape())
    env[op.memref] = _Buffer(np.zeros(shape, numpy_dtype(type_.element_type)), type_)


@register(loop.KernelOp, HardwareKernelOp)
def _kernel(op, env) -> None:
    inner = dict(zip(op.body.block.args, (env[v] for v in (*op.ins, *op.outs))))
    inner[_BUDGET] = env[_BUDGET]
    _run_block(op.body.block, inner)


@register(scf.ForOp)
def _for(op, env) -> None:
    lb, ub, step = env[op.lb], env[op.ub], env[op.step]
    if step <= 0:
        # range() would run a negative step backwards, or skip the loop, and print wrong numbers.
        raise op_error(ExecutionError, op, f"a loop from {lb} to {ub} steps by {step}; steps must be positive")
    bound = _kernel_bound(op)
    if bound is not None and not 0 <= lb <= ub <= bound:
        raise op_error(
            ExecutionError, op, f"a tile loop from {lb} to {ub} leaves its kernel's dim, which spans 0 to {bound}"
        )
    budget = env[_BUDGET]
    trips = len(range(lb, ub, step))
    if trips > budget.left:
        raise op_error(
            ExecutionError, op,
            f"a loop from {lb} to {ub} by {step} runs {trips:,} iterations, more than the"
            f" {budget.left:,} left of the {MAX_ITERATIONS:,} a run may take (an edited bound?)",
        )
    budget.left -= trips
    carried = [env[v] for v in op.iter_args]
    body = op.body.block
    for iv in range(lb, ub, step):
        scope = dict(env)
        scope[body.args[0]] = iv
        scope.update(zip(body.args[1:], carried))
        carried = _run_block(body, scope)
    env.update(zip(op.results, carried))


def _kernel_bound(op: scf.ForOp) -> int | None:
    """The extent of the kernel dim a tile loop walks (its `loop.dim` into the kernel's `bounds`), when known."""
    dim = op.attributes.get("loop.dim")
    kernel = op.parent_op()
    while kernel is not None and not isinstance(kernel, (loop.KernelOp, HardwareKernelOp)):
        kernel = kernel.parent_op()
    if not isinstance(dim, IntegerAttr) or kernel is None:
        return None
    bounds = kernel.bounds.get_values()
    return bounds[dim.value.data] if 0 <= dim.value.data < len(bounds) else None


@register(loop.LoadOp)
def _load(op, env) -> None:
    env[op.result] = env[op.source].load(_offsets(op, env), op.result.type.get_shape(), op.pad.value.data)


@register(loop.GatherOp)
def _gather(op, env) -> None:
    sizes = op.result.type.get_shape()[len(op.ids.type.get_shape()):]
    source = env[op.source]
    # Ids as graph.gather reads them; an ids tile's padding (an edge tile) is 0, a valid row.
    rows = reference.gather_rows(op, env[op.ids], source.shape[0])
    env[op.result] = source.gather(rows, _offsets(op, env), sizes, op.pad.value.data)


@register(loop.StoreOp)
def _store(op, env) -> None:
    env[op.dest].store(_offsets(op, env), env[op.value])


@register(loop.FillOp)
def _fill(op, env) -> None:
    type_ = op.result.type
    env[op.result] = np.full(type_.get_shape(), op.value.value.data, numpy_dtype(type_.element_type))


@register(loop.CausalMaskOp)
def _causal_mask(op, env) -> None:
    x = env[op.input]
    row, col = _offsets(op, env)
    i = np.arange(x.shape[-2])[:, None] + row
    j = np.arange(x.shape[-1])[None, :] + col
    # The reference's masked value: -inf, or -448 for f8e4m3 (no infinities).
    env[op.result] = np.where(j > i, x.dtype.type(reference._masked_value(x.dtype)), x)


@register(loop.OnlineSoftmaxOp)
def _online_softmax_op(op, env) -> None:
    args = [env[v].astype(np.float32) for v in op.operands]
    for result, value in zip(op.results, _online_softmax(*args)):
        env[result] = value.astype(np.float32)


@register(MatrixOp)
def _matrix_unit(op, env) -> None:
    # A matrix unit computes what graph.matmul does, through the same rounding.
    lhs, rhs = (reference._compute_dtype(env[v]) for v in (op.lhs, op.rhs))
    env[op.result] = reference._finish(op, op.result.type, np.matmul(lhs, rhs))


@register(loop.CopyOp, TransferOp)
def _copy(op, env) -> None:
    source, dest = env[op.source], env[op.dest]
    dest.data[...] = to_physical(source.logical(), dest.layout)


@register(loop.AllReduceBase)
def _all_reduce(op, env) -> None:
    total = spmd.all_reduce(env[op.source].logical(), op.axis.data, op.devices.value.data)
    env[op.dest].data[...] = to_physical(total, env[op.dest].layout)


@register(loop.AllGatherBase)
def _all_gather(op, env) -> None:
    source = env[op.source].logical()
    whole = spmd.all_gather(source, op.axis.data, op.devices.value.data, op.dim.value.data, op.groups.value.data)
    env[op.dest].data[...] = to_physical(whole, env[op.dest].layout)


@register(loop.ReduceScatterBase)
def _reduce_scatter(op, env) -> None:
    source = env[op.source].logical()
    mine = spmd.reduce_scatter(source, op.axis.data, op.devices.value.data, op.dim.value.data, op.groups.value.data)
    env[op.dest].data[...] = to_physical(mine, env[op.dest].layout)


@register(loop.ViewOp)
def _view(op, env) -> None:
    source = env[op.source]
    env[op.result] = _Buffer(source.data.reshape(op.result.type.get_shape()), op.result.type)


# --------------------------------------------------------------------------- entry points


def run_function(fn: func.FuncOp, args) -> list[np.ndarray]:
    """Run a loop-stage function on logical argument arrays; return logical results."""
    block = fn.body.block
    if len(args) != len(block.args):
        raise ExecutionError(f"error: @{fn.sym_name.data} takes {len(block.args)} arguments, got {len(args)}")
    env: dict[SSAValue | str, object] = {_BUDGET: _Budget()}
    for arg, value in zip(block.args, args):
        type_ = arg.type
        value = convert(np.asarray(value), numpy_dtype(type_.element_type))
        if value.shape != tuple(type_.get_shape()):
            raise ExecutionError(f"error: an argument has shape {value.shape}, the function needs {type_.get_shape()}")
        env[arg] = _Buffer(to_physical(value, layout_of(type_)), type_)
    with np.errstate(all="ignore"):
        outputs = _run_block(block, env)
    return [buffer.logical() for buffer in outputs]


def run_module(module: ModuleOp, inputs: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray]):
    """Like `reference.run_module`, for loop-stage IR."""
    fn = reference.model_function(module)
    names = reference.argument_names(fn)
    pools = {"input": inputs, "param": weights}
    missing = [n for k, n in names if n not in pools[k]]
    if missing:
        raise ExecutionError(f"error: no value given for {', '.join(repr(n) for n in missing)}")
    return spmd.run(module, fn, [pools[k][n] for k, n in names], run_function)
