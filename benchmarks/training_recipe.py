"""Training-recipe experiment: one TrainConfig on a small virtual-TS808 session, ESR per epoch.

Runtime: about 1-2 minutes to render 16 takes of 60 s (cached in --cache), then --minutes of training
(8 by default) and under a minute of final evaluation; several times longer on a shared machine.

    .venv/bin/python benchmarks/training_recipe.py [--takes 16] [--seconds 60] [--minutes 8]
        [--config '{"lr": 0.006, "model": {...}}'] [--threads 1] [--run DIR]
        [--snapshot TAKE] [--role TAKE=ROLE ...]

The session is knobcap's own design (space-filling + anchors + held-out settings) for the TS808's
2 knobs + 2 switches, rendered at x8 oversampling through ``knobcap.devices``. Training uses
``knobcap.training.train`` with the defaults of :class:`TrainConfig` overridden by ``--config``.
Prints the training log (one row an epoch: train loss, mean ESR on held-out time, held-out-setting
ESR median and max on the validation segment) and, at the end, each held-out setting's ESR over the
whole signal, the mean validation ESR and the training minutes. Compare figures only between runs on
the same machine under the same load.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def render(takes: int, seconds: float, cache: Path) -> tuple[np.ndarray, np.ndarray, list, dict]:
    from knobcap.design import initial_design
    from knobcap.devices import get_device
    from knobcap.signal import generate_signal

    path = cache / f"ts808_{takes}x{seconds:g}s.npz"
    if path.is_file():
        data = np.load(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        return data["x"], data["y"], meta["rows"], meta["map"]
    device = get_device("ts808")
    signal = generate_signal(seconds)
    design = initial_design(device.controls, takes, seed=0)
    ys, rows = [], []
    for point in design.points:
        ys.append(device.process(signal.audio, signal.map.sample_rate, point.setting).astype(np.float32))
        rows.append({"setting": point.setting, "role": point.role})
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=signal.audio.astype(np.float32), y=np.stack(ys))
    path.with_suffix(".json").write_text(json.dumps({"rows": rows, "map": signal.map.to_dict()}))
    return signal.audio.astype(np.float32), np.stack(ys), rows, signal.map.to_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--config", default="{}", help="JSON object of TrainConfig fields")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "knobcap-bench")
    parser.add_argument("--run", type=Path, default=None, help="run folder (default: a new temp folder)")
    parser.add_argument("--snapshot", default=None, metavar="TAKE",
                        help="train on this one take only (a snapshot; scored on its held-out time)")
    parser.add_argument("--role", action="append", default=[], metavar="TAKE=ROLE",
                        help="change a take's role (train, anchor, holdout), e.g. take05=train")
    args = parser.parse_args()

    from knobcap.dataset import Take, TrainingData
    from knobcap.devices import get_device
    from knobcap.signal import SignalMap
    from knobcap.training import TrainConfig, train

    t0 = time.time()
    x, y, rows, map_dict = render(args.takes, args.seconds, args.cache)
    controls = get_device("ts808").controls
    signal_map = SignalMap.from_dict(map_dict)
    takes = [Take(f"take{i + 1:02d}", r["setting"], controls.to_vector(r["setting"]), r["role"], y[i])
             for i, r in enumerate(rows)]
    by_name = {t.name: t for t in takes}
    for change in args.role:
        name, _, role = change.partition("=")
        if name not in by_name or role not in ("train", "anchor", "holdout"):
            parser.error(f"--role {change}: expected TAKE=train|anchor|holdout with an existing take")
        by_name[name].role = role
    if args.snapshot:
        chosen = [t for t in takes if t.name == args.snapshot]
        if not chosen:
            parser.error(f"--snapshot {args.snapshot}: no such take (take01..take{len(takes):02d})")
        chosen[0].role = "train"
        takes = chosen
    val = signal_map.segment("validation_2")
    data = TrainingData(controls, signal_map.sample_rate, x, takes, signal_map.train_span,
                        (val.start, val.stop), source="virtual TS808")
    print(f"rendered/loaded {len(takes)} takes of {args.seconds:g} s in {time.time() - t0:.0f} s "
          f"({sum(t.role == 'holdout' for t in takes)} held out)")
    options = {"epochs": 10_000, "max_minutes": args.minutes, "threads": args.threads,
               **json.loads(args.config)}
    config = TrainConfig.from_dict(options, "--config")
    run = args.run or Path(tempfile.mkdtemp(prefix="knobcap-recipe-")) / "run"
    print("config:", json.dumps(config.to_dict()))
    result = train(data, config, run, progress=False)
    print((run / "train_log.csv").read_text(encoding="utf-8"))
    held = np.array(list(result.heldout_esr.values()))
    for take in data.heldout_takes:
        print(f"held out {take.name} {take.setting}: ESR {result.heldout_esr[take.name]:.5f}")
    settings = (f"median ESR {np.median(held):.5f}, max {held.max():.5f}" if len(held) else "none")
    steps = result.epochs * config.steps_per_epoch
    time_esr = np.mean(list(result.validation_esr.values()))
    print(f"held-out settings (whole signal): {settings}; held-out time mean ESR {time_esr:.5f}; "
          f"{result.epochs} epochs = {steps} steps (best {result.best_epoch}) in {result.minutes:.2f} min; "
          f"run {run}")


if __name__ == "__main__":
    main()
