"""
The cpu cost model against measured runs of strata's own native code.

Usage: .venv/bin/python benchmarks/cpu_cost_model.py [--repeat 10] [--threads 1]
       [--samples mlp,gpt2,...] [--schedules 20] [--no-gemm] [--no-samples]

Estimates are of this machine's CPU as `--device host` measures it
(`compiler/host.py`: its FMA peak, caches and bandwidths, and
`gemm_efficiency` calibrated on the 1024^3 GEMM at its default tiles, so
section 2's default point is in-sample and everything else is not).

1. Every sample (`samples/*.model`) at a reduced size (`SIZES`, the sizes
   `benchmarks/mlir_runtime.py` runs at) is measured as `strata measure
   --target cpu` does (`compiler/measure.py`: one loop-stage module, costed
   and compiled natively with a timer around each kernel; the mean of the
   middle half of `--repeat` runs after a warm-up less the clock's own cost
   per bracket, in `--processes` fresh processes, the fastest one's figures
   kept, as `strata measure --processes` does): the estimate, the measured
   time and estimate / measured in total and per kernel, and how many
   kernels lie within 50% and totals within 25% (issue 20's acceptance
   bounds); the work at load (params relaid, kernels over params alone),
   timed apart by running the load function again, below each sample and
   counted apart. A kernel measured under the clock's own cost (its
   resolution, 20 to 30 ns here) is listed apart, not compared.
2. The 1024^3 f32 GEMM at `--schedules` legal schedules: the points of the
   tuner's space for its kernel (`kernel_points`: tile sizes x loop orders
   the `tile` pass accepts on the cpu device), sorted by estimate and taken
   evenly from the cheapest to the dearest, each compiled with `--schedule
   tile=...,order=...` and measured; then the Spearman rank correlation of
   the estimates with the measurements (by hand: Pearson's correlation of
   the ranks, ties sharing their mean rank).

Measurements on a shared machine are noisy: other jobs on the cores move
a run's figures by 10-20%, and a process's speed is set when it starts
(the same ResNet-18 ran 0.81 to 1.25 ms in consecutive processes on the
Zen 4 guest), hence the fastest of several processes. Nothing here fails
on a rough cost model; it prints what it finds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# One thread for NumPy (it draws the inputs) so the native code has the cores.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from strata.backends.cost import model_function  # noqa: E402
from strata.compiler import measure  # noqa: E402
from strata.compiler.driver import Stage, attach_device  # noqa: E402
from strata.compiler.execution import native, weights  # noqa: E402
from strata.compiler.frontend import compile_source, load_model  # noqa: E402
from strata.compiler.host import host_device  # noqa: E402
from strata.compiler.tuning.spaces import KernelEvaluator, kernel_points, standalone  # noqa: E402
from strata.dialects.graph.kernel import KernelOp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOST_DEVICE = host_device()
"""This machine's CPU, measured on it (`--device host`, compiler/host.py): the runs are timed here."""

SIZES = {
    "mlp": {"B": 64},
    "resnet18": {"HW": 64, "W0": 16, "NC": 100},
    "resnet18_int8": {"HW": 64, "W0": 16, "NC": 100},
    "gpt2": {"S": 64, "D": 256, "H": 4, "L": 2},
    "llama": {"S": 64, "D": 256, "H": 4, "KVH": 2, "F": 512, "V": 2048},
    "vit": {"HW": 64, "P": 8, "D": 192, "H": 4, "L": 2, "NC": 100},
    "llama_decode_int4": {"D": 1024, "H": 8, "KVH": 8, "F": 2816, "T": 256, "V": 4096, "L": 2},
}
"""Reduced sizes of the samples (those of `benchmarks/mlir_runtime.py`; the int4 decode step, a bf16
model with int4 weights, at a 1024-wide Llama's shapes and 256 cached tokens): milliseconds per run."""

GEMM_MODEL = """let N = 1024
model gemm(a: f32[N, N], b: f32[N, N]) {
  return a @ b
}
"""

TARGET = "cpu"


def us(seconds: float | None) -> str:
    """Microseconds to the nanosecond: the smallest kernels take tens of them."""
    return "-" if seconds is None else f"{seconds * 1e6:10.3f}"


def ratio(estimate: float, measured: float | None) -> str:
    return "-" if not measured else f"{estimate / measured:6.2f}"


def measured(module, repeat: int, threads: int, schedule: dict | None = None) -> measure.Measurement:
    bound = weights.bind_values(model_function(module), 0)
    attach_device(module, HOST_DEVICE, TARGET)
    return measure.measure(module, TARGET, bound.inputs, bound.params, threads, repeat, schedule)


def measured_apart(name: str, sizes: dict, repeat: int, threads: int, processes: int) -> measure.Measurement:
    """A sample measured as `strata measure --processes` does: the fastest of `processes` fresh processes."""
    if processes == 1:
        return measured(load_model(str(ROOT / "samples" / f"{name}.model"), sizes), repeat, threads)
    argv = ["measure", str(ROOT / "samples" / f"{name}.model"), "--target", TARGET, "--repeat", str(repeat),
            "--threads", str(threads), *(f"-D{k}={v}" for k, v in sizes.items())]
    return measure.measure_apart(argv, processes)


