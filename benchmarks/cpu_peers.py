"""
strata's native code (`strata run --backend mlir`) against the CPU peers, on this machine.

Usage: .venv/bin/python benchmarks/cpu_peers.py [--threads 1,2] [--repeat 40] [--workloads gemm,gemv,mlp,gpt2,resnet18] [--no-pin]

Workloads: a 1024^3 f32 GEMM, a decode step's f32 GEMV (`[1, 4096] @ w[4096, 16000]`, its 262 MB
weight read from DRAM every call), `samples/mlp.model` (defaults), GPT-2 at
S=64 D=256 H=4 L=2 and ResNet-18 at 112 x 112 (batch 1). Peers, where installed: NumPy (the reference executor:
its matmuls are OpenBLAS calls), onnxruntime (`strata export`'s ONNX model,
CPU provider), IREE (llvm-cpu; GEMM only) and JAX (jit; GEMM only: there is
no strata-to-JAX translation). strata runs as `strata run --backend mlir
--target cpu` does (the cpu target's default schedule). Each thread count
runs in a fresh process, with OpenBLAS, OpenMP, onnxruntime and XLA told
the same count, and pinned to that many cores (the least busy ones over
half a second; `--no-pin` leaves it free): XLA's CPU runtime runs on every
core it may use whatever its flags say, so without the pin JAX's
"1 thread" column is two cores' work. A cell over 100% of the peak of the
cores its row claims is marked `!` (that peer used more cores) and left
out of strata/best. Times are medians of `--repeat` calls after half a
second's pause (the runtimes timed before stop spinning: on 2 cores
OpenBLAS's threads took strata's OpenMP worker's core) and 3 warm-ups,
compute only: inputs are bound and outputs allocated once, outside the
timed call.

The peak is measured, not assumed: a C loop of 12 independent AVX-512 FMA
chains per core (`cc -O2 -mavx512f`), times the cores used (where the C
compiler or AVX-512 is missing, `--peak GFLOPS` gives it). GFLOP/s count
2 flops per multiply-add of the model's graph (`strata.model_flops`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GEMM_MODEL = """let N = 1024
model gemm(a: f32[N, N], b: f32[N, N]) {
  return a @ b
}
"""

GEMV_MODEL = """model gemv(h: f32[1, 4096]) {
  param w: f32[4096, 16000]
  return h @ w
}
"""
"""A decode step's projection: one row against a 262 MB weight, which streams from DRAM every call."""

INLINE_MODELS = {"gemm": GEMM_MODEL, "gemv": GEMV_MODEL}

WORKLOADS = {
    "gemm": ("GEMM 1024^3 f32", None, {}),
    "gemv": ("GEMV 1x4096x16000 f32", None, {}),
    "mlp": ("samples/mlp.model", "samples/mlp.model", {}),
    "gpt2": ("GPT-2 S=64 D=256 H=4 L=2", "samples/gpt2.model", {"S": 64, "D": 256, "H": 4, "L": 2}),
    "resnet18": ("ResNet-18 112x112", "samples/resnet18.model", {"HW": 112}),
}

PEERS = ("numpy", "onnxruntime", "iree", "jax", "strata")

PEAK_C = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
  __m512 a[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
  long n = 100000000; double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 12
      for (int j = 0; j < 12; j++) a[j] = _mm512_fmadd_ps(a[j], b, c);
    }
    double g = n * 12.0 * 32 / (now() - t0) / 1e9;
    if (g > best) best = g;
  }
  float s = 0; for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
  printf("%f %f\n", best, s);
  return 0;
}
"""


def measure_peak_per_core() -> float | None:
    """GFLOP/s of one core running 12 independent chains of 16-lane f32 FMAs (2 flops each)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(PEAK_C)
        if subprocess.run([cc, "-O2", "-mavx512f", "-mfma", str(src), "-o", str(exe)],
                          capture_output=True).returncode != 0:
            return None
        # On the least busy core: a core shared with another job would halve the peak.
        core = min(quietest_cores(1))
        out = subprocess.run(["taskset", "-c", str(core), str(exe)] if shutil.which("taskset") else [str(exe)],
                             capture_output=True, text=True)
        return float(out.stdout.split()[0]) if out.returncode == 0 else None


