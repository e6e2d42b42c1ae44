"""Training losses: error-to-signal ratio with pre-emphasis, plus a multi-resolution STFT term.

ESR of one segment:  ``sum((p(y_hat) - p(y))^2) / sum(p(y)^2)`` with the first-order pre-emphasis
``p(y)[n] = y[n] - a * y[n - 1]`` (a = 0.85 as in NAM; a = 0 is plain ESR). It is computed per item
of a batch and averaged, so a quiet setting (a low level knob) weighs as much as a loud one, while
the level itself is still learned (the target is never normalised). The energy of a nearly silent
item is floored at ``floor`` times the batch's mean energy, so that silence cannot blow the loss up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def pre_emphasis(y: torch.Tensor, coefficient: float) -> torch.Tensor:
    """``y[n] - a y[n-1]`` along the last axis (one sample shorter)."""
    if coefficient == 0.0:
        return y
    return y[..., 1:] - coefficient * y[..., :-1]


def esr_per_item(y_hat: torch.Tensor, y: torch.Tensor, coefficient: float = 0.0,
                 floor: float = 1e-3) -> torch.Tensor:
    """ESR of each item of a ``(B, T)`` batch, with optional pre-emphasis."""
    e_hat, e = pre_emphasis(y_hat, coefficient), pre_emphasis(y, coefficient)
    energy = e.pow(2).sum(-1)
    energy = torch.clamp(energy, min=float(floor) * energy.mean().detach() + 1e-12)
    return (e_hat - e).pow(2).sum(-1) / energy


class MultiResolutionSTFT(nn.Module):
    """auraloss's ``MultiResolutionSTFTLoss`` with its defaults (Hann window of the FFT size, hop a
    quarter; spectral convergence + mean |log magnitude difference|, averaged over resolutions), in
    one STFT per resolution for prediction and target together and without the unused phase
    (issue 13: about half the cost; equal to auraloss within float rounding, see the tests)."""

    def __init__(self, fft_sizes: Sequence[int], eps: float = 1e-8) -> None:
        super().__init__()
        self.sizes = [int(n) for n in fft_sizes]
        self.eps = float(eps)
        for n in self.sizes:
            self.register_buffer(f"window{n}", torch.hann_window(n), persistent=False)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        both = torch.cat([y_hat, y], dim=0)
        total = y_hat.new_zeros(())
        for n in self.sizes:
            spectrum = torch.stft(both, n, n // 4, n, getattr(self, f"window{n}"), return_complex=True)
            power = spectrum.real.pow(2) + spectrum.imag.pow(2)
            magnitude = torch.sqrt(torch.clamp(power, min=self.eps))
            x_mag, y_mag = magnitude[:y_hat.shape[0]], magnitude[y_hat.shape[0]:]
            convergence = torch.linalg.vector_norm(y_mag - x_mag) / torch.linalg.vector_norm(y_mag)
            log_distance = (torch.log(x_mag) - torch.log(y_mag)).abs().mean()
            total = total + convergence + log_distance
        return total / len(self.sizes)


class TrainingLoss(nn.Module):
    """``mean ESR(pre-emphasised) + mrstft_weight * MRSTFT(y_hat, y)`` (auraloss's terms, FFT sizes
    given; see :class:`MultiResolutionSTFT`)."""

    def __init__(self, pre_emphasis: float = 0.85, mrstft_weight: float = 2e-3,
                 fft_sizes: Sequence[int] = (1024, 2048, 512), floor: float = 0.2) -> None:
        super().__init__()
        self.pre_emphasis = float(pre_emphasis)
        self.floor = float(floor)
        self.mrstft_weight = float(mrstft_weight)
        self.mrstft: nn.Module | None = None
        if self.mrstft_weight > 0:
            self.mrstft = MultiResolutionSTFT(fft_sizes)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        esr = esr_per_item(y_hat, y, self.pre_emphasis, self.floor).mean()
        parts = {"esr": esr, "loss": esr}
        if self.mrstft is not None:
            spectral = self.mrstft(y_hat, y)
            parts["mrstft"] = spectral
            parts["loss"] = esr + self.mrstft_weight * spectral
        return parts
