"""
Whole-model fidelity: strata's estimates against published end-to-end
measurements (benchmarks/fidelity_cases.toml; method and results in
docs/fidelity.md).

    .venv/bin/python benchmarks/fidelity.py              # the table and the errors
    .venv/bin/python benchmarks/fidelity.py --json       # the same as JSON
    .venv/bin/python benchmarks/fidelity.py --only a100_resnet50_b256 --jobs 2

Each case names the machine (target, device, devices and tp/dp/pp), the
measured figure with its unit and source, and one or more phases: strata
compiles of model files under benchmarks/models/ whose estimated times,
each times its count, add up to one measured event (a prefill and 2047
decode steps, one forward pass, ...). The event time becomes the measured
unit: `work / time` for a rate ("tokens/s", "images/s"; "TFLOPS" divides
FLOPs by 1e12 too), the time itself for "ms" or "s".

No figure is fitted here and no factor is applied per case: the estimates
are what strata's cost models give with the shipped device specs (a case's
`spec` only states where the measured part differs from the shipped spec,
e.g. an A100 40GB's HBM). Cases marked `role = "calibration"` are those a
fitted figure would be fitted on; until such a figure lands in a device
spec every case validates the model as it is.

Error of a case: |ln(predicted / measured)|; the error of a group is the
geometric mean of predicted/measured's distance from 1,
exp(mean |ln r|) - 1, and the worst case is max(r, 1/r).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES = HERE / "fidelity_cases.toml"
MODELS = HERE / "models"

ROLES = ("calibration", "validation")
RATE_UNITS = {"tokens/s": 1.0, "images/s": 1.0, "sequences/s": 1.0, "TFLOPS": 1e12}
TIME_UNITS = {"s": 1.0, "ms": 1e-3}
REQUIRED = ("id", "role", "kind", "target", "device", "devices", "tp", "dp", "pp", "precision", "batch",
            "context", "measured", "unit", "source", "where", "includes", "conversion", "work", "phase")
ACCEPT_GEOMEAN = 0.25
ACCEPT_FACTOR = 2.0


# --------------------------------------------------------------------------- cases


def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return tomllib.load(f)["case"]


def problems(case: dict[str, Any]) -> list[str]:
    """What is missing or inconsistent in one case (empty: complete)."""
    out = [f"missing '{key}'" for key in REQUIRED if key not in case]
    if out:
        return out
    if case["role"] not in ROLES:
        out.append(f"role '{case['role']}' is not one of {ROLES}")
    if case["unit"] not in RATE_UNITS and case["unit"] not in TIME_UNITS:
        out.append(f"unit '{case['unit']}' is not one of {sorted(RATE_UNITS) + sorted(TIME_UNITS)}")
    if not (isinstance(case["measured"], (int, float)) and case["measured"] > 0):
        out.append("measured is not a positive number")
    if not (isinstance(case["work"], (int, float)) and case["work"] > 0):
        out.append("work is not a positive number")
    for key in ("source", "where", "includes", "conversion", "precision", "context"):
        if not str(case[key]).strip():
            out.append(f"'{key}' is empty")
    for axis in ("tp", "dp", "pp", "devices"):
        if not (isinstance(case[axis], int) and case[axis] >= 0):
            out.append(f"'{axis}' is not a whole number")
    if not out and case["pp"] > 0 and case["devices"] != case["tp"] * case["dp"] * case["pp"]:
        out.append(f"devices {case['devices']} != tp x dp x pp = {case['tp'] * case['dp'] * case['pp']}")
    if not out and case["pp"] == 0 and case["devices"] != 0:
        out.append("pp = 0 (strata places the stages) needs devices = 0")
    if not case["phase"]:
        out.append("no phase")
    for phase in case["phase"]:
        if not (MODELS / phase.get("model", "")).is_file():
            out.append(f"model file benchmarks/models/{phase.get('model')} does not exist")
        if not (isinstance(phase.get("count"), (int, float)) and phase["count"] > 0):
            out.append(f"phase {phase.get('model')}: count is not a positive number")
    return out


def machine(case: dict[str, Any]) -> str:
    parts = [case["device"]]
    if case["devices"] > 1:
        parts.append(f"x{case['devices']}")
    for axis in ("tp", "dp"):
        if case[axis] > 1:
            parts.append(f"{axis}{case[axis]}")
    if case["pp"] > 1:
        parts.append(f"pp{case['pp']}")
    if case["pp"] == 0:
        parts.append("(fewest chips)")
    return " ".join(parts)


# --------------------------------------------------------------------------- compiling


@dataclass(frozen=True)
class Job:
    """One strata compile; cases that share one are compiled once."""

    model: str
    defines: tuple[tuple[str, int], ...]
    target: str
    device: str
    spec: tuple[tuple[str, Any], ...]
    tp: int
    dp: int
    pp: int

    def schedule(self) -> dict[str, int]:
        schedule = {"tp": self.tp, "dp": self.dp}
        if self.pp:
            schedule["pp"] = self.pp
        return schedule


def jobs_of(case: dict[str, Any]) -> list[Job]:
    spec = dict(case.get("spec") or {})
    if case.get("runtime") == "cuda-graphs":
        # The runtime replays CUDA graphs: kernels follow each other at the device's graph gap, not a launch.
        from strata.dialects.device import load_device

        gap = load_device(case["device"])["graph_launch_latency_s"]
        spec["launch_latency_s"] = spec["collective_launch_latency_s"] = gap
    spec = tuple(sorted(spec.items()))
    return [
        Job(phase["model"], tuple(sorted(phase.get("defines", {}).items())), case["target"], case["device"],
            spec, case["tp"], case["dp"], case["pp"])
        for phase in case["phase"]
    ]


def compile_job(job: Job) -> dict[str, Any]:
    """Compile one phase with strata's Python API (what `strata compile` runs) and return its totals."""
    import strata

    start = time.perf_counter()
    try:
        model = strata.load(MODELS / job.model, defines=dict(job.defines))
        compiled = strata.compile(model, target=job.target, device=job.device, spec=dict(job.spec) or None,
                                  schedule=job.schedule())
        total = compiled.report["total"]
        by_kind: dict[str, list[float]] = {}
        for kernel in compiled.report["kernels"]:
            entry = by_kind.setdefault(kernel["kind"], [0, 0.0])
            entry[0] += 1
            entry[1] += kernel["time_s"]
        return {"time_s": total["time_s"], "devices": total["devices"], "chips": total["chips"],
                "model_flops": total["model_flops"], "issued_flops": total["issued_flops"],
                "kernels": len(compiled.report["kernels"]),
                "by_kind": {kind: {"count": n, "time_s": t} for kind, (n, t) in sorted(by_kind.items())},
                "wall_s": time.perf_counter() - start, "error": None}
    except Exception as err:  # reported per case, never hidden
        return {"time_s": None, "error": f"{type(err).__name__}: {err}".strip(), "wall_s": time.perf_counter() - start}


