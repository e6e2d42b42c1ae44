"""Conditioning designs (issue 12) on the same virtual-TS808 sessions and training budget, beside
no-model baselines built from the recordings.

Runtime: (takes sizes x seeds x designs) trainings of ``--minutes`` each (or of ``--steps`` steps),
``--jobs`` at a time (one thread each), plus about 1-2 minutes of reamp per session and of evaluation
per model.

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/conditioning.py [--takes 16 32] [--seeds 0 1]
        [--minutes 10 | --steps 1500] [--jobs 2] [--grid 6] [--design NAME=JSON ...] [--out DIR]

``--steps N`` gives every model exactly N training steps (N / 100 epochs of 100 steps, no time limit),
the same budget whatever the machine's load; ``--minutes`` gives each the same wall time, so its steps
depend on the load and the design's speed. Runs in ``--out`` are reused only for the same budget (the
run folder is named after the design and the budget).

Designs (model configs as JSON overrides of today's default WaveNet): ``baseline`` (the default
before issue 12: FiLM, no output FIR), ``A`` (``cond_hidden`` 16: the mixins and FiLM see
``[c; tanh(A c + a)]``), ``B`` (``post_fir`` 32 taps from an MLP of 16), ``B16`` (16 taps, MLP 8: the
default since issue 12), ``A+B``; ``--design NAME=JSON`` adds or replaces one. Every design trains on the same
sessions (knobcap's design with ``--takes`` settings, 4 anchors, shared test signal and 2 held-out
takes; true alignment) with the same budget. Each model is scored on the dense grid
(``--grid`` taper-aware levels per knob x 4 switch combinations, device vs model on the validation
segment, points that coincide with a training setting left out): median / p90 / max, the median at
the knob ends (any knob at its minimum or maximum) against the interior; and on held-out time (the
takes at their own settings). Parameters and engine cores at block 64 (``benchmarks/cpu_cost.py``'s
measurement, one thread, with its NAM-standard-size row measured in the same process for the ratio).

No-model baselines on the same grid points: ``nearest take`` (the recorded take nearest in knob
``u`` with the same switches) and ``crossfade 2`` / ``crossfade 4`` (inverse-distance blend of the
two / four nearest). They use the recordings of the scored audio itself (the takes played the same
validation segment): an oracle for blending snapshot captures, which a real snapshot blend would
not have.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

DESIGNS: dict[str, dict] = {
    "baseline": {"post_fir": None},
    "A": {"cond_hidden": 16, "post_fir": None},
    "B": {"post_fir": {"taps": 32, "hidden": 16}},
    "B16": {"post_fir": {"taps": 16, "hidden": 8}},
    "A+B": {"cond_hidden": 16, "post_fir": {"taps": 32, "hidden": 16}},
}
END_TOL = 1e-6
COST_ROUNDS = 3


def at_knob_end(controls, setting) -> bool:
    """Any knob at its minimum or maximum."""
    for knob in controls.knobs:
        p = (float(setting[knob.name]) - knob.min) / (knob.max - knob.min)
        if p <= END_TOL or p >= 1 - END_TOL:
            return True
    return False


def grid_figures(controls, rows: list[dict]) -> dict[str, float]:
    """Median / p90 / max over the grid points never trained on, and the medians at the ends / inside."""
    fresh = [r for r in rows if not r.get("trained")]
    esr = np.asarray([float(r["esr"]) for r in fresh])
    ends = [float(r["esr"]) for r in fresh if at_knob_end(controls, r["setting"])]
    inner = [float(r["esr"]) for r in fresh if not at_knob_end(controls, r["setting"])]
    nan = float("nan")
    return {"median": float(np.median(esr)), "p90": float(np.percentile(esr, 90)), "max": float(esr.max()),
            "ends": float(np.median(ends)) if ends else nan,
            "inner": float(np.median(inner)) if inner else nan, "count": len(fresh)}


def make_sessions(args, out: Path) -> dict[tuple[int, int], Path]:
    """One reamped session per (takes, seed), shared by every design."""
    from data_efficiency import knobcap_design, make_session, write_true_alignment
    from knobcap.capture.reamp import reamp_session
    from knobcap.capture.screening import screen_device
    from knobcap.capture.session import Session
    from knobcap.capture.testsignal import generate_signal, write_signal
    from knobcap.controls import round_setting
    from knobcap.devices import get_device
    from knobcap.evaluation.evaluate import random_settings

    device = get_device("ts808")
    controls = screen_device(device)  # as `knobcap init --device ts808` does
    signal_path = out / "input.wav"
    if not signal_path.is_file():
        write_signal(signal_path, generate_signal(args.seconds))
    holdouts = [round_setting(controls, s) for s in random_settings(controls, 2, seed=999)]
    roots = {}
    for n in args.takes:
        for seed in args.seeds:
            root = out / f"session-{n}-seed{seed}"
            session = Session.open(root) if (root / "plan.csv").is_file() else make_session(
                root, controls, knobcap_design(controls, n, seed), holdouts, signal_path)
            reamp_session(session, device, seed=seed)
            write_true_alignment(root)
            roots[(n, seed)] = root
            print(f"session {root.name}: {n} takes reamped", flush=True)
    return roots


STEPS_PER_EPOCH = 100


def budget_label(minutes: float | None, steps: int | None) -> str:
    """The budget as a run-folder suffix: ``1500steps`` or ``5min``."""
    return f"{steps}steps" if steps else f"{minutes:g}min".replace(".", "_")


def train_and_score(job: tuple[str, dict, str, int, float | None, int | None, int, str]) -> dict:
    """One design on one session (runs in a worker process, one thread)."""
    name, override, root_text, seed, minutes, steps, grid, cache = job
    import torch

    from knobcap.capture.session import Session
    from knobcap.evaluation.evaluate import evaluate_run
    from knobcap.fileio import write_json_atomic
    from knobcap.models.architectures import default_config
    from knobcap.training.config import TrainConfig
    from knobcap.training.loop import train_session
    from knobcap.training.run import Run

    torch.set_num_threads(1)
    root = Path(root_text)
    controls = Session.open(root).controls
    model = {**default_config("wavenet", controls.vector_size), **override}
    label = "run-" + "".join(ch if ch.isalnum() else "_" for ch in name) + "-" + budget_label(minutes, steps)
    run = Run.in_session(root, label)
    if not run.summary_path.is_file():
        budget = ({"epochs": steps // STEPS_PER_EPOCH, "steps_per_epoch": STEPS_PER_EPOCH,
                   "max_minutes": None} if steps else {"max_minutes": minutes})
        # every design on autograd: a faster training kernel where one applies would not change the
        # budget (steps), but would leave the designs on different code paths
        pinned = {"kernel": "torch"} if "kernel" in {f.name for f in fields(TrainConfig)} else {}
        config = TrainConfig.from_dict({"model": model, "seed": seed, **budget, "threads": 1,
                                        "val_max_seconds": 3.0, **pinned})
        train_session(root, config, run=label, progress=False, say=lambda _: None)
    scored = run.path / f"conditioning-grid{grid}.json"  # this benchmark's scores, kept for a rerun
    if scored.is_file():
        return {**json.loads(scored.read_text()), "design": name, "root": root_text, "seed": seed}
    summary = json.loads(run.summary_path.read_text())
    if steps and int(summary["epochs"]) != steps // STEPS_PER_EPOCH:  # e.g. stopped by a signal
        raise SystemExit(f"{run.path}: trained {summary['epochs']} epochs, not the "
                         f"{steps // STEPS_PER_EPOCH} of --steps {steps}; delete that run folder to train "
                         "it again.")
    doc = evaluate_run(run.path, device="ts808", grid=grid, use_di=False, cache_dir=cache)
    model_file = run.read_model()
    result = {"design": name, "root": root_text, "seed": seed, "params": model_file.n_parameters,
              "epochs": int(summary["epochs"]), "minutes": float(summary["minutes"]),
              "heldout_time": float(doc["heldout_time"]["summary"]["median"]),  # type: ignore[index]
              **grid_figures(controls, doc["grid"]["rows"])}  # type: ignore[index]
    write_json_atomic(scored, result)
    return result


def blend_baselines(root: Path, grid: int, cache: Path) -> dict[str, dict[str, float]]:
    """Nearest take and inverse-distance crossfades of the 2 / 4 nearest takes, on the dense grid."""
    from knobcap.capture.device_delay import delay_aligned
    from knobcap.capture.session import Session
    from knobcap.capture.session_device import open_device
    from knobcap.evaluation.evaluate import (
        VALIDATION_SEGMENT,
        RenderCache,
        dense_grid,
        evaluate_against_device,
        nearest_distance,
    )

    session = Session.open(root)
    controls = session.controls
    signal = session.input()
    rate = signal.map.sample_rate
    segment = signal.map.segment(VALIDATION_SEGMENT)
    audio = np.asarray(signal.audio, np.float32)
    takes = [(t.take, dict(t.setting)) for t in session.plan()
             if t.role != "holdout" and session.take_path(t.take).is_file()]
    recordings = {name: np.asarray(session.aligned_take(name), np.float64) for name, _ in takes}
    device = delay_aligned(open_device("ts808", controls))
    out = {}
    for label, k in (("nearest take", 1), ("crossfade 2", 2), ("crossfade 4", 4)):
        def predict(x: np.ndarray, settings, k: int = k) -> np.ndarray:
            stop = segment.stop  # the grid's segment: x ends there
            rows = []
            for setting in settings:
                near = sorted((nearest_distance(controls, setting, [s]), name) for name, s in takes)
                near = [(d, n) for d, n in near if math.isfinite(d)][:k]
                if near[0][0] < 1e-9:
                    weights = np.asarray([1.0] + [0.0] * (len(near) - 1))
                else:
                    weights = np.asarray([1.0 / d for d, _ in near])
                weights /= weights.sum()
                mix = sum(w * recordings[n][stop - x.size:stop]
                          for w, (_, n) in zip(weights, near, strict=True))
                rows.append(mix)
            return np.asarray(rows, np.float32)

        rows = evaluate_against_device(predict, device, controls, audio, rate, dense_grid(controls, grid),
                                       segment.start, segment.stop, [s for _, s in takes], RenderCache(cache))
        out[label] = grid_figures(controls, [r.to_dict(controls) for r in rows])
    return out


def engine_cores(args) -> tuple[dict[str, float], float]:
    """Engine cores at block 64 per design (one thread) and the NAM-standard-size row, same process:
    medians of :data:`COST_ROUNDS` rounds, each measuring the reference row and then every design."""
    import cpu_cost
    from knobcap.models.architectures import default_config
    from knobcap.runtime.engine import Engine

    x = (0.3 * np.random.default_rng(1).standard_normal(int(args.cost_seconds * cpu_cost.RATE))
         ).astype(np.float32)

    def cost(config: dict) -> float:
        engine = Engine(cpu_cost.random_model("wavenet", config))
        engine.process_block(x[:64], np.empty(64, np.float32))
        return cpu_cost.engine_cost(engine, x, 64, args.cost_repeats)

    n = cpu_cost.CONTROLS.vector_size
    configs = {name: {**default_config("wavenet", n), **o} for name, o in args.designs.items()}
    standard: list[float] = []
    cores: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(COST_ROUNDS):  # alternate with the reference row, so that a change of load hits both
        standard.append(cost(cpu_cost.wavenet(16, 8)))
        for name, config in configs.items():
            cores[name].append(cost(config))
    return {name: float(np.median(v)) for name, v in cores.items()}, float(np.median(standard))


def parse_designs(items: list[str]) -> dict[str, dict]:
    designs = dict(DESIGNS)
    for item in items:
        name, sep, text = item.partition("=")
        try:
            override = json.loads(text) if sep else None
        except json.JSONDecodeError as error:
            raise SystemExit(f"--design {item!r}: the JSON after '=' does not parse ({error}).") from None
        if not name or not isinstance(override, dict):
            raise SystemExit(f"--design {item!r}: write NAME=JSON object, e.g. A='{{\"cond_hidden\": 16}}'.")
        designs[name] = override
    return designs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--takes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget per model in wall-clock minutes (default 10)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training budget per model in steps, a multiple of 100 (instead of --minutes)")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once (one thread each)")
    parser.add_argument("--grid", type=int, default=6, help="dense-grid levels per knob")
    parser.add_argument("--seconds", type=float, default=60.0, help="test signal length (30-180 s)")
    parser.add_argument("--design", action="append", default=[], metavar="NAME=JSON",
                        help="add or replace a design (a JSON override of the default WaveNet config)")
    parser.add_argument("--only", nargs="+", default=None, help="run only these designs")
    parser.add_argument("--cost-seconds", type=float, default=3.0)
    parser.add_argument("--cost-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="work folder (runs are reused)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.minutes is not None:
        raise SystemExit("--steps and --minutes: give one training budget, not both.")
    if args.steps is not None and (args.steps < STEPS_PER_EPOCH or args.steps % STEPS_PER_EPOCH):
        raise SystemExit(f"--steps {args.steps}: give a positive multiple of {STEPS_PER_EPOCH} "
                         f"(whole epochs of {STEPS_PER_EPOCH} steps).")
    if args.minutes is not None and not args.minutes > 0:
        raise SystemExit(f"--minutes {args.minutes:g}: give a number of minutes above 0.")
    if args.steps is None and args.minutes is None:
        args.minutes = 10.0
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
    designs = parse_designs(args.design)
    if args.only:
        missing = [d for d in args.only if d not in designs]
        if missing:
            raise SystemExit(f"--only: unknown design(s) {', '.join(missing)}; known: {', '.join(designs)}.")
        designs = {d: designs[d] for d in args.only}
    args.designs = designs
    out = args.out or Path(tempfile.mkdtemp(prefix="knobcap-conditioning-"))
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "grid-cache"
    print(f"output: {out}; {budget} per model, {args.jobs} at a time", flush=True)
    roots = make_sessions(args, out)
    # design-major (in --only's order, then every session), so that a run cut short has whole designs
    jobs = [(name, o, str(root), seed, args.minutes, args.steps, args.grid, str(cache))
            for name, o in designs.items() for (n, seed), root in roots.items()]
    results = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for r in pool.map(train_and_score, jobs):
            results.append(r)
            print(f"  {Path(r['root']).name} {r['design']:>10}: median {r['median']:.5f} "
                  f"p90 {r['p90']:.5f} max {r['max']:.5f} ends {r['ends']:.5f} inner {r['inner']:.5f} "
                  f"held-out time {r['heldout_time']:.5f} ({r['epochs']} epochs, {r['minutes']:.1f} min)",
                  flush=True)
    baselines = {key: blend_baselines(root, args.grid, cache) for key, root in roots.items()}
    cores, standard = engine_cores(args)

    keys = ("median", "p90", "max", "ends", "inner")
    print()
    print(f"Dense grid {args.grid}x{args.grid}x4, points never trained on; medians over seeds {args.seeds}; "
          f"{budget} of training each; cores = engine CPU s per s at block 64, one thread "
          f"(NAM-standard-size row 16->8: {standard:.4f})")
    print(f"{'takes':>5} {'design':>14} {'median':>8} {'p90':>8} {'max':>8} {'ends':>8} {'inner':>8} "
          f"{'heldout':>8} {'params':>7} {'cores64':>8} {'x std':>6}")
    for n in args.takes:
        for name in designs:
            runs = [r for r in results if r["design"] == name and r["root"] == str(roots[(n, r["seed"])])]
            med = {k: float(np.median([r[k] for r in runs])) for k in (*keys, "heldout_time")}
            print(f"{n:>5} {name:>14} " + " ".join(f"{med[k]:8.5f}" for k in keys)
                  + f" {med['heldout_time']:8.5f} {runs[0]['params']:7d} {cores[name]:8.4f} "
                  f"{cores[name] / standard:6.2f}")
        for label in ("nearest take", "crossfade 2", "crossfade 4"):
            rows = [baselines[(n, seed)][label] for seed in args.seeds]
            med = {k: float(np.median([r[k] for r in rows])) for k in keys}
            print(f"{n:>5} {label + '*':>14} " + " ".join(f"{med[k]:8.5f}" for k in keys)
                  + f" {'-':>8} {'-':>7} {'-':>8} {'-':>6}")
    print("* no model: blends of the recorded takes of the scored audio itself (an oracle for blending "
          "snapshot captures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
