"""
A search space: the ordered, finite set of legal points of one kernel.

A point is a dict `knob name -> value`, every value JSON-serialisable: an
int, a float, a str, a bool, or a tuple of ints (lists are normalised to
tuples). The driver builds the space from the choices the passes expose and
passes only legal points (fitting on-chip capacity, dividing what must
divide), so every index of a `Space` may be evaluated.

Neighbourhoods (what the guided strategies move along) are defined on *axes*:

- a numeric knob (int or float, not bool) is one ordinal axis whose candidate
  values are its distinct values, sorted, unless `candidates` gives the order;
- a tuple-of-ints knob whose values all have one length and are not all
  permutations of each other (tile sizes `(m, n, k)`) is split into one
  ordinal axis per component, each with its sorted distinct values;
- every other knob (a str such as a dataflow, a bool, a permutation such as a
  loop order, tuples of varying length) is one categorical axis: its values
  have no order, so any other value is one step away. `candidates` may give
  such a knob's value order; it is then ordinal in that order.

The neighbours of a point are the legal points reached by

1. a *single move*: on an ordinal axis, the nearest legal point in each
   direction along that axis alone (one step, or further when the steps in
   between are illegal, e.g. past a tile that would not divide); on a
   categorical axis, each other value;
2. a *swap move*: two axes changed at once, each by exactly one step (on an
   ordinal axis one position up or down, on a categorical one any other
   value), e.g. `m` doubled while `n` halves, which keeps a tile's footprint
   under the capacity limit where neither single move does.

`SPACE_VERSION` keys the tuning database: bump it whenever the meaning of a
point or the way spaces are built changes, so stale records are not reused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

SPACE_VERSION = 3
"""Bumped whenever the space construction (knobs, their values' meaning) changes. 3: a cpu space's
default point is the one for the key's threads, and a record's estimate is priced for them (version 2's
records of a 2-thread `tune --measure` hold 1-thread estimates)."""

Point = dict[str, Any]


def normalise_value(value: Any) -> Any:
    """A knob value in canonical form: lists become tuples, numpy scalars Python scalars."""
    if isinstance(value, (list, tuple)):
        return tuple(normalise_value(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise TypeError(f"knob value {value!r} is not JSON-serialisable (int, float, str, bool or tuple)")


def normalise_point(point: Mapping[str, Any]) -> Point:
    return {str(k): normalise_value(v) for k, v in point.items()}


def point_key(point: Mapping[str, Any]) -> str:
    """Canonical JSON of a point: sorted keys, no spaces, tuples as lists."""
    return json.dumps(normalise_point(point), sort_keys=True, separators=(",", ":"))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sorted_unique(values: Iterable[Any]) -> tuple[Any, ...]:
    unique = list(dict.fromkeys(values))
    try:
        return tuple(sorted(unique))
    except TypeError:  # mixed types: keep first-appearance order
        return tuple(unique)


@dataclass(frozen=True)
class Axis:
    """One dimension of the neighbourhood structure."""

    knob: str
    component: int | None
    """Index into a split tuple knob's value, or None for a whole knob."""
    values: tuple[Any, ...]
    """Candidate values in order."""
    ordinal: bool

    @property
    def name(self) -> str:
        return self.knob if self.component is None else f"{self.knob}[{self.component}]"


class Space:
    """
    The legal points of one kernel's schedule, in a fixed order.

    `points` are kept in the given order (the driver puts its default first);
    a repeated point is kept once, at its first position. All points must
    have the same knobs. `candidates` optionally fixes, per knob, the order of
    its candidate values (see the module docstring for neighbourhoods).
    """

    def __init__(
        self,
        points: Iterable[Mapping[str, Any]],
        candidates: Mapping[str, Sequence[Any]] | None = None,
    ):
        unique: dict[str, Point] = {}
        for point in points:
            p = normalise_point(point)
            unique.setdefault(point_key(p), p)
        if not unique:
            raise ValueError("a search space needs at least one legal point")
        self.points: tuple[Point, ...] = tuple(unique.values())
        self._index = {key: i for i, key in enumerate(unique)}
        self.knobs: tuple[str, ...] = tuple(self.points[0])
        for p in self.points:
            if set(p) != set(self.knobs):
                raise ValueError(f"point {point_key(p)} has knobs {sorted(p)}, expected {sorted(self.knobs)}")

        candidates = {k: tuple(normalise_value(v) for v in vs) for k, vs in (candidates or {}).items()}
        unknown = set(candidates) - set(self.knobs)
        if unknown:
            raise ValueError(f"candidates for unknown knobs {sorted(unknown)}")
        self.candidates: dict[str, tuple[Any, ...]] = {}
        axes: list[Axis] = []
        for knob in self.knobs:
            values = [p[knob] for p in self.points]
            if knob in candidates:
                order = candidates[knob]
                missing = set(values) - set(order)
                if missing:
                    raise ValueError(f"knob '{knob}': values {sorted(map(str, missing))} not among its candidates")
                self.candidates[knob] = order
                axes.append(Axis(knob, None, order, True))
                continue
            self.candidates[knob] = _sorted_unique(values)
            axes.extend(self._axes_of(knob, values))
        self.axes: tuple[Axis, ...] = tuple(axes)

        lookups = [{v: j for j, v in enumerate(axis.values)} for axis in self.axes]
        coords = np.zeros((len(self.points), len(self.axes)), dtype=np.int64)
        for i, p in enumerate(self.points):
            for a, axis in enumerate(self.axes):
                value = p[axis.knob] if axis.component is None else p[axis.knob][axis.component]
                coords[i, a] = lookups[a][value]
        self.coords = coords
        """`coords[i, a]`: the position of point i's value on axis a."""
        self._by_coords = {tuple(row): i for i, row in enumerate(coords.tolist())}
        self._neighbours: dict[int, tuple[int, ...]] = {}

    @staticmethod
    def _axes_of(knob: str, values: list[Any]) -> list[Axis]:
        if all(_is_number(v) for v in values):
            return [Axis(knob, None, _sorted_unique(values), True)]
        tuples = all(isinstance(v, tuple) and all(_is_number(x) for x in v) for v in values)
        if tuples and len({len(v) for v in values}) == 1:
            permutations = len({tuple(sorted(v)) for v in values}) == 1
            if not permutations:
                length = len(values[0])
                return [Axis(knob, c, _sorted_unique(v[c] for v in values), True) for c in range(length)]
        return [Axis(knob, None, _sorted_unique(values), False)]

    # -- basic queries -------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Point:
        return self.points[index]

    def index(self, point: Mapping[str, Any]) -> int:
        """Position of `point` (lists or tuples alike); KeyError if it is not a legal point."""
        try:
            return self._index[point_key(point)]
        except KeyError:
            raise KeyError(f"point {point_key(point)} is not in the space") from None

    def __contains__(self, point: Mapping[str, Any]) -> bool:
        return point_key(point) in self._index

    def key(self, index: int) -> str:
        return point_key(self.points[index])

    def at(self, coords: Sequence[int]) -> int | None:
        """The point at axis positions `coords`, or None where that combination is illegal."""
        return self._by_coords.get(tuple(int(c) for c in coords))

    # -- neighbourhoods ------------------------------------------------------

    def _steps(self, a: int, c: int) -> list[int]:
        """Positions one step from `c` on axis `a`."""
        axis = self.axes[a]
        if axis.ordinal:
            return [p for p in (c - 1, c + 1) if 0 <= p < len(axis.values)]
        return [p for p in range(len(axis.values)) if p != c]

    def neighbours(self, index: int) -> tuple[int, ...]:
        """Indices of the legal points one single or swap move from `index`, ascending."""
        cached = self._neighbours.get(index)
        if cached is not None:
            return cached
        here = self.coords[index].tolist()
        found: set[int] = set()
        for a, axis in enumerate(self.axes):
            if axis.ordinal:
                for direction in (-1, 1):
                    p = here[a] + direction
                    while 0 <= p < len(axis.values):
                        j = self._by_coords.get(tuple(here[:a] + [p] + here[a + 1 :]))
                        if j is not None:
                            found.add(j)
                            break
                        p += direction
            else:
                for p in self._steps(a, here[a]):
                    j = self._by_coords.get(tuple(here[:a] + [p] + here[a + 1 :]))
                    if j is not None:
                        found.add(j)
        for a, b in combinations(range(len(self.axes)), 2):
            for pa in self._steps(a, here[a]):
                for pb in self._steps(b, here[b]):
                    moved = list(here)
                    moved[a], moved[b] = pa, pb
                    j = self._by_coords.get(tuple(moved))
                    if j is not None:
                        found.add(j)
        found.discard(index)
        result = tuple(sorted(found))
        self._neighbours[index] = result
        return result

    def features(self, categorical: float = 1.0) -> tuple[np.ndarray, list[np.ndarray]]:
        """
        Points as numeric feature rows for surrogate models, and per axis the
        indices of its columns. An ordinal axis is its value's place on
        [0, 1] (`_scaled`); a categorical axis is one-hot, two different values
        `categorical` apart.
        """
        columns, groups, width = [], [], 0
        for a, axis in enumerate(self.axes):
            position = self.coords[:, a]
            if axis.ordinal:
                block = self._scaled(axis)[position][:, None]
            else:
                block = np.eye(len(axis.values))[position] * (categorical / np.sqrt(2))
            columns.append(block)
            groups.append(np.arange(width, width + block.shape[1]))
            width += block.shape[1]
        features = np.hstack(columns) if columns else np.zeros((self.size, 0))
        return features, groups

    @staticmethod
    def _scaled(axis: Axis) -> np.ndarray:
        """An ordinal axis's values placed on [0, 1]: by logarithm when they are
        ascending positive numbers (tile 7 sits next to 8, not as far as 8
        from 14), else by rank. Powers of two are evenly spaced either way."""
        values = axis.values
        if len(values) < 2:
            return np.zeros(len(values))
        if all(_is_number(v) and v > 0 for v in values) and list(values) == sorted(values):
            logs = np.log(np.asarray(values, dtype=float))
            return (logs - logs[0]) / (logs[-1] - logs[0])
        return np.arange(len(values)) / (len(values) - 1)

    def __repr__(self) -> str:
        axes = ", ".join(f"{a.name}:{len(a.values)}" for a in self.axes)
        return f"Space({self.size} points; {axes})"
