"""Parametric architectures (torch) and the registry that finds them by name.

A parametric model maps audio ``x`` of shape ``(B, T)`` and a normalised setting ``c`` of shape
``(B, C)`` (constant) or ``(B, C, T)`` (automation) to ``(B, T - receptive_field + 1)`` samples: the
output aligned with the *last* input samples. Built in: ``wavenet`` (the default) and ``lstm``.

A user plugs in an own architecture from their own module::

    from knobcap.models.base import ParametricModel, register_model

    class MyNet(ParametricModel):
        architecture = "mynet"
        ...
    register_model("mynet", MyNet)

The class is built as ``cls(config)`` where ``config`` is a JSON-able dict with at least
``n_controls``; its ``state_dict`` names are what ``model.knobcap`` stores.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn


class ModelConfigError(ValueError):
    """An architecture name or config cannot build a model; the message says what to fix."""


class ParametricModel(nn.Module):
    """Base class: audio plus a normalised setting in, audio out."""

    architecture: str = ""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config: dict[str, Any] = copy.deepcopy(dict(config))

    @property
    def n_controls(self) -> int:
        return int(self.config["n_controls"])

    @property
    def receptive_field(self) -> int:
        """Input samples that make one output sample (1 for a recurrent model)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def condition(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The conditioning signal ``[x; c]`` of shape ``(B, 1 + C, T)``; ``c`` is held or automated."""
        if x.ndim != 2:
            raise ValueError(f"audio must have shape (batch, time), got {tuple(x.shape)}")
        batch, length = x.shape
        if c.ndim == 2:
            c = c[:, :, None].expand(-1, -1, length)
        if c.ndim != 3 or c.shape[0] != batch or c.shape[1] != self.n_controls or c.shape[2] != length:
            raise ValueError(
                f"setting must have shape ({batch}, {self.n_controls}) or ({batch}, {self.n_controls}, "
                f"{length}), got {tuple(c.shape)}")
        return torch.cat([x[:, None, :], c.to(x.dtype)], dim=1)


ModelFactory = Callable[[Mapping[str, Any]], ParametricModel]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str, factory: ModelFactory, *, replace: bool = False) -> None:
    """Make an architecture available by ``name`` (``factory(config) -> ParametricModel``)."""
    if not name or not isinstance(name, str):
        raise ModelConfigError("an architecture needs a non-empty name.")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not factory:
        raise ModelConfigError(
            f"architecture {name!r} is already registered; pick another name or pass replace=True.")
    _REGISTRY[name] = factory


def available_models() -> list[str]:
    """Names of the registered architectures."""
    return sorted(_REGISTRY)


def create_model(name: str, config: Mapping[str, Any]) -> ParametricModel:
    """Build the architecture ``name`` from ``config`` (which must include ``n_controls``)."""
    if name not in _REGISTRY:
        raise ModelConfigError(
            f"unknown architecture {name!r}; available: {', '.join(available_models())}. A custom "
            "architecture must be registered with knobcap.models.base.register_model before use.")
    if "n_controls" not in config:
        raise ModelConfigError(f"config of architecture {name!r} lacks 'n_controls'.")
    model = _REGISTRY[name](config)
    if not model.architecture:
        model.architecture = name
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


from knobcap.models.lstm import ConditionedLSTM  # noqa: E402
from knobcap.models.wavenet import ConditionedWaveNet  # noqa: E402

register_model("wavenet", ConditionedWaveNet)
register_model("lstm", ConditionedLSTM)

__all__ = [
    "ConditionedLSTM",
    "ConditionedWaveNet",
    "ModelConfigError",
    "ParametricModel",
    "available_models",
    "count_parameters",
    "create_model",
    "register_model",
]
