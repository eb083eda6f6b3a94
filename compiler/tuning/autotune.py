"""
`strata tune` and `strata compile --autotune`: search the passes' choices for
the cheapest schedule, reusing the tuning database.

Order of the search:
1. module-level choices: every combination of the fusion switches
   (`FusePass.schedule_space`) and the layout switches
   (`AssignLayoutPass.schedule_space`), each costed as the sum of its
   kernels and the relayouts a run pays (`_units`: on the cpu an input's
   too) at their default schedule (a kernel that occurs twice is costed
   once: kernels are keyed by structural hash);
2. per unique kernel of the best variant: tile sizes, loop order and (on the
   systolic target) the dataflow, searched by the chosen strategy within the
   budget; every evaluation is recorded in the database, and a point already
   there is reused without evaluating it again;
0. with a device count (`--devices N`), the parallelism first: every split
   of N into tensor (`tp`), data (`dp`) and pipeline (`pp`) parallelism that
   `shard` and `place-chips` accept and whose devices hold their share,
   with and without sequence parallelism (`sp`) where tp > 1 (unless it
   scatters nothing there: then it is the same program), costed on the
   whole model at the default schedules; the cheapest is written into the
   graph (`shard` records its mesh) before the rest;
3. on the LPU without a device count, the chip count (`strata.chips`): the
   fewest chips that fit, as the default pipeline places them (and pinned,
   which differs only when a kernel is sharded: it then spreads the weights
   evenly), one more, and twice as many, costed on the whole model.
The result is written into the IR as the attributes the passes read
(`tile_sizes`, `loop_order`, `dataflow` on each `graph.kernel`, `strata.chips`
on the module), so the tuned module compiles with the default pipeline.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from xdsl.dialects.builtin import IntegerAttr, ModuleOp
from xdsl.ir import BlockArgument, SSAValue

from strata.backends.cost import estimate
from strata.dialects.device import DeviceSpec, set_module_device
from strata.dialects.vocabulary import IllegalSchedule
from strata.backends.tuner.database import TuningDatabase, TuningKey
from strata.backends.tuner.hashing import structural_hash, structural_key
from strata.backends.tuner.search import TuneResult, tune
from strata.backends.tuner.space import Space, point_key
from strata.compiler import ir
from strata.compiler.driver import Stage, compile_module, detect_stage, passes_between, run_passes
from strata.compiler.tuning.spaces import KernelEvaluator, apply_point, default_point, kernel_points, standalone
from strata.dialects.graph import PARAM_ATTR, ReduceScatterOp
from strata.dialects.graph.kernel import KernelOp
from strata.dialects.graph.layout import RelayoutOp
from strata.dialects.hardware import tsp
from strata.dialects.vocabulary import CHIPS_ATTR
from strata.passes.assign_layout import AssignLayoutPass
from strata.passes.fuse import FusePass


@dataclass
class KernelResult:
    names: list[str]
    kind: str
    result: TuneResult

    @property
    def count(self) -> int:
        return len(self.names)


@dataclass
class TuneReport:
    target: str
    device: str
    variant: dict
    kernels: list[KernelResult] = field(default_factory=list)
    default_time_s: float = 0.0
    tuned_time_s: float = 0.0
    chips: int | None = None
    mesh: dict[str, int] | None = None
    """The parallelism chosen with a device count: {"tp": .., "dp": .., "pp": .., "sp": 0 or 1}."""
    meshes: list[dict] = field(default_factory=list)
    """Every parallelism tried: its degrees and time, or why it was refused."""
    evaluations: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    threads: int = 1
    """cpu: the threads every kernel was priced for."""

    def as_json(self) -> dict:
        return {
            "target": self.target,
            "device": self.device,
            "threads": self.threads,
            "variant": self.variant,
            "chips": self.chips,
            "mesh": self.mesh,
            "meshes": self.meshes,
            "kernels": [
                {"names": k.names, "kind": k.kind, "count": k.count, **k.result.as_json()} for k in self.kernels
            ],
            "total": {
                "default_time_s": self.default_time_s,
                "tuned_time_s": self.tuned_time_s,
                "speedup": self.default_time_s / self.tuned_time_s if self.tuned_time_s else None,
                "evaluations": self.evaluations,
                "cache_hits": self.cache_hits,
                "tuning_seconds": self.seconds,
            },
        }


@dataclass
class Options:
    budget: int | None = None
    """Evaluations per kernel; default 10% of its space (at least 16)."""
    strategy: str = "evolutionary"
    seed: int = 0
    jobs: int = 1
    time_limit_s: float | None = None
    db: TuningDatabase | None = None
    devices: int | None = None
    """Devices to spread the model over (searching tp x dp x pp); None: one mesh device, LPU chips searched."""
    pinned: dict[str, int] = field(default_factory=dict)
    """Degrees of parallelism the user fixed (`--schedule tp=2`, `sp=1`): the search keeps them."""
    threads: int = 1
    """cpu: the threads every kernel is tiled by default and priced for (`--threads N`: `tile{threads}`,
    `lower-to-hardware{threads}`)."""


class _Cache:
    """Kernel costs by (hash, point): this run's memory, backed by the database."""

    def __init__(self, target: str, spec: DeviceSpec, db: TuningDatabase | None, threads: int = 1):
        self.target, self.spec, self.db, self.threads = target, spec, db, threads
        self.known: dict[str, dict[str, float]] = {}
        self.defaults: dict[str, dict] = {}
        """Default points by kernel hash: they depend only on the kernel's structure (and the threads)."""
        self.evaluations = 0
        self.hits = 0

    def key(self, digest: str) -> TuningKey:
        return TuningKey(digest, self.target, self.spec.fingerprint(), self.threads)

    def evaluator(self, op: KernelOp | RelayoutOp) -> KernelEvaluator:
        return KernelEvaluator(standalone(op, self.spec), self.spec, self.threads)

    def table(self, digest: str) -> dict[str, float]:
        if digest not in self.known:
            self.known[digest] = dict(self.db.lookup(self.key(digest))) if self.db else {}
        return self.known[digest]

    def store(self, digest: str, points: list[dict], costs: list[float]) -> None:
        table = self.table(digest)
        for point, cost in zip(points, costs):
            table[point_key(point)] = cost
        if self.db:
            self.db.record_many(self.key(digest), list(zip(points, costs)))


