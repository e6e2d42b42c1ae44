"""Training-recipe experiment: one TrainConfig on a small virtual-TS808 session, ESR per epoch.

Runtime: about 1-2 minutes to render 16 takes of 60 s (cached in --cache), then --minutes of training
(8 by default) and under a minute of final evaluation; several times longer on a shared machine.

    .venv/bin/python benchmarks/training_recipe.py [--takes 16] [--seconds 60] [--minutes 8]
        [--config '{"lr": 0.006, "model": {...}}'] [--threads 1] [--run DIR]
        [--snapshot TAKE] [--role TAKE=ROLE ...]

The session is knobcap's own design (space-filling + anchors + held-out settings) for the TS808's
2 knobs + 2 switches, rendered at x8 oversampling through ``knobcap.devices``. Training uses
``knobcap.training.loop.train`` with the defaults of :class:`TrainConfig` overridden by ``--config``.
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


def render(takes: int, seconds: float, cache: Path, controls: object = None, tag: str = ""
           ) -> tuple[np.ndarray, np.ndarray, list, dict]:
    from knobcap.capture.design import initial_design
    from knobcap.capture.testsignal import generate_signal
    from knobcap.devices import get_device

    path = cache / f"ts808_{takes}x{seconds:g}s{tag}.npz"
    if path.is_file():
        data = np.load(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        return data["x"], data["y"], meta["rows"], meta["map"]
    device = get_device("ts808")
    signal = generate_signal(seconds)
    design = initial_design(controls or device.controls, takes, seed=0)
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
    parser.add_argument("--warp", action="store_true",
                        help="screen the device first (capture.screening) and design/train in warped u")
    parser.add_argument("--grid", type=int, default=0, metavar="LEVELS",
                        help="also score a dense grid (LEVELS per knob x every switch combination) on "
                             "the bundled DI clip, which no take contains (0: skip)")
    parser.add_argument("--grid-seconds", type=float, default=8.0, help="DI seconds scored per setting")
    args = parser.parse_args()

    from knobcap.capture.testsignal import SignalMap
    from knobcap.devices import get_device
    from knobcap.training.config import TrainConfig
    from knobcap.training.data import Take, TrainingData
    from knobcap.training.loop import train
    from knobcap.training.run import Run

    t0 = time.time()
    controls = get_device("ts808").controls
    if args.warp:
        controls = warped_controls(controls)
        print("warps:", {k.name: [round(u, 3) for u in k.warp] for k in controls.knobs})
    tag = "_warp" if args.warp else ""
    x, y, rows, map_dict = render(args.takes, args.seconds, args.cache, controls, tag)
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
    print(Run(run).log_path.read_text(encoding="utf-8"))
    held = np.array(list(result.heldout_esr.values()))
    for take in data.heldout_takes:
        print(f"held out {take.name} {take.setting}: ESR {result.heldout_esr[take.name]:.5f}")
    settings = (f"median ESR {np.median(held):.5f}, max {held.max():.5f}" if len(held) else "none")
    steps = result.epochs * config.steps_per_epoch
    time_esr = np.mean(list(result.validation_esr.values()))
    print(f"held-out settings (whole signal): {settings}; held-out time mean ESR {time_esr:.5f}; "
          f"{result.epochs} epochs = {steps} steps (best {result.best_epoch}) in {result.minutes:.2f} min; "
          f"run {run}")
    if args.grid:
        grid_report(run, data, args.grid, args.grid_seconds, args.cache)


def warped_controls(controls: object) -> object:
    """The TS808's controls with warps screened on 6 s of the test signal's playing."""
    from knobcap.capture.screening import apply_warps, screen
    from knobcap.capture.testsignal import generate_signal
    from knobcap.devices import get_device

    device = get_device("ts808")
    signal = generate_signal(30)
    playing = signal.map.segment("playing")
    probe = signal.audio[playing.start:playing.start + 6 * signal.map.sample_rate]
    warps = screen(lambda s: device.process(probe, signal.map.sample_rate, s), controls)
    return apply_warps(controls, warps)


def grid_report(run: Path, data: object, levels: int, seconds: float, cache: Path) -> None:
    """Print ESR over a dense grid of settings on the bundled DI clip (never in any take)."""
    from knobcap.devices import get_device
    from knobcap.evaluation.evaluate import (
        RenderCache,
        dense_grid,
        di_clips,
        evaluate_against_device,
        torch_predictor,
    )
    from knobcap.models import bridge
    from knobcap.training.run import Run

    model = bridge.load(Run(run).model_path)
    controls = data.controls  # type: ignore[attr-defined]
    rate = data.sample_rate  # type: ignore[attr-defined]
    _, clip = di_clips(None, rate, seconds)[0]
    settings = dense_grid(get_device("ts808").controls, levels)  # the device's own taper, never the warp
    training = [t.setting for t in data.takes if t.role != "holdout"]  # type: ignore[attr-defined]
    rows = evaluate_against_device(torch_predictor(model, controls), get_device("ts808"), controls, clip,
                                   rate, settings, training=training, cache=RenderCache(cache / "renders"))
    values = np.array([r.esr for r in rows if not r.trained])
    worst = sorted(rows, key=lambda r: -r.esr)[:5]
    print(f"dense grid {levels}^knobs x switches on {seconds:g} s of DI ({len(values)} untrained settings): "
          f"median ESR {np.median(values):.5f}, p90 {np.percentile(values, 90):.5f}, max {values.max():.5f}")
    for row in worst:
        print(f"  worst: {row.setting} ESR {row.esr:.4f}")


if __name__ == "__main__":
    main()
