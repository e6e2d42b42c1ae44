"""knobcap: parametric neural capture of guitar pedals and amps.

One model conditioned on every knob and switch of a device, trained from a short recording session
chosen by experimental design, cheap enough to run live on a CPU.

The public API, without torch; a model and a device are both called ``thing(audio, sample_rate,
**setting)``::

    import knobcap

    model = knobcap.load_model("runs/demo/model.knobcap")   # the streaming engine (numba)
    y = model(x, 48000, drive=7, diodes="led")              # controls not given take their defaults
    pedal = knobcap.get_device("ts808")
    target = pedal(x, 48000, drive=7, diodes="led")
    session = knobcap.Session.open("my-session")            # plan.csv, takes, check.json
    controls = knobcap.Controls(...)                        # knobs and switches

The names are imported on first use, so ``import knobcap`` stays light.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

# name -> module; imported by name (not an import statement) so that modules that read __version__
# from here do not form an import circle with the runtime
_LAZY = {
    "Controls": "knobcap.controls",
    "LoadedModel": "knobcap.runtime.render",
    "Session": "knobcap.capture.session",
    "available_devices": "knobcap.devices",
    "get_device": "knobcap.devices",
}


def load_model(path: str | Path, block_size: int = 512) -> Any:
    """Open a ``model.knobcap`` on the streaming engine (checked, no torch, no pickle): a callable
    ``model(audio, sample_rate, **setting) -> audio``, a :class:`knobcap.runtime.render.LoadedModel`."""
    render = importlib.import_module("knobcap.runtime.render")
    return render.LoadedModel.from_file(path, block_size)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'knobcap' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["Controls", "LoadedModel", "Session", "__version__", "available_devices", "get_device",
           "load_model"]
