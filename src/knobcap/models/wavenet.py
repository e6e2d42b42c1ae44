"""Conditioned WaveNet: NAM's layer structure with the setting mixed in before the activation.

For one layer with hidden signal ``h``, condition ``cond = [x; c]`` (audio and normalised setting):

    z = conv_dilated(h) + mixin(cond)      (mixin: 1x1, no bias)
    a = act(z)
    h <- h + out(a)                        (out: 1x1 with bias; residual)
    head <- head + a                       (skip sum)

With ``"film": true`` the dilated convolution is scaled first: ``z = g ⊙ conv_dilated(h) + mixin(cond)``
with ``g = 1 + film(c)`` (1x1 from the setting only, zero at start); for a constant setting ``g`` folds
into the conv's weight and bias.

An array rechannels its input, runs its layers and returns ``(head_rechannel(head), h)``; the head
of array i feeds the head sum of array i+1 and the output is ``head_scale * head`` of the last
array. For a constant setting ``c``, ``mixin(cond) = W_x x + W_c c`` where ``W_c c`` is a constant
per channel: it folds exactly into the conv bias, so any setting bakes into a plain NAM WaveNet.

Optional (issue 12): ``"cond_hidden": H`` feeds the mixins and FiLM the features ``s = [c; tanh(A c + a)]``
instead of ``c`` (still constant for a held setting, so the bake stays exact); ``"post_fir": {"taps": T,
"hidden": H}`` filters the output with a causal FIR whose taps ``e0 + B tanh(D c + d) + b`` follow the
setting sample by sample (``B``, ``b`` start at zero: the identity).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from knobcap.models.architectures import (
    LEAKY_SLOPE,
    check_config,
    condition_size,
    receptive_field,
    setting_size,
)
from knobcap.models.base import ModelConfigError, ParametricModel
from knobcap.models.kernel_support import unsupported_part


def activation(name: str, z: torch.Tensor) -> torch.Tensor:
    if name == "tanh":
        return torch.tanh(z)
    if name == "hardtanh":
        return functional.hardtanh(z)
    if name == "leaky_relu":
        return functional.leaky_relu(z, LEAKY_SLOPE)
    raise ModelConfigError(f"unknown activation {name!r}")


class _Layer(nn.Module):
    def __init__(self, channels: int, n_cond: int, kernel_size: int, dilation: int, n_film: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.mixin = nn.Conv1d(n_cond, channels, 1, bias=False)
        self.out = nn.Conv1d(channels, channels, 1)
        if n_film:
            self.film = nn.Conv1d(n_film, channels, 1, bias=False)
            nn.init.zeros_(self.film.weight)


class _Array(nn.Module):
    def __init__(self, in_channels: int, n_cond: int, spec: Mapping[str, Any], n_film: int = 0) -> None:
        super().__init__()
        channels = spec["channels"]
        self.rechannel = nn.Conv1d(in_channels, channels, 1, bias=False)
        self.layers = nn.ModuleList(
            _Layer(channels, n_cond, spec["kernel_size"], d, n_film) for d in spec["dilations"])
        self.head_rechannel = nn.Conv1d(channels, spec["head_size"], 1)

    def forward(self, h: torch.Tensor, cond: torch.Tensor, head: torch.Tensor | None, act: str,
                setting: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``setting``: the controls, ``(B, C, 1)`` when held or ``(B, C, T)`` (FiLM gains only)."""
        h = self.rechannel(h)
        # Each layer's mixin (and FiLM) on the condition's last samples only: slicing the condition
        # (no gradient) rather than a stacked mixin output keeps the backward pass from filling a
        # full-length zero gradient per layer (issue 13: a quarter of a training step's time).
        film = hasattr(self.layers[0], "film") and setting is not None
        for layer in self.layers:
            z = layer.conv(h)
            length = z.shape[-1]
            if film:
                z = z * (1.0 + layer.film(setting[..., -length:]))  # type: ignore[index]
            z = z + layer.mixin(cond[..., -length:])
            a = activation(act, z)
            h = h[..., -length:] + layer.out(a)
            head = a if head is None else head[..., -length:] + a
        assert head is not None
        return self.head_rechannel(head), h


