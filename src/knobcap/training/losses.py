"""Training losses: error-to-signal ratio with pre-emphasis, plus a multi-resolution STFT term.

ESR of one segment:  ``sum((p(y_hat) - p(y))^2) / sum(p(y)^2)`` with the first-order pre-emphasis
``p(y)[n] = y[n] - a * y[n - 1]`` (a = 0.85 as in NAM; a = 0 is plain ESR). It is computed per item
of a batch and averaged, so a quiet setting (a low level knob) weighs as much as a loud one, while
the level itself is still learned (the target is never normalised). The energy of a nearly silent
item is floored, so that silence cannot blow the loss up: at ``floor`` times its own take's mean energy
(:func:`take_energy`; ``esr_floor_scope`` "take", the default), or at ``floor`` times the batch's mean
("batch", the former rule). The batch's mean is set by its loud windows, so that rule also floored
every window of a quiet or dark take, whole: their ESR weighed up to 200x less (GxTubeScreamer at level
-20 dB and tone 100; the TS808's tone-0 takes 3-6x less), and those settings were the worst fitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


def pre_emphasis(y: torch.Tensor, coefficient: float) -> torch.Tensor:
    """``y[n] - a y[n-1]`` along the last axis (one sample shorter)."""
    if coefficient == 0.0:
        return y
    return y[..., 1:] - coefficient * y[..., :-1]


def floored(energy: torch.Tensor, floor: float, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Each item's ``energy`` (B,), at least ``floor`` times its ``reference`` (B,) when given, else
    ``floor`` times the batch's mean (and above 0)."""
    if reference is None:
        return torch.clamp(energy, min=float(floor) * energy.mean().detach() + 1e-12)
    return torch.maximum(energy, float(floor) * reference.to(energy.dtype) + 1e-12)


def take_energy(y: np.ndarray, coefficient: float = 0.0) -> float:
    """A take's mean energy per sample after pre-emphasis, ``mean(p(y)[n]^2)``: what its windows' energy
    is floored against (times the window's length)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 2:
        return 0.0
    return float(np.mean((y[1:] - coefficient * y[:-1]) ** 2))


def take_energies(y: np.ndarray, coefficient: float) -> tuple[float, float]:
    """A take's :func:`take_energy` after the pre-emphasis ``coefficient`` and plain: the references of
    :class:`TrainingLoss`'s two ESR terms."""
    return take_energy(y, coefficient), take_energy(y, 0.0)


