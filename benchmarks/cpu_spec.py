"""
Measure this host's CPU figures for a `cpu` device spec and print them as TOML lines.

Compiles one small C program (AVX-512, OpenMP) with the system C compiler and prints
`key = value  # source: measured on this host by benchmarks/cpu_spec.py, DATE`
lines for `backends/specs/host-cpu.toml`:

- the f32 FMA peak of one core: 12 independent chains of 16-lane `vfmadd` (enough to
  cover two FMA pipes of 4-cycle latency), best of 5; the clock under FMA load is that
  peak / (lanes x pipes x 2), with the pipes given (`--fma-pipes`, 2 on Sapphire
  Rapids / Ice Lake server parts, Intel optimization manual);
- read bandwidth per level: each thread sums (8 independent 16-lane adds) its own
  buffer of 24 KiB (L1d), 1 MiB (L2), 32 MiB (L3) or 1 GiB (DRAM) again and again,
  best of 5, with 1 thread (per-core figures) and with every core (the shared L3
  and DRAM figures);
- the fork and join of an empty OpenMP parallel region on every core, best of 5
  x 20,000 (libgomp here; strata's native code links LLVM's libomp, same order);
- cache sizes from `/sys/devices/system/cpu/cpu0/cache` (what the kernel reports).

Usage: `python benchmarks/cpu_spec.py [--fma-pipes 2] [--threads N]`. Run it on an idle
machine: the shared figures move with whatever else runs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROGRAM = r"""
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static double peak(void) {
  __m512 a[12], b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
  long n = 50000000; double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 12
      for (int j = 0; j < 12; j++) a[j] = _mm512_fmadd_ps(a[j], b, c);
    }
    double g = n * 12.0 * 32 / (now() - t0);
    if (g > best) best = g;
  }
  float s = 0; for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
  if (s == 12345.f) printf("#");
  return best;
}

static float sum(const float *x, long n) {
  __m512 acc[8];
  for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_ps();
  for (long i = 0; i < n; i += 128) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) acc[j] = _mm512_add_ps(acc[j], _mm512_load_ps(x + i + 16 * j));
  }
  for (int j = 1; j < 8; j++) acc[0] = _mm512_add_ps(acc[0], acc[j]);
  return _mm512_reduce_add_ps(acc[0]);
}

/* Bytes/s all `threads` threads read together, each from its own buffer of `bytes`. */
static double bandwidth(long bytes, int threads) {
  long n = bytes / 4;
  long reps = (long)(4e8 / bytes) + 1;
  double best = 0;
  volatile float sink = 0;
#pragma omp parallel num_threads(threads)
  {
    float *x = aligned_alloc(64, n * 4);
    for (long i = 0; i < n; i++) x[i] = 1.0f;
    for (int trial = 0; trial < 5; trial++) {
#pragma omp barrier
      double t0 = now();
      float s = 0;
      for (long r = 0; r < reps; r++) { s += sum(x, n); __asm__ volatile("" : : "r"(x) : "memory"); }
#pragma omp barrier
      double t = now() - t0;
#pragma omp master
      { double b = (double)bytes * reps * threads / t; if (b > best) best = b; }
      sink += s;
    }
    free(x);
  }
  return best;
}

/* Seconds one empty `omp parallel` region (fork and join) takes on `threads` threads. */
static double fork_join(int threads) {
  double best = 1;
  volatile int sink = 0;
  for (int trial = 0; trial < 5; trial++) {
    double t0 = now();
    for (int i = 0; i < 20000; i++) {
#pragma omp parallel num_threads(threads)
      { if (omp_get_thread_num() == threads) sink++; }
    }
    double t = (now() - t0) / 20000;
    if (t < best) best = t;
  }
  return best;
}

