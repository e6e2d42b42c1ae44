"""Screening: measure how fast each knob changes the sound, and warp its coordinate to match.

A knob is probed one at a time at ``levels`` equally spaced rotations ``p_i`` (the other controls at
their defaults), on the same short probe audio. The sound change between neighbouring probes is
the relative RMS difference

    d_i = sqrt( sum (y_{i+1} - y_i)^2 / (0.5 * (sum y_i^2 + sum y_{i+1}^2)) ),

and the warp is its normalised running sum, blended with the rotation so that flat stretches keep
some resolution:  ``u_i = (1 - b) * D_i / D_n + b * p_i``  with ``D_i = d_0 + ... + d_{i-1}``.

Equal steps in ``u`` are then roughly equal steps of sound change, which is what the design spreads
points over and what the model sees (see ``controls.py``; DOE notes A7, step 0).

Recorded outputs carry noise: with noise of power ``s_i^2`` per sample in output ``i``,
``E sum (y_{i+1} - y_i)^2`` grows by ``N (s_i^2 + s_{i+1}^2)``, which is subtracted (and ``N s_i^2``
from each energy), so a knob that changes nothing reads as ``d ~ 0``, not as noise.

A knob whose total change ``D_n`` is below ``MIN_CHANGE`` changes nothing measurable and keeps a
linear warp. Log-taper knobs (a value spanning decades, e.g. a frequency) are not screened: a warp
is linear in the knob's value, so equal value steps would leave their low decades unresolved.

The outputs compared are the ``playing`` part of a probe of about 12 s (:func:`probe_signal`). This module
holds the maths, the probe and the screen of a virtual device (:func:`screen_device`: rendered, no
latency or noise). Recording the probes of a real device is :mod:`knobcap.capture.screen_session` (``knobcap
screen DIR``); writing the warps into controls.toml is :mod:`knobcap.capture.warp_lines`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from itertools import pairwise

import numpy as np

from knobcap.capture.testsignal import (
    MIN_SECONDS,
    SIGNAL_VERSION,
    Segment,
    SignalMap,
    TestSignal,
    generate_signal,
)
from knobcap.controls import Controls, Knob, Setting, format_value
from knobcap.metrics import is_silent

DEFAULT_LEVELS = 21
DEFAULT_BLEND = 0.25
SCREEN_LEVELS = 11          # probes per knob in the user journey: 0, 1, ..., 10 on a 0-10 dial
MIN_CHANGE = 0.02           # total relative change D_n below which a knob counts as flat
MAX_LEVELS = 101
WARP_DECIMALS = 4
_PHRASE_AFTER_SECONDS = 4.0  # the probe's playing runs to the first phrase end after this
_PLAYING_SECONDS = 6.0       # ... or is cut here (with a fade) when no phrase ends in time

Progress = Callable[[str, int, int], None]  # (what, index, count)


class ScreeningError(ValueError):
    """Screening probes cannot give a warp; the message says what to do."""


# ------------------------------------------------------------------------------------------ maths
def step_distances(outputs: Sequence[np.ndarray], noise_power: Sequence[float] | None = None,
                   allow_silent: bool = False) -> np.ndarray:
    """``d_i``: relative RMS change between neighbouring probe outputs (see the module docstring).

    ``noise_power``: each output's noise power per sample ``s_i^2``, taken out of the sums.
    ``allow_silent``: a silent output is a knob's legitimate end (a virtual device's volume at 0), not a
    dead connection; only all of them silent is refused, and two silent neighbours are 0 apart.
    """
    if len(outputs) < 2:
        raise ScreeningError("screening needs at least two probes per knob.")
    ys = [np.asarray(y, dtype=np.float64) for y in outputs]
    if len({len(y) for y in ys}) != 1:
        raise ScreeningError("the probes of one knob must all have the same length.")
    n = len(ys[0])
    noise = np.zeros(len(ys)) if noise_power is None else np.asarray(noise_power, dtype=np.float64)
    energy = np.array([np.sum(y * y) for y in ys]) - n * noise
    if np.all(energy <= 0) or (np.any(energy <= 0) and not allow_silent):
        raise ScreeningError("a probe output is silent; check the connections and record it again.")
    energy = np.maximum(energy, 0.0)
    diffs = np.array([np.sum((ys[i + 1] - ys[i]) ** 2) for i in range(len(ys) - 1)])
    change = np.maximum(diffs - n * (noise[:-1] + noise[1:]), 0.0)
    scale = 0.5 * (energy[:-1] + energy[1:])
    return np.sqrt(np.divide(change, scale, out=np.zeros_like(change), where=scale > 0))


def warp_from_distances(distances: Sequence[float], blend: float = DEFAULT_BLEND,
                        min_change: float = 0.0) -> tuple[float, ...]:
    """``u`` at ``len(distances) + 1`` equally spaced rotations: the blended, normalised running sum.

    A total change ``D_n`` of at most ``min_change`` (or none at all) gives the linear warp ``u = p``.
    """
    d = np.asarray(distances, dtype=np.float64)
    if not 0.0 < blend <= 1.0:
        raise ScreeningError(f"blend must be in (0, 1], got {blend}.")
    rotations = np.linspace(0.0, 1.0, len(d) + 1)
    total = float(np.sum(d))
    if not np.all(np.isfinite(d)) or total <= max(min_change, 0.0):
        return tuple(float(p) for p in rotations)  # the knob changes nothing measurable: stay linear
    cumulative = np.concatenate([[0.0], np.cumsum(d)]) / total
    u = (1.0 - blend) * cumulative + blend * rotations
    u[0], u[-1] = 0.0, 1.0
    return tuple(float(v) for v in u)


def round_warp(warp: Sequence[float]) -> tuple[float, ...]:
    """The warp as written to controls.toml: ``WARP_DECIMALS`` decimals (6 where 4 would tie)."""
    for decimals in (WARP_DECIMALS, 6):
        rounded = tuple(round(float(u), decimals) + 0.0 for u in warp)
        if all(b > a for a, b in pairwise(rounded)):
            return rounded
    return tuple(float(u) for u in warp)


def screenable(knob: Knob) -> bool:
    """Whether screening measures this knob (not a log-taper knob; see the module docstring)."""
    return knob.taper != "log"


def probe_settings(controls: Controls, knob: Knob, levels: int = DEFAULT_LEVELS) -> list[Setting]:
    """The one-at-a-time settings of ``knob`` (others at their defaults), low to high."""
    base = controls.default_setting()
    settings = []
    for p in np.linspace(0.0, 1.0, levels):
        setting = dict(base)
        setting[knob.name] = float(knob.min + p * (knob.max - knob.min))
        settings.append(setting)
    return settings


def screen(render: Callable[[Setting], np.ndarray], controls: Controls, levels: int = DEFAULT_LEVELS,
           blend: float = DEFAULT_BLEND, progress: Progress | None = None,
           keep: dict[str, list[np.ndarray]] | None = None) -> dict[str, tuple[float, ...]]:
    """Measure every screenable knob's warp with ``render(setting) -> output audio`` (a virtual device).

    ``progress(knob, index, count)`` is called before each render, and with ``index = count`` at the
    end. A knob whose total change is at most ``MIN_CHANGE`` gets the linear warp. ``keep``: a dict that
    receives each knob's outputs, low to high.
    """
    knobs = [k for k in controls.knobs if screenable(k)]
    count, warps = len(knobs) * levels, {}
    for k, knob in enumerate(knobs):
        outputs = []
        for i, setting in enumerate(probe_settings(controls, knob, levels)):
            if progress is not None:
                progress(knob.name, k * levels + i, count)
            outputs.append(render(setting))
        warps[knob.name] = warp_from_distances(step_distances(outputs, allow_silent=True), blend, MIN_CHANGE)
        if keep is not None:
            keep[knob.name] = outputs
    if progress is not None:
        progress("done", count, count)
    return warps


@dataclass(frozen=True)
class WarpSummary:
    """What a knob's warp says, for a table: ``u`` at each quarter turn and where it rises fastest."""

    quarters: tuple[float, float, float]   # u at 1/4, 1/2 and 3/4 of the turn
    fastest: str                           # e.g. "9 -> 10: 37 % of u in 10 % of the turn"


