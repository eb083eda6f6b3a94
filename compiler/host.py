"""
This machine's CPU as a `cpu` device spec, measured on it: `--device host`.

The shipped cpu specs describe the machines they were measured or sourced
on. `host_device()` describes the one strata runs on, so that `strata
measure` and `strata tune --measure` (which time native code here) compare
runs with estimates of this CPU:

- a small C probe (16-float vectors and OpenMP, built for this CPU with the
  system C compiler: zmm registers with AVX-512, ymm pairs with AVX2)
  measures one core's f32 FMA peak (12 independent chains of 16-float
  FMAs, best of 5; every figure the best of `PROBE_PROCESSES` runs of the
  probe), the read bandwidth of each cache level and of
  DRAM with one thread and with every core (each thread summing its own
  buffer, `probe_buffers`: half of the level it reads, the threads
  together half the L3, 256 MiB to 1 GiB for DRAM), the time one thread
  waits to read 4 KiB that lies in DRAM (just after the DRAM buffer's sum
  pushed it out: a page walk and a miss before the prefetchers stream), and
  the fork and join of an empty OpenMP region; sysfs gives the cache sizes,
  /proc/meminfo the memory;
- `fma_pipes` (vector FMAs per clock) cannot be told apart from the clock
  by timing: it comes from the vendor and family (`vector_unit`), the clock
  from the peak and the pipes;
- the constants of strata's generated code are calibrated here as they
  were on the shipped spec, each on a one-op model compiled natively and
  timed (`strata measure`'s instrumentation: the fastest of 5 rounds, as
  another job slows whole rounds; in 3 fresh processes, as a process's
  speed is set when it starts, `_timed_apart`): `gemm_efficiency`
  (the share of the FMA peak the GEMM micro-kernel runs at) on strata's own
  f32 1024^3 GEMM, `unpacked_gemm_efficiency` (the same where `b` is read
  in place, `a` computed in the kernel) on a GEMM of transposed heads,
  `cycles_per_flop` on a layer norm, `cycles_per_map_byte` on a relu,
  `cycles_per_map_op` on a quantize and
  `cycles_per_relayout_element` on a weight relayout (`CALIBRATIONS`), each
  solved from the cost model's estimate of that kernel, which is linear in
  the key (`A * key + B`; `A / gemm_efficiency + B`). The samples are not
  calibrated on: they validate. Without the MLIR toolchain only
  `gemm_efficiency` is written, the shipped default's, marked `[assumed]`.

The spec is written once per machine to `host-<fingerprint>.toml` in
`$STRATA_CACHE_DIR` (default `~/.cache/strata`), the fingerprint hashing the
CPU's model, flags, cores and caches, `HOST_SPEC_VERSION` and the cost
model's `COST_MODEL_VERSION` (the calibration solves through it): a second call
reads it (delete the file to measure again). Measure on an idle machine:
the shared figures move with whatever else runs. A CPU without FMA units,
or no C compiler, is a clear error.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from strata.compiler.diagnostics import StrataError
from strata.dialects import device as specs
from strata.dialects.device import DeviceSpec

HOST_SPEC_VERSION = 19
"""Part of the cache's fingerprint: bump it when the probe or the keys it writes change."""

HOST = "host"
"""The device name `--device` resolves by measuring this machine."""

CALIBRATION_SHAPE = 1024
"""The GEMM `gemm_efficiency` is solved on: f32, M = N = K = 1024, one thread."""

