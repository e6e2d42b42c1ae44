"""Data efficiency: ESR on settings never trained on against the number of recorded settings, for
knobcap's design, a grid and random designs, at the same training budget (the virtual TS808, or any
virtual device with ``--device``, e.g. an LV2 plugin).

Runtime: about (designs x sizes x seeds) x (training + 1 min); with ``--steps 1000`` one model takes
about 5-7 minutes on one core of a quiet 2-core CPU, so 3 designs x 3 sizes x 1 seed is about an hour.
Runs are kept in ``--out`` and reused, so a killed run continues and more seeds can be added later.

    .venv/bin/python benchmarks/data_efficiency.py [--sizes 4 8 16 24] [--steps 300] [--grid 5]
        [--seeds 0 1 2] [--designs knobcap grid random] [--no-screen] [--train KEY=VALUE ...] [--out DIR]
        [--device lv2:URI [--controls NAME ...]]

For each size ``n`` (training settings: space-filling + anchors) and each design:

* ``knobcap``: knobcap's own design (``initial_design``'s ``method="auto"``: the boundary-covering
  design when each switch combination gets enough settings, else the sliced Latin hypercube; in the
  knobs' screened coordinates, as ``knobcap init --device DEVICE`` writes them, with 2 anchors at the
  knob ends for n < 8, else 4); ``knobcap-coverage`` and ``knobcap-lhs`` force one method;
* ``grid``: what a person does by hand: per switch combination a grid of evenly spaced *dial*
  positions (:func:`grid_levels`: 0/10, or 0/5/10), e.g. 2 x 2 corners for n = 16 on two knobs and
  3 x 3 less one corner for 32; a single point is the middle of the dial; where one knob gets a level
  more than another (3 x 2 for n = 24), ``grid`` gives it to the first knob, ``grid-reversed`` to the
  last (the TS808's drive / tone); ``grid-held`` grids only the knobs the model learns, output-gain
  knobs (``gain_db``, found by screening) held at their defaults, as knobcap's plan holds them (``grid``
  spends takes on their levels too). Its dial grid can be the scoring grid itself (24 takes on two
  linear knobs: 5 x 5 less one, ``--grid 5``), and then only the left-out point is never trained on:
  score it on another ``--grid``;
* ``random``: knob coordinates uniform in the taper's ``u`` (not the warp), switch combinations dealt
  in turn;
* ``knobcap-more``: knobcap's design with ``n - more`` settings, a model trained on it, then
  ``knobcap plan --more`` (``training.refine``) adds ``--more`` settings (default ``n // 4``) where that
  model is least trustworthy, and a model is trained from scratch on all ``n`` with the same budget.
  Its first model's training time is printed but not counted in the budget comparison.

Besides median / p90 / max, the median per level of each knob (grid level ``0 .. L-1``) shows whether
the knob ends are as good as the interior.

All designs train in the same (screened) model coordinates; ``--no-screen`` drops the warps. Takes are
aligned with the virtual reamp's known latency (see :func:`write_true_alignment`). Every
session shares the test signal and the same 2 held-out takes (seeded random settings), and
every model the same training recipe and number of steps (``--epochs`` x ``--steps``/epochs, of
``--batch`` windows of ``--segment`` samples: smaller than ``knobcap train``'s defaults so that a dozen
models fit in an hour; the learning rate follows ``TrainConfig``'s default schedule over those steps,
cosine since issue 11's session 10; ``--train KEY=VALUE`` changes any other option), so only the
recorded settings differ. Each model is scored against the
device on a dense grid (``--grid`` levels per knob in taper coordinates x every switch combination, on the
validation segment, held-out time); grid points that coincide with a training setting are left out.
Prints median / p90 / max ESR per design, size and seed, then the medians over seeds, and the
training minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

from knobcap.capture.design import DesignSize, held_gain_knobs, initial_design
from knobcap.capture.reamp import reamp_session
from knobcap.capture.screening import screen_device
from knobcap.capture.session import PlannedTake, Session, init_session, plan_csv_text, take_name
from knobcap.capture.testsignal import generate_signal, write_signal
from knobcap.controls import Controls, Setting, round_setting
from knobcap.devices import get_device
from knobcap.evaluation.evaluate import evaluate_run, random_settings
from knobcap.fileio import write_text_atomic

DESIGNS = ("knobcap", "knobcap-more", "knobcap-coverage", "knobcap-lhs", "grid", "grid-reversed", "grid-held",
           "random")


def knobcap_design(controls: Controls, n: int, seed: int, anchors: int | None = None, method: str = "auto"
                   ) -> list[tuple[Setting, str]]:
    anchors = anchors if anchors is not None else 2 if n < 8 else 4
    design = initial_design(controls, DesignSize(n - anchors, anchors, 0), seed=seed, method=method)
    return [(p.setting, p.role) for p in design.points]


def grid_levels(knobs: int, per: int, reverse: bool = False) -> list[int]:
    """Dial positions per knob of the smallest balanced grid with at least ``per`` points (2 x 2 for 4
    on two knobs, 3 x 3 for 8): every knob starts at 2 levels (0 and 10) and the knob with the fewest
    gets one more until the grid is large enough, the first such knob (the last with ``reverse``: a
    person may give the extra level to either knob); a single point is the middle of every dial."""
    if per <= 1:
        return [1] * knobs
    counts = [2] * knobs
    order = list(reversed(range(knobs))) if reverse else list(range(knobs))
    while math.prod(counts) < per:
        counts[min(order, key=lambda i: counts[i])] += 1
    return counts


def grid_design(controls: Controls, n: int, reverse: bool = False, held: bool = False
                ) -> list[tuple[Setting, str]]:
    """What a person does by hand: per switch combination a grid of evenly spaced *dial* positions
    (:func:`grid_levels`), cut to the takes it has (the last points of the grid, around the top
    corner, are the ones left out). ``held``: over the knobs the model learns only, output-gain knobs
    at their defaults (as knobcap's plan holds them; ``grid-held``)."""
    combos = controls.switch_combinations()
    per = max(1, n // len(combos))
    fixed = held_gain_knobs(controls) if held else {}
    knobs = [k for k in controls.knobs if k.name not in fixed]
    counts = grid_levels(len(knobs), per, reverse)
    axes = [[0.5] if count == 1 else [i / (count - 1) for i in range(count)] for count in counts]
    points = list(itertools.product(*axes))[:per]
    out = []
    for combo in combos:
        for point in points:
            setting: Setting = {knob.name: knob.min + p * (knob.max - knob.min)
                                for knob, p in zip(knobs, point, strict=True)}
            out.append((round_setting(controls, {**setting, **fixed, **combo}), "train"))
    return out[:n]


def random_design(controls: Controls, n: int, seed: int) -> list[tuple[Setting, str]]:
    return [(round_setting(controls, s), "train") for s in random_settings(controls, n, seed=1000 + seed)]


def make_session(root: Path, controls: Controls, settings: list[tuple[Setting, str]],
                 holdouts: list[Setting], signal_path: Path, device_name: str) -> Session:
    init_session(root, controls, device_name)
    rows = settings + [(s, "holdout") for s in holdouts]
    takes = [PlannedTake(take_name(i + 1), dict(s), role) for i, (s, role) in enumerate(rows)]  # type: ignore[arg-type]
    write_text_atomic(root / "plan.csv", plan_csv_text(controls, takes))
    for suffix in (".wav", ".json"):
        (root / f"input{suffix}").write_bytes(signal_path.with_suffix(suffix).read_bytes())
    return Session.open(root)


def write_true_alignment(root: Path) -> None:
    """check.json from the virtual reamp's known latency and polarity (``reamp.json``), so that a
    latency-calibration fault cannot confound a comparison of designs (``knobcap check`` is tested on
    its own; ``benchmarks/latency_accuracy.py`` measures it)."""
    truth = json.loads((root / "reamp.json").read_text(encoding="utf-8"))["takes"]
    takes = {name: {"status": "ok", "latency": t["latency"], "polarity": t["polarity"], "problems": []}
             for name, t in truth.items()}
    write_text_atomic(root / "check.json", json.dumps({"ok": True, "takes": takes,
                                                       "note": "true alignment of a virtual reamp"}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="ts808", help="a virtual device: ts808 or lv2:URI")
    parser.add_argument("--controls", nargs="+", default=None, metavar="CONTROL",
                        help="an LV2 device's controls to capture, as 'knobcap init --controls' (the others "
                             "stay at the plugin's defaults)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 24])
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    parser.add_argument("--seconds", type=float, default=60.0, help="test signal length (30-180 s)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per model")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8, help="windows per step")
    parser.add_argument("--segment", type=int, default=4096, help="scored samples per window")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--take-weighting", type=float, default=0.0,
                        help="TrainConfig.take_weighting: the share of windows drawn by each take's error")
    parser.add_argument("--train", nargs="+", default=[], metavar="KEY=VALUE",
                        help="more TrainConfig options for every model, VALUE as JSON (e.g. pre_emphasis=0)")
    parser.add_argument("--grid", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="design and training seeds; figures are medians over them")
    parser.add_argument("--anchors", type=int, default=None,
                        help="anchors of knobcap's design (default: 2 for n < 8, else 4); 2 per switch "
                             "combination puts every knob at both ends in every combination")
    parser.add_argument("--no-screen", action="store_true",
                        help="model coordinates without the measured warps (as before screening)")
    parser.add_argument("--no-gain-knobs", action="store_true",
                        help="learn every knob, output-gain knobs too (as before session 13)")
    parser.add_argument("--more", type=int, default=None,
                        help="knobcap-more: settings added by plan --more (default n // 4)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--report", action="store_true",
                        help="only print the tables, from the runs already trained and scored in --out")
    args = parser.parse_args(argv)

    from knobcap.training.config import TrainConfig
    from knobcap.training.loop import train_session
    from knobcap.training.refine import plan_more
    from knobcap.training.run import Run

    device = get_device(args.device, **({"select": tuple(args.controls)} if args.controls else {}))
    # as `knobcap init --device DEVICE` does: the knobs' coordinates warped by screening the device
    controls = device.controls if args.no_screen else screen_device(device)
    if args.no_gain_knobs:  # the screened warps kept, no knob applied as an output gain
        controls = replace(controls, knobs=tuple(replace(k, gain_db=None) for k in controls.knobs))
    out = args.out or Path(tempfile.mkdtemp(prefix="knobcap-data-efficiency-"))
    out.mkdir(parents=True, exist_ok=True)
    signal_path = out / "input.wav"
    if not signal_path.is_file():
        write_signal(signal_path, generate_signal(args.seconds))
    holdouts = [round_setting(controls, s) for s in random_settings(controls, 2, seed=999)]
    cache = out / "grid-cache"
    config = dict(epochs=args.epochs, steps_per_epoch=max(1, args.steps // args.epochs),
                  batch_size=args.batch, segment_length=args.segment, threads=args.threads,
                  val_max_seconds=3.0, take_weighting=args.take_weighting) | train_options(args.train)
    print(f"output: {out}; " + ("the runs as they were trained and scored" if args.report else
                                 f"training: {config['epochs']} x {config['steps_per_epoch']} steps of "
                                 f"{args.batch} windows of {args.segment} samples"))
    results: dict[tuple[str, int, int], dict] = {}
    for seed in args.seeds:
        for n in args.sizes:
            for name in args.designs:
                label = f"{name}-a{args.anchors}" if name == "knobcap" and args.anchors is not None else name
                root = out / f"{label}-{n}-seed{seed}"
                if args.report:
                    if (root / "runs" / "r" / "metrics.json").is_file():
                        results[(name, n, seed)] = scored_run(root, controls, args.grid)
                    else:
                        print(f"  {root}: no scored run; left out of the tables (run without --report to "
                              "train and score it)")
                    continue
                more = args.more if args.more is not None else n // 4
                first_n = n - more if name == "knobcap-more" else n
                if name.startswith("knobcap"):
                    method = {"knobcap-lhs": "lhs", "knobcap-coverage": "coverage"}.get(name, "auto")
                    settings = knobcap_design(controls, first_n, seed, args.anchors, method)
                elif name.startswith("grid"):
                    settings = grid_design(controls, n, name == "grid-reversed", name == "grid-held")
                else:
                    settings = random_design(controls, n, seed)
                session = Session.open(root) if (root / "plan.csv").is_file() else \
                    make_session(root, controls, settings, holdouts, signal_path, args.device)
                reamp_session(session, device, seed=seed)
                write_true_alignment(root)
                if name == "knobcap-more" and len(session.training_takes()) < n:
                    first = Run.in_session(root, "first")
                    if not first.summary_path.is_file():
                        train_session(root, TrainConfig.from_dict({**config, "seed": seed}), run="first",
                                      progress=False)
                    plan_more(root, n - len(session.training_takes()), seed=seed, run="first")
                    session = Session.open(root)
                    reamp_session(session, device, seed=seed)
                    write_true_alignment(root)
                run = Run.in_session(root, "r")
                if not run.summary_path.is_file():
                    train_session(root, TrainConfig.from_dict({**config, "seed": seed}), run="r",
                                  progress=False)
                minutes = float(run.read_summary()["minutes"])
                doc = evaluate_run(run.path, device=args.device, grid=args.grid, use_di=False,
                                   cache_dir=cache)
                result = run_result(doc, minutes, controls, args.grid)
                results[(name, n, seed)] = result
                s, levels = result, result["levels"]
                print(f"  seed {seed} {name:>8} n={n:<3} median {s['median']:.5f}  p90 {s['p90']:.5f}  "
                      f"max {s['max']:.5f}  ({s['count']} grid points never trained on; training "
                      f"{minutes:.1f} min)", flush=True)
                for knob, meds in levels.items():
                    print(f"      median by {knob} level: " + " / ".join(f"{m:.4f}" for m in meds),
                          flush=True)

    print()
    shape = "x".join([str(args.grid)] * len(controls.knobs) + [str(len(controls.switch_combinations()))])
    print(f"ESR on a {shape} grid of settings never trained on (median / p90 / max); "
          "same training steps for every model")
    print(f"(medians over {len(args.seeds)} seed(s) {args.seeds}; model coordinates "
          f"{'without' if args.no_screen else 'with'} screening warps)")
    print(f"{'n':>4}  " + "  ".join(f"{name:^29}" for name in args.designs))
    def complete(name: str, n: int) -> bool:  # every seed's run of this design and size was scored
        return all((name, n, seed) in results for seed in args.seeds)

    for n in args.sizes:
        cells = []
        for name in args.designs:
            if not complete(name, n):
                cells.append("-")
                continue
            runs = [results[(name, n, seed)] for seed in args.seeds]
            med = [float(np.median([r[key] for r in runs])) for key in ("median", "p90", "max")]
            cells.append(f"{med[0]:.4f} / {med[1]:.4f} / {med[2]:.4f}")
        print(f"{n:>4}  " + "  ".join(f"{c:^29}" for c in cells))
    print()
    print("The same, scored on the grid points that no design of that size and seed trained on (one set "
          "of points for every design: a design that trains on grid points, as the hand grid does at the "
          "corners, is otherwise scored without them)")
    print(f"{'n':>4}  " + "  ".join(f"{name:^29}" for name in args.designs))
    for n in args.sizes:
        present = [name for name in args.designs if complete(name, n)]
        if not present:
            continue
        common = {seed: common_scores([results[(name, n, seed)]["rows"] for name in present])
                  for seed in args.seeds}
        cells = []
        for name in args.designs:
            if name not in present:
                cells.append("-")
                continue
            med = np.median([common[seed][present.index(name)][:3] for seed in args.seeds], axis=0)
            cells.append(f"{med[0]:.4f} / {med[1]:.4f} / {med[2]:.4f}")
        points = sorted({int(common[seed][0][3]) for seed in args.seeds})
        print(f"{n:>4}  " + "  ".join(f"{c:^29}" for c in cells) + f"  ({'/'.join(map(str, points))} points)")
    print()
    print("median ESR per knob level (grid levels low -> high; medians over seeds)")
    level_medians = {(n, name): {knob: list(np.median([results[(name, n, seed)]["levels"][knob]
                                                       for seed in args.seeds], axis=0))
                                 for knob in results[(name, n, args.seeds[0])]["levels"]}
                     for n in args.sizes for name in args.designs if complete(name, n)}
    for (n, name), levels in level_medians.items():
        for knob, meds in levels.items():
            print(f"{n:>4} {name:>13} {knob:>6}: " + " / ".join(f"{m:.4f}" for m in meds))
    print()
    print("knob ends against the interior: each knob's worse end level over its middle level (medians "
          "over seeds; goal <= 2)")
    for (n, name), levels in level_medians.items():
        print(f"{n:>4} {name:>13}: " + ", ".join(f"{knob} {ratio:.2f}x" for knob, ratio in
                                                 end_to_interior(levels).items()))
    if "knobcap" in args.designs and len(args.sizes) > 1:
        print()
        print("takes each design needs for knobcap's p90 (the fewest of --sizes whose p90 is as low; goal: "
              ">= 2x knobcap's)")
        p90 = {name: {n: float(np.median([results[(name, n, seed)]["p90"] for seed in args.seeds]))
                      for n in args.sizes if complete(name, n)} for name in args.designs}
        for n in (n for n in args.sizes if n in p90["knobcap"]):
            for name in (d for d in args.designs if d != "knobcap"):
                need = takes_for_p90(p90[name], p90["knobcap"][n])
                said = (f"{need} ({need / n:.2f}x)" if need is not None else
                        f"more than {max(p90[name], default=0)} (the most it was run with)")
                print(f"{n:>4} knobcap p90 {p90['knobcap'][n]:.4f}: {name} needs {said}")
    return 0


def train_options(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs (VALUE as JSON, else a string) as TrainConfig options."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--train: expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def end_to_interior(levels: dict[str, list[float]]) -> dict[str, float]:
    """Per knob: the larger of its two end levels' median ESR over its middle level's (``L // 2``)."""
    out = {}
    for knob, meds in levels.items():
        middle = meds[len(meds) // 2]
        out[knob] = max(meds[0], meds[-1]) / middle if middle > 0 else float("inf")
    return out


def takes_for_p90(p90_by_size: dict[int, float], target: float) -> int | None:
    """The fewest takes among ``p90_by_size`` whose p90 is at most ``target`` (None: no size reaches it)."""
    sizes = [n for n, value in sorted(p90_by_size.items()) if value <= target]
    return sizes[0] if sizes else None


def scored_run(root: Path, controls: Controls, levels: int) -> dict:
    """A run already trained and scored (its ``metrics.json``), as the table rows need it."""
    metrics = root / "runs" / "r" / "metrics.json"
    if not metrics.is_file():
        raise SystemExit(f"{metrics}: no scored run; run without --report first to train and score it.")
    doc = json.loads(metrics.read_text(encoding="utf-8"))
    summary = json.loads((root / "runs" / "r" / "summary.json").read_text(encoding="utf-8"))
    return run_result(doc, float(summary["minutes"]), controls, levels)


def run_result(doc: dict, minutes: float, controls: Controls, levels: int) -> dict:
    """One run's row of the tables: its grid summary (median, p90, max, count), training minutes,
    median per knob level and the grid rows (for the common points)."""
    rows = doc["grid"]["rows"]
    return {**doc["grid"]["summary"], "minutes": minutes, "levels": per_level_medians(controls, rows, levels),
            "rows": rows}


def common_scores(rows_by_design: list[list[dict]]) -> list[tuple[float, float, float, int]]:
    """Per design (median, p90, max, count) of ESR over the grid points that none of the designs trained
    on (``rows``: :func:`evaluate_run`'s grid rows, in the same order for every design)."""
    labels = [r["label"] for r in rows_by_design[0]]
    if any([r["label"] for r in rows] != labels for rows in rows_by_design):
        raise ValueError("the designs were scored on different grids")
    keep = [i for i in range(len(labels)) if not any(rows[i]["trained"] for rows in rows_by_design)]
    out = []
    for rows in rows_by_design:
        values = np.array([rows[i]["esr"] for i in keep])
        out.append((float(np.median(values)), float(np.percentile(values, 90)), float(values.max()),
                    len(keep)))
    return out


def per_level_medians(controls: Controls, rows: list[dict], levels: int) -> dict[str, list[float]]:
    """Median grid ESR at each grid level of every knob (rows never trained on); a level is the rank of
    the knob's value among the grid's values (the grid is in taper coordinates, so not even in the dial)."""
    out: dict[str, list[float]] = {}
    for knob in controls.knobs:
        values = sorted({round(float(row["setting"][knob.name]), 9) for row in rows})
        by_level: list[list[float]] = [[] for _ in values]
        for row in rows:
            if not row.get("trained"):
                by_level[values.index(round(float(row["setting"][knob.name]), 9))].append(float(row["esr"]))
        out[knob.name] = [float(np.median(v)) if v else float("nan") for v in by_level]
    return out


if __name__ == "__main__":
    sys.exit(main())