int main(int argc, char **argv) {
  int threads = atoi(argv[1]);
  printf("peak %e\n", peak());
  printf("fork %e\n", fork_join(threads));
  long sizes[4] = {24L << 10, 1L << 20, 32L << 20, 1L << 30};
  const char *names[4] = {"l1", "l2", "l3", "dram"};
  for (int i = 0; i < 4; i++) printf("%s_1 %e\n", names[i], bandwidth(sizes[i], 1));
  for (int i = 2; i < 4; i++) printf("%s_%d %e\n", names[i], threads, bandwidth(sizes[i], threads));
  return 0;
}
"""


def cache_sizes() -> dict[str, int]:
    """Per level (`l1d`, `l2`, `l3`): bytes one instance holds, from sysfs."""
    sizes = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        level, kind = (index / "level").read_text().strip(), (index / "type").read_text().strip()
        if kind == "Instruction":
            continue
        text = (index / "size").read_text().strip()
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1)
        sizes["l1d" if level == "1" else f"l{level}"] = int(text.rstrip("KMG")) * scale
    return sizes


def dram_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(threads: int) -> dict[str, float]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        sys.exit("no C compiler (cc) found")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "spec.c", Path(tmp) / "spec"
        src.write_text(PROGRAM)
        build = subprocess.run([cc, "-O2", "-mavx512f", "-mfma", "-fopenmp", str(src), "-o", str(exe)],
                               capture_output=True, text=True)
        if build.returncode != 0:
            sys.exit(f"building the probe failed:\n{build.stderr}")
        out = subprocess.run([str(exe), str(threads)], capture_output=True, text=True, check=True)
    return {key: float(value) for key, value in (line.split() for line in out.stdout.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fma-pipes", type=int, default=2, help="FMA pipes per core (default 2)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads for the shared-level figures (default: the cores available)")
    args = parser.parse_args()
    figures = measure(args.threads)
    caches = cache_sizes()
    where = f"measured on this host by benchmarks/cpu_spec.py, {datetime.date.today().isoformat()}"
    lanes = 16
    clock = figures["peak"] / (lanes * args.fma_pipes * 2)
    n = args.threads
    lines = [
        ("cores", n, "os.sched_getaffinity"),
        ("clock_hz", f"{clock:.4g}", f"FMA peak / ({lanes} lanes x {args.fma_pipes} pipes x 2)"),
        ("peak_flops_fp32", f"{figures['peak'] * n:.4g}",
         f"{figures['peak'] / 1e9:.1f} GFLOP/s per core (12 chains of 16-lane FMAs) x {n} cores"),
        ("l1d_bytes_per_core", caches.get("l1d", 0), "sysfs cache/index0"),
        ("l2_bytes_per_core", caches.get("l2", 0), "sysfs cache/index2"),
        ("l3_bytes", caches.get("l3", 0), "sysfs cache/index3"),
        ("l1_bandwidth_per_core", f"{figures['l1_1']:.4g}", "1 thread summing a 24 KiB buffer"),
        ("l2_bandwidth_per_core", f"{figures['l2_1']:.4g}", "1 thread summing a 1 MiB buffer"),
        ("l3_bandwidth_per_core", f"{figures['l3_1']:.4g}", "1 thread summing a 32 MiB buffer"),
        ("l3_bandwidth", f"{figures[f'l3_{n}']:.4g}", f"{n} threads summing 32 MiB each"),
        ("dram_bandwidth_per_core", f"{figures['dram_1']:.4g}", "1 thread summing a 1 GiB buffer"),
        ("dram_bandwidth", f"{figures[f'dram_{n}']:.4g}", f"{n} threads summing 1 GiB each"),
        ("parallel_region_latency_s", f"{figures['fork']:.3g}", f"an empty OpenMP parallel region on {n} threads"),
        ("dram_bytes", dram_bytes(), "/proc/meminfo MemTotal"),
    ]
    for key, value, how in lines:
        print(f"{key} = {value}  # source: {where} ({how})")


if __name__ == "__main__":
    main()
