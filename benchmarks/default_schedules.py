"""
Default schedules against tuned ones: for every sample and target, the
estimated time of the default pipeline (`strata compile`) and of the
autotuned schedule (`strata tune`, default budget and strategy, seed 0), and
their ratio. The target the issue set: every ratio within 1.5x, so that
`--target all` compares machines on schedules of like quality.

Usage: .venv/bin/python benchmarks/default_schedules.py [--targets gpu,tpu,lpu,cpu] [--samples mlp,gpt2,...]

Each tune runs in a fresh process with a fresh tuning database (about 20 s
per sample and target on one core).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATA = [sys.executable, "-m", "strata.compiler.cli"]
LIMIT = 1.5


def tune(sample: Path, target: str, db: Path) -> tuple[float, float]:
    """(default, tuned) estimated seconds of `sample` on `target`."""
    out = subprocess.run(
        [*STRATA, "tune", str(sample), "--target", target, "--db", str(db), "--report", "json"],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    total = json.loads(out)["total"]
    return total["default_time_s"], total["tuned_time_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="gpu,tpu,lpu,cpu")
    parser.add_argument("--samples", default=",".join(sorted(p.stem for p in (ROOT / "samples").glob("*.model"))))
    args = parser.parse_args()
    worst = 0.0
    print(f"{'sample':10} {'target':6} {'default':>12} {'tuned':>12} {'default/tuned':>14}")
    with tempfile.TemporaryDirectory() as scratch:
        for target in args.targets.split(","):
            for name in args.samples.split(","):
                default, tuned = tune(ROOT / "samples" / f"{name}.model", target, Path(scratch) / f"{name}-{target}.jsonl")
                ratio = default / tuned
                worst = max(worst, ratio)
                flag = "" if ratio <= LIMIT else f"  over {LIMIT}x"
                print(f"{name:10} {target:6} {default * 1e3:10.4f}ms {tuned * 1e3:10.4f}ms {ratio:13.2f}x{flag}", flush=True)
    print(f"worst default/tuned: {worst:.2f}x (target: within {LIMIT}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
