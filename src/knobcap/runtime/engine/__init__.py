"""Streaming inference without torch: numba kernels, knob smoothing, block processing.

``Engine.from_file(path)`` -> ``.set(setting)`` -> ``.process_block(in, out)`` / ``.process(audio)``.
"""

from knobcap.runtime.engine.engine import (
    CORES,
    DEFAULT_RAMP_MS,
    MAX_BLOCK,
    Engine,
    EngineError,
    register_core,
    supported_architectures,
)
from knobcap.runtime.engine.ramp import ramp_trajectory

__all__ = [
    "CORES",
    "DEFAULT_RAMP_MS",
    "MAX_BLOCK",
    "Engine",
    "EngineError",
    "ramp_trajectory",
    "register_core",
    "supported_architectures",
]
