"""Which WaveNet configs the numba training kernel (:mod:`knobcap.models.wavenet_kernel`) runs.

Torch-free, so the training config can refuse ``kernel "numba"`` before a model is built or data read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def unsupported_part(config: Mapping[str, Any]) -> str | None:
    """The part of a WaveNet ``config`` the kernel does not run, as ``"name value (what it runs)"``, or
    None when the kernel runs the whole config."""
    activation = config.get("activation")
    if activation != "tanh":
        return f"activation {activation!r} (the kernel runs 'tanh')"
    mixin = config.get("mixin", "linear")
    if mixin != "linear":
        return f"mixin {mixin!r} (the kernel runs 'linear')"
    arrays = config.get("arrays")
    if not isinstance(arrays, list) or not arrays:
        return "arrays (the kernel needs at least one)"
    for i in range(1, len(arrays)):
        previous, spec = arrays[i - 1], arrays[i]
        if (not isinstance(previous, Mapping) or not isinstance(spec, Mapping)
                or spec.get("channels") != previous.get("head_size")):
            return f"arrays[{i}].channels (the kernel needs it equal to arrays[{i - 1}].head_size)"
    return None
