"""
Search strategies behind one ask/tell interface.

    strategy = STRATEGIES[name](space, seed)
    while not strategy.done:
        for i in strategy.ask(4):          # indices never asked before
            strategy.tell(i, cost_of(space[i]))

`ask(n)` returns up to `n` indices of points never asked (nor told) before,
fewer only when the space runs out; `tell(i, cost)` reports a cost (seconds;
`inf` or `nan` for a point that failed, which is never preferred). Telling
an index that was not asked marks it visited too: the tuner does so for the
default point, evaluated before the search. Every strategy is deterministic
for a seed: the same asks and tells give the same answers (its random
numbers come from one `numpy.random.Generator(PCG64(seed))`, and every
choice among equals goes to the lowest point index).

- `exhaustive`: every point in index order (small spaces, ground truth).
- `random`: uniform sampling without replacement.
- `evolutionary` (the default): a steady-state (mu + lambda) evolutionary
  search with a surrogate pre-screen, described on `EvolutionaryStrategy`.
"""

from __future__ import annotations

import math

import numpy as np

from backends.tuner.space import Space


class Strategy:
    """Base: bookkeeping of asked and told points; subclasses choose what to ask next."""

    name = "base"
    batch_size = 1
    """How many points the tuner asks for at once (independent of parallelism, so results are too)."""

    def __init__(self, space: Space, seed: int = 0):
        self.space = space
        self.seed = seed
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.asked: set[int] = set()
        self.told: dict[int, float] = {}
        self._order: list[int] = []
        """Visit order (asked or told), for strategies that care."""

    @property
    def done(self) -> bool:
        """True once every point of the space has been asked (or told)."""
        return len(self.asked) >= self.space.size

    def ask(self, n: int = 1) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < n and not self.done:
            i = self._next()
            if i is None:
                break
            i = int(i)
            assert i not in self.asked, "a strategy asked a point twice"
            self._visit(i)
            chosen.append(i)
        return chosen

    def tell(self, index: int, cost: float) -> None:
        index = int(index)
        if not 0 <= index < self.space.size:
            raise IndexError(f"point index {index} out of range 0..{self.space.size - 1}")
        cost = float(cost)
        if math.isnan(cost):
            cost = math.inf
        self._visit(index)
        self.told[index] = cost
        self._told(index, cost)

    def best(self) -> tuple[int, float] | None:
        """The cheapest told point (lowest index among equals), or None."""
        if not self.told:
            return None
        i = min(self.told, key=lambda j: (self.told[j], j))
        return i, self.told[i]

    # -- for subclasses ------------------------------------------------------

    def _visit(self, index: int) -> None:
        if index not in self.asked:
            self.asked.add(index)
            self._order.append(index)

    def _next(self) -> int | None:
        raise NotImplementedError

    def _told(self, index: int, cost: float) -> None:
        pass

    def _unasked(self) -> np.ndarray:
        mask = np.ones(self.space.size, dtype=bool)
        if self.asked:
            mask[list(self.asked)] = False
        return np.flatnonzero(mask)

    def _random_unasked(self) -> int | None:
        free = self._unasked()
        if free.size == 0:
            return None
        return int(free[self.rng.integers(free.size)])


class ExhaustiveStrategy(Strategy):
    """Every point, in index order."""

    name = "exhaustive"
    batch_size = 8

    def __init__(self, space: Space, seed: int = 0):
        super().__init__(space, seed)
        self._cursor = 0

    def _next(self) -> int | None:
        while self._cursor < self.space.size and self._cursor in self.asked:
            self._cursor += 1
        return self._cursor if self._cursor < self.space.size else None


class RandomStrategy(Strategy):
    """Uniform sampling without replacement: a seeded permutation, walked in order."""

    name = "random"
    batch_size = 8

    def __init__(self, space: Space, seed: int = 0):
        super().__init__(space, seed)
        self._permutation = self.rng.permutation(space.size)
        self._cursor = 0

    def _next(self) -> int | None:
        while self._cursor < self.space.size and int(self._permutation[self._cursor]) in self.asked:
            self._cursor += 1
        if self._cursor >= self.space.size:
            return None
        return int(self._permutation[self._cursor])


