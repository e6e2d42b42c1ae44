"""How much of a run's dense-grid error is DC and sub-20 Hz drift, and what an output DC blocker does.

    .venv/bin/python benchmarks/low_frequency_error.py RUN [--cutoffs 2 5 20] [--split 20]

``RUN`` is a run folder evaluated with a device (``knobcap eval`` or the demo wrote its
``metrics.json``; its dense grid is re-scored here against the session's device, renders read from the
run's cache). For the grid points never trained on it prints median / p90 / max ESR:

* as evaluated;
* with the error's part below ``--split`` Hz removed (4th-order Butterworth high-pass on the error,
  forward and backward): what is left if the low frequencies were right;
* with a first-order DC blocker on the model's output, ``y[n] = x[n] - x[n-1] + R y[n-1]``,
  ``R = exp(-2 pi fc / fs)``, for each cutoff ``fc``, the model fed 4.5 s before the scored segment so
  that the blocker settles. The blocker changes the model, not the scoring; it helps only where the
  device's own output holds no low frequencies (an AC-coupled pedal), and hurts where it does.

Session 5: the TS808 demo, 0.0254 / 0.095 / 0.184 as evaluated, 0.0203 / 0.086 / 0.152 without the
error below 20 Hz, 0.0208 / 0.088 / 0.156 with a 2-Hz blocker. The GxTubeScreamer LV2 demo (session 4):
0.073 / 0.316 / 0.394 as evaluated, 0.053 / 0.095 / 0.119 without the error below 20 Hz, and worse with
the blocker (0.078 / 0.346 / 0.416): its tail is almost all low-frequency error, of a device whose
output holds low frequencies. See docs/results.md (issue 11).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.signal import butter, lfilter, sosfiltfilt

from run_grid import open_run, summary, untrained_grid

CONTEXT_SECONDS = 4.0  # extra model input before the segment, for the blocker to settle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run folder with metrics.json (evaluated with a device)")
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[2.0, 5.0, 20.0],
                        help="DC blocker cutoffs in Hz")
    parser.add_argument("--split", type=float, default=20.0, help="the low band's upper edge in Hz")
    args = parser.parse_args()

    session, doc = open_run(args.run)
    rate = session.input().map.sample_rate
    high_pass = butter(4, args.split, "highpass", fs=rate, output="sos")
    scores: dict[str, list[float]] = {"as evaluated": [], f"error above {args.split:g} Hz": []}
    scores.update({f"DC blocker {c:g} Hz": [] for c in args.cutoffs})
    for _, output, target, offset in untrained_grid(args.run, session, doc, CONTEXT_SECONDS):
        energy = float(np.sum(target ** 2))
        error = output[offset:] - target
        scores["as evaluated"].append(float(np.sum(error ** 2)) / energy)
        low_cut = sosfiltfilt(high_pass, error)
        scores[f"error above {args.split:g} Hz"].append(float(np.sum(low_cut ** 2)) / energy)
        for cutoff in args.cutoffs:
            pole = float(np.exp(-2.0 * np.pi * cutoff / rate))
            blocked = lfilter([1.0, -1.0], [1.0, -pole], output)[offset:]
            scores[f"DC blocker {cutoff:g} Hz"].append(float(np.sum((blocked - target) ** 2)) / energy)
    count = len(scores["as evaluated"])
    print(f"{args.run}: {count} dense-grid settings never trained on, ESR median / p90 / max")
    for name, values in scores.items():
        print(f"  {name:>24}: {summary(values)}")


if __name__ == "__main__":
    main()
