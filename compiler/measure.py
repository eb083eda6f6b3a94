"""
`strata measure` and measured tuning: the cost model's estimates beside
timed runs of strata's own native code.

A model is lowered once to the loop stage (with `--schedule` applied); one
copy goes on to the hardware stage and is costed (`backends/cost.py`), the
other is exported with `export-mlir{instrument}` and compiled natively
(`compiler/execution/native.py`) with `TIMER_C` linked in. The instrumented
model function brackets each kernel call and each copy between kernels with
`strata_clock_ns()` (`clock_gettime(CLOCK_MONOTONIC)`, about 20 ns) and adds
the elapsed nanoseconds to that kernel's slot of `strata_timer_ns`, read back
through ctypes; the slot `total` times the whole function. The estimate and the
run are of the same tiles, loop orders and layouts: both come from one
loop-stage module. Instrumentation adds only calls, so the outputs are the
un-instrumented build's, bit for bit.

`ROUNDS` rounds of one warm-up run, then `repeat` runs; every figure is
the fastest round's mean of the middle half of its runs (per slot,
`middle_mean`: robust as a median, and finer than the clock's 10 ns
steps; the fastest round: a disturbed stretch slows whole rounds) less the clock's own cost per
bracket, which the function measures on entry (`EMPTY_BRACKETS` brackets
around nothing, the `bracket` slot): a bracket reads 20 to 30 ns on the
Zen 4 guest, as much as a small kernel, and it used to be priced into
the cost model's call latency. That cost is the measurement's
resolution (`resolution_s`): a kernel measured under it is flagged
`resolved: false`, its ratio no evidence (it overlaps the clock calls
themselves: a 512-byte copy reads 0 to 20 ns). With `processes` > 1
(`measure_apart`, `strata measure --processes P`) the whole measurement
runs in P fresh interpreters and each figure is the fastest process's
(the resolution the largest): on a shared machine a process's
speed is set when it starts (the same ResNet-18 ran 0.81 to 1.25 ms in
consecutive processes on the Zen 4 guest, every run of a process alike),
so one process decides little, and the cost model prices the machine
undisturbed, as the host's calibrations are timed (`compiler/host.py`).
Kernels are named as the report names them (`gemm_0`, ...);
a `loop.copy` between kernels is the report's `relayout_I` (the I-th
`loop.copy` of the model function: `backends/cpu.py`, `model_copies`); a
timed copy the report does not name is listed under `unestimated` as
`copy#J` (the J-th). The work the native code does once, when the params
are bound (`loop.load_plan`, the report's `at_load`), is no part of a call:
its load function is timed apart, run `repeat` more times into the same
buffers, each of its kernels and copies in a slot of its own
(`at_load[]`, with `measured_time_s` and `ratio` as `kernels[]`).

`tune_measured` is `strata tune --measure`: the cost model searches as
`strata tune` does and screens; per unique kernel the `candidates` points
it estimates cheapest plus the default point are compiled and timed alone,
the fastest measured is kept; then the tuned model and the default model are
timed whole and the default is returned unless the tuned one ran faster.
Measured times go to the tuning database beside the estimates
(`TuningDatabase.record_measured`).
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ArrayAttr, DictionaryAttr, ModuleOp, StringAttr

from strata.compiler import host
from strata.compiler.diagnostics import StrataError
from strata.compiler.driver import Stage, compile_module, detect_stage, passes_between
from strata.passes.export_mlir import BRACKET_SLOT, EMPTY_BRACKETS, TIMERS_ATTR, ExportMlirPass

TIMER_C = """\
/* strata's timers for an instrumented export (compiler/measure.py). */
#include <stdint.h>
#include <time.h>

int64_t strata_timer_ns[{slots}];

int64_t strata_clock_ns(void) {{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}}

void strata_timer_add(int64_t slot, int64_t ns) {{ strata_timer_ns[slot] += ns; }}
"""
"""C source of the timer functions the instrumented export calls; `{slots}` is the number of slots."""

DEFAULT_REPEAT = 10
"""Timed runs of `strata measure` in each round (after one warm-up); the mean of their middle half is a round's figure."""