def _worker_init(scratch: str, tune_gc: bool = True) -> None:
    # A failing pass writes strata-reproducer.mlir to the current directory: keep it out of the checkout.
    os.chdir(scratch)
    import warnings

    warnings.simplefilter("ignore")
    if tune_gc:
        # As `strata compile` does (compiler/cli.py main): deep op chains, fewer young-generation collections.
        import gc

        sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))
        gc.set_threshold(200_000, 50, 1000)


def compile_all(jobs: list[Job], workers: int) -> dict[Job, dict[str, Any]]:
    unique = list(dict.fromkeys(jobs))
    # The slowest (largest models) first, so the pool's tail is short.
    unique.sort(key=lambda j: -dict(j.defines).get("L", 1) * dict(j.defines).get("D", 1) * dict(j.defines).get("B", 1))
    with tempfile.TemporaryDirectory(prefix="strata-fidelity-") as scratch:
        if workers <= 1:
            here = os.getcwd()
            try:
                _worker_init(scratch, tune_gc=False)
                return {job: compile_job(job) for job in unique}
            finally:
                os.chdir(here)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_worker_init, initargs=(scratch,)) as pool:
            return dict(zip(unique, pool.map(compile_job, unique, chunksize=1)))


# --------------------------------------------------------------------------- results


def evaluate(case: dict[str, Any], results: dict[Job, dict[str, Any]]) -> dict[str, Any]:
    phases, errors, event_s = [], [], 0.0
    for phase, job in zip(case["phase"], jobs_of(case)):
        result = results[job]
        phases.append({"model": phase["model"], "defines": phase.get("defines", {}), "count": phase["count"],
                       **{k: result.get(k) for k in ("time_s", "devices", "chips", "kernels", "model_flops",
                                                     "issued_flops", "by_kind", "wall_s", "error")}})
        if result["error"]:
            errors.append(f"{phase['model']}: {result['error']}")
        else:
            event_s += phase["count"] * result["time_s"]
    unit = case["unit"]
    predicted = ratio = None
    if not errors and event_s > 0:
        if unit in RATE_UNITS:
            predicted = case["work"] / event_s / RATE_UNITS[unit]
        else:
            predicted = event_s / TIME_UNITS[unit]
        ratio = predicted / case["measured"]
    # predicted time over measured time: > 1 means strata is slower than measured
    time_ratio = None if ratio is None else (1 / ratio if unit in RATE_UNITS else ratio)
    return {
        "id": case["id"], "role": case["role"], "kind": case["kind"], "machine": machine(case),
        "target": case["target"], "device": case["device"], "unit": unit, "measured": case["measured"],
        "predicted": predicted, "ratio": ratio, "time_ratio": time_ratio,
        "factor": None if ratio is None else max(ratio, 1 / ratio),
        "strata_devices": phases[0].get("devices") if phases else None,
        "event_s": event_s if not errors else None, "phases": phases, "errors": errors,
        "source": case["source"],
    }


