"""Coverage designs: points in the knob cube ``[0, 1]^k`` that leave no setting far from a recorded one.

A model interpolates between the settings it was trained on, so its error at a setting grows with the
distance to the nearest recorded one of the same switch combination (the TS808's switches change the
sound a lot), and with the distance to the nearest of any combination (what a knob does is partly
shared across switch positions). The design minimises, over reference
points ``R_g`` in groups ``g``, both the largest and the mean distance to the nearest design point:

    J(X) = sum_g w_g [ max_{r in R_g} d_g(r, X) + mean_{r in R_g} d_g(r, X) ]

The max term is the *fill distance* (a minimax criterion; Johnson, Moore & Ylvisaker 1990) and bounds
the worst setting; the mean term the typical one (with the max alone many designs tie). The groups:

* the cube: a lattice of it, ``d = |r - x|``, weight 1;
* each facet (one knob at one end; ``2k`` of them, weight ``FACE_WEIGHT / 2k`` each): the lattice
  projected onto it, ``d = |r - x| + beta dist(x, facet)`` with ``beta = FACE_PENALTY``;
* the corners (every knob at an end; all ``2^k`` up to 6 knobs, else a sample of 64), weight
  ``CORNER_WEIGHT``: ``d = (1 + beta) |r - x|``;
* the union: the cube's lattice again, against the points of *every* switch combination, weight
  ``UNION_WEIGHT``, while the combinations are sparse (fewer settings each, on average, than
  :func:`boundary_settings`). A model shares what a knob does across switch positions, so sparse
  combinations' interior points should go to different places. Without it, 6 settings a combination
  on the TS808 became the 4 corners plus the same 2 points everywhere; in one seed of three both sat
  on the tone's ends, no take anywhere had the tone in its middle, and the model collapsed (median
  ESR 0.137). With it, 6 and 7 a combination had the lowest p90 and max of any design measured. With 8,
  where each combination covers its own boundary, it pulled takes off the per-combination optimum
  and cost 10-15 % in p90 and max (docs/results.md, session 8), so it is off there.

Why the faces and corners count apart: users play with knobs at their ends, and there a model
*extrapolates* unless a take sits on the face itself. Measured on the virtual TS808 (issue 11,
session 7; ``benchmarks/data_efficiency.py``, 32 takes, 3 seeds): a design that covered the cube
alone left its worst settings on the faces (max ESR 0.06-0.16 against the hand grid's 0.04), among
them tone 10 with a take at tone 9.7; the sound moves a lot in the last notches of a knob, so a
setting near an end is not one at the end. With the face and corner terms the worst setting of each
model scored 0.035-0.048, the hand grid's 0.037-0.041 (the table is in docs/results.md).

Distances are in the design coordinate ``v`` of each knob (:func:`design_knob`): half the screened
warp (equal steps of measured sound change) and half the knob's taper. The warp is measured at one
setting of the other controls and by one distance; the model's error also grows where the warp is
flat (the TS808 tone's lower half: dial 2.5 had the worst median with the full warp), and users and
the scoring grid spread over the dial. Half of the design's density stays uniform in the taper so no
stretch of the dial is starved, and half goes where the sound changes (a *defensive* mixture).

It needs nearly enough settings a combination to cover the boundary (``3^k - 3``, two fewer than the
boundary's ``3^k - 1``; with fewer, :func:`knobcap.capture.design.choose_method` takes the sliced
Latin hypercube instead). Each switch combination (a *slice*) is covered on its own, and sparse
slices together through the union term. A slice with three or more points (fixed
ones included) must record every knob at both ends (a penalty per missing end, larger than any
distance); one with the corners and one more a knob (:func:`edges_needed`, 6 for two knobs) must also
record each knob in the middle half of its range with every other knob on an end (an *edge* take,
the same penalty). Why: with 6 a combination on the TS808 (24 takes) the criterion alone put both
free points of some combinations on the tone's faces (no take with the tone in its middle there) or
both at the tone's middle (none with the drive in its middle), and the worst settings sat in those
combinations (issue 11, session 12); the hand grid, which records the tone's middle at both drive
ends everywhere, had the lower p90 and max. With the edge takes, and the union term spreading them
over both ends of the other knob, knobcap's 24 took the lower p90 and max back (docs/results.md,
session 13). Only the exchange enforces the edges (the greedy start fills the ends), so a design whose
optimum already has them, as 8 a combination does, is the same as without the rule.

Points are chosen from a lattice of candidates with the faces on it (21 levels a knob for
two knobs, at most 1,024 points; for many knobs a sample of the 3-level lattice), less those a notch
from a knob's end (:func:`playable`: on an end, or ``END_MARGIN`` from it).

Optimisation: a greedy farthest-point start (each new point the candidate farthest from those chosen,
one that records a missing end first), then exchange sweeps (Fedorov-style): each free point in turn
moves to the candidate that lowers ``J`` most, until a sweep changes nothing. Fixed points (the
anchors) count but never move. Deterministic for a random generator's state; ties are broken by a
small seeded jitter, which is what makes seeds differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from knobcap.controls import Controls, Knob

WARP_SHARE = 0.5  # design coordinate: this share of the screened warp, the rest the knob's taper
FACE_WEIGHT = 1.0  # the facets' coverage, all together, next to the cube's
CORNER_WEIGHT = 0.5  # the corners' coverage (every knob at an end), next to the cube's
FACE_PENALTY = 3.0  # beta: a point off a face counts as this much farther from the face's settings
UNION_WEIGHT = 1.0  # the whole design's coverage of the cube, switch positions ignored
END_MARGIN = 0.1  # a take is on a knob's end or at least this far (design coordinate) from it
_END_PENALTY = 10.0  # per missing required end or edge: more than any distance in the cube (sqrt(k) <= ~3)
_LATTICE_POINTS = 1024  # at most this many candidates (also the reference points of the cube)
_CORNER = -2  # the face marker of corner columns
_FACE_POINTS = 128  # reference points per facet (a sample when more)
_MAX_SWEEPS = 12
_JITTER = 1e-6


def boundary_settings(knobs: int) -> int:
    """Settings that cover the boundary of a ``knobs``-dimensional knob cube from points on it: the
    3-level grid without its centre, ``3^k - 1`` (8 for two knobs: the corners and edge midpoints)."""
    return 3 ** knobs - 1


def candidate_lattice(dims: int, rng: np.random.Generator) -> np.ndarray:
    """Candidates and reference points: the finest full lattice with at most ``_LATTICE_POINTS``
    points (faces included; 21 levels a knob for two knobs); for many knobs, where even three levels
    are too many, the 3-level lattice's corners, face centres and middle are sampled instead."""
    if dims == 1:
        return np.linspace(0.0, 1.0, 101)[:, None]
    levels = min(21, int(np.floor(_LATTICE_POINTS ** (1.0 / dims) + 1e-9)))
    if levels >= 3:
        axes = np.meshgrid(*[np.linspace(0.0, 1.0, levels)] * dims, indexing="ij")
        return np.stack([a.ravel() for a in axes], axis=1)
    picks = rng.integers(0, 3, size=(_LATTICE_POINTS, dims)) / 2.0
    return np.unique(np.vstack([picks, np.zeros((1, dims)), np.ones((1, dims))]), axis=0)


