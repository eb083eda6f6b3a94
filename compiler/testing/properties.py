"""
The properties every strata pass must keep, as functions that raise
`PropertyFailure(name, message)`.

For each pass of a `Pipeline`, on a model (`compiler.testing.random_models.Model`):

- `pass-runs`: the pass applies without raising;
- `verifies`: the IR verifies after it;
- `round-trip`: printing the IR, parsing it back and printing again gives
  the same text (locations included);
- `interface`: the model function keeps its inputs and params (names,
  order, shapes, dtypes) and results, all in the logical layout;
- `semantics`: executing the IR after the pass gives what executing it
  before did: graph, fused and layout IR on the NumPy reference
  (`compiler.execution.reference`), loop and hardware IR on the loop interpreter
  (`compiler.execution.loop_interpreter`). Integer outputs must be equal, NaN and
  infinities must sit at the same places, and finite float outputs may
  differ by `Model.tolerance` of the output's largest magnitude:
  1e-4 in f32 (GEMMs and reductions sum in another order), 1e-2 in f16,
  4e-2 in bf16, 0.25 in f8e4m3 and 0.5 in f8e5m2 (one rounding unit of the
  format, see `compiler.testing.random_models.TOLERANCE`);
- `idempotent`: `fuse`, `assign-layout` and `tile` applied a second time
  change nothing (`IDEMPOTENT`).

At the hardware stage, for every target whose cost model imports
(`backends.cost.estimate` with the target's default device):

- `cost-positive`: every kernel's time is finite and > 0;
- `cost-bounds`: no kernel is faster than its ideal compute bound (its
  FLOPs at the device's largest `peak_*` figure) or its bandwidth bound
  (the bytes it moves at each memory level for which the spec gives a
  `LEVEL_bandwidth`, at that bandwidth);
- `cost-monotonic` (`check_cost_monotonic`, on `growable_models()`): the
  cost of a model does not decrease when one of its dimensions grows and
  the schedule stays the same (the same passes, and every kernel tiled as
  before: cut dims keep their tiles, whole dims stay whole), in total and
  per kernel;
- `tuned-not-worse` (`check_tuned_not_worse`): a tuned schedule never costs
  more than the default one. A tuner plugs in with `register_tuner(fn)`
  (`strata fuzz` registers the real one, `autotuner()`, for the default
  pipeline); until one is registered the property is skipped.

`check_model` runs them all for one model and one pipeline; `compiler.testing.fuzz`
runs it on drawn models (`strata fuzz`).
"""

from __future__ import annotations

import difflib
import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from strata.compiler import ir
from strata.compiler.diagnostics import StrataError
from strata.compiler.driver import Stage, default_pipeline, detect_stage
from strata.compiler.testing.random_models import Model
from strata.dialects.device import DeviceSpec, default_device, module_device, set_module_device

NOT_EXECUTED = frozenset({"mlir"})
"""Stages `semantics` cannot execute here (upstream MLIR runs through the MLIR toolchain)."""

IDEMPOTENT = frozenset({"fuse", "assign-layout", "tile"})
"""Passes that must change nothing when applied to their own output."""

PROPERTIES = {
    "frontend": "the model text compiles to verified graph IR that round-trips",
    "pass-runs": "the pass applies without raising",
    "verifies": "the IR verifies after the pass",
    "round-trip": "print -> parse -> print gives the same text",
    "interface": "the model function keeps its inputs, params and results: names, shapes, dtypes, logical layout",
    "semantics": "executing the IR after the pass gives the values it gave before (within tolerance)",
    "idempotent": "applying the pass again changes nothing",
    "crash": "checking the model raised an unexpected exception (a bug in strata or in these checks)",
    "cost-runs": "the cost model estimates the hardware IR without raising",
    "cost-positive": "every kernel's estimated time is finite and positive",
    "cost-bounds": "no kernel beats its ideal compute or bandwidth bound",
    "cost-monotonic": "growing a dimension never lowers the cost under the same schedule",
    "tuned-not-worse": "a tuned schedule never costs more than the default one",
}
"""Every property by name, with what it asserts."""


