"""
Shared pytest setup: the hypothesis settings profiles `ci` and `thorough`
(`compiler/testing/fuzz.py`). The property tests run the `ci` profile unless
`STRATA_HYPOTHESIS_PROFILE=thorough` or `pytest --hypothesis-profile thorough`
selects the thorough one.
"""

import os

from hypothesis import settings

from strata.compiler.testing.fuzz import PROFILE_ENV, register_profiles

register_profiles()
if os.environ.get(PROFILE_ENV):
    settings.load_profile(os.environ[PROFILE_ENV])
