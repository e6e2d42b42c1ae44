"""Output-gain knobs: knobs that only scale the output (a level or volume control after the last
nonlinearity), found by screening and then applied exactly instead of learned.

A knob is an output gain when, at every probed rotation ``p_i``, its output ``y_i`` is a scaled copy of
the output ``y_0`` at the knob's default, ``y_i = g_i y_0``, with the other controls at their defaults
*and* at the far ends of their ranges (so a level before a later nonlinearity, which is a pure gain only
while that stage is clean, is not taken for one). The least-squares gain and what it leaves are

    g_i = <y_i, y_0> / <y_0, y_0>,      r_i = |y_i - g_i y_0|^2 / |y_i|^2,

and the knob counts when every ``r_i <= MAX_RESIDUAL`` and the two curves ``20 log10 g_i`` agree within
``MAX_SPREAD_DB``. Its ``gain_db`` (``20 log10 g_i`` at the default's controls, 0 dB at the knob's
default) goes into controls.toml; the model never sees the knob, and its gain multiplies the model's
output everywhere (:meth:`knobcap.controls.Controls.output_gain`).

Why: a model that must learn a level knob interpolates the level between the takes and gets it wrong by
up to a dB where takes are sparse (issue 11, session 13: the GxTubeScreamer's ``level``, an exact gain,
cost its worst setting 0.0251 ESR where the right level leaves 0.0104; ``benchmarks/gain_misfit.py``).
Applied exactly, the level is right at every setting and the design spends no takes on it.

Virtual devices are tested on renders (exact, so the thresholds are tight: :func:`knob_gain`). A
recorded device (``knobcap screen`` with probes recorded by hand, :func:`recorded_knob_gain`) is tested
on its probes: the knob's own probes (the others at their defaults) and three more with every other
control at its far end (the knob at its default, its minimum and its maximum). Its probes carry noise,
so a residual is allowed what the two recordings' noise floors explain, times ``NOISE_MARGIN``, plus
``RECORDED_MAX_RESIDUAL`` (what a pot's loading may change; a knob misread as a gain at that residual
costs a model at most about that ESR), and the two curves must agree at the knob's ends within
``RECORDED_SPREAD_DB`` plus the gains' noise. A probe at the noise floor (a volume turned down) is
silence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from knobcap.controls import MAX_GAIN_DB, Controls, Knob, Setting

MAX_RESIDUAL = 1e-6  # r_i: what a scaled copy leaves, as a share of the output's energy
MAX_SPREAD_DB = 0.01  # the gain curves at the two settings of the other controls agree within this
_SILENT = 1e-20  # an output energy at or below this is silence: no gain can be read from it
RECORDED_MAX_RESIDUAL = 1e-4  # recorded probes: what a scaled copy may leave beyond its noise
NOISE_MARGIN = 4.0  # ... plus this many times the share of the output that the noise floors explain
RECORDED_SPREAD_DB = 0.1  # recorded probes: the two curves agree at the knob's ends within this (+ noise)


def gain_curve(outputs: Sequence[np.ndarray], reference: np.ndarray) -> tuple[np.ndarray, float] | None:
    """``(20 log10 g_i, max_i r_i)`` of ``outputs`` against ``reference`` (see the module docstring);
    ``None`` when the reference is silent (no gain to read). A silent output is gain 0, written as
    ``-MAX_GAIN_DB`` (a volume turned all the way down)."""
    y0 = np.asarray(reference, np.float64)
    energy0 = float(y0 @ y0)
    if energy0 <= _SILENT:
        return None
    gains, worst = [], 0.0
    for output in outputs:
        y = np.asarray(output, np.float64)
        if y.shape != y0.shape:
            return None
        energy = float(y @ y)
        if energy <= _SILENT:
            gains.append(-MAX_GAIN_DB)
            continue
        g = float(y @ y0) / energy0
        if g <= 0.0:
            return None
        worst = max(worst, float(np.sum((y - g * y0) ** 2)) / energy)
        gains.append(max(20.0 * np.log10(g), -MAX_GAIN_DB))
    return np.asarray(gains), worst


def far_setting(controls: Controls, knob: str) -> Setting:
    """Every control but ``knob`` away from its default: a knob at the end farther from it, a switch at
    its last position (its first, when the last is the default)."""
    setting = controls.default_setting()
    for k in controls.knobs:
        if k.name != knob:
            setting[k.name] = k.max if k.default_value - k.min <= k.max - k.default_value else k.min
    for s in controls.switches:
        setting[s.name] = s.positions[-1] if s.positions[-1] != s.default else s.positions[0]
    return setting


def probe_values(knob: Knob, levels: int) -> list[float]:
    """``levels`` equally spaced rotations of ``knob``, as values."""
    return [float(knob.min + p * (knob.max - knob.min)) for p in np.linspace(0.0, 1.0, levels)]


def knob_gain(render: Callable[[Setting], np.ndarray], controls: Controls, knob: Knob, levels: int,
              at_defaults: Sequence[np.ndarray] | None = None) -> tuple[float, ...] | None:
    """``knob``'s ``gain_db`` at ``levels`` equally spaced rotations when it is an output gain, else
    ``None``. ``at_defaults``: its outputs at those rotations with the others at their defaults, when
    screening has rendered them already."""
    values = probe_values(knob, levels)
    curves = []
    for base in (controls.default_setting(), far_setting(controls, knob.name)):
        if at_defaults is not None and not curves:
            outputs = list(at_defaults)
        else:
            outputs = [render(base | {knob.name: v}) for v in values]
        reference = render(base | {knob.name: knob.default_value})
        found = gain_curve(outputs, reference)
        if found is None or found[1] > MAX_RESIDUAL:
            return None
        curves.append(found[0])
    if float(np.max(np.abs(curves[0] - curves[1]))) > MAX_SPREAD_DB:
        return None
    return tuple(round(float(g), 4) for g in curves[0])


def find_gain_knobs(render: Callable[[Setting], np.ndarray], controls: Controls, levels: int,
                    at_defaults: dict[str, Sequence[np.ndarray]] | None = None
                    ) -> dict[str, tuple[float, ...]]:
    """``gain_db`` of every knob of ``controls`` that is an output gain, by name; none when every knob
    is one (a design needs a knob to spread takes over, so the model then learns them)."""
    found = {}
    for knob in controls.knobs:
        gains = knob_gain(render, controls, knob, levels, (at_defaults or {}).get(knob.name))
        if gains is not None:
            found[knob.name] = gains
    return {} if len(found) == len(controls.knobs) else found


@dataclass(frozen=True)
class Recording:
    """A recorded probe for the gain test: the knob's value, the aligned output (``None``: silent, at
    the noise floor) and the noise floor's power per sample."""

    value: float
    audio: np.ndarray | None
    noise: float


