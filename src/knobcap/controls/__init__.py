"""A device's knobs and switches, one home for everything about them.

- :mod:`~knobcap.controls.space`: ``Knob``, ``Switch``, ``Controls``; settings, tapers, warps and the
  normalised vector a model sees.
- :mod:`~knobcap.controls.dial`: values rounded to a dial, setting labels, ``--set`` parsing.
- :mod:`~knobcap.controls.toml`: ``controls.toml`` read and written (one writer), warps set in a
  user's file with :mod:`~knobcap.controls.warp_lines`, every other line kept.
"""

from knobcap.controls.dial import (
    dial_step,
    format_value,
    parse_setting_args,
    round_setting,
    round_value,
    setting_from_units,
    setting_label,
    settings_from_args,
)
from knobcap.controls.space import (
    MAX_GAIN_DB,
    MAX_WARP_POINTS,
    TAPERS,
    Controls,
    ControlsError,
    Knob,
    Setting,
    SettingValue,
    Switch,
    Taper,
)
from knobcap.controls.toml import CONTROLS_FILE, controls_to_toml, load_controls, save_controls, write_warps
from knobcap.controls.warp_lines import warps_into_toml

__all__ = [
    "CONTROLS_FILE",
    "MAX_GAIN_DB",
    "MAX_WARP_POINTS",
    "TAPERS",
    "Controls",
    "ControlsError",
    "Knob",
    "Setting",
    "SettingValue",
    "Switch",
    "Taper",
    "controls_to_toml",
    "dial_step",
    "format_value",
    "load_controls",
    "parse_setting_args",
    "round_setting",
    "round_value",
    "save_controls",
    "setting_from_units",
    "setting_label",
    "settings_from_args",
    "warps_into_toml",
    "write_warps",
]
