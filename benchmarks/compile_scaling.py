"""
Compile time and peak memory of GPT-2 against depth, per target.

Usage: .venv/bin/python benchmarks/compile_scaling.py [--layers 12,24,48] [--emit hardware]

Each row compiles `samples/gpt2.model -D L=N` in a fresh process (so peak RSS
is that compile's own) to the `--emit` stage and prints the frontend time, the
pass time and the peak resident memory. Time should grow linearly with L.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
from strata.compiler.driver import Stage, compile_module
from strata.compiler.frontend import load_model
layers, target, emit = int(sys.argv[1]), sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
module = load_model("samples/gpt2.model", {"L": layers})
t1 = time.perf_counter()
compile_module(module, target, Stage(emit))
t2 = time.perf_counter()
ops = sum(1 for _ in module.walk())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"frontend_s": t1 - t0, "passes_s": t2 - t1, "ops": ops, "peak_mb": peak}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--layers", default="12,24,48")
    parser.add_argument("--targets", default="gpu,tpu,lpu")
    parser.add_argument("--emit", default="hardware")
    args = parser.parse_args()
    print(f"{'target':<7}{'L':>4}{'ops':>8}{'frontend s':>12}{'passes s':>10}{'total s':>9}{'s/layer':>9}{'peak MB':>9}")
    for target in args.targets.split(","):
        for layers in (int(x) for x in args.layers.split(",")):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(layers), target, args.emit],
                capture_output=True, text=True, check=True,
            )
            r = json.loads(out.stdout)
            total = r["frontend_s"] + r["passes_s"]
            print(
                f"{target:<7}{layers:>4}{r['ops']:>8}{r['frontend_s']:>12.2f}{r['passes_s']:>10.2f}"
                f"{total:>9.2f}{total / layers:>9.3f}{r['peak_mb']:>9.0f}"
            )


if __name__ == "__main__":
    main()