PROBE_C = r"""
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* 16 f32 lanes: one zmm register with AVX-512, two ymm with AVX2 (-march=native picks). */
typedef float v16 __attribute__((vector_size(64)));

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static float total(v16 v) { float s = 0; for (int i = 0; i < 16; i++) s += v[i]; return s; }

/* Independent FMA chains in registers: 12 zmm with AVX-512, 6 v16 (12 ymm of AVX2's 16) without;
   either covers two pipes of 4-clock latency. Named locals, not an array: gcc 12 kept an array's b
   on the stack and issued every FMA with a memory operand, 0.7 of the peak on a Granite Rapids guest. */
#ifdef __AVX512F__
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define NCHAINS 12
#else
#define CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define NCHAINS 6
#endif

static double peak(void) {
  v16 b, c;
  for (int i = 0; i < 16; i++) { b[i] = 0.999999f; c[i] = 1e-7f; }
#define DECLARE(j) v16 a##j = b * (float)(j);
#define STEP(j) a##j = a##j * b + c;
#define ADD(j) s += total(a##j);
  CHAINS(DECLARE)
  long n = 50000000; double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (long i = 0; i < n; i++) {
      CHAINS(STEP)
    }
    double g = n * NCHAINS * 32.0 / (now() - t0);
    if (g > best) best = g;
  }
  float s = 0;
  CHAINS(ADD)
  if (s == 12345.f) printf("#");
  return best;
}

static float sum(const float *x, long n) {
  v16 acc[8] = {0};
  for (long i = 0; i < n; i += 128) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) acc[j] += *(const v16 *)(x + i + 16 * j);
  }
  for (int j = 1; j < 8; j++) acc[0] += acc[j];
  return total(acc[0]);
}

/* Bytes/s all `threads` threads read together, each from its own buffer of `bytes` (or, with `store`,
   write into it in whole lines of vector stores). */
static double bandwidth(long bytes, int threads, int store) {
  long n = bytes / 4;
  long reps = (long)(4e8 / bytes) + 1;
  double best = 0;
  volatile float sink = 0;
  v16 one = {1};
#pragma omp parallel num_threads(threads)
  {
    float *x = aligned_alloc(64, n * 4);
    for (long i = 0; i < n; i++) x[i] = 1.0f;
    for (int trial = 0; trial < 5; trial++) {
#pragma omp barrier
      double t0 = now();
      float s = 0;
      for (long r = 0; r < reps; r++) {
        if (store)
          for (long i = 0; i < n; i += 16) *(v16 *)(x + i) = one;
        else
          s += sum(x, n);
        __asm__ volatile("" : : "r"(x) : "memory");
      }
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

/* Seconds one thread takes to read a 4 KiB buffer that lies in DRAM, its lines and page-table entries
   pushed out by summing `flush` bytes first: the shortest of 15 trials, less an empty timing's. */
static double cold_read(long flush) {
  long n = flush / 4;
  float *x = aligned_alloc(64, n * 4), *y = aligned_alloc(4096, 4096);
  for (long i = 0; i < n; i++) x[i] = 1.0f;
  for (int i = 0; i < 1024; i++) y[i] = 1.0f;
  double best = 1, empty = 1;
  volatile float sink = 0;
  for (int trial = 0; trial < 15; trial++) {
    sink += sum(x, n);
    double t0 = now();
    sink += sum(y, 1024);
    double t1 = now(), t2 = now();
    if (t1 - t0 < best) best = t1 - t0;
    if (t2 - t1 < empty) empty = t2 - t1;
  }
  free(x);
  free(y);
  return best - empty;
}

/* The bytes of L3 one thread keeps its data in: where a buffer summed again and again drops from the
   L3's bandwidth to DRAM's (under their geometric mean), buffers growing by 5/4 from `lo` to `hi`;
   the geometric mean of the last size read at the L3's rate and the first read at DRAM's, `hi` if
   none is. A hypervisor may report the whole socket's L3, of which a guest keeps far less. */
static double reach(long lo, long hi, double threshold) {
  long last = lo;
  for (long b = lo; b <= hi; last = b, b = b * 5 / 4 / 4096 * 4096)
    if (bandwidth(b, 1, 0) < threshold) return b == lo ? (double)lo : __builtin_sqrt((double)last * b);
  return (double)hi;
}

/* argv: threads, then the bytes each thread sums for l1, l2, l3 alone, l3 with every thread, dram
   alone, dram with every thread, then the L3's size from sysfs (the most `reach` tries). */
int main(int argc, char **argv) {
  int threads = atoi(argv[1]);
  printf("peak %e\n", peak());
  printf("fork %e\n", fork_join(threads));
  const char *names[4] = {"l1", "l2", "l3", "dram"};
  double rate[4];
  for (int i = 0; i < 4; i++) {
    rate[i] = bandwidth(atol(argv[2 + (i == 3 ? 4 : i)]), 1, 0);
    printf("%s_1 %e\n", names[i], rate[i]);
  }
  printf("reach %e\n", reach(atol(argv[4]), atol(argv[8]), __builtin_sqrt(rate[2] * rate[3])));
  printf("l3_store %e\n", bandwidth(atol(argv[4]), 1, 1));
  printf("dram_store %e\n", bandwidth(atol(argv[6]), 1, 1));
  printf("l3_%d %e\n", threads, bandwidth(atol(argv[5]), threads, 0));
  printf("dram_%d %e\n", threads, bandwidth(atol(argv[7]), threads, 0));
  printf("cold %e\n", cold_read(atol(argv[6])));
  return 0;
}
"""

