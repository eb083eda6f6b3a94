"""
The search loop: a strategy, an evaluator, a cache, a budget and a clock.

`tune` knows nothing of kernels or targets: the driver builds the `Space`,
passes an `evaluate_many(points) -> costs` (which may evaluate in parallel)
and the costs the tuning database already holds for this kernel, and writes
the result back as IR attributes and database records. A typical driver:

    key = TuningKey(structural_hash(kernel), target, spec.fingerprint())
    cached = db.lookup(key)
    def evaluate_many(points):
        costs = pool.map(evaluate, points)
        db.record_many(key, zip(points, costs))      # saved as they come
        return costs
    result = tune(space, evaluate_many, budget=..., seed=..., cached=cached,
                  default_index=0)

Budget: `budget` bounds the number of points the search visits, whether
evaluated or found in `cached`. A cache hit costs no evaluation (no time),
so a second run with the same seed, budget and database replays the first
run's visits from the cache and evaluates nothing, and a run with a larger
budget continues where a smaller one stopped. With
`cache_hits_use_budget=False` cache hits are free of budget too: the search
then goes on until `budget` *new* evaluations (or the space) are spent.

Order: the default point (if given) is visited first, alone, as the baseline
of the speedup; then the strategy's asks, `strategy.batch_size` at a time
(a fixed size, so parallelism never changes the result). For a fixed seed,
strategy, budget and cache the result is deterministic; a `time_limit_s`
stops the search between batches once exceeded, the only source of
run-to-run variation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from strata.backends.tuner.space import Point, Space, point_key
from strata.backends.tuner.strategies import DEFAULT_STRATEGY, Strategy, make_strategy

EvaluateMany = Callable[[list[Point]], Sequence[float]]
Progress = Callable[[int, int, float], None]
"""`on_progress(visited, total, best_cost)` after every batch; total = the visits planned."""


@dataclass(frozen=True)
class Trial:
    """One visited point, in visit order."""

    index: int
    point: Point
    cost: float
    cached: bool
    """True when the cost came from the cache, not an evaluation."""


@dataclass
class TuneResult:
    best_point: Point
    best_cost: float
    default_cost: float | None
    """The default point's cost, None when no default was given."""
    evaluations: int
    """Points evaluated in this run (cache hits excluded)."""
    cache_hits: int
    space_size: int
    history: list[Trial] = field(default_factory=list)
    best_index: int = 0
    default_index: int | None = None
    stopped: str = "budget"
    """Why the search ended: `budget`, `exhausted` (every point visited) or `time`."""
    strategy: str = DEFAULT_STRATEGY
    seed: int = 0

    @property
    def speedup(self) -> float | None:
        """Default cost over tuned cost, None without a default."""
        if self.default_cost is None or not math.isfinite(self.best_cost) or self.best_cost <= 0:
            return None
        return self.default_cost / self.best_cost

    def as_json(self) -> dict[str, Any]:
        def number(x: float | None) -> float | None:
            return x if x is None or math.isfinite(x) else None

        return {
            "space_size": self.space_size,
            "evaluations": self.evaluations,
            "cache_hits": self.cache_hits,
            "default_cost": number(self.default_cost),
            "best_cost": number(self.best_cost),
            "speedup": self.speedup,
            "best_point": {k: list(v) if isinstance(v, tuple) else v for k, v in self.best_point.items()},
            "strategy": self.strategy,
            "seed": self.seed,
            "stopped": self.stopped,
        }


def tune(
    space: Space,
    evaluate_many: EvaluateMany,
    strategy: str | Strategy = DEFAULT_STRATEGY,
    *,
    budget: int,
    seed: int = 0,
    cached: Mapping[str, float] | None = None,
    time_limit_s: float | None = None,
    on_progress: Progress | None = None,
    default_index: int | None = None,
    cache_hits_use_budget: bool = True,
) -> TuneResult:
    """
    Search `space` for its cheapest point; see the module docstring for the
    budget, the cache and the order of visits. `strategy` is a name from
    `STRATEGIES` (built with `seed`) or a fresh `Strategy` instance.
    `evaluate_many` must return one cost (seconds; `inf` or `nan` for a point
    that failed) per point, in order.
    """
    if budget < 1:
        raise ValueError(f"the budget must be at least 1, not {budget}")
    if default_index is not None and not 0 <= default_index < space.size:
        raise IndexError(f"default index {default_index} out of range 0..{space.size - 1}")
    search = make_strategy(strategy, space, seed) if isinstance(strategy, str) else strategy
    if search.space is not space:
        raise ValueError("the strategy was built for another space")
    cached = cached or {}
    start = time.monotonic()
    total = min(budget, space.size)
    history: list[Trial] = []
    evaluations = cache_hits = 0
    stopped = "budget"

    def spent() -> int:
        return evaluations + (cache_hits if cache_hits_use_budget else 0)

    def visit(indices: list[int]) -> None:
        nonlocal evaluations, cache_hits
        costs: dict[int, float] = {}
        missing: list[int] = []
        for i in indices:
            hit = cached.get(space.key(i))
            if hit is not None:
                costs[i] = hit
            else:
                missing.append(i)
        if missing:
            results = list(evaluate_many([dict(space[i]) for i in missing]))
            if len(results) != len(missing):
                raise ValueError(f"evaluate_many returned {len(results)} costs for {len(missing)} points")
            costs.update(zip(missing, results))
        for i in indices:  # tell in ask order: deterministic whatever the evaluator did
            cost = float(costs[i])
            cost = math.inf if math.isnan(cost) else cost
            search.tell(i, cost)
            is_hit = i not in missing
            history.append(Trial(i, dict(space[i]), cost, is_hit))
            cache_hits += is_hit
            evaluations += not is_hit
        if on_progress is not None:
            on_progress(len(history), total, _best(history)[1])

    if default_index is not None:
        visit([default_index])
    while True:
        if spent() >= budget:
            stopped = "budget"
            break
        if search.done:
            stopped = "exhausted"
            break
        if time_limit_s is not None and time.monotonic() - start >= time_limit_s:
            stopped = "time"
            break
        indices = search.ask(min(search.batch_size, budget - spent()))
        if not indices:
            stopped = "exhausted"
            break
        visit(indices)

    best_index, best_cost = _best(history)
    default_cost = history[0].cost if default_index is not None else None
    return TuneResult(
        best_point=dict(space[best_index]),
        best_cost=best_cost,
        default_cost=default_cost,
        evaluations=evaluations,
        cache_hits=cache_hits,
        space_size=space.size,
        history=history,
        best_index=best_index,
        default_index=default_index,
        stopped=stopped,
        strategy=search.name,
        seed=seed,
    )


def _best(history: list[Trial]) -> tuple[int, float]:
    """The cheapest visited point, the lowest index among equals."""
    trial = min(history, key=lambda t: (t.cost, t.index))
    return trial.index, trial.cost


__all__ = ["Trial", "TuneResult", "tune", "point_key"]
