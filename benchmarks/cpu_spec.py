"""
Measure this host's CPU as a `cpu` device spec and print it as TOML.

The measurement is strata's own (`compiler/host.py`, what `--device host`
resolves to): one core's f32 FMA peak (12 independent chains of 16-lane
FMAs, best of 5), the read bandwidth of L1, L2, L3 and DRAM with one thread
and with every core, the fork and join of an empty OpenMP region, cache sizes
from sysfs, `fma_pipes` from the vendor and family, and `gemm_efficiency`
calibrated on strata's own f32 1024^3 GEMM timed here (the MLIR toolchain
needed; without it the shipped spec's value, marked `[assumed]`). The
printed file is what `--device host` caches, measured afresh; save it under
`backends/specs/` (with a new `name`) to ship a spec of this machine.

Usage: `python benchmarks/cpu_spec.py`. Run it on an idle machine: the shared
figures move with whatever else runs.
"""

from __future__ import annotations

import sys

from strata.compiler.host import cpuinfo, measure_host


def main() -> None:
    sys.stdout.write(measure_host(cpuinfo()))


if __name__ == "__main__":
    main()