class Surrogate:
    """
    A Gaussian-process regression of log cost on the space's features
    (`Space.features`): squared-exponential kernel, unit signal variance on
    standardised targets, the length scale picked from a fixed grid by
    marginal likelihood (re-picked when the data has grown by a quarter).
    Used only to rank candidates, so its accuracy matters near the good
    points, not globally.
    """

    LENGTH_SCALES = (0.15, 0.25, 0.4, 0.65, 1.0, 1.6)
    NOISE = 1e-3

    def __init__(self, features: np.ndarray):
        self.features = features
        self._fit: tuple | None = None
        self._length: float | None = None
        self._length_n = 0
        """The length scale in use and the number of points it was chosen on."""

    def fit(self, indices: list[int], log_costs: list[float]) -> None:
        """Fit on `log_costs` (natural log; `inf` for failed points) at `indices`."""
        y = np.asarray(log_costs, dtype=float)
        finite = np.isfinite(y)
        if not finite.any():
            self._fit = None
            return
        worst = y[finite].max() + 1.0  # failed points look worse than every success
        y = np.where(finite, y, worst)
        mean, scale = y.mean(), y.std() or 1.0
        y = (y - mean) / scale
        x = self.features[indices]
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        # Choosing the length scale costs one factorisation per candidate:
        # redo it only when the data grew by a quarter since the last choice.
        grid = self.LENGTH_SCALES
        if self._length is not None and len(y) < 1.25 * self._length_n:
            grid = (self._length,)
        else:
            self._length_n = len(y)
        best = None
        for length in grid:
            k = np.exp(-0.5 * d2 / length**2) + self.NOISE * np.eye(len(y))
            try:
                chol = np.linalg.cholesky(k)
            except np.linalg.LinAlgError:
                continue
            alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
            evidence = -0.5 * y @ alpha - np.log(np.diag(chol)).sum()
            if best is None or evidence > best[0] + 1e-12:
                best = (evidence, length, chol, alpha)
        if best is None:
            self._fit = None
            return
        _, length, chol, alpha = best
        self._length = length
        self._fit = (x, length, chol, alpha, mean, scale)

    def predict(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the log cost at `indices` (the prior before a fit)."""
        n = len(indices)
        if self._fit is None:
            return np.zeros(n), np.ones(n)
        x, length, chol, alpha, mean, scale = self._fit
        q = self.features[np.asarray(indices, dtype=np.int64)]
        d2 = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        ks = np.exp(-0.5 * d2 / length**2)
        mu = ks @ alpha
        v = np.linalg.solve(chol, ks.T)
        var = np.clip(1.0 - (v * v).sum(0), 1e-12, None)
        return mean + scale * mu, scale * np.sqrt(var)


class EvolutionaryStrategy(Strategy):
    """
    A steady-state (mu + lambda) evolutionary search with a surrogate pre-screen.

    1. *Initial population*: `initial` points spread over the space (each the
       farthest, in feature distance, from those already chosen among a
       random sample), after the default point the tuner tells first.
    2. *Offspring*: each ask breeds a pool of children from the told points:
       parents by tournament selection (size `tournament`, the cheaper wins,
       the lower index among equals); a child is a random neighbour of one
       parent (mutation: one single or swap move, see `Space`), or, with
       probability `crossover`, each axis taken from one of two parents
       (kept only when that combination is legal, then mutated with
       probability 1/2). Every unasked neighbour of the best point so far
       joins the pool too, so the search always finishes the local descent
       around the incumbent. With probability `immigrants` the ask is
       instead a uniformly random unasked point (a random immigrant), which
       keeps the population from collapsing into one basin.
    3. *Pre-screen*: a Gaussian-process surrogate of log cost, refitted on
       all told costs, ranks the pool by its lower confidence bound
       (mean - `kappa` * std); the best-ranked child is asked. Children are
       never points asked before.

    The population is every told point (mu = all), so the parents of the next
    child are the survivors of everything seen so far: steady-state
    (mu + lambda) with lambda = 1 per ask.
    """

    name = "evolutionary"
    batch_size = 4
    TRAINING_CAP = 96

    def __init__(
        self,
        space: Space,
        seed: int = 0,
        initial: int = 4,
        tournament: int = 3,
        crossover: float = 0.5,
        immigrants: float = 0.05,
        kappa: float = 1.0,
        pool: int = 24,
        explore: int = 16,
    ):
        super().__init__(space, seed)
        self.initial = initial
        self.tournament = tournament
        self.crossover = crossover
        self.immigrants = immigrants
        self.kappa = kappa
        self.pool = pool
        self.explore = explore
        self._features = space.features()
        self._surrogate = Surrogate(self._features)
        self._stale = True
        self._fantasised: list[int] = []

    def _told(self, index: int, cost: float) -> None:
        self._stale = True

    # -- the phases ----------------------------------------------------------

    def _next(self) -> int | None:
        if len(self.asked) < self.initial or len(self.told) < 2:
            return self._spread()
        if self.rng.random() < self.immigrants:
            return self._random_unasked()
        children = self._offspring()
        if not children:
            return self._random_unasked()
        return self._screen(children)

    def _spread(self) -> int | None:
        """A random unasked point far from the visited ones (maximin over a sample)."""
        free = self._unasked()
        if free.size == 0:
            return None
        sample = free[np.sort(self.rng.choice(free.size, size=min(64, free.size), replace=False))]
        if not self.asked:
            return int(sample[0])
        seen = self._features[sorted(self.asked)]
        d2 = ((self._features[sample][:, None, :] - seen[None, :, :]) ** 2).sum(-1).min(1)
        return int(sample[np.lexsort((sample, -d2))[0]])

    def _tournament(self, ranked: list[int]) -> int:
        """Best of `tournament` uniform draws from the ranked population (rank = quality)."""
        draws = self.rng.integers(len(ranked), size=min(self.tournament, len(ranked)))
        return ranked[int(draws.min())]

    def _mutate(self, index: int) -> int | None:
        options = [j for j in self.space.neighbours(index) if j not in self.asked]
        if not options:
            return None
        return options[int(self.rng.integers(len(options)))]

    def _cross(self, a: int, b: int) -> int | None:
        ca, cb = self.space.coords[a], self.space.coords[b]
        take = self.rng.random(len(ca)) < 0.5
        return self.space.at(np.where(take, ca, cb))

    def _offspring(self) -> list[int]:
        ranked = sorted(self.told, key=lambda j: (self.told[j], j))
        ranked = [j for j in ranked if math.isfinite(self.told[j])] or ranked
        children: set[int] = {j for j in self.space.neighbours(ranked[0]) if j not in self.asked}
        for _ in range(self.pool):
            parent = self._tournament(ranked)
            child: int | None
            if len(ranked) > 1 and self.rng.random() < self.crossover:
                child = self._cross(parent, self._tournament(ranked))
                if child is not None and (child in self.asked or self.rng.random() < 0.5):
                    child = self._mutate(child)
            else:
                child = self._mutate(parent)
            if child is not None and child not in self.asked:
                children.add(child)
        free = self._unasked()
        if free.size and self.explore:
            picks = self.rng.choice(free.size, size=min(self.explore, free.size), replace=False)
            children.update(int(j) for j in free[picks])
        return sorted(children)

    def _training_set(self) -> tuple[list[int], list[float]]:
        """
        The told points the surrogate learns from: all of them up to
        `TRAINING_CAP`, else the cheapest two thirds of the cap and the rest
        spread evenly over the remaining ranks (small factorisations stay
        fast; accuracy matters most near the good points).
        """
        ranked = sorted(self.told, key=lambda j: (self.told[j], j))
        cap = self.TRAINING_CAP
        if len(ranked) > cap:
            head = (2 * cap) // 3
            rest = ranked[head:]
            picks = np.linspace(0, len(rest) - 1, cap - head).round().astype(int)
            ranked = ranked[:head] + [rest[k] for k in sorted(set(picks.tolist()))]
        ranked.sort()
        return ranked, [self.told[j] for j in ranked]

    def _screen(self, children: list[int]) -> int:
        pending = sorted(self.asked - self.told.keys())
        if self._stale or pending != self._fantasised:
            indices, costs = self._training_set()
            log_costs = [math.log(max(c, 1e-30)) for c in costs]
            if pending:
                # Kriging believer: asked-but-untold points of this batch are
                # taken at the model's own prediction, which shrinks its
                # uncertainty there and spreads the batch.
                self._surrogate.fit(indices, log_costs)
                guess, _ = self._surrogate.predict(pending)
                indices, log_costs = indices + pending, log_costs + guess.tolist()
            self._surrogate.fit(indices, log_costs)
            self._stale, self._fantasised = False, pending
        pool = np.asarray(children)
        mu, sd = self._surrogate.predict(pool)
        score = mu - self.kappa * sd
        return int(pool[np.lexsort((pool, score))[0]])


STRATEGIES: dict[str, type[Strategy]] = {
    "evolutionary": EvolutionaryStrategy,
    "random": RandomStrategy,
    "exhaustive": ExhaustiveStrategy,
}
DEFAULT_STRATEGY = "evolutionary"


def make_strategy(name: str, space: Space, seed: int = 0) -> Strategy:
    """The strategy called `name` (one of `STRATEGIES`) on `space`."""
    try:
        return STRATEGIES[name](space, seed)
    except KeyError:
        raise ValueError(f"unknown strategy '{name}' (strategies: {', '.join(STRATEGIES)})") from None