# --------------------------------------------------------------------------- the worker (one thread count)


SETTLE_S = 0.5
"""Seconds each timing waits first (`settle`): the other runtimes' worker threads stop spinning."""


def settle() -> None:
    """Let the worker threads of the runtimes timed before (OpenBLAS, onnxruntime, XLA) go idle."""
    time.sleep(SETTLE_S)


def median_ms(fn, repeat: int) -> float:
    settle()
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


def quietest_cores(count: int, seconds: float = 0.5) -> set[int]:
    """The `count` cores of this process's affinity with the most idle time over `seconds` (/proc/stat)."""
    allowed = sorted(os.sched_getaffinity(0))

    def idle() -> dict[int, int]:
        ticks = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                ticks[int(name[3:])] = int(fields[3]) + int(fields[4])  # idle + iowait
        return ticks

    try:
        before = idle()
        time.sleep(seconds)
        after = idle()
    except (OSError, ValueError, IndexError):
        return set(allowed[:count])
    return set(sorted(allowed, key=lambda c: -(after.get(c, 0) - before.get(c, 0)))[:count])


def worker(threads: int, repeat: int, workloads: list[str], pin: bool) -> dict:
    if pin and threads < len(os.sched_getaffinity(0)):
        # Before any runtime starts its threads: they inherit the mask.
        os.sched_setaffinity(0, quietest_cores(threads))
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from strata.compiler.execution import native, reference
    from strata.compiler.frontend import load_model
    from tests.support import sample_values

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in workloads:
            _, path, defines = WORKLOADS[name]
            if path is None:
                path = str(Path(tmp) / f"{name}.model")
                Path(path).write_text(INLINE_MODELS[name])
            module = load_model(path, defines)
            inputs, params = sample_values(module)
            row: dict = {}
            exported = native.export(module, "cpu", threads=threads)
            row["flops"] = exported.attributes["strata.model_flops"].value.data
            compiled = native.compile_exported(exported, threads=threads)
            call, outputs = compiled.prepare(inputs, params)
            # Timed before the reference runs: OpenBLAS's threads spin a while after a call, and on 2
            # cores they took the OpenMP worker's core (the MLP's 2-thread calls 3.9 ms, 0.11 alone).
            row["strata"] = median_ms(call, repeat)
            want = reference.run_module(module, inputs, params)
            row["strata_error"] = max(
                float(np.max(np.abs(w.astype(np.float64) - g))) / max(float(np.max(np.abs(w))), 1e-30)
                for w, g in zip(want, outputs)
            )
            if name == "gemm":
                a, b = inputs["a"], inputs["b"]
                row["numpy"] = median_ms(lambda: a @ b, repeat)
            else:
                row["numpy"] = median_ms(lambda: reference.run_module(module, inputs, params), repeat)
            row["onnxruntime"] = _onnxruntime(module, inputs, params, threads, repeat)
            row["jax"] = _jax(name, inputs, repeat)
            row["iree"] = _iree(name, inputs, repeat)
            results[name] = row
    return results


