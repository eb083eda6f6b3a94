"""
dialects/hardware/systolic_math.py against SCALE-Sim v3.0.0, row by row, plus its invariants.

`tests/backends/scalesim_v3_results.csv` is a verbatim copy of the project's reference runs
(shared/reference); `scalesim_extra.csv` holds extra small layers on
non-square arrays, run the same way (see its header). SCALE-Sim prints the
index of the last cycle, so a stall-free count is `Total Cycles - Stall
Cycles + 1`.
"""

import csv
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata.dialects.hardware.systolic_math import (
    DATAFLOWS,
    compute_cycles,
    compute_utilisation,
    conv_as_gemm,
    conv_output_size,
    fold_counts,
    mapping_efficiency,
    sram_accesses,
    systolic_gemm,
    systolic_mapping,
)

HERE = Path(__file__).parent.parent / "backends"  # the SCALE-Sim runs, shared with test_systolic_cost.py


def _rows(name):
    with open(HERE / name, newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    return [pytest.param(row, id=f"{row['layer']}-{row['dataflow']}-{row['array_rows']}x{row['array_cols']}")
            for row in rows]


REFERENCE = _rows("scalesim_v3_results.csv")
EXTRA = _rows("scalesim_extra.csv")


def _gemm(row):
    """(M, N, K) of a row; convolutions through SCALE-Sim's GEMM view."""
    if row["input_type"] == "conv":
        return conv_as_gemm(*(int(row[k]) for k in ("ifmap_h", "ifmap_w", "filt_h", "filt_w",
                                                      "channels", "num_filters", "stride")))
    return int(row["M"]), int(row["N"]), int(row["K"])


def _check_row(row, pct_tol):
    m, n, k = _gemm(row)
    r, c, df = int(row["array_rows"]), int(row["array_cols"]), row["dataflow"]
    est = systolic_gemm(m, n, k, r, c, df)
    stall_free_reported = int(row["total_cycles_reported"]) - int(row["stall_cycles"])
    assert est.cycles == stall_free_reported + 1
    assert compute_cycles(m, n, k, r, c, df) == est.cycles
    assert fold_counts(m, n, k, r, c, df) == (int(row["row_folds"]), int(row["col_folds"]))
    assert est.mapping_efficiency * 100 == pytest.approx(float(row["mapping_eff_pct"]), abs=pct_tol)
    assert est.compute_utilisation * 100 == pytest.approx(float(row["compute_util_pct"]), abs=pct_tol)
    # SCALE-Sim's "Overall Util" divides the MACs by its printed (last-index) cycle count.
    overall = est.macs * 100 / (r * c * (est.cycles - 1))
    assert overall == pytest.approx(float(row["overall_util_pct"]), abs=pct_tol)
    assert (est.sram.ifmap_reads, est.sram.filter_reads, est.sram.ofmap_writes) == (
        int(row["sram_ifmap_reads"]), int(row["sram_filter_reads"]), int(row["sram_ofmap_writes"]))


@pytest.mark.parametrize("row", REFERENCE)
def test_reference_scalesim_rows(row):
    # The reference percentages are printed to 3 decimals.
    _check_row(row, pct_tol=5.1e-4)


@pytest.mark.parametrize("row", EXTRA)
def test_extra_scalesim_rows(row):
    _check_row(row, pct_tol=1e-9)


def test_csvs_cover_every_dataflow_and_non_square_arrays():
    rows = [p.values[0] for p in REFERENCE + EXTRA]
    assert len(REFERENCE) == 49
    assert {row["dataflow"] for row in rows} == set(DATAFLOWS)
    assert any(row["array_rows"] != row["array_cols"] for row in rows)


@pytest.mark.parametrize("row", [p for p in REFERENCE if p.values[0]["input_type"] == "conv"])
def test_conv_as_gemm_matches_reference_mnk(row):
    assert _gemm(row) == (int(row["M"]), int(row["N"]), int(row["K"]))


def test_conv_output_size_uses_scalesim_rule():
    # 224 input, 7x7, stride 2: SCALE-Sim says 110, the true size is 109.
    assert conv_output_size(224, 7, 2) == 110
    assert conv_output_size(229, 7, 2) == 112
    assert conv_as_gemm(30, 30, 3, 3, 128, 128, 1, batch=2) == (2 * 784, 128, 1152)


@pytest.mark.parametrize(("dataflow", "cycles"), [("os", 3 * 128 - 2), ("ws", 4 * 128 - 2), ("is", 4 * 128 - 2)])
def test_closed_form_128_cube(dataflow, cycles):
    # One fold: os R+C+T-2, ws/is 2R+C+T-2 with R = C = T = 128.
    assert compute_cycles(128, 128, 128, 128, 128, dataflow) == cycles


def test_mapping_roles_per_dataflow():
    assert (lambda mp: (mp.sr, mp.sc, mp.t))(systolic_mapping(2, 3, 5, 8, 8, "os")) == (2, 3, 5)
    assert (lambda mp: (mp.sr, mp.sc, mp.t))(systolic_mapping(2, 3, 5, 8, 8, "ws")) == (5, 3, 2)
    assert (lambda mp: (mp.sr, mp.sc, mp.t))(systolic_mapping(2, 3, 5, 8, 8, "is")) == (5, 2, 3)


def test_partial_fold_costs_a_full_fold():
    # ws, K = 129 on 128 rows: two row folds, the second holding one row.
    assert compute_cycles(64, 128, 129, 128, 128, "ws") == 2 * (2 * 128 + 128 + 64 - 2)


def test_sram_accesses_closed_form():
    acc = sram_accesses(100, 10, 7, 8, 4, "os")
    assert (acc.ifmap_reads, acc.filter_reads, acc.ofmap_writes) == (
        100 * 7 * 3, 7 * 10 * 13, 100 * 10 + 13 * 3 * (8 + 4))


def test_full_mapping_is_efficient():
    assert mapping_efficiency(256, 256, 64, 128, 128, "os") == 1.0
    assert compute_utilisation(256, 256, 64, 128, 128, "os") == pytest.approx(64 / (128 + 128 + 64 - 2))


@pytest.mark.parametrize("args", [(0, 1, 1, 8, 8, "os"), (1, 1, 1, 0, 8, "ws"), (1, -2, 1, 8, 8, "is"),
                                  (1.5, 1, 1, 8, 8, "os")])
def test_bad_dimensions_raise(args):
    with pytest.raises(ValueError, match="positive integer"):
        compute_cycles(*args)


def test_bad_dataflow_raises():
    with pytest.raises(ValueError, match="unknown dataflow 'rs'"):
        compute_cycles(1, 1, 1, 8, 8, "rs")


dims = st.integers(min_value=1, max_value=600)
arrays = st.integers(min_value=1, max_value=160)


@settings(max_examples=50, deadline=None)
@given(m=dims, n=dims, k=dims, r=arrays, c=arrays, df=st.sampled_from(DATAFLOWS),
       axis=st.sampled_from("mnk"), step=st.integers(min_value=1, max_value=300))
def test_cycles_monotone_property(m, n, k, r, c, df, axis, step):
    grown = {"m": m, "n": n, "k": k}
    grown[axis] += step
    assert compute_cycles(grown["m"], grown["n"], grown["k"], r, c, df) >= compute_cycles(m, n, k, r, c, df)


@settings(max_examples=50, deadline=None)
@given(m=dims, n=dims, k=dims, r=arrays, c=arrays, df=st.sampled_from(DATAFLOWS))
def test_cycles_lower_bound_property(m, n, k, r, c, df):
    est = systolic_gemm(m, n, k, r, c, df)
    assert est.cycles >= math.ceil(m * n * k / (r * c))
    assert 0 < est.utilisation <= 1
    assert 0 < est.mapping_efficiency <= 1
    assert 0 < est.compute_utilisation <= 1