class _Reference:
    """Reference points with their face: the cube's lattice (no face) and, for each facet (a knob at
    one end), the lattice projected onto it; a column's distance from a point ``x`` is
    ``|x - r| + FACE_PENALTY dist(x, F)``, so a setting on a face is covered best from that face."""

    def __init__(self, cube: np.ndarray, rng: np.random.Generator) -> None:
        dims = cube.shape[1]
        columns = [cube]
        axis = [np.full(len(cube), -1)]
        end = [np.zeros(len(cube))]
        self.groups = [(0, len(cube), 1.0)]
        start = len(cube)
        for a in range(dims):
            for e in (0.0, 1.0):
                face = cube.copy()
                face[:, a] = e
                face = np.unique(face, axis=0)
                if len(face) > _FACE_POINTS:
                    face = face[np.sort(rng.choice(len(face), _FACE_POINTS, replace=False))]
                columns.append(face)
                axis.append(np.full(len(face), a))
                end.append(np.full(len(face), e))
                self.groups.append((start, start + len(face), FACE_WEIGHT / (2 * dims)))
                start += len(face)
        if dims <= 6:
            corners = np.array(np.meshgrid(*[[0.0, 1.0]] * dims, indexing="ij")).reshape(dims, -1).T
        else:
            corners = rng.integers(0, 2, size=(64, dims)).astype(float)
        columns.append(corners)
        axis.append(np.full(len(corners), _CORNER))
        end.append(np.zeros(len(corners)))
        self.groups.append((start, start + len(corners), CORNER_WEIGHT))
        self.points = np.vstack(columns)
        self.axis = np.concatenate(axis)
        self.end = np.concatenate(end)

    def gaps(self, points: np.ndarray) -> np.ndarray:
        """``(len(points), columns)`` face-aware distances (``inf`` for no points)."""
        if len(points) == 0:
            return np.full((0, len(self.points)), np.inf, np.float32)
        plain = np.sqrt(((points[:, None, :] - self.points[None, :, :]) ** 2).sum(axis=2))
        on_face = self.axis >= 0
        off = np.zeros_like(plain)
        off[:, on_face] = np.abs(points[:, self.axis[on_face]] - self.end[on_face][None, :])
        corner = self.axis == _CORNER
        off[:, corner] = plain[:, corner]  # a corner is a face of its own: all of the distance is off it
        return (plain + FACE_PENALTY * off).astype(np.float32)

    def nearest(self, points: np.ndarray) -> np.ndarray:
        if len(points) == 0:
            return np.full(len(self.points), np.inf, np.float32)
        return self.gaps(points).min(axis=0)

    def score(self, nearest: np.ndarray) -> np.ndarray:
        """``sum_g w_g (max + mean)`` over the groups of columns (the cube, each facet)."""
        total = np.zeros(nearest.shape[:-1])
        for a, b, weight in self.groups:
            part = nearest[..., a:b]
            total += weight * (part.max(axis=-1) + part.mean(axis=-1))
        return total