ROUNDS = 5
"""
Rounds of `repeat` runs `strata measure` and the host's calibrations (`compiler/host.py`) time,
keeping per slot the fastest round's figure (`fastest_round`): on the Granite Rapids guest
(2026-12-08) a process runs whole stretches of calls 4 to 6 times slower than others, at random
(a bf16 multiply of 1,024 elements 0.16 or 0.6 to 1.4 us, the int4 step's rotary copy 0.81 or
3.8 us; rounds of 10 calls, one process, nothing else running), where a C loop of the same vector
code never is. Another job slows a round; none speeds one up.
"""

CHILD = "import sys; from strata.compiler.cli import main; sys.exit(main(sys.argv[1:]))"
"""The code a fresh interpreter runs for `strata ARGV` (`measure_apart`)."""


class MeasureError(StrataError):
    """`strata measure` cannot run (no toolchain, a wrong target)."""


def check_toolchain() -> None:
    """A clear error unless the MLIR/LLVM 22 tools and a C compiler are installed."""
    from strata.compiler.execution import native

    for name in ("mlir-opt-22", "mlir-translate-22", "opt-22", "llc-22"):
        native.find_tool(name)
    native._c_compiler()


# --------------------------------------------------------------------------- instrumented builds


@dataclass
class Instrumented:
    """A natively compiled, instrumented model: its slots' names and its timers."""

    model: Any
    """The `native.CompiledModel`."""
    slots: list[str]
    """Timer slot names: `bracket`, kernel names, `copy#J` (the J-th `loop.copy` between kernels), `total`, then the
    load function's kernels and copies."""
    timers: Any
    """`ctypes.c_int64 * len(slots)` over the library's `strata_timer_ns`."""

    def time(self, call, repeat: int, warmup: int = 1) -> dict[str, float]:
        """
        Seconds per slot over `repeat` calls of `call()` after `warmup` untimed ones: the mean of
        the middle half of the runs (`middle_mean`), less the clock's own share (the `bracket`
        slot's, per bracket), which this returns as `bracket`.
        """
        if repeat < 1:
            raise StrataError(f"error: --repeat must be at least 1, not {repeat}")
        for _ in range(warmup):
            call()
        runs: list[list[int]] = []
        for _ in range(repeat):
            ctypes.memset(self.timers, 0, ctypes.sizeof(self.timers))
            call()
            runs.append(list(self.timers))
        means = {name: middle_mean([r[i] for r in runs]) * 1e-9 for i, name in enumerate(self.slots)}
        bracket = means.pop(BRACKET_SLOT) / EMPTY_BRACKETS
        return {**{name: max(0.0, mean - bracket) for name, mean in means.items()}, BRACKET_SLOT: bracket}


def middle_mean(values: list[float]) -> float:
    """
    The mean of the middle half of `values` (the interquartile mean): as robust to a disturbed run
    as the median, and finer than the clock's 10 ns steps, which a median of a 40 ns kernel is not
    (it reads 40 or 50, where the mean of the middle runs reads 43).
    """
    ordered = sorted(values)
    quarter = len(ordered) // 4
    middle = ordered[quarter:len(ordered) - quarter]
    return sum(middle) / len(middle)


def build_instrumented(loop_module: ModuleOp, target: str, threads: int = 1,
                       workdir: Path | None = None) -> Instrumented:
    """Export a loop-stage module with timers (`export-mlir{instrument}`) and compile it natively."""
    from strata.compiler.execution import native

    if detect_stage(loop_module) != Stage.LOOP:
        raise StrataError("error: an instrumented build starts from loop-stage IR")
    exported = loop_module.clone()
    compile_module(exported, target, Stage.MLIR, pipeline=[ExportMlirPass(instrument=True)])
    fn = next(op for op in exported.ops if TIMERS_ATTR in op.attributes)
    slots = [a.data for a in fn.attributes[TIMERS_ATTR].data]
    model = native.compile_exported(exported, workdir, threads=threads, runtime_c=TIMER_C.format(slots=len(slots)))
    timers = (ctypes.c_int64 * len(slots)).in_dll(model.library, "strata_timer_ns")
    return Instrumented(model, slots, timers)


