"""
`shard{tp=N, dp=M, sp=false}`: split a graph-stage program over a mesh of
`dp x tp` devices, as one SPMD program every device runs on its own shards.

Preconditions: graph-stage IR (one `func.func` of graph ops, no kernels).
Postconditions: the function is the program of *one* device: every value
has its local shape, and every argument split over the mesh carries
`strata.split` (`dialects/vocabulary.py`: axis, dim, groups); the module
records the mesh (`strata.tp`, `strata.dp`). Communication is explicit:
`graph.all_reduce` where a contraction left partial sums, `graph.all_gather`
where an op needs a whole tensor, and before the return, so the program's
outputs are whole on every device. Run on every device with the blocks of
its arguments (`compiler/execution/spmd.py`), the program computes what the
unsharded one did.

How values get split (one pass in program order, each mesh axis on its own):
- Tensor parallelism (Megatron-LM, Shoeybi et al., 2019): a matmul of a
  value whole along `tp` by a weight (a `param`) splits the weight's
  columns, so its output is split along its last dim; a matmul whose input
  is split along the contraction dim splits the weight's rows, and its
  partial sums meet in an `all_reduce`. Attention then splits by heads on
  its own: the split last dim of Q/K/V becomes the head dim through the
  reshape and transpose, and a KV cache `param` beside it is split to
  match. A fused weight whose output is `split` into parts (GPT-2's QKV) is
  split part by part (`groups`).
- Sequence parallelism (`sp`, with tp > 1; Korthikanti et al., "Reducing
  Activation Recomputation in Large Transformer Models", 2022): where tensor
  parallelism would all-reduce partial sums, a `reduce_scatter` along the
  rows (`sequence_dim`: the first dim, not the batch's nor the last, that
  tp divides; an `all_reduce` where none does) leaves each device its block
  of the sum, and the model's inputs are split the same way along tp, so
  the residual stream, norms and elementwise ops run on `1/tp` of the rows.
  A matmul of such a row block by a weight it can column-split gathers it
  first (`all_gather`), so each reduce-scatter/all-gather pair replaces
  one all-reduce, as in Megatron-LM; so does one whose product is wider
  than the block (an LM head), since gathering the block moves less than
  gathering the product would.
- Data parallelism: every model input whose leading dim is the batch
  (`strata.batch`) is split along `dp`; weights stay whole, state with a
  batch dim (KV caches) is split to match.
- Everything else follows its operands: elementwise ops (with
  broadcasting), transposes, reshapes that keep the split dim outermost of
  its group, slices, concats and reductions along other dims. An op that
  cannot take a split operand gets it whole (`all_gather`) first, so any
  program shards correctly, at worst with more communication.

A weight is split at its first use that asks for it and whole otherwise;
a later use that wants it otherwise gathers. A weight computed element by
element from params alone (`dequantize(w, s)`, a cast) is split the same
way: its params along the dims that do not broadcast (a per-channel scale
with its channels, a per-tensor one whole), so a quantized model shards as
its float twin does. `quantize`/`dequantize` of activations pass a split
through like any element-wise op. `tp = dp = 1` leaves the
module untouched; a module that records a mesh is not sharded again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, IntegerAttr, IntegerType, ModuleOp, StringAttr, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from strata.dialects.graph import INPUT_ATTR, PARAM_ATTR
from strata.dialects.graph import ops as g
from strata.dialects.graph.kernel import KernelOp
from strata.dialects.vocabulary import BATCH_ATTR, MESH_ATTRS, SPLIT_ATTR, IllegalSchedule, mesh_sizes

Split = dict[str, tuple[int, int]]
"""How one value is split: mesh axis -> (dim, groups); an axis absent: whole along it."""

ELEMENTWISE = (g.BinaryElementwiseOp, g.UnaryElementwiseOp, g.CastOp, g.QuantizationOp)
"""Ops that map their operands element by element (with broadcasting): a split passes through them."""

# --------------------------------------------------------------------------- helpers


def _shape(value: SSAValue) -> tuple[int, ...]:
    return tuple(value.type.get_shape())


def _rank(value: SSAValue) -> int:
    return len(value.type.get_shape())


def _local(type_: TensorType, split: Split, sizes: dict[str, int]) -> TensorType:
    shape = list(type_.get_shape())
    for axis, (dim, _) in split.items():
        shape[dim] //= sizes[axis]
    return TensorType(type_.element_type, shape)


def _reshape_dim(source: tuple[int, ...], target: tuple[int, ...], dim: int, devices: int) -> int | None:
    """
    The dim of `target` that carries a split of `source`'s `dim` through a
    row-major reshape, or None: the one whose leading elements match `dim`'s
    (same product of the dims before it), evenly divisible by `devices`.
    Then element `f` of the flat buffer is on the same device either way.
    """
    before = math.prod(source[:dim])
    for k in range(len(target)):
        if math.prod(target[:k]) == before and target[k] > 1 and target[k] % devices == 0:
            return k
        if math.prod(target[:k]) > before:
            break
    return None


def sequence_dim(shape: tuple[int, ...], devices: int, batch: int | None, taken: set[int],
                 last: bool = False) -> int | None:
    """
    The dim sequence parallelism splits a value of (whole) `shape` along:
    the first that is neither the batch (a leading dim equal to the model's
    `batch`) nor the last (features; `last` allows it, for token ids), nor
    in `taken` (split along another axis), and that `devices` divides. None
    if there is none.
    """
    for dim, size in enumerate(shape):
        if dim == 0 and batch is not None and len(shape) > 1 and size == batch:
            continue
        if (dim == len(shape) - 1 and not last) or dim in taken:
            continue
        if size > 1 and size % devices == 0:
            return dim
    return None


# --------------------------------------------------------------------------- the sharder


@dataclass
class _Sharder:
    fn: func.FuncOp
    sizes: dict[str, int]
    """Devices along each mesh axis used (> 1)."""
    sp: bool = False
    """Sequence parallelism: partial sums along tp are reduce-scattered over the rows (see the module docstring)."""
    batch: int | None = None
    """The model's batch (`strata.batch`), if known: never the dim sequence parallelism splits."""

    def __post_init__(self):
        block = self.fn.body.block
        attrs = self.fn.arg_attrs.data if self.fn.arg_attrs else [DictionaryAttr({})] * len(block.args)
        self.kinds = [
            "param" if PARAM_ATTR in a.data else "input" if INPUT_ATTR in a.data else "" for a in attrs
        ]
        self.split: dict[SSAValue, Split] = {}
        self.decided: set[int] = set()
        """Arguments (by index) whose split is settled (a use took them as they were)."""
        self.gathered: dict[tuple[SSAValue, str], SSAValue] = {}
        self.derived: dict[SSAValue, Operation] = {}
        """Weights computed element by element from params only (`dequantize(w, s)`): split like a param."""

    # -- arguments

    def _argument(self, value: SSAValue) -> int | None:
        block = self.fn.body.block
        return value.index if value in block.args else None

    def split_argument(self, value: SSAValue, axis: str, dim: int, groups: int, params_only: bool = True) -> bool:
        """
        Split an argument not settled yet along `axis` at `dim`, or a derived
        weight (its params along the dims that broadcast to `dim`); False if
        it cannot be.
        """
        if value in self.derived:
            if not self._can_split(value, axis, dim, groups):
                return False
            op = self.derived.pop(value)
            for index, own in self._operand_dims(op, dim):
                self.split_argument(op.operands[index], axis, own, groups)
            self.derived[self._retype(value, axis, dim, groups)] = op
            return True
        index = self._argument(value)
        if index is None or index in self.decided or axis in self.split.get(value, {}):
            return False
        if params_only and self.kinds[index] != "param":
            return False
        if _shape(value)[dim] % (self.sizes[axis] * groups):
            return False
        self._retype(value, axis, dim, groups)
        return True

    def _retype(self, value: SSAValue, axis: str, dim: int, groups: int) -> SSAValue:
        """Give `value` its local type, split along `axis` at `dim`; the new value."""
        split = {**self.split.get(value, {}), axis: (dim, groups)}
        whole = value.type
        new = Rewriter.replace_value_with_new_type(value, _local(whole, {axis: (dim, groups)}, self.sizes))
        self.split.pop(value, None)
        self.split[new] = split
        return new

    # -- derived weights: `dequantize(w, s)` of params splits where the params do

    @staticmethod
    def _operand_dims(op: Operation, dim: int) -> list[tuple[int, int]]:
        """(operand index, its dim) for each operand of an element-wise `op` that does not broadcast along `dim`."""
        rank = _rank(op.results[0])
        dims = []
        for index, operand in enumerate(op.operands):
            own = dim - (rank - _rank(operand))
            if own >= 0 and _shape(operand)[own] != 1:
                dims.append((index, own))
        return dims

    def _weight_like(self, value: SSAValue) -> bool:
        """An unsplit param, constant or derived weight: what a derived weight is computed from."""
        if self.split.get(value):
            return False
        if value in self.derived or isinstance(value.owner, g.ConstantOp):
            return True
        index = self._argument(value)
        return index is not None and self.kinds[index] == "param"

    def _can_split(self, value: SSAValue, axis: str, dim: int, groups: int) -> bool:
        """
        Whether `split_argument` would split the weight `value` (without doing
        it): an unsplit param not settled yet, or a derived weight whose
        operands that do not broadcast along `dim` can be split.
        """
        if self.split.get(value) or _shape(value)[dim] % (self.sizes[axis] * groups):
            return False
        if value in self.derived:
            op = self.derived[value]
            return all(self._can_split(op.operands[i], axis, own, groups) for i, own in self._operand_dims(op, dim))
        index = self._argument(value)
        return index is not None and index not in self.decided and self.kinds[index] == "param"

    def _leaves(self, value: SSAValue) -> list[SSAValue]:
        """The arguments `value` is (itself, or the params of a derived weight)."""
        if value in self.derived:
            return [leaf for operand in self.derived[value].operands for leaf in self._leaves(operand)]
        return [value] if self._argument(value) is not None else []

    def splits_of_arguments(self) -> list[list[tuple[str, int, int]]]:
        return [
            [(axis, dim, groups) for axis, (dim, groups) in sorted(self.split.get(arg, {}).items())]
            for arg in self.fn.body.block.args
        ]

    # -- communication

    def gather(self, op: Operation, index: int, axis: str) -> SSAValue:
        """Make operand `index` of `op` whole along `axis` (an `all_gather` before `op`)."""
        value = op.operands[index]
        split = self.split.get(value, {})
        if axis not in split:
            return value
        key = (value, axis)
        if key not in self.gathered:
            dim, groups = split[axis]
            gather = g.AllGatherOp(value, axis, self.sizes[axis], dim, groups)
            gather.location = op.location
            Rewriter.insert_op(gather, InsertPoint.before(op))
            self.split[gather.result] = {a: s for a, s in split.items() if a != axis}
            self.gathered[key] = gather.result
        op.operands[index] = self.gathered[key]
        return op.operands[index]

    def gather_all(self, op: Operation, axis: str) -> None:
        for index in range(len(op.operands)):
            self.gather(op, index, axis)

    def reduce(self, op: Operation, axis: str) -> None:
        """
        Sum `op`'s partial result over the devices along `axis`: an
        `all_reduce` after it, or with sequence parallelism a `reduce_scatter`
        that leaves each device its block of the rows.
        """
        value = op.results[0]
        split = dict(self.split.get(value, {}))
        dim = self.scatter_dim(value, axis)
        if dim is None:
            reduce = g.AllReduceOp(value, axis, self.sizes[axis])
        else:
            reduce = g.ReduceScatterOp(value, axis, self.sizes[axis], dim)
            split[axis] = (dim, 1)
        reduce.location = op.location
        Rewriter.insert_op(reduce, InsertPoint.after(op))
        for use in list(value.uses):
            if use.operation is not reduce:
                use.operation.operands[use.index] = reduce.result
        self.split[reduce.result] = split

    def scatter_dim(self, value: SSAValue, axis: str) -> int | None:
        """Where sequence parallelism scatters a partial sum along `axis` (None: all-reduce it)."""
        if not self.sp or axis != "tp":
            return None
        taken = {dim for dim, _ in self.split.get(value, {}).values()}
        return sequence_dim(self.whole_shape(value), self.sizes[axis], self.batch, taken)

    def whole_shape(self, value: SSAValue) -> tuple[int, ...]:
        """The shape `value` has on no device: its local shape times the devices along each split."""
        shape = list(_shape(value))
        for axis, (dim, _) in self.split.get(value, {}).items():
            shape[dim] *= self.sizes[axis]
        return tuple(shape)

    def of(self, value: SSAValue, axis: str) -> tuple[int, int] | None:
        return self.split.get(value, {}).get(axis)

    # -- rules: each returns the split of the op's results, gathering operands it cannot take split

    def elementwise(self, op: Operation, axis: str) -> tuple[int, int] | None:
        rank = _rank(op.results[0])
        while True:
            holders = [(i, v) for i, v in enumerate(op.operands) if self.of(v, axis)]
            if not holders:
                return None
            first, value = holders[0]
            dim, groups = self.of(value, axis)
            dim += rank - _rank(value)
            if isinstance(op, g.CausalMaskOp) and dim >= rank - 2:
                self.gather_all(op, axis)  # the mask depends on positions along the last two dims
                continue
            agreed = True
            for i, other in enumerate(op.operands):
                own = dim - (rank - _rank(other))
                if own < 0 or self.whole_shape(other)[own] == 1:
                    if self.of(other, axis):
                        agreed = False
                    continue
                if self.of(other, axis) == (own, groups):
                    continue
                if self.of(other, axis) is None and self.split_argument(op.operands[i], axis, own, groups):
                    continue
                agreed = False
            if agreed:
                return dim, groups
            self.gather_all(op, axis)

    def matmul(self, op: g.MatmulOp, axis: str) -> tuple[tuple[int, int] | None, bool]:
        """`(result split, partial)`: partial sums when both operands are split along the contraction."""
        ra, rb, rank = _rank(op.lhs), _rank(op.rhs), _rank(op.result)
        sa = self.of(op.lhs, axis)
        if self.sp and axis == "tp" and sa is not None and sa[0] < ra - 1 and self.of(op.rhs, axis) is None:
            # Sequence parallelism: a row block meets a weight tensor parallelism splits by columns (Megatron's
            # g), or one whose product is wider than the block (an LM head): gathering the block moves less.
            if self.column_splittable(op, axis) or _shape(op.rhs)[-1] > _shape(op.rhs)[-2]:
                self.gather(op, 0, axis)
        while True:
            sa, sb = self.of(op.lhs, axis), self.of(op.rhs, axis)
            if sa is None and sb is None:
                return self.column_split(op, axis), False
            if sa is not None and sa[0] == ra - 1:  # a split along K: b's rows must match
                if sb is None and self.split_argument(op.rhs, axis, rb - 2, sa[1]):
                    return None, True
                if sb == (rb - 2, sa[1]):
                    return None, True
                self.gather_all(op, axis)
                continue
            if sb is not None and sb[0] == rb - 2:  # b split along K, a whole
                if self.split_argument(op.lhs, axis, ra - 1, sb[1]):
                    return None, True
                self.gather_all(op, axis)
                continue
            if sa is not None and sa[0] == ra - 2 and sb is None:
                return (rank - 2, sa[1]), False
            if sb is not None and sb[0] == rb - 1 and sa is None:
                return (rank - 1, sb[1]), False
            batch = self.batch_split(op, axis, sa, sb)
            if batch is not None:
                return batch, False
            self.gather_all(op, axis)

    def batch_split(self, op: g.MatmulOp, axis: str, sa, sb) -> tuple[int, int] | None:
        """Both operands split alike along one batch dim (or the other broadcast there)."""
        ra, rb, rank = _rank(op.lhs), _rank(op.rhs), _rank(op.result)
        for mine, theirs, index, (r_mine, r_theirs) in ((sa, sb, 1, (ra, rb)), (sb, sa, 0, (rb, ra))):
            if mine is None or mine[0] >= r_mine - 2:
                continue
            dim = mine[0] + rank - r_mine
            other = op.operands[index]
            own = dim - (rank - r_theirs)
            if own < 0 or self.whole_shape(other)[own] == 1:
                if theirs is None:
                    return dim, mine[1]
                continue
            if theirs == (own, mine[1]) or (theirs is None and self.split_argument(other, axis, own, mine[1])):
                return dim, mine[1]
        return None

    def column_split(self, op: g.MatmulOp, axis: str) -> tuple[int, int] | None:
        """Megatron's column split of a weight multiplied by a whole activation (tensor parallelism only)."""
        if axis != "tp" or not self._leaves(op.rhs):
            return None
        parts = self._column_parts(op)
        if self.split_argument(op.rhs, axis, _rank(op.rhs) - 1, parts):
            return _rank(op.result) - 1, parts
        return None

    def _column_parts(self, op: g.MatmulOp) -> int:
        """The parts a fused weight's columns make (its output `split` along the last dim), else 1."""
        users = [use.operation for use in op.result.uses]
        if len(users) == 1 and isinstance(users[0], g.SplitOp):
            if users[0].axis.value.data % _rank(op.result) == _rank(op.result) - 1:
                return len(users[0].outputs)
        return 1

    def column_splittable(self, op: g.MatmulOp, axis: str) -> bool:
        """Whether `column_split` would split `op`'s weight (what `split_argument` checks, without doing it)."""
        return axis == "tp" and self._can_split(op.rhs, axis, _rank(op.rhs) - 1, self._column_parts(op))

    def follow(self, op: Operation, axis: str, blocked, mapping) -> tuple[int, int] | None:
        """One-operand ops: the split moves to `mapping(dim)` unless `blocked(dim)` (then gathered)."""
        split = self.of(op.operands[0], axis)
        if split is None:
            return None
        dim, groups = split
        if blocked(dim, groups):
            self.gather(op, 0, axis)
            return None
        return mapping(dim), groups

    def concat(self, op: g.ConcatOp, axis: str) -> tuple[int, int] | None:
        along = op.axis.value.data % _rank(op.result)
        while True:
            splits = {self.of(v, axis) for v in op.operands} - {None}
            if not splits:
                return None
            split = next(iter(splits))
            if len(splits) == 1 and split[0] != along:
                if all(
                    self.of(v, axis) is not None or self.split_argument(v, axis, *split) for v in list(op.operands)
                ):
                    return split
            self.gather_all(op, axis)

    # -- the walk

    def result_split(self, op: Operation, axis: str) -> tuple[tuple[int, int] | None, bool]:
        """The split of `op`'s results along `axis`, and whether they are partial sums."""
        if isinstance(op, g.MatmulOp):
            return self.matmul(op, axis)
        if isinstance(op, (*ELEMENTWISE, g.CausalMaskOp)):
            return self.elementwise(op, axis), False
        if isinstance(op, g.ConcatOp):
            return self.concat(op, axis), False
        if isinstance(op, g.TransposeOp):
            perm = list(op.perm.get_values())
            return self.follow(op, axis, lambda d, _: False, perm.index), False
        if isinstance(op, g.ReshapeOp):
            source = self.whole_shape(op.input)
            target = _shape(op.result)
            n = self.sizes[axis]
            return self.follow(
                op, axis, lambda d, groups: groups > 1 or _reshape_dim(source, target, d, n) is None,
                lambda d: _reshape_dim(source, target, d, n),
            ), False
        if isinstance(op, g.SliceOp):
            along = op.axis.value.data % _rank(op.input)
            return self.follow(op, axis, lambda d, _: d == along, lambda d: d), False
        if isinstance(op, g.SplitOp):
            along, parts = op.axis.value.data % _rank(op.input), len(op.outputs)
            split = self.follow(op, axis, lambda d, groups: d == along and groups != parts, lambda d: d)
            return (None if split is None else (split[0], 1 if split[0] == along else split[1])), False
        if isinstance(op, g.AxisOp):
            along = op.axis.value.data % _rank(op.input)
            return self.follow(op, axis, lambda d, _: d == along, lambda d: d), False
        if isinstance(op, g.NormOp):
            self._gather_operands_after(op, 1, axis)
            along = op.axis.value.data % _rank(op.input)
            return self.follow(op, axis, lambda d, _: d >= along, lambda d: d), False
        if isinstance(op, g.ReductionOp):
            axes = {a % _rank(op.input) for a in op.axes.get_values()}
            keep = op.keepdims is not None
            return self.follow(
                op, axis, lambda d, _: d in axes, lambda d: d if keep else d - sum(a < d for a in axes)
            ), False
        if isinstance(op, g.GatherOp):
            return self.gather_rows(op, axis), False
        if isinstance(op, g.Conv2DOp):
            self._gather_operands_after(op, 1, axis)
            return self.follow(op, axis, lambda d, _: d != 0, lambda d: d), False
        if isinstance(op, g.Pool2DOp | g.GlobalAvgPoolOp):
            return self.follow(op, axis, lambda d, _: d > 1, lambda d: d), False
        self.gather_all(op, axis)
        return None, False

    def _gather_operands_after(self, op: Operation, first: int, axis: str) -> None:
        for index in range(first, len(op.operands)):
            self.gather(op, index, axis)

    def gather_rows(self, op: g.GatherOp, axis: str) -> tuple[int, int] | None:
        table, ids = self.of(op.table, axis), self.of(op.ids, axis)
        if table is not None and (table[0] == 0 or ids is not None):
            self.gather(op, 0, axis)
            table = None
        if ids is not None:
            return ids
        if table is not None:
            return _rank(op.ids) + table[0] - 1, table[1]
        return None

    def visit(self, op: Operation) -> None:
        if isinstance(op, ELEMENTWISE) and all(map(self._weight_like, op.operands)) and any(map(self._leaves, op.operands)):
            # A weight computed from params alone: split (or not) at its first use, as a param is.
            self.derived[op.results[0]] = op
            return
        if isinstance(op, func.ReturnOp):
            for axis in self.sizes:
                self.gather_all(op, axis)
            return
        split: Split = {}
        partial: list[str] = []
        for axis in self.sizes:
            result, is_partial = self.result_split(op, axis)
            if result is not None:
                split[axis] = result
            if is_partial:
                partial.append(axis)
        for value in op.operands:
            for leaf in self._leaves(value):
                self.decided.add(self._argument(leaf))
        for result in list(op.results):
            new = result
            if split:
                new = Rewriter.replace_value_with_new_type(result, _local(result.type, split, self.sizes))
            self.split[new] = dict(split)
        for axis in partial:
            self.reduce(op, axis)

    def run(self, batch: int | None) -> None:
        block = self.fn.body.block
        if "dp" in self.sizes:
            if batch is None:
                raise IllegalSchedule(
                    "shard: dp splits the batch, but the model's batch is not known: name it B (a `let`)"
                    " and make it every input's leading dim"
                )
            for arg in list(block.args):
                if self.kinds[arg.index] == "input" and _rank(arg) and _shape(arg)[0] == batch:
                    if not self.split_argument(arg, "dp", 0, 1, params_only=False):
                        raise IllegalSchedule(f"shard: the batch {batch} does not split evenly over dp={self.sizes['dp']}")
        if self.sp:
            self.split_sequences()
        for op in list(block.ops):
            if isinstance(op, KernelOp):
                raise IllegalSchedule("shard runs on graph-stage IR, before fuse")
            self.visit(op)
        self._record_arguments()
        self.fn.update_function_type()

    def split_sequences(self) -> None:
        """Sequence parallelism: each model input split along tp at its `sequence_dim` (token ids: any dim)."""
        for arg in list(self.fn.body.block.args):
            if self.kinds[arg.index] != "input" or not _rank(arg):
                continue
            taken = {dim for dim, _ in self.split.get(arg, {}).values()}
            ids = isinstance(arg.type.element_type, IntegerType)
            dim = sequence_dim(self.whole_shape(arg), self.sizes["tp"], self.batch, taken, last=ids)
            if dim is not None:
                self.split_argument(arg, "tp", dim, 1, params_only=False)

    def _record_arguments(self) -> None:
        attrs = self.fn.arg_attrs.data if self.fn.arg_attrs else [DictionaryAttr({})] * len(self.fn.body.block.args)
        new = []
        for entry, splits in zip(attrs, self.splits_of_arguments()):
            data = dict(entry.data)
            if splits:
                data[SPLIT_ATTR] = ArrayAttr(
                    [ArrayAttr([StringAttr(a), IntegerAttr(d, 64), IntegerAttr(gr, 64)]) for a, d, gr in splits]
                )
            new.append(DictionaryAttr(data))
        self.fn.arg_attrs = ArrayAttr(new)


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class ShardPass(ModulePass):
    """Split the program over a `dp x tp` mesh of devices (see the module docstring)."""

    name = "shard"

    tp: int = 1
    """Tensor parallelism: devices that split each layer's weights (Megatron column/row splits, heads)."""
    dp: int = 1
    """Data parallelism: replicas that split the batch."""
    sp: bool = False
    """Sequence parallelism (with tp > 1): reduce-scatter partial sums over the rows instead of all-reducing them."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        sizes = {"dp": self.dp, "tp": self.tp}
        if min(sizes.values()) < 1:
            raise IllegalSchedule(f"shard: tp and dp are device counts from 1, got tp={self.tp} dp={self.dp}")
        recorded = {a: n for a, n in mesh_sizes(op).items() if n > 1}
        if recorded:
            asked = {a: n for a, n in sizes.items() if n > 1}
            if asked and asked != recorded:
                raise IllegalSchedule(
                    f"shard: the module is already sharded ({', '.join(f'{a}={n}' for a, n in recorded.items())});"
                    f" compile the model again to shard it otherwise"
                )
            return
        if self.sp and self.tp < 2:
            raise IllegalSchedule(f"shard: sp (sequence parallelism) splits tensor-parallel activations;"
                                  f" it needs tp > 1, got tp={self.tp}")
        used = {a: n for a, n in sizes.items() if n > 1}
        if not used:
            return
        attr = op.attributes.get(BATCH_ATTR)
        batch = attr.value.data if isinstance(attr, IntegerAttr) else None
        for fn in [f for f in op.walk() if isinstance(f, func.FuncOp) and not f.is_declaration]:
            _Sharder(fn, used, self.sp, batch).run(batch)
        for axis, n in used.items():
            op.attributes[MESH_ATTRS[axis]] = IntegerAttr(n, 64)
