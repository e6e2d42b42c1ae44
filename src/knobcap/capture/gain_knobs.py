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

Only virtual devices are screened for it (their renders are exact, so the thresholds can be tight); a
recorded device's probes carry noise and drift, and its level knob stays a knob the model learns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from knobcap.controls import MAX_GAIN_DB, Controls, Knob, Setting

MAX_RESIDUAL = 1e-6  # r_i: what a scaled copy leaves, as a share of the output's energy
MAX_SPREAD_DB = 0.01  # the gain curves at the two settings of the other controls agree within this
_SILENT = 1e-20  # an output energy at or below this is silence: no gain can be read from it


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