def to_loops(module: ModuleOp, target: str, schedule: Mapping[str, str] | None = None, threads: int = 1) -> ModuleOp:
    """
    A copy of a graph- (or layout-) stage module lowered to loops with the default passes (tiled for
    `threads`) and `schedule` pinned.
    """
    from strata.compiler.schedule import apply_schedule

    lowered = module.clone()
    passes = passes_between(target, detect_stage(lowered), Stage.LOOP, threads)
    if schedule:
        passes = apply_schedule(passes, dict(schedule))
    compile_module(lowered, target, Stage.LOOP, pipeline=passes)
    return lowered


def estimate_loops(loop_module: ModuleOp, target: str, threads: int = 1):
    """The cost model's report of a loop-stage module, lowered on to the hardware stage (a copy) for `threads`."""
    from strata.backends.cost import estimate
    from strata.dialects.device import module_device

    hardware = loop_module.clone()
    compile_module(hardware, target, Stage.HARDWARE, pipeline=passes_between(target, Stage.LOOP, Stage.HARDWARE, threads))
    return estimate(hardware, module_device(hardware))


# --------------------------------------------------------------------------- strata measure


@dataclass
class Measurement:
    """Estimates beside timed runs (`Instrumented.time`), per kernel and in total."""

    target: str
    device: str
    threads: int
    repeat: int
    processes: int = 1
    """Fresh processes measured, each figure the fastest one's (`measure_apart`)."""
    kernels: list[dict] = field(default_factory=list)
    """As the report's `kernels[]`, with `measured_time_s` and `ratio` (estimate / measured)."""
    unestimated: list[dict] = field(default_factory=list)
    """Timed copies the cost model does not count."""
    at_load: list[dict] = field(default_factory=list)
    """The report's work at load (`Report.at_load`), run once when the params are bound: timed apart, by running
    the load function `repeat` times more, as `kernels[]` are."""
    time_s: float = 0.0
    measured_time_s: float = 0.0
    """The whole model function (its kernels, copies and allocations)."""
    resolution_s: float = 0.0
    """The clock's own cost per bracket, taken out of every figure: a kernel measured under it is
    not resolved (`resolved` false), its ratio no evidence either way."""
    outputs: list[np.ndarray] = field(default_factory=list)

    def as_json(self) -> dict:
        kernels_measured = sum(k["measured_time_s"] or 0.0 for k in self.kernels)
        return {
            "target": self.target, "device": self.device, "threads": self.threads, "repeat": self.repeat,
            "processes": self.processes, "resolution_s": self.resolution_s,
            "kernels": self.kernels,
            "unestimated": self.unestimated,
            "at_load": self.at_load,
            "total": {
                "time_s": self.time_s,
                "load_time_s": sum(k["time_s"] for k in self.at_load),
                "load_measured_time_s": sum(k["measured_time_s"] or 0.0 for k in self.at_load),
                "measured_time_s": self.measured_time_s,
                "kernels_measured_time_s": kernels_measured,
                "ratio": self.time_s / self.measured_time_s if self.measured_time_s else None,
            },
        }


def fastest_round(build: Instrumented, call, repeat: int) -> dict[str, float]:
    """Per slot the fastest of `ROUNDS` rounds of `build.time(call, repeat)` (the bracket: the largest)."""
    rounds = [build.time(call, repeat) for _ in range(ROUNDS)]
    fastest = {slot: min(r[slot] for r in rounds) for slot in rounds[0]}
    fastest[BRACKET_SLOT] = max(r[BRACKET_SLOT] for r in rounds)
    return fastest