def warp_summary(knob: Knob) -> WarpSummary:
    """Summarise ``knob.warp`` (or its taper, when it has none) in plain numbers."""
    warp = np.asarray(knob.warp if knob.warp is not None else
                      [knob.to_unit(knob.min + p * (knob.max - knob.min)) for p in np.linspace(0, 1, 11)])
    rotations = np.linspace(0.0, 1.0, len(warp))
    a, b, c = (float(np.interp(p, rotations, warp)) for p in (0.25, 0.5, 0.75))
    steps = np.diff(warp)
    if np.ptp(steps) <= 1e-3 * np.mean(steps):
        return WarpSummary((a, b, c), "evenly (linear: no measurable change, or a linear knob)")
    i = int(np.argmax(steps))
    low, high = (format_value(knob, knob.min + p * (knob.max - knob.min)) for p in rotations[i:i + 2])
    turn = 100.0 / len(steps)
    return WarpSummary((a, b, c), f"{low} -> {high}: {100 * steps[i]:.0f} % of u in {turn:.0f} % of the turn")


def apply_warps(controls: Controls, warps: Mapping[str, Sequence[float]]) -> Controls:
    """The same controls with the given knobs' warps set (validated as a controls file would be)."""
    unknown = sorted(set(warps) - {k.name for k in controls.knobs})
    if unknown:
        raise ScreeningError(f"no knob named {', '.join(unknown)} in these controls.")
    knobs = tuple(replace(k, warp=tuple(warps[k.name])) if k.name in warps else k for k in controls.knobs)
    return Controls(knobs=knobs, switches=controls.switches, name=controls.name, source=controls.source)


