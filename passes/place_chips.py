"""
`place-chips{chips=N}`: place every kernel of a program on its chips.

Preconditions: loop-stage IR (after `lower-to-loops`).
Postconditions: every `loop.kernel` carries `chip` (the first chip it runs
on) and `shards` (how many consecutive chips its weights are spread over),
and the module carries `strata.chips`, the chips the program uses. The IR's
values are untouched; `lower-to-hardware` reads the attributes (and inserts
a transfer, `simt.transfer`/`systolic.transfer`/`tsp.transfer`, for every
buffer read on a chip other than its producer's),
so a hand-edited placement compiles as edited.

Weights stay resident in each chip's memory (`MEMORY`: the LPU's SRAM, a GPU's
or TPU's HBM): pipeline parallelism. Each chip holds a run of consecutive
kernels whose distinct weights fit it; the pass uses `chips`
runs (the option, else a `strata.chips` the module already carries, else the
fewest that hold the weights) and cuts them where the fewest activation
bytes cross between chips, then where the heaviest chip is lightest
(dynamic programming over the cut positions). A kernel whose weights exceed
one chip is sharded over as many fresh chips as they need on the LPU (a model
with one fills each chip in turn); on a GPU or TPU that is an error (it would
take tensor parallelism). Pinning fewer chips than the weights need is an
error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp
from xdsl.ir import SSAValue
from xdsl.passes import ModulePass

from strata.dialects import loop
from strata.dialects.device import MEMORY, DeviceSpec, resolve_device
from strata.dialects.vocabulary import CHIP_ATTR, CHIPS_ATTR, SHARDS_ATTR, DoesNotFit, IllegalSchedule
from strata.passes._figures import nbytes

# --------------------------------------------------------------------------- helpers


def kernel_weights(kernel: loop.KernelOp, roots) -> dict[SSAValue, int]:
    return {roots[v]: nbytes(roots[v].type) for v in kernel.ins if v in roots}


def assign_chips(
    kernels: list[loop.KernelOp], roots, capacity: int, chips: int, crossing: list[int] | None = None,
) -> list[tuple[int, int]]:
    """
    `(first chip, shards)` per kernel, in order. Each chip holds a run of
    kernels whose weights fit its `capacity`; `chips` runs (0: the fewest
    that fit), cut where the fewest activation bytes cross (`crossing[b]`:
    the bytes live from before kernel `b` to it or later, each a transfer),
    then where the heaviest chip is lightest. A kernel whose weights exceed
    one chip is sharded over as many fresh chips as they need; a model with
    one fills each chip in turn (or, with `chips`, the smallest per-chip
    budget whose filling uses at most `chips`).
    """
    per_kernel = [kernel_weights(k, roots) for k in kernels]
    if not kernels:
        return []
    if any(sum(w.values()) > capacity for w in per_kernel):
        return _filled(kernels, per_kernel, capacity, chips)
    fewest = max(c + s for c, s in _pack(kernels, per_kernel, capacity, capacity))
    count = min(chips or fewest, len(kernels))
    runs = _cheapest_runs(per_kernel, capacity, count, crossing or [0] * (len(kernels) + 1))
    if runs is None:  # cannot happen with count >= fewest; kept as a guard
        return _filled(kernels, per_kernel, capacity, chips)
    return [(chip, 1) for chip, (start, end) in enumerate(runs) for _ in range(start, end)]


def _filled(kernels, per_kernel, capacity: int, chips: int) -> list[tuple[int, int]]:
    """Fill each chip in turn (with `chips`, under the smallest budget that fits in them)."""
    total = sum(sum(w.values()) for w in per_kernel)
    if chips <= 0:
        return _pack(kernels, per_kernel, capacity, capacity)
    low, high = -(-total // chips), capacity
    best = _pack(kernels, per_kernel, capacity, high)
    while low < high:
        middle = (low + high) // 2
        packed = _pack(kernels, per_kernel, capacity, middle)
        if max(c + s for c, s in packed) <= chips:
            best, high = packed, middle
        else:
            low = middle + 1
    return best


def _cheapest_runs(per_kernel, capacity: int, count: int, crossing: list[int]) -> list[tuple[int, int]] | None:
    """
    `count` consecutive runs `[start, end)` of kernels, each within
    `capacity` bytes of distinct weights, minimising the bytes crossing the
    cuts, then the heaviest run (dynamic programming over cut positions).
    """
    n = len(per_kernel)
    weight = [[0] * (n + 1) for _ in range(n + 1)]
    for start in range(n):
        seen: dict = {}
        for end in range(start + 1, n + 1):
            seen.update(per_kernel[end - 1])
            weight[start][end] = sum(seen.values())
    inf = (math.inf, math.inf)
    # best[c][end]: (crossing bytes, heaviest run) of the first `end` kernels in `c` runs.
    best = [[inf] * (n + 1) for _ in range(count + 1)]
    cut = [[0] * (n + 1) for _ in range(count + 1)]
    best[0][0] = (0, 0)
    for c in range(1, count + 1):
        for end in range(c, n + 1):
            for start in range(c - 1, end):
                if best[c - 1][start] == inf or weight[start][end] > capacity:
                    continue
                cost, heaviest = best[c - 1][start]
                candidate = (cost + (crossing[start] if start else 0), max(heaviest, weight[start][end]))
                if candidate < best[c][end]:
                    best[c][end], cut[c][end] = candidate, start
    if best[count][n] == inf:
        return None
    runs, end = [], n
    for c in range(count, 0, -1):
        runs.append((cut[c][end], end))
        end = cut[c][end]
    return runs[::-1]


def _crossing(fn: func.FuncOp, kernels: list[loop.KernelOp], roots) -> list[int]:
    """`crossing[b]`: bytes of activations (and inputs) made before kernel `b` and read by it or later."""
    order = {k: i for i, k in enumerate(kernels)}
    made: dict[SSAValue, int] = {arg: -1 for arg in fn.body.block.args if arg not in roots}
    last: dict[SSAValue, int] = {}
    for op in fn.body.block.ops:
        if isinstance(op, loop.CopyOp | loop.CollectiveBase | loop.ViewOp):
            source, result = (op.source, op.result) if isinstance(op, loop.ViewOp) else (op.source, op.dest)
            if source in made:
                made[result] = made[source]
        elif isinstance(op, loop.KernelOp):
            for value in op.ins:
                if value in made:
                    last[value] = order[op]
            for value in op.outs:
                made[value] = order[op]
    crossing = [0] * (len(kernels) + 1)
    for value, end in last.items():
        for boundary in range(made[value] + 1, end + 1):
            crossing[boundary] += nbytes(value.type)
    return crossing


def _pack(kernels, per_kernel, capacity: int, budget: int) -> list[tuple[int, int]]:
    chip, used, placed, result = 0, 0, set(), []
    for weights in per_kernel:
        new = sum(size for root, size in weights.items() if root not in placed)
        if new > capacity:
            first = chip + 1 if used else chip
            shards = -(-sum(weights.values()) // capacity)
            result.append((first, shards))
            chip, used, placed = first + shards, 0, set()
            continue
        if used and used + new > budget:
            chip, used, placed = chip + 1, 0, set()
            new = sum(weights.values())
        used += new
        placed |= set(weights)
        result.append((chip, 1))
    return result


def place_function(fn: func.FuncOp, device: DeviceSpec, chips: int) -> int:
    """Write `chip` and `shards` on every kernel of `fn`; return the chips used."""
    roots = loop.param_buffers(fn)
    kernels = [op for op in fn.body.block.ops if isinstance(op, loop.KernelOp)]
    capacity = device.memory_bytes
    per_kernel = [kernel_weights(k, roots) for k in kernels]
    fewest = max((c + s for c, s in _pack(kernels, per_kernel, capacity, capacity)), default=1)
    if chips and chips < fewest:
        weights = sum({v: size for w in per_kernel for v, size in w.items()}.values())
        raise DoesNotFit(
            f"the model's weights ({weights:,} B) do not fit {chips} {device.name}"
            f" device{'s' if chips > 1 else ''} of {capacity:,} B ({MEMORY[device.target]});"
            f" they need at least {fewest}: pass --devices {fewest} or more"
        )
    placement = assign_chips(kernels, roots, capacity, chips, _crossing(fn, kernels, roots))
    sharded = next((k for k, (_, s) in zip(kernels, placement) if s > 1), None)
    if sharded is not None and device.target != "lpu":
        raise IllegalSchedule(
            f"kernel '{sharded.kernel_name.data}' has {sum(kernel_weights(sharded, roots).values()):,} B of weights,"
            f" more than one {device.name} holds; split its weights over N devices with tensor parallelism"
            f" (--schedule tp=N)"
        )
    for kernel, (chip, shards) in zip(kernels, placement):
        kernel.attributes[CHIP_ATTR] = IntegerAttr(chip, 64)
        kernel.attributes[SHARDS_ATTR] = IntegerAttr(shards, 64)
    return max((chip + shards for chip, shards in placement), default=1)


# --------------------------------------------------------------------------- pass


@dataclass(frozen=True)
class PlaceChipsPass(ModulePass):
    """Place the kernels of a program on chips: pipeline stages (see the module docstring)."""

    name = "place-chips"

    target: str = ""
    """`gpu`, `tpu` or `lpu`: must match the module's device (empty: the recorded device)."""
    chips: int = 0
    """Spread the kernels over this many chips; 0 = the module's `strata.chips`, else as few as hold the weights."""

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        device = resolve_device(op, self.target)
        if self.chips < 0:
            raise IllegalSchedule(f"place-chips: chips must be 0 (as few as fit) or more, got {self.chips}")
        pinned = op.attributes.get(CHIPS_ATTR)
        chips = self.chips or (pinned.value.data if isinstance(pinned, IntegerAttr) else 0)
        used = 1
        for fn in [f for f in op.walk() if isinstance(f, func.FuncOp) and not f.is_declaration]:
            used = max(used, place_function(fn, device, chips))
        op.attributes[CHIPS_ATTR] = IntegerAttr(used, 64)
