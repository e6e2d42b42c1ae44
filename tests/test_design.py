"""Experimental design: coverage, anchors, held-out settings, spread, order and session time."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from knobcap.capture import design as dsg
from knobcap.controls import Controls, Knob, Switch, format_value, round_value
from playkit import tiny_controls


def ts_like() -> Controls:
    """The test pedal with a second switch, like the TS808: 2 knobs, 2 two-way switches."""
    return tiny_controls(Switch("fat", ("off", "on")))


def many(knobs: int, switches: int, positions: int = 2) -> Controls:
    names = [chr(ord("a") + i) for i in range(positions)]
    return Controls(knobs=tuple(Knob(f"k{i}") for i in range(knobs)),
                    switches=tuple(Switch(f"s{i}", tuple(names)) for i in range(switches)))


def of_role(design: dsg.Design, *roles: str) -> list[dict]:
    return [p.setting for p in design.points if p.role in roles]


def combo(controls: Controls, setting: dict) -> tuple:
    return tuple(setting[s.name] for s in controls.switches)


# ------------------------------------------------------------------------------------ sliced LHS
def test_sliced_lhs_is_latin_in_every_slice_and_in_the_union() -> None:
    x, slice_of = dsg.sliced_maximin_lhs([4, 4, 4], 3, np.random.default_rng(3), iterations=3000)
    n, s = 12, 3
    levels = np.floor(x * n).astype(int)
    for d in range(3):
        assert sorted(levels[:, d]) == list(range(n))            # union: one point per fine level
        for t in range(s):
            coarse = levels[slice_of == t, d] // s
            assert sorted(coarse) == list(range(4))               # slice: one point per coarse level


def test_unequal_slices_keep_the_union_latin() -> None:
    x, slice_of = dsg.sliced_maximin_lhs([3, 2, 2], 2, np.random.default_rng(0), iterations=1000)
    assert np.bincount(slice_of).tolist() == [3, 2, 2]
    for d in range(2):
        assert sorted(np.floor(x[:, d] * 7).astype(int)) == list(range(7))


def test_the_optimiser_spreads_points_apart() -> None:
    rng = np.random.default_rng(1)
    raw, _ = dsg.sliced_maximin_lhs([4] * 4, 2, np.random.default_rng(1), iterations=0)
    tuned, _ = dsg.sliced_maximin_lhs([4] * 4, 2, rng, iterations=4000)

    def smallest(x: np.ndarray) -> float:
        return min(np.linalg.norm(a - b) for a, b in itertools.combinations(x, 2))

    assert smallest(tuned) > 1.5 * smallest(raw)


# ---------------------------------------------------------------------------------- whole design
@pytest.mark.parametrize("controls, total", [
    (ts_like(), None), (many(1, 0), None), (many(7, 1), 30), (many(3, 1, positions=3), 14),
    (many(8, 4), 40), (many(8, 4), 12),   # 16 combinations: more than the space-filling budget
])
def test_every_switch_position_is_trained_on(controls: Controls, total: int | None) -> None:
    design = dsg.initial_design(controls, total, seed=2, iterations=1500)
    train = of_role(design, "train")
    for switch in controls.switches:
        counts = [sum(s[switch.name] == p for s in train) for p in switch.positions]
        assert min(counts) >= 1
        assert max(counts) - min(counts) <= 1                    # balanced
    if total is not None:
        assert len(design.points) == total


def test_anchors_put_every_knob_at_both_ends() -> None:
    for controls in (ts_like(), many(1, 0), many(5, 1)):
        design = dsg.initial_design(controls, seed=0, iterations=500)
        anchors = of_role(design, "anchor")
        for knob in controls.knobs:
            values = {s[knob.name] for s in anchors}
            assert knob.min in values and knob.max in values


def test_held_out_settings_are_never_training_settings_and_one_is_near_an_edge() -> None:
    for seed in range(4):
        controls = ts_like()
        design = dsg.initial_design(controls, seed=seed, iterations=800)
        held = of_role(design, "holdout")
        trained = of_role(design, "train", "anchor")
        assert len(held) == 4
        assert all(h != t for h in held for t in trained)
        for h in held:
            same = [t for t in trained if combo(controls, t) == combo(controls, h)]
            gaps = [np.linalg.norm(controls.unit_knobs(h) - controls.unit_knobs(t)) for t in same]
            assert min(gaps, default=1.0) > 0.02
        near = [h for h in held if any(0 < u <= 0.1 or 0.9 <= u < 1 for u in controls.unit_knobs(h))]
        assert near


def test_design_covers_every_combination_better_than_random_designs_of_the_same_size() -> None:
    """Within each switch combination the design leaves no setting as far from a recorded one (fill
    distance over a lattice of the knob square, anchors included) as random settings do, and keeps its
    settings further apart. (Across combinations it does not spread: each is covered on its own.)"""
    for method in dsg.METHODS:
        check_covers_better_than_random(dsg.initial_design(ts_like(), 32, seed=0, method=method))


def check_covers_better_than_random(design: dsg.Design) -> None:
    controls = design.controls
    recorded = of_role(design, "train", "anchor")
    lattice = np.stack(np.meshgrid(np.linspace(0, 1, 21), np.linspace(0, 1, 21)), axis=-1).reshape(-1, 2)

    def worst_fill(settings: list[dict]) -> float:
        fills = []
        for key in {combo(controls, s) for s in settings}:
            u = dsg.knob_units(controls, [s for s in settings if combo(controls, s) == key])
            fills.append(np.linalg.norm(lattice[:, None] - u[None], axis=2).min(axis=1).max())
        return float(max(fills))

    ours_fill = worst_fill(recorded)
    ours_apart = dsg.maximin_distance(controls, recorded, within_combinations=True)
    rng = np.random.default_rng(7)
    for _ in range(40):
        rand = [{k.name: k.from_unit(u) for k, u in zip(controls.knobs, rng.uniform(size=2), strict=True)}
                | {sw.name: t[sw.name] for sw in controls.switches}   # the same switch combinations
                for t in recorded]
        assert ours_fill < worst_fill(rand)
        assert ours_apart > dsg.maximin_distance(controls, rand, within_combinations=True)


def test_knob_values_are_dialable_and_the_design_is_deterministic() -> None:
    controls = Controls(knobs=(Knob("drive", taper="audio"), Knob("freq", 100, 8000, taper="log")),
                        switches=(Switch("mode", ("a", "b")),))
    first = dsg.initial_design(controls, seed=5, iterations=800)
    again = dsg.initial_design(controls, seed=5, iterations=800)
    other = dsg.initial_design(controls, seed=6, iterations=800)
    assert first.points == again.points
    assert first.points != other.points
    for s in first.settings:
        assert abs(s["drive"] * 10 - round(s["drive"] * 10)) < 1e-9      # 0.1 of the dial
        digits = f"{float(s['freq']):.6g}".replace(".", "").lstrip("0")
        assert len(digits.rstrip("0")) <= 3                               # 3 significant digits
    assert format_value(controls.knobs[0], 7.300000000001) == "7.3"
    assert round_value(controls.knobs[1], 1234.5) == 1230


# ---------------------------------------------------------------------------------------- sizes
def test_default_sizes_grow_with_knobs_and_switches() -> None:
    assert dsg.default_size(ts_like()) == dsg.DesignSize(16, 4, 4)
    assert dsg.default_size(ts_like(), quick=True) == dsg.DesignSize(8, 4, 2)
    assert dsg.default_size(many(1, 0)) == dsg.DesignSize(4, 2, 2)
    seven = dsg.default_size(many(7, 1))
    assert 40 <= seven.train <= 50 and seven.holdout == 6
    assert dsg.default_size(many(8, 4)).train > seven.train


def test_size_from_a_total_and_its_errors() -> None:
    size = dsg.size_from_total(ts_like(), 20)
    assert size.total == 20 and size.anchor == 4 and size.holdout == 3
    small = dsg.size_from_total(ts_like(), 6)
    assert small.anchor == 2 and small.train >= 2
    with pytest.raises(dsg.DesignError, match="too few takes"):
        dsg.size_from_total(ts_like(), 4)
    with pytest.raises(dsg.DesignError, match="no knobs"):
        dsg.default_size(Controls(switches=(Switch("x", ("a", "b")),)))


def test_minutes_budget_gives_the_largest_plan_that_fits() -> None:
    controls = many(1, 1)
    design = dsg.size_for_minutes(controls, 15.0, signal_seconds=60.0)
    assert design.time(60.0).minutes <= 15.0
    bigger = dsg.initial_design(controls, len(design.points) + 1)
    assert bigger.time(60.0).minutes > 15.0
    with pytest.raises(dsg.DesignError, match="too short"):
        dsg.size_for_minutes(controls, 3.0, signal_seconds=60.0)


# ---------------------------------------------------------------------------------------- order
def test_session_time_adds_takes_and_moves() -> None:
    controls = Controls(knobs=(Knob("a"), Knob("b")), switches=(Switch("s", ("x", "y")),))
    settings = [{"a": 0, "b": 0, "s": "x"}, {"a": 5, "b": 0, "s": "y"}, {"a": 5, "b": 10, "s": "y"}]
    costs = dsg.MoveCosts(turn=4, touch=3, flip=2, take=20)
    t = dsg.session_time(controls, settings, 60.0, costs)
    # moves: (4*0.5 + 3 + 2) + (4*1 + 3) = 14 s;  3 takes x (60 + 20) = 240 s
    assert t.move_seconds == pytest.approx(14.0)
    assert t.total_seconds == pytest.approx(254.0)
    assert (t.knobs_touched, t.flips) == (2, 1)
    cost = dsg.cost_matrix(controls, settings, costs)
    assert cost[0, 1] == pytest.approx(7.0) and cost[1, 2] == pytest.approx(7.0)
    assert np.allclose(cost, cost.T)


def test_order_on_a_line_is_a_sweep() -> None:
    controls = Controls(knobs=(Knob("a"),))
    values = [3.0, 9.0, 0.0, 6.0, 1.0, 10.0, 4.5]
    order = dsg.order_path(dsg.cost_matrix(controls, [{"a": v} for v in values]))
    walked = [values[i] for i in order]
    assert walked in (sorted(values), sorted(values, reverse=True))


def test_ordered_plan_costs_less_than_unordered() -> None:
    for controls, total in ((ts_like(), None), (many(7, 1), 30)):
        design = dsg.initial_design(controls, total, seed=1, iterations=1500)
        settings = design.settings
        cost = dsg.cost_matrix(controls, settings)
        ordered = dsg.path_cost(cost, range(len(settings)))
        grouped = sorted(range(len(settings)), key=lambda i: design.points[i].role)  # by role
        rng = np.random.default_rng(0)
        shuffled = [dsg.path_cost(cost, rng.permutation(len(settings))) for _ in range(20)]
        assert ordered < dsg.path_cost(cost, grouped)
        assert ordered < min(shuffled)
        t = design.time(90.0)
        assert math.isclose(t.move_seconds, ordered)


def test_two_anchors_per_switch_combination_put_every_knob_at_both_ends_in_each() -> None:
    controls = ts_like()
    for seed in range(6):
        design = dsg.initial_design(controls, dsg.DesignSize(8, 8, 0), seed=seed)
        by_combo: dict[tuple[str, str], list[dict]] = {}
        for point in design.points:
            if point.role == "anchor":
                by_combo.setdefault((str(point.setting["diodes"]), str(point.setting["fat"])), []).append(
                    point.setting)
        assert len(by_combo) == 4
        for anchors in by_combo.values():
            assert len(anchors) == 2
            for knob in ("drive", "tone"):
                assert sorted(float(a[knob]) for a in anchors) == [0.0, 10.0], (seed, anchors)


# ---------------------------------------------------------------------------------- knob ends
def ends_missing(controls: Controls, design: dsg.Design) -> list[tuple]:
    """(knob, end, combination) with no training setting at that end of the knob in that combination."""
    trained = of_role(design, "train", "anchor")
    missing = []
    for combination in controls.switch_combinations():
        mine = [s for s in trained if combo(controls, s) == tuple(combination.values())]
        for knob in controls.knobs:
            for end in (knob.min, knob.max):
                if not any(float(s[knob.name]) == end for s in mine):
                    missing.append((knob.name, end, tuple(combination.values())))
    return missing


@pytest.mark.parametrize("controls, total", [(ts_like(), 16), (ts_like(), 24), (many(3, 1), 16),
                                             (many(1, 1), 8)])
def test_every_knob_is_at_both_ends_in_every_switch_combination(controls: Controls, total: int) -> None:
    for seed in range(3):
        design = dsg.initial_design(controls, total, seed=seed, iterations=800)
        assert ends_missing(controls, design) == [], seed
        assert ends_missing(controls, dsg.initial_design(controls, total, seed=seed, method="coverage")) == []
        old = dsg.initial_design(controls, total, seed=seed, iterations=800, edges=False, method="lhs")
        assert len(old.points) == len(design.points) == total
        lhs = dsg.initial_design(controls, total, seed=seed, iterations=800, method="lhs")
        assert ends_missing(controls, lhs) == [], seed
    if len(controls.switch_combinations()) == 4:   # before: one anchor corner per combination
        assert ends_missing(controls, dsg.initial_design(controls, total, seed=0, edges=False, method="lhs"))


def test_ends_wait_until_the_budget_allows_them() -> None:
    controls = many(2, 2)   # 4 combinations, 6 space-filling + 2 anchors: some have only 2 settings
    for method in ("coverage", "lhs"):
        design = dsg.initial_design(controls, dsg.DesignSize(6, 2, 0), seed=0, iterations=500, method=method)
        trained = of_role(design, "train", "anchor")
        small = [c for c in {combo(controls, s) for s in trained}
                 if sum(combo(controls, s) == c for s in trained) == 2]
        assert small
        for c in small:   # two settings cannot record all four ends and the middle: they stay apart
            mine = dsg.knob_units(controls, [s for s in trained if combo(controls, s) == c])
            assert np.linalg.norm(mine[0] - mine[1]) >= 0.5, (method, mine)
        if method == "lhs":  # the Latin design keeps one of them inside
            for c in small:
                inside = [s for s in of_role(design, "train") if combo(controls, s) == c
                          and all(0.0 < float(s[k.name]) < 10.0 for k in controls.knobs)]
                assert inside


def test_edge_design_keeps_the_interior_filled() -> None:
    controls = ts_like()
    grid = np.array(list(itertools.product(np.linspace(0.1, 0.9, 9), repeat=2)))

    def interior_fill(design: dsg.Design) -> float:
        trained = of_role(design, "train", "anchor")
        worst = 0.0
        for combination in controls.switch_combinations():
            u = dsg.knob_units(controls, [s for s in trained
                                          if combo(controls, s) == tuple(combination.values())])
            worst = max(worst, float(np.max(np.min(np.linalg.norm(grid[:, None] - u[None], axis=2), 1))))
        return worst

    for total in (16, 24):   # the Latin design: snapping its extreme points to the ends keeps its interior
        new = [interior_fill(dsg.initial_design(controls, total, seed=s, method="lhs")) for s in range(2)]
        old = [interior_fill(dsg.initial_design(controls, total, seed=s, edges=False, method="lhs"))
               for s in range(2)]
        assert np.mean(new) <= np.mean(old) * 1.1, (total, new, old)
    # the coverage design records the faces first, and fills the interior as the budget grows
    fills = [interior_fill(dsg.initial_design(controls, total, seed=0, method="coverage"))
             for total in (16, 32, 48, 64)]
    assert fills[-1] < 0.3 and fills[-1] < fills[0]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(fills[1:])), fills


def test_the_boundary_design_waits_for_enough_settings_per_combination() -> None:
    controls = ts_like()   # 2 knobs: 8 settings a combination cover the square's boundary (3 x 3 less 1)
    assert dsg.boundary_settings(2) == 8 and dsg.boundary_settings(1) == 2
    assert dsg.coverage_settings(2) == 6 and dsg.coverage_settings(1) == 2 and dsg.coverage_settings(3) == 24
    assert dsg.choose_method(controls, dsg.DesignSize(20, 4, 0)) == "coverage"   # 6 a combination
    assert dsg.choose_method(controls, dsg.DesignSize(19, 4, 0)) == "lhs"
    assert dsg.choose_method(controls, dsg.default_size(controls)) == "lhs"
    assert dsg.choose_method(many(1, 0), dsg.default_size(many(1, 0))) == "coverage"
    assert dsg.choose_method(many(8, 4), dsg.DesignSize(30, 4, 0)) == "lhs"   # 16 combinations, 8 knobs
    size = dsg.DesignSize(28, 4, 0)
    auto = dsg.initial_design(controls, size, seed=1)
    assert auto.points == dsg.initial_design(controls, size, seed=1, method="coverage").points
    with pytest.raises(dsg.DesignError, match="design method 'grid': use one of auto, coverage, lhs"):
        dsg.initial_design(controls, 16, method="grid")  # type: ignore[arg-type]


def test_plan_says_which_design_and_when_the_other_one_comes() -> None:
    controls = ts_like()
    assert dsg.coverage_threshold(controls) == 28   # 20 space-filling + 4 anchors: 6 a combination
    small = dsg.initial_design(controls, seed=0)
    assert small.method == "lhs"
    assert "from --n 28 on" in dsg.describe_method(small)
    big = dsg.initial_design(controls, 32, seed=0)
    assert big.method == "coverage" and "ends and corners" in dsg.describe_method(big)
    assert dsg.coverage_threshold(many(8, 4)) is None   # 6,560 a combination: beyond the take limit
