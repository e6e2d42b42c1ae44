"""Coverage designs: every knob end in every switch combination, no setting far from a recorded one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from knobcap.capture import coverage as cov
from knobcap.controls import Controls, Knob


def ends_recorded(points: np.ndarray) -> bool:
    return bool(np.all(np.any(points <= 1e-9, axis=0)) and np.all(np.any(points >= 1 - 1e-9, axis=0)))


def fill_distance(points: np.ndarray, reference: np.ndarray) -> float:
    gaps = np.linalg.norm(reference[:, None, :] - points[None, :, :], axis=2)
    return float(gaps.min(axis=1).max())


@pytest.mark.parametrize("sizes, dims", [([8] * 4, 2), ([3] * 4, 2), ([6, 5], 3), ([12], 4), ([5] * 3, 1)])
def test_every_slice_records_every_knob_at_both_ends(sizes: list[int], dims: int) -> None:
    x, slice_of = cov.coverage_design(sizes, dims, np.random.default_rng(0))
    assert x.shape == (sum(sizes), dims) and np.bincount(slice_of).tolist() == sizes
    assert np.all((x >= 0) & (x <= 1))
    for t in range(len(sizes)):
        assert ends_recorded(x[slice_of == t])


def test_fixed_points_count_towards_the_ends_and_are_kept_away_from() -> None:
    fixed = np.array([[0.0, 0.0], [1.0, 1.0]])
    x, slice_of = cov.coverage_design([2, 3], 2, np.random.default_rng(1), fixed, fixed_slices=[0, 0])
    first = np.vstack([x[slice_of == 0], fixed])
    assert ends_recorded(first)
    assert np.min(np.linalg.norm(x[slice_of == 0][:, None] - fixed[None], axis=2)) > 0.3
    assert ends_recorded(x[slice_of == 1])          # the other slice covers itself


def test_a_slice_too_small_for_both_ends_is_still_placed() -> None:
    x, _ = cov.coverage_design([1, 2], 2, np.random.default_rng(0))
    assert len(x) == 3 and np.all((x >= 0) & (x <= 1))


def test_coverage_beats_random_designs_within_every_combination() -> None:
    sizes, dims = [8] * 4, 2
    x, slice_of = cov.coverage_design(sizes, dims, np.random.default_rng(3))
    lattice = cov.candidate_lattice(dims, np.random.default_rng(0))
    ours = max(fill_distance(x[slice_of == t], lattice) for t in range(4))
    rng = np.random.default_rng(7)
    for _ in range(40):
        other = max(fill_distance(rng.uniform(size=(8, dims)), lattice) for _ in range(4))
        assert ours < other


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    def make(seed: int) -> np.ndarray:
        return cov.coverage_design([6] * 4, 2, np.random.default_rng(seed))[0]

    assert np.array_equal(make(4), make(4))
    assert not np.array_equal(make(4), make(5))


def test_many_knobs_use_a_sampled_lattice() -> None:
    lattice = cov.candidate_lattice(9, np.random.default_rng(0))
    assert len(lattice) <= 1025 and set(np.unique(lattice)) == {0.0, 0.5, 1.0}
    x, slice_of = cov.coverage_design([6, 6], 9, np.random.default_rng(0))
    for t in range(2):
        assert ends_recorded(x[slice_of == t])


def test_design_space_keeps_the_ends_and_the_order() -> None:
    knob = Knob("tone", warp=(0.0, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 1.0))
    plain = Knob("drive", taper="audio")
    space = cov.design_space(Controls(knobs=(knob, plain)))
    for original, designed in zip((knob, plain), space.knobs, strict=True):
        assert designed.from_unit(0.0) == original.min and designed.from_unit(1.0) == original.max
        values = [designed.from_unit(v) for v in np.linspace(0, 1, 41)]
        assert all(b >= a for a, b in itertools.pairwise(values))
    # no warp: the design coordinate is the taper's own
    assert space.knobs[1].to_unit(7.3) == pytest.approx(plain.to_unit(7.3), abs=0.01)


def test_switch_combinations_fill_the_knob_space_together() -> None:
    """With the union term the combinations' free points go to different places: with 7 a combination
    (the corners, an edge take a knob and one more) the design as a whole, switches ignored, fills the
    knob square better than any combination alone; with 6 (the corners and an edge take a knob) the
    edge takes sit at both ends of the other knob across the combinations."""
    lattice = cov.candidate_lattice(2, np.random.default_rng(0))
    for seed in range(4):
        x, slice_of = cov.coverage_design([7] * 4, 2, np.random.default_rng(seed))
        alone = [fill_distance(x[slice_of == t], lattice) for t in range(4)]
        assert fill_distance(x, lattice) < 0.36 < min(alone)
        x, _ = cov.coverage_design([6] * 4, 2, np.random.default_rng(seed))
        inside = np.abs(x - 0.5) <= 0.25
        for knob in range(2):
            other = x[inside[:, knob], 1 - knob]
            assert np.isclose(other, 0).any() and np.isclose(other, 1).any()


def test_the_union_term_is_off_once_each_combination_covers_its_boundary(monkeypatch) -> None:
    def design(sizes: list[int], weight: float) -> np.ndarray:
        monkeypatch.setattr(cov, "UNION_WEIGHT", weight)
        return cov.coverage_design(sizes, 2, np.random.default_rng(5))[0]

    assert cov.boundary_settings(2) == 8
    assert np.array_equal(design([8] * 4, 1.0), design([8] * 4, 0.0))
    assert not np.array_equal(design([6] * 4, 1.0), design([6] * 4, 0.0))


def test_a_take_sits_on_a_knob_end_or_a_margin_away_from_it(monkeypatch: pytest.MonkeyPatch) -> None:
    def near_an_end(x: np.ndarray) -> int:
        inside = (x > 1e-9) & (x < 1 - 1e-9)
        near = (x < cov.END_MARGIN - 1e-9) | (x > 1 - cov.END_MARGIN + 1e-9)
        return int((inside & near).any(axis=1).sum())

    designs = [cov.coverage_design([9] * 4, 2, np.random.default_rng(seed))[0] for seed in range(3)]
    assert cov.END_MARGIN == 0.1 and all(near_an_end(x) == 0 for x in designs)
    assert all(np.isclose(x, 0).any() and np.isclose(x, 1).any() for x in designs)
    monkeypatch.setattr(cov, "END_MARGIN", 0.0)  # without the rule, takes a notch from an end appear
    loose = [cov.coverage_design([9] * 4, 2, np.random.default_rng(seed))[0] for seed in range(3)]
    monkeypatch.setattr(cov, "END_MARGIN", 0.1)
    assert sum(near_an_end(x) for x in loose) > 0


def edge_middles(points: np.ndarray) -> np.ndarray:
    """Per knob, whether some point has it in its middle half and every other knob on an end."""
    on_end = np.isclose(points, 0) | np.isclose(points, 1)
    middle = np.abs(points - 0.5) <= 0.25 + 1e-9
    return np.array([np.any(middle[:, a] & np.delete(on_end, a, axis=1).all(axis=1))
                     for a in range(points.shape[1])])


@pytest.mark.parametrize("sizes, dims, fixed_slices", [([5] * 4, 2, [0, 1, 2, 3]), ([6] * 4, 2, []),
                                                       ([11, 12], 3, [])])
def test_each_knob_gets_an_edge_take_once_a_combination_has_the_corners_and_one_more_a_knob(
        sizes: list[int], dims: int, fixed_slices: list[int]) -> None:
    """With ``2^k + k`` settings a combination, every knob is recorded in its middle with the others at
    their ends (at 24 takes on a 2-knob, 2-switch pedal: the 4 corners, the tone's middle at one drive
    end and the drive's middle at one tone end)."""
    fixed = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])[:len(fixed_slices)]
    fixed = fixed.reshape(len(fixed_slices), dims)
    for seed in range(3):
        x, slice_of = cov.coverage_design(sizes, dims, np.random.default_rng(seed), fixed, fixed_slices)
        for t in range(len(sizes)):
            mine = np.vstack([x[slice_of == t], fixed[np.asarray(fixed_slices, int) == t]])
            assert ends_recorded(mine) and edge_middles(mine).all()


def test_a_combination_short_of_the_edges_is_not_forced_onto_them() -> None:
    assert cov.edges_needed(2) == 6 and cov.edges_needed(3) == 11
    layouts = [cov.coverage_design([5] * 4, 2, np.random.default_rng(seed))[0] for seed in range(4)]
    slices = np.repeat(np.arange(4), 5)
    assert not all(edge_middles(x[slices == t]).all() for x in layouts for t in range(4))