def _end_flags(points: np.ndarray) -> np.ndarray:
    """``(3, k)``: which knob ends (low row, high row) and which knobs' edges (third row; see
    :func:`_edges`) the points record."""
    if len(points) == 0:
        return np.zeros((3, points.shape[1]), bool)
    return np.stack([np.any(points <= 1e-9, axis=0), np.any(points >= 1.0 - 1e-9, axis=0),
                     _edges(points).any(axis=0)])


def _edges(points: np.ndarray) -> np.ndarray:
    """``(len(points), k)``: whether each point lies in the middle of an edge of the cube along each
    knob: that knob in the middle half of its range, ``|v - 1/2| <= 1/4``, every other knob on an end."""
    on_end = (points <= 1e-9) | (points >= 1.0 - 1e-9)
    others_on_ends = on_end.sum(axis=1, keepdims=True) - on_end == points.shape[1] - 1
    return (np.abs(points - 0.5) <= 0.25 + 1e-9) & others_on_ends


def edges_needed(knobs: int) -> int:
    """A slice's settings from which every knob also gets an edge take: the corners and one a knob,
    ``2^k + k`` (6 for two knobs)."""
    return 2 ** knobs + knobs


def coverage_design(slice_sizes: Sequence[int], dims: int, rng: np.random.Generator,
                    fixed: np.ndarray | None = None, fixed_slices: Sequence[int] = (),
                    ends: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``sum(slice_sizes)`` free points in ``[0, 1]^dims``, ``slice_sizes[t]`` of them in slice ``t``.

    Returns ``(x, slice_of)`` as :func:`knobcap.capture.design.sliced_maximin_lhs` does. ``fixed``
    points (in slices ``fixed_slices``; an index past the last slice is a slice of its own) count in
    the criterion but never move. ``ends``: a slice with three or more points (fixed ones included)
    records every knob at 0 and at 1.
    """
    sizes = [int(m) for m in slice_sizes]
    slice_of = np.repeat(np.arange(len(sizes)), sizes)
    n = int(sum(sizes))
    if n == 0 or dims == 0:
        return np.zeros((n, dims)), slice_of
    pinned = np.zeros((0, dims)) if fixed is None else np.asarray(fixed, float).reshape(-1, dims)
    pinned_slice = np.asarray(fixed_slices, int).reshape(len(pinned))
    candidates = candidate_lattice(dims, rng)
    reference = _Reference(candidates, rng)
    distance = reference.gaps(candidates)  # (candidates, reference columns)
    jitter = rng.uniform(0.0, _JITTER, size=len(candidates))
    jitter = np.where(playable(candidates), jitter, np.nan)  # NaN: never a take (_greedy, _exchange)
    slices = []
    for t, m in enumerate(sizes):
        mine = pinned[pinned_slice == t]
        total = m + len(mine)
        required = np.array([total >= 3, total >= 3, total >= edges_needed(dims)]) & bool(ends)
        slices.append({"count": m, "fixed": mine, "required": required,
                       "fixed_nearest": reference.nearest(mine)})
    chosen = _greedy(slices, candidates, jitter)
    union_fixed = reference.nearest(pinned)[:len(candidates)]
    sparse = (n + len(pinned)) / len(sizes) < boundary_settings(dims)
    union_weight = UNION_WEIGHT if sparse and len(sizes) > 1 else 0.0
    chosen = _exchange(slices, chosen, candidates, reference, distance, jitter, rng, union_fixed,
                       union_weight)
    x = np.vstack([candidates[c] for c in chosen]) if n else np.zeros((0, dims))
    return x, slice_of


def playable(candidates: np.ndarray) -> np.ndarray:
    """Which candidates may be takes: each knob on an end or at least ``END_MARGIN`` from both ends.

    A take a notch from an end covers that end only by extrapolation, where the sound often changes
    fastest (the TS808 tone's last half-turn), and the interior barely better than a take on the end.
    Measured on the TS808 (32 takes, 15,000 steps, 3 seeds; docs/results.md, session 9): without the
    margin, one model of three scored 0.05-0.09 on the whole tone-10 face at drive 4.6-6.8, whose
    nearest take sat at tone 9.8 (per-seed max 0.094 / 0.015 / 0.020; medians over seeds 0.0072 /
    0.0128 / 0.0196); with it the worst model's max is 0.028 (0.016 / 0.017 / 0.028; 0.0066 / 0.0136 /
    0.0172). The price: a higher p90 in two seeds of three, and 5-12 % at 6,000 steps (0.0102 / 0.0217 /
    0.0267 against 0.0097 / 0.0194 / 0.0252), as the faces take points from the interior."""
    inside = (candidates > 1e-9) & (candidates < 1.0 - 1e-9)
    near = inside & ((candidates < END_MARGIN - 1e-9) | (candidates > 1.0 - END_MARGIN + 1e-9))
    return ~near.any(axis=1)


def _nearest(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.full(len(reference), np.inf, np.float32)
    gaps = np.sqrt(((reference[:, None, :] - points[None, :, :]) ** 2).sum(axis=2))
    return gaps.min(axis=1).astype(np.float32)


def _missing_after(required: np.ndarray, recorded: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per candidate, how many required ends and edges (the rows of :func:`_end_flags` that
    ``required`` marks) stay unrecorded if it joins points recording ``recorded``."""
    if not required.any():
        return np.zeros(len(candidates))
    fills = np.stack([candidates <= 1e-9, candidates >= 1.0 - 1e-9, _edges(candidates)], axis=1)
    missing = ~recorded[None, :, :] & ~fills & required[None, :, None]
    return missing.sum(axis=(1, 2)).astype(float)


def _greedy(slices: list[dict], candidates: np.ndarray, jitter: np.ndarray) -> list[list[int]]:
    """Farthest-point picks in each slice, a point that records a missing required end or edge first."""
    chosen: list[list[int]] = [[] for _ in slices]
    nearest = [_nearest(s["fixed"], candidates) for s in slices]  # per candidate
    recorded = [_end_flags(s["fixed"]) for s in slices]
    rounds = max((s["count"] for s in slices), default=0)
    for _ in range(rounds):
        for t, s in enumerate(slices):
            if len(chosen[t]) >= s["count"]:
                continue
            gap = np.where(np.isfinite(nearest[t]), nearest[t], 10.0)
            ends = s["required"] & np.array([True, True, False])  # the edges are left to the exchange
            missing = _missing_after(ends, recorded[t], candidates)
            unrecorded = float((~recorded[t] & ends[:, None]).sum())
            score = np.nan_to_num(gap + _END_PENALTY * (unrecorded - missing) + jitter, nan=-np.inf)
            pick = int(np.argmax(score))
            chosen[t].append(pick)
            nearest[t] = np.minimum(nearest[t], _nearest(candidates[pick:pick + 1], candidates))
            recorded[t] = recorded[t] | _end_flags(candidates[pick][None, :])
    return chosen


def _exchange(slices: list[dict], chosen: list[list[int]], candidates: np.ndarray, reference: _Reference,
              distance: np.ndarray, jitter: np.ndarray, rng: np.random.Generator,
              union_fixed: np.ndarray, union_weight: float) -> list[list[int]]:
    """Move each free point to the candidate that lowers ``J`` most, sweep after sweep, until none moves."""
    owners = [(t, j) for t, picks in enumerate(chosen) for j in range(len(picks))]
    cube = distance[:, :len(candidates)]  # the cube's columns come first, at plain distance
    for _ in range(_MAX_SWEEPS):
        moved = False
        for index in rng.permutation(len(owners)):
            t, j = owners[index]
            others = [c for i, c in enumerate(chosen[t]) if i != j]
            fixed_t = slices[t]["fixed"]
            base = slices[t]["fixed_nearest"]
            if others:
                base = np.minimum(base, distance[others].min(axis=0))
            score = reference.score(np.minimum(distance, base[None, :]))
            if union_weight:
                rest = [c for u, picks in enumerate(chosen) for i, c in enumerate(picks) if (u, i) != (t, j)]
                union = union_fixed if not rest else np.minimum(union_fixed, cube[rest].min(axis=0))
                covered = np.minimum(cube, union[None, :])
                score = score + union_weight * (covered.max(axis=1) + covered.mean(axis=1))
            recorded = _end_flags(np.vstack([fixed_t, candidates[others]]) if others else fixed_t)
            missing = _missing_after(slices[t]["required"], recorded, candidates)
            total = np.nan_to_num(score + _END_PENALTY * missing - jitter, nan=np.inf)
            best = int(np.argmin(total))
            current = chosen[t][j]
            if total[best] < total[current] - 1e-7:
                chosen[t][j] = best
                moved = True
        if not moved:
            break
    return chosen


def design_knob(knob: Knob, samples: int = 101) -> Knob:
    """The knob in the design's coordinate ``v``: ``WARP_SHARE`` of its screened warp and the rest of
    its taper, ``v(p) = s w(p) + (1 - s) u_taper(p)`` at rotation ``p`` (the taper's own ``u`` when
    there is no warp)."""
    plain = replace(knob, warp=None)
    p = np.linspace(0.0, 1.0, samples)
    taper = np.array([plain.to_unit(knob.min + q * (knob.max - knob.min)) for q in p])
    v = taper if knob.warp is None else \
        WARP_SHARE * np.interp(p, np.linspace(0.0, 1.0, len(knob.warp)), knob.warp) + (1 - WARP_SHARE) * taper
    v[0], v[-1] = 0.0, 1.0
    return replace(knob, warp=tuple(float(x) for x in np.maximum.accumulate(v)))


def design_space(controls: Controls) -> Controls:
    """The controls with every knob in the design's coordinate (:func:`design_knob`)."""
    return replace(controls, knobs=tuple(design_knob(k) for k in controls.knobs))
