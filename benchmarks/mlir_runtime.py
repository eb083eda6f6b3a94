"""
Run time of the MLIR-compiled models against the NumPy reference.

Usage: .venv/bin/python benchmarks/mlir_runtime.py [--samples mlp,gpt2] [--target cpu]
       [--repeat 5] [--tiles MODEL] [--no-tiles] [--opt-level 2] [--threads 1] [--target-tiles]

Each sample at a moderate size is lowered to the loop stage for `--target`
(default cpu, whose tiles are this machine's; another target's GEMMs get
this CPU's tiles, `native.HOST_GEMM_TILE`, unless `--target-tiles`), exported to upstream MLIR (`export-mlir`), compiled by
mlir-opt-22 / opt-22 / llc-22 into a shared library (parallel loops on
`--threads`) and called through its C interface. The first
table gives the best of `--repeat` calls of the compiled model and of
`reference.run_module` (NumPy, whose matmuls and convolutions are BLAS
calls; both on one thread), plus the one-off compile time and the largest relative error
against the reference. The second table recompiles one model with several
`tile{sizes=...}` choices (the same pass option the autotuner varies) to
show the effect of the tile sizes on the real run time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# One thread for NumPy's BLAS too: the compiled model runs on one core.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from strata.compiler.execution import native, reference  # noqa: E402
from strata.compiler.driver import Stage, detect_stage, passes_between, run_passes  # noqa: E402
from strata.compiler.frontend import load_model  # noqa: E402
from strata.compiler.ir import make_context  # noqa: E402
from strata.compiler.schedule import apply_schedule  # noqa: E402
from tests.support import sample_values  # noqa: E402

MODERATE = {
    "mlp": {"B": 64},
    "resnet18": {"HW": 64, "W0": 16, "NC": 100},
    "gpt2": {"S": 64, "D": 256, "H": 4, "L": 2},
    "llama": {"S": 64, "D": 256, "H": 4, "KVH": 2, "F": 512, "V": 2048},
    "vit": {"HW": 64, "P": 8, "D": 192, "H": 4, "L": 2, "NC": 100},
}
"""Sizes at which the reference takes milliseconds, not minutes."""

TILE_CHOICES = ["default", "8,8,8", "16,16,16", "32,32,32", "64,64,64", "128,128,64"]


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def rel_error(want, got) -> float:
    worst = 0.0
    for a, b in zip(want, got, strict=True):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        scale = max(np.nanmax(np.abs(a64)), 1e-30)
        worst = max(worst, float(np.nanmax(np.abs(a64 - b64)) / scale))
    return worst


def compile_with(name: str, target: str, sizes: str | None, threads: int = 1, host_tiles: bool = True):
    module = load_model(f"samples/{name}.model", MODERATE[name])
    passes = passes_between(target, detect_stage(module), Stage.MLIR)
    if sizes is not None:
        passes = apply_schedule(passes, {"sizes": sizes})
    elif host_tiles:
        passes.insert([p.name for p in passes].index("tile"), native.HostGemmTilesPass())
    start = time.perf_counter()
    run_passes(make_context(), module, passes, _quiet())
    compiled = native.compile_exported(module, opt_level=native.OPT_LEVEL, threads=threads)
    return compiled, time.perf_counter() - start


def _quiet():
    from strata.compiler.driver import DumpOptions

    return DumpOptions()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--samples", default=",".join(MODERATE))
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tiles", default="mlp", help="model whose tile sizes are varied (default mlp)")
    parser.add_argument("--no-tiles", action="store_true", help="skip the tile-size table")
    parser.add_argument("--opt-level", type=int, default=native.OPT_LEVEL, help="LLVM -O level (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads of the compiled code (default 1)")
    parser.add_argument("--target-tiles", action="store_true", help="keep the target's GEMM tiles (not this CPU's)")
    args = parser.parse_args()
    native.OPT_LEVEL = args.opt_level
    if not native.tools_available():
        sys.exit("the MLIR tools are missing: apt-get install mlir-22-tools llvm-22")

    # The cpu target's own tiles are this machine's; another target's GEMMs take this CPU's unless --target-tiles.
    host_tiles = not args.target_tiles and args.target != "cpu"
    tiling = f"target {args.target} tiling" + (", host GEMM tiles" if host_tiles else "")
    print(f"MLIR-compiled ({tiling}, {args.threads} thread(s)) vs NumPy reference (1 thread), best of {args.repeat}")
    header = f"{'model':<9}{'sizes':<44}{'numpy ms':>10}{'mlir ms':>10}{'speedup':>9}{'compile s':>11}{'rel err':>10}"
    print(header)
    print("-" * len(header))
    for name in args.samples.split(","):
        module = load_model(f"samples/{name}.model", MODERATE[name])
        inputs, params = sample_values(module)
        want = reference.run_module(module, inputs, params)
        numpy_s = best_of(lambda: reference.run_module(module, inputs, params), args.repeat)
        compiled, compile_s = compile_with(name, args.target, None, args.threads, host_tiles)
        got = compiled.run(inputs, params)
        mlir_s = best_of(lambda: compiled.run(inputs, params), args.repeat)
        sizes = " ".join(f"{k}={v}" for k, v in MODERATE[name].items())
        print(f"{name:<9}{sizes:<44}{numpy_s * 1e3:>10.2f}{mlir_s * 1e3:>10.2f}{numpy_s / mlir_s:>8.2f}x"
              f"{compile_s:>11.2f}{rel_error(want, got):>10.1e}")

    if args.no_tiles:
        return
    name = args.tiles
    module = load_model(f"samples/{name}.model", MODERATE[name])
    inputs, params = sample_values(module)
    want = reference.run_module(module, inputs, params)
    print()
    print(f"effect of tile{{sizes=...}} on {name} ({args.target}), best of {args.repeat}")
    header = f"{'tile sizes':<14}{'mlir ms':>10}{'compile s':>11}{'rel err':>10}"
    print(header)
    print("-" * len(header))
    for choice in TILE_CHOICES:
        compiled, compile_s = compile_with(name, args.target, None if choice == "default" else choice, args.threads,
                                           host_tiles)
        got = compiled.run(inputs, params)
        mlir_s = best_of(lambda: compiled.run(inputs, params), args.repeat)
        print(f"{choice:<14}{mlir_s * 1e3:>10.2f}{compile_s:>11.2f}{rel_error(want, got):>10.1e}")


if __name__ == "__main__":
    main()
