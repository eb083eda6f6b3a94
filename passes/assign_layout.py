"""
`assign-layout{target=...}`: give every tensor between kernels a physical layout.

Preconditions: fused IR (`fuse` has run; compute ops live in `graph.kernel`s).
Postconditions: every tensor-typed value of the model function (arguments,
kernel results, ops outside kernels) has a `#graph.layout` encoding; kernel
bodies stay logical (their block arguments carry no encoding). Where a
consumer needs another layout than its operand has, an explicit
`graph.relayout` sits between them; one relayout per (value, layout) pair;
relayouts that undo each other or change nothing are removed. Model inputs,
params and results keep the logical layout, so the function's signature
only gains the logical encoding. Values are unchanged: a relayout is
identity on logical values.

Per device (its `layout_tile`, from the spec file): conv and pool kernels
keep rank-4 tensors channels-last (NHWC, filters OHWI) on the targets whose
convolutions read them so (`CHANNELS_LAST_TARGETS`), channels-first (NCHW,
OIHW) on the cpu; a TPU tiles the last
two physical dims by its (sublanes, lanes) vreg, (8, 128), an LPU the last by
its 320 vector lanes; reshapes outside kernels
read and write the logical layout (a reshape is a view only there).
Elementwise and copy kernels follow the layout of their first operand of the
output's rank, so a chain of them never relayouts.

Choices for the autotuner: `channels_last` and `tiled`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Block, BlockArgument, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import (
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.rewriter import InsertPoint, Rewriter

from strata.dialects.graph.kernel import KernelOp
from strata.dialects.graph.layout import LayoutAttr, RelayoutOp, layout_of, logical_layout, logical_type, with_layout
from strata.dialects.device import DeviceSpec, resolve_device

NHWC = (0, 2, 3, 1)
CHANNELS_LAST_KINDS = ("conv", "pool")
CHANNELS_LAST_TARGETS = ("gpu", "tpu", "lpu")
"""Targets whose convolutions read channels-last tensors by default: implicit GEMMs with the channels
as the reduction's contiguous, vector- or tensor-core-wide dim (cuDNN's and CUTLASS's NHWC kernels,
the MXU's and the LPU's lanes). strata's cpu code runs a convolution as `W[O, K] @ cols[K, pixels]`,
each row of `cols` a run of pixels of one channel, contiguous in NCHW: ResNet-18 at 224 x 224 measured
79.3 ms channels-last and 69.1 ms channels-first (`strata measure`, 1 thread, the Zen 4 guest,
2026-12-07; estimated 74.4 and 62.0), ResNet-18 int8 (HW=64 W0=16) 1.04 and 1.00 ms, ViT's patch
convolution alike."""
FOLLOWING_KINDS = ("elementwise", "copy")

# --------------------------------------------------------------------------- helpers


def target_layout(device: DeviceSpec, rank: int, channels_last: bool, tiled: bool) -> LayoutAttr:
    """The layout `device` wants for a rank-`rank` tensor."""
    order = NHWC if channels_last and rank == 4 else tuple(range(rank))
    tile = device.layout_tile if tiled else ()
    tile = tile[len(tile) - min(len(tile), rank) :]
    return LayoutAttr(order, tile)


def _is_tensor(value: SSAValue) -> bool:
    return isinstance(value.type, TensorType)


def _set_layout(value: SSAValue, layout: LayoutAttr) -> SSAValue:
    wanted = with_layout(logical_type(value.type), layout)
    if value.type == wanted:
        return value
    return Rewriter.replace_value_with_new_type(value, wanted)


def _retype_args(block: Block, types: list) -> None:
    """
    Give `block`'s arguments `types` in one pass. Retyping them one by one
    (`Rewriter.replace_value_with_new_type`) rebuilds the argument tuple each
    time: quadratic in a function of 20,000 params.
    """
    args, renamed, users = [], {}, {}
    for arg, wanted in zip(block.args, types):
        if arg.type == wanted:
            args.append(arg)
            continue
        new = BlockArgument(wanted, block, arg.index)
        new.name_hint = arg.name_hint
        renamed[arg] = new
        users.update((use.operation, None) for use in arg.uses)
        args.append(new)
    block._args = tuple(args)  # what Rewriter.replace_value_with_new_type sets, once
    # Each user's operands at once (a kernel may take all 20,000 params).
    for user in users:
        user.operands = [renamed.get(value, value) for value in user.operands]


def _body_logical(kernel: KernelOp) -> None:
    block = kernel.body.block
    _retype_args(block, [logical_type(arg.type) for arg in block.args])


@dataclass
class _Assigner:
    device: DeviceSpec
    channels_last: bool
    tiled: bool

    def default(self, rank: int, channels_last: bool = False) -> LayoutAttr:
        return target_layout(self.device, rank, channels_last and self.channels_last, self.tiled)

    def kernel_layouts(self, kernel: KernelOp) -> tuple[list[LayoutAttr], LayoutAttr]:
        """Layouts a kernel wants for its inputs and its outputs."""
        kind = kernel.kind.data
        out_rank = len(kernel.outputs[0].type.get_shape())
        wants_nhwc = kind in CHANNELS_LAST_KINDS
        out = self.default(out_rank, wants_nhwc)
        if kind in FOLLOWING_KINDS:
            same_rank = [v for v in kernel.inputs if len(v.type.get_shape()) == out_rank]
            if same_rank:
                out = layout_of(same_rank[0].type)
        inputs = []
        for value in kernel.inputs:
            rank = len(value.type.get_shape())
            inputs.append(out if rank == out_rank else self.default(rank, wants_nhwc))
        return inputs, out

    def relayout(self, value: SSAValue, layout: LayoutAttr, cache: dict, before: Operation) -> SSAValue:
        """`value` in `layout`, through one shared relayout op if needed."""
        if layout_of(value.type) == layout:
            return value
        key = (value, layout)
        if key not in cache:
            op = RelayoutOp(value, layout)
            op.location = before.location
            Rewriter.insert_op(op, InsertPoint.before(before))
            cache[key] = op.result
        return cache[key]

    def run(self, fn: func.FuncOp) -> None:
        block = fn.body.block
        _retype_args(block, [with_layout(logical_type(a.type), logical_layout(len(a.type.get_shape())))
                             if _is_tensor(a) else a.type for a in block.args])
        cache: dict = {}
        for op in list(block.ops):
            if isinstance(op, KernelOp):
                inputs, out = self.kernel_layouts(op)
                # All operands at once: setting them one by one rebuilds the operand tuple each time.
                op.operands = [self.relayout(value, layout, cache, op) for value, layout in zip(op.inputs, inputs)]
                _body_logical(op)
                for result in list(op.results):
                    _set_layout(result, out)
            elif isinstance(op, RelayoutOp):
                continue  # an explicit decision already (a second run, a hand-edited dump)
            elif isinstance(op, func.ReturnOp):
                for i, value in enumerate(op.operands):
                    if _is_tensor(value):
                        op.operands[i] = self.relayout(value, logical_layout(len(value.type.get_shape())), cache, op)
            else:
                # Views and constants outside kernels live in the logical layout.
                for i, value in enumerate(op.operands):
                    if _is_tensor(value):
                        op.operands[i] = self.relayout(value, logical_layout(len(value.type.get_shape())), cache, op)
                for result in list(op.results):
                    if _is_tensor(result):
                        _set_layout(result, logical_layout(len(result.type.get_shape())))
        fn.update_function_type()


# --------------------------------------------------------------------------- patterns


class FoldRelayoutChain(RewritePattern):
    """`relayout(relayout(x, a), b)` -> `relayout(x, b)`, or `x` if `x` is in `b`."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: RelayoutOp, rewriter: PatternRewriter, /) -> None:
        source = op.input.owner
        if not isinstance(source, RelayoutOp):
            return
        origin = source.input
        if layout_of(origin.type) == layout_of(op.result.type):
            op.result.replace_all_uses_with(origin)
            rewriter.erase_op(op)
        else:
            folded = RelayoutOp(origin, layout_of(op.result.type))
            folded.location = op.location
            rewriter.replace_op(op, folded)
        if not source.result.uses:
            rewriter.erase_op(source)


