"""Render speed of the virtual TS808: times faster than real time, one thread, x8 and x4 oversampling.

Runtime: about 10 s (10 s of audio, 5 runs per row, 4 rows, on a shared 2-core machine).

    .venv/bin/python benchmarks/device_speed.py [--seconds 10] [--repeats 5]

Input: 10 s of a real DI guitar recording from shared/data/di when present (normalised to a 0.9 peak,
i.e. hot playing), otherwise a synthetic plucked-string signal. Prints, per oversampling factor and
setting: seconds of audio, median wall-clock render time, median CPU time of this process, times real
time by each, and how many simulated samples fell beyond the clipper's table (solved by Newton
instead; 0 for any realistic input). The goal is at least 20x real time at x8 on one thread.
Wall-clock figures include time lost to other jobs on a shared machine; the CPU-time figures do not,
so the load average is printed alongside.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba is imported

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from knobcap.devices import get_device

FS = 48_000
DI_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "di"
SETTINGS = {
    "drive 5, tone 5, silicon": {"drive": 5.0, "tone": 5.0, "diodes": "silicon", "fat": "off"},
    "drive 10, tone 8, LED, fat": {"drive": 10.0, "tone": 8.0, "diodes": "led", "fat": "on"},
}


def test_input(seconds: float) -> tuple[np.ndarray, str]:
    """A guitar DI excerpt (or a synthetic stand-in when the recordings are absent)."""
    n = int(seconds * FS)
    files = sorted(DI_FOLDER.glob("*guitar*.wav")) if DI_FOLDER.is_dir() else []
    for path in files:
        import soundfile as sf

        audio, rate = sf.read(path, dtype="float64", always_2d=True)
        audio = audio.mean(axis=1)
        if rate == FS and audio.size >= n:
            start = (audio.size - n) // 2
            x = audio[start:start + n]
            return 0.9 * x / np.max(np.abs(x)), f"{path.name} (middle {seconds:g} s)"
    print(f"note: no 48 kHz guitar DI in {DI_FOLDER}; using a synthetic plucked-string signal")
    rng = np.random.default_rng(0)
    t = np.arange(n) / FS
    x = np.zeros(n)
    for onset in np.arange(0.0, seconds, 0.5):
        f0 = rng.choice([82.4, 110.0, 146.8, 196.0, 246.9, 329.6])
        env = np.where(t >= onset, np.exp(-(t - onset) * 3.0), 0.0)
        x += env * sum(np.sin(2 * np.pi * k * f0 * (t - onset)) / k for k in range(1, 8))
    return 0.9 * x / np.max(np.abs(x)), "synthetic plucked strings"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    x, source = test_input(args.seconds)
    print(f"TS808 render speed; input: {source}; {args.repeats} runs per row, median; "
          f"NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}; load average at start "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    header = (f"{'oversampling':>12}  {'setting':<27} {'audio s':>7}  {'wall s':>7}  {'x real time':>11}  "
              f"{'CPU s':>7}  {'x RT (CPU)':>10}  {'beyond table':>12}")
    print(header)
    print("-" * len(header))
    for factor in (8, 4):
        device = get_device("ts808", oversampling=factor)
        for label, setting in SETTINGS.items():
            device.process(x[:4096], FS, setting)  # compile / load the numba cache
            walls, cpus = [], []
            for _ in range(args.repeats):
                wall0, cpu0 = time.perf_counter(), time.process_time()
                device.process(x, FS, setting)
                walls.append(time.perf_counter() - wall0)
                cpus.append(time.process_time() - cpu0)
            stats = device.last_stats
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            print(f"{'x' + str(factor):>12}  {label:<27} {args.seconds:7.1f}  {wall:7.3f}  "
                  f"{args.seconds / wall:10.1f}x  {cpu:7.3f}  {args.seconds / cpu:9.1f}x  "
                  f"{stats['beyond_table']:12d}")
    print(f"load average at end {os.getloadavg()[0]:.2f}; goal: >= 20x real time at x8, one thread")


if __name__ == "__main__":
    main()