class PropertyFailure(AssertionError):
    """A property does not hold: `name` (a key of `PROPERTIES`) and what went wrong."""

    def __init__(self, name: str, message: str, model: Model | None = None):
        self.name = name
        self.message = message
        self.model = model
        """The model it failed on, when the failure is about another model than the one checked."""
        super().__init__(f"property '{name}' failed: {message}")


# --------------------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class Pipeline:
    """Passes to check (`passes`) after the passes that bring a graph module to their stage (`prefix`)."""

    target: str
    passes: tuple[ModulePass, ...]
    prefix: tuple[ModulePass, ...] = ()
    label: str = ""
    device: DeviceSpec | None = None
    """The device every model is compiled for (recorded on it first); None: the target's default."""

    def start(self, model: Model) -> ModuleOp:
        """The model's graph module, recording the pipeline's device when it has one."""
        module = model.module()
        if self.device is not None:
            set_module_device(module, self.device)
        return module

    @classmethod
    def default(cls, target: str) -> Pipeline:
        """The target's default pipeline, graph to hardware."""
        passes = tuple(p for _, stage_passes in default_pipeline(target) for p in stage_passes)
        return cls(target, passes, (), f"default pipeline of {target}")

    @classmethod
    def parse(cls, spec: str, target: str) -> Pipeline:
        """
        A pipeline string (`tile{sizes=2,2,2},lower-to-loops`). Passes with a
        `target` option get `target` unless the string sets one; the default
        pipeline's passes before the first one named here run first, unchecked,
        so that e.g. `tile` sees layout-stage IR.
        """
        from strata.compiler.pipeline import parse_pipeline

        passes = list(parse_pipeline(spec).passes)
        if not passes:
            raise StrataError(f"error: the pass pipeline '{spec}' has no passes")
        if "target=" not in spec:
            passes = [_retarget(p, target) for p in passes]
        default = Pipeline.default(target).passes
        names = [p.name for p in default]
        prefix = tuple(default[: names.index(passes[0].name)]) if passes[0].name in names else ()
        return cls(target, tuple(passes), prefix, f"'{spec}' on {target}")

    def describe(self) -> str:
        return self.label or ",".join(str(p.pipeline_pass_spec()) for p in self.passes)


def _retarget(module_pass: ModulePass, target: str) -> ModulePass:
    if any(f.name == "target" for f in fields(module_pass)):
        return replace(module_pass, target=target)
    return module_pass


def pass_spec(module_pass: ModulePass) -> str:
    return str(module_pass.pipeline_pass_spec())


# --------------------------------------------------------------------------- single properties


def run_pass(module_pass: ModulePass, module: ModuleOp, ctx=None) -> None:
    """`pass-runs` and `verifies`."""
    ctx = ctx or ir.make_context()
    spec = pass_spec(module_pass)
    try:
        module_pass.apply(ctx, module)
    except Exception as err:  # noqa: BLE001 - any exception is the finding
        raise PropertyFailure("pass-runs", f"'{spec}' raised {_describe(err)}") from None
    try:
        ir.verify_module(module)
    except Exception as err:  # noqa: BLE001 - a verifier that crashes fails too
        raise PropertyFailure("verifies", f"the IR after '{spec}' does not verify: {_describe(err)}") from None


def check_round_trip(module: ModuleOp, after: str) -> str:
    """`round-trip`: print, parse, print; returns the text."""
    text = ir.print_module(module)
    try:
        parsed = ir.parse_module(text, f"after-{after}.mlir")
    except Exception as err:  # noqa: BLE001
        raise PropertyFailure("round-trip", f"the IR printed after {after} does not parse back: {_describe(err)}") from None
    again = ir.print_module(parsed)
    if again != text:
        raise PropertyFailure("round-trip", f"the IR printed after {after} prints differently once parsed:\n"
                              + _diff(text, again))
    return text


