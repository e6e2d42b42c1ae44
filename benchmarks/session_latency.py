"""Latency calibration on reamped sessions: what `knobcap check` reads for each take, against the truth.

Runtime: a few seconds a session.

    .venv/bin/python benchmarks/session_latency.py SESSION [SESSION ...]

A session reamped through a virtual device (`knobcap reamp`, `knobcap demo`, `data_efficiency.py`) keeps
each take's true latency and polarity in ``reamp.json``. Each take is calibrated as `knobcap check` does
(:func:`knobcap.capture.latency.calibrate_latency`) and counted: exact, early by 1-3 samples (a causal
model absorbs it), wrong (late, or early by more; with the polarity found against the truth), or not
confident (the check fails the take). A device's own delay (the GxBoss DS1's 31 samples) reads as
late: the truth is the interface's latency alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import soundfile as sf

from knobcap.capture.latency import calibrate_latency
from knobcap.capture.reamp import TRUTH_FILE
from knobcap.capture.session import INPUT_FILE, TAKES_DIR
from knobcap.capture.testsignal import read_signal


def score(root: Path) -> dict[str, list]:
    """Takes of ``root`` by outcome: exact, early, wrong ``(take, error, polarity)``, not confident."""
    signal = read_signal(root / INPUT_FILE)
    truth = json.loads((root / TRUTH_FILE).read_text(encoding="utf-8"))["takes"]
    out: dict[str, list] = {"exact": [], "early": [], "wrong": [], "not confident": []}
    for path in sorted((root / TAKES_DIR).glob("*.wav")):
        if path.stem not in truth:
            continue
        audio, _ = sf.read(str(path), dtype="float32")
        found = calibrate_latency(audio, signal.audio, signal.map)
        error = found.samples - truth[path.stem]["latency"]
        polarity = found.polarity * truth[path.stem]["polarity"]
        if not found.confident:
            out["not confident"].append(path.stem)
        elif error == 0:
            out["exact"].append(path.stem)
        elif -3 <= error < 0:
            out["early"].append(path.stem)
        else:
            out["wrong"].append((path.stem, error, polarity))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sessions", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for root in args.sessions:
        result = score(root)
        counts = ", ".join(f"{key} {len(value)}" for key, value in result.items())
        print(f"{root}: {counts}")
        for key in ("wrong", "not confident"):
            if result[key]:
                print(f"  {key}: {result[key]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
