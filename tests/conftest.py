"""
Shared pytest setup: the hypothesis settings profiles `ci` and `thorough`
(`compiler/testing/fuzz.py`). The property tests run the `ci` profile unless
`STRATA_HYPOTHESIS_PROFILE=thorough` or `pytest --hypothesis-profile thorough`
selects the thorough one. Temporary files go under pytest's base directory.
"""

import os
import tempfile

import pytest
from hypothesis import settings

from strata.compiler.testing.fuzz import PROFILE_ENV, register_profiles

register_profiles()
if os.environ.get(PROFILE_ENV):
    settings.load_profile(os.environ[PROFILE_ENV])


@pytest.fixture(autouse=True, scope="session")
def _scratch_tmpdir(tmp_path_factory):
    """Temporary files of the session (a failing pass's reproducer among them) go under pytest's
    own base directory, for this process and the `strata` subprocesses it starts."""
    scratch = str(tmp_path_factory.mktemp("tmpdir"))
    previous = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = scratch, scratch
    yield
    if previous[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = previous[0]
    tempfile.tempdir = previous[1]
