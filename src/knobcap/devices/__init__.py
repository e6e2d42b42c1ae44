"""Reference virtual devices (circuit-level simulations) and the registry of them by name.

A device has ``controls`` (a :class:`~knobcap.controls.Controls`) and
``process(audio, sample_rate, setting) -> audio``; :class:`VirtualDevice` adds the public call shape
``device(audio, sample_rate, **setting)``, the same as a loaded model's. Devices are found by name
(case-insensitive) through :mod:`knobcap.registry`: the built-ins, those registered with
:func:`register_device`, and those an installed package declares in the ``knobcap.devices`` entry-point
group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from knobcap.controls import Controls
from knobcap.registry import Registry, RegistryError


@runtime_checkable
class Device(Protocol):
    """A virtual device: its controls and a function from audio and a setting to audio."""

    name: str
    controls: Controls

    def process(self, audio: np.ndarray, sample_rate: int,
                setting: Mapping[str, object]) -> np.ndarray: ...


class VirtualDevice:
    """Base of a device: ``device(audio, sample_rate, **setting)`` runs :meth:`process`.

    The setting may also come as a mapping (``device(audio, rate, {"drive": 5})``); keywords win.
    Controls not given take their defaults.
    """

    name: str = ""
    controls: Controls

    def process(self, audio: np.ndarray, sample_rate: int,
                setting: Mapping[str, object]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object] | None = None,
                 /, **controls: object) -> np.ndarray:
        full = {**self.controls.default_setting(), **(setting or {}), **controls}
        return self.process(audio, sample_rate, full)


DeviceFactory = Callable[..., Device]


def _check_device(name: str, factory: object) -> None:
    if not callable(factory):
        raise RegistryError(f"device {name!r} must be a class or a function that builds a device, got "
                            f"{factory!r}.")
    if isinstance(factory, type) and not callable(getattr(factory, "process", None)):
        raise RegistryError(f"device {name!r}: class {factory.__name__} has no process(audio, sample_rate, "
                            "setting) method.")


DEVICES: Registry[DeviceFactory] = Registry("device", "knobcap.devices", fold_case=True, check=_check_device)
DEVICES.register_lazy("ts808", "knobcap.devices.ts808:TS808")


def register_device(name: str, factory: DeviceFactory, *, replace: bool = False) -> None:
    """Make a device available by ``name`` (e.g. from a user's own module)."""
    DEVICES.register(name, factory, replace=replace)


#: Device schemes: ``"<scheme>:<address>"`` names a device by an address the registry cannot hold (an LV2
#: plugin's URI, kept exactly as written: URIs are case-sensitive) -> ``"module:factory"``.
SCHEMES: dict[str, str] = {"lv2": "knobcap.devices.lv2:lv2_device"}


def available_devices() -> list[str]:
    """The registered device names, then each scheme as ``"lv2:"`` (followed by a plugin URI)."""
    return DEVICES.names() + [f"{scheme}:" for scheme in sorted(SCHEMES)]


def get_device(name: str, **options: object) -> Device:
    """A new instance of the device registered as ``name``, or of a scheme's device (``"lv2:<URI>"``).

    :class:`RegistryError` if there is no such name; a scheme's device raises its own error
    (:class:`~knobcap.devices.errors.DeviceError` for a plugin that is not installed).
    """
    scheme, sep, _ = name.partition(":") if isinstance(name, str) else ("", "", "")
    if sep and scheme.lower() in SCHEMES:
        module, _, factory = SCHEMES[scheme.lower()].partition(":")
        build = getattr(importlib.import_module(module), factory)
        return build(f"{scheme.lower()}:{name[len(scheme) + 1:]}", **options)  # type: ignore[no-any-return]
    return DEVICES.get(name)(**options)


__all__ = ["DEVICES", "SCHEMES", "Device", "DeviceFactory", "RegistryError", "VirtualDevice",
           "available_devices", "get_device", "register_device"]
