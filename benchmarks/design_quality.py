"""How well knobcap's design fills the control space, against grids and random designs of the same size.

Runtime: about 4 minutes on a busy 2-core machine, 1 thread (``--quick``: about 1 minute).

    .venv/bin/python benchmarks/design_quality.py [--quick]

Two cases: the TS808's controls (2 knobs, drive with an audio taper, + 2 switches) and 7 knobs + 1
switch. For each, designs with the same number of *training* settings (space-filling + anchors) are
scored in the taper-aware knob coordinates ``u`` (the coordinates the model sees):

* maximin: the smallest distance between two settings (all, and within one switch combination);
  larger is better;
* CD: scipy's centred L2 discrepancy of the knob coordinates; smaller is more uniform;
* fill: the distance from a random setting (2000 of them, any switch combination) to the nearest
  design setting of the same combination, mean and max; smaller means no region is left unrecorded;
* minutes: the recording session at a 90 s signal, takes in knobcap's travelling-salesman order and
  (in brackets) the median over 20 random orders.

A last table (``--ends``: only it) compares the design before and after issue 11 (every knob at both
ends in every switch combination) at 16, 24 and 32 training settings, for the TS808's controls and
3 knobs + 1 switch: the interior fill distance (largest distance from a dense interior grid point to
the nearest setting of its combination), the share of (knob, end, combination) recorded, and the
maximin distance within combinations, with a hand grid and random settings.

Baselines: a full-range grid per switch combination (knobs at 0 and 10, or 0/5/10, of the *dial*:
what a person does by hand); for 7 knobs, where a grid of that size does not exist, a random subset of
the 3-level dial grid; uniform random settings in ``u`` with random switch combinations; scipy's
optimised Latin hypercube (``random-cd``) with switch combinations dealt in turn. Random baselines are
the median over 20 seeds, knobcap's over 3.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time

import numpy as np
from scipy.stats import qmc

from knobcap.capture import design as dsg
from knobcap.controls import Controls, Knob, Switch, setting_from_units

SIGNAL_SECONDS = 90.0


def ts808() -> Controls:
    return Controls(knobs=(Knob("drive", taper="audio"), Knob("tone")),
                    switches=(Switch("diodes", ("silicon", "led")), Switch("fat", ("off", "on"))))


def seven_knobs() -> Controls:
    return Controls(knobs=(Knob("gain", taper="audio"), *(Knob(f"k{i}") for i in range(2, 8))),
                    switches=(Switch("bright", ("off", "on")),))


def fill_distance(controls: Controls, settings: list[dict], rng: np.random.Generator) -> tuple[float, float]:
    combos = controls.switch_combinations()
    units = dsg.knob_units(controls, settings)
    keys = [tuple(s[w.name] for w in controls.switches) for s in settings]
    gaps = []
    for _ in range(2000):
        combo = combos[rng.integers(len(combos))]
        key = tuple(combo.values())
        mine = units[[i for i, k in enumerate(keys) if k == key]]
        if len(mine) == 0:
            gaps.append(math.sqrt(len(controls.knobs)))
            continue
        gaps.append(float(np.min(np.linalg.norm(mine - rng.uniform(size=len(controls.knobs)), axis=1))))
    return float(np.mean(gaps)), float(np.max(gaps))


def score(controls: Controls, settings: list[dict], rng: np.random.Generator) -> dict[str, float]:
    cost = dsg.cost_matrix(controls, settings)
    order = dsg.order_path(cost)
    ordered = dsg.session_time(controls, [settings[i] for i in order], SIGNAL_SECONDS)
    shuffled = [dsg.session_time(controls, [settings[i] for i in rng.permutation(len(settings))],
                                 SIGNAL_SECONDS).minutes for _ in range(20)]
    fill_mean, fill_max = fill_distance(controls, settings, rng)
    return {"maximin": dsg.maximin_distance(controls, settings),
            "within": dsg.maximin_distance(controls, settings, within_combinations=True),
            "cd": dsg.discrepancy(controls, settings), "fill": fill_mean, "fill_max": fill_max,
            "minutes": ordered.minutes, "shuffled": float(np.median(shuffled))}


def grid(controls: Controls, levels: int) -> list[dict]:
    dial = [[k.min + (k.max - k.min) * i / (levels - 1) for i in range(levels)] for k in controls.knobs]
    return [dict(zip([k.name for k in controls.knobs], values, strict=True)) | combo
            for combo in controls.switch_combinations() for values in itertools.product(*dial)]


def grid_subset(controls: Controls, n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` distinct settings of the 3-level dial grid, switch combinations dealt in turn."""
    combos = controls.switch_combinations()
    out: list[dict] = []
    while len(out) < n:
        values = {k.name: k.min + (k.max - k.min) * rng.integers(3) / 2 for k in controls.knobs}
        setting = values | combos[len(out) % len(combos)]
        if setting not in out:
            out.append(setting)
    return out