# --------------------------------------------------------------------------- evaluation in parallel

_WORKER: Callable[[dict], float] | None = None


def _evaluate_in_worker(point: dict) -> float:
    assert _WORKER is not None
    return _safe(_WORKER, point)


class _Evaluations:
    """
    Evaluates points of one kernel: in this process, or, with `jobs` > 1,
    in a pool of forked workers started at the first batch of two or more
    (one pool per kernel, not per batch: forking costs more than a batch).
    """

    def __init__(self, evaluator: Callable[[dict], float], jobs: int):
        self.evaluator, self.jobs = evaluator, jobs
        self._pool = None

    def __call__(self, points: list[dict]) -> list[float]:
        global _WORKER
        if self.jobs <= 1 or len(points) < 2:
            return [_safe(self.evaluator, p) for p in points]
        if self._pool is None:
            _WORKER = self.evaluator
            # More workers than cores or than points only cost forks.
            workers = min(self.jobs, os.cpu_count() or 1, len(points))
            self._pool = multiprocessing.get_context("fork").Pool(workers)
        return self._pool.map(_evaluate_in_worker, points)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


class EvaluationError(RuntimeError):
    """Lowering or costing a point failed for a reason other than an illegal schedule: a bug."""


def _safe(evaluator, point) -> float:
    """The point's cost; infinite for an illegal schedule (never chosen), any other failure raised."""
    try:
        return evaluator(point)
    except IllegalSchedule:
        return math.inf
    except Exception as err:
        # A plain message: it crosses process boundaries from the workers.
        raise EvaluationError(f"evaluating the point {point} failed: {type(err).__name__}: {err}") from None


# --------------------------------------------------------------------------- the search


def _units(module: ModuleOp, target: str) -> list[KernelOp | RelayoutOp]:
    """
    The kernels and the relayouts a run pays: not those of params, nor elsewhere than on the cpu
    those of inputs (laid out as they are placed: `cost.relayout_copies`); the cpu's native code
    relays an input on every call (`cpu.model_copies`).
    """
    return [op for op in module.walk()
            if isinstance(op, KernelOp) or isinstance(op, RelayoutOp) and not _placed(op.input, target)]