def _copy_names(loop_module: ModuleOp) -> list[str]:
    """Per copy of the model function, in program order (`copy#J` of the timers): its report name, `relayout_J`."""
    from strata.backends.cpu import model_copies

    return [f"relayout_{i}" for i in range(len(model_copies(loop_module)))]


def measure(module: ModuleOp, target: str, inputs: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray],
            threads: int = 1, repeat: int = DEFAULT_REPEAT, schedule: Mapping[str, str] | None = None,
            workdir: Path | None = None) -> Measurement:
    """Estimate and time a graph-stage module (its device attached) on this CPU; see the module docstring."""
    check_toolchain()
    loops = to_loops(module, target, schedule, threads)
    report = estimate_loops(loops, target, threads)
    build = build_instrumented(loops, target, threads, workdir)
    call, outputs = build.model.prepare(inputs, params)
    names = {f"copy#{j}": name for j, name in enumerate(_copy_names(loops))}
    measured = {names.get(slot, slot): s for slot, s in fastest_round(build, call, repeat).items()}
    # The work at load, run again as many times into the same buffers: its slots only.
    loaded = {names.get(slot, slot): s for slot, s in fastest_round(build, call.load, repeat).items()} \
        if report.at_load else {}
    result = Measurement(target, report.device, threads, repeat, time_s=report.time_s,
                         measured_time_s=measured.pop("total"), resolution_s=measured.pop(BRACKET_SLOT),
                         outputs=outputs)
    for cost in report.at_load:
        measured.pop(cost.name, None)
        result.at_load.append(_with_measured(cost.as_json(), loaded.get(cost.name), result.resolution_s))
    for cost in report.kernels:
        result.kernels.append(_with_measured(cost.as_json(), measured.pop(cost.name, None), result.resolution_s))
    result.unestimated = [{"name": name, "measured_time_s": s} for name, s in measured.items()]
    return result


def in_fresh_interpreter(code: str, args: list[str], what: str) -> str:
    """
    The standard output of `python -c CODE ARGS` in a fresh interpreter: a plain one, not
    multiprocessing's spawn, which imports the caller's __main__ (a benchmark script) again in the
    child. A failure is a `MeasureError` naming `what` with the end of the child's stderr.
    """
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         preexec_fn=host.on_starting_cores)
    if out.returncode != 0:
        detail = out.stderr.strip()[-2000:] or f"exit {out.returncode}"
        raise MeasureError(f"error: {what} in a fresh process failed: {detail}")
    return out.stdout


def measure_apart(argv: list[str], processes: int) -> Measurement:
    """
    `strata measure ARGV` (its model, defines, device, schedule, threads, repeat) in each of
    `processes` fresh interpreters; per kernel, per copy and in total the fastest process's figure
    (module docstring). Every process compiles the same module, so their kernels line up.
    """
    runs = [json.loads(in_fresh_interpreter(CHILD, [*argv, "--processes", "1", "--report", "json"], "measuring"))
            for _ in range(processes)]
    first = runs[0]
    result = Measurement(first["target"], first["device"], first["threads"], first["repeat"], processes,
                         time_s=first["total"]["time_s"],
                         measured_time_s=min(run["total"]["measured_time_s"] for run in runs),
                         resolution_s=max(run["resolution_s"] for run in runs))
    for part in ("kernels", "at_load"):
        for i, entry in enumerate(first[part]):
            getattr(result, part).append(_with_measured(
                entry, _fastest([run[part][i]["measured_time_s"] for run in runs]), result.resolution_s))
    for i, entry in enumerate(first["unestimated"]):
        result.unestimated.append({**entry, "measured_time_s": _fastest(
            [run["unestimated"][i]["measured_time_s"] for run in runs])})
    return result


def _fastest(times: list[float | None]) -> float | None:
    timed = [t for t in times if t]
    return min(timed) if timed else None