class PostFIR(nn.Module):
    """A causal FIR of ``taps`` taps from a small MLP of the setting, starting as the identity."""

    def __init__(self, n_controls: int, taps: int, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Conv1d(n_controls, hidden, 1)
        self.taps = nn.Conv1d(hidden, taps, 1)
        nn.init.zeros_(self.taps.weight)
        nn.init.zeros_(self.taps.bias)

    def coefficients(self, c: torch.Tensor) -> torch.Tensor:
        """Taps ``(B, T, L)`` for settings ``(B, C, L)``: tap 0 is ``1 + ...``, the others ``0 + ...``."""
        taps = self.taps(torch.tanh(self.hidden(c)))
        return torch.cat([taps[:, :1] + 1.0, taps[:, 1:]], dim=1)

    def forward(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``out[t] = sum_k tap_k(c(t)) y[t - k]``: ``y`` is ``(B, L)``, ``c`` ``(B, C)`` (held) or
        ``(B, C, >= L - T + 1)`` (aligned with the end); the output has ``L - T + 1`` samples."""
        n_taps = self.taps.out_channels
        length = y.shape[-1] - n_taps + 1
        if c.ndim == 2:  # held: one FIR per batch item, a grouped convolution
            taps = self.coefficients(c.to(y.dtype)[:, :, None])[:, :, 0]
            out = functional.conv1d(y[None], taps.flip(1)[:, None, :], groups=y.shape[0])
            return out[0]
        taps = self.coefficients(c[..., -length:].to(y.dtype))
        out = taps[:, 0] * y[:, n_taps - 1:]
        for k in range(1, n_taps):
            out = out + taps[:, k] * y[:, n_taps - 1 - k:n_taps - 1 - k + length]
        return out


class ConditionedWaveNet(ParametricModel):
    """The default parametric model: a conditioned, bakeable WaveNet (see the module docstring)."""

    architecture = "wavenet"
    #: Training forward + backward: "torch" (autograd), "numba" (:mod:`knobcap.models.wavenet_kernel`,
    #: an error if the config is unsupported) or "auto" (numba where it applies). Either way the kernel
    #: runs only on the CPU, in float32, with a held setting ``c`` (B, C); without anything to
    #: differentiate (validation) it runs its forward alone.
    kernel: str = "torch"

    def __init__(self, config: Mapping[str, Any]) -> None:
        clean = check_config("wavenet", config)
        super().__init__(clean)
        n_cond = condition_size(clean)
        arrays = []
        previous = 1
        n_film = setting_size(clean) if clean.get("film", False) else 0
        for spec in clean["arrays"]:
            arrays.append(_Array(previous, n_cond, spec, n_film))
            previous = spec["channels"]
        self.arrays = nn.ModuleList(arrays)
        hidden = int(clean.get("cond_hidden", 0))
        self.cond_mlp = nn.Conv1d(clean["n_controls"], hidden, 1) if hidden else None
        fir = clean.get("post_fir")
        self.post_fir = PostFIR(clean["n_controls"], fir["taps"], fir["hidden"]) if fir else None
        self._receptive_field = receptive_field("wavenet", clean)
        self._kernel_blocker = unsupported_part(clean)  # what the numba kernel does not run, or None

    @property
    def receptive_field(self) -> int:
        return self._receptive_field

    def kernel_trains(self) -> bool:
        """Whether CPU training runs the numba kernel (:attr:`kernel` not "torch", the config supported)."""
        return self.kernel != "torch" and self._kernel_blocker is None

    def _kernel_mode(self, x: torch.Tensor, c: torch.Tensor) -> str | None:
        """How this call runs (see :attr:`kernel`): "train" (the numba forward and backward), "infer"
        (the numba forward alone: nothing to differentiate, e.g. validation) or None (torch)."""
        if self.kernel == "torch":
            return None
        part = self._kernel_blocker
        if part is not None:
            if self.kernel == "numba":
                raise ModelConfigError(f"kernel 'numba' does not run this WaveNet's {part}; use kernel "
                                       "'auto' or 'torch'.")
            return None
        if not (x.ndim == 2 and tuple(c.shape) == (x.shape[0], self.n_controls)  # else torch says why
                and x.device.type == "cpu" and x.dtype == torch.float32):
            return None
        if not torch.is_grad_enabled() or not (x.requires_grad or c.requires_grad
                                               or any(p.requires_grad for p in self.parameters())):
            return "infer"
        return None if x.requires_grad else "train"  # the kernel gives the setting's gradient, not x's

    def features(self, c: torch.Tensor) -> torch.Tensor:
        """The held setting the layers see, ``(B, S)``: ``c``, or ``[c; tanh(A c + a)]`` (``cond_hidden``)."""
        c = c.to(torch.float32)
        if self.cond_mlp is None:
            return c
        return torch.cat([c, torch.tanh(self.cond_mlp(c[:, :, None]))[:, :, 0]], dim=1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < self._receptive_field:
            raise ValueError(
                f"input of {x.shape[-1]} samples is shorter than the receptive field "
                f"({self._receptive_field}); pad it with zeros in front.")
        mode = self._kernel_mode(x, c)
        if mode is not None:
            from knobcap.models import wavenet_kernel

            y = (wavenet_kernel.run if mode == "train" else wavenet_kernel.infer)(self, x, self.features(c))
            return y if self.post_fir is None else self.post_fir(y, c)
        cond = self.condition(x, c)
        setting = c.to(x.dtype)[:, :, None] if c.ndim == 2 else cond[:, 1:1 + self.n_controls]
        if self.cond_mlp is not None:  # the features [c; tanh(A c + a)] replace c
            setting = torch.cat([setting, torch.tanh(self.cond_mlp(setting))], dim=1)
            cond = torch.cat([cond[:, :1], setting.expand(-1, -1, cond.shape[-1])], dim=1)
        if self.config.get("mixin", "linear") == "product":
            cond = torch.cat([cond, cond[:, :1] * cond[:, 1:]], dim=1)  # [x; s; x * s]
        h = x[:, None, :]
        head: torch.Tensor | None = None
        for array in self.arrays:
            head, h = array(h, cond, head, self.config["activation"], setting)
        assert head is not None
        y = float(self.config["head_scale"]) * head[:, 0, :]
        return y if self.post_fir is None else self.post_fir(y, c)
