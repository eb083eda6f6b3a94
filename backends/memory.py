"""
The memory a compiled model holds on each device, from hardware-stage IR.

Per device: the params it keeps resident (weights, and state such as KV
caches written as params), the model inputs (on device 0) and the peak of
its live activations. Activations are the function's buffers (`memref.alloc`
results and the outputs), live from the op that allocates them to their last
use in program order (a view aliases its source; a returned buffer lives to
the end; a param relaid into the kernels' layout counts as the param). Every
buffer lives on the chip of the kernel that
writes it (a transfer's destination on the chip it moves to), and a
kernel's params on the chips it runs on, split evenly over its shards (LPU);
GPU and TPU kernels placed on several chips (pipeline stages) carry a
`chip` attribute; without one everything is chip 0.

Assumes: params are never written (they are model weights or resident state
the next step reads), and buffers are not reused in place, which is what
`lower-to-loops` emits.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import func, memref
from xdsl.dialects.builtin import IntegerAttr
from xdsl.ir import SSAValue

from strata.dialects import loop
from strata.dialects.graph import INPUT_ATTR
from strata.dialects.hardware import HardwareKernelOp, TransferOp, tsp
from strata.dialects.vocabulary import CHIP_ATTR
from strata.dialects.vocabulary import type_bytes


@dataclass
class DeviceMemory:
    """Bytes one device holds: resident params, model inputs, and the peak of live activations."""

    params_bytes: int = 0
    inputs_bytes: int = 0
    activations_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.params_bytes + self.inputs_bytes + self.activations_bytes


def _arguments(fn: func.FuncOp, attr: str) -> list[SSAValue]:
    block = fn.body.block
    attrs = fn.arg_attrs.data if fn.arg_attrs else [None] * len(block.args)
    return [arg for arg, a in zip(block.args, attrs) if a is not None and attr in a.data]


def _roots(fn: func.FuncOp) -> dict[SSAValue, SSAValue]:
    """Each value to the buffer that holds it: views alias their source."""
    roots = {arg: arg for arg in fn.body.block.args}
    for op in fn.body.block.ops:
        for result in op.results:
            roots[result] = roots.get(op.source, result) if isinstance(op, loop.ViewOp) else result
    return roots


def kernel_placement(op: HardwareKernelOp) -> tuple[int, int]:
    """
    `(chip, shards)` of a hardware kernel: the LPU program's own, a GPU/TPU
    kernel's `chip` attribute (one shard), else chip 0.
    """
    if isinstance(op, tsp.ProgramOp):
        return op.chip.value.data, op.shards.value.data
    attr = op.attributes.get(CHIP_ATTR)
    return (attr.value.data if isinstance(attr, IntegerAttr) else 0), 1


def _homes(fn: func.FuncOp, roots) -> dict[SSAValue, int]:
    """The device each buffer lives on."""
    homes: dict[SSAValue, int] = {}
    for op in fn.body.block.ops:
        if isinstance(op, HardwareKernelOp):
            for value in op.outs:
                homes.setdefault(roots[value], kernel_placement(op)[0])
        elif isinstance(op, TransferOp):
            homes[roots[op.dest]] = op.to_chip.value.data
        elif isinstance(op, (loop.CopyOp, loop.CollectiveBase)) and roots[op.source] in homes:
            # A relayout copy, or a collective among a stage's mesh, stays on its source's chip.
            homes.setdefault(roots[op.dest], homes[roots[op.source]])
    return homes


def _peak_activations(fn: func.FuncOp, roots, homes, devices: int, params, bytes_of=type_bytes) -> list[int]:
    """
    Per device, the most bytes of allocated buffers live at once. A param
    relaid into the kernels' layout is the weight itself, held in that
    layout (counted with the params), not an activation.
    """
    ops = list(fn.body.block.ops)
    born: dict[SSAValue, int] = {}
    last: dict[SSAValue, int] = {}
    for index, op in enumerate(ops):
        if isinstance(op, memref.AllocOp) and op.memref not in params:
            born[op.memref] = index
        for value in op.operands:
            root = roots.get(value, value)
            if root in born:
                last[root] = len(ops) if isinstance(op, func.ReturnOp) else index
    live = [0] * devices
    peak = [0] * devices
    events = sorted([(i, 1, b) for b, i in born.items()] + [(last.get(b, i) + 0.5, -1, b) for b, i in born.items()],
                    key=lambda e: (e[0], -e[1]))
    for _, sign, buffer in events:
        device = homes.get(buffer, 0)
        live[device] += sign * bytes_of(buffer.type)
        peak[device] = max(peak[device], live[device])
    return peak


def memory_per_device(module_fn: func.FuncOp, devices: int = 1, bytes_of=type_bytes) -> list[DeviceMemory]:
    """
    What each of `devices` devices holds for the model function `module_fn` (hardware stage), each
    buffer's bytes as `bytes_of` counts them: `type_bytes` (an `i4` at half a byte, as a GPU's, a
    TPU's and an LPU's kernels pack it) or, on a CPU, `cpu.storage_bytes` (a byte, as native code
    holds it).
    """
    roots = _roots(module_fn)
    homes = _homes(module_fn, roots)
    devices = max([devices, *(h + 1 for h in homes.values())])
    use = [DeviceMemory() for _ in range(devices)]
    params = loop.param_buffers(module_fn)
    placed: set[tuple[SSAValue, int]] = set()
    for op in module_fn.body.block.ops:
        if not isinstance(op, HardwareKernelOp):
            continue
        chip, shards = kernel_placement(op)
        for value in op.ins:
            param = params.get(roots[value])
            if param is not None and (param, chip) not in placed:
                placed.add((param, chip))
                for shard in range(chip, chip + shards):
                    use[shard].params_bytes += bytes_of(param.type) // shards
    # Params no kernel reads (the model returns them, or nothing uses them) stay on device 0.
    read_on_chips = {param for param, _ in placed}
    use[0].params_bytes += sum(bytes_of(p.type) for p in set(params.values()) if p not in read_on_chips)
    use[0].inputs_bytes = sum(bytes_of(a.type) for a in _arguments(module_fn, INPUT_ATTR))
    for device, peak in enumerate(_peak_activations(module_fn, roots, homes, devices, params, bytes_of)):
        use[device].activations_bytes = peak
    return use
