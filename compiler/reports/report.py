"""
Cost reports for people and programs: a table per kernel with totals, the
targets side by side, the JSON schema, and a roofline plot.

JSON schema (`--report json`, formally `REPORT_SCHEMA` below), one object per target:

    {"target": "tpu", "device": "tpu-v4", "cost_model_version": "1",
     "kernels": [{"name", "kind", "ops": [graph op names], "flops", "bytes":
                  {level: bytes}, "time_s", "bound", "utilisation", ...target
                  extras: systolic "compute_cycles", "stall_cycles", "dataflow";
                  gpu "ctas", "waves", "occupancy"; lpu "chip", "cycles"}],
     "total": {"time_s", "flops" (issued by the kernels, edge tiles padded),
               "model_flops" (the graph's), "issued_flops", "bytes", "throughput_per_s",
               "batch", "batch_source", "samples_per_s" (null when the batch is not known),
               "achieved_flops_per_s" and "utilisation" (on the model's FLOPs),
               "peak_flops_per_s", "chips", "devices", "memory_per_device_bytes"
               (params, inputs and peak live activations of the fullest device),
               "memory_capacity_bytes", "load_time_s"},
     "at_load": [kernels as above: work run once when the params are loaded
                 (cpu: weights relaid, scale products), not in total.time_s]}

`--target all` gives {"targets": {"gpu": {...}, "tpu": {...}, "lpu": {...}}}.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from strata.backends.cost import Report
from strata.compiler.diagnostics import StrataError, open_output
from strata.compiler.reports.stats import human

_NUMBER = {"type": "number", "minimum": 0}
_KERNEL = {
    "type": "object",
    "required": ["name", "kind", "ops", "flops", "bytes", "time_s", "bound", "utilisation"],
    "properties": {
        "name": {"type": "string"},
        "kind": {"type": "string"},
        "ops": {"type": "array", "items": {"type": "string"}},
        "flops": {"type": "integer", "minimum": 0},
        "bytes": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "time_s": {"type": "number", "exclusiveMinimum": 0},
        "bound": {"enum": ["compute", "memory", "latency", "transfer"]},
        "utilisation": _NUMBER,
    },
}
_SYSTOLIC_KERNEL = {
    "allOf": [_KERNEL, {
        "if": {"properties": {"kind": {"not": {"const": "relayout"}}}},
        "then": {"required": ["compute_cycles", "stall_cycles", "dataflow"]},
    }]
}
_TOTAL = {
    "type": "object",
    "required": ["time_s", "flops", "model_flops", "issued_flops", "bytes", "throughput_per_s",
                 "achieved_flops_per_s", "peak_flops_per_s", "utilisation", "chips", "devices",
                 "memory_per_device_bytes", "memory_capacity_bytes", "batch", "batch_source", "samples_per_s"],
    "properties": {
        "time_s": {"type": "number", "exclusiveMinimum": 0},
        "chips": {"type": "integer", "minimum": 1},
        "devices": {"type": "integer", "minimum": 1},
        "model_flops": {"type": "integer", "minimum": 0},
        "issued_flops": {"type": "integer", "minimum": 0},
        "memory_per_device_bytes": {"type": "integer", "minimum": 0},
        "load_time_s": {"type": "number", "minimum": 0},
        "batch": {"type": ["integer", "null"], "minimum": 1},
        "samples_per_s": {"type": ["number", "null"], "minimum": 0},
    },
}
REPORT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["target", "device", "cost_model_version", "kernels", "total"],
    "properties": {
        "target": {"enum": ["gpu", "tpu", "lpu", "cpu"]},
        "device": {"type": "string"},
        "cost_model_version": {"type": "string"},
        "kernels": {"type": "array", "minItems": 1, "items": _KERNEL},
        "at_load": {"type": "array", "items": _KERNEL},
        "total": _TOTAL,
    },
    "if": {"properties": {"target": {"const": "tpu"}}},
    "then": {"properties": {"kernels": {"items": _SYSTOLIC_KERNEL}}},
}
"""The JSON report of one target, as a JSON Schema (draft 2020-12)."""
ALL_TARGETS_SCHEMA = {
    "type": "object",
    "required": ["targets"],
    "properties": {"targets": {"type": "object", "additionalProperties": REPORT_SCHEMA}},
}

EXTRA_COLUMNS = {
    "tpu": ("dataflow", "compute_cycles", "stall_cycles"),
    "gpu": ("ctas", "waves", "occupancy"),
    "lpu": ("chip", "cycles"),
    "cpu": ("threads", "parallel_tiles", "micro_kernel"),
}


def _bytes(levels: dict[str, int]) -> str:
    return " ".join(f"{level} {human(size, 'B')}" for level, size in levels.items() if size)


def _ops(ops: list[str], width: int = 40) -> str:
    names = [o.removeprefix("graph.") for o in ops if o != "graph.constant"]
    text = ",".join(names)
    return text if len(text) <= width else text[: width - 1] + "…"


def kernel_table(report: Report) -> Table:
    extras = EXTRA_COLUMNS.get(report.target, ())
    table = Table(title=f"{report.target} on {report.device}: {len(report.kernels)} kernels", title_justify="left")
    for column in ("kernel", "fused ops", "FLOPs", "bytes moved", "time", "bound", "util", *extras):
        table.add_column(column, justify="left" if column in ("kernel", "fused ops", "bytes moved", "bound") else "right")
    for k in report.kernels:
        table.add_row(
            k.name, _ops(k.ops), human(k.flops), _bytes(k.bytes), human(k.time_s, "s"), k.bound,
            f"{k.utilisation:.1%}", *(str(k.extra.get(e, "")) for e in extras),
        )
    return table


def check_memory(report: Report) -> str | None:
    """
    On HBM targets, a model whose resident bytes exceed one device's memory
    is an error (`StrataError`); on the LPU, where `place-chips` places the
    weights by SRAM but not yet the activations, the returned warning says
    which chip is over.
    """
    fullest = max(range(len(report.memory)), key=lambda d: report.memory[d].total_bytes, default=None)
    if fullest is None or report.memory[fullest].total_bytes <= report.memory_capacity_bytes:
        return None
    use = report.memory[fullest]
    detail = (f"{use.total_bytes:,} B (params {use.params_bytes:,}, inputs {use.inputs_bytes:,}, peak activations"
              f" {use.activations_bytes:,})")
    if report.target == "lpu":
        return (f"warning: chip {fullest} holds {detail}, over the {report.memory_capacity_bytes:,} B of SRAM of"
                f" {report.device}: place-chips fits the weights per chip, not yet the activations")
    hint = ("more devices (--devices N) hold less of the weights each" if use.params_bytes > use.activations_bytes
            else "the activations do not shrink with more pipeline stages: split them over devices with data or"
            " tensor parallelism (--devices N --schedule dp=N or tp=N)")
    raise StrataError(
        f"error: {report.target} device {fullest} of {len(report.memory)} needs {detail}, over the"
        f" {report.memory_capacity_bytes:,} B of HBM of {report.device}; {hint}"
    )


def totals_line(report: Report) -> str:
    t = report.total()
    samples = f", {human(t['samples_per_s'])} samples/s at batch {t['batch']}" if t["batch"] is not None else ""
    issued = f" ({human(t['issued_flops'], 'FLOP')} issued)" if t["issued_flops"] != t["model_flops"] else ""
    return (
        f"total: {human(t['time_s'], 's')} ({human(t['throughput_per_s'])} inferences/s{samples}), "
        f"{human(t['model_flops'], 'FLOP')}{issued}, {human(t['achieved_flops_per_s'], 'FLOP/s')} of "
        f"{human(t['peak_flops_per_s'], 'FLOP/s')} peak ({t['utilisation']:.1%}), {t['devices']} device(s)"
        f" holding {human(t['memory_per_device_bytes'], 'B')} each of {human(t['memory_capacity_bytes'], 'B')}"
    )


def print_report(report: Report, console: Console | None = None) -> None:
    console = console or Console(width=160)
    console.print(kernel_table(report))
    bounds = {}
    for k in report.kernels:
        bounds[k.bound] = bounds.get(k.bound, 0.0) + k.time_s
    split = ", ".join(f"{b} {t / report.time_s:.0%}" for b, t in sorted(bounds.items(), key=lambda x: -x[1]))
    console.print(totals_line(report) + (f"; time by bound: {split}" if report.time_s else ""))
    if report.at_load:
        console.print(f"at load, once (not in the total): {len(report.at_load)} kernels and copies over the params"
                      f" alone, {human(sum(k.time_s for k in report.at_load), 's')}")


def print_side_by_side(reports: dict[str, Report], console: Console | None = None) -> None:
    console = console or Console(width=160)
    table = Table(title="the same model on every target", title_justify="left")
    table.add_column("")
    for target, report in reports.items():
        table.add_column(f"{target} ({report.device})", justify="right")
    totals = {t: r.total() for t, r in reports.items()}
    rows = [
        ("kernels", lambda t, r: str(len(r.kernels))),
        ("time", lambda t, r: human(totals[t]["time_s"], "s")),
        ("inferences/s", lambda t, r: human(totals[t]["throughput_per_s"])),
        ("samples/s", lambda t, r: human(totals[t]["samples_per_s"]) if totals[t]["batch"] else "-"),
        ("model FLOPs", lambda t, r: human(totals[t]["model_flops"])),
        ("issued FLOPs", lambda t, r: human(totals[t]["issued_flops"])),
        ("achieved FLOP/s", lambda t, r: human(totals[t]["achieved_flops_per_s"])),
        ("peak FLOP/s", lambda t, r: human(totals[t]["peak_flops_per_s"])),
        ("utilisation", lambda t, r: f"{totals[t]['utilisation']:.1%}"),
        ("devices", lambda t, r: str(totals[t]["devices"])),
        ("memory per device", lambda t, r: human(totals[t]["memory_per_device_bytes"], "B")),
    ]
    for bound in ("compute", "memory", "latency", "transfer"):
        rows.append((f"time {bound}-bound", lambda t, r, b=bound: human(sum(k.time_s for k in r.kernels if k.bound == b), "s")))
    for label, cell in rows:
        table.add_row(label, *(cell(t, r) for t, r in reports.items()))
    console.print(table)


def to_json(reports: dict[str, Report]) -> str:
    if len(reports) == 1:
        data = next(iter(reports.values())).as_json()
    else:
        data = {"targets": {t: r.as_json() for t, r in reports.items()}}
    return json.dumps(data, indent=2) + "\n"


def plot_roofline(reports: dict[str, Report], path: str, peak_bandwidth: dict[str, float]) -> None:
    """Kernels as points (arithmetic intensity, achieved FLOP/s) under each device's roofline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for (target, report), color in zip(reports.items(), ("tab:green", "tab:blue", "tab:orange")):
        bandwidth, peak = peak_bandwidth[target], report.peak_flops
        xs = [1e-2, peak / bandwidth, 1e5]
        ax.plot(xs, [min(peak, x * bandwidth) for x in xs], color=color, label=f"{target} roofline ({report.device})")
        points = [
            (k.flops / max(1, k.bytes.get("hbm", 0) or sum(k.bytes.values())), k.flops / k.time_s)
            for k in report.kernels if k.flops and k.time_s > 0
        ]
        if points:
            ax.scatter(*zip(*points), s=14, color=color, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / off-chip byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig, path: str) -> None:
    """
    Write a matplotlib figure to `path` in the format its suffix names, and
    close it; a folder, a FIFO nothing reads or a full disk is a clean error.
    """
    import matplotlib.pyplot as plt

    try:
        with open_output(path, "wb") as f:
            fig.savefig(f, dpi=120, format=Path(path).suffix.lstrip(".").lower() or None)
    except OSError as err:
        raise StrataError(f"error: cannot write the plot {path}: {err.strerror or err}") from None
    finally:
        plt.close(fig)
