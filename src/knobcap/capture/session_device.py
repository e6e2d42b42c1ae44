"""The device of a session: named on the command line, in ``controls.toml`` or in ``reamp.json``, and
re-created with the session's controls (an LV2 plugin: the session's controls captured, the
``[fixed]`` ones held).

``knobcap init DIR --device lv2:URI --controls drive,tone --set level=0.5`` writes ``device =
"lv2:URI"`` and a ``[fixed]`` table into controls.toml (:func:`device_controls`); ``screen``,
``reamp``, ``eval`` and ``report`` then open the same device at the session's rate with
:func:`open_device`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from knobcap.controls import Controls
from knobcap.devices import Device, get_device

LV2 = "lv2:"
REAMP_FILE = "reamp.json"


class DeviceOptionError(ValueError):
    """--controls or --set given for a device that does not take them."""


def is_lv2(name: str | None) -> bool:
    return isinstance(name, str) and name[:len(LV2)].lower() == LV2


def new_device(name: str, select: Sequence[str] | None = None,
               fixed: Mapping[str, object] | None = None) -> Device:
    """``get_device(name)``; an LV2 plugin captures ``select`` (all its controls when None) and holds
    ``fixed``. Other devices have all their controls captured: ``select``/``fixed`` are refused."""
    if is_lv2(name):
        return get_device(name, select=select, fixed=fixed)
    if select is not None or fixed:
        raise DeviceOptionError(f"--controls and --set choose the controls of an LV2 plugin (--device "
                                f"lv2:<URI>); {name!r} always has all its controls captured. Drop them.")
    return get_device(name)


def device_controls(device: Device) -> Controls:
    """The device's captured controls, recording the device and its fixed controls (for controls.toml)."""
    fixed = getattr(device, "fixed", {}) or {}
    return replace(device.controls, device=str(getattr(device, "name", "")), fixed=tuple(fixed.items()))


def recorded_device(root: Path) -> str | None:
    """The device a session was reamped with (``reamp.json``), if any."""
    try:
        data = json.loads((Path(root) / REAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("device") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def session_device_name(root: Path, controls: Controls, given: str | None) -> str | None:
    """The device to use: ``given``, else the one controls.toml names, else the one reamp used."""
    return given or controls.device or recorded_device(root)


def open_device(name: str, controls: Controls) -> Device:
    """The device ``name`` set up for a session with ``controls``: an LV2 plugin captures exactly the
    session's controls and holds the others at controls.toml's ``[fixed]`` values (or its defaults)."""
    if is_lv2(name):
        fixed = controls.fixed_values if not controls.device or controls.device == name else {}
        return get_device(name, select=list(controls.names), fixed=fixed)
    return get_device(name)


def device_from_options(name: str, controls: str | None, set_items: Sequence[str]) -> Device:
    """``init --device NAME --controls a,b --set c=0.5``: the device, capturing ``controls`` (all when
    None) and holding each ``--set`` control at its value (a number, or a switch position)."""
    from knobcap.controls import parse_setting_args

    select = None if controls is None else [c.strip() for c in controls.split(",") if c.strip()]
    if select is not None and not select:
        raise DeviceOptionError(f"--controls {controls!r}: name the controls to capture, comma-separated "
                                "(e.g. --controls drive,tone).")
    fixed: dict[str, object] = {}
    for key, raw in parse_setting_args(set_items).items():
        try:
            fixed[key] = float(raw)
        except ValueError:
            fixed[key] = raw  # a switch position
    return new_device(name, select, fixed)


def init_controls(device: Device, screen: bool = True, progress: object | None = None) -> Controls:
    """The controls ``knobcap init --device`` writes: the device's, screened unless ``screen`` is False
    (its delay measured and removed), naming the device and its fixed controls."""
    controls = device.controls
    if screen:
        from knobcap.capture.screening import screen_device

        controls = screen_device(device, progress=progress)  # type: ignore[arg-type]
    named = device_controls(device)
    return replace(controls, device=named.device, fixed=named.fixed)


def named_device(root: Path) -> str | None:
    """The device ``root/controls.toml`` names, if it can be read and names one."""
    from knobcap.controls import CONTROLS_FILE, load_controls

    try:
        return load_controls(Path(root) / CONTROLS_FILE).device or None
    except (OSError, ValueError):
        return None
