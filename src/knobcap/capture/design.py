"""Experimental design: which knob and switch settings to record, and in which order.

A full grid wastes takes (11 x 11 x 2 x 2 = 484 reamps for two knobs and two switches), and a coarse
one puts its points where the dial is round, not where the sound changes. A design has training
settings, from one of two methods chosen by the budget (:func:`choose_method`), anchors and
held-out settings:

* **coverage** (:mod:`knobcap.capture.coverage`, issue 11), when each switch combination gets at
  least ``3^k - 3`` settings (two fewer than cover the boundary of the knob cube from points on it:
  6 for two knobs; :func:`coverage_settings`): no setting a user can dial is far from a recorded one
  of its switch combination. It minimises the largest and the mean distance to the nearest recorded
  setting over a lattice of the knob cube, of each of its faces (a knob at an end), of its corners
  (a point off a face counts as farther from the face's settings), and of the cube against every
  combination's points together. Users play at the extremes, and a model extrapolates
  there, so the faces and corners are covered from points *on* them. Distances are in the knobs'
  design coordinates (:func:`knobcap.capture.coverage.design_space`: half the screened warp, half the
  taper).
* **the sliced Latin hypercube** (``method="lhs"``), with fewer settings a combination: the whole
  design must then show the model many levels of every knob, so that it learns each knob's course
  across the combinations (at 16 takes of the TS808, a boundary design of corners alone scored a
  median ESR of 0.14, the Latin design 0.03). One slice per switch combination (Qian 2012). With
  ``s`` slices of ``m`` points, each slice is a Latin hypercube on ``m`` coarse levels and the union
  is one on ``n = m s`` fine levels. A swap optimiser then minimises the Morris-Mitchell criterion
  of the union plus that of each slice, each with distances measured against the spacing its number
  of points allows in ``k`` knob dimensions (``N^(-1/k)``):

      phi = sum_{i<j} (d_ij n^(1/k))^-p + sum_slices sum_{i<j in slice} (d_ij m^(1/k))^-p,   p = 15

  (``d_ij`` = Euclidean distance of the knob coordinates; ``n`` points in all, ``m`` in the slice);
  dividing by ``n^(p/k)`` gives pair weights ``1 + (n/m)^(p/k)`` within a slice and 1 across. With
  ``edges`` (issue 11's first step), within each slice the point of the lowest level in a knob's
  dimension is put at ``u = 0`` and that of the highest at ``u = 1``; the optimiser runs half its
  steps unsnapped, then polishes with the snapped points, and of four such optimisations the one
  with the smallest fill distance is kept. A combination with fewer than three settings keeps them
  spread instead. It spreads the points' projections, but leaves most of the faces and corners to
  be extrapolated to: with 8 settings a combination its worst settings were all there.

  Either way, when the switch combinations outnumber the budget, or do not divide it, combinations
  are allocated greedily so that every switch position (and every pair of positions of two
  switches) is recorded about equally often.
* **anchors**: corners of the knob cube (every knob at its minimum and maximum). Corners come in
  complementary pairs; a switch combination with two or more anchors gets whole pairs.
* **held-out** settings: random, never trained on, one of them within 10 % of a knob's end, where
  errors concentrate.

Knob values are rounded to what a user can dial (a hundredth of the range, e.g. 0.1 on a 0-10 dial; 3
significant digits on a log knob) and every coordinate is recomputed from the rounded values.

**Order.** The takes are ordered as an open travelling-salesman path (nearest neighbour from every
start, then 2-opt) with the cost of going from setting ``a`` to setting ``b``

    c(a, b) = sum_k tau_turn |p_k(a) - p_k(b)| + tau_touch (knobs touched) + tau_flip (switches flipped)

where ``p`` is the knob's rotation (what the hand does, not ``u``). The session time is
``takes x (signal length + per-take overhead) + sum of the moves``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations, pairwise
from typing import Literal

import numpy as np

from knobcap import limits
from knobcap.capture.coverage import boundary_settings, coverage_design, design_space
from knobcap.controls import Controls, Knob, Setting, setting_from_units

Role = Literal["train", "anchor", "holdout"]
Method = Literal["coverage", "lhs"]
METHODS: tuple[str, ...] = ("coverage", "lhs")
ROLES: tuple[str, ...] = ("train", "anchor", "holdout")

_PHI_POWER = 15.0
_SNAP_FROM = 0.5  # share of the optimiser's steps run before the extreme points go to the faces
_EDGE_RESTARTS = 4  # edge-covering designs: optimise this many and keep the best-filled
_EDGE = 0.1  # "near an edge": within 10 % of a knob's end (in u)


class DesignError(ValueError):
    """A design cannot be made as asked; the message says why and what to ask instead."""


# ------------------------------------------------------------------------------------------ costs
@dataclass(frozen=True)
class MoveCosts:
    """Seconds a person spends between takes (assumed figures; change them for a robot).

    ``turn``: a full rotation of a knob (turning carefully and reading the dial); ``touch``: reaching
    for a knob at all; ``flip``: one switch; ``take``: per take (arm, play, stop, name and save).
    """

    turn: float = 4.0
    touch: float = 3.0
    flip: float = 2.0
    take: float = 20.0

    def describe(self) -> str:
        return (f"{self.turn:g} s per full knob turn + {self.touch:g} s per knob touched, "
                f"{self.flip:g} s per switch flip, {self.take:g} s per take to arm, play and save")


DEFAULT_COSTS = MoveCosts()


@dataclass(frozen=True)
class SessionTime:
    """How long recording a plan takes: ``takes x (signal + overhead) + moves``."""

    takes: int
    signal_seconds: float
    overhead_seconds: float
    move_seconds: float
    knob_turns: float  # total rotations
    knobs_touched: int
    flips: int

    @property
    def total_seconds(self) -> float:
        return self.takes * (self.signal_seconds + self.overhead_seconds) + self.move_seconds

    @property
    def minutes(self) -> float:
        return self.total_seconds / 60.0

    def describe(self) -> str:
        return (f"{self.takes} takes x ({self.signal_seconds:g} s signal + {self.overhead_seconds:g} s "
                f"per take) + {self.move_seconds / 60:.1f} min of control moves ({self.knobs_touched} "
                f"knob moves, {self.knob_turns:.1f} turns, {self.flips} switch flips) = about "
                f"{self.minutes:.0f} min")


def _rotations(controls: Controls, settings: Sequence[Mapping[str, object]]) -> np.ndarray:
    return np.array([[k.rotation(float(s[k.name])) for k in controls.knobs]  # type: ignore[arg-type]
                     for s in settings], dtype=float).reshape(len(settings), len(controls.knobs))


def _switch_codes(controls: Controls, settings: Sequence[Mapping[str, object]]) -> np.ndarray:
    return np.array([[sw.positions.index(str(s[sw.name])) for sw in controls.switches]
                     for s in settings], dtype=int).reshape(len(settings), len(controls.switches))


def cost_matrix(controls: Controls, settings: Sequence[Mapping[str, object]],
                costs: MoveCosts = DEFAULT_COSTS) -> np.ndarray:
    """Seconds to go from setting ``i`` to setting ``j`` (symmetric, zero diagonal)."""
    p = _rotations(controls, settings)
    s = _switch_codes(controls, settings)
    delta = np.abs(p[:, None, :] - p[None, :, :])
    flips = (s[:, None, :] != s[None, :, :]).sum(axis=2)
    return (costs.turn * delta.sum(axis=2) + costs.touch * (delta > 1e-9).sum(axis=2)
            + costs.flip * flips)


def session_time(controls: Controls, settings: Sequence[Mapping[str, object]], signal_seconds: float,
                 costs: MoveCosts = DEFAULT_COSTS) -> SessionTime:
    """The time to record ``settings`` in the order given."""
    p = _rotations(controls, settings)
    s = _switch_codes(controls, settings)
    step = np.abs(np.diff(p, axis=0))
    flips = int((np.diff(s, axis=0) != 0).sum())
    touched = int((step > 1e-9).sum())
    turns = float(step.sum())
    moves = costs.turn * turns + costs.touch * touched + costs.flip * flips
    return SessionTime(len(settings), float(signal_seconds), costs.take, float(moves), turns, touched,
                       flips)


def order_path(cost: np.ndarray) -> list[int]:
    """An open travelling-salesman path over a symmetric cost matrix (free start and end).

    Nearest neighbour from every start, keep the cheapest, then 2-opt (reverse ``path[i:j+1]`` while
    it lowers the cost) until no reversal helps.
    """
    n = len(cost)
    if n <= 2:
        return list(range(n))
    best: list[int] = []
    best_cost = math.inf
    for start in range(n):
        path = [start]
        free = np.ones(n, bool)
        free[start] = False
        total = 0.0
        for _ in range(n - 1):
            row = np.where(free, cost[path[-1]], np.inf)
            nxt = int(np.argmin(row))
            total += row[nxt]
            path.append(nxt)
            free[nxt] = False
        if total < best_cost - 1e-12:
            best, best_cost = path, total
    return _two_opt(best, cost)


def _two_opt(path: list[int], cost: np.ndarray) -> list[int]:
    order = np.array(path)
    n = len(order)
    improved = True
    while improved:
        improved = False
        for i in range(n - 1):
            j = np.arange(i + 1, n)
            a, b = order[i - 1] if i > 0 else -1, order[i]
            c, d = order[j], np.where(j + 1 < n, order[np.minimum(j + 1, n - 1)], -1)
            old = np.where(d >= 0, cost[c, np.maximum(d, 0)], 0.0)
            new = np.where(d >= 0, cost[b, np.maximum(d, 0)], 0.0)
            if a >= 0:
                old = old + cost[a, b]
                new = new + cost[a, c]
            gain = old - new
            k = int(np.argmax(gain))
            if gain[k] > 1e-9:
                order[i:j[k] + 1] = order[i:j[k] + 1][::-1].copy()
                improved = True
    return [int(x) for x in order]


def path_cost(cost: np.ndarray, order: Sequence[int]) -> float:
    return float(sum(cost[a, b] for a, b in pairwise(order)))


# -------------------------------------------------------------------------- switch-combination balance
def balanced_combinations(controls: Controls, n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """``n`` switch combinations spread evenly: each combination about ``n / |C|`` times, and, when
    ``n`` is not a multiple, the extra ones (or all, when ``n < |C|``) chosen greedily so that every
    position of every switch, and every pair of positions of two switches, appears about equally often.
    """
    combos = controls.switch_combinations()
    if not controls.switches:
        return [{} for _ in range(n)]
    full, extra = divmod(n, len(combos))
    chosen = [c for c in combos for _ in range(full)]
    names = [s.name for s in controls.switches]
    single: dict[tuple[str, str], int] = {}
    pair: dict[tuple[str, str, str, str], int] = {}
    available = list(range(len(combos)))
    for _ in range(extra):
        scores = []
        for index in available:
            combo = combos[index]
            score = sum((single.get((k, combo[k]), 0) + 1) ** 2 * 100 for k in names)
            score += sum((pair.get((a, combo[a], b, combo[b]), 0) + 1) ** 2
                         for a, b in combinations(names, 2))
            scores.append(score + rng.random() * 0.5)
        pick = available.pop(int(np.argmin(scores)))
        combo = combos[pick]
        for k in names:
            single[(k, combo[k])] = single.get((k, combo[k]), 0) + 1
        for a, b in combinations(names, 2):
            key = (a, combo[a], b, combo[b])
            pair[key] = pair.get(key, 0) + 1
        chosen.append(combo)
    return chosen


# ------------------------------------------------------------------------------- sliced maximin LHS
def _phi_rows(d2: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return weights * d2 ** (-_PHI_POWER / 2)


def _pair_energy(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances of all pairs (diagonal ``inf``) and their weighted Morris-Mitchell terms."""
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    d2[d2 == 0.0] = 1e-12  # coinciding fixed points
    np.fill_diagonal(d2, np.inf)
    return d2, _phi_rows(d2, weights)