def dc_per_item(y_hat: torch.Tensor, y: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """``|mean(y - y_hat)|^2 / mean(y^2)`` of each item of a ``(B, T)`` batch (the energy floored as in
    :func:`esr_per_item`)."""
    return (y - y_hat).mean(-1).pow(2) / floored(y.pow(2).mean(-1), floor)


def esr_per_item(y_hat: torch.Tensor, y: torch.Tensor, coefficient: float = 0.0,
                 floor: float = 1e-3, reference: torch.Tensor | None = None) -> torch.Tensor:
    """ESR of each item of a ``(B, T)`` batch, with optional pre-emphasis; ``reference`` (B,): each
    item's take's :func:`take_energy` (per sample), the energy floor's reference instead of the batch."""
    e_hat, e = pre_emphasis(y_hat, coefficient), pre_emphasis(y, coefficient)
    scale = None if reference is None else reference * e.shape[-1]
    return (e_hat - e).pow(2).sum(-1) / floored(e.pow(2).sum(-1), floor, scale)


def _magnitude(spectrum: torch.Tensor, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``max(|S|, floor)`` of a complex spectrum and where ``|S| > floor`` (re^2 + im^2 in place of
    complex ``abs``, which is several times slower on the CPU)."""
    parts = torch.view_as_real(spectrum)
    power = parts[..., 0].square() + parts[..., 1].square()
    return power.clamp(min=floor * floor).sqrt_(), power > floor * floor


class _SpectralDistance(torch.autograd.Function):
    """``||M_y - M_x|| / ||M_y|| + mean |log M_x - log M_y|`` of the prediction's complex STFT ``S``
    (``M_x = max(|S|, floor)``) against the target's magnitudes, with the gradient in closed form:

        dL/dM_x = (M_x - M_y) / (||M_y - M_x|| ||M_y||) + sign(log M_x - log M_y) / (N M_x)
        dL/dS = dL/dM_x * S / M_x  where |S| > floor, else 0

    (one node instead of a dozen elementwise autograd nodes: issue 13)."""

    @staticmethod
    def forward(ctx: Any, spectrum: torch.Tensor, y_mag: torch.Tensor, y_log: torch.Tensor,
                y_norm: torch.Tensor, floor: float) -> torch.Tensor:
        x_mag, live = _magnitude(spectrum, floor)
        diff = x_mag - y_mag
        distance = torch.linalg.vector_norm(diff)
        log_diff = torch.log(x_mag).sub_(y_log)
        ctx.save_for_backward(spectrum, x_mag, live, diff, distance, log_diff, y_norm)
        return distance / y_norm + log_diff.abs().mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        spectrum, x_mag, live, diff, distance, log_diff, y_norm = ctx.saved_tensors
        d_mag = diff.div_(distance * y_norm).add_(log_diff.sign_().div_(x_mag), alpha=1.0 / x_mag.numel())
        d_mag = d_mag.div_(x_mag).mul_(live).mul_(grad)
        return spectrum * d_mag, None, None, None, None


class MultiResolutionSTFT(nn.Module):
    """auraloss's ``MultiResolutionSTFTLoss`` with its defaults (Hann window of the FFT size, hop a
    quarter; spectral convergence + mean |log magnitude difference|, averaged over resolutions), without
    the unused phase, with the target's spectra outside autograd and the distance's gradient in closed
    form (issue 13: about a fifth of the autograd version's cost; equal to auraloss within float
    rounding, see the tests)."""

    def __init__(self, fft_sizes: Sequence[int], eps: float = 1e-8) -> None:
        super().__init__()
        self.sizes = [int(n) for n in fft_sizes]
        self.floor = float(eps) ** 0.5
        for n in self.sizes:
            self.register_buffer(f"window{n}", torch.hann_window(n), persistent=False)

    def _stft(self, y: torch.Tensor, n: int) -> torch.Tensor:
        return torch.stft(y, n, n // 4, n, getattr(self, f"window{n}"), return_complex=True)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = y_hat.new_zeros(())
        for n in self.sizes:
            with torch.no_grad():
                y_mag, _ = _magnitude(self._stft(y, n), self.floor)
                y_log, y_norm = torch.log(y_mag), torch.linalg.vector_norm(y_mag)
            total = total + _SpectralDistance.apply(self._stft(y_hat, n), y_mag, y_log, y_norm, self.floor)
        return total / len(self.sizes)


class TrainingLoss(nn.Module):
    """``mean ESR(pre-emphasised) + plain_weight * mean ESR(plain) + mrstft_weight * MRSTFT(y_hat, y)
    + dc_weight * mean DC`` (auraloss's terms, FFT sizes given; see :class:`MultiResolutionSTFT` and
    :func:`dc_per_item`).

    The pre-emphasis weighs an error at frequency ``f`` by ``|1 - a e^{-2 pi i f / fs}|^2``: about
    ``(1 - a)^2 = 0.02`` at low frequencies against ``(1 + a)^2 = 3.4`` near Nyquist (a = 0.85). A dark
    setting's output is mostly low frequencies, so its plain ESR (what the evaluation reports) is an
    error that the pre-emphasised term hardly sees; the plain term (``plain_weight``) puts it back. Off by
    default: measured, it loosened the fit and did not lower the dense-grid error on either device
    (``TrainConfig.plain_esr_weight``)."""

    def __init__(self, pre_emphasis: float = 0.85, mrstft_weight: float = 2e-3,
                 fft_sizes: Sequence[int] = (1024, 2048, 512), floor: float = 0.2,
                 dc_weight: float = 0.0, floor_scope: str = "take", plain_weight: float = 0.0) -> None:
        super().__init__()
        self.pre_emphasis = float(pre_emphasis)
        self.plain_weight = float(plain_weight)
        self.floor = float(floor)
        self.floor_scope = floor_scope  # "take": floored against ``reference`` when given; "batch": never
        self.dc_weight = float(dc_weight)
        self.mrstft_weight = float(mrstft_weight)
        self.mrstft: nn.Module | None = None
        if self.mrstft_weight > 0:
            self.mrstft = MultiResolutionSTFT(fft_sizes)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor,
                reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss's terms; ``reference``: each item's take's energies (:func:`take_energies`), which
        the ESRs' floors are taken against with ``floor_scope`` "take": ``(B, 2)``, after the
        pre-emphasis and plain, or ``(B,)``, after the pre-emphasis only (the plain term's floor then the
        batch's mean). None, or scope "batch": the batch's mean for both."""
        if self.floor_scope != "take" or reference is None:
            emphasised = plain = None
        elif reference.ndim == 2:
            emphasised, plain = reference[:, 0], reference[:, 1]
        else:
            emphasised, plain = reference, None
        esr = esr_per_item(y_hat, y, self.pre_emphasis, self.floor, emphasised).mean()
        parts = {"esr": esr, "loss": esr}
        if self.plain_weight > 0:
            plain_esr = esr_per_item(y_hat, y, 0.0, self.floor, plain).mean()
            parts["plain_esr"] = plain_esr
            parts["loss"] = esr + self.plain_weight * plain_esr
        if self.mrstft is not None:
            spectral = self.mrstft(y_hat, y)
            parts["mrstft"] = spectral
            parts["loss"] = parts["loss"] + self.mrstft_weight * spectral
        if self.dc_weight > 0:
            dc = dc_per_item(y_hat, y, self.floor).mean()
            parts["dc"] = dc
            parts["loss"] = parts["loss"] + self.dc_weight * dc
        return parts