def _with_measured(entry: dict, seconds: float | None, resolution_s: float) -> dict:
    """A report row (`KernelCost.as_json`) with its measured time, its ratio, and whether the clock resolved it."""
    return {**entry, "measured_time_s": seconds, "ratio": entry["time_s"] / seconds if seconds else None,
            "resolved": seconds is not None and seconds >= resolution_s}


def seconds(value: float) -> str:
    """A time for a table: nanoseconds under a microsecond (kernels of tens of them), microseconds
    under a millisecond, else milliseconds."""
    if value < 1e-6:
        return f"{value * 1e9:.0f} ns"
    return f"{value * 1e6:.1f} us" if value < 1e-3 else f"{value * 1e3:.3f} ms"


def print_measurement(result: Measurement, console=None) -> None:
    """A table per kernel (estimate, measured, ratio) and the totals."""
    from rich.console import Console

    console = console or Console(width=160)
    runs = f"{result.repeat} runs" if result.processes == 1 else (
        f"the fastest of {result.processes} processes' {result.repeat} runs")
    table = _kernel_table(f"measured on this CPU ({result.threads} thread{'s' * (result.threads > 1)}, {runs})"
                          f" against the {result.target} cost model ({result.device})", result.kernels)
    for u in result.unestimated:
        table.add_row(u["name"], "copy", "-", seconds(u["measured_time_s"]), "-")
    console.print(table)
    if result.at_load:
        console.print(_kernel_table("at load, once when the params are bound (not in a call's time)", result.at_load))
    data = result.as_json()["total"]
    console.print(f"total: estimate {seconds(result.time_s)}, measured {seconds(result.measured_time_s)}"
                  f" (kernels {seconds(data['kernels_measured_time_s'])}), estimate/measured {data['ratio']:.2f}")
    console.print(f"every figure less the clock's own {seconds(result.resolution_s)} a bracket; a kernel measured"
                  " under that is under the clock's resolution")
    if result.at_load:
        console.print(f"at load: estimate {seconds(data['load_time_s'])}, measured"
                      f" {seconds(data['load_measured_time_s'])} ({len(result.at_load)} kernels and copies over the"
                      " params alone)")


def _kernel_table(title: str, kernels: list[dict]):
    """A table with a row per kernel: estimate, measured, their ratio (in parentheses under the clock's resolution)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("kernel", "kind", "estimate", "measured", "estimate/measured"):
        table.add_column(column, justify="left" if column in ("kernel", "kind") else "right")
    for k in kernels:
        measured = k["measured_time_s"]
        ratio = f"{k['ratio']:.2f}" if k["ratio"] else "-"
        table.add_row(k["name"], k["kind"], seconds(k["time_s"]), seconds(measured) if measured else "-",
                      ratio if k["resolved"] else f"({ratio}) under resolution")
    return table


# --------------------------------------------------------------------------- measuring one kernel


def random_arguments(model, seed: int = 0) -> tuple[dict, dict]:
    """Deterministic random `(inputs, params)` for a compiled model's arguments (small ints for integers)."""
    from strata.compiler.execution import native

    rng = np.random.default_rng(seed)
    pools: dict[str, dict] = {"input": {}, "param": {}}
    for (kind, name), type_ in zip(model.names, model.arg_types):
        dtype, shape = native._numpy_dtype(type_), tuple(type_.get_shape())
        if np.issubdtype(dtype, np.floating):
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            value = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            value = rng.integers(0, 4, shape).astype(dtype)
        pools[kind][name] = value
    return pools["input"], pools["param"]


def _named(standalone_module: ModuleOp) -> ModuleOp:
    """A `standalone` kernel module whose arguments are named inputs (`arg0`, ...), as a model's are."""
    from strata.backends.cost import model_function
    from strata.dialects.graph import INPUT_ATTR

    fn = model_function(standalone_module)
    fn.arg_attrs = ArrayAttr([DictionaryAttr({INPUT_ATTR: StringAttr(f"arg{i}")})
                              for i in range(len(fn.body.block.args))])
    return standalone_module


