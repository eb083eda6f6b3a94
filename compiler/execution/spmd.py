"""
Execution of sharded programs: every device of the mesh runs the same
program on its own shards, and the collectives meet in between.

A module `shard` wrote carries its mesh (`strata.dp`, `strata.tp`) and, on
each argument it split, `strata.split` (see `dialects/vocabulary.py`).
`run` takes the *whole* arguments (the model's inputs and weights, as for
an unsharded run), cuts each device's block out of the split ones, and runs
one thread per device with `run_function` (the reference executor's or the
loop interpreter's). A collective handler calls `all_reduce`,
`all_gather` or `reduce_scatter` here: each device posts its value and
waits for its group (the devices that differ only along the collective's
axis); the sum is taken in device
order, so every device gets the same bits and a run is deterministic. The
program ends with its outputs whole on every device (`shard` gathers them),
and device 0's are returned.

Pipeline stages (`chip`) are not separate threads: a stage boundary is a
copy on every device, so one thread per `dp x tp` device of the mesh runs
the whole pipeline.

Assumes: every device reaches the same collectives in the same order (SPMD).
Guarantees: an error on one device stops the others (no hang); a
collective outside a sharded run is an error that says so.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp

from strata.compiler.diagnostics import StrataError
from strata.dialects.vocabulary import MESH_AXES, SPLIT_ATTR, mesh_sizes

WAIT_S = 0.05
"""How often a waiting device looks whether another one failed."""


class CollectiveError(StrataError):
    """A collective run outside a sharded run, or one whose group broke off."""


# --------------------------------------------------------------------------- blocks


def block(value: np.ndarray, dim: int, devices: int, rank: int, groups: int = 1) -> np.ndarray:
    """Device `rank`'s block of `value` split over `devices` along `dim` (each of `groups` parts evenly)."""
    shape = value.shape
    size = shape[dim] // (groups * devices)
    parts = value.reshape(*shape[:dim], groups, devices, size, *shape[dim + 1:])
    local = np.take(parts, rank, axis=dim + 1)
    return local.reshape(*shape[:dim], groups * size, *shape[dim + 1:])


def join(parts: Sequence[np.ndarray], dim: int, groups: int = 1) -> np.ndarray:
    """The whole of which `parts` are the devices' blocks (`block`'s inverse)."""
    if groups == 1:
        return np.concatenate(parts, axis=dim)
    chunks = [np.split(part, groups, axis=dim) for part in parts]
    return np.concatenate([chunks[r][g] for g in range(groups) for r in range(len(parts))], axis=dim)


def splits(fn: func.FuncOp) -> list[list[tuple[str, int, int]]]:
    """Per argument of `fn`, its `(axis, dim, groups)` splits (empty: whole on every device)."""
    attrs = fn.arg_attrs.data if fn.arg_attrs else [None] * len(fn.body.block.args)
    result = []
    for entry in attrs:
        split = entry.data.get(SPLIT_ATTR) if isinstance(entry, DictionaryAttr) else None
        triples = split.data if isinstance(split, ArrayAttr) else ()
        result.append([(t.data[0].data, t.data[1].value.data, t.data[2].value.data) for t in triples])
    return result


def whole_shapes(fn: func.FuncOp) -> list[tuple[int, ...]]:
    """The shape of each argument of `fn` before `shard` split it (the shape a user's value has)."""
    module = fn.parent_op()
    sizes = mesh_sizes(module) if isinstance(module, ModuleOp) else {}
    shapes = []
    for arg, split in zip(fn.body.block.args, splits(fn)):
        shape = list(arg.type.get_shape())
        for axis, dim, _ in split:
            shape[dim] *= sizes.get(axis, 1)
        shapes.append(tuple(shape))
    return shapes


# --------------------------------------------------------------------------- the meeting point


