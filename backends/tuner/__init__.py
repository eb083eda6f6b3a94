"""
The autotuner's target-independent core.

- `space`: `Space`, the legal points of one kernel and their neighbourhoods;
- `strategies`: `exhaustive`, `random` and the default `evolutionary`
  search behind one ask/tell interface;
- `search`: `tune`, the budgeted, cached, time-limited search loop;
- `database`: `TuningDatabase`, the JSON Lines record of every evaluation;
- `hashing`: `structural_hash`, the kernel key that makes identical kernels
  (the blocks of a transformer, a renamed model) share their results.

The driver (in `compiler`) builds the spaces from the passes' exposed
choices and passes an evaluator in; nothing here imports `compiler` or
`passes`.
"""

from strata.backends.tuner.database import TuningDatabase, TuningKey, default_path
from strata.backends.tuner.hashing import structural_hash
from strata.backends.tuner.search import Trial, TuneResult, tune
from strata.backends.tuner.space import SPACE_VERSION, Space, point_key
from strata.backends.tuner.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy, make_strategy

__all__ = [
    "DEFAULT_STRATEGY",
    "SPACE_VERSION",
    "STRATEGIES",
    "Space",
    "Strategy",
    "Trial",
    "TuneResult",
    "TuningDatabase",
    "TuningKey",
    "default_path",
    "make_strategy",
    "point_key",
    "structural_hash",
    "tune",
]