def measure_kernel(template: ModuleOp, point: dict, target: str, threads: int, repeat: int) -> float:
    """Median seconds of one kernel (a `standalone` layout-stage module) compiled natively at `point`."""
    from strata.compiler.tuning.spaces import apply_point
    from strata.dialects.graph.kernel import KernelOp

    module = _named(template.clone())
    kernel = next(op for op in module.walk() if isinstance(op, KernelOp))
    apply_point(kernel, point)
    build = build_instrumented(to_loops(module, target, threads=threads), target, threads)
    call, _ = build.model.prepare(*random_arguments(build.model))
    return build.time(call, repeat)[kernel.kernel_name.data]


def measure_model(layout_module: ModuleOp, target: str, inputs, params, threads: int, repeat: int) -> float:
    """Median seconds of a whole (layout- or graph-stage) model compiled natively."""
    build = build_instrumented(to_loops(layout_module, target, threads=threads), target, threads)
    call, _ = build.model.prepare(inputs, params)
    return build.time(call, repeat)["total"]


# --------------------------------------------------------------------------- strata tune --measure


DEFAULT_CANDIDATES = 4
"""Points per kernel `tune --measure` times beside the default: those the cost model estimates cheapest."""


@dataclass
class MeasuredKernel:
    names: list[str]
    kind: str
    candidates: list[dict]
    """`{"point", "time_s" (estimate), "measured_time_s"}` per point timed, the default first."""
    best: int
    """Index into `candidates` of the one kept (the fastest measured)."""

    def as_json(self) -> dict:
        default, best = self.candidates[0], self.candidates[self.best]
        return {"names": self.names, "kind": self.kind, "candidates": self.candidates,
                "best_point": best["point"], "default_measured_time_s": default["measured_time_s"],
                "tuned_measured_time_s": best["measured_time_s"],
                "measured_speedup": default["measured_time_s"] / best["measured_time_s"]}


@dataclass
class MeasuredTuneReport:
    """The cost model's tuning report (`TuneReport`) and what the runs decided."""

    estimated: Any
    kernels: list[MeasuredKernel]
    threads: int
    repeat: int
    default_measured_time_s: float
    tuned_measured_time_s: float
    """The model as tuned by measurement (before the check against the default)."""
    kept: str
    """`tuned`, or `default` when the tuned model did not run faster than the default."""

    @property
    def measured_time_s(self) -> float:
        return self.tuned_measured_time_s if self.kept == "tuned" else self.default_measured_time_s

    def as_json(self) -> dict:
        data = self.estimated.as_json()
        data["measured"] = {
            "threads": self.threads, "repeat": self.repeat, "kept": self.kept,
            "kernels": [k.as_json() for k in self.kernels],
            "default_measured_time_s": self.default_measured_time_s,
            "tuned_measured_time_s": self.tuned_measured_time_s,
            "measured_time_s": self.measured_time_s,
            "measured_speedup": self.default_measured_time_s / self.measured_time_s,
        }
        return data


def _points_by_estimate(result, count: int) -> list[tuple[dict, float]]:
    """The `count` distinct finite-cost points of a `TuneResult`'s history, cheapest estimate first."""
    from strata.backends.tuner.space import point_key

    seen, ranked = set(), []
    for trial in sorted(result.history, key=lambda t: (t.cost, t.index)):
        key = point_key(trial.point)
        if key in seen or not np.isfinite(trial.cost):
            continue
        seen.add(key)
        ranked.append((dict(trial.point), trial.cost))
    return ranked[:count]