def interface(module: ModuleOp) -> list[str]:
    """The model function's signature as text: each argument's kind, name and type, then each result's type."""
    from strata.compiler.execution.reference import argument_names, model_function
    from strata.dialects.graph.dtypes import dtype_name
    from strata.dialects.graph.layout import layout_of

    fn = model_function(module)

    def describe(type_) -> str:
        layout = layout_of(type_)
        where = "" if layout.is_logical else f" in the physical layout {layout}"
        return f"{dtype_name(type_.element_type)}{list(type_.get_shape())}{where}"

    args = [f"{kind} {name}: {describe(a.type)}" for (kind, name), a in zip(argument_names(fn), fn.body.block.args)]
    return args + [f"result {i}: {describe(t)}" for i, t in enumerate(fn.function_type.outputs.data)]


def check_interface(expected: list[str], module: ModuleOp, after: str) -> None:
    """`interface`: the signature is still `expected` (`interface()` of the graph module)."""
    try:
        got = interface(module)
    except Exception as err:  # noqa: BLE001
        raise PropertyFailure("interface", f"the model function after {after} is unreadable: {_describe(err)}") from None
    if got != expected:
        changed = next((f"{a!r} became {b!r}" for a, b in zip(expected, got) if a != b),
                       f"{len(expected)} arguments and results became {len(got)}")
        raise PropertyFailure("interface", f"after {after} the model function changed its signature: {changed}")


def check_idempotent(module_pass: ModulePass, module: ModuleOp, text: str | None = None) -> None:
    """`idempotent`: applying the pass to its own output changes nothing."""
    text = text if text is not None else ir.print_module(module)
    again = module.clone()
    spec = pass_spec(module_pass)
    try:
        module_pass.apply(ir.make_context(), again)
    except Exception as err:  # noqa: BLE001
        raise PropertyFailure("idempotent", f"'{spec}' applied a second time raised {_describe(err)}") from None
    second = ir.print_module(again)
    if second != text:
        raise PropertyFailure("idempotent", f"'{spec}' applied a second time changes the IR:\n" + _diff(text, second))


