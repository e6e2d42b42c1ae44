"""Accuracy of a knobcap capture of the virtual TS808 (2 knobs + 2 switches) on settings never trained on.

Runtime: about 15-20 minutes on a quiet 2-core CPU with the defaults (training is capped by
``--minutes``, 10 by default; reamp about 30 s; the evaluation 3-6 minutes), more on a shared machine.

    .venv/bin/python benchmarks/accuracy.py [--takes 16] [--minutes 10] [--grid 6] [--out DIR]

One capture, as a user would make it: ``knobcap``'s design with at most ``--takes`` planned settings in
all (space-filling + anchors at the knob ends + held-out ones), a ``--seconds`` test signal reamped
through the virtual TS808 (x8 oversampling), checked, one parametric WaveNet trained for at most
``--minutes``, then evaluated (``knobcap.evaluation.evaluate``):

* dense grid: ``--grid`` taper-aware levels per knob x the 4 switch combinations, device vs model on
  the validation segment (held-out time); points that coincide with a training setting are left out;
* real DI playing: the clips in ``shared/data/di`` (each cut to ``--di-seconds``) rendered at
  ``--di-settings`` seeded random settings (skipped, with a note, where the folder is absent: the
  bundled 8 s clip is used instead);
* the held-out takes of the plan.

Prints median, p90 and max ESR of each and the training minutes, and whether the goal is met:
median ESR <= 0.004 and max <= 0.01 on settings never trained on (the dense grid).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from knobcap.demo import DemoConfig, run_demo
from knobcap.evaluation.evaluate import verdict
from knobcap.training.run import Run

DI_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "di"
GOAL_MEDIAN, GOAL_MAX = 0.004, 0.01


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--takes", type=int, default=16, help="planned settings in all (default 16)")
    parser.add_argument("--seconds", type=float, default=90.0, help="test signal length (30-180 s)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training")
    parser.add_argument("--batch", type=int, default=8, help="windows per training step")
    parser.add_argument("--segment", type=int, default=4096, help="scored samples per window")
    parser.add_argument("--grid", type=int, default=6, help="grid levels per knob")
    parser.add_argument("--di-settings", type=int, default=4)
    parser.add_argument("--di-seconds", type=float, default=10.0, help="cut each DI clip to this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="session folder (default: a new temp one)")
    args = parser.parse_args(argv)

    di = str(DI_FOLDER) if DI_FOLDER.is_dir() else None
    if di is None:
        print(f"note: {DI_FOLDER} is absent; the DI figures use the bundled 8 s clip instead.")
    out = args.out or Path(tempfile.mkdtemp(prefix="knobcap-accuracy-")) / "session"
    config = DemoConfig(signal_seconds=args.seconds, takes=args.takes,
                        training={"epochs": 10_000, "steps_per_epoch": 250, "max_minutes": args.minutes,
                                  "threads": args.threads, "batch_size": args.batch,
                                  "segment_length": args.segment, "val_max_seconds": 3.0},
                        grid=args.grid, di_settings=args.di_settings, di_seconds=args.di_seconds, di=di,
                        seed=args.seed)
    started = time.monotonic()
    result = run_demo(out, config)
    total = (time.monotonic() - started) / 60
    metrics = result.metrics
    summary = Run(result.run_dir).read_summary()
    plan = (out / "plan.csv").read_text(encoding="utf-8").splitlines()[1:]
    roles = {r: sum(line.endswith("," + r) for line in plan) for r in ("train", "anchor", "holdout")}

    print()
    print(f"knobcap accuracy benchmark: virtual TS808, {len(plan)} planned takes ({roles['train']} "
          f"space-filling, {roles['anchor']} anchors, {roles['holdout']} held out), "
          f"{args.seconds:g} s signal")
    print(f"session: {out}")
    print(f"training: {summary['minutes']:.1f} min, {summary['epochs']} epochs (best "
          f"{summary['best_epoch']}), {summary['parameters']} parameters; whole benchmark {total:.1f} min")
    print()
    print(f"{'evaluation':<40} {'n':>4} {'median':>9} {'p90':>9} {'max':>9}  verdict (median / max)")
    for key, title in (("grid", f"dense grid {args.grid}x{args.grid}x4, never trained on"),
                       ("di", f"real DI ({len(metrics.get('di', {}).get('clips', []))} clips) x "
                              f"{args.di_settings} settings"),
                       ("heldout_settings", "held-out takes (never trained on)"),
                       ("heldout_time", "trained settings, held-out time")):
        part = metrics.get(key)
        if not part or not part["summary"]["count"]:
            print(f"{title:<40} {'0':>4}")
            continue
        s = part["summary"]
        print(f"{title:<40} {s['count']:>4} {s['median']:>9.5f} {s['p90']:>9.5f} {s['max']:>9.5f}  "
              f"{verdict(s['median'])} / {verdict(s['max'])}")
    grid = metrics["grid"]["summary"]
    print()
    met_median = "met" if grid["median"] <= GOAL_MEDIAN else "MISSED"
    met_max = "met" if grid["max"] <= GOAL_MAX else "MISSED"
    print(f"goal on the dense grid: median <= {GOAL_MEDIAN} ({met_median}, {grid['median']:.5f}), "
          f"max <= {GOAL_MAX} ({met_max}, {grid['max']:.5f})")
    worst = sorted((r for r in metrics["grid"]["rows"] if not r["trained"]), key=lambda r: -r["esr"])[:3]
    print("worst grid settings: " + "; ".join(f"{r['label']} ({r['esr']:.4f})" for r in worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
