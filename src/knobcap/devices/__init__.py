"""Reference virtual devices (circuit-level simulations) and a small registry of them by name.

A device has ``controls`` (a :class:`~knobcap.controls.Controls`) and
``process(audio, sample_rate, setting) -> audio``, in the call style of pedalboard.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from knobcap.controls import Controls


@runtime_checkable
class Device(Protocol):
    """A virtual device: its controls and a function from audio and a setting to audio."""

    name: str
    controls: Controls

    def process(self, audio: np.ndarray, sample_rate: int,
                setting: Mapping[str, object]) -> np.ndarray: ...


DeviceFactory = Callable[..., Device]
_REGISTRY: dict[str, DeviceFactory] = {}


def register_device(name: str, factory: DeviceFactory) -> None:
    """Make a device available by ``name`` (e.g. from a user's own module)."""
    _REGISTRY[name.lower()] = factory


def available_devices() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_device(name: str, **options: object) -> Device:
    """A new instance of the device registered as ``name``."""
    _load_builtin()
    factory = _REGISTRY.get(name.lower())
    if factory is None:
        raise KeyError(
            f"no device named {name!r}; available: {', '.join(sorted(_REGISTRY)) or 'none'}.")
    return factory(**options)


def _load_builtin() -> None:
    """Import the built-in devices so that they register themselves."""
    from knobcap.devices import ts808  # noqa: F401
