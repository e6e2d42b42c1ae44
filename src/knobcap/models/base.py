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

or from an installed package, through an entry point in the group ``knobcap.architectures``
(``mynet = "mypackage.nets:MyNet"``; see :mod:`knobcap.registry`).

The class is built as ``cls(config)`` where ``config`` is a JSON-able dict with at least
``n_controls``; its ``state_dict`` names are what ``model.knobcap`` stores.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from knobcap.registry import Registry, RegistryError


class ModelConfigError(ValueError):
    """An architecture name or config cannot build a model; the message says what to fix."""


class ArchitectureNameError(ModelConfigError, RegistryError):
    """An architecture name cannot be registered or found (a registry error about models)."""


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


def _check_factory(name: str, factory: object) -> None:
    if not callable(factory):
        raise ArchitectureNameError(f"architecture {name!r} must be a ParametricModel class or a function "
                                    f"config -> ParametricModel, got {factory!r}.")
    if isinstance(factory, type) and not issubclass(factory, ParametricModel):
        raise ArchitectureNameError(f"architecture {name!r}: class {factory.__name__} is not a subclass of "
                                    "knobcap.models.base.ParametricModel.")


def _unknown(name: str, available: list[str]) -> str:
    return (f"unknown architecture {name!r}; available: {', '.join(available)}. A custom architecture must "
            "be registered with knobcap.models.base.register_model before use.")


ARCHITECTURES: Registry[ModelFactory] = Registry("architecture", "knobcap.architectures",
                                                 check=_check_factory, missing=_unknown,
                                                 error=ArchitectureNameError)
ARCHITECTURES.register_lazy("wavenet", "knobcap.models.wavenet:ConditionedWaveNet")
ARCHITECTURES.register_lazy("lstm", "knobcap.models.lstm:ConditionedLSTM")


def register_model(name: str, factory: ModelFactory, *, replace: bool = False) -> None:
    """Make an architecture available by ``name`` (``factory(config) -> ParametricModel``)."""
    ARCHITECTURES.register(name, factory, replace=replace)


def available_models() -> list[str]:
    """Names of the registered architectures (built-in, registered, and from entry points)."""
    return ARCHITECTURES.names()


def create_model(name: str, config: Mapping[str, Any]) -> ParametricModel:
    """Build the architecture ``name`` from ``config`` (which must include ``n_controls``)."""
    factory = ARCHITECTURES.get(name)
    if "n_controls" not in config:
        raise ModelConfigError(f"config of architecture {name!r} lacks 'n_controls'.")
    model = factory(config)
    if not model.architecture:
        model.architecture = name
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "ARCHITECTURES",
    "ArchitectureNameError",
    "ModelConfigError",
    "ParametricModel",
    "available_models",
    "count_parameters",
    "create_model",
    "register_model",
]
