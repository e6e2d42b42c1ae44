"""A curvature penalty over the knob space: between recorded takes, prefer outputs that change linearly
in the knobs' warped coordinates ``u``.

A design records a few settings per switch combination, and the data says nothing about what the model
does between them. Screening warps each knob so that equal steps of ``u`` are equal steps of sound; along
a tone (a filter after the clipping) the device's output is then close to a linear blend of its
neighbours: on the virtual TS808 the blend ``(1 - w) y(tone 0) + w y(tone 4.9)``, ``w`` linear in ``u``,
is within ESR 0.005 of ``y(tone 2.5)``; along a drive (a gain into a clipper) it is not (0.3-2).
The penalty is the second difference of the model's output along a random knob direction ``d`` (unit
length, switch and output-gain entries zero) at a random point ``c`` of the knob box, with the window's
own switch positions:

    P = sum_t (f(c + h d) - 2 f(c) + f(c - h d))^2 / (L E)

(``f`` pre-emphasised as the loss is, ``L`` samples scored, ``E`` the window's take's energy per sample
after the pre-emphasis), so ``P ~ h^4 |d^T f'' d|^2`` relative to the take's energy: a discrete
smoothing-spline prior. It costs three forward and backward passes of ``windows`` short windows a step.
Measured worse at weight 1, step 0.1 (TS808, 24 takes, 3 seeds: dense-grid median / p90 / max 0.0082 /
0.0185 / 0.0274 -> 0.0106 / 0.0372 / 0.0596; docs/results.md, issue 11 session 15), so off by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from knobcap.controls import Controls
from knobcap.training.losses import pre_emphasis

Predict = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def knob_columns(controls: Controls, names: Sequence[str] | None = None) -> list[int]:
    """The setting vector's entries of the knobs the penalty bends: ``names`` (None: every knob), less
    output gains, which the model never sees (knobs come first in :meth:`Controls.to_vector`). An
    unknown name raises ``ValueError``."""
    knobs = [k.name for k in controls.knobs]
    unknown = [n for n in names or () if n not in knobs]
    if unknown:
        raise ValueError(f"no knob {', '.join(map(repr, unknown))} in these controls (knobs: "
                         f"{', '.join(knobs)}).")
    return [i for i, knob in enumerate(controls.knobs)
            if knob.gain_db is None and (names is None or knob.name in names)]


def probe_points(c: torch.Tensor, columns: Sequence[int], step: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """For settings ``c`` (B, C): the centres (the switches of ``c``, each knob uniform in
    ``[step, 1 - step]``) and the unit knob directions ``d`` (B, C) of :func:`curvature_penalty`."""
    index = torch.tensor(list(columns), dtype=torch.long, device=c.device)
    rows = c.shape[0]
    centre = c.clone()
    box = torch.rand((rows, len(columns)), generator=generator, dtype=c.dtype)
    centre[:, index] = (step + (1.0 - 2.0 * step) * box).to(c.device)
    direction = torch.zeros_like(c)
    raw = torch.randn((rows, len(columns)), generator=generator, dtype=c.dtype)
    direction[:, index] = (raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)).to(c.device)
    return centre, direction


def curvature_penalty(predict: Predict, x: torch.Tensor, c: torch.Tensor, energy: torch.Tensor,
                      columns: Sequence[int], *, step: float, length: int, coefficient: float,
                      generator: torch.Generator) -> torch.Tensor:
    """Mean ``P`` (module docstring) over the windows ``x`` (B, context + ``length``) at the knob points
    drawn around the settings ``c`` (B, C); ``energy`` (B,): each window's take's energy per sample after the
    pre-emphasis ``coefficient``; ``predict(x, c, length)`` gives the last ``length`` outputs."""
    rows = x.shape[0]
    centre, direction = probe_points(c, columns, step, generator)
    settings = torch.cat([centre - step * direction, centre, centre + step * direction])
    outputs = predict(x.repeat(3, 1), settings, length)
    low, middle, high = outputs[:rows], outputs[rows:2 * rows], outputs[2 * rows:]
    bend = pre_emphasis(low - 2.0 * middle + high, coefficient)
    scale = energy.to(bend.dtype).clamp_min(1e-12) * bend.shape[-1]
    return (bend.pow(2).sum(-1) / scale).mean()