def _placed(value: SSAValue, target: str) -> bool:
    """A param, or a view of one, or off the cpu a model input: laid out when it is placed on the device."""
    while not isinstance(value, BlockArgument):
        if isinstance(value.owner, KernelOp | RelayoutOp) or len(value.owner.operands) != 1:
            return False
        value = value.owner.operands[0]
    if target != "cpu":
        return True
    attrs = getattr(value.owner.parent_op(), "arg_attrs", None)  # the model function's
    return attrs is not None and PARAM_ATTR in attrs.data[value.index].data


def _default_cost(op, cache: _Cache) -> float:
    digest = structural_hash(op)
    if digest not in cache.defaults:
        cache.defaults[digest] = default_point(op, cache.spec, cache.threads) if isinstance(op, KernelOp) else {}
    point = cache.defaults[digest]
    table = cache.table(digest)
    key = point_key(point)
    if key in table:
        cache.hits += 1
        return table[key]
    cost = _safe(cache.evaluator(op), point)
    cache.evaluations += 1
    cache.store(digest, [point], [cost])
    return cost


def choose_variant(graph: ModuleOp, target: str, cache: _Cache) -> tuple[ModuleOp, dict]:
    """
    The fusion and layout switches whose kernels cost least at default
    schedules (the first such combination on a tie). Switches that leave the
    module as another combination did (channels-last on a model without
    images) are not costed again: they would tie and lose.
    """
    ctx = ir.make_context()
    best: tuple[float, int, ModuleOp, dict] | None = None
    fusions = FusePass.schedule_space(ctx, graph)
    layouts = AssignLayoutPass(target=target).schedule_space(ctx, graph)
    fused_seen: set[tuple] = set()
    laid_out_seen: set[tuple] = set()
    number = 0
    for fusion in fusions:
        fusion = dataclasses.replace(fusion, target=target)
        fused = graph.clone()
        fusion.apply(ctx, fused)
        if not _first_time(fused, fused_seen):
            number += len(layouts)
            continue
        for layout in layouts:
            number += 1
            layout = dataclasses.replace(layout, target=target)
            module = fused.clone()
            layout.apply(ctx, module)
            if not _first_time(module, laid_out_seen):
                continue
            cost = sum(_default_cost(op, cache) for op in _units(module, target))
            choice = {"fuse": str(fusion.pipeline_pass_spec()), "assign-layout": str(layout.pipeline_pass_spec())}
            if best is None or (cost, number) < (best[0], best[1]):
                best = (cost, number, module, choice)
    assert best is not None
    return best[2], best[3]


def _first_time(module: ModuleOp, seen: set[tuple]) -> bool:
    key = structural_key(module, ignore=())
    if key in seen:
        return False
    seen.add(key)
    return True


def tune_kernels(module: ModuleOp, target: str, cache: _Cache, options: Options, progress=None) -> list[KernelResult]:
    """Tune every unique kernel of a layout-stage module; write the best points into it."""
    groups: dict[str, list[KernelOp]] = {}
    for op in module.walk():
        if isinstance(op, KernelOp):
            groups.setdefault(structural_hash(op), []).append(op)
    results = []
    for digest, kernels in groups.items():
        first = kernels[0]
        space = Space(kernel_points(first, cache.spec, cache.threads))
        budget = options.budget or max(16, math.ceil(0.1 * space.size))
        evaluations = _Evaluations(cache.evaluator(first), options.jobs)
        table = cache.table(digest)
        foreign = len(set(table) - {point_key(p) for p in space.points})
        if foreign:
            warnings.warn(f"{foreign} tuning record(s) of kernel '{first.kernel_name.data}' are not points of its"
                          f" space on {cache.spec.name} (illegal there): not used", stacklevel=2)

        def evaluate(points: list[dict], digest=digest, evaluations=evaluations) -> list[float]:
            costs = evaluations(points)
            cache.store(digest, points, costs)
            return costs

        try:
            result = tune(
                space, evaluate, options.strategy, budget=min(budget, space.size), seed=options.seed,
                cached=dict(table), time_limit_s=options.time_limit_s, default_index=0,
            )
        finally:
            evaluations.close()
        cache.evaluations += result.evaluations
        cache.hits += result.cache_hits
        for kernel in kernels:
            apply_point(kernel, result.best_point)
        results.append(KernelResult([k.kernel_name.data for k in kernels], first.kind.data, result))
        if progress is not None:
            progress(first.kernel_name.data, len(results), len(groups))
    return results


