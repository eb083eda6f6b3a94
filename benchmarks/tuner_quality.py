"""
Autotuner quality: on a suite of kernels per target, the best cost the
default strategy finds with 5% and 10% of the space's evaluations, against
the exhaustive optimum and against random search at the same budget
(median over seeds); and how many evaluations each strategy needs to come
within 2% of the optimum (median over seeds; `-` when the 10% budget ran
out first), which separates the strategies where both reach the optimum.

Usage: .venv/bin/python benchmarks/tuner_quality.py [--targets gpu,tpu,lpu] [--seeds 11]

Every point of every kernel's space is costed once (the exhaustive ground
truth); the strategies then search a lookup of those costs, so the figures
measure the search, not the cost model's speed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from strata.dialects.device import default_device  # noqa: E402
from strata.backends.tuner.search import tune  # noqa: E402
from strata.backends.tuner.space import Space  # noqa: E402
from strata.compiler.driver import Stage, compile_module  # noqa: E402
from strata.compiler.frontend import load_model  # noqa: E402
from strata.compiler.tuning.spaces import KernelEvaluator, kernel_points, standalone  # noqa: E402
from strata.dialects.graph.kernel import KernelOp  # noqa: E402

SUITE = {
    "gemm 1024x1024x1024": "model m(a: bf16[1024, 1024]) -> bf16[1024, 1024] {\n  param b: bf16[1024, 1024]\n  return a @ b\n}\n",
    "gemm 4096x768x3072": "model m(a: bf16[4096, 768]) -> bf16[4096, 3072] {\n  param b: bf16[768, 3072]\n  return a @ b\n}\n",
    "gemm 128x4096x4096": "model m(a: bf16[128, 4096]) -> bf16[128, 4096] {\n  param b: bf16[4096, 4096]\n  return a @ b\n}\n",
    "conv 56x56x64 3x3": (
        "model m(x: f32[1, 64, 56, 56]) -> f32[1, 64, 56, 56] {\n  param w: f32[64, 64, 3, 3]\n"
        "  return relu(conv2d(x, w, padding=1))\n}\n"
    ),
    "attention 8x1024x64": (
        "model m(q: bf16[1, 8, 1024, 64], k: bf16[1, 8, 1024, 64], v: bf16[1, 8, 1024, 64]) -> bf16[1, 8, 1024, 64] {\n"
        "  return attention(q, k, v, causal=true)\n}\n"
    ),
    "mlp 512x768 gelu": (
        "model m(x: f32[512, 768]) -> f32[512, 3072] {\n  param w: f32[768, 3072]\n  param b: f32[3072]\n"
        "  return gelu(x @ w + b)\n}\n"
    ),
}


def kernel_of(text: str, target: str) -> KernelOp:
    with tempfile.NamedTemporaryFile("w", suffix=".model", delete=False) as f:
        f.write(text)
    module = load_model(f.name, {})
    compile_module(module, target, Stage.LAYOUT)
    kernels = [op for op in module.walk() if isinstance(op, KernelOp)]
    device = default_device(target)
    return max(kernels, key=lambda k: len(kernel_points(k, device)))


def search(space: Space, costs: list[float], strategy: str, budget: int, seed: int) -> tuple[float, float]:
    """The best cost found, and the evaluations spent to come within 2% of the optimum (inf: never)."""
    lookup = {i: c for i, c in enumerate(costs)}

    def evaluate(points):
        return [lookup[space.index(p)] for p in points]

    result = tune(space, evaluate, strategy, budget=budget, seed=seed, default_index=0)
    target = 1.02 * min(costs)
    reached = next((n for n, trial in enumerate(result.history, 1) if trial.cost <= target), math.inf)
    return result.best_cost, reached


def _evals(n: float) -> str:
    return "-" if math.isinf(n) else f"{n:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--targets", default="gpu,tpu,lpu")
    parser.add_argument("--seeds", type=int, default=11)
    args = parser.parse_args()
    print(f"{'target':<6} {'kernel':<22} {'space':>6} {'optimum':>10}  "
          f"{'evo@5%':>8} {'rnd@5%':>8} {'evo@10%':>8} {'rnd@10%':>8}  {'evo->2%':>7} {'rnd->2%':>7}")
    worst, wins, ties, losses = 0.0, 0, 0, 0
    for target in args.targets.split(","):
        spec = default_device(target)
        for name, text in SUITE.items():
            kernel = kernel_of(text, target)
            space = Space(kernel_points(kernel, spec))
            evaluator = KernelEvaluator(standalone(kernel, spec), spec)
            start = time.perf_counter()
            costs = [evaluator(p) for p in space.points]
            optimum = min(costs)
            gaps, reach = {}, {}
            for share in (0.05, 0.10):
                budget = max(1, round(share * space.size))
                for strategy in ("evolutionary", "random"):
                    runs = [search(space, costs, strategy, budget, seed) for seed in range(args.seeds)]
                    gaps[strategy, share] = statistics.median(found / optimum - 1 for found, _ in runs)
                    reach[strategy] = statistics.median(n for _, n in runs)
            worst = max(worst, gaps["evolutionary", 0.10])
            # Better: a smaller median gap at either budget, else fewer evaluations to 2%.
            evo = (gaps["evolutionary", 0.05], gaps["evolutionary", 0.10], reach["evolutionary"])
            rnd = (gaps["random", 0.05], gaps["random", 0.10], reach["random"])
            better = all(e <= r for e, r in zip(evo, rnd)) and evo != rnd
            worse = all(e >= r for e, r in zip(evo, rnd)) and evo != rnd
            wins, ties, losses = wins + better, ties + (not better and not worse), losses + worse
            print(
                f"{target:<6} {name:<22} {space.size:>6} {optimum * 1e6:>8.2f}us  "
                f"{gaps['evolutionary', 0.05]:>8.1%} {gaps['random', 0.05]:>8.1%} "
                f"{gaps['evolutionary', 0.10]:>8.1%} {gaps['random', 0.10]:>8.1%}  "
                f"{_evals(reach['evolutionary']):>7} {_evals(reach['random']):>7}"
                f"   ({time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    print(f"worst median gap of the default strategy at 10%: {worst:.2%}")
    print(f"default vs random (median over {args.seeds} seeds): better on {wins} kernels, tied on {ties},"
          f" worse on {losses}")

if __name__ == "__main__":
    main()
