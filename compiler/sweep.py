"""
`strata sweep`: a design-space study, the cross product of device-spec
values, model sizes, schedules and device counts, one `strata compile` per
point, on a local process pool or on Ray.

A point is one `strata compile MODEL --target T ... --report json` command:
`point_argv` writes it and `evaluate` runs it through the CLI's own parser
and `compile_for`, so every row equals what that command prints (its
`command` column says which). A point that fails (a model that does not
fit, an illegal value) is a row with its `error`, never the end of the
sweep.

Rows go to the output CSV as each point finishes (one line, flushed), so an
interrupted sweep keeps every finished point; a rerun on the same output
reads it back and evaluates only the points it lacks. The file is rewritten
in grid order at the end. The CSV's columns: the model, target and device,
one column per varied key under its own name (`array_rows`, `N`, `tp`,
`devices`), then `METRICS`, then `error` and `command`.

Executors: `local` (the default) evaluates in this process with `--jobs 1`
and in a pool of `--jobs N` forked workers otherwise; `ray` runs each point
as a Ray task, on a local Ray instance or the cluster at `--ray-address`.
Ray is optional (`pip install 'strata[distributed]'`). Both evaluate the same
function on the same argv, so they give the same numbers.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.compiler.diagnostics import StrataError

METRICS = (
    "time_s", "throughput_per_s", "samples_per_s", "batch", "achieved_flops_per_s", "peak_flops_per_s",
    "utilisation", "model_flops", "compute_s", "memory_s", "latency_s", "transfer_s", "devices", "chips",
    "memory_per_device_bytes", "memory_capacity_bytes", "power_w", "energy_j",
)
"""The report's totals each row carries: time by bound (`compute_s`, ...) sums the kernels by their bound;
`energy_j` is `time_s x power_w x devices`, `power_w` the spec's power figure (`POWER_KEYS`)."""

POWER_KEYS = ("tdp_w", "power_mean_w", "power_w")
"""The spec keys that give a device's power, by target (GPU TDP, TPU measured mean, LPU board power)."""

KINDS = ("spec", "define", "schedule", "devices")
"""What a varied key is: a device-spec key (`--vary`), a model size (`-D`), a pass choice (`--schedule`), the device count."""

MAX_POINTS = 100_000


@dataclass(frozen=True)
class Axis:
    kind: str
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Sweep:
    models: tuple[str, ...]
    target: str
    axes: tuple[Axis, ...]
    device: str | None = None
    device_file: str | None = None
    spec: tuple[str, ...] = ()
    """Fixed `--spec KEY=VALUE` overrides, applied to every point."""
    autotune: bool = False
    db: str | None = None
    budget: int | None = None

    @property
    def columns(self) -> list[str]:
        """A metric named like a varied key (`devices`) is that key's column: the value the point asked for."""
        varied = [a.key for a in self.axes]
        return ["model", "target", "device", *varied, *(m for m in METRICS if m not in varied), "error", "command"]


def parse_axes(vary: list[str], defines: list[str], schedule: list[str], devices: str | None) -> tuple[Axis, ...]:
    """The varied keys from `--vary`, `-D`, `--schedule` (each `KEY=V1,V2,...`) and `--devices N1,N2`."""
    axes = []
    for kind, items in (("spec", vary), ("define", defines), ("schedule", schedule)):
        for item in items:
            key, sep, text = item.partition("=")
            values = tuple(v.strip() for v in text.split(",") if v.strip()) if kind != "schedule" else _schedule_values(text)
            if not sep or not key.strip() or not values:
                raise StrataError(f"error: sweep: expected KEY=V1,V2,..., got '{item}'")
            if kind == "define" and not all(v.lstrip("-").isdigit() for v in values):
                raise StrataError(f"error: sweep: -D {item}: the values of a `let` constant are whole numbers")
            axes.append(Axis(kind, key.strip(), values))
    if devices is not None:
        from strata.compiler.cli import MAX_DEVICES

        values = tuple(v.strip() for v in devices.split(",") if v.strip())
        if not values or not all(v.isdigit() and 1 <= int(v) <= MAX_DEVICES for v in values):
            raise StrataError(f"error: sweep: --devices takes device counts from 1 to {MAX_DEVICES:,},"
                              f" got '{devices}'")
        axes.append(Axis("devices", "devices", values))
    names = [a.key for a in axes]
    repeated = sorted({n for n in names if names.count(n) > 1} | (set(names) & {"model", "target", "device"}))
    if repeated:
        raise StrataError(f"error: sweep: {', '.join(repeated)} varied twice (each key is one column)")
    return tuple(axes)


