"""
Every bug the properties found (`strata fuzz`, `tests/properties/test_passes.py`),
kept as its shrunk model and the property it broke.

Fixed bugs must stay fixed. Bugs in code this suite does not own are
`xfail(strict=True)` with their reproducer: the test starts passing, and so
fails as XPASS, the day the bug is fixed; then drop the mark.
"""

from dataclasses import dataclass

import pytest

from strata.compiler.cli import main
from strata.compiler.testing.properties import Pipeline, PropertyFailure, check_cost_monotonic, check_model
from strata.compiler.testing.random_models import Model


@dataclass(frozen=True)
class Bug:
    name: str
    text: str
    targets: tuple[str, ...]
    broke: str
    """The property that failed."""
    pipeline: str = ""
    """A pipeline string; empty: the target's default pipeline."""
    open: str = ""
    """Why the bug is still open (the file that has it); empty when fixed."""


BUGS = [
    Bug(
        "assign-layout-rerun-moves-relayout-locations",
        "model fuzz(x: f32[1, 1, 2, 2]) {\n  return maxpool2d(x, kernel=1)\n}\n",
        ("gpu", "tpu", "lpu"), "idempotent",
        # Fixed in passes/assign_layout.py: a second run re-laid the relayouts
        # it had made (as views outside kernels), and a folded relayout lost
        # its location.
    ),
    Bug(
        "assign-layout-rerun-recreates-a-shared-relayout",
        "model fuzz(x: f16[1, 2, 2, 4]) {\n  h = maxpool2d(x, kernel=1)\n  return concat([x, h]), x + h\n}\n",
        ("gpu", "tpu", "lpu"), "idempotent",
    ),
    Bug(
        "lower-to-loops-avgpool-padding-counted-in-the-average",
        "model fuzz(x: f32[1, 1, 4, 3]) {\n  return avgpool2d(x, kernel=[3, 2], stride=1, padding=[2, 0])\n}\n",
        ("gpu", "tpu", "lpu"), "semantics",
        # Fixed in passes/_regions.py and lower_to_loops.py: the tile op got
        # pads 0 and a zero-padded window, so the padding counted in the divisor.
    ),
    Bug(
        "tile-sizes-on-a-rank-0-kernel",
        "model fuzz(x: f32[8]) {\n  return sum(x, axis=[0])\n}\n",
        ("gpu", "tpu", "lpu"), "pass-runs", "tile{sizes=2,3,2},lower-to-loops,place-chips,lower-to-hardware",
        # Fixed in passes/tile.py: `sizes[-0:]` is all the sizes (IndexError).
    ),
    Bug(
        "tile-reshape-merge-then-slice-at-a-row-boundary",
        "model fuzz(x: f32[4, 4]) {\n  a, b = split(x, parts=2, axis=1)\n"
        "  return slice(reshape(b, [8]), axis=0, start=2, end=4)\n}\n",
        ("gpu", "tpu", "lpu"), "pass-runs",
        # Fixed in passes/_regions.py: a constant offset that is a multiple of
        # the merged row was not accepted (NotTileable even for a whole tile).
    ),
    Bug(
        "tile-reshape-merge-then-slice-across-rows",
        "model fuzz(x: f32[4, 4]) {\n  a, b = split(x, parts=2, axis=1)\n"
        "  return slice(reshape(b, [8]), axis=0, start=1, end=3)\n}\n",
        ("gpu", "tpu", "lpu"), "pass-runs",
        # Fixed in passes/_regions.py, tile.py, lower_to_loops.py: a window of a
        # reshape no operand tile gives, at constant offsets, is cropped from
        # the whole reshape.
    ),
    Bug(
        "lower-to-loops-integer-gemm-accumulates-in-f32",
        "model fuzz(x0: i8[7, 5], x1: i64[3, 4]) {\n  param w1: i8[5, 5]\n  param w2: i64[4, 2]\n"
        "  return x0 @ w1, x1 @ w2 @ transpose(w2)\n}\n",
        ("gpu", "tpu", "lpu"), "semantics",
        # Fixed in passes/lower_to_loops.py: an i8 GEMM saturated at 127 where
        # the reference wraps; integers accumulate in i32 (i64 for i64) now.
    ),
    Bug(
        "loop-interpreter-causal-mask-f8e4m3-gives-nan",
        "model fuzz(x0: f8e4m3[2, 2]) {\n  return causal_mask(x0)\n}\n",
        ("gpu", "tpu", "lpu"), "semantics",
        # Fixed in compiler/loop_interpreter.py: loop.causal_mask filled
        # convert(-inf) (NaN in f8e4m3, which has no infinities) where the
        # reference fills its lowest finite value (-448).
    ),
    Bug(
        "loop-interpreter-rank-0-store-in-bf16",
        "model fuzz(x0: bf16[1]) {\n  return sum(x0 + 0.5)\n}\n",
        ("gpu", "tpu", "lpu"), "semantics",
        # Fixed in compiler/loop_interpreter.py: storing a rank-0 tile assigned
        # a 1-element array into a 0-d ml_dtypes array (TypeError).
    ),
    Bug(
        "lower-to-hardware-chips-without-kernels",
        "model fuzz(x0: i64[4, 5, 2]) {\n  return reshape(x0, [10, 1, 4])\n}\n",
        ("lpu",), "pass-runs", "place-chips{chips=2}",
        # Fixed in passes/lower_to_hardware.py (placement now in
        # passes/place_chips.py): packing zero kernels onto `chips` chips took
        # max() of an empty list.
    ),
]


