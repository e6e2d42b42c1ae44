"""Render audio through a model at a fixed setting: the small interface the play page and the report use.

``load_renderer(path)`` opens a ``model.knobcap`` with the torch-free streaming engine
(:mod:`knobcap.runtime.engine`). The report may also fall back to the PyTorch model (``allow_torch=True``) on
a machine where the engine is missing; ``knobcap play`` never imports torch.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from knobcap.controls import Controls


class RenderError(ValueError):
    """A model cannot be opened or run; the message names the file and what to do."""


class Renderer(Protocol):
    """Something that turns dry audio into the model's output at one setting."""

    controls: Controls
    sample_rate: int
    description: str

    def render(self, audio: np.ndarray, setting: Mapping[str, object]) -> np.ndarray:
        """Output of the model for ``audio`` (mono float32, from silence) at ``setting``; same length."""
        ...


class EngineRenderer:
    """The streaming engine (numba, no torch) at a fixed setting, from a reset state."""

    def __init__(self, path: str | Path, block_size: int = 2048) -> None:
        self.path = Path(path)
        try:
            from knobcap.runtime import engine
        except ImportError as error:
            raise RenderError(
                f"{path}: the streaming engine (knobcap.runtime.engine) cannot be imported ({error}); "
                "reinstall knobcap.") from None
        self._engine = engine.Engine.from_file(path)
        self.controls: Controls = self._engine.controls
        self.sample_rate: int = int(self._engine.sample_rate)
        self.block_size = block_size
        self.description = "streaming engine"
        self._lock = threading.Lock()

    def render(self, audio: np.ndarray, setting: Mapping[str, object]) -> np.ndarray:
        clean = self.controls.validate_setting(setting)
        with self._lock:  # one engine, one state: renders take turns
            self._engine.set(clean, ramp_ms=0.0)
            self._engine.reset()  # silence at the setting: the same start as the report's target
            out = self._engine.process(np.ascontiguousarray(audio, dtype=np.float32),
                                       block_size=min(self.block_size, self._engine.max_block))
        return np.asarray(out, dtype=np.float32)


class TorchRenderer:
    """The PyTorch model built from a model file (for reports on machines without the engine)."""

    def __init__(self, path: str | Path) -> None:
        from knobcap.models import bridge
        from knobcap.models.modelfile import load_model_file

        model_file = load_model_file(path)
        self.controls = model_file.controls
        self.sample_rate = int(model_file.sample_rate)
        self.description = "PyTorch model"
        model = bridge.load(model_file)
        self._predict = lambda audio, vector: bridge.predict(model, audio, vector)

    def render(self, audio: np.ndarray, setting: Mapping[str, object]) -> np.ndarray:
        clean = self.controls.validate_setting(setting)
        return np.asarray(self._predict(audio, self.controls.to_vector(clean)), dtype=np.float32)


def load_renderer(path: str | Path, allow_torch: bool = False) -> Renderer:
    """A renderer for ``path``: the streaming engine, or (``allow_torch``) the PyTorch model."""
    path = Path(path)
    if not path.is_file():
        raise RenderError(f"{path}: no such model file; give the model.knobcap of a run.")
    try:
        return EngineRenderer(path)
    except RenderError:
        if not allow_torch:
            raise
    try:
        return TorchRenderer(path)
    except ImportError as error:
        raise RenderError(
            f"{path}: neither the streaming engine nor PyTorch is available ({error}).") from None