def _schedule_values(text: str) -> tuple[str, ...]:
    """`tile=64,64,32;128,128,64` varies a tuple option (`;` between values); `tp=1,2,4` an integer."""
    sep = ";" if ";" in text else ","
    return tuple(v.strip() for v in text.split(sep) if v.strip())


def check_schedules(sweep: Sweep) -> None:
    """
    Every `--schedule` value names an option of the target's pipeline and
    parses as its type (`tile=-1` does not), before any point runs: such a
    value would fail at every point, whatever the model.
    """
    from strata.compiler.driver import Stage, passes_between
    from strata.compiler.schedule import apply_schedule, parse_schedule

    passes = passes_between(sweep.target, Stage.GRAPH, Stage.HARDWARE)
    for axis in sweep.axes:
        if axis.kind == "schedule":
            for value in axis.values:
                apply_schedule(passes, parse_schedule([f"{axis.key}={value}"]))


def check_some_succeeded(result: "Result") -> None:
    """A sweep none of whose points gave a cost failed: exit 1 with the first point's error (the rows are kept)."""
    if result.rows and all(row.get("time_s") is None for row in result.rows):
        first = next((row["error"] for row in result.rows if row.get("error")), "no cost")
        raise StrataError(f"error: sweep: none of the {len(result.rows)} points succeeded; the first: {first}")


def grid(sweep: Sweep) -> list[dict[str, str]]:
    """Every point: the model and one value per axis, in the order the axes were given."""
    size = len(sweep.models) * math.prod(len(a.values) for a in sweep.axes)
    if size > MAX_POINTS:
        raise StrataError(f"error: sweep: {size:,} points, over the limit of {MAX_POINTS:,}; vary fewer values")
    points = []
    for model in sweep.models:
        for values in itertools.product(*(a.values for a in sweep.axes)):
            points.append({"model": model, **{a.key: v for a, v in zip(sweep.axes, values)}})
    return points


def point_argv(sweep: Sweep, point: dict[str, str]) -> list[str]:
    """The `strata compile` command line of one point (without the program name)."""
    argv = ["compile", point["model"], "--target", sweep.target, "--report", "json"]
    if sweep.device:
        argv += ["--device", sweep.device]
    if sweep.device_file:
        argv += ["--device-file", sweep.device_file]
    for item in sweep.spec:
        argv += ["--spec", item]
    for axis in sweep.axes:
        value = point[axis.key]
        argv += {
            "spec": ["--spec", f"{axis.key}={value}"],
            "define": ["-D", f"{axis.key}={value}"],
            "schedule": ["--schedule", f"{axis.key}={value}"],
            "devices": ["--devices", value],
        }[axis.kind]
    if sweep.autotune:
        argv += ["--autotune"] + (["--db", sweep.db] if sweep.db else []) + (
            ["--budget", str(sweep.budget)] if sweep.budget else [])
    return argv


def key(point: dict[str, Any], sweep: Sweep) -> tuple[str, ...]:
    """What identifies a point in the output: its model and varied values, as text."""
    return (str(point["model"]), *(str(point[a.key]) for a in sweep.axes))


# --------------------------------------------------------------------------- one point