def random_design(controls: Controls, n: int, rng: np.random.Generator) -> list[dict]:
    combos = controls.switch_combinations()
    units = rng.uniform(size=(n, len(controls.knobs)))
    picks = rng.integers(len(combos), size=n)
    return [setting_from_units(controls, u, combos[i]) for u, i in zip(units, picks, strict=True)]


def scipy_lhs(controls: Controls, n: int, rng: np.random.Generator) -> list[dict]:
    combos = controls.switch_combinations()
    units = qmc.LatinHypercube(len(controls.knobs), optimization="random-cd", seed=rng).random(n)
    return [setting_from_units(controls, u, combos[i % len(combos)]) for i, u in enumerate(units)]


def knobcap_design(controls: Controls, n_train: int, anchors: int, seed: int) -> list[dict]:
    size = dsg.DesignSize(n_train - anchors, anchors, 1)
    design = dsg.initial_design(controls, size, seed=seed)
    return [p.setting for p in design.points if p.role != "holdout"]


# ------------------------------------------------------------------------ knob ends (issue 11)
def three_knobs() -> Controls:
    return Controls(knobs=(Knob("gain", taper="audio"), Knob("bass"), Knob("treble")),
                    switches=(Switch("mode", ("a", "b")),))


def _combo_groups(controls: Controls, settings: list[dict]) -> list[np.ndarray]:
    units = dsg.knob_units(controls, settings)
    keys = [tuple(s[w.name] for w in controls.switches) for s in settings]
    return [units[[i for i, k in enumerate(keys) if k == tuple(c.values())]]
            for c in controls.switch_combinations()]


def interior_fill(controls: Controls, settings: list[dict]) -> float:
    """The largest distance from a point of a dense interior grid (u in [0.1, 0.9] per knob; 17 levels
    for 2 knobs, 9 for 3) to the nearest setting of its switch combination."""
    k = len(controls.knobs)
    grid_u = np.array(list(itertools.product(np.linspace(0.1, 0.9, 17 if k <= 2 else 9), repeat=k)))
    worst = 0.0
    for mine in _combo_groups(controls, settings):
        if len(mine) == 0:
            return math.sqrt(k)
        worst = max(worst, float(np.max(np.min(np.linalg.norm(grid_u[:, None] - mine[None], axis=2), 1))))
    return worst


def end_coverage(controls: Controls, settings: list[dict]) -> float:
    """The share of (knob, end, switch combination) with a setting at that end (u within 0.005)."""
    hits = total = 0
    for mine in _combo_groups(controls, settings):
        for d in range(len(controls.knobs)):
            for end in (0.0, 1.0):
                total += 1
                hits += bool(len(mine)) and bool(np.any(np.abs(mine[:, d] - end) <= 0.005))
    return hits / total


