"""Score several runs on one session's signal, at the dense-grid points that none of them trained on.

    .venv/bin/python benchmarks/common_grid.py REFERENCE RUN [RUN ...] [--grid 5] [--cache DIR]

``REFERENCE`` is a session folder whose test signal (its ``validation_2`` phrase) and device (the
virtual device or LV2 plugin it names; ts808 otherwise) every model is scored on; each ``RUN`` is a run
folder (``SESSION/runs/<run>``) whose own session says which settings it trained on. Runs of sessions
with different test signals (``plan --seconds``) or designs are so compared on the same audio and the
same settings. Device renders are aligned as the reference session's takes were (its own delay read
on its signal at its recorded settings, as ``knobcap eval`` does) and cached in ``--cache``.

Prints, per run, median / p90 / max ESR over the common points and over the run's own untrained
points. Session 6 compared 30-s and 60-s signals with it (docs/results.md, issue 11).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from knobcap.capture.session import Session
from knobcap.evaluation.evaluate import (
    VALIDATION_SEGMENT,
    RenderCache,
    aligned_device,
    dense_grid,
    evaluate_against_device,
    model_predictor,
)
from knobcap.models.modelfile import load_model_file


def summary(values: np.ndarray) -> str:
    return f"{np.median(values):.4f} / {np.percentile(values, 90):.4f} / {values.max():.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path, help="the session whose signal and device score every run")
    parser.add_argument("runs", type=Path, nargs="+", help="run folders to compare")
    parser.add_argument("--grid", type=int, default=5, help="levels per knob")
    parser.add_argument("--cache", type=Path, default=None,
                        help="render cache (default REFERENCE/grid-cache)")
    args = parser.parse_args()

    reference = Session.open(args.reference)
    signal = reference.input()
    audio = np.asarray(signal.audio, dtype=np.float32)
    segment = signal.map.segment(VALIDATION_SEGMENT)
    device = aligned_device(reference, reference.controls.device or "ts808")
    cache = RenderCache(args.cache or args.reference / "grid-cache")
    results = []
    for run in args.runs:
        model = load_model_file(run / "model.knobcap")
        if model.controls.names != reference.controls.names:
            raise SystemExit(f"{run}: its controls differ from {args.reference}'s; compare runs of one "
                             "device.")
        trained = [dict(t.setting) for t in Session.open(run.parent.parent).training_takes()]
        results.append(evaluate_against_device(
            model_predictor(model), device, model.controls, audio, signal.map.sample_rate,
            dense_grid(model.controls, args.grid), segment.start, segment.stop, training=trained,
            cache=cache))
    common = [i for i in range(len(results[0])) if not any(rows[i].trained for rows in results)]
    print(f"{args.reference}: {device.note}")
    print(f"{len(common)} grid points that no run trained on; ESR median / p90 / max (common, own)")
    for run, rows in zip(args.runs, results, strict=True):
        own = np.array([r.esr for r in rows if not r.trained])
        print(f"{run!s:60s} {summary(np.array([rows[i].esr for i in common]))}   "
              f"own {summary(own)} ({len(own)})")


if __name__ == "__main__":
    main()
