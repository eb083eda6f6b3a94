"""
`strata sweep` wall time: one 200-point grid (a conv layer on the TPU, 5
array heights x 4 array counts x 5 batch sizes x 2 dataflows) evaluated
serially, with `--jobs 2`, and on a local Ray instance (when Ray is
installed: `pip install 'strata[distributed]'`), each into a fresh output;
then a rerun on the serial output, which evaluates nothing. Checks that the
three executors wrote the same numbers.

Usage: .venv/bin/python benchmarks/sweep.py [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STRATA = str(Path(sys.executable).parent / "strata")
MODEL = """
let N = 1
model conv(x: bf16[N, 64, 28, 28]) -> bf16[N, 64, 28, 28] {
  param w: bf16[64, 64, 3, 3]
  return relu(conv2d(x, w, padding=1))
}
"""
GRID = ["--target", "tpu", "--vary", "array_rows=16,32,64,128,256", "--vary", "num_arrays=1,2,4,8",
        "-D", "N=1,2,4,8,16", "--schedule", "dataflow=ws,os"]


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([STRATA, "sweep", *argv, "--report", "none"], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "command"} for r in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--jobs", type=int, default=2)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "conv.model"
        model.write_text(MODEL)
        out = {name: Path(tmp) / f"{name}.csv" for name in ("serial", "jobs", "ray")}
        print(f"{'executor':<22}{'points':>8}{'wall s':>10}{'ms/point':>10}")
        runs = [("serial", []), ("jobs", ["--jobs", str(options.jobs)])]
        try:
            import ray  # noqa: F401

            runs.append(("ray", ["--executor", "ray"]))
        except ImportError:
            print("(Ray not installed: pip install 'strata[distributed]')")
        for name, extra in runs:
            seconds = timed([str(model), *GRID, "-o", str(out[name]), *extra])
            points = len(rows(out[name]))
            label = {"serial": "local, 1 job", "jobs": f"local, {options.jobs} jobs", "ray": "ray (local instance)"}[name]
            print(f"{label:<22}{points:>8}{seconds:>10.1f}{1000 * seconds / points:>10.1f}")
        rerun = timed([str(model), *GRID, "-o", str(out["serial"])])
        print(f"{'rerun (all cached)':<22}{len(rows(out['serial'])):>8}{rerun:>10.1f}")
        same = all(rows(out[name]) == rows(out["serial"]) for name, _ in runs)
        print(f"same rows on every executor: {same}")


if __name__ == "__main__":
    main()