def geomean_error(ratios: list[float]) -> float | None:
    """exp(mean |ln r|) - 1: 0.25 means predictions are off by 25% on (geometric) average."""
    if not ratios:
        return None
    return math.exp(sum(abs(math.log(r)) for r in ratios) / len(ratios)) - 1


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    groups = {}
    for name in (*ROLES, "all"):
        members = [r for r in rows if name in ("all", r["role"])]
        ok = [r["ratio"] for r in members if r["ratio"] is not None]
        worst = max(members, key=lambda r: r["factor"] or 0, default=None)
        groups[name] = {
            "cases": len(members), "failed": len(members) - len(ok),
            "geomean_error": geomean_error(ok),
            "worst_case": worst["id"] if worst else None,
            "worst_factor": worst["factor"] if worst else None,
            "over_2x": [r["id"] for r in members if r["factor"] is not None and r["factor"] > ACCEPT_FACTOR],
        }
    cal, val, every = groups["calibration"], groups["validation"], groups["all"]
    acceptance = {
        "geomean_error_within_25pct": every["geomean_error"] is not None and every["geomean_error"] <= ACCEPT_GEOMEAN
        and every["failed"] == 0,
        "no_case_over_2x": not every["over_2x"] and every["failed"] == 0,
        "validation_no_worse_than_calibration": None if cal["geomean_error"] is None or val["geomean_error"] is None
        else val["geomean_error"] <= cal["geomean_error"],
    }
    return {"groups": groups, "acceptance": acceptance}


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.1f}"
    return f"{x:.3g}" if x < 10 else f"{x:.2f}"


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any], out=sys.stdout) -> None:
    header = ("case", "role", "machine", "predicted", "measured", "unit", "pred/meas", "factor")
    table = [header] + [
        (r["id"], r["role"][:5], r["machine"], _num(r["predicted"]), _num(r["measured"]), r["unit"],
         "-" if r["ratio"] is None else f"{r['ratio']:.3f}", "-" if r["factor"] is None else f"{r['factor']:.2f}x")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {3, 4, 6, 7}
    for n, row in enumerate(table):
        print("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        for error in r["errors"]:
            print(f"error: {r['id']}: {error}", file=out)
    print(file=out)
    print("pred/meas > 1: strata predicts a higher rate (or a longer time) than measured;"
          " factor = max(r, 1/r)", file=out)
    for name, g in summary["groups"].items():
        err = "-" if g["geomean_error"] is None else f"{100 * g['geomean_error']:.1f}%"
        worst = "-" if g["worst_factor"] is None else f"{g['worst_case']} ({g['worst_factor']:.2f}x)"
        over = ", ".join(g["over_2x"]) or "none"
        print(f"{name:<11} {g['cases']:2d} cases ({g['failed']} failed): geometric-mean error {err};"
              f" worst {worst}; over 2x: {over}", file=out)
    acc = summary["acceptance"]
    print("acceptance (reported, not enforced): geometric-mean error <= 25%: "
          f"{acc['geomean_error_within_25pct']}; no case over 2x: {acc['no_case_over_2x']};"
          f" validation no worse than calibration: {acc['validation_no_worse_than_calibration']}", file=out)


def run(cases: list[dict[str, Any]], workers: int) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    start = time.perf_counter()
    jobs = [job for case in cases for job in jobs_of(case)]
    results = compile_all(jobs, workers)
    rows = [evaluate(case, results) for case in cases]
    return rows, summarise(rows), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=Path, default=CASES, help="the case file (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], metavar="ID", help="run only this case (repeatable)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="compiles side by side (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    cases = load_cases(args.cases)
    if args.only:
        unknown = sorted(set(args.only) - {c["id"] for c in cases})
        if unknown:
            parser.error(f"no such case: {', '.join(unknown)}")
        cases = [c for c in cases if c["id"] in args.only]
    bad = {c.get("id", "?"): problems(c) for c in cases if problems(c)}
    if bad:
        for case_id, issues in bad.items():
            print(f"error: case {case_id}: {'; '.join(issues)}", file=sys.stderr)
        return 2
    rows, summary, wall = run(cases, max(1, args.jobs))
    if args.json:
        json.dump({"cases": rows, "summary": summary, "wall_s": wall}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(rows, summary)
        print(f"\n{len(cases)} cases, {sum(len(c['phase']) for c in cases)} phases, {wall:.0f} s wall ({args.jobs} jobs)")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
