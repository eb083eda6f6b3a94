"""
Shared pytest setup: the hypothesis settings profiles `ci` and `thorough`
(`compiler/testing/fuzz.py`). The property tests run the `ci` profile unless
`STRATA_HYPOTHESIS_PROFILE=thorough` or `pytest --hypothesis-profile thorough`
selects the thorough one. Temporary files go under pytest's base directory,
and so does strata's cache (`--device host`'s measured spec): a test session
never writes to the home directory.
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
    previous = os.environ.get("TMPDIR"), tempfile.tempdir, os.environ.get("STRATA_CACHE_DIR")
    os.environ["TMPDIR"], tempfile.tempdir = scratch, scratch
    os.environ["STRATA_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    for name, value in (("TMPDIR", previous[0]), ("STRATA_CACHE_DIR", previous[2])):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    tempfile.tempdir = previous[1]
