"""
strata as a library: load a model, compile it for a device, read its cost, run it.

    import strata

    model = strata.load("samples/mlp.model", defines={"B": 64})
    compiled = strata.compile(model, target="tpu", spec={"vmem_bytes": 4 * 2**20})
    print(compiled.time_s, compiled.report["total"]["utilisation"])
    outputs = strata.run(compiled, seed=0)   # executes the hardware IR
    expected = strata.run(model, seed=0)     # the NumPy reference, same drawn values

The same pipeline as `strata compile`: the device is resolved once (a
shipped name, a spec file, a `DeviceSpec`, with `spec` overrides), recorded
on the module, and read by every pass and the cost model. Every failure the
command line reports as `error: ...` raises `strata.Error` with that
message. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from strata.compiler import ir
from strata.compiler.device_options import named_device
from strata.compiler.diagnostics import StrataError as Error
from strata.compiler.driver import Stage, attach_device, compile_module, detect_stage, passes_between
from strata.compiler.schedule import apply_schedule, parse_schedule
from strata.dialects.device import DeviceSpec, SpecError, load_device_file, module_device, with_overrides
from strata.dialects.vocabulary import TARGETS

__all__ = ["Compiled", "Error", "Model", "compile", "device", "load", "parse", "run"]


@dataclass
class Model:
    """A model at the graph stage (`module`), as loaded from `source`."""

    module: ModuleOp
    source: str

    def ir(self, debuginfo: bool = True) -> str:
        return ir.print_module(self.module, debuginfo)


@dataclass
class Compiled:
    """A model lowered to `stage` for `device`; `report` is the JSON cost report at the hardware stage."""

    module: ModuleOp
    device: DeviceSpec
    stage: str
    report: dict[str, Any] | None

    @property
    def time_s(self) -> float:
        """The estimated time of one run of the model on the device."""
        if self.report is None:
            raise Error(f"error: a cost estimate needs the hardware stage, not '{self.stage}'")
        return self.report["total"]["time_s"]

    def ir(self, debuginfo: bool = True) -> str:
        return ir.print_module(self.module, debuginfo)


def load(path: str | Path, defines: Mapping[str, int] | None = None) -> Model:
    """A `.model` file (with `let` constants overridden by `defines`), or printed IR (`.mlir`)."""
    from strata.compiler.frontend import load_model, read_source

    path = str(path)
    if path.endswith(".mlir"):
        if defines:
            raise Error("error: defines apply to .model files, not to IR input")
        return Model(ir.parse_module(read_source(path), path), path)
    return Model(load_model(path, dict(defines or {})), path)


def parse(text: str, filename: str = "<string>", defines: Mapping[str, int] | None = None) -> Model:
    """A model from its `.model` source text."""
    from strata.compiler.frontend import compile_source

    return Model(compile_source(text, filename, dict(defines or {})), filename)


def device(name: str | Path | DeviceSpec, spec: Mapping[str, Any] | Sequence[str] | None = None) -> DeviceSpec:
    """
    A device: a shipped name (`h100`, `tpu-v4`, ...), `host` (this machine's
    CPU, measured on first use), a spec file, or a `DeviceSpec`, with `spec`
    overrides.
    """
    return _load_device(name, spec)


def _load_device(name, spec) -> DeviceSpec:
    try:
        if isinstance(name, DeviceSpec):
            chosen = name
        elif str(name).endswith(".toml"):
            chosen = load_device_file(name)
        else:
            chosen = named_device(str(name))
        return with_overrides(chosen, spec) if spec else chosen
    except SpecError as err:
        raise Error(f"error: {err}") from None


def compile(
    model: Model,
    target: str | None = None,
    device: str | Path | DeviceSpec | None = None,
    spec: Mapping[str, Any] | Sequence[str] | None = None,
    emit: str = "hardware",
    schedule: Mapping[str, Any] | None = None,
    autotune: bool = False,
) -> Compiled:
    """
    Lower a copy of `model` to `emit` for `device` (default: `target`'s
    default device; `target` defaults to the device's, else `gpu`), with
    pass choices pinned by `schedule` (`{"tile": "64,64,32"}`, as
    `--schedule`) or searched first by the autotuner. At the hardware stage
    the result carries the cost report.
    """
    chosen = _device(target, device, spec)
    target = chosen.target if chosen is not None else (target or "gpu")
    if target not in TARGETS:
        raise Error(f"error: unknown target '{target}' (targets: {', '.join(TARGETS)})")
    try:
        stage = Stage(emit)
    except ValueError:
        raise Error(f"error: unknown stage '{emit}' (stages: {', '.join(s.value for s in Stage)})") from None
    module = model.module.clone()
    chosen = attach_device(module, chosen, target)
    if autotune:
        from strata.compiler.tuning.autotune import Options, autotune as tune

        if detect_stage(module) != Stage.GRAPH:
            raise Error("error: autotuning starts from a model or graph-stage IR, not a later dump")
        module, _ = tune(module, target, chosen, Options(db=None))
    items = [f"{key}={value}" for key, value in (schedule or {}).items()]
    passes = apply_schedule(passes_between(target, detect_stage(module), stage), parse_schedule(items))
    compile_module(module, target, stage, pipeline=passes)
    report = None
    if stage == Stage.HARDWARE:
        from strata.backends.cost import estimate
        from strata.compiler.reports.report import check_memory

        costed = estimate(module, module_device(module))
        check_memory(costed)
        report = costed.as_json()
    return Compiled(module, module_device(module), stage.value, report)


def run(
    what: Model | Compiled,
    inputs: Mapping[str, np.ndarray] | None = None,
    weights: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """
    Execute a model (NumPy reference) or a compiled one (the loop
    interpreter on loop and hardware IR) and return its results in order.
    Inputs and weights not given are drawn from a generator seeded with
    `seed`, the same values `strata run --seed` draws.
    """
    from strata.compiler.execution import loop_interpreter, reference
    from strata.compiler.execution.weights import bind_values
    from strata.compiler.reports.stats import model_function

    module = what.module
    bound = bind_values(model_function(module), seed, inputs, weights)
    stage = detect_stage(module)
    if stage == Stage.MLIR:
        raise Error("error: run the mlir stage natively with `strata run --backend mlir`")
    runner = loop_interpreter if stage in (Stage.LOOP, Stage.HARDWARE) else reference
    return runner.run_module(module, bound.inputs, bound.params)


def _device(target: str | None, device, spec) -> DeviceSpec | None:
    if device is None and not spec:
        return None
    if device is None:
        from strata.dialects.device import default_device

        device = default_device(target or "gpu")
    chosen = _load_device(device, spec)
    if target is not None and chosen.target != target:
        raise Error(f"error: device '{chosen.name}' is a {chosen.target} device, not one for target '{target}'")
    return chosen
