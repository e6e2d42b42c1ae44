"""Screening: measure how fast each knob changes the sound, and warp its coordinate to match.

A knob is probed one at a time at ``levels`` equally spaced rotations ``p_i`` (the other controls at
their defaults), on the same short probe audio. The sound change between neighbouring probes is
the relative RMS difference

    d_i = sqrt( sum (y_{i+1} - y_i)^2 / (0.5 * (sum y_i^2 + sum y_{i+1}^2)) ),

and the warp is its normalised running sum, blended with the rotation so that flat stretches keep
some resolution:  ``u_i = (1 - b) * D_i / D_n + b * p_i``  with ``D_i = d_0 + ... + d_{i-1}``.

Equal steps in ``u`` are then roughly equal steps of sound change, which is what the design spreads
points over and what the model sees (see ``controls.py``; DOE notes A7, step 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from knobcap.controls import Controls, Knob, Setting

DEFAULT_LEVELS = 21
DEFAULT_BLEND = 0.25


class ScreeningError(ValueError):
    """Screening probes cannot give a warp; the message says what to do."""


def step_distances(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """``d_i``: relative RMS change between neighbouring probe outputs (see the module docstring)."""
    if len(outputs) < 2:
        raise ScreeningError("screening needs at least two probes per knob.")
    ys = [np.asarray(y, dtype=np.float64) for y in outputs]
    if len({len(y) for y in ys}) != 1:
        raise ScreeningError("the probes of one knob must all have the same length.")
    energy = np.array([np.sum(y * y) for y in ys])
    if np.any(energy <= 0):
        raise ScreeningError("a probe output is silent; check the connections and record it again.")
    diffs = np.array([np.sum((ys[i + 1] - ys[i]) ** 2) for i in range(len(ys) - 1)])
    return np.sqrt(diffs / (0.5 * (energy[:-1] + energy[1:])))


def warp_from_distances(distances: Sequence[float], blend: float = DEFAULT_BLEND) -> tuple[float, ...]:
    """``u`` at ``len(distances) + 1`` equally spaced rotations: the blended, normalised running sum."""
    d = np.asarray(distances, dtype=np.float64)
    if not 0.0 < blend <= 1.0:
        raise ScreeningError(f"blend must be in (0, 1], got {blend}.")
    rotations = np.linspace(0.0, 1.0, len(d) + 1)
    total = float(np.sum(d))
    if not np.all(np.isfinite(d)) or total <= 0:
        return tuple(float(p) for p in rotations)  # the knob changes nothing measurable: stay linear
    cumulative = np.concatenate([[0.0], np.cumsum(d)]) / total
    u = (1.0 - blend) * cumulative + blend * rotations
    u[0], u[-1] = 0.0, 1.0
    return tuple(float(v) for v in u)


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
           blend: float = DEFAULT_BLEND) -> dict[str, tuple[float, ...]]:
    """Measure every knob's warp with ``render(setting) -> output audio`` (a virtual device)."""
    return {knob.name: warp_from_distances(
        step_distances([render(s) for s in probe_settings(controls, knob, levels)]), blend)
        for knob in controls.knobs}


def apply_warps(controls: Controls, warps: Mapping[str, Sequence[float]]) -> Controls:
    """The same controls with the given knobs' warps set (validated as a controls file would be)."""
    from dataclasses import replace

    unknown = sorted(set(warps) - {k.name for k in controls.knobs})
    if unknown:
        raise ScreeningError(f"no knob named {', '.join(unknown)} in these controls.")
    knobs = tuple(replace(k, warp=tuple(warps[k.name])) if k.name in warps else k for k in controls.knobs)
    return Controls(knobs=knobs, switches=controls.switches, name=controls.name, source=controls.source)