def _onnxruntime(module, inputs, params, threads: int, repeat: int) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    from strata.compiler.onnx_export import to_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(to_onnx(module, params).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return median_ms(lambda: session.run(None, dict(inputs)), repeat)


def _jax(name: str, inputs, repeat: int) -> float | None:
    if name != "gemm":
        return None
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    a, b = (jax.device_put(jnp.asarray(inputs[k])) for k in ("a", "b"))
    matmul = jax.jit(lambda x, y: x @ y)
    return median_ms(lambda: matmul(a, b).block_until_ready(), repeat)


def _iree(name: str, inputs, repeat: int) -> float | None:
    if name != "gemm":
        return None
    try:
        import iree.compiler as ireec
        import iree.runtime as ireert
    except ImportError:
        return None
    source = """func.func @gemm(%a: tensor<1024x1024xf32>, %b: tensor<1024x1024xf32>) -> tensor<1024x1024xf32> {
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1024x1024xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<1024x1024xf32>) -> tensor<1024x1024xf32>
  %r = linalg.matmul ins(%a, %b : tensor<1024x1024xf32>, tensor<1024x1024xf32>) outs(%f : tensor<1024x1024xf32>) -> tensor<1024x1024xf32>
  return %r : tensor<1024x1024xf32>
}"""
    vmfb = ireec.compile_str(source, target_backends=["llvm-cpu"], extra_args=["--iree-llvmcpu-target-cpu=host"])
    config = ireert.Config("local-task")
    module = ireert.load_vm_flatbuffer(vmfb, driver="local-task")
    a, b = inputs["a"], inputs["b"]
    del config
    return median_ms(lambda: module.gemm(a, b).to_host(), repeat)


# --------------------------------------------------------------------------- the table


def run_worker_process(threads: int, repeat: int, workloads: list[str], pin: bool) -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
                        f" intra_op_parallelism_threads={threads}")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(threads), "--repeat", str(repeat), "--workloads", ",".join(workloads),
         *([] if pin else ["--no-pin"])],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    if out.returncode != 0:
        sys.exit(f"the {threads}-thread run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--repeat", type=int, default=40, help="timed calls per measurement (default 40)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="of: " + ", ".join(WORKLOADS))
    parser.add_argument("--peak", type=float, default=None, help="one core's f32 peak in GFLOP/s (default: measured)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin each run to as many cores as it has threads")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown:
        sys.exit(f"unknown workloads {', '.join(unknown)} (choices: {', '.join(WORKLOADS)})")
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.repeat, workloads, args.pin)))
        return

    sys.path.insert(0, str(ROOT))
    from strata.compiler.execution import native

    if not native.tools_available():
        sys.exit("the MLIR tools are missing: apt-get install mlir-22-tools llvm-22")
    peak = args.peak or measure_peak_per_core()
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {_cpu_name()}, {cores} cores available")
    if peak:
        print(f"peak f32 per core: {peak:.1f} GFLOP/s ({'given' if args.peak else 'measured: 12 AVX-512 FMA chains'})")
    print(f"median of {args.repeat} calls, compute only; cells: ms (GFLOP/s, % of the peak of the cores used);"
          f" runs {'pinned to as many cores as threads' if args.pin else 'not pinned'}")
    thread_counts = [int(t) for t in args.threads.split(",")]
    tables = {t: run_worker_process(t, args.repeat, workloads, args.pin) for t in thread_counts}
    flagged = False
    for threads, rows in tables.items():
        print()
        print(f"{threads} thread{'s' if threads > 1 else ''}")
        header = f"{'workload':<28}" + "".join(f"{p:>24}" for p in PEERS) + f"{'strata/best':>13}{'strata err':>12}"
        print(header)
        print("-" * len(header))
        for name in workloads:
            row = rows[name]
            cells, honest = [], []
            for peer in PEERS:
                ms = row.get(peer)
                if ms is None:
                    cells.append(f"{'-':>24}")
                    continue
                gflops = row["flops"] / (ms * 1e-3) / 1e9
                share, over = "", False
                if peak:
                    percent = 100 * gflops / (peak * threads)
                    # More than the cores it claims can do: it ran on more of them.
                    over = percent > 100
                    share = f", {percent:.0f}%{'!' if over else ''}"
                flagged |= over
                if peer != "strata" and not over:
                    honest.append(ms)
                cells.append(f"{f'{ms:.3f} ({gflops:.0f}{share})':>24}")
            ratio = f"{row['strata'] / min(honest):>12.2f}x" if honest else f"{'-':>13}"
            print(f"{WORKLOADS[name][0]:<28}" + "".join(cells) + ratio + f"{row['strata_error']:>12.1e}")
    if flagged:
        print("\n! over 100% of the peak of the cores the row claims: that peer ran on more cores than its"
              " thread count (left out of strata/best)")
    if 1 in tables and len(tables) > 1:
        print()
        for threads in thread_counts:
            if threads == 1:
                continue
            speedups = ", ".join(f"{n} {tables[1][n]['strata'] / tables[threads][n]['strata']:.2f}x" for n in workloads)
            print(f"strata speedup, {threads} threads over 1: {speedups}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
