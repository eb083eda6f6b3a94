"""
`fuse{target=...}`: group graph ops into `graph.kernel` regions.

Preconditions: graph-stage IR (one `func.func` of graph ops, no kernels yet).
Postconditions: every compute op lives in exactly one `graph.kernel`;
`graph.reshape` (a view) and unused constants stay outside; each kernel has
one output and its location fuses the locations of all its ops. Values are
unchanged: a kernel computes exactly what its ops computed.

Steps, in priority order (an op joins the first group that claims it):
1. `graph.split` becomes one `graph.slice` per part, so each part can be
   read by the kernel that consumes it; a float `graph.matmul` over K = 1
   becomes the `graph.mul` of its operands (`outer_products`: the same
   single product per element, rounded once), an elementwise op, not a
   GEMM whose every output tile is filled and stored for one step.
2. Attention: `matmul -> [mul by scalar] -> [causal_mask] -> softmax(last axis)
   -> matmul`, every link single-use, becomes one `attention` kernel, lowered
   later as a flash kernel that never materialises the scores.
3. GEMM and conv anchors with their epilogues: the anchor's single-use
   result flows into the elementwise op that consumes it (bias, activation,
   residual add, cast, dequantize, quantize: requantization), repeatedly.
   A single-use `dequantize` feeding the anchor (weight-only quantization,
   `x @ dequantize(w, s)`) is read by it, so the kernel streams the stored
   `i4`/`i8` weight, not a widened copy.
4. Row-wise ops (softmax, layernorm, rmsnorm) with their elementwise
   producers and epilogues; then reductions, pools, gathers and concats with
   their epilogues. A concat also takes the single-use elementwise producers
   of its operands and of its epilogue's other operands: RoPE's
   `x * cos + concat([-x2, x1]) * sin` is one kernel, not three.
5. Remaining elementwise ops form chains.
6. Prologues: single-use data movement (transpose, slice, reshape) feeding a
   group is read by that group; leftover movement becomes a `copy` kernel.

The module keeps the device it records (`dlti.target_system_spec`, see
`dialects/device.py`); a module without one gets `target`'s default device,
so every later pass lowers for the same machine.

Options `attention`, `epilogue` and `prologue` switch steps 2, 4 and 6 off;
they are the fusion choices exposed to the autotuner (`epilogue` covers
the epilogues of steps 3 and 4). `outer_products` switches step 1's
matmul rewrite off.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, FusedLoc, ModuleOp, NoneAttr, UnknownLoc
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from strata.dialects.graph import ops as g
from strata.dialects.graph.dtypes import is_float
from strata.dialects.graph.kernel import KernelOp, YieldOp
from strata.dialects.device import resolve_device


ELEMENTWISE = (g.BinaryElementwiseOp, g.UnaryElementwiseOp, g.CastOp, g.CausalMaskOp, g.QuantizationOp)
MOVEMENT = (g.TransposeOp, g.SliceOp, g.ReshapeOp)
ROW = (g.SoftmaxOp, g.LogSoftmaxOp, g.LayerNormOp, g.RmsNormOp)
OTHER_ANCHORS = {
    g.ReductionOp: "reduction",
    g.Pool2DOp: "pool",
    g.GlobalAvgPoolOp: "pool",
    g.GatherOp: "gather",
    g.ConcatOp: "copy",
}

# --------------------------------------------------------------------------- helpers


def _single_user(value: SSAValue) -> Operation | None:
    users = {use.operation for use in value.uses}
    return users.pop() if len(users) == 1 and len(list(value.uses)) == 1 else None


def _producer(value: SSAValue) -> Operation | None:
    owner = value.owner
    return owner if isinstance(owner, Operation) else None


def _is_scalar_constant(op: Operation | None) -> bool:
    return isinstance(op, g.ConstantOp) and op.result.type.get_shape() == ()


def split_to_slices(block: Block) -> None:
    """Rewrite each `graph.split` as one `graph.slice` per result."""
    for op in list(block.ops):
        if not isinstance(op, g.SplitOp):
            continue
        axis = op.axis.value.data
        size = op.outputs[0].type.get_shape()[axis]
        slices = []
        for i, out in enumerate(op.outputs):
            piece = g.SliceOp(op.input, axis, i * size, (i + 1) * size, out.type)
            piece.location = op.location
            piece.result.name_hint = out.name_hint
            slices.append(piece)
        Rewriter.replace_op(op, slices, [s.result for s in slices])


def outer_products(block: Block) -> None:
    """
    Rewrite each float `graph.matmul` `a[..., M, 1] @ b[..., 1, N]` whose result keeps the operands'
    dtype as `a * b` (broadcast to `[..., M, N]`, the matmul's batch dims broadcast alike), as
    XLA's algebraic simplifier does: each element is one product, exact in f32 and rounded once to
    the result's dtype either way. A decode step's `p[T:T+1] @ v`, the new token's value, is one.
    Integer and f8 operands accumulate in a wider dtype and stay GEMMs.
    """
    for op in list(block.ops):
        if not isinstance(op, g.MatmulOp) or op.lhs.type.get_shape()[-1] != 1:
            continue
        element = op.result.type.element_type
        if not is_float(element) or op.lhs.type.element_type != element:
            continue
        product = g.MulOp(op.lhs, op.rhs, op.result.type)
        product.location = op.location
        product.result.name_hint = op.result.name_hint
        Rewriter.replace_op(op, product)


@dataclass
class _Group:
    kind: str
    ops: set[Operation]
    tail: Operation
    """The op whose (single) result leaves the group."""


class _Grouper:
    """Assigns ops to groups, following the steps in the module docstring."""

    def __init__(self, block: Block, attention: bool, epilogue: bool, prologue: bool):
        self.block = block
        self.order = {op: i for i, op in enumerate(block.ops)}
        self.owner: dict[Operation, _Group] = {}
        self.groups: list[_Group] = []
        self.options = (attention, epilogue, prologue)

    def free(self, op: Operation | None) -> bool:
        return op is not None and op.parent_block() is self.block and op not in self.owner

    def new_group(self, kind: str, ops: list[Operation], tail: Operation) -> _Group:
        group = _Group(kind, set(ops), tail)
        for op in ops:
            self.owner[op] = group
        self.groups.append(group)
        return group

    def add(self, group: _Group, op: Operation) -> None:
        group.ops.add(op)
        self.owner[op] = group

    def run(self) -> list[_Group]:
        attention, epilogue, prologue = self.options
        ops = list(self.block.ops)
        if attention:
            for op in ops:
                if isinstance(op, g.SoftmaxOp) and self.free(op):
                    self.match_attention(op)
        for op in ops:
            if isinstance(op, g.MatmulOp | g.Conv2DOp) and self.free(op):
                group = self.new_group("gemm" if isinstance(op, g.MatmulOp) else "conv", [op], op)
                if prologue:
                    self.absorb_producers(group, op, g.DequantizeOp)
        if epilogue:
            for group in list(self.groups):
                self.extend_epilogue(group)
        for op in ops:
            if isinstance(op, ROW) and self.free(op):
                group = self.new_group("row", [op], op)
                if prologue:
                    self.absorb_producers(group, op, ELEMENTWISE)
                if epilogue:
                    self.extend_epilogue(group)
        for op in ops:
            for cls, kind in OTHER_ANCHORS.items():
                if isinstance(op, cls) and self.free(op):
                    group = self.new_group(kind, [op], op)
                    if epilogue:
                        self.extend_epilogue(group)
                    if prologue and kind == "copy":
                        self.absorb_all_producers(group, ELEMENTWISE)
        for op in ops:
            if isinstance(op, ELEMENTWISE) and self.free(op):
                group = self.new_group("elementwise", [op], op)
                self.absorb_producers(group, op, ELEMENTWISE)
                self.extend_epilogue(group)
        if prologue:
            for group in list(self.groups):
                self.absorb_all_producers(group, MOVEMENT)
        for op in ops:
            if isinstance(op, g.TransposeOp | g.SliceOp) and self.free(op):
                group = self.new_group("copy", [op], op)
                self.absorb_producers(group, op, MOVEMENT)
        return self.groups

    def match_attention(self, softmax: g.SoftmaxOp) -> None:
        rank = len(softmax.result.type.get_shape())
        if softmax.axis.value.data != rank - 1:
            return
        pv = _single_user(softmax.result)
        if not isinstance(pv, g.MatmulOp) or pv.lhs is not softmax.result or not self.free(pv):
            return
        chain: list[Operation] = [softmax, pv]
        value, user = softmax.input, softmax
        op = _producer(value)
        if isinstance(op, g.CausalMaskOp) and _single_user(value) is softmax and self.free(op):
            chain.append(op)
            value, user = op.input, op
        op = _producer(value)
        if isinstance(op, g.MulOp | g.DivOp) and _single_user(value) is user and self.free(op):
            scale = _producer(op.rhs)
            if _is_scalar_constant(scale):
                chain.append(op)
                value, user = op.lhs, op
        qk = _producer(value)
        if not isinstance(qk, g.MatmulOp) or _single_user(value) is not user or not self.free(qk):
            return
        chain.append(qk)
        self.new_group("attention", chain, pv)

    def extend_epilogue(self, group: _Group) -> None:
        while True:
            user = _single_user(group.tail.results[0]) if len(group.tail.results) == 1 else None
            if not isinstance(user, ELEMENTWISE) or not self.free(user):
                return
            self.add(group, user)
            group.tail = user

    def absorb_all_producers(self, group: _Group, kinds) -> None:
        """`absorb_producers` from every op of the group, in program order."""
        for op in sorted(group.ops, key=self.order.__getitem__):
            self.absorb_producers(group, op, kinds)

    def absorb_producers(self, group: _Group, op: Operation, kinds) -> None:
        # A worklist, not recursion: a chain of 10,000 elementwise producers is no deeper than one.
        pending = [op]
        while pending:
            consumer = pending.pop()
            for operand in consumer.operands:
                producer = _producer(operand)
                if (
                    isinstance(producer, kinds)
                    and self.free(producer)
                    and _single_user(operand) is consumer
                ):
                    self.add(group, producer)
                    pending.append(producer)


MAX_KERNEL_LOCATIONS = 16
"""A kernel's location names at most this many source locations, its ops' first ones: every op
lowered from the kernel carries it, so a kernel of 2,000 ops naming all 2,000 would print 4,000,000."""


def _fused_location(ops: list[Operation]):
    """The first `MAX_KERNEL_LOCATIONS` distinct known locations of `ops`, in order: one, fused, or unknown."""
    # A dict keeps the order and makes each test O(1): a chain of 10,000 fused ops stays linear.
    locs: dict[Attribute, None] = {}
    for op in ops:
        loc = op.location
        parts = loc.locations.data if isinstance(loc, FusedLoc) else (loc,)
        for part in parts:
            if not isinstance(part, UnknownLoc) and len(locs) < MAX_KERNEL_LOCATIONS:
                locs.setdefault(part)
    if not locs:
        return UnknownLoc()
    return next(iter(locs)) if len(locs) == 1 else FusedLoc(ArrayAttr(list(locs)), NoneAttr())


def materialize(group: _Group, name: str, order: dict[Operation, int]) -> KernelOp:
    """Move the group's ops into a new `graph.kernel` placed before its tail."""
    ops = sorted(group.ops, key=order.__getitem__)
    # Dicts as ordered sets: a kernel of thousands of ops stays linear.
    inputs: dict[SSAValue, None] = {}
    constants: dict[Operation, None] = {}
    for op in ops:
        for operand in op.operands:
            producer = _producer(operand)
            if producer in group.ops:
                continue
            if _is_scalar_constant(producer):
                constants.setdefault(producer)
                continue
            inputs.setdefault(operand)
    inputs, constants = list(inputs), list(constants)
    block = Block(arg_types=[v.type for v in inputs])
    mapping: dict[SSAValue, SSAValue] = dict(zip(inputs, block.args))
    for arg, value in zip(block.args, inputs):
        arg.name_hint = value.name_hint
    for op in constants + ops:
        clone = op.clone(value_mapper=mapping)
        block.add_op(clone)
    tail_value = group.tail.results[0]
    terminator = YieldOp(mapping[tail_value])
    terminator.location = group.tail.location
    block.add_op(terminator)
    kernel = KernelOp(name, group.kind, inputs, [tail_value.type], Region(block))
    kernel.location = _fused_location(ops)
    kernel.outputs[0].name_hint = tail_value.name_hint
    parent = group.tail.parent_block()
    parent.insert_op_before(kernel, group.tail)
    tail_value.replace_all_uses_with(kernel.outputs[0])
    for op in reversed(ops):
        op.detach()
        op.erase()
    return kernel


def fuse_function(fn: func.FuncOp, attention: bool, epilogue: bool, prologue: bool, products: bool = True) -> int:
    """Fuse one function's body; return the number of kernels made."""
    block = fn.body.block
    if any(isinstance(op, KernelOp) for op in block.ops):
        return 0  # already fused: the pass is idempotent
    split_to_slices(block)
    if products:
        outer_products(block)
    grouper = _Grouper(block, attention, epilogue, prologue)
    groups = grouper.run()
    order = dict(grouper.order)
    for i, op in enumerate(block.ops):
        order.setdefault(op, i)
    counters: dict[str, int] = {}
    for group in sorted(groups, key=lambda grp: order[grp.tail]):
        index = counters.get(group.kind, 0)
        counters[group.kind] = index + 1
        materialize(group, f"{group.kind}_{index}", order)
    for op in list(block.ops):
        if isinstance(op, g.ConstantOp) and not op.result.uses:
            op.detach()
            op.erase()
    return sum(counters.values())


@dataclass(frozen=True)
class FusePass(ModulePass):
    """Group graph ops into `graph.kernel` regions (see the module docstring)."""

    name = "fuse"

    target: str = ""
    """`gpu`, `tpu` or `lpu`: must match the module's device; on a module without one, that target's default device is recorded."""
    attention: bool = True
    """Fuse the attention pattern into one flash-style kernel."""
    epilogue: bool = True
    """Let elementwise consumers ride in their producer's kernel."""
    prologue: bool = True
    """Let single-use data movement and elementwise producers ride in their consumer's kernel."""
    outer_products: bool = True
    """Rewrite float matmuls over K = 1 as multiplies (`outer_products`); off keeps them GEMMs (to compare one
    GEMM layer with a simulator that runs it as written, such as SCALE-Sim)."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        resolve_device(op, self.target)
        for fn in [o for o in op.walk() if isinstance(o, func.FuncOp)]:
            fuse_function(fn, self.attention, self.epilogue, self.prologue, self.outer_products)

    @classmethod
    def schedule_space(cls, ctx: Context, module_op: ModuleOp) -> tuple[FusePass, ...]:
        """Every combination of the three fusion switches (the module's device stays as recorded)."""
        return tuple(cls("", a, e, p) for a, e, p in itertools.product((True, False), repeat=3))
