"""
The compiler on one screen: stages, the default pipeline per target, and the
pass runner with IR dumps, timing, a manifest and failure reproducers.

`compile_module` runs the passes that take a module from the stage it is at
(detected from the IR, so any dump can be resumed) up to the `--emit` stage,
verifying after every pass. A pass that raises, or leaves IR that does not
verify, is reported with the pass name, the op and its `.model` location,
and a reproducer (the IR before the pass plus the `strata opt` command that
replays it) is written to the dump folder or the system's temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import MemRefType, ModuleOp
from xdsl.ir import Operation
from xdsl.passes import ModulePass

from strata.compiler import ir
from strata.compiler.diagnostics import StrataError
from strata.dialects.graph.kernel import KernelOp
from strata.dialects.graph.layout import LayoutAttr, RelayoutOp
from strata.dialects.hardware import HardwareKernelOp
from strata.dialects.device import DeviceSpec, SpecError, default_device, module_device, set_module_device
from strata.dialects.vocabulary import TARGETS, DoesNotFit, IllegalSchedule
from strata.passes.assign_dataflow import AssignDataflowPass
from strata.passes.assign_layout import AssignLayoutPass
from strata.passes.export_mlir import ExportMlirPass
from strata.passes.fuse import FusePass
from strata.passes.lower_to_hardware import LowerToHardwarePass
from strata.passes.lower_to_loops import LowerToLoopsPass
from strata.passes.place_chips import PlaceChipsPass
from strata.passes.shard import ShardPass
from strata.passes.tile import TilePass


class Stage(StrEnum):
    """Ordered emit levels; `--emit` stops after the named stage."""

    GRAPH = "graph"
    FUSED = "fused"
    LAYOUT = "layout"
    LOOP = "loop"
    HARDWARE = "hardware"
    MLIR = "mlir"
    """Upstream MLIR: exported from the loop stage (not from hardware), see `passes_between`."""


STAGE_ORDER = tuple(Stage)


def default_pipeline(target: str) -> tuple[tuple[Stage, tuple[ModulePass, ...]], ...]:
    """
    The passes that produce each stage, in order, for `target`. Every pass
    reads the device recorded on the module (`attach_device`); decisions
    (tiles, chip placement) are passes that write attributes, lowerings
    only read them.
    """
    return (
        (Stage.FUSED, (ShardPass(), FusePass(target=target))),
        (Stage.LAYOUT, (AssignLayoutPass(target=target),)),
        (Stage.LOOP, (TilePass(target=target), LowerToLoopsPass())),
        (Stage.HARDWARE, (PlaceChipsPass(), AssignDataflowPass(target=target), LowerToHardwarePass(target=target))),
    )


def detect_stage(module: ModuleOp) -> Stage:
    """The stage printed IR is at, so compilation can resume from any dump."""
    ops = list(module.walk())
    if not any(op.name.startswith(("graph.", "loop.")) or isinstance(op, HardwareKernelOp) for op in ops) and any(
        op.name.startswith(("memref.", "linalg.")) for op in ops
    ):
        return Stage.MLIR
    if any(isinstance(op, HardwareKernelOp) for op in ops):
        return Stage.HARDWARE
    if any(op.name.startswith("loop.") for op in ops) or any(_on_laid_out_buffers(op) for op in ops):
        # A model with no kernel left (it returns an input, or a view of
        # one) is still on buffers.
        return Stage.LOOP
    if any(isinstance(op, RelayoutOp) for op in ops) or any(
        isinstance(getattr(r.type, "encoding", None), LayoutAttr) for op in ops for r in op.results
    ):
        return Stage.LAYOUT
    if any(isinstance(op, KernelOp) for op in ops):
        return Stage.FUSED
    return Stage.GRAPH


def _on_laid_out_buffers(op) -> bool:
    """A function over `memref`s with `#graph.layout`s: the loop stage's buffers."""
    if not isinstance(op, func.FuncOp):
        return False
    types = (*op.function_type.inputs, *op.function_type.outputs)
    return any(isinstance(t, MemRefType) and isinstance(t.layout, LayoutAttr) for t in types)


