"""Latency calibration accuracy: error in samples against the true delay, per device and method.

Runtime: about 40 s on a 2-core machine (the TS808 renders dominate; --no-ts808 skips them).

    NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/latency_accuracy.py [--seconds 30] [--no-ts808]

Each device's output is delayed by a known number of samples (77, and the TS808 by 651) with a white
noise floor, then calibrated three ways: knobcap's own signal with its blips (and the music
cross-check), the same signal treated as a custom one (whitened cross-correlation only), and a real
DI recording from /work/shared/data/di as a custom signal (skipped when absent). Error = measured -
true; positive is late (the harmful direction: the target would lead its input), negative is early
(a causal model absorbs it). Also printed: the polarity found and whether the result was confident.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
import soundfile as sf
from scipy.signal import butter, lfilter

from knobcap.capture.latency import calibrate_latency
from knobcap.capture.testsignal import SignalMap, custom_signal_map, generate_signal

RATE = 48_000
DI = Path("/work/shared/data/di")


def one_pole(x: np.ndarray, hz: float) -> np.ndarray:
    pole = np.exp(-2 * np.pi * hz / RATE)
    return lfilter([1 - pole], [1, -pole], x)


DEVICES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "pure delay": lambda x: x,
    "inverted": lambda x: -x,
    "1-pole LP 1.5 kHz": lambda x: one_pole(x, 1500),
    "Butterworth-2 LP 1.5 kHz": lambda x: lfilter(*butter(2, 1500 / (RATE / 2)), x),
    "Butterworth-4 LP 3 kHz": lambda x: lfilter(*butter(4, 3000 / (RATE / 2)), x),
    "Butterworth-1 HP 200 Hz": lambda x: lfilter(*butter(1, 200 / (RATE / 2), "high"), x),
    "tanh(30x) + LP 700 Hz": lambda x: one_pole(np.tanh(30 * x), 700),
    "tanh(8x) + LP 2 kHz": lambda x: one_pole(np.tanh(8 * x), 2000),
}


def record(wet: np.ndarray, delay: int, noise_dbfs: float, seed: int = 0) -> np.ndarray:
    y = np.concatenate([np.zeros(delay), wet, np.zeros(RATE // 2)])
    return y + 10 ** (noise_dbfs / 20) * np.random.default_rng(seed).standard_normal(len(y))


def row(name: str, method: str, y: np.ndarray, x: np.ndarray, m: SignalMap, delay: int) -> None:
    start = time.perf_counter()
    lat = calibrate_latency(y, x, m)
    ms = 1000 * (time.perf_counter() - start)
    print(f"{name:28s} {method:14s} {lat.samples - delay:+6d} {'+' if lat.polarity > 0 else '-':>4s} "
          f"{lat.confident!s:>9s} {ms:8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--noise", type=float, default=-70.0, help="noise floor, dBFS rms")
    parser.add_argument("--no-ts808", action="store_true")
    parser.add_argument("--lv2", default=None, metavar="URI",
                        help="also an installed LV2 plugin, at a 3-level grid of its controls")
    parser.add_argument("--delays", type=int, nargs="+", default=[77],
                        help="true delays in samples (the plugin rows use each)")
    args = parser.parse_args()
    sig = generate_signal(args.seconds)
    x = sig.audio.astype(np.float64)
    custom = custom_signal_map(x, RATE)
    print(f"{'device':28s} {'method':14s} {'error':>6s} {'pol':>4s} {'confident':>9s} {'ms':>8s}")
    for name, device in DEVICES.items():
        y = record(device(x), 77, args.noise)
        row(name, "blips", y, x, sig.map, 77)
        row(name, "xcorr (synth)", y, x, custom, 77)
    files = sorted(DI.glob("*.wav")) if DI.is_dir() else []
    if files:
        di, rate = sf.read(str(files[0]), dtype="float64", frames=int(args.seconds * RATE), always_2d=True)
        di = di[:, 0]
        di_map = custom_signal_map(di, rate)
        for name, device in DEVICES.items():
            row(name, f"xcorr ({files[0].stem[:6]})", record(device(di), 77, args.noise), di, di_map, 77)
    else:
        print(f"(no DI recordings in {DI}: real-recording rows skipped)")
    if not args.no_ts808:
        from knobcap.devices import get_device

        ts808 = get_device("ts808")
        for setting in ({"drive": 3.6, "tone": 8.3, "diodes": "led", "fat": "on"},
                        {"drive": 10.0, "tone": 10.0, "diodes": "silicon", "fat": "on"},
                        {"drive": 9.0, "tone": 5.0, "diodes": "led", "fat": "off"},
                        {"drive": 0.0, "tone": 0.0, "diodes": "led", "fat": "off"},
                        {"drive": 10.0, "tone": 0.0, "diodes": "led", "fat": "on"}):  # bipolar blip response
            wet = ts808.process(x, RATE, setting)
            y = record(wet, 651, args.noise)
            label = "TS808 " + " ".join(f"{v:g}" if isinstance(v, float) else str(v)
                                        for v in setting.values())
            row(label, "blips", y, x, sig.map, 651)
            row(label, "xcorr (synth)", y, x, custom, 651)
    if args.lv2:
        plugin_rows(args.lv2, x, sig.map, args.delays, args.noise)


def plugin_rows(uri: str, x: np.ndarray, signal_map: SignalMap, delays: list[int], noise: float) -> None:
    """An LV2 plugin through knobcap's signal at each of ``delays`` and every 3-level grid setting."""
    from knobcap.devices import get_device
    from knobcap.evaluation.evaluate import dense_grid

    plugin = get_device(f"lv2:{uri}")
    errors = []
    for setting in dense_grid(plugin.controls, 3):
        wet = np.asarray(plugin.process(x.astype(np.float32), RATE, setting), dtype=np.float64)
        for delay in delays:
            lat = calibrate_latency(record(wet, delay, noise, seed=delay), x, signal_map)
            errors.append(lat.samples - delay)
    values, counts = np.unique(errors, return_counts=True)
    print(f"{plugin.name} ({len(errors)} renders, blips): error " +
          ", ".join(f"{v:+d} x {c}" for v, c in zip(values, counts, strict=True)))


if __name__ == "__main__":
    main()
