"""
Parser robustness on drawn models: randomly mutated, truncated and
line-edited texts of `compiler.testing.random_models.models()` never crash or hang the
frontend; each compiles, or fails with a located `t.model:LINE:COL: error:`
(`tests/frontend/test_robustness.py` does the same on the samples' text and
holds the contract `compiles_or_fails_cleanly`).

Drawn models reach every operation, attribute and construct of the
language, so their mutants reach error paths the samples do not (a split
unpacked into the wrong count of names, a block int parameter given twice,
a `keepdims` on a list of negative axes, ...).
"""

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from strata.compiler.testing.fuzz import PROFILES, active_profile, hypothesis_settings
from strata.compiler.testing.random_models import models
from tests.frontend.test_robustness import compiles_or_fails_cleanly, mutants, small_limits

PROFILE = PROFILES[active_profile()]
RUN = settings(**hypothesis_settings(4 * PROFILE.test_examples, shrink=PROFILE.shrink))
SECONDS = 5.0
"""A text taking longer than this to compile or fail counts as a hang."""


def cleanly_and_quickly(text: str) -> None:
    start = time.perf_counter()
    with small_limits():
        compiles_or_fails_cleanly(text)
    assert time.perf_counter() - start < SECONDS, f"the frontend took {time.perf_counter() - start:.1f} s"


@st.composite
def line_edits(draw, base: str) -> str:
    """`base` with 1-3 edits that keep the tokens valid: lines deleted, duplicated, swapped or cut,
    a number or a name changed."""
    lines = base.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "number", "name", "cut"]))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "number" and re.search(r"\d+", lines[i]):
            numbers = list(re.finditer(r"\d+", lines[i]))
            m = numbers[draw(st.integers(0, len(numbers) - 1))]
            new = str(draw(st.sampled_from([0, 1, 2, 3, 5, 7, 9, 64, 10**12])))
            lines[i] = lines[i][: m.start()] + new + lines[i][m.end() :]
        elif kind == "name" and re.search(r"\b[a-z_]\w*\b", lines[i]):
            names = list(re.finditer(r"\b[a-z_]\w*\b", lines[i]))
            m = names[draw(st.integers(0, len(names) - 1))]
            new = draw(st.sampled_from(["x0", "v0", "w0", "h0", "b0", "n", "x", "relu", "split", "model", "param"]))
            lines[i] = lines[i][: m.start()] + new + lines[i][m.end() :]
        elif kind == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        if not lines:
            break
    return "\n".join(lines)


@RUN
@given(text=models().flatmap(lambda model: mutants(model.text)))
def test_mutated_drawn_models(text):
    cleanly_and_quickly(text)


@RUN
@given(text=models().flatmap(lambda model: line_edits(model.text)))
def test_line_edited_drawn_models(text):
    cleanly_and_quickly(text)


@RUN
@given(model=models(), data=st.data())
def test_truncated_drawn_models(model, data):
    cut = data.draw(st.integers(0, len(model.text)), label="cut")
    cleanly_and_quickly(model.text[:cut])


@settings(**hypothesis_settings(PROFILE.test_examples))
@given(model=models())
def test_drawn_models_compile(model):
    """The unmutated texts are valid models (the strategies never draw an invalid one)."""
    model.module().verify()
