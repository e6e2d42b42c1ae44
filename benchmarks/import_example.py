"""A small multi-setting dataset made outside knobcap, at 44.1 kHz, to try ``knobcap import`` (issue 14).

The virtual TS808 (diodes silicon, fat off) renders at 48 kHz, and scipy resamples everything to
44.1 kHz (``resample_poly(x, 147, 160)``), as a dataset recorded elsewhere would be. The device is
made polarity-inverting (its output is negated, as many gain stages and tone stacks are), and each
input is a set of independent 0.5 s clips, each rendered from rest (the device is reset per clip).
Most settings share ``di_a.wav`` (the bundled DI guitar); two have their own input ``di_b.wav`` (a
stretch of knobcap's synthetic playing). One setting is held out. Written: ``DIR/di_a.wav``,
``DIR/di_b.wav``, ``DIR/takes/*.wav``, ``DIR/takes.csv`` and, for the comparison after training,
``DIR/reference_in.wav`` (DI audio no take contains: the bundled DI read backwards) with
``DIR/reference_out.wav`` (the inverting device on it at the held-out setting).

    python benchmarks/import_example.py DATA
    knobcap import SESSION --csv DATA/takes.csv --input DATA/di_a.wav --clips 0.5 --skip 0.05 \\
        --holdout-seconds 1
    knobcap check SESSION && knobcap train SESSION --run r --threads 1 --minutes 3 ...
    knobcap render SESSION/runs/r/model.knobcap DATA/reference_in.wav OUT.wav --set drive=5 --set tone=4
    python benchmarks/import_example.py DATA --compare OUT.wav
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from knobcap.capture.testsignal import generate_signal
from knobcap.devices import get_device
from knobcap.fileio import read_wav, write_wav_atomic
from knobcap.metrics import esr

RATE, SOURCE_RATE = 44_100, 48_000
CLIP = 0.5                       # seconds; each clip starts from rest
FIXED = {"diodes": "silicon", "fat": "off"}
SETTINGS = [  # (drive, tone, own input?, role)
    (1.0, 2.0, False, "train"), (1.0, 8.0, False, "train"), (9.0, 2.0, False, "train"),
    (9.0, 8.0, False, "train"), (3.0, 5.0, False, "train"), (7.0, 6.0, False, "train"),
    (5.0, 1.0, True, "train"), (5.0, 9.0, True, "train"), (5.0, 4.0, False, "holdout"),
]
HELD = {"drive": 5.0, "tone": 4.0}


def to_44k(x: np.ndarray) -> np.ndarray:
    return resample_poly(np.asarray(x, np.float64), 147, 160).astype(np.float32)


def inverting_device(clip48: np.ndarray, setting: dict[str, object]) -> np.ndarray:
    """The TS808 made polarity-inverting, from rest (a fresh render per clip), resampled to 44.1 kHz."""
    return -to_44k(get_device("ts808").process(clip48, SOURCE_RATE, {**setting, **FIXED}))


def clips_of(x48: np.ndarray, seconds: float) -> list[np.ndarray]:
    size = round(CLIP * SOURCE_RATE)
    n = int(seconds / CLIP)
    return [x48[i * size:(i + 1) * size] for i in range(n)]


def render_clips(clips48: list[np.ndarray], setting: dict[str, object]) -> np.ndarray:
    return np.concatenate([inverting_device(c, setting) for c in clips48])


def make(out: Path, seconds: float) -> None:
    di, _ = read_wav(Path(__file__).parents[1] / "src/knobcap/data/di_guitar.wav", SOURCE_RATE)
    playing = generate_signal(30.0).part("playing")
    inputs = {"di_a.wav": clips_of(di, seconds), "di_b.wav": clips_of(playing[SOURCE_RATE:], seconds)}
    (out / "takes").mkdir(parents=True, exist_ok=True)
    for name, clips in inputs.items():
        write_wav_atomic(out / name, np.concatenate([to_44k(c) for c in clips]), RATE, subtype="PCM_24")
    rows = []
    for k, (drive, tone, own, role) in enumerate(SETTINGS):
        name = f"takes/d{drive:g}_t{tone:g}.wav"
        source = "di_b.wav" if own else "di_a.wav"
        write_wav_atomic(out / name, render_clips(inputs[source], {"drive": drive, "tone": tone}), RATE,
                         subtype="PCM_24")
        rows.append([name, f"{drive:g}", f"{tone:g}", role, source if own else ""])
        print(f"rendered {k + 1}/{len(SETTINGS)}: {name} ({role}{', own input' if own else ''})")
    with (out / "takes.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["file", "drive", "tone", "role", "input"], *rows])
    reference = di[::-1][:round(3 * SOURCE_RATE)].copy()  # 3 s of DI no take holds
    write_wav_atomic(out / "reference_in.wav", to_44k(reference), RATE, subtype="FLOAT")
    write_wav_atomic(out / "reference_out.wav", inverting_device(reference, HELD), RATE, subtype="FLOAT")
    print(f"wrote {out}/takes.csv, di_a.wav, di_b.wav, reference_in.wav, reference_out.wav at {RATE} Hz")


def compare(out: Path, rendered: Path) -> None:
    """ESR of a render at the held-out setting against the inverting device (and against its inverse)."""
    model, rate = sf.read(str(rendered), dtype="float32")
    device, _ = sf.read(str(out / "reference_out.wav"), dtype="float32")
    n = min(len(model), len(device))
    skip = round(0.05 * rate)
    print(f"render vs device ({rate} Hz, {n / rate:.2f} s): ESR {esr(model[skip:n], device[skip:n]):.4f}")
    print(f"render vs the device's opposite polarity: ESR {esr(model[skip:n], -device[skip:n]):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the dataset")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of each input (0.5 s clips)")
    parser.add_argument("--compare", type=Path, help="a render of reference_in.wav at drive=5 tone=4")
    args = parser.parse_args()
    if args.compare is not None:
        compare(args.out, args.compare)
    else:
        make(args.out, args.seconds)


if __name__ == "__main__":
    main()