def tune_measured(graph: ModuleOp, target: str, spec, options, repeat: int = 5,
                  candidates: int = DEFAULT_CANDIDATES, seed: int = 0, progress=None):
    """
    `strata tune --measure` (see the module docstring): returns the chosen
    layout-stage module and a `MeasuredTuneReport`.
    """
    from strata.backends.cost import model_function
    from strata.backends.tuner.database import TuningKey
    from strata.backends.tuner.hashing import structural_hash
    from strata.backends.tuner.space import point_key
    from strata.compiler import ir
    from strata.compiler.driver import DumpOptions, run_passes
    from strata.compiler.execution import weights
    from strata.compiler.tuning import autotune
    from strata.compiler.tuning.spaces import KernelEvaluator, apply_point, default_point, standalone
    from strata.dialects.device import set_module_device
    from strata.dialects.graph.kernel import KernelOp

    check_toolchain()
    if candidates < 1:
        raise StrataError(f"error: --candidates must be at least 1, not {candidates}")
    threads = options.threads  # searched, screened and run on
    tuned, estimated = autotune.autotune(graph, target, spec, options, progress)
    kernels_by_name = {op.kernel_name.data: op for op in tuned.walk() if isinstance(op, KernelOp)}
    measured: list[MeasuredKernel] = []
    for group in estimated.kernels:
        kernel = kernels_by_name[group.names[0]]
        template = standalone(kernel, spec)
        default = default_point(kernel, spec, threads)
        points = [(default, KernelEvaluator(template, spec, threads)(default))]
        points += [(p, c) for p, c in _points_by_estimate(group.result, candidates) if point_key(p) != point_key(default)]
        rows = [{"point": p, "time_s": c, "measured_time_s": measure_kernel(template, p, target, threads, repeat)}
                for p, c in points]
        best = min(range(len(rows)), key=lambda i: (rows[i]["measured_time_s"], i))
        for op in tuned.walk():
            if isinstance(op, KernelOp) and op.kernel_name.data in group.names:
                apply_point(op, rows[best]["point"])
        if options.db is not None:
            key = TuningKey(structural_hash(kernel), target, spec.fingerprint(), threads)
            options.db.record_measured(key, [(r["point"], r["time_s"], r["measured_time_s"]) for r in rows])
        measured.append(MeasuredKernel(group.names, group.kind, rows, best))
    bound = weights.bind_values(model_function(graph), seed)
    default_module = graph.clone()
    set_module_device(default_module, spec)
    run_passes(ir.make_context(), default_module, passes_between(target, Stage.GRAPH, Stage.LAYOUT), DumpOptions())
    default_time = measure_model(default_module, target, bound.inputs, bound.params, threads, repeat)
    tuned_time = measure_model(tuned, target, bound.inputs, bound.params, threads, repeat)
    kept = "tuned" if tuned_time < default_time else "default"
    report = MeasuredTuneReport(estimated, measured, threads, repeat, default_time, tuned_time, kept)
    return (tuned if kept == "tuned" else default_module), report


def print_measured_tune_report(report: MeasuredTuneReport, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from strata.compiler.tuning.autotune import _schedule

    console = console or Console(width=160)
    table = Table(title=f"tuning {report.estimated.target} by measurement ({report.threads} thread"
                  f"{'s' * (report.threads > 1)}, {report.repeat} runs)", title_justify="left")
    for column in ("kernel", "timed", "default estimate", "default measured", "tuned estimate", "tuned measured",
                   "speedup", "schedule"):
        table.add_column(column, justify="left" if column in ("kernel", "schedule") else "right")
    for k in report.kernels:
        d, b = k.candidates[0], k.candidates[k.best]
        name = k.names[0] + (f" (+{len(k.names) - 1})" if len(k.names) > 1 else "")
        table.add_row(name, str(len(k.candidates)), seconds(d["time_s"]), seconds(d["measured_time_s"]),
                      seconds(b["time_s"]), seconds(b["measured_time_s"]),
                      f"{d['measured_time_s'] / b['measured_time_s']:.2f}x", _schedule(b["point"]))
    console.print(table)
    console.print(f"model measured: default {seconds(report.default_measured_time_s)}, tuned"
                  f" {seconds(report.tuned_measured_time_s)}; kept the {report.kept} schedule"
                  f" ({report.default_measured_time_s / report.measured_time_s:.2f}x)")
