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

from strata.backends.tuner.space import Space


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
            if i in self.asked:
                raise RuntimeError(f"strategy '{self.name}' asked point {i} twice")
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
    A Gaussian-process regression of log cost over a space's points.

    Each axis contributes a squared-exponential similarity of its two values:
    an ordinal axis by their positions scaled to [0, 1], a categorical axis
    `categorical` apart when they differ (`Space.features`). The kernel mixes
    their product, a joint squared-exponential over all axes (interactions:
    a tile that only pays off with a matching other tile), and their mean,
    an additive kernel (main effects, such as one loop order or dataflow
    being better everywhere, learned from few points and carried across the
    space):

        k(x, y) = w * prod_a k_a(x_a, y_a) + (1 - w) * mean_a k_a(x_a, y_a)
        k_a(u, v) = exp(-d_a(u, v)^2 / 2 l^2)

    on standardised targets with unit signal variance. The length `l` and the
    weight `w` come from a fixed grid by marginal likelihood, re-chosen when
    the data has grown by a quarter. Used only to rank candidates, so its
    accuracy matters near the good points, not globally.
    """

    LENGTH_SCALES = (0.15, 0.25, 0.4, 0.65, 1.0, 1.6)
    JOINT_WEIGHTS = (1.0, 0.8, 0.5)
    NOISE = 1e-3

    def __init__(self, space: Space, categorical: float = 1.0, joint_weights: tuple[float, ...] | None = None):
        self.coords = space.coords
        features, groups = space.features(categorical)
        self.tables: list[np.ndarray] = []
        """Per axis, the squared distance between each pair of its values."""
        for a, group in enumerate(groups):
            first = np.zeros(len(space.axes[a].values), dtype=np.int64)
            first[space.coords[::-1, a]] = np.arange(space.size)[::-1]  # a point with each value
            values = features[first][:, group]
            self.tables.append(((values[:, None, :] - values[None, :, :]) ** 2).sum(-1))
        self.joint_weights = tuple(joint_weights) if joint_weights is not None else self.JOINT_WEIGHTS
        self.hyper: tuple[float, float] | None = None
        """The (length, joint weight) in use."""
        self._hyper_n = 0
        self._similarity: dict[float, list[np.ndarray]] = {}
        self._fit: tuple | None = None

    def _kernel(self, ia: np.ndarray, ib: np.ndarray, length: float, weight: float) -> np.ndarray:
        tables = self._similarity.get(length)
        if tables is None:
            tables = self._similarity[length] = [np.exp(-0.5 * t / length**2) for t in self.tables]
        if not tables:
            return np.ones((len(ia), len(ib)))
        parts = [t[self.coords[ia, a][:, None], self.coords[ib, a][None, :]] for a, t in enumerate(tables)]
        k = np.zeros((len(ia), len(ib)))
        if weight > 0:
            k += weight * np.prod(parts, axis=0)
        if weight < 1:
            k += (1 - weight) * np.mean(parts, axis=0)
        return k

    def fit(self, indices: list[int], log_costs: list[float], hyper: tuple[float, float] | None = None) -> None:
        """
        Fit on `log_costs` (natural log; `inf` for failed points) at
        `indices`; `hyper` forces (length, weight) instead of choosing.
        """
        y = np.asarray(log_costs, dtype=float)
        finite = np.isfinite(y)
        if not finite.any():
            self._fit = None
            return
        worst = y[finite].max() + 1.0  # failed points look worse than every success
        y = np.where(finite, y, worst)
        mean, scale = y.mean(), y.std() or 1.0
        y = (y - mean) / scale
        ix = np.asarray(indices, dtype=np.int64)
        if hyper is not None:
            grid = [hyper]
        elif self.hyper is not None and len(y) < 1.25 * self._hyper_n:
            grid = [self.hyper]  # choosing costs a factorisation per grid point
        else:
            grid = [(length, w) for w in self.joint_weights for length in self.LENGTH_SCALES]
            self._hyper_n = len(y)
        best = None
        for length, weight in grid:
            k = self._kernel(ix, ix, length, weight) + self.NOISE * np.eye(len(y))
            try:
                chol = np.linalg.cholesky(k)
            except np.linalg.LinAlgError:
                continue
            alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
            evidence = -0.5 * y @ alpha - np.log(np.diag(chol)).sum()
            if best is None or evidence > best[0] + 1e-12:
                best = (evidence, (length, weight), chol, alpha)
        if best is None:
            self._fit = None
            return
        _, chosen, chol, alpha = best
        if hyper is None:
            self.hyper = chosen
        half = np.linalg.solve(chol, np.eye(len(y)))  # L^-1, so that K^-1 = L^-T L^-1
        self._fit = (ix, chosen, alpha, half, mean, scale)

    def predict(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the log cost at `indices` (the prior before a fit)."""
        n = len(indices)
        if self._fit is None:
            return np.zeros(n), np.ones(n)
        ix, (length, weight), alpha, half, mean, scale = self._fit
        ks = self._kernel(np.asarray(indices, dtype=np.int64), ix, length, weight)
        mu = ks @ alpha
        var = np.clip(1.0 - ((ks @ half.T) ** 2).sum(1), 1e-12, None)
        return mean + scale * mu, scale * np.sqrt(var)


