"""How much of a run's dense-grid error is a wrong output level; which of its device's knobs are pure gains.

    .venv/bin/python benchmarks/gain_misfit.py RUN [--positions 5] [--seconds 10]

``RUN`` is a run folder evaluated with a device (its ``metrics.json`` has the dense grid). Prints:

* **the device's knobs**: for each knob, renders of the probe audio at ``--positions`` rotations, the
  other controls at their defaults and then away from them (``gain_knobs.far_setting``); each render
  against the knob's default render, the gain ``g = <y, y0> / <y0, y0>`` and the residual ESR
  ``|y - g y0|^2 / |y|^2`` (``gain_knobs.gain_curve``, what screening tests). A knob whose residual
  is ~0 at every position and both settings of the others is an exact output gain (a level or volume
  control after the last nonlinearity);
* **the run's dense grid** (points never trained on): median / p90 / max ESR as evaluated, and with each
  point's best scalar gain on the model's output, ``min_g |g y_hat - y|^2 / |y|^2``: what is left if the
  model's level were right, and the median and largest gain error in dB.

Session 13 (issue 11): the GxTubeScreamer's ``level`` is an exact gain (residual ~1e-15); its 32-take
seed-0 run scores 0.0024 / 0.0086 / 0.0251, and 0.0022 / 0.0075 / 0.0104 with the level put right
(its worst point, level -14 dB at tone 100, is 1.1 dB off). See docs/results.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from knobcap.capture.gain_knobs import far_setting, gain_curve, probe_values
from knobcap.capture.session import Session
from knobcap.capture.testsignal import generate_signal
from knobcap.controls import Controls
from knobcap.devices import Device, get_device
from knobcap.metrics import esr
from run_grid import open_run, summary, untrained_grid


def best_gain(prediction: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """``(gain in dB, ESR)`` of ``target`` against ``prediction`` at the least-squares gain
    (:func:`knobcap.capture.gain_knobs.gain_curve`)."""
    found = gain_curve([target], prediction)
    return (np.nan, np.nan) if found is None else (float(found[0][0]), found[1])


def knob_gains(device: Device, controls: Controls, audio: np.ndarray, rate: int, positions: int) -> None:
    print("knob: value -> gain in dB over the knob's default (residual ESR), the others at their defaults | "
          "at their far ends (knobcap.capture.gain_knobs.far_setting)")
    for knob in controls.knobs:
        cells = []
        for value in probe_values(knob, positions):
            parts = []
            for base in (controls.default_setting(), far_setting(controls, knob.name)):
                y0 = device.process(audio, rate, base | {knob.name: knob.default_value})
                y = device.process(audio, rate, base | {knob.name: value})
                db, residual = best_gain(y0, y)
                parts.append(f"{db:+.2f} ({residual:.0e})")
            cells.append(f"{value:g}: " + " | ".join(parts))
        print(f"  {knob.name}: " + "; ".join(cells))


def grid_gains(run: Path, session: Session, doc: dict) -> None:
    rows, plain, fitted, gains = [], [], [], []
    for row, output, target, offset in untrained_grid(run, session, doc):
        y_hat = output[offset:]
        rows.append(row)
        plain.append(esr(y_hat, target))
        db, residual = best_gain(y_hat, target)
        fitted.append(residual)
        gains.append(abs(db))
    worst = int(np.argmax(plain))
    print(f"{run}: {len(rows)} dense-grid settings never trained on, ESR median / p90 / max")
    print(f"  {'as evaluated':>22}: {summary(plain)}")
    print(f"  {'with the best gain':>22}: {summary(fitted)}")
    print(f"  gain error: median {np.median(gains):.2f} dB, largest {max(gains):.2f} dB; at the worst point "
          f"({rows[worst]['setting']}) {gains[worst]:.2f} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run folder with metrics.json (evaluated with a device)")
    parser.add_argument("--positions", type=int, default=5, help="rotations a knob is probed at")
    parser.add_argument("--seconds", type=float, default=10.0, help="probe audio for the knob check")
    args = parser.parse_args()
    if not 2 <= args.positions <= 21 or not 1.0 <= args.seconds <= 60.0:
        raise SystemExit("--positions must be 2-21 and --seconds 1-60.")

    session, doc = open_run(args.run)
    device = get_device(session.controls.device or doc["device"])
    probe = generate_signal(30.0)
    rate = probe.map.sample_rate
    start = int(5.0 * rate)
    audio = np.asarray(probe.audio, np.float32)[start:start + int(args.seconds * rate)]
    knob_gains(device, session.controls, audio, rate, args.positions)
    grid_gains(args.run, session, doc)


if __name__ == "__main__":
    main()