def evaluate(argv: list[str]) -> dict[str, Any]:
    """
    Run one `strata compile ... --report json` in this process; its totals
    (`METRICS`) and the device, or `error` with the message it failed with.
    Pure: the same argv gives the same row on any executor.
    """
    from strata.backends.cost import estimate
    from strata.compiler.cli import build_parser, compile_for
    from strata.compiler.driver import Stage
    from strata.compiler.reports.report import check_memory
    from strata.dialects.device import module_device

    try:
        args = build_parser().parse_args(argv)
        module, _ = compile_for(args, args.target, [args.target], Stage.HARDWARE, progress=False)
        device = module_device(module)
        report = estimate(module, device)
        warning = check_memory(report)
    except StrataError as err:
        return {"error": _one_line(str(err))}
    except SystemExit:
        return {"error": f"not a valid strata compile command: {' '.join(argv)}"}
    except Exception as err:  # noqa: BLE001: a bug in one point is that point's row, not the end of the sweep
        return {"error": f"internal error: {type(err).__name__}: {_one_line(str(err))}"}
    total = report.total()
    by_bound = {f"{b}_s": sum(k.time_s for k in report.kernels if k.bound == b)
                for b in ("compute", "memory", "latency", "transfer")}
    power = next((float(device[k]) for k in POWER_KEYS if k in device), None)
    row = {name: total.get(name) for name in METRICS if name in total}
    row |= by_bound | {"device": device.name, "power_w": power,
                       "energy_j": total["time_s"] * power * total["devices"] if power else None}
    if warning:
        row["error"] = _one_line(warning)
    return row


def _one_line(text: str) -> str:
    return " ".join(text.removeprefix("error: ").split())[:500]


# --------------------------------------------------------------------------- the output file


def read_rows(path: Path, sweep: Sweep) -> dict[tuple[str, ...], dict[str, Any]]:
    """The rows a previous run of the same sweep wrote, by point; a file of another sweep is an error."""
    if not path.exists():
        return {}
    if not path.is_file():
        raise StrataError(f"error: sweep: {path} is not a regular file; give another -o")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return _rows(csv.DictReader(f), path, sweep)
    except UnicodeDecodeError as err:
        raise StrataError(f"error: sweep: {path} is not a CSV file (byte {err.start} is not UTF-8 text);"
                          f" give another -o or remove it") from None
    except csv.Error as err:
        raise StrataError(f"error: sweep: {path} is not a CSV file this sweep wrote ({err});"
                          f" give another -o or remove it") from None
    except OSError as err:
        raise StrataError(f"error: sweep: cannot read {path}: {err.strerror}; give another -o") from None


def _rows(reader: csv.DictReader, path: Path, sweep: Sweep) -> dict[tuple[str, ...], dict[str, Any]]:
    if reader.fieldnames is None:
        return {}
    if reader.fieldnames != sweep.columns:
        raise StrataError(
            f"error: sweep: {path} holds another sweep's columns ({', '.join(reader.fieldnames[:8])}, ...);"
            f" give another -o or remove it"
        )
    rows = {}
    for row in reader:
        if row.get("command") and all(row.get(c) is not None for c in sweep.columns):
            try:
                rows[key(row, sweep)] = _typed(row, {a.key for a in sweep.axes})
            except ValueError:
                continue  # an edited or half-written metric: evaluate the point again
    return rows


def _typed(row: dict[str, str], varied: set[str]) -> dict[str, Any]:
    """A CSV row with its metrics as numbers again (empty: None); varied values stay text, as a fresh row has them."""
    out: dict[str, Any] = dict(row)
    for name in METRICS:
        if name not in row or name in varied:
            continue
        text = row[name]
        out[name] = None if text == "" else (int(text) if text.lstrip("-").isdigit() else float(text))
    out["error"] = row.get("error") or None
    return out