# --------------------------------------------------------------------------- reading the machine


def cpuinfo() -> dict[str, str]:
    """The first processor's `key: value` lines of /proc/cpuinfo (empty where there is none)."""
    info: dict[str, str] = {}
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return info
    for line in path.read_text().splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


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


STARTING_AFFINITY = frozenset(os.sched_getaffinity(0))
"""The cores this process may run on, as it started: once native code has run an OpenMP region, the
runtime binds the calling thread to one core (`OMP_PROC_BIND`, `compiler/execution/native.py`), and
the process's affinity would then say 1."""


def cores() -> int:
    return len(STARTING_AFFINITY)


def on_starting_cores() -> None:
    """Give a child process the cores this one started with (a `subprocess` `preexec_fn`): it would
    inherit the one core OpenMP bound the calling thread to."""
    os.sched_setaffinity(0, STARTING_AFFINITY)


def vector_unit(info: dict[str, str]) -> list[tuple[str, int, str]]:
    """
    `simd_lanes_f32`, `fma_pipes` (FMAs one core issues per clock, in vectors
    of those lanes) and `vector_registers`, with their sources. The pipes
    cannot be timed apart from the clock: they come from the vendor and
    family. With AVX-512: AMD Zen 4 (family 25) runs a 512-bit FMA as two
    halves on its two 256-bit pipes (1), later AMD and Intel's AVX-512 server
    cores have two 512-bit FMA pipes (2). With AVX2 only: two 256-bit pipes.
    """
    flags = info.get("flags", "").split()
    vendor, family = info.get("vendor_id", ""), info.get("cpu family", "")
    if "avx512f" not in flags:
        return [("simd_lanes_f32", 8, "/proc/cpuinfo: avx2 without avx512f (256-bit ymm registers = 8 f32 lanes)"),
                ("fma_pipes", 2, f"{vendor or 'unknown vendor'}: two 256-bit FMA pipes (Intel since Haswell, AMD"
                 " since Zen 2)"),
                ("vector_registers", 16, "AVX2 in 64-bit mode has 16 vector registers (ymm0-ymm15)")]
    if vendor == "AuthenticAMD" and family == "25":
        pipes, why = 1, ("AMD family 25 (Zen 4): two 256-bit FMA pipes, a 512-bit FMA issues as two halves"
                         " (Chips and Cheese, 'AMD's Zen 4, Part 1', 2022)")
    elif vendor == "AuthenticAMD":
        pipes, why = 2, f"AMD family {family} (Zen 5 or later): two 512-bit FMA pipes"
    else:
        pipes, why = 2, (f"{vendor or 'unknown vendor'}: two 512-bit FMA units on AVX-512 server cores (Intel 64"
                         " and IA-32 Architectures Optimization Reference Manual, Golden Cove / Sunny Cove server)")
    return [("simd_lanes_f32", 16, "/proc/cpuinfo flag avx512f (512-bit zmm registers = 16 f32 lanes)"),
            ("fma_pipes", pipes, why),
            ("vector_registers", 32, "AVX-512 in 64-bit mode has 32 vector registers (zmm0-zmm31)")]