def samples(names: list[str], repeat: int, threads: int, processes: int) -> None:
    runs = (f"{repeat} runs" if processes == 1
            else f"the fastest of {processes} processes' {repeat} runs")
    print(f"estimate vs measured, {threads} thread(s), {runs} (us; ratio = estimate / measured)")
    totals_ok = 0
    counts = {"kernels": [0, 0], "at_load": [0, 0]}  # within 50%, compared
    unresolved: list[str] = []
    for name in names:
        sizes = SIZES.get(name, {})
        label = name + " " + " ".join(f"{k}={v}" for k, v in sizes.items())
        try:
            result = measured_apart(name, sizes, repeat, threads, processes)
        except Exception as err:  # a sample the native backend refuses: say so, go on
            print(f"\n{label}: not measured: {str(err).splitlines()[0]}")
            continue
        total_ratio = result.time_s / result.measured_time_s
        totals_ok += abs(total_ratio - 1) <= 0.25
        print(f"\n{label}: total estimate {us(result.time_s)} measured {us(result.measured_time_s)}"
              f" ratio {total_ratio:5.2f}")
        print(f"  {'kernel':<14} {'kind':<10} {'estimate':>10} {'measured':>10} {'ratio':>6}")
        for part in ("kernels", "at_load"):
            if part == "at_load" and result.at_load:
                print("  at load, once (not in the total):")
            for k in getattr(result, part):
                note = ""
                if not k["resolved"]:
                    unresolved.append(f"{name}:{k['name']} ({ratio(k['time_s'], k['measured_time_s']).strip()})")
                    note = f"  under the clock's resolution ({result.resolution_s * 1e9:.0f} ns)"
                else:
                    counts[part][0] += abs(k["ratio"] - 1) <= 0.5
                    counts[part][1] += 1
                print(f"  {k['name']:<14} {k['kind']:<10} {us(k['time_s'])} {us(k['measured_time_s'])}"
                      f" {ratio(k['time_s'], k['measured_time_s'])}{note}")
        for u in result.unestimated:
            print(f"  {u['name']:<14} {'copy':<10} {'-':>10} {us(u['measured_time_s'])}      -  (not costed)")
    (ok, compared), (load_ok, load_compared) = counts["kernels"], counts["at_load"]
    print(f"\ntotals within 25%: {totals_ok} of {len(names)}; kernels within 50%: {ok} of {compared}"
          f" measured above the clock's resolution; at load (timed apart): {load_ok} of {load_compared}")
    if unresolved:
        print(f"under the clock's resolution, not compared ({len(unresolved)}): {', '.join(unresolved)}")


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks."""
    rx, ry = np.array(ranks(x)), np.array(ranks(y))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator else float("nan")


def gemm_schedules(count: int) -> list[dict]:
    """`count` legal points of the GEMM kernel's space, evenly spread over the range of estimates."""
    from strata.compiler.driver import passes_between, run_passes, DumpOptions
    from strata.compiler.ir import make_context

    module = compile_source(GEMM_MODEL, "gemm.model")
    spec = attach_device(module, HOST_DEVICE, TARGET)
    run_passes(make_context(), module, passes_between(TARGET, Stage.GRAPH, Stage.LAYOUT), DumpOptions())
    kernel = next(op for op in module.walk() if isinstance(op, KernelOp))
    evaluate = KernelEvaluator(standalone(kernel, spec), spec)
    costed = sorted(((evaluate(p), i, p) for i, p in enumerate(kernel_points(kernel, spec))), key=lambda t: t[:2])
    costed = [t for t in costed if np.isfinite(t[0])]
    picks = sorted({int(round(i)) for i in np.linspace(0, len(costed) - 1, min(count, len(costed)))})
    return [costed[i][2] for i in picks]


def gemm(count: int, repeat: int, threads: int) -> None:
    points = gemm_schedules(count)
    print(f"\nGEMM 1024^3 f32 at {len(points)} legal schedules ({threads} thread(s), {repeat} runs)")
    print(f"  {'tiles':<16} {'order':<6} {'estimate ms':>11} {'measured ms':>11} {'ratio':>6} {'GFLOP/s':>8}")
    estimates, times = [], []
    for point in points:
        schedule = {"sizes": ",".join(map(str, point["tiles"])), "order": ",".join(map(str, point["order"]))}
        result = measured(compile_source(GEMM_MODEL, "gemm.model"), repeat, threads, schedule)
        estimates.append(result.time_s)
        times.append(result.measured_time_s)
        print(f"  {schedule['sizes']:<16} {schedule['order']:<6} {result.time_s * 1e3:11.3f}"
              f" {result.measured_time_s * 1e3:11.3f} {result.time_s / result.measured_time_s:6.2f}"
              f" {2 * 1024**3 / result.measured_time_s / 1e9:8.1f}")
    print(f"Spearman rank correlation of estimates and measurements over {len(points)} schedules:"
          f" {spearman(estimates, times):.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10,
                        help="timed runs per measurement, the mean of their middle half kept (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="threads of the native code (default 1)")
    parser.add_argument("--processes", type=int, default=3,
                        help="fresh processes per sample, the fastest one's figures kept (default 3; 1: in this one)")
    parser.add_argument("--samples", default=",".join(SIZES), help="comma-separated samples (default: all)")
    parser.add_argument("--schedules", type=int, default=20, help="GEMM schedules to rank (default 20)")
    parser.add_argument("--no-gemm", action="store_true", help="skip the GEMM schedules")
    parser.add_argument("--no-samples", action="store_true", help="skip the samples")
    args = parser.parse_args()
    if not native.tools_available():
        print("error: the MLIR/LLVM 22 tools are not installed (apt-get install mlir-22-tools llvm-22)",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    if not args.no_samples:
        samples([s for s in args.samples.split(",") if s], args.repeat, args.threads, args.processes)
    if not args.no_gemm:
        gemm(args.schedules, args.repeat, args.threads)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