def _model_time(layout_module: ModuleOp, target: str, spec: DeviceSpec, threads: int,
                chips: int | None = None) -> tuple[float, ModuleOp]:
    module = layout_module.clone()
    if chips is not None:
        module.attributes[CHIPS_ATTR] = IntegerAttr(chips, 64)
    return _estimate(module, target, spec, threads).time_s, module


def _estimate(module: ModuleOp, target: str, spec: DeviceSpec, threads: int):
    """The cost report of `module`, lowered in place to the hardware stage (on the cpu for `threads`)."""
    compile_module(module, target, Stage.HARDWARE, pipeline=passes_between(target, detect_stage(module), Stage.HARDWARE,
                                                                            threads), device=spec)
    return estimate(module, spec)


def mesh_candidates(devices: int, pinned: dict[str, int]) -> list[dict[str, int]]:
    """
    Every {"tp", "dp", "pp"} whose product is `devices`, each with sequence
    parallelism off and (where tp > 1) on (`sp`), that keeps the pinned degrees.
    """
    divisors = [d for d in range(1, devices + 1) if devices % d == 0]
    result = []
    for tp in divisors:
        for dp in [d for d in divisors if (devices // tp) % d == 0]:
            for sp in (0, 1) if tp > 1 else (0,):
                mesh = {"tp": tp, "dp": dp, "pp": devices // (tp * dp), "sp": sp}
                if all(mesh[axis] == n for axis, n in pinned.items()):
                    result.append(mesh)
    return result


def _mesh_time(graph: ModuleOp, target: str, spec: DeviceSpec, mesh: dict[str, int],
               pinned: dict[str, int] | None = None, threads: int = 1) -> tuple[float, ModuleOp]:
    """The model sharded over `mesh` at the default schedules: its time, and the sharded graph."""
    from strata.compiler.reports.report import check_memory
    from strata.passes.shard import ShardPass

    sharded = graph.clone()
    ShardPass(tp=mesh["tp"], dp=mesh["dp"], sp=bool(mesh.get("sp"))).apply(ir.make_context(), sharded)
    scatters = any(isinstance(op, ReduceScatterOp) for op in sharded.walk())
    if mesh.get("sp") and "sp" not in (pinned or {}) and not scatters:
        raise IllegalSchedule("sp=1 scatters nothing here (no partial sums with rows tp divides): the program of sp=0")
    module = sharded.clone()
    module.attributes[CHIPS_ATTR] = IntegerAttr(mesh["pp"], 64)
    report = _estimate(module, target, spec, threads)
    if report.chips != mesh["pp"]:
        raise IllegalSchedule(f"place-chips made {report.chips} pipeline stages, not {mesh['pp']}")
    check_memory(report)
    return report.time_s, sharded


def choose_mesh(graph: ModuleOp, target: str, spec: DeviceSpec, options: Options) -> tuple[ModuleOp, dict, list]:
    """The cheapest parallelism over `options.devices` devices (see the module docstring), and every one tried."""
    from strata.compiler.diagnostics import StrataError

    tried, best = [], None
    for mesh in mesh_candidates(options.devices, options.pinned):
        try:
            time_s, sharded = _mesh_time(graph, target, spec, mesh, options.pinned, options.threads)
        except (IllegalSchedule, StrataError) as err:
            tried.append({**mesh, "error": str(err).removeprefix("error: ")})
            continue
        tried.append({**mesh, "time_s": time_s})
        if best is None or time_s < best[0]:
            best = (time_s, sharded, mesh)
    if best is None:
        reasons = "; ".join(f"tp={t['tp']} dp={t['dp']} pp={t['pp']}{' sp=1' if t.get('sp') else ''}: {t['error']}"
                            for t in tried)
        raise StrataError(f"error: no way to run the model on {options.devices} {target} devices ({reasons})")
    return best[1], best[2], tried


def autotune(graph: ModuleOp, target: str, spec: DeviceSpec, options: Options, progress=None) -> tuple[ModuleOp, TuneReport]:
    """Tune a graph-stage module; return it at the layout stage with the choices written in."""
    start = time.perf_counter()
    cache = _Cache(target, spec, options.db, options.threads)
    graph = graph.clone()
    set_module_device(graph, spec)
    mesh, meshes = None, []
    if options.devices:
        graph, mesh, meshes = choose_mesh(graph, target, spec, options)
        graph.attributes[CHIPS_ATTR] = IntegerAttr(mesh["pp"], 64)
        # The default is what `--devices N` compiles to untuned: the pinned degrees, else pipeline stages
        # only; when that does not fit, the cheapest parallelism is the baseline.
        wanted = {axis: options.pinned.get(axis, 1) for axis in ("tp", "dp")} | {"sp": options.pinned.get("sp", 0)}
        fitting = [m for m in meshes if "time_s" in m]
        default_time = next((m["time_s"] for m in fitting if {a: m[a] for a in wanted} == wanted),
                            min(m["time_s"] for m in fitting))
    else:
        default = graph.clone()
        run_passes(ir.make_context(), default, passes_between(target, Stage.GRAPH, Stage.LAYOUT), _quiet())
        default_time, _ = _model_time(default, target, spec, options.threads)
    module, variant = choose_variant(graph, target, cache)
    report = TuneReport(target, spec.name, variant, default_time_s=default_time, mesh=mesh, meshes=meshes,
                        threads=options.threads)
    report.kernels = tune_kernels(module, target, cache, options, progress)
    tuned_time, lowered = _model_time(module, target, spec, options.threads)
    if target == "lpu" and not options.devices:
        # The default placement (unpinned) against pinned counts, which may
        # cut the model elsewhere: more chips give more places to cut, and
        # with a sharded kernel pinning the fewest spreads the weights evenly
        # (without one it is the default placement, not worth compiling again).
        fewest = lowered.attributes[CHIPS_ATTR].value.data
        sharded = any(op.shards.value.data > 1 for op in lowered.walk() if isinstance(op, tsp.ProgramOp))
        counts = {fewest + 1, 2 * fewest} | ({fewest} if sharded else set())
        timed = [(tuned_time, 0, fewest)]
        timed += [(_model_time(module, target, spec, options.threads, c)[0], 1, c) for c in sorted(counts)]
        tuned_time, pinned, chips = min(timed)
        if pinned:
            module.attributes[CHIPS_ATTR] = IntegerAttr(chips, 64)
        report.chips = chips
    report.tuned_time_s = tuned_time
    report.evaluations, report.cache_hits = cache.evaluations, cache.hits
    report.seconds = time.perf_counter() - start
    return module, report


def _quiet():
    from strata.compiler.driver import DumpOptions

    return DumpOptions()


# --------------------------------------------------------------------------- presentation


def _schedule(point: dict) -> str:
    parts = [f"tiles={','.join(map(str, point['tiles']))}"] if "tiles" in point else []
    if "order" in point:
        parts.append(f"order={','.join(map(str, point['order']))}")
    if point.get("dataflow"):
        parts.append(f"dataflow={point['dataflow']}")
    return " ".join(parts)


def print_tune_report(report: TuneReport, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from strata.compiler.reports.stats import human

    console = console or Console(width=160)
    threads = f", {report.threads} threads" if report.threads > 1 else ""
    table = Table(title=f"tuning {report.target} on {report.device}{threads}", title_justify="left")
    for column in ("kernel", "count", "space", "evals", "cached", "default", "tuned", "speedup", "schedule"):
        table.add_column(column, justify="left" if column in ("kernel", "schedule") else "right")
    for k in report.kernels:
        r = k.result
        name = k.names[0] + (f" (+{k.count - 1})" if k.count > 1 else "")
        table.add_row(
            name, str(k.count), str(r.space_size), str(r.evaluations), str(r.cache_hits),
            human(r.default_cost or 0, "s"), human(r.best_cost, "s"), f"{r.speedup or 1:.2f}x",
            _schedule(r.best_point),
        )
    console.print(table)
    choice = ", ".join(report.variant.values()) + (f", strata.chips={report.chips}" if report.chips else "")
    if report.mesh:
        choice += ", " + " ".join(f"{axis}={n}" for axis, n in report.mesh.items())
    speedup = report.default_time_s / report.tuned_time_s if report.tuned_time_s else 1.0
    console.print(
        f"model: default {human(report.default_time_s, 's')} -> tuned {human(report.tuned_time_s, 's')}"
        f" ({speedup:.2f}x); passes: {choice}; {report.evaluations} evaluations, {report.cache_hits} cache hits,"
        f" {report.seconds:.1f} s"
    )


def progress_bar():
    """A rich progress bar over the unique kernels; returns (context manager, callback)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("tuning {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), transient=True)
    task = bar.add_task("kernels", total=None)

    def update(name: str, done: int, total: int) -> None:
        bar.update(task, description=name, completed=done, total=total)

    return bar, update