class _Writer:
    """Appends one flushed CSV line per finished point."""

    def __init__(self, path: Path, columns: list[str]):
        new = not path.exists() or path.stat().st_size == 0
        try:
            self.file = open(path, "a", newline="")
        except OSError as err:
            raise StrataError(f"error: sweep: cannot write {path}: {err.strerror}") from None
        self.writer = csv.DictWriter(self.file, columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self.file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def write_rows(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """The whole file, in grid order, replaced at once."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "w", newline="") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        os.replace(temporary, path)
    except OSError as err:
        raise StrataError(f"error: sweep: cannot write {temporary} (to replace {path}): {err.strerror}") from None


# --------------------------------------------------------------------------- executors


def _local(argvs: list[list[str]], jobs: int) -> Iterator[tuple[int, dict]]:
    if jobs == 1:
        for index, argv in enumerate(argvs):
            yield index, evaluate(argv)
        return
    import multiprocessing

    with ProcessPoolExecutor(max_workers=min(jobs, len(argvs)), mp_context=multiprocessing.get_context("fork")) as pool:
        pending = {pool.submit(evaluate, argv): index for index, argv in enumerate(argvs)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()


def _ray(argvs: list[list[str]], address: str | None) -> Iterator[tuple[int, dict]]:
    try:
        import ray
    except ImportError:
        raise StrataError(
            "error: --executor ray needs Ray: pip install 'strata[distributed]' (or pip install ray)"
        ) from None
    started = not ray.is_initialized()
    if started:
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except Exception as err:  # noqa: BLE001: Ray raises many kinds (ConnectionError, ValueError, RuntimeError)
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise StrataError(f"error: sweep: cannot start {where}: {_one_line(str(err)) or 'no reason given'};"
                              f" check --ray-address, or use --executor local") from None
    try:
        task = ray.remote(evaluate)
        pending = {task.remote(argv): index for index, argv in enumerate(argvs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str | None) -> None:
    """
    A `--ray-address HOST:PORT` (or `ray://HOST:PORT`) that nothing answers
    is refused at once: `ray.init` would retry connecting for minutes.
    """
    import socket

    if address is None or address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StrataError(f"error: sweep: --ray-address {address}: expected HOST:PORT (or ray://HOST:PORT, auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise StrataError(f"error: sweep: nothing answers at --ray-address {address} ({err.strerror or 'timed out'});"
                          f" start the cluster (ray start --head) or leave the option out for a local one") from None


# --------------------------------------------------------------------------- the sweep


@dataclass
class Result:
    rows: list[dict[str, Any]] = field(default_factory=list)
    evaluated: int = 0
    cached: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"points": self.rows, "evaluated": self.evaluated, "cached": self.cached}


def run_sweep(sweep: Sweep, output: Path, jobs: int = 1, executor: str = "local", address: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> Result:
    """Evaluate every point `output` lacks, appending each row as it finishes; all rows in grid order."""
    start = time.perf_counter()
    points = grid(sweep)
    check_schedules(sweep)
    known = read_rows(output, sweep)
    missing = [p for p in points if key(p, sweep) not in known]
    result = Result(cached=len(points) - len(missing))
    argvs = [point_argv(sweep, p) for p in missing]
    if progress:
        progress(result.cached, len(points))
    if argvs:
        writer = _Writer(output, sweep.columns)
        try:
            stream = _ray(argvs, address) if executor == "ray" else _local(argvs, jobs)
            for index, row in stream:
                point = missing[index]
                full = {**{m: row.get(m) for m in METRICS}, **point, "target": sweep.target,
                        "device": row.get("device", ""), "error": row.get("error"),
                        "command": "strata " + " ".join(argvs[index])}
                writer.write(full)
                known[key(point, sweep)] = full
                result.evaluated += 1
                if progress:
                    progress(result.cached + result.evaluated, len(points))
        finally:
            writer.close()
    result.rows = [known[key(p, sweep)] for p in points]
    write_rows(output, sweep.columns, result.rows)
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- presentation


def print_table(result: Result, sweep: Sweep, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from strata.compiler.reports.stats import human

    console = console or Console(width=200)
    table = Table(title=f"sweep: {len(result.rows)} points ({result.evaluated} evaluated, {result.cached} cached,"
                  f" {result.seconds:.1f} s)", title_justify="left")
    varied = [a.key for a in sweep.axes]
    for column in ("model", *varied, "time", "samples/s", "util", "devices", "memory/device", "energy", "error"):
        table.add_column(column, justify="left" if column in ("model", "error") else "right")
    for row in result.rows:
        ok = row.get("time_s") is not None
        throughput = row.get("samples_per_s") or row.get("throughput_per_s")
        table.add_row(
            Path(str(row["model"])).name, *(str(row[k]) for k in varied),
            human(row["time_s"], "s") if ok else "-", human(throughput) if ok else "-",
            f"{row['utilisation']:.1%}" if ok else "-", str(row.get("devices") or "-"),
            human(row["memory_per_device_bytes"], "B") if ok else "-",
            human(row["energy_j"], "J") if row.get("energy_j") else "-", row.get("error") or "",
        )
    console.print(table)


def plot(result: Result, sweep: Sweep, path: str, x: str | None, y: str, pareto: str | None) -> None:
    """
    One metric `y` against one varied key `x` (a line per model and value of
    the other keys), or with `pareto`, throughput against that cost column
    with the Pareto front (the points no other beats on both) drawn through.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result.rows if r.get("time_s") is not None]
    if not rows:
        raise StrataError("error: sweep: no point succeeded, nothing to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if pareto:
        _check_column(pareto, sweep)
        costs = [float(r[pareto]) for r in rows]
        gains = [float(r["samples_per_s"] or r["throughput_per_s"]) for r in rows]
        ax.scatter(costs, gains, s=14, color="0.6", label="points")
        front, best = [], -math.inf
        for c, g in sorted(zip(costs, gains), key=lambda p: (p[0], -p[1])):
            if g > best:
                front.append((c, g))
                best = g
        ax.plot(*zip(*front), "o-", color="C0", label="Pareto front")
        ax.set_xlabel(pareto)
        ax.set_ylabel("samples/s" if rows[0]["samples_per_s"] is not None else "inferences/s")
    else:
        x = x or (sweep.axes[0].key if sweep.axes else None)
        if x is None or x not in {a.key for a in sweep.axes}:
            raise StrataError(f"error: sweep: --plot-x must be a varied key ({', '.join(a.key for a in sweep.axes)})")
        _check_column(y, sweep)
        others = [a.key for a in sweep.axes if a.key != x]
        lines: dict[tuple, list] = {}
        for r in rows:
            lines.setdefault((Path(str(r["model"])).name, *(f"{k}={r[k]}" for k in others)), []).append(r)
        for label, members in lines.items():
            members.sort(key=lambda r: _number(r[x]))
            ax.plot([_number(r[x]) for r in members], [float(r[y]) for r in members], "o-", label=" ".join(label))
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    from strata.compiler.reports.report import save_figure

    save_figure(fig, path)


def _check_column(name: str, sweep: Sweep) -> None:
    if name not in METRICS and name not in {a.key for a in sweep.axes}:
        raise StrataError(f"error: sweep: no column '{name}' (metrics: {', '.join(METRICS)})")


def _number(text: Any) -> float | str:
    try:
        return float(text)
    except (TypeError, ValueError):
        return str(text)


def to_json(result: Result) -> str:
    return json.dumps(result.as_json(), indent=2) + "\n"


def progress_bar():
    """A rich progress bar over the points (done of total, ETA) on stderr; returns (context manager, callback)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   console=Console(file=sys.stderr), transient=True)
    task = bar.add_task("points", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update