class EvolutionaryStrategy(Strategy):
    """
    A steady-state (mu + lambda) evolutionary search with a surrogate pre-screen.

    1. *Initial population*: `initial` uniformly random points, after the
       default point the tuner tells first. (Spreading them by maximin
       distance instead picks the extremes of every tile range, the worst
       tiles on real cost landscapes: `benchmarks/tuner_quality.py` needed
       2-3x the evaluations to come within 2% on GPU GEMMs.)
    2. *Offspring*: each ask breeds a pool of children from the told points
       (the population: mu = every told point, lambda = 1 per ask): `pool`
       times, a parent by tournament selection (the best-ranked of
       `tournament` uniform draws; rank = cost, then index); the child is a
       random unasked neighbour of the parent (mutation: one single or swap
       move, see `Space`) or, with probability `crossover`, each axis taken
       from the parent or a second tournament winner (kept when that
       combination is legal, mutated when already visited and otherwise
       with probability 1/2). Every unasked neighbour of the `elites` best
       points joins the pool, so the local descent around the incumbent
       always completes, and so do `explore` random unasked points.
    3. *Pre-screen*: a Gaussian-process surrogate of log cost (`Surrogate`,
       refitted on the told costs, at most `TRAINING_CAP` of them) ranks the
       pool by its lower confidence bound, mean - `kappa` * std; the best
       is asked. Within a batch (asks before tells) the points already
       asked are added to the model at its own prediction (the "kriging
       believer"), so a batch spreads instead of clustering.
    4. *Escapes*: with probability `immigrants` an ask is a uniformly random
       unasked point (a random immigrant). When the best cost has not
       improved by 0.1% for `patience` tells (a plateau, or a basin), every
       other ask instead ranks `global_sample` random unasked points from
       the whole space by a more exploratory bound (`explore_kappa`).

    Deterministic for a seed: the random numbers come from the seeded
    generator in a fixed order, candidates are kept sorted, and every
    ranking breaks ties by the lower point index. Never re-asks: the pool
    only ever holds unasked points.
    """

    name = "evolutionary"
    batch_size = 4
    TRAINING_CAP = 64

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
        categorical: float = 1.0,
        joint_weights: tuple[float, ...] | None = None,
        elites: int = 1,
        patience: int = 6,
        global_sample: int = 128,
        explore_kappa: float = 2.0,
    ):
        super().__init__(space, seed)
        self.initial = initial
        self.tournament = tournament
        self.crossover = crossover
        self.immigrants = immigrants
        self.kappa = kappa
        self.pool = pool
        self.explore = explore
        self.elites = elites
        self.patience = patience
        self.global_sample = global_sample
        self.explore_kappa = explore_kappa
        self._best_cost = math.inf
        self._stagnant = 0
        """Tells since the best cost last improved by more than 0.1%."""
        self._model = Surrogate(space, categorical, joint_weights)
        """Fitted on the told costs."""
        self._believer = Surrogate(space, categorical, joint_weights)
        """The model plus this batch's pending points at the model's predictions."""
        self._stale = True
        self._fantasised: list[int] = []

    def _told(self, index: int, cost: float) -> None:
        self._stale = True
        if cost < self._best_cost * (1 - 1e-3):
            self._best_cost, self._stagnant = cost, 0
        else:
            self._stagnant += 1

    # -- the phases ----------------------------------------------------------

    def _next(self) -> int | None:
        if len(self.asked) < self.initial or len(self.told) < 2:
            return self._random_unasked()
        draw = self.rng.random()
        if draw < self.immigrants:
            return self._random_unasked()
        if self._stagnant >= self.patience and draw < 0.5:
            # Stuck on a plateau or in a basin: look anywhere, trusting the
            # model's uncertainty more.
            free = self._unasked()
            if free.size == 0:
                return None
            picks = np.sort(self.rng.choice(free.size, size=min(self.global_sample, free.size), replace=False))
            return self._screen(free[picks].tolist(), self.explore_kappa)
        children = self._offspring()
        if not children:
            return self._random_unasked()
        return self._screen(children)

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
        children: set[int] = {
            j for best in ranked[: self.elites] for j in self.space.neighbours(best) if j not in self.asked
        }
        # Tournament selection: each parent is the best-ranked of
        # `tournament` uniform draws from the population.
        draws = self.rng.integers(len(ranked), size=(self.pool, 2, self.tournament)).min(-1)
        coins = self.rng.random((self.pool, 2))
        for (first, second), (cross, mutate) in zip(draws.tolist(), coins.tolist()):
            parent = ranked[first]
            child: int | None
            if len(ranked) > 1 and cross < self.crossover:
                child = self._cross(parent, ranked[second])
                if child is not None and (child in self.asked or mutate < 0.5):
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

    def _screen(self, children: list[int], kappa: float | None = None) -> int:
        if self._stale:
            indices, costs = self._training_set()
            self._model.fit(indices, [math.log(max(c, 1e-30)) for c in costs])
            self._stale, self._fantasised = False, []
            self._training = indices, costs
        model = self._model
        pending = sorted(self.asked - self.told.keys())
        if pending:
            # Kriging believer: the batch's asked-but-untold points are taken
            # at the model's own prediction, which shrinks its uncertainty
            # there and spreads the batch.
            if pending != self._fantasised:
                indices, costs = self._training
                guess, _ = self._model.predict(pending)
                self._believer.fit(
                    indices + pending,
                    [math.log(max(c, 1e-30)) for c in costs] + guess.tolist(),
                    hyper=self._model.hyper,
                )
                self._fantasised = pending
            model = self._believer
        pool = np.asarray(children)
        mu, sd = model.predict(pool)
        score = mu - (self.kappa if kappa is None else kappa) * sd
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
