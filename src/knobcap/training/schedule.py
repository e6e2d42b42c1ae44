"""Learning-rate schedules: the factor that multiplies ``lr`` at an optimiser step, torch-free.

The budget-tied schedules (``cosine``, ``wsd``) read the fraction ``p`` of the budget spent
(:func:`budget_progress`): steps done / all steps of the epochs, or training minutes / ``max_minutes``
when that budget is given and further spent. ``exponential`` ignores the budget. Every schedule is
multiplied by a linear warm-up over the first ``warmup_steps``.

- ``exponential``: ``lr_decay ** (step / steps_per_epoch)``.
- ``cosine``: ``f + (1 - f) (1 + cos(pi p)) / 2`` with ``f = lr_final``.
- ``wsd`` (warmup-stable-decay): 1 while ``p <= 1 - c`` with ``c = lr_cooldown``, then linear to ``f``
  at ``p = 1``: ``f + (1 - f) (1 - p) / c``. The full rate for most of the budget, the decay at its end.
"""

from __future__ import annotations

import math

from knobcap.training.config import TrainConfig


def budget_progress(config: TrainConfig, step: int, training_minutes: float = 0.0) -> float:
    """The fraction in [0, 1] of the budget spent after ``step`` optimiser steps and ``training_minutes``
    of training (counted from the first training step; start-up and data loading excluded)."""
    progress = step / (config.epochs * config.steps_per_epoch)
    if config.max_minutes:
        progress = max(progress, training_minutes / config.max_minutes)
    return min(max(progress, 0.0), 1.0)


def lr_factor(config: TrainConfig, step: int, progress: float) -> float:
    """``lr`` is multiplied by this at optimiser step ``step`` (0-based) with ``progress`` of the budget
    spent (:func:`budget_progress`); see the module docstring for the formulas."""
    ramp = min(1.0, (step + 1) / max(config.warmup_steps, 1))
    final = config.lr_final
    if config.lr_schedule == "exponential":
        return ramp * config.lr_decay ** (step / config.steps_per_epoch)
    if config.lr_schedule == "cosine":
        return ramp * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))
    left = (1.0 - progress) / config.lr_cooldown  # wsd: 1 until the cooldown starts, then 1 -> 0
    return ramp * (final + (1.0 - final) * min(1.0, max(left, 0.0)))


def continued_lr(config: TrainConfig, done_epochs: int, progress: float) -> float:
    """The ``lr`` of a run that goes on from a finished one (a refinement round's final model): where
    one run over the whole budget would be after the first one's ``done_epochs``, i.e. ``progress`` of
    the budget (:func:`lr_factor` there, past the warm-up: ``lr * lr_decay ** done_epochs`` for
    ``exponential``). The continued run then decays over its own budget from there."""
    step = max(done_epochs * config.steps_per_epoch, config.warmup_steps)
    return config.lr * lr_factor(config, step, progress)