class EraseIdentityRelayout(RewritePattern):
    """A relayout to the layout its operand already has is the operand."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: RelayoutOp, rewriter: PatternRewriter, /) -> None:
        if layout_of(op.input.type) == layout_of(op.result.type):
            op.result.replace_all_uses_with(op.input)
            rewriter.erase_op(op)


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class AssignLayoutPass(ModulePass):
    """Give every tensor a physical layout; insert and cancel relayouts."""

    name = "assign-layout"

    target: str = ""
    """`gpu`, `tpu` or `lpu`: must match the module's device (empty: the device `fuse` recorded)."""
    channels_last: bool | None = None
    """Keep conv and pool tensors NHWC (true) or NCHW (false); unset, as the target's convolutions read
    them (`CHANNELS_LAST_TARGETS`)."""
    tiled: bool = True
    """Tile the innermost dims by the target's vector tile."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        device = resolve_device(op, self.target)
        channels_last = self.channels_last
        if channels_last is None:
            channels_last = device.target in CHANNELS_LAST_TARGETS
        for fn in op.walk():
            if isinstance(fn, func.FuncOp) and not fn.is_declaration:
                _Assigner(device, channels_last, self.tiled).run(fn)
        PatternRewriteWalker(
            GreedyRewritePatternApplier([FoldRelayoutChain(), EraseIdentityRelayout()])
        ).rewrite_module(op)

    @classmethod
    def schedule_space(cls, ctx: Context, module_op: ModuleOp) -> tuple[AssignLayoutPass, ...]:
        """Channels-last or not, tiled or not, for the module's device."""
        return tuple(cls("", c, t) for c, t in itertools.product((True, False), repeat=2))