def passes_between(target: str, start: Stage, emit: Stage, threads: int = 1) -> list[ModulePass]:
    """Passes that take IR at `start` to `emit`; on the cpu, kernels tiled and lowered for `threads` (`--threads`)."""
    if emit == Stage.MLIR and start != Stage.MLIR:
        # The export branches off the loop stage: the default pipeline up to
        # loops, then `export-mlir` (never lower-to-hardware).
        if start == Stage.HARDWARE:
            raise StrataError("error: --emit mlir exports loop-stage IR; the input is already at stage 'hardware'")
        return passes_between(target, start, Stage.LOOP, threads) + [ExportMlirPass()]
    first, last = STAGE_ORDER.index(start), STAGE_ORDER.index(emit)
    if last < first:
        raise StrataError(f"error: the input is already at stage '{start}', past --emit {emit}")
    return [
        dataclasses.replace(p, threads=threads) if isinstance(p, TilePass | LowerToHardwarePass) and threads != 1 else p
        for stage, stage_passes in default_pipeline(target)
        if first < STAGE_ORDER.index(stage) <= last
        for p in stage_passes
    ]


def op_counts(module: Operation) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in module.walk():
        counts[op.name] = counts.get(op.name, 0) + 1
    return dict(sorted(counts.items()))


@dataclass
class DumpOptions:
    """Where and when to print the IR between passes."""

    after_all: bool = False
    after: frozenset[str] = frozenset()
    after_change: bool = False
    dump_dir: Path | None = None
    timing: bool = False
    debuginfo: bool = True
    stderr: Callable[[str], None] = print


@dataclass
class PassRecord:
    index: int
    name: str
    options: str
    changed: bool | None
    """None when not checked (no dump or change report asked for)."""
    time_s: float
    ops_before: int
    ops_after: int
    op_counts: dict[str, int] = field(default_factory=dict)


