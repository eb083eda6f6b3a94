"""
Closed-form cycle and access counts of one systolic array, as SCALE-Sim v3 computes them.

SCALE-Sim v3.0.0 (`scalesim/compute/systolic_compute_{os,ws,is}.py`) builds, for
every fold of a GEMM onto an R x C array, a demand matrix with one row per cycle;
its stall-free "Total Cycles" is the index of the last row, i.e. the row count
minus one (`double_buffered_scratchpad_mem.service_memory_requests`). The
functions here return the row *count* (cycles elapsed), so
`compute_cycles(...) == scalesim_total_cycles + 1` for a run without stalls.

The GEMM is `ifmap (M x K) @ filter (K x N) = ofmap (M x N)`; a convolution is
the GEMM `M = batch*OH*OW` (ofmap pixels), `K = KH*KW*C` (window), `N = filters`
(`conv_as_gemm`). Each dataflow maps two GEMM dimensions onto the array
(spatial rows `Sr`, spatial columns `Sc`) and streams the third in time (`T`):

| dataflow | Sr | Sc | T | cycles per fold |
|---|---|---|---|---|
| `os` (output stationary) | M | N | K | `R + C + T - 2` |
| `ws` (weight stationary) | K | N | M | `2R + C + T - 2` |
| `is` (input stationary)  | K | M | N | `2R + C + T - 2` |

and `cycles = ceil(Sr/R) * ceil(Sc/C) * cycles_per_fold`: folds never overlap
(SCALE-Sim drains each fold's outputs before the next starts), and a partial
fold costs as much as a full one (null requests pad it to the array size).
In `ws`/`is` the extra `R` is the stationary operand being shifted into the
array before the fold streams; `R + C - 2` is the fill/drain skew.

Assumptions: dense operands (no sparsity), SCALE-Sim's `InterfaceBandwidth:
CALC` mode (no memory stalls). `schedule_gemm` spreads the folds of many
GEMMs over several arrays (a TPU core's MXUs); everything else is one array.

This is the arrays' arithmetic, shared by the pass that picks a kernel's
dataflow (`passes/assign_dataflow.py`) and the TPU cost model
(`backends/systolic.py`), so the decision and the estimate count alike.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from strata.dialects.vocabulary import DATAFLOWS

Dataflow = Literal["os", "ws", "is"]


@dataclass(frozen=True)
class SystolicMapping:
    """
    How one GEMM folds onto one R x C array under one dataflow.
    """

    dataflow: Dataflow
    rows: int
    """Array rows R (processing elements along a column)."""
    cols: int
    """Array columns C."""
    sr: int
    """GEMM extent mapped along the array rows."""
    sc: int
    """GEMM extent mapped along the array columns."""
    t: int
    """GEMM extent streamed in time (cycles of useful input per fold)."""

    @property
    def row_folds(self) -> int:
        return math.ceil(self.sr / self.rows)

    @property
    def col_folds(self) -> int:
        return math.ceil(self.sc / self.cols)

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def cycles_per_fold(self) -> int:
        """
        Demand-matrix rows of one fold (SCALE-Sim's cycles, fill and drain included).
        """
        r, c, t = self.rows, self.cols, self.t
        if self.dataflow == "os":
            return r + c + t - 2
        return 2 * r + c + t - 2

    @property
    def compute_cycles(self) -> int:
        """
        Stall-free cycles of the whole GEMM: folds x cycles per fold.
        """
        return self.folds * self.cycles_per_fold


@dataclass(frozen=True)
class SramAccesses:
    """
    SRAM accesses of one GEMM, in words, as SCALE-Sim counts them (not unique addresses).
    """

    ifmap_reads: int
    filter_reads: int
    ofmap_writes: int


@dataclass(frozen=True)
class SystolicEstimate:
    """
    Everything `systolic_gemm` computes for one GEMM on one array.
    """

    mapping: SystolicMapping
    cycles: int
    """Stall-free compute cycles (a count; SCALE-Sim prints `cycles - 1`)."""
    macs: int
    mapping_efficiency: float
    """Mean over folds of the fraction of PEs mapped (0..1)."""
    compute_utilisation: float
    """SCALE-Sim's "Compute Util" (0..1), with its per-fold denominator."""
    utilisation: float
    """MACs / (R * C * cycles) (0..1)."""
    sram: SramAccesses


def _check_positive(**dims: int) -> None:
    for name, value in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def systolic_mapping(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> SystolicMapping:
    """
    Map the GEMM `(M x K) @ (K x N)` onto an R x C array (SCALE-Sim `set_params`).
    """
    _check_positive(m=m, n=n, k=k, rows=rows, cols=cols)
    if dataflow == "os":
        sr, sc, t = m, n, k
    elif dataflow == "ws":
        sr, sc, t = k, n, m
    elif dataflow == "is":
        sr, sc, t = k, m, n
    else:
        raise ValueError(f"unknown dataflow {dataflow!r}; expected one of {', '.join(DATAFLOWS)}")
    return SystolicMapping(dataflow, rows, cols, sr, sc, t)  # type: ignore[arg-type]


def fold_counts(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> tuple[int, int]:
    """
    `(row_folds, col_folds)` = `(ceil(Sr / R), ceil(Sc / C))`.
    """
    mp = systolic_mapping(m, n, k, rows, cols, dataflow)
    return mp.row_folds, mp.col_folds


def compute_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """
    Stall-free compute cycles of the GEMM on one R x C array.

    `os`: `ceil(M/R) * ceil(N/C) * (R + C + K - 2)`;
    `ws`: `ceil(K/R) * ceil(N/C) * (2R + C + M - 2)`;
    `is`: `ceil(K/R) * ceil(M/C) * (2R + C + N - 2)`.
    Equals SCALE-Sim v3's reported "Total Cycles" + 1 (it prints the last cycle's index).
    """
    return systolic_mapping(m, n, k, rows, cols, dataflow).compute_cycles


def mapping_efficiency(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> float:
    """
    Mean over folds of `PEs mapped / (R*C)` = `Sr*Sc / (folds * R * C)`.
    """
    mp = systolic_mapping(m, n, k, rows, cols, dataflow)
    return mp.sr * mp.sc / (mp.folds * rows * cols)


def compute_utilisation(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> float:
    """
    SCALE-Sim's "Compute Util": mean over folds of `PEs mapped * T / (R*C*fold_cycles)`.

    SCALE-Sim measures `fold_cycles` on one operand's demand matrix before
    its skew: `R + C + T - 2` for `os` (the true fold length) but
    `2R + 2C + T - 3` for `ws` and `is` (one skew of `C - 1` more than the
    fold really takes). This reproduces the printed figure; `utilisation` in
    `systolic_gemm` is the plain MACs / (R*C*cycles).
    """
    mp = systolic_mapping(m, n, k, rows, cols, dataflow)
    fold_cycles = mp.cycles_per_fold if dataflow == "os" else mp.cycles_per_fold + cols - 1
    return mp.sr * mp.sc * mp.t / (rows * cols * fold_cycles * mp.folds)


def sram_accesses(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> SramAccesses:
    """
    SRAM reads/writes (words) that SCALE-Sim counts in its demand matrices.

    The stationary operand is read once; a streamed operand is re-read once
    per fold along the other array dimension:
    `os`: ifmap `M*K*ceil(N/C)`, filter `K*N*ceil(M/R)`, ofmap `M*N + folds*(R+C)`
    (SCALE-Sim adds `R + C` per fold for the drain);
    `ws`: ifmap `M*K*ceil(N/C)`, filter `K*N`, ofmap `M*N*ceil(K/R)` (partial sums);
    `is`: ifmap `M*K`, filter `K*N*ceil(M/C)`, ofmap `M*N*ceil(K/R)`.
    DRAM traffic depends on SCALE-Sim's buffer replacement and is not modelled here.
    """
    mp = systolic_mapping(m, n, k, rows, cols, dataflow)
    if dataflow == "os":
        return SramAccesses(m * k * mp.col_folds, k * n * mp.row_folds,
                            m * n + mp.folds * (rows + cols))
    if dataflow == "ws":
        return SramAccesses(m * k * mp.col_folds, k * n, m * n * mp.row_folds)
    return SramAccesses(m * k, k * n * mp.col_folds, m * n * mp.row_folds)


def systolic_gemm(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> SystolicEstimate:
    """
    All SCALE-Sim compute figures of one GEMM on one R x C array.
    """
    mp = systolic_mapping(m, n, k, rows, cols, dataflow)
    cycles = mp.compute_cycles
    macs = m * n * k
    return SystolicEstimate(
        mapping=mp,
        cycles=cycles,
        macs=macs,
        mapping_efficiency=mapping_efficiency(m, n, k, rows, cols, dataflow),
        compute_utilisation=compute_utilisation(m, n, k, rows, cols, dataflow),
        utilisation=macs / (rows * cols * cycles),
        sram=sram_accesses(m, n, k, rows, cols, dataflow),
    )


@dataclass(frozen=True)
class GemmSchedule:
    """One `[count, M, N, K]` entry of `gemms` on `num_arrays` arrays."""

    count: int
    m: int
    n: int
    k: int
    mapping: SystolicMapping
    """The GEMM folded onto one array (SCALE-Sim's view)."""
    arrays: int
    splits: int
    """Chunks the streamed extent T is cut into (always 1 on one array)."""
    cycles: int
    """Cycles until the last array finishes (stall-free)."""

    @property
    def jobs(self) -> int:
        return self.count * self.mapping.folds * self.splits

    @property
    def single_array_cycles(self) -> int:
        """`count` x SCALE-Sim's stall-free cycles on one array."""
        return self.count * self.mapping.compute_cycles


def schedule_gemm(count: int, m: int, n: int, k: int, rows: int, cols: int, arrays: int,
                  dataflow: str, stationary_buffers: int = 1) -> GemmSchedule:
    """
    Spread the folds of `count` GEMMs `(M x K) @ (K x N)` over `arrays` R x C arrays.

    Minimises `ceil(count * folds * s / arrays) * cycles_per_fold(ceil(T / s))`
    over `s` in `1..min(arrays, T)` (smallest `s` on ties), so one array gives
    exactly `count * compute_cycles(...)`. With two stationary
    buffers (`ws`/`is`), a fold's R-cycle shift of its stationary tile runs
    during the previous fold, so only each array's first fold pays it.
    """
    if count < 1 or arrays < 1:
        raise ValueError(f"count and arrays must be positive, got {count} and {arrays}")
    mapping = systolic_mapping(m, n, k, rows, cols, dataflow)
    hidden = rows if stationary_buffers > 1 and dataflow != "os" else 0
    best: tuple[int, int] | None = None
    for splits in range(1, min(arrays, mapping.t) + 1):
        chunk = dataclasses.replace(mapping, t=-(-mapping.t // splits))
        waves = -(-count * mapping.folds * splits // arrays)
        cycles = waves * (chunk.cycles_per_fold - hidden) + hidden
        if best is None or cycles < best[0]:
            best = (cycles, splits)
    cycles, splits = best
    return GemmSchedule(count, m, n, k, mapping, arrays, splits, cycles)


def schedule_gemms(gemms, device, dataflow: str) -> list[GemmSchedule]:
    """`schedule_gemm` of each `(count, M, N, K)` on `device`'s arrays (`array_rows` x `array_cols`,
    `num_arrays`, `stationary_buffers`) in `dataflow`."""
    rows, cols, arrays = device["array_rows"], device["array_cols"], device["num_arrays"]
    buffers = int(device.get("stationary_buffers", 1))
    return [schedule_gemm(c, m, n, k, rows, cols, arrays, dataflow, buffers) for c, m, n, k in gemms]


def runnable_dataflows(dataflow: str) -> tuple[str, ...]:
    """
    The dataflows an array built for `dataflow` runs, its own first. A
    stationary-operand array holds whichever operand is shifted into it:
    computing `C^T = B^T @ A^T` makes the input the stationary operand, so
    `ws` and `is` are one array with the operands' roles swapped (a TPU's
    weight-stationary MXU runs both; the compiler picks the roles). An
    output-stationary array keeps partial sums in its PEs and runs only `os`.
    """
    if dataflow not in DATAFLOWS:
        raise ValueError(f"unknown dataflow {dataflow!r}; expected one of {', '.join(DATAFLOWS)}")
    if dataflow == "os":
        return ("os",)
    return (dataflow, "is" if dataflow == "ws" else "ws")


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """
    SCALE-Sim's output extent of a pre-padded input: `ceil((size - kernel + stride) / stride)`.

    This equals the true `(size - kernel) // stride + 1` only when `stride`
    divides `size - kernel` (SCALE-Sim `topology_utils.topo_calc_hyperparams`).
    """
    _check_positive(size=size, kernel=kernel, stride=stride)
    if kernel > size:
        raise ValueError(f"kernel {kernel} is larger than the (padded) input {size}")
    return -(-(size - kernel + stride) // stride)


def conv_as_gemm(ifmap_h: int, ifmap_w: int, filt_h: int, filt_w: int, channels: int,
                 num_filters: int, stride: int = 1, batch: int = 1) -> tuple[int, int, int]:
    """
    `(M, N, K)` of a convolution in SCALE-Sim's GEMM view.

    `M = batch * OH * OW` (ofmap pixels, SCALE-Sim's output-size rule),
    `N = num_filters`, `K = filt_h * filt_w * channels`. The input is taken as
    already padded, as SCALE-Sim takes it.
    """
    _check_positive(channels=channels, num_filters=num_filters, batch=batch)
    oh = conv_output_size(ifmap_h, filt_h, stride)
    ow = conv_output_size(ifmap_w, filt_w, stride)
    return batch * oh * ow, num_filters, filt_h * filt_w * channels
