"""Test helpers for the report and play tests: a tiny random model file and a run folder (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from knobcap.architectures import weight_shapes
from knobcap.controls import Controls, Knob, Switch
from knobcap.modelfile import ModelFile, save_model_file

RATE = 48_000


def tiny_controls() -> Controls:
    return Controls(knobs=(Knob("drive", taper="audio"), Knob("tone")),
                    switches=(Switch("diodes", ("silicon", "led")),), name="Tiny Drive")


def tiny_model(path: Path, controls: Controls | None = None, seed: int = 0) -> Path:
    """A small conditioned WaveNet with random weights whose output clearly depends on every control."""
    controls = controls or tiny_controls()
    config = {"n_controls": controls.vector_size,
              "arrays": [{"channels": 4, "head_size": 2, "kernel_size": 3, "dilations": [1, 2, 4]},
                         {"channels": 2, "head_size": 1, "kernel_size": 3, "dilations": [1, 2]}],
              "head_scale": 0.3, "activation": "tanh"}
    rng = np.random.default_rng(seed)
    weights = {name: (rng.standard_normal(shape) * (0.0 if name.endswith("bias") else 0.5)).astype(np.float32)
               for name, shape in weight_shapes("wavenet", config).items()}
    for name, w in weights.items():
        if name.endswith("mixin.weight"):  # the input drives the net; the controls shift it gently
            w[:, 0] *= 6.0
            w[:, 1:] *= 0.4
    save_model_file(path, ModelFile("wavenet", config, controls, RATE, weights, {"test": True}))
    return path
