"""Start a training run from an earlier run's weights (``knobcap train --init-from RUN``).

Only the weights are read, from the earlier run's ``model.knobcap`` (checked, no pickle); its folder is
never written to. The new run has its own optimiser, schedule, checkpoints and log. The earlier model
must have the same architecture, model config and controls as the new run, so that every weight fits.
Used after ``plan --more``: the first model continues on the session with its added takes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from knobcap.controls import Controls
from knobcap.models.base import ParametricModel
from knobcap.models.modelfile import ModelFile, ModelFileError, load_model_file
from knobcap.training.config import TrainingError
from knobcap.training.run import Run, RunError


def resolve_init(session_dir: str | Path, source: str | Path) -> Path:
    """The model file that ``--init-from`` names: a run of the session, a run folder, or a model file."""
    path = Path(source)
    if path.is_file():
        return path.resolve()
    try:
        run = Run.find(session_dir, source)
    except (RunError, ValueError) as error:
        raise TrainingError(f"--init-from {source}: {error}") from None
    if not run.model_path.is_file():
        raise TrainingError(f"--init-from {source}: {run.model_path} not found; name a run of "
                            f"{Run.runs_dir(session_dir)} that 'knobcap train' finished, or a model file.")
    return run.model_path.resolve()


def initial_weights(path: str | Path, architecture: str, config: dict, controls: Controls
                    ) -> dict[str, torch.Tensor]:
    """The weights of the model file at ``path``, checked against the new run's model and controls."""
    try:
        model_file: ModelFile = load_model_file(path)
    except (ModelFileError, OSError) as error:
        raise TrainingError(f"--init-from {path}: {error}") from None
    if model_file.architecture != architecture or _plain(model_file.config) != _plain(config):
        raise TrainingError(f"--init-from {path}: its model ({model_file.architecture}, {model_file.config}) "
                            f"differs from this run's ({architecture}, {config}); train with the same "
                            "architecture and model config, or start from scratch.")
    if model_file.controls.names != controls.names:
        raise TrainingError(f"--init-from {path}: its controls ({', '.join(model_file.controls.names)}) "
                            f"differ from the session's ({', '.join(controls.names)}).")
    return {name: torch.from_numpy(np.array(w, dtype=np.float32)) for name, w in model_file.weights.items()}


def load_into(models: list[ParametricModel | None], state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into every model given (the trained one and its moving average)."""
    for model in models:
        if model is None:
            continue
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise TrainingError(f"--init-from {source}: the weights do not fit this run's model: "
                                f"{error}") from None


def _plain(config: dict) -> object:
    """A config as JSON reads it back (tuples become lists), for comparing a saved one with a live one."""
    return json.loads(json.dumps(config, sort_keys=True))
