"""Controls as a user sees and types them: values rounded to a dial, setting labels, ``--set`` parsing.

A user can only set a knob to about a hundredth of its range, so the design and the tables round to
that step (:func:`dial_step`); log knobs keep three significant digits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from knobcap.controls.space import Controls, ControlsError, Knob, Setting


def dial_step(knob: Knob) -> float:
    """The step a user can dial: about a hundredth of the range (0.1 on a 0-10 knob)."""
    return 10.0 ** (math.floor(math.log10(knob.max - knob.min)) - 2)


def round_value(knob: Knob, value: float) -> float:
    """A knob value rounded to what a user can set (log knobs: 3 significant digits)."""
    value = min(max(float(value), knob.min), knob.max)
    if knob.taper == "log":
        digits = 2 - math.floor(math.log10(abs(value)))
        rounded = round(value, digits)
    else:
        step = dial_step(knob)
        rounded = knob.min + round((value - knob.min) / step) * step
        rounded = round(rounded, max(0, -math.floor(math.log10(step))) + 1)
    return min(max(rounded, knob.min), knob.max)


def setting_from_units(controls: Controls, u: Iterable[float], combo: Mapping[str, str]) -> Setting:
    """The setting at knob coordinates ``u`` (one per knob, in order) rounded to the dial, with the
    switch positions of ``combo``."""
    setting: Setting = {knob.name: round_value(knob, knob.from_unit(float(v)))
                        for knob, v in zip(controls.knobs, u, strict=True)}
    setting.update(combo)
    return setting


def format_value(knob: Knob, value: float) -> str:
    """The text of a knob value in plan.csv and tables (no float noise: ``7.3``, ``1200``)."""
    text = np.format_float_positional(round_value(knob, value), precision=6, trim="-")
    return text


def round_setting(controls: Controls, setting: Mapping[str, object]) -> Setting:
    clean = controls.validate_setting(setting)
    for knob in controls.knobs:
        clean[knob.name] = round_value(knob, float(clean[knob.name]))  # type: ignore[arg-type]
    return clean



# ----------------------------------------------------------------------------------------- labels
def setting_label(setting: Mapping[str, object], controls: Controls | None = None, digits: int = 3) -> str:
    """A short label such as ``drive=6.3 tone=2 diodes=led``: knob values to ``digits`` significant digits.

    With ``controls``, the controls' order (knobs, then switches) and ``?`` for a missing value;
    without, the setting's own order.
    """
    if controls is None:
        return " ".join(f"{k}={v:.{digits}g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in setting.items())
    parts = []
    for control in (*controls.knobs, *controls.switches):
        value = setting.get(control.name, "?")
        number = _number(value) if isinstance(control, Knob) else None
        text = f"{number:.{digits}g}" if number is not None else str(value)
        parts.append(f"{control.name}={text}")
    return " ".join(parts)


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------------------- --set parsing
def parse_setting_args(items: Iterable[str]) -> dict[str, str]:
    """Parse command-line ``name=value`` pairs (values stay strings; validate with Controls)."""
    setting: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ControlsError(f"--set {item!r}: write it as name=value, e.g. --set drive=7.")
        setting[name.strip()] = value.strip()
    return setting


def settings_from_args(controls: Controls, items: Mapping[str, str]) -> dict[str, object]:
    """``--set`` values converted: knobs to numbers, switch positions kept as names."""
    out: dict[str, object] = {}
    for name, raw in items.items():
        try:
            control = controls[name]
        except KeyError:
            raise ControlsError(
                f"--set {name}: unknown control; this model's controls are {', '.join(controls.names)}."
            ) from None
        if isinstance(control, Knob):
            try:
                out[name] = float(raw)
            except ValueError:
                raise ControlsError(f"--set {name}={raw}: knob {name!r} needs a number.") from None
        else:
            out[name] = raw
    return out