def recorded_gain_curve(outputs: Sequence[Recording], reference: Recording
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(20 log10 g_i, tolerance_i)`` in dB of recorded ``outputs`` against ``reference``, or ``None``
    when one is not a scaled copy within its noise (or the reference is silent).

    With noise powers ``n_i``, ``n_0`` a sample, ``N`` samples and output energy ``E_i``, the noise
    alone leaves ``e_i = N (n_i + g_i^2 n_0) / E_i`` of the output; a probe passes when
    ``r_i <= RECORDED_MAX_RESIDUAL + NOISE_MARGIN e_i``. The gain's own noise is about
    ``sqrt(e_i / N)`` of it: the tolerance is ``NOISE_MARGIN`` times that, in dB."""
    if reference.audio is None:
        return None
    y0 = np.asarray(reference.audio, np.float64)
    energy0 = float(y0 @ y0)
    if energy0 <= _SILENT:
        return None
    gains, tolerance = [], []
    for output in outputs:
        if output.audio is None:
            gains.append(-MAX_GAIN_DB)
            tolerance.append(0.0)
            continue
        y = np.asarray(output.audio, np.float64)
        energy = float(y @ y)
        if y.shape != y0.shape or energy <= _SILENT:
            return None
        g = float(y @ y0) / energy0
        if g <= 0.0:
            return None
        noise_share = len(y) * (output.noise + g * g * reference.noise) / energy
        if float(np.sum((y - g * y0) ** 2)) / energy > RECORDED_MAX_RESIDUAL + NOISE_MARGIN * noise_share:
            return None
        gains.append(max(20.0 * math.log10(g), -MAX_GAIN_DB))
        tolerance.append(20.0 * math.log10(1.0 + NOISE_MARGIN * math.sqrt(noise_share / len(y))))
    return np.asarray(gains), np.asarray(tolerance)


def recorded_knob_gain(knob: Knob, at_defaults: Sequence[Recording], far: Sequence[Recording],
                       levels: int) -> tuple[float, ...] | None:
    """``knob``'s ``gain_db`` at ``levels`` equally spaced rotations from recorded probes, when it is an
    output gain, else ``None``.

    ``at_defaults``: the knob's probes (the other controls at their defaults), low to high; ``far``: the
    probes with every other control at its far end, the knob at its default first, then at other values
    (empty when the knob is the only control)."""
    audible = [r for r in at_defaults if r.audio is not None]
    if len(at_defaults) < 2 or not audible:
        return None
    loudest = max(audible, key=lambda r: float(np.sum(np.asarray(r.audio, np.float64) ** 2)))
    found = recorded_gain_curve(at_defaults, loudest)
    if found is None:
        return None
    rotations = np.array([knob.rotation(r.value) for r in at_defaults])
    curve, tolerance = found
    default = knob.rotation(knob.default_value)
    below = int(np.clip(np.searchsorted(rotations, default, side="right") - 1, 0, len(curve) - 2))
    if curve[below:below + 2].min() <= -MAX_GAIN_DB:
        return None  # silent next to the default: no level to refer the others to
    silent = curve <= -MAX_GAIN_DB
    curve = np.where(silent, -MAX_GAIN_DB, np.clip(curve - float(np.interp(default, rotations, curve)),
                                                   -MAX_GAIN_DB, MAX_GAIN_DB))
    if far:
        checked = recorded_gain_curve(far[1:], far[0])
        if checked is None:
            return None
        for r, gain, slack in zip(far[1:], *checked, strict=True):
            p = knob.rotation(r.value)
            expected = float(np.interp(p, rotations, curve))
            limit = RECORDED_SPREAD_DB + slack + float(np.interp(p, rotations, tolerance))
            if (gain <= -MAX_GAIN_DB) != (expected <= -MAX_GAIN_DB) or (
                    gain > -MAX_GAIN_DB and abs(gain - expected) > limit):
                return None
    table = np.interp(np.linspace(0.0, 1.0, levels), rotations, curve)
    return tuple(round(float(g), 4) for g in table)
