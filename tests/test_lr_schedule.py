"""The learning-rate schedules of TrainConfig: exponential per epoch, cosine over the budget."""

from __future__ import annotations

import itertools
import math

import pytest

from knobcap.models.base import create_model
from knobcap.training.loop import ParametricModule, TrainConfig, TrainingError
from playkit import tiny_wavenet_config

MODEL = tiny_wavenet_config(1, head_scale=0.1)


def schedule(config: TrainConfig):  # type: ignore[no-untyped-def]
    module = ParametricModule(create_model("wavenet", MODEL), config, 1, [0], [])
    return module, module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]


def test_exponential_decays_by_lr_decay_each_epoch() -> None:
    _, factor = schedule(TrainConfig(steps_per_epoch=10, lr_decay=0.5, warmup_steps=1,
                                         lr_schedule="exponential"))
    assert factor(0) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(0.5)
    assert factor(20) == pytest.approx(0.25)


def test_cosine_over_steps_without_a_time_budget() -> None:
    config = TrainConfig(epochs=4, steps_per_epoch=10, lr_schedule="cosine", lr_final=0.1, warmup_steps=1)
    _, factor = schedule(config)
    assert factor(0) == pytest.approx(1.0)
    assert factor(20) == pytest.approx(0.1 + 0.9 * 0.5)  # half way
    assert factor(40) == pytest.approx(0.1)
    assert factor(400) == pytest.approx(0.1)  # never below lr_final
    values = [factor(s) for s in range(41)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_cosine_follows_the_time_budget() -> None:
    config = TrainConfig(max_minutes=10.0, lr_schedule="cosine", lr_final=0.0, warmup_steps=1)
    module, factor = schedule(config)
    module.elapsed_before = 5.0 * 60.0  # minutes already spent (as after a resume)
    assert factor(1000) == pytest.approx(0.5 * (1.0 + math.cos(math.pi * 0.5)), abs=1e-3)
    module.elapsed_before = 20.0 * 60.0
    assert factor(1000) == pytest.approx(0.0, abs=1e-9)


def test_bad_schedule_is_refused() -> None:
    with pytest.raises(TrainingError, match="lr_schedule"):
        TrainConfig.from_dict({"lr_schedule": "step"})
    with pytest.raises(TrainingError, match="lr_final"):
        TrainConfig.from_dict({"lr_schedule": "cosine", "lr_final": 2.0})