# ------------------------------------------------------------------------------------------ the probe
@lru_cache(maxsize=1)
def _probe_parts() -> tuple[np.ndarray, SignalMap]:
    source = generate_signal(MIN_SECONDS)
    m = source.map
    rate = m.sample_rate
    lead = source.audio[:m.segment("validation_1").start]           # silence, blip_1, blip_2
    validation = source.part("validation_1")
    validation = validation[2 * (len(validation) // 3):]            # its loud last phrase (-3 dBFS)
    playing = _first_phrases(source.part("playing"), rate)
    parts = [("validation_1", validation), ("playing", playing), ("validation_2", validation)]
    segments = [s for s in m.segments if s.stop <= len(lead)]
    pos = len(lead)
    for name, part in parts:
        segments.append(Segment(name, pos, pos + len(part)))
        pos += len(part)
    audio = np.concatenate([lead] + [part for _, part in parts]).astype(np.float32)
    return audio, SignalMap(rate, len(audio), SIGNAL_VERSION, tuple(segments), m.blips)


def _first_phrases(playing: np.ndarray, rate: int) -> np.ndarray:
    """The start of the test signal's playing, up to the end of the first phrase gap after 4 s."""
    gap, after = round(0.05 * rate), round(_PHRASE_AFTER_SECONDS * rate)
    silent = np.concatenate([[False], playing == 0.0, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= gap and start >= after and stop <= round(_PLAYING_SECONDS * rate):
            return playing[:stop].copy()
    cut = playing[:round(_PLAYING_SECONDS * rate)].copy()
    fade = round(0.05 * rate)
    cut[-fade:] *= np.linspace(1.0, 0.0, fade)
    return cut


def probe_signal() -> TestSignal:
    """The probe played at every screening setting (about 12 s, 48 kHz).

    ``silence``, ``blip_1``, ``blip_2`` as in knobcap's test signal (latency), ``validation_1`` (the
    loud last phrase of its validation segment), ``playing`` (its first phrases of playing, about
    5.7 s: the distances are computed here), ``validation_2`` (a copy of ``validation_1``: drift).
    """
    audio, signal_map = _probe_parts()
    return TestSignal(audio.copy(), signal_map)


def playing_part(signal: TestSignal, audio: np.ndarray) -> np.ndarray:
    """The ``playing`` segment of an output aligned to the probe."""
    seg = signal.map.segment("playing")
    return np.asarray(audio[seg.start:seg.stop], dtype=np.float64)


# ------------------------------------------------------------------------------------------ virtual
def screen_device(device: object, levels: int = SCREEN_LEVELS, blend: float = DEFAULT_BLEND,
                  progress: Progress | None = None) -> Controls:
    """A virtual device's controls with their warps measured on the probe (no latency, no noise; the
    device's own delay measured and removed, :mod:`knobcap.capture.device_delay`), and the ``gain_db``
    of every knob that is an exact output gain (:mod:`knobcap.capture.gain_knobs`)."""
    from knobcap.capture.device_delay import delay_aligned
    from knobcap.capture.gain_knobs import find_gain_knobs, probe_values

    device = delay_aligned(device)  # type: ignore[arg-type]
    signal = probe_signal()
    x = signal.audio.astype(np.float64)
    controls: Controls = device.controls  # type: ignore[attr-defined]

    def render(setting: Setting) -> np.ndarray:
        return playing_part(signal, device.process(x, signal.sample_rate, setting))  # type: ignore[attr-defined]

    outputs: dict[str, list[np.ndarray]] = {}
    warps = screen(render, controls, check_levels(levels), blend, progress, outputs)
    warped = apply_warps(controls, {name: round_warp(w) for name, w in warps.items()})
    gains = find_gain_knobs(render, controls, levels, outputs)
    knobs = []
    for knob in warped.knobs:
        if knob.name in gains:
            knob = replace(knob, gain_db=gains[knob.name])
        elif knob.name in outputs:
            silent = [is_silent(y) for y in outputs[knob.name]]
            knob = replace(knob, audible=audible_range(probe_values(knob, levels), silent))
        knobs.append(knob)
    return replace(warped, knobs=tuple(knobs))


def audible_range(values: Sequence[float], silent: Sequence[bool]) -> tuple[float, float] | None:
    """A knob's values between which the device sounds, from its probes low to high (``silent``: which
    were silent); ``None`` when none was silent, or all were (nothing to keep plans in).

    A knob silent at an end that only scales the output is an output gain instead (held at its
    default); this is for one that does more, such as a preamp's volume that is silent at 0: a take
    there teaches a model nothing, so plans stay within the range."""
    if not any(silent) or all(silent):
        return None
    audible = [v for v, quiet in zip(values, silent, strict=True) if not quiet]
    return min(audible), max(audible)


def check_levels(levels: int) -> int:
    """``levels`` (probes per knob), refused outside 3 to ``MAX_LEVELS``."""
    if not 3 <= levels <= MAX_LEVELS:
        raise ScreeningError(f"--levels must be from 3 to {MAX_LEVELS} probes per knob, got {levels}.")
    return int(levels)

