"""How long a device remembers, against the model's receptive field: the settling of its output's DC
after a tone burst starts and stops.

    .venv/bin/python benchmarks/device_memory.py DEVICE [--levels 3] [--burst 0.4] [--amplitude 0.5]

``DEVICE`` is a registered virtual device (``ts808``) or ``lv2:URI`` (the plugin installed). At every
point of the dense grid with ``--levels`` levels per knob (every switch combination), the device plays
an asymmetric 200 Hz burst (a fundamental and its second harmonic, peak ``--amplitude``), so that an
asymmetric or even-order device makes DC, then silence. The mean of each 5-ms period (one period of
the burst, which so averages out) is the output's DC at that time. Per setting it prints:

* the steady DC at the burst's end, relative to the burst's rms;
* the onset's settling time: from the burst's start until every later period's mean stays within
  ``--tolerance`` (of the burst's rms) of the steady DC;
* the release's settling time: from the burst's end until every later period's mean stays below it.

A device without long time constants settles within a period or two; AC coupling after an even-order
stage shows as a DC that decays during the burst and an undershoot after it, over the coupling's time
constant. The longest settling over the grid is printed next to the default WaveNet's receptive field:
a device that remembers much longer than that cannot be fitted by more training alone.

Session 6 (27 and 36 settings): the GxTubeScreamer LV2
(``lv2:http://guitarix.sourceforge.net/plugins/gxts9#ts9sim``) settles within one period (5 ms) at every
setting, with a steady DC of -0.11 to -0.30 of the rms: its low-frequency output is an asymmetric
clipper's offset, made anew every period, not a long filter. The virtual TS808 makes almost no DC
(-0.002 to -0.006 of the rms) but settles in 130-280 ms: its coupling capacitors' time constants, ten
times its model's receptive field (docs/results.md, issue 11).
"""

from __future__ import annotations

import argparse

import numpy as np

from knobcap.devices import get_device
from knobcap.evaluation.evaluate import dense_grid
from knobcap.models.architectures import default_config, receptive_field

RATE = 48_000
PERIOD = RATE // 200  # samples in one period of the 200 Hz burst
LEAD_SECONDS = 0.1


def burst(seconds: float, amplitude: float, tail_seconds: float) -> tuple[np.ndarray, int, int]:
    """The test input and the sample indices where the burst starts and stops (whole periods)."""
    lead = round(LEAD_SECONDS * RATE) // PERIOD * PERIOD
    length = round(seconds * RATE) // PERIOD * PERIOD
    phase = 2.0 * np.pi * np.arange(length) / PERIOD
    tone = np.sin(phase) + 0.6 * np.sin(2.0 * phase + 0.7)
    tone *= amplitude / np.abs(tone).max()
    x = np.zeros(lead + length + round(tail_seconds * RATE) // PERIOD * PERIOD)
    x[lead:lead + length] = tone
    return x, lead, lead + length


def settling(means: np.ndarray, target: float, tolerance: float) -> int:
    """Periods until every later mean stays within ``tolerance`` of ``target`` (0: from the first)."""
    outside = np.flatnonzero(np.abs(means - target) > tolerance)
    return 0 if len(outside) == 0 else int(outside[-1]) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("device", help="a registered device (ts808) or lv2:URI")
    parser.add_argument("--levels", type=int, default=3, help="grid levels per knob")
    parser.add_argument("--burst", type=float, default=0.4, help="burst length in seconds")
    parser.add_argument("--amplitude", type=float, default=0.5, help="the burst's peak")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="settled: within this fraction of the burst's output rms")
    args = parser.parse_args()

    device = get_device(args.device)
    x, start, stop = burst(args.burst, args.amplitude, tail_seconds=args.burst)
    period_ms = 1000.0 * PERIOD / RATE
    field = receptive_field("wavenet", default_config("wavenet", 1))
    print(f"{args.device}: a {args.burst:g}-s asymmetric 200 Hz burst, peak {args.amplitude:g}; "
          f"settled within {args.tolerance:g} of the output rms; one period = {period_ms:g} ms")
    print(f"{'setting':>48}  {'DC / rms':>8}  {'onset ms':>8}  {'release ms':>10}")
    longest = 0.0
    for setting in dense_grid(device.controls, args.levels):
        y = np.asarray(device.process(x.astype(np.float32), RATE, setting), dtype=np.float64)
        during = y[start:stop].reshape(-1, PERIOD)
        after = y[stop:].reshape(-1, PERIOD)
        rms = float(np.sqrt(np.mean(y[start:stop] ** 2))) or 1.0
        steady = float(during[-4:].mean())
        tolerance = args.tolerance * rms
        onset = settling(during.mean(axis=1), steady, tolerance) * period_ms
        release = settling(after.mean(axis=1), 0.0, tolerance) * period_ms
        longest = max(longest, onset, release)
        label = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())
        print(f"{label:>48}  {steady / rms:>+8.3f}  {onset:>8.1f}  {release:>10.1f}")
    print(f"longest settling {longest:.1f} ms; the default WaveNet's receptive field "
          f"{1000.0 * field / RATE:.1f} ms ({field} samples)")


if __name__ == "__main__":
    main()