def execute(module: ModuleOp, inputs: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Run a module at any stage: the reference up to layout, the loop interpreter after."""
    from strata.compiler.execution import loop_interpreter, reference

    runner = loop_interpreter if detect_stage(module) in (Stage.LOOP, Stage.HARDWARE) else reference
    return [np.asarray(v) for v in runner.run_module(module, inputs, params)]


def compare_outputs(want: Sequence[np.ndarray], got: Sequence[np.ndarray], rtol: float) -> str | None:
    """Why `got` is not `want` within `rtol` (see the module docstring), or None."""
    if len(want) != len(got):
        return f"{len(got)} outputs instead of {len(want)}"
    for i, (a, b) in enumerate(zip(want, got)):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"output {i} is {b.dtype}{list(b.shape)} instead of {a.dtype}{list(a.shape)}"
        if a.dtype.kind in "iub":
            if not np.array_equal(a, b):
                where = tuple(int(j) for j in np.argwhere(a != b)[0])
                return f"output {i} differs at {list(where)}: {b[where]} instead of {a[where]} (integers must be equal)"
            continue
        x, y = a.astype(np.float64), b.astype(np.float64)
        for what, mask_x, mask_y in (
            ("NaN", np.isnan(x), np.isnan(y)),
            ("+inf", np.isposinf(x), np.isposinf(y)),
            ("-inf", np.isneginf(x), np.isneginf(y)),
        ):
            if not np.array_equal(mask_x, mask_y):
                where = tuple(int(j) for j in np.argwhere(mask_x != mask_y)[0])
                return (f"output {i} differs at {list(where)}: {float(y[where]):.7g} instead of"
                        f" {float(x[where]):.7g} ({what} moved)")
        finite = np.isfinite(x)
        if not finite.any():
            continue
        scale = float(np.abs(x[finite]).max())
        error = np.where(finite, np.abs(x - np.where(finite, y, 0.0)), 0.0)
        worst = float(error.max())
        if worst > rtol * max(scale, 1e-30):
            where = tuple(int(j) for j in np.unravel_index(int(error.argmax()), error.shape))
            return (f"output {i} differs at {list(where)}: {float(y[where]):.7g} instead of {float(x[where]):.7g}"
                    f" (error {worst:.3g}, allowed {rtol:g} x {scale:.3g})")
    return None


def check_semantics(before: Sequence[np.ndarray], module: ModuleOp, inputs, params, rtol: float,
                    after: str) -> list[np.ndarray]:
    """`semantics`: the module computes `before`; returns what it computed."""
    stage = detect_stage(module)
    try:
        outputs = execute(module, inputs, params)
    except Exception as err:  # noqa: BLE001
        raise PropertyFailure("semantics", f"executing the {stage} IR after {after} raised {_describe(err)}") from None
    problem = compare_outputs(before, outputs, rtol)
    if problem is not None:
        raise PropertyFailure("semantics", f"the {stage} IR after {after} computes other values: {problem}")
    return outputs


# --------------------------------------------------------------------------- cost models


def cost_model_available(target: str) -> bool:
    """Whether `backends.cost.estimate` has a model for `target` that imports."""
    import importlib

    try:
        from strata.backends.cost import MODELS

        importlib.import_module(MODELS[target])
        from strata.dialects.device import default_device

        default_device(target)
    except (ImportError, KeyError):
        return False
    return True


def estimate(module: ModuleOp, target: str, spec=None):
    """The cost report of hardware IR on `spec` (default: the device it was lowered for); `cost-runs`."""
    from strata.backends.cost import estimate as cost_estimate

    spec = spec or module_device(module) or default_device(target)
    try:
        return cost_estimate(module, spec)
    except Exception as err:  # noqa: BLE001
        raise PropertyFailure("cost-runs", f"estimating the {target} hardware IR raised {_describe(err)}") from None


def _peak(spec) -> float:
    return max(float(v) for k, v in spec.items() if k.startswith("peak_") and isinstance(v, (int, float)))


def check_cost(module: ModuleOp, target: str, spec=None):
    """`cost-positive` and `cost-bounds` for every kernel of the report; returns the report."""
    spec = spec or module_device(module) or default_device(target)
    report = estimate(module, target, spec)
    peak = _peak(spec)
    if not report.kernels:
        raise PropertyFailure("cost-positive", "the report has no kernels")
    for k in report.kernels:
        if not (math.isfinite(k.time_s) and k.time_s > 0):
            raise PropertyFailure("cost-positive", f"kernel '{k.name}' takes {k.time_s!r} s on {spec.name}")
        bounds = [(k.flops / peak, f"{k.flops} FLOPs at the peak {peak:.4g} FLOP/s")]
        for level, moved in k.bytes.items():
            bandwidth = spec.get(f"{level}_bandwidth")
            if isinstance(bandwidth, (int, float)) and bandwidth > 0:
                bounds.append((moved / bandwidth, f"{moved} bytes of {level} at {bandwidth:.4g} B/s"))
        for bound, why in bounds:
            if k.time_s < bound * (1 - 1e-9):
                raise PropertyFailure(
                    "cost-bounds",
                    f"kernel '{k.name}' ({', '.join(k.ops)}) takes {k.time_s:.4g} s on {spec.name}, less than"
                    f" its ideal bound {bound:.4g} s ({why})",
                )
    return report


def compile_to_hardware(model: Model, target: str, passes: Sequence[ModulePass] | None = None,
                        after_tile: Callable[[ModuleOp], None] | None = None,
                        device: DeviceSpec | None = None) -> ModuleOp:
    """
    The model lowered by `passes` (default: the target's pipeline) for
    `device` (default: the target's), verified after each;
    `after_tile(module)` runs right after the `tile` pass.
    """
    module = Pipeline(target, (), device=device).start(model)
    ctx = ir.make_context()
    for module_pass in passes if passes is not None else Pipeline.default(target).passes:
        run_pass(module_pass, module, ctx)
        if module_pass.name == "tile" and after_tile is not None:
            after_tile(module)
    return module


def tile_schedule(module: ModuleOp) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """Each kernel's iteration space, tile sizes and loop order, by kernel name (layout stage, after `tile`)."""
    from strata.dialects.graph.kernel import KernelOp, kernel_bounds
    from strata.dialects.vocabulary import ORDER_ATTR, TILE_ATTR

    return {
        op.kernel_name.data: (
            tuple(kernel_bounds(op)), tuple(op.attributes[TILE_ATTR].get_values()),
            tuple(op.attributes[ORDER_ATTR].get_values()),
        )
        for op in module.walk()
        if isinstance(op, KernelOp) and TILE_ATTR in op.attributes
    }


def pin_schedule(module: ModuleOp, schedule: dict) -> list[str]:
    """
    Give each kernel of `module` the tiles it has in `schedule` (of the same
    model at other sizes): a dim cut there keeps its tile, a whole dim stays
    whole. Returns the kernels that cannot take them (illegal, not fitting
    the module's device, or missing).
    """
    from xdsl.dialects.builtin import DenseArrayBase, i64

    from strata.dialects.graph.kernel import KernelOp, kernel_bounds
    from strata.dialects.vocabulary import ORDER_ATTR, TILE_ATTR
    from strata.passes.tile import fits, legal

    device = module_device(module)
    refused = []
    for op in module.walk():
        if not isinstance(op, KernelOp):
            continue
        name = op.kernel_name.data
        bounds = tuple(kernel_bounds(op))
        if name not in schedule or len(schedule[name][0]) != len(bounds):
            refused.append(name)
            continue
        old_bounds, old_tiles, order = schedule[name]
        tiles = tuple(b if t >= ob else t for b, t, ob in zip(bounds, old_tiles, old_bounds))
        if not legal(op, tiles) or (device is not None and not fits(op, tiles, device)):
            refused.append(name)
            continue
        op.attributes[TILE_ATTR] = DenseArrayBase.from_list(i64, list(tiles))
        op.attributes[ORDER_ATTR] = DenseArrayBase.from_list(i64, list(order))
    return refused


def check_cost_monotonic(model: Model, name: str, value: int, target: str,
                         passes: Sequence[ModulePass] | None = None, spec=None,
                         device: DeviceSpec | None = None) -> bool:
    """
    `cost-monotonic`: `model` with the `let` constant `name` grown to `value`
    (larger) costs no less, in total and per kernel, under the same schedule:
    the same passes, and each kernel tiled as in `model` (`pin_schedule`; a
    tile the default tiling would pick differently for the grown sizes, say
    halved to fit on chip, would be another schedule). Returns False
    (skipped) when the grown model cannot take the same tiles.
    """
    grown = model.grown(name, value)
    schedule: dict = {}
    refused: list[str] = []
    small = estimate(compile_to_hardware(model, target, passes, after_tile=lambda m: schedule.update(tile_schedule(m)),
                                         device=device), target, spec)
    big_module = compile_to_hardware(grown, target, passes, after_tile=lambda m: refused.extend(pin_schedule(m, schedule)),
                                     device=device)
    if refused:
        return False
    big = estimate(big_module, target, spec)
    base = dict(model.lets) | dict(model.overrides)
    what = f"{name} = {base.get(name)} -> {value}"
    if big.time_s < small.time_s * (1 - 1e-9):
        raise PropertyFailure(
            "cost-monotonic", f"growing {what} lowers the {target} cost from {small.time_s:.6g} s to"
            f" {big.time_s:.6g} s (same tiles)", model)
    before = {k.name: k for k in small.kernels}
    for k in big.kernels:
        old = before.get(k.name)
        if old is not None and k.time_s < old.time_s * (1 - 1e-9):
            raise PropertyFailure(
                "cost-monotonic", f"growing {what} lowers the {target} time of kernel '{k.name}'"
                f" ({', '.join(k.ops)}) from {old.time_s:.6g} s to {k.time_s:.6g} s (same tiles)", model)
    return True


Tuner = Callable[[ModuleOp, str], ModuleOp]
"""`tuner(graph_module, target)` -> the module compiled to hardware with the tuned schedule."""

_TUNER: list[Tuner] = []


def register_tuner(tuner: Tuner | None) -> None:
    """Plug the autotuner into `tuned-not-worse` (None unplugs it)."""
    _TUNER[:] = [tuner] if tuner is not None else []


def autotuner(budget: int = 8) -> Tuner:
    """
    The real autotuner (`compiler.tuning.autotune`: fusion/layout variants, then
    `budget` evaluations per kernel, no database) as a `Tuner`.
    """

    def tune(graph: ModuleOp, target: str) -> ModuleOp:
        from strata.compiler.tuning.autotune import Options, autotune
        from strata.compiler.driver import compile_module

        device = module_device(graph) or default_device(target)
        module, _ = autotune(graph, target, device, Options(budget=budget))
        compile_module(module, target, Stage.HARDWARE)
        return module

    return tune


def check_tuned_not_worse(model: Model, target: str, tuner: Tuner | None = None, spec=None) -> bool:
    """
    `tuned-not-worse`: the tuned schedule's cost is at most the default
    schedule's, both on `spec` (default: the target's default device).
    Returns False (skipped) when no tuner is registered.
    """
    tuner = tuner or (_TUNER[0] if _TUNER else None)
    if tuner is None:
        return False
    default = estimate(compile_to_hardware(model, target, device=spec), target, spec)
    try:
        tuned_module = tuner(Pipeline(target, (), device=spec).start(model), target)
    except Exception as err:  # noqa: BLE001
        raise PropertyFailure("tuned-not-worse", f"the tuner raised {_describe(err)}") from None
    tuned = estimate(tuned_module, target, spec)
    if tuned.time_s > default.time_s * (1 + 1e-9):
        raise PropertyFailure("tuned-not-worse", f"the tuned {target} schedule costs {tuned.time_s:.6g} s, the"
                              f" default {default.time_s:.6g} s")
    return True


# --------------------------------------------------------------------------- everything for one model


@dataclass
class Checked:
    """What `check_model` did."""

    passes: int = 0
    stages: list[str] = field(default_factory=list)
    kernels: int = 0
    costed: bool = False
    unexecuted: list[str] = field(default_factory=list)
    """Passes whose output stage this process cannot execute (`NOT_EXECUTED`): no `semantics` check."""


def check_model(model: Model, pipeline: Pipeline, *, seed: int = 0, cost: bool = True, spec=None) -> Checked:
    """Every property of the pipeline's passes on `model`; raises `PropertyFailure`."""
    done = Checked()
    try:
        module = pipeline.start(model)
    except Exception as err:  # noqa: BLE001
        raise PropertyFailure("frontend", f"the model does not compile: {_describe(err)}") from None
    check_round_trip(module, "the frontend")
    expected = interface(module)
    from strata.compiler.testing.random_models import module_values

    try:
        inputs, params = module_values(module, seed)
    except StrataError as err:
        raise PropertyFailure("frontend", f"no values for the model: {err}") from None
    ctx = ir.make_context()
    for module_pass in pipeline.prefix:
        run_pass(module_pass, module, ctx)
    rtol = model.tolerance
    try:
        before = execute(module, inputs, params)
    except Exception as err:  # noqa: BLE001
        raise PropertyFailure("semantics", f"executing the {detect_stage(module)} IR raised {_describe(err)}") from None
    for module_pass in pipeline.passes:
        spec_text = pass_spec(module_pass)
        run_pass(module_pass, module, ctx)
        check_interface(expected, module, f"'{spec_text}'")
        text = check_round_trip(module, f"'{spec_text}'")
        if str(detect_stage(module)) in NOT_EXECUTED:
            done.unexecuted.append(spec_text)
        else:
            before = check_semantics(before, module, inputs, params, rtol, f"'{spec_text}'")
        if module_pass.name in IDEMPOTENT:
            check_idempotent(module_pass, module, text)
        done.passes += 1
        done.stages.append(str(detect_stage(module)))
    if cost and detect_stage(module) == Stage.HARDWARE and cost_model_available(pipeline.target):
        report = check_cost(module, pipeline.target, spec)
        done.kernels = len(report.kernels)
        done.costed = True
    return done


# --------------------------------------------------------------------------- helpers


def _describe(err: BaseException) -> str:
    if isinstance(err, StrataError):
        return f"an error:\n{err}"
    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(err).__name__}: {err}{where}"


def _diff(a: str, b: str, limit: int = 12) -> str:
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "first", "second", lineterm="", n=1))
    more = f"\n... ({len(lines) - limit} more diff lines)" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more