def _edge_flags(sizes: Sequence[int], dims: int, pinned: np.ndarray, groups: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Which slices snap their lowest / highest point to 0 / 1 in each dimension: those whose fixed
    points do not already sit at that end, and only when the budget allows it: the slice has three
    or more points with its fixed ones (two at the ends, one inside), and a lone point is never
    asked to be at both ends."""
    s = len(sizes)
    low = np.ones((s, dims), bool)
    high = np.ones((s, dims), bool)
    n = sum(sizes)
    for t in range(s):
        mine = pinned[groups[n:] == t]
        if sizes[t] + len(mine) < 3:
            low[t] = high[t] = False
            continue
        if len(mine):
            low[t] &= ~np.any(mine <= 1e-9, axis=0)
            high[t] &= ~np.any(mine >= 1.0 - 1e-9, axis=0)
        if sizes[t] == 1:
            both = low[t] & high[t]
            low[t] &= ~both
            high[t] &= ~both
    return low, high


def _snapped_column(levels: np.ndarray, members: Sequence[np.ndarray], low: np.ndarray,
                    high: np.ndarray, n: int) -> np.ndarray:
    """Level centres ``(level + 1/2) / n``, with each slice's lowest point at 0 and highest at 1 where
    ``low`` / ``high`` (one flag a slice) ask for it."""
    col = (levels + 0.5) / n
    for t, idx in enumerate(members):
        if len(idx) == 0:
            continue
        ranked = idx[np.argsort(levels[idx], kind="stable")]
        if low[t]:
            col[ranked[0]] = 0.0
        if high[t]:
            col[ranked[-1]] = 1.0
    return col


def sliced_maximin_lhs(slice_sizes: Sequence[int], dims: int, rng: np.random.Generator,
                       iterations: int | None = None, fixed: np.ndarray | None = None,
                       fixed_slices: Sequence[int] = (), edges: bool = False
                       ) -> tuple[np.ndarray, np.ndarray]:
    """A sliced Latin hypercube in ``[0, 1]^dims`` optimised for distance between points.

    Returns ``(x, slice_of)``: ``x[i]`` is point ``i`` at the centres ``(level + 1/2) / n`` of ``n``
    levels and ``slice_of[i]`` its slice. With equal slices of ``m`` points the design is exactly
    sliced (every slice a Latin hypercube on ``m`` levels); with unequal ones only the union is Latin
    and the criterion spreads each slice. Swaps keep these properties: in one dimension, two points
    exchange their levels when they share a slice or the same coarse level. ``fixed`` points (e.g. the
    anchors, in slices ``fixed_slices``; an index past the last slice means a slice of their own)
    never move but count in the criterion, so the design keeps away from them.

    ``edges``: in each slice and dimension, the point of the lowest level sits at 0 and that of the
    highest at 1 (unless a fixed point of the slice is already there), so every slice records each
    dimension at both ends; the other points keep their level centres, and the optimiser chooses
    *which* points go to the faces. Levels stay Latin; only the two extreme coordinates move.
    """
    sizes = [int(m) for m in slice_sizes if m > 0]
    n = sum(sizes)
    slice_of = np.repeat(np.arange(len(sizes)), sizes)
    if n == 0 or dims == 0:
        return np.zeros((n, dims)), slice_of
    s = len(sizes)
    strict = len(set(sizes)) == 1
    levels = np.zeros((n, dims), dtype=int)
    if strict:
        m = sizes[0]
        for d in range(dims):
            owner = np.stack([rng.permutation(s) for _ in range(m)])  # owner[c, t]: fine offset
            for t in range(s):
                coarse = rng.permutation(m)
                levels[slice_of == t, d] = coarse * s + owner[coarse, t]
    else:
        for d in range(dims):
            levels[:, d] = rng.permutation(n)
    coarse_size = s if strict else n
    pinned = np.zeros((0, dims)) if fixed is None else np.asarray(fixed, float).reshape(-1, dims)
    groups = np.concatenate([slice_of, np.asarray(fixed_slices, int).reshape(len(pinned))])
    members = [np.flatnonzero(slice_of == t) for t in range(s)]
    low, high = _edge_flags(sizes, dims, pinned, groups)
    if not edges:
        low[:] = high[:] = False
    snap = False
    x = np.vstack([(levels + 0.5) / n, pinned])
    total = len(x)
    counts = np.bincount(groups).astype(float)
    boost = 1.0 + (total / counts[groups]) ** (_PHI_POWER / dims)
    weights = np.where(groups[:, None] == groups[None, :], boost[:, None], 1.0)
    np.fill_diagonal(weights, 0.0)
    d2, energy = _pair_energy(x, weights)
    log_phi = math.log(energy.sum() / 2)
    steps = iterations if iterations is not None else min(30_000, 4000 + 150 * n * max(1, dims // 2))
    snap_from = int(_SNAP_FROM * steps) if (low.any() or high.any()) else steps + 1
    threshold0 = 0.02
    for it in range(steps + 1):
        if it == snap_from:  # the spread is found: put the extreme points on the faces, then polish
            snap = True
            x[:n] = np.stack([_snapped_column(levels[:, d], members, low[:, d], high[:, d], n)
                              for d in range(dims)], axis=1)
            d2, energy = _pair_energy(x, weights)
            log_phi = math.log(energy.sum() / 2)
        if it == steps:
            break
        d = int(rng.integers(dims))
        a = int(rng.integers(n))
        if strict:
            eligible = np.flatnonzero((slice_of == slice_of[a])
                                      | (levels[:, d] // coarse_size == levels[a, d] // coarse_size))
        else:
            eligible = np.arange(n)
        eligible = eligible[eligible != a]
        if eligible.size == 0:
            continue
        b = int(eligible[rng.integers(eligible.size)])
        if snap:
            if _snapped_swap(x, d2, energy, levels, weights, members, low, high, n, a, b, d,
                             log_phi, threshold0 * (1.0 - it / steps), rng):
                log_phi = math.log(energy.sum() / 2)
            continue
        col = x[:, d]
        xa, xb = col[a], col[b]
        row_a = d2[a] - (xa - col) ** 2 + (xb - col) ** 2
        row_b = d2[b] - (xb - col) ** 2 + (xa - col) ** 2
        row_a[a] = row_b[b] = np.inf
        row_a[b] = row_b[a] = d2[a, b]
        new_a, new_b = _phi_rows(row_a, weights[a]), _phi_rows(row_b, weights[b])
        delta = new_a.sum() + new_b.sum() - energy[a].sum() - energy[b].sum()
        phi = math.exp(log_phi)
        if phi + delta <= 0:
            continue
        new_log = math.log(phi + delta)
        threshold = threshold0 * (1.0 - it / steps)
        if new_log - log_phi < threshold * rng.random():
            x[a, d], x[b, d] = xb, xa
            levels[a, d], levels[b, d] = levels[b, d], levels[a, d]
            for i, row, e in ((a, row_a, new_a), (b, row_b, new_b)):
                d2[i], d2[:, i] = row, row
                energy[i], energy[:, i] = e, e
            log_phi = new_log
        if it % 1000 == 999:  # no drift from the running updates
            log_phi = math.log(energy.sum() / 2)
    return x[:n], slice_of


def _snapped_swap(x: np.ndarray, d2: np.ndarray, energy: np.ndarray, levels: np.ndarray,
                  weights: np.ndarray, members: Sequence[np.ndarray], low: np.ndarray,
                  high: np.ndarray, n: int, a: int, b: int, d: int, log_phi: float, threshold: float,
                  rng: np.random.Generator) -> bool:
    """Try exchanging the levels of points ``a`` and ``b`` in dimension ``d`` of a design whose slices
    snap their extreme points to the faces (up to four coordinates move); apply it when the
    threshold-accepting rule takes it. Returns whether anything was changed."""
    new_levels = levels[:, d].copy()
    new_levels[a], new_levels[b] = new_levels[b], new_levels[a]
    col = x[:, d]
    new_col = col.copy()
    new_col[:n] = _snapped_column(new_levels, members, low[:, d], high[:, d], n)
    changed = np.flatnonzero(new_col != col)
    if changed.size == 0:
        levels[:, d] = new_levels
        return False
    rows = {}
    old_sum = sum(float(energy[i].sum()) for i in changed)
    old_sum -= sum(float(energy[i, j]) for i, j in combinations(changed, 2))
    new_sum = 0.0
    for i in changed:
        row = np.maximum(d2[i] - (col[i] - col) ** 2 + (new_col[i] - new_col) ** 2, 1e-12)
        row[i] = np.inf
        rows[i] = (row, _phi_rows(row, weights[i]))
        new_sum += float(rows[i][1].sum())
    new_sum -= sum(float(rows[i][1][j]) for i, j in combinations(changed, 2))
    phi = math.exp(log_phi)
    if phi + new_sum - old_sum <= 0:
        return False
    if math.log(phi + new_sum - old_sum) - log_phi >= threshold * rng.random():
        return False
    x[:, d] = new_col
    levels[:, d] = new_levels
    for i, (row, e) in rows.items():
        d2[i], d2[:, i] = row, row
        energy[i], energy[:, i] = e, e
    return True


# ------------------------------------------------------------------------------------------ design
@dataclass(frozen=True)
class DesignPoint:
    setting: Setting
    role: Role


@dataclass(frozen=True)
class Design:
    """Planned settings, in recording order, with the role of each."""

    controls: Controls
    points: tuple[DesignPoint, ...]
    seed: int = 0
    costs: MoveCosts = field(default_factory=MoveCosts)
    method: Method = "coverage"  # how the training settings were chosen (:func:`choose_method`)

    @property
    def settings(self) -> list[Setting]:
        return [p.setting for p in self.points]

    @property
    def roles(self) -> list[Role]:
        return [p.role for p in self.points]

    def count(self, role: Role) -> int:
        return sum(p.role == role for p in self.points)

    def time(self, signal_seconds: float) -> SessionTime:
        return session_time(self.controls, self.settings, signal_seconds, self.costs)


@dataclass(frozen=True)
class DesignSize:
    """How many settings of each role a design has."""

    train: int
    anchor: int
    holdout: int

    @property
    def total(self) -> int:
        return self.train + self.anchor + self.holdout


def _effective_combos(controls: Controls) -> int:
    return min(len(controls.switch_combinations()), 4)


def _knob_points(k: int) -> int:
    """Space-filling points per switch combination: 4 for one or two knobs, ~3.6 more per knob."""
    return max(4, round(4 + 3.6 * (k - 2)))


def default_anchors(controls: Controls) -> int:
    return 2 if designed_knobs(controls) == 1 else 4


def default_holdouts(controls: Controls) -> int:
    k = designed_knobs(controls)
    return 2 if k == 1 else 4 if k <= 3 else 6


def default_size(controls: Controls, quick: bool = False) -> DesignSize:
    """The default number of settings: about 4 space-filling points per switch combination for two
    knobs (more per knob; at most 4 combinations' worth, spread by balance beyond), plus anchors and
    held-out settings. ``quick``: half the space-filling points and fewer held out (a demo session).
    """
    _require_knobs(controls)
    train = _knob_points(designed_knobs(controls)) * _effective_combos(controls)
    holdout = default_holdouts(controls)
    if quick:
        train = max(minimum_train(controls), train // 2)
        holdout = max(1, holdout // 2)
    return DesignSize(train, default_anchors(controls), holdout)


def minimum_train(controls: Controls) -> int:
    """Fewest space-filling settings: two, and at least one per position of the widest switch."""
    return max([2, *(len(s.positions) for s in controls.switches)])


def size_from_total(controls: Controls, total: int) -> DesignSize:
    """Split ``total`` takes into space-filling, anchor and held-out settings."""
    _require_knobs(controls)
    holdout = min(default_holdouts(controls), max(1, round(0.15 * total)))
    anchor = default_anchors(controls)
    if total - holdout - anchor < minimum_train(controls) + 2 and anchor > 2:
        anchor = 2
    train = total - holdout - anchor
    smallest = minimum_train(controls) + 2 + 1
    if train < minimum_train(controls):
        raise DesignError(
            f"--n {total} is too few takes for these controls: a plan needs at least {smallest} (at "
            f"least {minimum_train(controls)} space-filling settings so that every switch position is "
            f"recorded, 2 anchors at the knobs' ends and 1 held-out setting). Ask for more takes.")
    return DesignSize(train, anchor, holdout)


def designed_knobs(controls: Controls) -> int:
    """How many knobs a design spreads takes over: all but the held output-gain knobs."""
    return len(controls.knobs) - len(held_gain_knobs(controls))


def held_gain_knobs(controls: Controls) -> dict[str, float]:
    """The output-gain knobs (``gain_db``, :mod:`knobcap.capture.gain_knobs`) a design holds at their
    defaults, by name: the model never sees them, so takes spread over the other knobs only (none when
    every knob is one)."""
    held = {k.name: k.default_value for k in controls.knobs if k.gain_db is not None}
    return held if len(held) < len(controls.knobs) else {}


def audible_space(controls: Controls) -> Controls:
    """The controls with each knob that has an ``audible`` range (screened: the device is silent beyond
    it) narrowed to that range, for choosing settings: a silent take teaches a model nothing, so the
    design's ends of such a knob are the ends of its range that sound. The part of its warp inside the
    range is kept (renormalised), else its taper. The same controls when no knob has one."""
    knobs = tuple(_audible_knob(k) if k.audible is not None and k.gain_db is None else k
                  for k in controls.knobs)
    return controls if knobs == controls.knobs else replace(controls, knobs=knobs)


def _audible_knob(knob: Knob) -> Knob:
    low, high = knob.audible  # type: ignore[misc]
    warp = None
    if knob.warp is not None:
        table = np.asarray(knob.warp)
        turns = np.linspace(knob.rotation(low), knob.rotation(high), len(table))
        inside = np.interp(turns, np.linspace(0.0, 1.0, len(table)), table)
        if inside[-1] > inside[0]:
            inside = (inside - inside[0]) / (inside[-1] - inside[0])
            if np.all(np.diff(inside) > 0):
                warp = tuple(float(u) for u in inside)
    return Knob(knob.name, low, high, default=min(max(knob.default_value, low), high), taper=knob.taper,
                unit=knob.unit, warp=warp)


def _require_knobs(controls: Controls) -> None:
    if not controls.knobs:
        raise DesignError(
            f"{controls.source or 'controls'}: there are no knobs, so there is nothing to design; "
            "record each switch combination once, or add the device's knobs to controls.toml.")


def _anchor_units(k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` corners of ``[0, 1]^k`` in complementary pairs, so every knob is at 0 and at 1."""
    if k == 1:
        return np.array([[0.0], [1.0]] * count)[:count]
    corners: list[np.ndarray] = []
    while len(corners) < count:
        if not corners:
            c = np.zeros(k)
        elif k == 2 and len(corners) == 2:
            c = np.array([0.0, 1.0])
        else:  # a corner that differs from the first one in about half the knobs
            c = np.zeros(k)
            c[rng.permutation(k)[: k // 2]] = 1.0
        corners.extend([c, 1.0 - c])
    return np.array(corners[:count])


def _same_combo(controls: Controls, a: Mapping[str, object], b: Mapping[str, object]) -> bool:
    return all(a[s.name] == b[s.name] for s in controls.switches)


def _holdouts(controls: Controls, train: list[Setting], count: int, rng: np.random.Generator
              ) -> list[Setting]:
    """Random settings apart from the training ones, and from each other; the first within 10 % of
    one knob's end.

    A candidate is uniform in ``u`` over [0.1, 0.9] per knob and qualifies when it is at least half
    the training design's median nearest-neighbour distance away from every training setting of its
    switch combination; of the first 12 that qualify, the one farthest from the held-out settings
    already chosen is kept (so they do not bunch up).
    """
    k = len(controls.knobs)
    train_u = knob_units(controls, train)
    gaps = []
    for i, s in enumerate(train):
        same = [j for j, t in enumerate(train) if j != i and _same_combo(controls, s, t)]
        if same:
            gaps.append(np.min(np.linalg.norm(train_u[same] - train_u[i], axis=1)))
    radius = 0.5 * float(np.median(gaps)) if gaps else 0.0
    combos = balanced_combinations(controls, count, rng)
    combos = [combos[i] for i in rng.permutation(count)]
    chosen: list[Setting] = []
    for index, combo in enumerate(combos):
        qualified: list[tuple[float, Setting]] = []
        best, best_gap = None, -1.0
        for _ in range(400):
            u = rng.uniform(_EDGE, 1.0 - _EDGE, size=k)
            if index == 0:
                knob = int(rng.integers(k))
                edge = rng.uniform(0.02, _EDGE - 0.015)  # still within 10 % once dialled
                u[knob] = edge if rng.random() < 0.5 else 1.0 - edge
            setting = setting_from_units(controls, u, combo)
            su = controls.unit_knobs(setting)
            others = [t for t in (*train, *chosen) if _same_combo(controls, setting, t)]
            gap = min((float(np.linalg.norm(controls.unit_knobs(t) - su)) for t in others),
                      default=math.inf)
            if gap > best_gap:
                best, best_gap = setting, gap
            if gap >= radius and gap > 0.0:
                spread = min((float(np.linalg.norm(controls.unit_knobs(h) - su)) for h in chosen),
                             default=math.inf)
                qualified.append((spread, setting))
                if len(qualified) == 12:
                    break
        if qualified:
            chosen.append(max(qualified, key=lambda pair: pair[0])[1])
        elif best is not None and best_gap > 0.0:
            chosen.append(best)
        else:
            raise DesignError("could not place a held-out setting apart from the training ones; "
                              "ask for fewer takes or change the seed.")
    return chosen


def _fill(x: np.ndarray, slice_of: np.ndarray, fixed: np.ndarray, fixed_slices: Sequence[int],
          reference: np.ndarray) -> float:
    """Mean over slices of the fill distance: the largest distance from a reference point to the
    nearest design point (fixed ones included) of the slice."""
    groups = np.concatenate([slice_of, np.asarray(fixed_slices, int)])
    points = np.vstack([x, fixed]) if len(fixed) else x
    gaps = []
    for t in np.unique(slice_of):
        mine = points[groups == t]
        gaps.append(float(np.max(np.min(np.linalg.norm(reference[:, None] - mine[None], axis=2), axis=1))))
    return float(np.mean(gaps))


def coverage_settings(knobs: int) -> int:
    """Settings a switch combination needs before the coverage design is chosen: the boundary's
    (:func:`boundary_settings`) less two, and at least 2 (6 for two knobs: the square's 4 corners and
    2 more, which the design's union term spreads across the combinations)."""
    return max(2, boundary_settings(knobs) - 2)


def choose_method(controls: Controls, size: DesignSize) -> Method:
    """``"coverage"`` when each switch combination gets at least :func:`coverage_settings` recorded
    settings (space-filling + anchors), else ``"lhs"``.

    Measured on the TS808 (``benchmarks/data_efficiency.py``, 3 seeds, docs/results.md). With 4 a
    combination (16 takes) the boundary design spends the takes on corners, and the whole design
    shows the model too few levels of each knob to learn its course (median ESR 0.14 against the
    Latin design's 0.031). With 6 (24 takes, what ``plan --n 28`` trains on) it has the lower p90 and
    max at every training budget measured: 0.044 / 0.060 against 0.050 / 0.106 at 2,000 steps, 0.028 /
    0.040 against 0.028 / 0.081 at 6,000 (the Latin design's worst settings are at a knob's end, tone 10
    in one combination), and on average at 15,000; its median is 1.3-1.5x higher at 2,000 and 6,000
    steps and level at 15,000. The worst setting is what a user notices, so from 6 a combination the
    coverage design is chosen. With 7 (``plan --n 32``) it wins all three at 2,000 steps (0.0204 /
    0.0384 / 0.0562 against 0.0224 / 0.0518 / 0.0909) and p90 and max at 6,000; with 8 too (session 7).
    """
    used = max(1, min(controls.combination_count, size.train))
    per_combination = (size.train + size.anchor) / used
    return "coverage" if per_combination >= coverage_settings(designed_knobs(controls)) else "lhs"


def coverage_threshold(controls: Controls) -> int | None:
    """The fewest takes in all (:func:`size_from_total`) for which the boundary-covering design is
    chosen; ``None`` when no plan within the take limit gets it.

    With ``need`` settings a combination and ``C`` combinations, a plan of ``need C`` space-filling
    settings plus the most anchors and held-out settings a plan has always qualifies, so the search
    stops there even when the take limit is raised far above it."""
    smallest = minimum_train(controls) + 3
    sure = (coverage_settings(designed_knobs(controls)) * controls.combination_count + minimum_train(controls)
            + default_anchors(controls) + default_holdouts(controls))
    for total in range(smallest, min(limits.MAX_TAKES.value, sure) + 1):
        try:
            if choose_method(controls, size_from_total(controls, total)) == "coverage":
                return total
        except DesignError:
            continue
    return None


def check_method(method: str, label: str) -> None:
    """Refuse a design method other than auto, coverage or lhs, naming it as ``label`` does."""
    if method not in ("auto", *METHODS):
        raise DesignError(f"{label} {method!r}: use one of auto, {', '.join(METHODS)}.")


def describe_method(design: Design, forced: bool = False) -> str:
    """A sentence for ``knobcap plan``: which design, and when the other one would be chosen
    (``forced``: the user chose it with ``--method``)."""
    controls = design.controls
    held = held_gain_knobs(controls)
    gains = "".join(f" {name} is an output gain (its gain_db line in controls.toml): every take records "
                    f"it at {value:g}, and the model applies it exactly at any setting."
                    for name, value in held.items())
    need = coverage_settings(designed_knobs(controls))
    covered = "each switch combination covered to its knobs' ends and corners from takes on them"
    if forced:
        kind = covered if design.method == "coverage" else "a sliced Latin hypercube"
        return (f"Design: {kind}, as --method asked (without it, knobcap takes the coverage design from "
                f"{need} settings a switch combination on).{gains}")
    if design.method == "coverage":
        return f"Design: {covered} ({need} or more settings a combination).{gains}"
    text = (f"Design: a sliced Latin hypercube, which shows the model many levels of every knob (fewer "
            f"than {need} settings a switch combination")
    threshold = coverage_threshold(controls)
    return text + (f"; from --n {threshold} on, knobcap covers every knob's ends and corners from takes "
                   "on them)." if threshold is not None else ").") + gains


def initial_design(controls: Controls, size: DesignSize | int | None = None, seed: int = 0,
                   costs: MoveCosts = DEFAULT_COSTS, iterations: int | None = None,
                   edges: bool = True, method: Method | Literal["auto"] = "auto") -> Design:
    """The first plan: coverage or sliced maximin LHS + anchors + held-out settings, in recording order.

    ``size``: a :class:`DesignSize`, a total number of takes, or ``None`` for :func:`default_size`.
    ``method``: ``"auto"`` (:func:`choose_method`), ``"coverage"`` or ``"lhs"``. ``edges`` (LHS):
    every switch combination with three or more settings records each knob at both ends (``False``:
    the design before issue 11, ends only at the anchors). Deterministic for a ``seed``.
    """
    _require_knobs(controls)
    held = held_gain_knobs(controls)
    if held:  # output-gain knobs are applied, not learned: every take records them at their defaults
        reduced = replace(controls, knobs=tuple(k for k in controls.knobs if k.name not in held))
        design = initial_design(reduced, size, seed, costs, iterations, edges, method)
        points = tuple(DesignPoint(controls.validate_setting(p.setting | held), p.role)
                       for p in design.points)
        return replace(design, controls=controls, points=points)
    space = audible_space(controls)
    if space is not controls:  # knobs silent beyond a range: every take within it
        design = initial_design(space, size, seed, costs, iterations, edges, method)
        settings = [controls.validate_setting(p.setting) for p in design.points]
        order = order_path(cost_matrix(controls, settings, costs))
        points = tuple(DesignPoint(settings[i], design.points[i].role) for i in order)
        return replace(design, controls=controls, points=points)
    if size is None:
        size = default_size(controls)
    elif isinstance(size, int):
        size = size_from_total(controls, size)
    check_method(method, "design method")
    if method == "auto":
        method = choose_method(controls, size)
    limits.MAX_TAKES.check(size.total, f"{controls.source or 'controls'}: the plan")
    if size.train < minimum_train(controls):
        raise DesignError(f"{size.train} space-filling settings are too few; these controls need at "
                          f"least {minimum_train(controls)} so that every switch position is recorded.")
    rng = np.random.default_rng(seed)
    k = len(controls.knobs)
    combos = balanced_combinations(controls, size.train, rng)
    keys = [tuple(c.values()) for c in combos]
    distinct = list(dict.fromkeys(keys))
    sizes = [keys.count(key) for key in distinct]
    anchor_combos = balanced_combinations(controls, size.anchor, rng)
    anchor_combos = [anchor_combos[i] for i in rng.permutation(size.anchor)]
    # corners come in complementary pairs (every knob at both ends): a combination that gets two or
    # more anchors gets them as pairs, so each of its knobs is recorded at both ends
    first_seen = {key: i for i, key in reversed(list(enumerate(tuple(c.values()) for c in anchor_combos)))}
    anchor_combos.sort(key=lambda c: first_seen[tuple(c.values())])
    anchor_units = _anchor_units(k, size.anchor, rng)
    anchors = [setting_from_units(controls, u, combo)
               for u, combo in zip(anchor_units, anchor_combos, strict=True)]
    anchor_slices = [distinct.index(key) if key in distinct else len(distinct)
                     for key in (tuple(c.values()) for c in anchor_combos)]
    if method == "coverage":
        space = design_space(controls)
        x, slice_of = coverage_design(sizes, k, rng, anchor_units, anchor_slices, edges)
    else:
        space = controls
        x, slice_of = sliced_maximin_lhs(sizes, k, rng, iterations, anchor_units, anchor_slices, edges)
        if edges:  # snapping makes the landscape rugged: keep the best-filled of a few optimisations
            reference = rng.uniform(size=(256 * k, k))
            best = _fill(x, slice_of, anchor_units, anchor_slices, reference)
            for _ in range(_EDGE_RESTARTS - 1):
                other, _ = sliced_maximin_lhs(sizes, k, rng, iterations, anchor_units, anchor_slices, True)
                score = _fill(other, slice_of, anchor_units, anchor_slices, reference)
                if score < best:
                    x, best = other, score
    train = [setting_from_units(space, x[i], dict(zip(combos[0], distinct[slice_of[i]], strict=True)))
             for i in range(len(x))]
    held = _holdouts(controls, train + anchors, size.holdout, rng)
    settings = train + anchors + held
    roles: list[Role] = ["train"] * len(train) + ["anchor"] * len(anchors) + ["holdout"] * len(held)
    order = order_path(cost_matrix(controls, settings, costs))
    points = tuple(DesignPoint(settings[i], roles[i]) for i in order)
    return Design(controls, points, seed, costs, method)


def size_for_minutes(controls: Controls, minutes: float, signal_seconds: float, seed: int = 0,
                     costs: MoveCosts = DEFAULT_COSTS, method: Method | Literal["auto"] = "auto") -> Design:
    """The largest default-shaped design whose session fits in ``minutes``."""
    _require_knobs(controls)
    per_take = signal_seconds + costs.take + len(controls.knobs) * (costs.touch + 0.3 * costs.turn)
    if not 0 < minutes < math.inf:
        raise DesignError(f"--minutes {minutes:g}: give a time budget above 0 minutes.")
    total = max(int(minutes * 60 // per_take), 1)
    limits.MAX_TAKES.check(total, f"--minutes {minutes:g}")
    smallest = minimum_train(controls) + 3
    while total >= smallest:
        design = initial_design(controls, total, seed, costs, method=method)
        if design.time(signal_seconds).minutes <= minutes:
            return design
        total -= 1
    needed = initial_design(controls, smallest, seed, costs, method=method).time(signal_seconds).minutes
    raise DesignError(
        f"--minutes {minutes:g} is too short: even the smallest plan ({smallest} takes of "
        f"{signal_seconds:g} s) takes about {math.ceil(needed)} min. Allow more minutes or a shorter "
        "signal (--seconds).")


# ------------------------------------------------------------------------------------------ quality
def knob_units(controls: Controls, settings: Sequence[Mapping[str, object]]) -> np.ndarray:
    return np.array([controls.unit_knobs(s) for s in settings]).reshape(len(settings), len(controls.knobs))


def maximin_distance(controls: Controls, settings: Sequence[Mapping[str, object]],
                     within_combinations: bool = False) -> float:
    """The smallest knob-coordinate distance between two settings (of one switch combination when
    ``within_combinations``; ``inf`` when no pair qualifies)."""
    u = knob_units(controls, settings)
    best = math.inf
    for i, j in combinations(range(len(settings)), 2):
        if within_combinations and not _same_combo(controls, settings[i], settings[j]):
            continue
        best = min(best, float(np.linalg.norm(u[i] - u[j])))
    return best


def discrepancy(controls: Controls, settings: Sequence[Mapping[str, object]]) -> float:
    """Centred L2 discrepancy (scipy) of the knob coordinates: lower is more uniform."""
    from scipy.stats import qmc

    return float(qmc.discrepancy(np.clip(knob_units(controls, settings), 0.0, 1.0), method="CD"))