class _Meeting:
    """Where the devices of one run post their values for a collective and pick up their group's."""

    def __init__(self, sizes: dict[str, int]):
        self.sizes = sizes
        self.condition = threading.Condition()
        self.posted: dict[tuple, dict[int, np.ndarray]] = {}
        self.taken: dict[tuple, int] = {}
        self.failed = False

    def exchange(self, device: _Device, axis: str, value: np.ndarray) -> list[np.ndarray]:
        count = device.counters[axis] = device.counters.get(axis, 0) + 1
        others = tuple((a, c) for a, c in device.coords.items() if a != axis)
        key = (axis, others, count)
        size = self.sizes[axis]
        with self.condition:
            self.posted.setdefault(key, {})[device.coords[axis]] = value
            self.condition.notify_all()
            while len(self.posted[key]) < size:
                if self.failed:
                    raise CollectiveError("error: another device of the run failed")
                self.condition.wait(WAIT_S)
            values = [self.posted[key][r] for r in range(size)]
            self.taken[key] = self.taken.get(key, 0) + 1
            if self.taken[key] == size:
                del self.posted[key], self.taken[key]
        return values

    def fail(self) -> None:
        with self.condition:
            self.failed = True
            self.condition.notify_all()


class _Device:
    def __init__(self, meeting: _Meeting, coords: dict[str, int]):
        self.meeting = meeting
        self.coords = coords
        self.counters: dict[str, int] = {}


_current = threading.local()


def _device(axis: str, devices: int) -> _Device:
    device = getattr(_current, "device", None)
    if device is None:
        raise CollectiveError(
            f"error: a collective over {devices} devices outside a sharded run: run the whole module"
            f" (`strata run`), which runs every device"
        )
    if device.meeting.sizes.get(axis) != devices:
        raise CollectiveError(
            f"error: a collective over {devices} devices along '{axis}', but the mesh has {device.meeting.sizes.get(axis)}"
        )
    return device


def all_reduce(value: np.ndarray, axis: str, devices: int) -> np.ndarray:
    """The sum of `value` over the calling device's group along `axis`, in device order."""
    device = _device(axis, devices)
    parts = device.meeting.exchange(device, axis, value)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total.astype(value.dtype, copy=False)


def all_gather(value: np.ndarray, axis: str, devices: int, dim: int, groups: int) -> np.ndarray:
    """The whole tensor whose blocks the calling device's group along `axis` holds (see `join`)."""
    device = _device(axis, devices)
    return join(device.meeting.exchange(device, axis, value), dim, groups)


def reduce_scatter(value: np.ndarray, axis: str, devices: int, dim: int, groups: int) -> np.ndarray:
    """The calling device's block along `dim` (see `block`) of the sum of `value` over its group along `axis`."""
    total = all_reduce(value, axis, devices)
    return block(total, dim, devices, _device(axis, devices).coords[axis], groups)


# --------------------------------------------------------------------------- entry point


def run(module: ModuleOp, fn: func.FuncOp, args: Sequence[np.ndarray], run_function: Callable) -> list[np.ndarray]:
    """
    `run_function(fn, args)` on every device of `module`'s mesh, each on its
    blocks of the split arguments; the outputs of device 0. An unsharded
    module runs once, as is.
    """
    sizes = mesh_sizes(module)
    if all(n == 1 for n in sizes.values()):
        return run_function(fn, args)
    per_arg = splits(fn)
    meeting = _Meeting(sizes)
    results: dict[int, list[np.ndarray]] = {}
    errors: list[BaseException] = []

    def work(index: int, coords: dict[str, int]) -> None:
        _current.device = _Device(meeting, coords)
        try:
            local = []
            for value, split in zip(args, per_arg):
                value = np.asarray(value)
                for axis, dim, groups in split:
                    value = block(value, dim, sizes[axis], coords[axis], groups)
                local.append(value)
            results[index] = run_function(fn, local)
        except BaseException as err:  # handed to the caller below
            errors.append(err)
            meeting.fail()
        finally:
            _current.device = None

    ranks = list(itertools.product(*(range(sizes[a]) for a in MESH_AXES)))
    threads = [
        threading.Thread(target=work, args=(i, dict(zip(MESH_AXES, r))), name=f"device-{i}")
        for i, r in enumerate(ranks)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = next((e for e in errors if not isinstance(e, CollectiveError)), errors[0] if errors else None)
    if first is not None:
        raise first
    return results[0]