def run_passes(
    ctx: Context, module: ModuleOp, passes: list[ModulePass], dumps: DumpOptions
) -> list[PassRecord]:
    """Apply `passes` in order with verification, dumps and records."""
    records: list[PassRecord] = []
    # Printing the whole module after every pass costs more than most passes:
    # print only for dumps and change reports. A failure's reproducer replays
    # the passes that succeeded on a copy of the input instead.
    needs_text = bool(dumps.after_all or dumps.after or dumps.after_change or dumps.dump_dir)
    original = module.clone()
    text = ir.print_module(module, dumps.debuginfo) if needs_text else None
    if dumps.dump_dir is not None:
        _dump(dumps.dump_dir, "00-input.mlir", text)
    for index, module_pass in enumerate(passes, start=1):
        before_text, before_ops = text, sum(1 for _ in module.walk())
        start = time.perf_counter()
        try:
            module_pass.apply(ctx, module)
            ir.verify_module(module)
        except Exception as err:
            replayed = _replay(ctx, original, passes[: index - 1], dumps.debuginfo)
            raise _pass_failure(module_pass, err, replayed, dumps) from None
        elapsed = time.perf_counter() - start
        counts = op_counts(module)
        text = ir.print_module(module, dumps.debuginfo) if needs_text else None
        record = PassRecord(
            index, module_pass.name, module_pass.pipeline_pass_spec().__str__(),
            text != before_text if needs_text else None, elapsed, before_ops, sum(counts.values()), counts,
        )
        records.append(record)
        header = f"// -----// IR Dump After {record.options} ({module_pass.name}) //----- //"
        if (
            dumps.after_all
            or module_pass.name in dumps.after
            or (dumps.after_change and record.changed)
        ):
            dumps.stderr(header + "\n" + text)
        if dumps.dump_dir is not None:
            _dump(dumps.dump_dir, f"{index:02d}-{module_pass.name}.mlir", text)
        if dumps.timing:
            dumps.stderr(
                f"{record.options:<40} {elapsed * 1e3:9.1f} ms  ops {before_ops} -> {record.ops_after}"
                + ("  (no change)" if record.changed is False else "")
            )
    if dumps.dump_dir is not None:
        manifest = {"passes": [vars(r) for r in records]}
        _dump(dumps.dump_dir, "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return records


def _dump(folder: Path, name: str, text: str) -> None:
    """Write one file of `--dump-dir`; a folder that cannot be made or written is the user's error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    except OSError as err:
        raise StrataError(f"error: cannot write the dump {folder / name}: {err.strerror}") from None


def _replay(ctx: Context, original: ModuleOp, passes: list[ModulePass], debuginfo: bool) -> str:
    """The IR before a failing pass: the input with the passes before it applied again."""
    for module_pass in passes:
        module_pass.apply(ctx, original)
    return ir.print_module(original, debuginfo)


def _pass_failure(module_pass: ModulePass, err: Exception, before_text: str, dumps: DumpOptions) -> StrataError:
    spec = str(module_pass.pipeline_pass_spec())
    # A model or tile too big for the device is the user's choice of device
    # or device count, not the compiler's bug: no pass name, no reproducer.
    if isinstance(err, DoesNotFit):
        return StrataError(f"error: {err}")
    # Errors about the model, the schedule or the device are the user's to
    # fix and speak for themselves; any other exception names its type.
    message = str(err) if isinstance(err, StrataError | IllegalSchedule | SpecError) else f"{type(err).__name__}: {err}"
    try:
        reproducer = _reproducer_path(dumps)
        reproducer.write_text(f"// Replay with: strata opt {reproducer} -p '{spec}'\n" + before_text)
        saved = f"\nreproducer written to {reproducer}: strata opt {reproducer} -p '{spec}'"
    except OSError:
        saved = ""
    return StrataError(f"error: pass '{spec}' failed:\n{message}{saved}")


def _reproducer_path(dumps: DumpOptions) -> Path:
    """`strata-reproducer.mlir` in the dump folder, else a fresh file in the system's temporary folder
    (as clang's crash reports): a failure never litters the working directory."""
    if dumps.dump_dir is not None:
        return Path(dumps.dump_dir) / "strata-reproducer.mlir"
    handle, name = tempfile.mkstemp(prefix="strata-reproducer-", suffix=".mlir")
    os.close(handle)
    return Path(name)


def attach_device(module: ModuleOp, device: DeviceSpec | None, target: str) -> DeviceSpec:
    """
    Record the device the module compiles for, once, before any pass runs.

    A module that already records one (a dump) keeps it: resuming lowers for
    the same device. `device` (the user's `--device`/`--device-file`/`--spec`)
    must then be that device; a graph-stage module, not yet shaped by any
    device, takes the new one. Without either, `target`'s default device.
    """
    try:
        recorded = module_device(module)
    except SpecError as err:
        raise StrataError(f"error: {err}") from None
    if recorded is not None and device is not None and recorded != device and detect_stage(module) != Stage.GRAPH:
        raise StrataError(
            f"error: the input was lowered for device '{recorded.name}' ({recorded.target}); it cannot be resumed"
            f" for device '{device.name}' with other figures: compile the model again, or drop the device options"
        )
    chosen = device or recorded
    if chosen is None:
        chosen = default_device(target)
    if chosen.target != target:
        raise StrataError(
            f"error: the input was lowered for {chosen.target} device '{chosen.name}', not for --target {target}"
        )
    set_module_device(module, chosen)
    return chosen


def compile_module(
    module: ModuleOp,
    target: str,
    emit: Stage,
    dumps: DumpOptions | None = None,
    pipeline: list[ModulePass] | None = None,
    device: DeviceSpec | None = None,
) -> list[PassRecord]:
    """Lower `module` in place from its current stage to `emit` for `device` (default: `target`'s)."""
    if target not in TARGETS:
        raise StrataError(f"error: unknown target '{target}' (targets: {', '.join(TARGETS)})")
    attach_device(module, device, target)
    passes = pipeline if pipeline is not None else passes_between(target, detect_stage(module), emit)
    return run_passes(ir.make_context(), module, passes, dumps or DumpOptions())
