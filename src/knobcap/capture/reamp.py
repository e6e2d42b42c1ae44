"""Recording the planned takes through a virtual device, the way a person with an interface would.

Each take is ``y[n] = polarity * device(x)[n - L] + e[n]``: the device's output at the take's setting,
delayed by an interface latency ``L`` (2-15 ms, drawn per take), with a white noise floor ``e`` (rms
-90 to -80 dBFS, per take) and, when asked, the polarity inverted (a miswired or inverting interface).
The recording runs ``L`` samples longer than the input, so nothing is cut. Randomness is drawn from
``(seed, take number)``: a take renders the same whichever others were already recorded.

Takes that exist are never rendered again or overwritten. The truth (latency, polarity, noise) is
written to ``DIR/reamp.json`` so that calibration can be checked against it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from knobcap.capture.session import PlannedTake, Session, SessionError
from knobcap.controls import Controls
from knobcap.devices import Device
from knobcap.devices.errors import DeviceError
from knobcap.fileio import write_json_atomic, write_wav_atomic

LATENCY_MS = (2.0, 15.0)
NOISE_DBFS = (-90.0, -80.0)
SUBTYPES = ("FLOAT", "PCM_24")
TRUTH_FILE = "reamp.json"


@dataclass(frozen=True)
class RenderedTake:
    """What was recorded for one take (the truth a latency calibration should find)."""

    take: str
    latency: int  # samples
    polarity: int
    noise_dbfs: float


def compatible(session_controls: Controls, device: Device) -> str | None:
    """Why the device cannot play the session's settings (``None`` when it can)."""
    theirs = device.controls
    for knob in session_controls.knobs:
        match = next((k for k in theirs.knobs if k.name == knob.name), None)
        if match is None:
            return f"the device has no knob {knob.name!r}"
        if knob.min < match.min or knob.max > match.max:
            return (f"knob {knob.name!r} spans {knob.min:g}..{knob.max:g} but the device's spans "
                    f"{match.min:g}..{match.max:g}")
    for switch in session_controls.switches:
        match = next((s for s in theirs.switches if s.name == switch.name), None)
        if match is None:
            return f"the device has no switch {switch.name!r}"
        unknown = [p for p in switch.positions if p not in match.positions]
        if unknown:
            return f"switch {switch.name!r} has no position {unknown[0]!r} on the device"
    own = set(session_controls.names)
    extra = [name for name in theirs.names if name not in own]
    if extra:
        return f"the device also has {', '.join(extra)}, which controls.toml does not set"
    return None


def record(device: Device, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object],
           rng: np.random.Generator, invert_polarity: bool = False) -> tuple[np.ndarray, RenderedTake]:
    """One take: the device's output, delayed, with a noise floor (returns audio and the truth)."""
    latency = round(rng.uniform(*LATENCY_MS) * 1e-3 * sample_rate)
    noise_dbfs = float(rng.uniform(*NOISE_DBFS))
    polarity = -1 if invert_polarity else 1
    wet = np.asarray(device.process(np.asarray(audio, dtype=np.float64), sample_rate, dict(setting)),
                     dtype=np.float64)
    if wet.shape != np.shape(audio):
        raise ValueError(f"device {device.name!r} returned {wet.shape} samples for {np.shape(audio)}.")
    out = np.zeros(len(wet) + latency)
    out[latency:] = polarity * wet
    out += 10.0 ** (noise_dbfs / 20.0) * rng.standard_normal(len(out))
    return out.astype(np.float32), RenderedTake("", latency, polarity, round(noise_dbfs, 2))


def reamp_session(session: Session, device: Device, *, seed: int = 0, invert_polarity: bool = False,
                  subtype: str = "FLOAT",
                  progress: Callable[[PlannedTake, int, int], None] | None = None) -> list[RenderedTake]:
    """Render every planned take that has no recording yet; returns what was recorded.

    ``progress(take, index, count)`` is called before each render. Existing takes are left alone.
    """
    if subtype not in SUBTYPES:
        raise ValueError(f"subtype {subtype!r}: use one of {', '.join(SUBTYPES)}.")
    problem = compatible(session.controls, device)
    if problem:
        raise SessionError(
            f"{session.root / 'controls.toml'} does not describe the virtual device {device.name!r} "
            f"({problem}). Start a session for it with 'knobcap init NEWDIR --device {device.name}'.")
    signal = session.input()
    missing = session.missing_takes()
    truth_path = session.root / TRUTH_FILE
    truth = _read_truth(truth_path)
    done: list[RenderedTake] = []
    for index, row in enumerate(missing):
        if progress is not None:
            progress(row, index, len(missing))
        path = session.take_path(row.take)
        if path.exists():  # recorded meanwhile (by hand): keep it
            continue
        rng = np.random.default_rng([seed, int(row.take[4:])])
        try:
            audio, info = record(device, signal.audio, signal.sample_rate, row.setting, rng, invert_polarity)
        except DeviceError as error:
            raise DeviceError(f"{row.take}: {error} Takes recorded so far are kept; 'knobcap reamp "
                              f"{session.root}' records the rest.") from None
        info = RenderedTake(row.take, info.latency, info.polarity, info.noise_dbfs)
        write_wav_atomic(path, audio, signal.sample_rate, subtype=subtype)
        truth["takes"][row.take] = {k: v for k, v in asdict(info).items() if k != "take"}
        truth["device"] = device.name
        write_json_atomic(truth_path, truth)
        done.append(info)
    return done


def _read_truth(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("takes"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"note": "what knobcap reamp recorded: latency in samples, polarity, noise floor (dBFS rms)",
            "takes": {}}