def fingerprint(info: dict[str, str]) -> str:
    """What identifies this machine's CPU for the cache: model, flags, cores, caches, the probe's and the cost
    model's versions."""
    from strata.backends.cost import COST_MODEL_VERSION

    # The calibrated constants are solved through the cost model: a new model measures again.
    text = "|".join([info.get("vendor_id", ""), info.get("cpu family", ""), info.get("model", ""),
                     info.get("model name", ""), info.get("flags", ""), str(cores()),
                     repr(sorted(cache_sizes().items())), str(HOST_SPEC_VERSION), COST_MODEL_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("STRATA_CACHE_DIR") or Path.home() / ".cache" / "strata")


# --------------------------------------------------------------------------- measuring


def probe_buffers(threads: int, caches: dict[str, int]) -> dict[str, int]:
    """
    Bytes each thread of the probe sums to read from a level (`l1`, `l2`, `l3` alone, `l3_all` and
    `dram_all` with every thread, `dram`): half the level, so that the rest of the process's lines
    and the sibling threads' buffers fit beside it and the level below is not read instead (a
    buffer as large as the L3 measured DRAM as the L3), the L3's at most 16 MiB (what one core
    reaches of it: a Zen 4 CCD's 32 MiB; a hypervisor may report the host's whole L3, 480 MiB on
    the Xeon guest) and at least twice the L2; with every thread, each its share; DRAM eight times
    that L3, between 256 MiB and 1 GiB, and with every thread at least 64 MiB each, four times
    its share of the L3. A level sysfs does not give is taken as Zen 4's (32 KiB, 1 MiB, 32 MiB).
    """
    kib, mib = 1 << 10, 1 << 20
    l1, l2, l3 = (caches.get(level) or default for level, default in (("l1d", 32 * kib), ("l2", mib), ("l3", 32 * mib)))
    reach = min(l3, 32 * mib)
    dram = min(1024 * mib, max(256 * mib, 8 * reach))
    return {"l1": l1 // 2, "l2": l2 // 2, "l3": max(2 * l2, reach // 2),
            "l3_all": max(2 * l2, min(reach, l3 // threads) // 2), "dram": dram,
            "dram_all": min(dram, max(64 * mib, 4 * l3 // threads))}


def reach_limit(caches: dict[str, int]) -> int:
    """The largest buffer the probe's `reach` sums: the L3 sysfs gives (32 MiB where it gives none), at most 1 GiB."""
    return min(caches.get("l3") or 32 << 20, 1 << 30)


def size(nbytes: int) -> str:
    """`nbytes` as the spec's notes write a buffer's size: "16 MiB"."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):g} {unit}"
    return f"{nbytes} B"


def run_probe(threads: int) -> dict[str, float]:
    """The probe's figures: `peak` (FLOP/s of one core), `fork` (s), `l1_1` ... `dram_N` (bytes/s)."""
    flags = cpuinfo().get("flags", "").split()
    if "fma" not in flags:
        raise StrataError("error: --device host measures this CPU's FMA units, and it has none (no 'fma' in"
                          " /proc/cpuinfo); name a shipped cpu device (strata targets) or write a spec file"
                          " (--device-file)")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise StrataError("error: --device host builds a probe with the system C compiler: apt-get install gcc")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "probe.c", Path(tmp) / "probe"
        src.write_text(PROBE_C)
        build = subprocess.run([cc, "-O2", "-march=native", "-ffp-contract=fast", "-fopenmp", str(src), "-o", str(exe), "-lm"],
                               capture_output=True, text=True)
        if build.returncode != 0:
            raise StrataError(f"error: building the host probe failed:\n{build.stderr.strip()}")
        buffers = probe_buffers(threads, cache_sizes())
        runs = []
        for _ in range(PROBE_PROCESSES):
            out = subprocess.run([str(exe), str(threads),
                                  *(str(buffers[k]) for k in ("l1", "l2", "l3", "l3_all", "dram", "dram_all")),
                                  str(reach_limit(cache_sizes()))],
                                 capture_output=True, text=True, preexec_fn=on_starting_cores)
            if out.returncode != 0:
                raise StrataError(f"error: the host probe failed (exit {out.returncode}): {out.stderr.strip()[:2000]}")
            runs.append({key: float(value) for key, value in (line.split() for line in out.stdout.splitlines())})
    return best_figures(runs)


PROBE_PROCESSES = 3
"""Processes the probe runs in (`run_probe`), each figure the best of them (`best_figures`): on a
shared machine a process's speed is set when it starts. Found on the Zen 4 guest (2026-12-06): one
probe read the L3 at 45 GB/s per core and DRAM at 19, against 65 and 25 in the probes before and
after, and the cost model then put LLaMA's copies at 1.6 to 1.8 times their measured times."""


def best_figures(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure the best of the probe's `runs`: the highest peak, bandwidths and L3 reach, the shortest fork and join and
    cold read."""
    return {key: (min if key in ("fork", "cold") else max)(run[key] for run in runs) for key in runs[0]}


def measured_keys(figures: dict[str, float], info: dict[str, str], where: str) -> list[tuple[str, object, str]]:
    """`(key, value, how)` of the spec from the probe's figures and the machine's own tables."""
    caches, n = cache_sizes(), cores()
    buffers = probe_buffers(n, caches)
    unit = vector_unit(info)
    lanes, pipes = unit[0][1], unit[1][1]
    clock = figures["peak"] / (lanes * pipes * 2)
    probe = f"{where}, the best of {PROBE_PROCESSES} probe processes"
    return [
        ("cores", n, f"{where} (os.sched_getaffinity)"),
        *unit,
        ("clock_hz", float(f"{clock:.4g}"), f"{probe} (FMA peak / ({lanes} lanes x {pipes} pipes x 2))"),
        ("peak_flops_fp32", float(f"{figures['peak'] * n:.4g}"),
         f"{probe} ({figures['peak'] / 1e9:.1f} GFLOP/s per core, independent chains of 16-float FMAs, x {n} cores)"),
        ("l1d_bytes_per_core", caches.get("l1d", 0), f"{where} (sysfs cache/index0)"),
        ("l2_bytes_per_core", caches.get("l2", 0), f"{where} (sysfs cache/index2)"),
        l3_key(caches.get("l3", 0), figures["reach"], where, probe),
        ("l1_bandwidth_per_core", float(f"{figures['l1_1']:.4g}"), f"{probe} (1 thread summing a buffer of {size(buffers['l1'])})"),
        ("l2_bandwidth_per_core", float(f"{figures['l2_1']:.4g}"), f"{probe} (1 thread summing a buffer of {size(buffers['l2'])})"),
        ("l3_bandwidth_per_core", float(f"{figures['l3_1']:.4g}"), f"{probe} (1 thread summing a buffer of {size(buffers['l3'])})"),
        ("l3_bandwidth", float(f"{figures[f'l3_{n}']:.4g}"),
         f"{probe} ({n} threads summing a buffer of {size(buffers['l3_all'])} each)"),
        ("dram_bandwidth_per_core", float(f"{figures['dram_1']:.4g}"),
         f"{probe} (1 thread summing a buffer of {size(buffers['dram'])})"),
        ("dram_bandwidth", float(f"{figures[f'dram_{n}']:.4g}"), f"{probe} ({n} threads summing a buffer of {size(buffers['dram_all'])} each)"),
        *(store_key(level, figures[f"{level}_1"], figures[f"{level}_store"], buffers[level], probe)
          for level in ("l3", "dram")),
        ("dram_bytes", dram_bytes(), f"{where} (/proc/meminfo MemTotal)"),
        ("dram_latency_s", float(f"{max(0.0, figures['cold'] - 4096 / figures['dram_1']):.3g}"),
         f"{probe} (1 thread reading 4 KiB just after summing a buffer of {size(buffers['dram'])}, which pushes"
         f" its lines and page-table entries out to DRAM: {figures['cold'] * 1e6:.2f} us, less the 4 KiB at"
         f" dram_bandwidth_per_core)"),
        ("parallel_region_latency_s", float(f"{figures['fork']:.3g}"),
         f"{probe} (an empty OpenMP parallel region on {n} threads)"),
    ]


def l3_key(sysfs: int, reach: float, where: str, probe: str) -> tuple[str, int, str]:
    """`l3_bytes`: sysfs' size, or less where one thread's data drops to DRAM's bandwidth sooner (`reach`)."""
    if not sysfs or reach >= sysfs:
        return ("l3_bytes", sysfs, f"{where} (sysfs cache/index3)")
    return ("l3_bytes", int(reach) // 4096 * 4096,
            f"{probe} (1 thread summing buffers growing by 5/4: read at the L3's bandwidth up to about this size,"
            f" at DRAM's beyond it; sysfs cache/index3 gives {size(sysfs)}, the socket's, of which this guest keeps"
            f" less)")


def store_key(level: str, read: float, store: float, nbytes: int, probe: str) -> tuple[str, float, str]:
    """
    `<level>_store_cost`: a byte stored into `level` in bytes of its read bandwidth, the probe's
    read over store bandwidth, between 1 (a store moves its line once) and 2 (write-allocate: the
    line read first, then written back).
    """
    cost = min(2.0, max(1.0, read / store))
    return (f"{level}_store_cost", float(f"{cost:.3g}"),
            f"{probe} (1 thread summing a buffer of {size(nbytes)} at {read / 1e9:.1f} GB/s, storing whole lines"
            f" into it at {store / 1e9:.1f} GB/s)")


def spec_text(keys: list[tuple[str, object, str]], info: dict[str, str]) -> str:
    model = info.get("model name", "unknown CPU")
    lines = [
        "# This machine's CPU, measured on it by strata (compiler/host.py); `--device host`.",
        "# Delete this file to measure again.",
        "",
        f'name = "{HOST}"',
        'target = "cpu"',
        f'description = "this host: {cores()}-core {model} (measured by strata)"',
        "",
    ]
    lines += [f"{key} = {value!r}  # source: {how}" for key, value, how in keys]
    return "\n".join(lines) + "\n"


CALIBRATIONS = (
    # (key, one-op model, the kernel it is solved on: a kind, or a relayout of so many elements,
    #  whether the estimate is A * key + B or A / key + B), in order: each solved with those before
    #  it set (a layer norm's store is a pass at `cycles_per_map_byte`)
    ("cycles_per_map_byte", "model m(x: f32[64, 1024]) -> f32[64, 1024] {\n  return relu(x)\n}\n", "elementwise", False),
    ("cycles_per_map_op", "model m(x: f32[64, 1024]) {\n  param s: f32[]\n  return quantize(x, s, dtype=i8)\n}\n",
     "elementwise", False),
    ("cycles_per_flop", "model m(x: f32[64, 256]) -> f32[64, 256] {\n  param g: f32[256]\n  param b: f32[256]\n"
     "  return layernorm(x, g, b)\n}\n", "row", False),
    ("cycles_per_relayout_element", "model m(x: f32[1, 16, 16, 16], w: f32[64, 16, 3, 3]) {\n"
     "  param b: f32[64]\n  return conv2d(x, w, b, padding=1)\n}\n", 64 * 16 * 3 * 3, False),
    # The integer convolution product's loops (`backends/cpu.py`, `product_cycles`): its vector
    # loop on 16 x 16 pixels, its scalar loop on 4 x 4 (fewer than one interleaved group).
    ("cycles_per_product_vector", "model m(x: i8[1, 48, 16, 16]) {\n  param w: i8[48, 48, 3, 3]\n"
     "  return conv2d(x, w, padding=1, dtype=i32)\n}\n", "conv", False),
    ("cycles_per_product_element", "model m(x: i8[1, 96, 4, 4]) {\n  param w: i8[96, 96, 3, 3]\n"
     "  return conv2d(x, w, padding=1, dtype=i32)\n}\n", "conv", False),
)
"""
The constants of strata's generated code that `calibrate` solves on this host, each on a one-op
model measured alone (as the shipped values were on the Xeon guest, `backends/cpu.py`): clocks
per element operation on a 64 x 256 layer norm (7 an element), clocks per byte of a pass over
tiles on a 64 x 1024 relu (8 bytes an element, computed in its output: `cycles_per_map_byte`),
clocks per elementwise operation on a 64 x 1024 quantize to i8 (5 an element, its divide, rounding
and saturation outlasting its bytes: `cycles_per_map_op`), clocks per element of a relayout
on a conv's OIHW -> OHWI weight (9,216 elements, the conv pinned channels-last; given as an input, so relaid on every call, where a
param's relayout runs once, at load), clocks per vector and per scalar multiply-add of an integer
convolution's product on int8 3 x 3 convs of 48 channels at 16 x 16 pixels and of 96 at 4 x 4 (its
vector and scalar loops). The samples are never calibrated on. Two are
not: the call latency (a tiny kernel alone, hot operands, takes 17 to 38 ns here, in a model 17 to
45 ns, the clock's own cost taken out of both) and the implicit-GEMM convolution's share of the peak (solved on a
3x3 32-channel conv at 8 x 8 it was 0.64 here, which took ResNet-18's deeper convs within 50% and
its stem and 16-channel convs, which dominate it, to half their time: its total from 1.14 to
0.74). Solving either alone would move the models' estimates away.
"""


def _kernel(entries, pick) -> dict:
    """The kernel `pick` names: the first of a kind, or the relayout that moves `pick` f32 elements."""
    for entry in entries:
        if isinstance(pick, str) and entry["kind"] == pick:
            return entry
        if isinstance(pick, int) and entry["kind"] == "relayout" and sum(entry["bytes"].values()) == 2 * 4 * pick:
            return entry
    raise StrataError(f"error: host calibration: no kernel {pick!r} in its model (a bug: report it)")


def _calibration_model(text: str, spec: DeviceSpec, pick):
    """A one-op model on `spec`, lowered to loops: (the graph module, the loop module, the `pick` kernel's estimate)."""
    from strata.compiler import measure
    from strata.compiler.driver import attach_device
    from strata.compiler.frontend import compile_source

    module = compile_source(text, "<host calibration>")
    attach_device(module, spec, "cpu")
    # Channels-last: the cpu's default is channels-first (`assign_layout.CHANNELS_LAST_TARGETS`), where a
    # conv's OIHW weight needs no relayout; pinned, it is relaid into OHWI, the copy calibrated on.
    loops = measure.to_loops(module, "cpu", {"channels_last": "true"})
    entry = _kernel([k.as_json() for k in measure.estimate_loops(loops, "cpu").kernels], pick)
    return module, loops, entry


def _estimate(text: str, spec: DeviceSpec, pick) -> float:
    return _calibration_model(text, spec, pick)[2]["time_s"]


PROCESSES = 3
"""Fresh processes each calibration is timed in (`_timed_apart`), the fastest kept."""


def _timed(text: str, spec: DeviceSpec, pick, repeat: int) -> tuple[float, float]:
    """(estimate, measured) of the `pick` kernel of a one-op model on this host: the fastest of
    `measure.ROUNDS` rounds (another job on a shared core slows whole rounds, never speeds one up)."""
    from strata.backends.cost import model_function
    from strata.compiler import measure
    from strata.compiler.execution import weights

    module, loops, entry = _calibration_model(text, spec, pick)
    bound = weights.bind_values(model_function(module), 0)
    build = measure.build_instrumented(loops, "cpu", threads=1)
    # The report's `relayout_I` is the I-th copy between kernels, timed in slot `copy#I`.
    slot = entry["name"] if entry["name"] in build.slots else f"copy#{entry['name'].rsplit('_', 1)[1]}"
    call, _ = build.model.prepare(bound.inputs, bound.params)
    return entry["time_s"], measure.fastest_round(build, call, repeat)[slot]


def _timed_apart(text: str, spec: DeviceSpec, pick, repeat: int) -> tuple[float, float]:
    """
    `_timed` in each of `PROCESSES` fresh interpreters, the fastest: a relayout's speed is set per
    process (the weight relayout ran 3.3 us in some processes and 5.0 to 6.2 in others on the Zen 4
    guest, every round of a process alike, whatever its operands' offsets in their pages), so one
    process decides nothing.
    """
    import pickle

    from strata.compiler.measure import in_fresh_interpreter

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        job, result = Path(tmp) / "job.pickle", Path(tmp) / "result.pickle"
        job.write_bytes(pickle.dumps((text, spec, pick, repeat)))
        child = ("import pickle, sys; from pathlib import Path; from strata.compiler.host import _timed;"
                 " Path(sys.argv[2]).write_bytes(pickle.dumps(_timed(*pickle.loads(Path(sys.argv[1]).read_bytes()))))")
        for _ in range(PROCESSES):
            in_fresh_interpreter(child, [str(job), str(result)], "timing a calibration")
            runs.append(pickle.loads(result.read_bytes()))
    return runs[0][0], min(measured for _, measured in runs)


GEMM_CALIBRATION = ("gemm_efficiency", f"model gemm(a: f32[{CALIBRATION_SHAPE}, {CALIBRATION_SHAPE}]) ->"
                    f" f32[{CALIBRATION_SHAPE}, {CALIBRATION_SHAPE}] {{\n  param b: f32[{CALIBRATION_SHAPE},"
                    f" {CALIBRATION_SHAPE}]\n  return a @ b\n}}\n", "gemm", True)
"""`gemm_efficiency` on strata's own f32 1024^3 GEMM (1 thread, its default tiles), solved after `CALIBRATIONS`."""

UNPACKED_GEMM_CALIBRATION = (
    "unpacked_gemm_efficiency", "model m(o: f32[8, 96, 32]) {\n  param w: f32[256, 256]\n"
    "  return reshape(transpose(o, perm=[1, 0, 2]), [96, 256]) @ w\n}\n", "gemm", True)
"""`unpacked_gemm_efficiency` (the micro-kernel's ceiling where `a` is computed in the kernel, so `b`
is read in place, unpacked: `backends/cpu.py`, `UNPACKED_GEMM_EFFICIENCY`) on an attention output
projection's shape of no sample (8 heads of 32, 96 rows), solved last."""


def calibrate_key(spec: DeviceSpec, key: str, text: str, pick, inverse: bool, repeat: int = 20) -> tuple[float, str]:
    """
    `key` solved on a one-op model timed here: the kernel's estimate is `A * key + B` in it (a cost
    per element), or `A / key + B` (`inverse`: a share of the peak, kept in (0, 1]); two estimates
    give A and B, the run gives the key.
    """
    from strata.compiler.measure import ROUNDS

    low, high = (0.5, 1.0) if inverse else (1.0, 2.0)
    # Every key in fresh processes: on the Granite Rapids guest a whole process ran 1.5 to 2 times
    # slower at times (a layer norm's calibration gave cycles_per_flop 0.186 once, 0.097 to 0.101
    # in the probes before), as a relayout's speed was set per process on the Zen 4 guest.
    at_high, measured = _timed_apart(text, specs.with_overrides(spec, {key: high}), pick, repeat)
    at_low = _estimate(text, specs.with_overrides(spec, {key: low}), pick)
    if inverse:
        # A / 0.5 + B and A / 1 + B.
        a, b = at_low - at_high, 2 * at_high - at_low
        value = min(1.0, max(0.01, a / max(measured - b, 1e-12)))
        form = f"{a * 1e6:.4g} us / {key} + {b * 1e6:.4g} us"
    else:
        a, b = at_high - at_low, 2 * at_low - at_high
        value = max(0.0, (measured - b) / a) if a > 0 else 0.0
        form = f"{a * 1e6:.4g} us x {key} + {b * 1e6:.4g} us"
    what = pick if isinstance(pick, str) else f"relayout of {pick} elements"
    how = (f"[calibrated] by compiler/host.py: the {what} kernel of `{text.splitlines()[-2].strip()}` measured"
           f" {measured * 1e6:.2f} us (the fastest of {ROUNDS} rounds of {repeat} runs"
           f", in each of {PROCESSES} processes) on this host, 1 thread;"
           f" the estimate is {form}")
    return float(f"{value:.3g}"), how


def calibrate(spec: DeviceSpec) -> list[tuple[str, float, str]]:
    """
    The generated code's constants solved on this host (`CALIBRATIONS`, then `GEMM_CALIBRATION` and
    `UNPACKED_GEMM_CALIBRATION`),
    or, without the MLIR toolchain, `gemm_efficiency` as the shipped default device has it.
    """
    from strata.compiler.execution import native

    if not native.tools_available():
        shipped = specs.default_device("cpu")
        return [("gemm_efficiency", shipped["gemm_efficiency"],
                 f"[assumed] = {shipped.name}'s (no MLIR toolchain here to time strata's code on this host)")]
    keys = []
    for key, text, pick, inverse in (*CALIBRATIONS, GEMM_CALIBRATION, UNPACKED_GEMM_CALIBRATION):
        value, how = calibrate_key(spec, key, text, pick, inverse, repeat=10 if key == "gemm_efficiency" else 20)
        keys.append((key, value, how))
        spec = specs.with_overrides(spec, {key: value})
    return keys


def measure_host(info: dict[str, str]) -> str:
    """The spec file's text for this machine: the probe's figures and the generated code's calibrated constants."""
    where = f"measured on this host by strata (compiler/host.py), {datetime.date.today().isoformat()}"
    keys = measured_keys(run_probe(cores()), info, where)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{HOST}.toml"
        path.write_text(spec_text(keys, info))
        keys += calibrate(specs.load_device_file(path))
    return spec_text(keys, info)


def host_device() -> DeviceSpec:
    """This machine's cpu spec: read from the cache, else measured (see the module docstring) and cached."""
    info = cpuinfo()
    path = cache_dir() / f"host-{fingerprint(info)}.toml"
    if not path.exists():
        text = measure_host(info)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(text)
        partial.replace(path)
    try:
        return specs.load_device_file(path)
    except specs.SpecError as err:
        raise StrataError(f"error: {err} (delete {path} to measure this host again)") from None
