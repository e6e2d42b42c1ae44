"""The one bridge between a model file and torch: ``load`` a ``model.knobcap`` as a torch model, run it
with ``predict``, and save a torch model back with ``model_file_from``.

Prediction pads the start with ``receptive_field - 1`` zeros, so that the output aligns sample for
sample with the input: ``y[n]`` sees ``x[n - rf + 1 .. n]`` with zeros before the start. A
convolutional model (receptive field > 1) runs in time chunks of ``chunk`` samples that overlap by
``rf - 1``, which gives the same samples as one pass with less memory; a recurrent one (receptive field
1) runs in one pass, from a zero state.

``TorchModel`` is the torch fallback of :func:`knobcap.runtime.render.load_renderer` (the report on a
machine where the streaming engine cannot be imported): the same ``render(audio, setting)`` shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from knobcap.controls import Controls
from knobcap.dsp import dc_blocker
from knobcap.models.base import ParametricModel, create_model
from knobcap.models.modelfile import ModelFile, ModelFileError, load_model_file

DEFAULT_CHUNK = 1 << 17


def load(model_file_or_path: ModelFile | str | Path) -> ParametricModel:
    """The torch model (in eval mode) of a model file, or of the ``model.knobcap`` at a path."""
    if isinstance(model_file_or_path, ModelFile):
        model_file, source = model_file_or_path, "the model file"
    else:
        model_file, source = load_model_file(model_file_or_path), str(model_file_or_path)
    model = create_model(model_file.architecture, model_file.config)
    state = {name: torch.from_numpy(np.array(w, dtype=np.float32)) for name, w in model_file.weights.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelFileError(f"{source}: the weights do not fit architecture "
                             f"{model_file.architecture!r}: {error}") from None
    return model.eval()


class TorchModel:
    """A model file's torch model at a fixed setting, shaped as :class:`knobcap.runtime.render.Renderer`."""

    description = "PyTorch model"

    def __init__(self, model_file: ModelFile) -> None:
        self.controls: Controls = model_file.controls
        self.sample_rate = int(model_file.sample_rate)
        self.model = load(model_file)
        self.dc_blocker_hz = model_file.dc_blocker_hz

    @classmethod
    def from_file(cls, path: str | Path) -> TorchModel:
        """Load and check a ``model.knobcap`` (no pickle)."""
        return cls(load_model_file(path))

    def render(self, audio: np.ndarray, setting: Mapping[str, object]) -> np.ndarray:
        """The output for mono ``audio`` at the model's rate, from silence at ``setting``; same length."""
        clean = self.controls.validate_setting(setting)
        y = np.asarray(predict(self.model, audio, self.controls.to_vector(clean)), dtype=np.float32)
        y *= np.float32(self.controls.output_gain(clean))
        return y if self.dc_blocker_hz is None else dc_blocker.apply(y, self.dc_blocker_hz, self.sample_rate)


def model_file_from(model: ParametricModel, controls: Controls, sample_rate: int,
                    metadata: Mapping[str, Any] | None = None) -> ModelFile:
    """The :class:`ModelFile` of a torch model (weights copied to float32 numpy)."""
    weights = {k: v.detach().cpu().numpy().astype(np.float32).copy() for k, v in model.state_dict().items()}
    return ModelFile(architecture=model.architecture, config=dict(model.config), controls=controls,
                     sample_rate=int(sample_rate), weights=weights, metadata=dict(metadata or {}))


def predict(model: ParametricModel, audio: np.ndarray, setting_vector: np.ndarray,
            chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Run ``model`` over mono ``audio`` at one setting; the output aligns sample for sample with it.

    ``setting_vector`` is ``(C,)`` (held) or ``(C, T)`` (automation, one column a sample; the padding
    repeats the first column).
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {x.shape}.")
    vector = np.asarray(setting_vector, dtype=np.float32)
    if vector.ndim == 2 and vector.shape[1] != len(x):
        raise ValueError(f"automation has {vector.shape[1]} columns but the audio {len(x)} samples.")
    return _run(model, x, vector[None], chunk)[0]


def predict_settings(model: ParametricModel, audio: np.ndarray, vectors: np.ndarray,
                     chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Run ``model`` over mono ``audio`` at each of ``vectors`` ``(B, C)`` in one batch: ``(B, T)``."""
    return _run(model, np.asarray(audio, dtype=np.float32), np.asarray(vectors, dtype=np.float32), chunk)


def _run(model: ParametricModel, x: np.ndarray, vectors: np.ndarray, chunk: int) -> np.ndarray:
    """The padded, chunked forward pass: ``x`` ``(T,)``, ``vectors`` ``(B, C)`` or ``(B, C, T)``."""
    rf = int(model.receptive_field)
    batch = vectors.shape[0]
    padded = np.concatenate([np.zeros(rf - 1, np.float32), x])
    if vectors.ndim == 3:
        vectors = np.concatenate([np.repeat(vectors[:, :, :1], rf - 1, axis=2), vectors], axis=2)
    step = len(x) if rf == 1 else max(int(chunk), 1)
    pieces = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for first in range(0, len(x), max(step, 1)):
            part = torch.from_numpy(np.ascontiguousarray(padded[first:first + step + rf - 1]))
            if vectors.ndim == 3:
                c = torch.from_numpy(np.ascontiguousarray(vectors[:, :, first:first + step + rf - 1]))
            else:
                c = torch.from_numpy(np.ascontiguousarray(vectors))
            pieces.append(model(part[None].expand(batch, -1), c).numpy())
    model.train(was_training)
    if not pieces:
        return np.zeros((batch, 0), np.float32)
    return np.concatenate(pieces, axis=1)
