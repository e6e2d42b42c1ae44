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
from knobcap.controls import Controls, Knob, Switch, round_value

SIGNAL_SECONDS = 90.0


def ts808() -> Controls:
    return Controls(knobs=(Knob("drive", taper="audio"), Knob("tone")),
                    switches=(Switch("diodes", ("silicon", "led")), Switch("fat", ("off", "on"))))


def seven_knobs() -> Controls:
    return Controls(knobs=(Knob("gain", taper="audio"), *(Knob(f"k{i}") for i in range(2, 8))),
                    switches=(Switch("bright", ("off", "on")),))


def from_units(controls: Controls, units: np.ndarray, combos: list[dict[str, str]]) -> list[dict]:
    names = controls.knobs
    return [{k.name: round_value(k, k.from_unit(float(u))) for k, u in zip(names, row, strict=True)}
            | combo for row, combo in zip(units, combos, strict=True)]


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
    return from_units(controls, rng.uniform(size=(n, len(controls.knobs))),
                      [combos[i] for i in rng.integers(len(combos), size=n)])


def scipy_lhs(controls: Controls, n: int, rng: np.random.Generator) -> list[dict]:
    combos = controls.switch_combinations()
    units = qmc.LatinHypercube(len(controls.knobs), optimization="random-cd", seed=rng).random(n)
    return from_units(controls, units, [combos[i % len(combos)] for i in range(n)])


def knobcap_design(controls: Controls, n_train: int, anchors: int, seed: int) -> list[dict]:
    size = dsg.DesignSize(n_train - anchors, anchors, 1)
    design = dsg.initial_design(controls, size, seed=seed)
    return [p.setting for p in design.points if p.role != "holdout"]


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
    args = parser.parse_args()
    seeds_random = 5 if args.quick else 20
    seeds_ours = 1 if args.quick else 3
    start = time.perf_counter()
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
    print(f"\nminutes: {SIGNAL_SECONDS:g} s signal; assumed {dsg.DEFAULT_COSTS.describe()}.")
    print(f"runtime {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