def hand_grid(controls: Controls, n: int) -> list[dict]:
    """Per switch combination the first ``n / |C|`` points of the smallest full-range dial grid that
    holds them (0/10, then 0/5/10, ...): what a person does by hand."""
    combos = controls.switch_combinations()
    per = max(1, n // len(combos))
    levels = max(2, math.ceil(per ** (1 / len(controls.knobs)) - 1e-9))
    dial = [[k.min + (k.max - k.min) * i / (levels - 1) for i in range(levels)] for k in controls.knobs]
    points = list(itertools.product(*dial))[:per]
    return [dict(zip([k.name for k in controls.knobs], p, strict=True)) | c for c in combos for p in points]


def end_report(seeds_ours: int, seeds_random: int) -> None:
    print("\nKnob ends (issue 11): training settings (space-filling + 4 anchors), in u. fill: largest "
          "distance from the interior grid\nto the nearest setting of its combination (smaller is "
          "better); ends: share of (knob, end, combination) recorded;\nmaximin: smallest distance "
          "within a combination (larger is better). Median over seeds.")
    rng = np.random.default_rng(5)
    for title, controls in (("TS808-like: 2 knobs + 2 two-way switches", ts808()),
                            ("3 knobs + 1 two-way switch", three_knobs())):
        print(f"\n{title}")
        print(f"{'design':<40} {'takes':>5} {'fill':>6} {'ends':>6} {'maximin':>8}")
        for n in (16, 24, 32):
            size = dsg.DesignSize(n - 4, 4, 1)
            contenders = {
                "knobcap before (ends at anchors only)": [
                    [p.setting for p in dsg.initial_design(controls, size, seed=s, edges=False).points
                     if p.role != "holdout"] for s in range(seeds_ours)],
                "knobcap, ends in every combination": [
                    [p.setting for p in dsg.initial_design(controls, size, seed=s).points
                     if p.role != "holdout"] for s in range(seeds_ours)],
                "hand grid (dial 0/10, 0/5/10)": [hand_grid(controls, n)],
                "uniform random": [random_design(controls, n, rng) for _ in range(seeds_random)],
            }
            for name, designs in contenders.items():
                fill = float(np.median([interior_fill(controls, d) for d in designs]))
                ends = float(np.median([end_coverage(controls, d) for d in designs]))
                spread = float(np.median([dsg.maximin_distance(controls, d, within_combinations=True)
                                          for d in designs]))
                print(f"{name:<40} {len(designs[0]):>5} {fill:6.3f} {ends:6.2f} {spread:8.3f}")
            sys.stdout.flush()


def median_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.median([r[key] for r in rows])) for key in rows[0]}


def report(title: str, controls: Controls, n: int, contenders: dict[str, list[list[dict]]]) -> None:
    print(f"\n{title}: {n} training settings ({len(controls.knobs)} knobs, "
          f"{len(controls.switch_combinations())} switch combinations)")
    print(f"{'design':<34} {'maximin':>8} {'within':>8} {'CD':>8} {'fill':>6} {'fill max':>9} "
          f"{'minutes (shuffled)':>19}")
    rng = np.random.default_rng(123)
    for name, designs in contenders.items():
        s = median_scores([score(controls, d, rng) for d in designs])
        within = "-" if math.isinf(s["within"]) else f"{s['within']:.3f}"
        print(f"{name:<34} {s['maximin']:8.3f} {within:>8} {s['cd']:8.4f} {s['fill']:6.3f} "
              f"{s['fill_max']:9.3f} {s['minutes']:8.1f} ({s['shuffled']:.1f})")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds (5 random, 1 knobcap)")
    parser.add_argument("--ends", action="store_true", help="only the knob-ends table (issue 11)")
    args = parser.parse_args()
    seeds_random = 5 if args.quick else 20
    seeds_ours = 1 if args.quick else 3
    start = time.perf_counter()
    if args.ends:
        end_report(max(seeds_ours, 3) if not args.quick else 2, seeds_random)
        print(f"\nruntime {time.perf_counter() - start:.0f} s")
        return
    rng = np.random.default_rng(0)

    ts = ts808()
    for levels in (2, 3):
        n = len(grid(ts, levels))
        report("TS808 controls", ts, n, {
            "knobcap (sliced maximin + anchors)": [knobcap_design(ts, n, 4, s) for s in range(seeds_ours)],
            f"grid {levels}x{levels} per combination": [grid(ts, levels)],
            "uniform random": [random_design(ts, n, rng) for _ in range(seeds_random)],
            "scipy LHS random-cd": [scipy_lhs(ts, n, rng) for _ in range(seeds_random)],
        })

    seven = seven_knobs()
    n = dsg.default_size(seven).train + dsg.default_anchors(seven)
    report("7 knobs + 1 switch", seven, n, {
        "knobcap (sliced maximin + anchors)": [knobcap_design(seven, n, 4, s) for s in range(seeds_ours)],
        "3-level dial grid, random subset": [grid_subset(seven, n, rng) for _ in range(seeds_random)],
        "uniform random": [random_design(seven, n, rng) for _ in range(seeds_random)],
        "scipy LHS random-cd": [scipy_lhs(seven, n, rng) for _ in range(seeds_random)],
    })
    end_report(seeds_ours, seeds_random)
    print(f"\nminutes: {SIGNAL_SECONDS:g} s signal; assumed {dsg.DEFAULT_COSTS.describe()}.")
    print(f"runtime {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