def _cases():
    for bug in BUGS:
        for target in bug.targets:
            marks = [pytest.mark.xfail(strict=True, raises=PropertyFailure, reason=bug.open)] if bug.open else []
            yield pytest.param(bug, target, id=f"{bug.name}-{target}", marks=marks)


@pytest.mark.parametrize("bug, target", _cases())
def test_regression(bug, target):
    pipeline = Pipeline.parse(bug.pipeline, target) if bug.pipeline else Pipeline.default(target)
    try:
        check_model(Model(bug.text), pipeline)
    except PropertyFailure as failure:
        assert failure.name == bug.broke, failure
        raise


GROWING_GEMM = Model(
    "let B = 40\nlet S = 3\nlet D = 14\nlet F = 125\n\n"
    "model grow(x: f32[B, S, D]) {\n  param w0: f32[D, F]\n  return x @ w0\n}\n",
    lets=(("B", 40), ("S", 3), ("D", 14), ("F", 125)),
)


TINY_GEMM = Model("let D = 1\n\nmodel grow(x: f32[1, 1, D]) {\n  param w0: f32[D, D]\n  return x @ w0\n}\n",
                  lets=(("D", 1),))


TINY_ATTENTION = Model(
    "let B = 1\nlet S = 1\nlet D = 1\n\nmodel grow(x: f32[B, S, D]) {\n  param w0: f32[D, D]\n  param w1: f32[D, D]\n"
    "  return attention(x, x @ w0, x @ w1)\n}\n",
    lets=(("B", 1), ("S", 1), ("D", 1)),
)


@pytest.mark.parametrize("target", ["gpu", "tpu", "lpu"])
def test_cost_grows_with_the_reduction_dim(target):
    """
    Fixed in backends/gpu.py: the wave efficiency divided 40 CTAs by every
    resident slot (132 SMs x occupancy 32), so doubling K, which halved the
    occupancy, halved the estimate (6.6e-5 s -> 3.5e-5 s); and MMAs pad a
    1x1x1 and a 2x2x2 tile to the same instruction, but the per-CTA
    efficiency used the unpadded K (1 vs 2), so the bigger GEMM was
    estimated faster (4.84e-6 s -> 4.42e-6 s).
    """
    check_cost_monotonic(GROWING_GEMM, "D", 28, target)
    check_cost_monotonic(TINY_GEMM, "D", 2, target)
    # Found by `strata fuzz --examples 200 --target gpu` (example 170), fixed
    # in backends/gpu.py: the same for attention's keys, S = 1 -> 2
    # (1.247e-05 s -> 1.234e-05 s).
    check_cost_monotonic(TINY_ATTENTION, "S", 2, target)


def test_run_a_loop_dump_without_kernels(tmp_path, capsys):
    """Fixed in compiler/driver.py: detect_stage called loop-stage IR with no
    kernel left graph IR, so `strata run` gave it to the reference."""
    model = tmp_path / "m.model"
    model.write_text("model m(x: f32[4, 8]) {\n  return reshape(x, [8, 4])\n}\n")
    dump = tmp_path / "m.mlir"
    assert main(["compile", str(model), "--emit", "loop", "-o", str(dump)]) == 0
    capsys.readouterr()
    assert main(["run", str(dump)]) == 0
    assert main(["compile", str(dump), "--report", "none"]) == 0
