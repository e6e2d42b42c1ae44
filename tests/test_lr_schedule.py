"""The learning-rate schedules of TrainConfig: exponential per epoch, cosine over the budget."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from knobcap.models.base import create_model
from knobcap.training.data import Take, TrainingData
from knobcap.training.loop import ParametricModule, TrainConfig, TrainingError, train
from knobcap.training.run import Run
from playkit import tiny_controls, tiny_wavenet_config

MODEL = tiny_wavenet_config(1, head_scale=0.1)


def tiny_data(n: int = 6000) -> TrainingData:
    controls = tiny_controls()
    x = (0.5 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    plan = [({"drive": 0.0, "tone": 5.0, "diodes": "silicon"}, "train"),
            ({"drive": 10.0, "tone": 5.0, "diodes": "led"}, "anchor"),
            ({"drive": 5.0, "tone": 5.0, "diodes": "silicon"}, "holdout")]
    takes = [Take(f"take{i + 1:02d}", s, controls.to_vector(s), role,
                  (np.tanh((1.0 + float(s["drive"])) * x) / (1.0 + float(s["drive"]))).astype(np.float32))
             for i, (s, role) in enumerate(plan)]
    return TrainingData(controls, 48000, x, takes, (100, n - 1000), (n - 1000, n), source="memory")


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
    module.train_seconds_before = 5.0 * 60.0  # training minutes already spent (as after a resume)
    assert factor(1000) == pytest.approx(0.5 * (1.0 + math.cos(math.pi * 0.5)), abs=1e-3)
    module.train_seconds_before = 20.0 * 60.0
    assert factor(1000) == pytest.approx(0.0, abs=1e-9)


def test_a_continued_run_starts_where_one_schedule_over_the_whole_budget_would_be() -> None:
    from knobcap.training.schedule import continued_lr

    exponential = TrainConfig(lr=1e-2, lr_decay=0.5, lr_schedule="exponential")
    assert continued_lr(exponential, 3, 0.4) == pytest.approx(1e-2 * 0.5 ** 3)
    cosine = TrainConfig(lr=1e-2, lr_schedule="cosine", lr_final=0.1)
    assert continued_lr(cosine, 3, 0.5) == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5))
    assert continued_lr(cosine, 3, 1.0) == pytest.approx(1e-3)
    wsd = TrainConfig(lr=1e-2, lr_schedule="wsd", lr_cooldown=0.25)
    assert continued_lr(wsd, 3, 0.4) == pytest.approx(1e-2)  # still in the stable part


def test_a_run_saved_before_the_schedule_option_resumes_with_its_exponential_decay() -> None:
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k != "lr_schedule"}
    assert TrainConfig.from_saved(saved).lr_schedule == "exponential"
    assert TrainConfig.from_saved({**saved, "lr_schedule": "cosine"}).lr_schedule == "cosine"
    assert TrainConfig.from_dict(saved).lr_schedule == "cosine"  # a new run: today's default
    with pytest.raises(TrainingError, match="not a JSON object"):
        TrainConfig.from_saved(["epochs"])  # type: ignore[arg-type]


def test_a_run_saved_before_the_take_floor_resumes_with_the_batch_floor() -> None:
    saved = {k: v for k, v in TrainConfig().to_dict().items() if k != "esr_floor_scope"}
    assert TrainConfig.from_saved(saved).esr_floor_scope == "batch"
    assert TrainConfig.from_dict(saved).esr_floor_scope == "take"
    with pytest.raises(TrainingError, match="esr_floor_scope"):
        TrainConfig.from_dict({"esr_floor_scope": "window"})


def test_bad_schedule_is_refused() -> None:
    with pytest.raises(TrainingError, match="lr_schedule"):
        TrainConfig.from_dict({"lr_schedule": "step"})
    with pytest.raises(TrainingError, match="lr_final"):
        TrainConfig.from_dict({"lr_schedule": "cosine", "lr_final": 2.0})


# ---- warmup-stable-decay and the budget's clock (issue 13)
def wsd(**changes: object) -> TrainConfig:
    return TrainConfig(**{"lr_schedule": "wsd", "lr_final": 0.1, "lr_cooldown": 0.25, "warmup_steps": 1,
                          **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(("epochs", "steps"), [(4, 10), (2, 40), (10, 4)])
def test_wsd_holds_the_rate_then_decays_over_the_last_fraction_of_the_steps(epochs: int, steps: int) -> None:
    """Epochs budget (--epochs) and steps budget (--steps a epoch): p = steps done / epochs x steps."""
    total = epochs * steps
    _, factor = schedule(wsd(epochs=epochs, steps_per_epoch=steps))
    assert factor(0) == pytest.approx(1.0)
    assert factor(int(0.75 * total)) == pytest.approx(1.0)  # the cooldown starts at p = 0.75
    assert factor(int(0.875 * total)) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through it
    assert factor(total) == pytest.approx(0.1)
    assert factor(10 * total) == pytest.approx(0.1)
    values = [factor(s) for s in range(total + 1)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert sum(v == pytest.approx(1.0) for v in values) == int(0.75 * total) + 1


def test_wsd_warms_up_and_lr_cooldown_sets_where_the_decay_starts() -> None:
    _, factor = schedule(wsd(epochs=1, steps_per_epoch=100, warmup_steps=10, lr_cooldown=0.5))
    assert factor(0) == pytest.approx(0.1) and factor(4) == pytest.approx(0.5)
    assert factor(50) == pytest.approx(1.0) and factor(75) == pytest.approx(0.1 + 0.9 * 0.5)


def test_the_minutes_budget_counts_training_time_from_the_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up (imports, data loading, the module built) does not spend the --minutes budget."""
    clock = [1000.0]
    monkeypatch.setattr("knobcap.training.loop.time.monotonic", lambda: clock[0])
    module, factor = schedule(wsd(max_minutes=8.0))  # 100 epochs x 100 steps: the minutes end first
    module.on_fit_start()
    clock[0] += 300.0  # five minutes of start-up before the first training step
    assert module.training_minutes() == 0.0 and factor(1) == pytest.approx(1.0)
    module.on_train_start()
    clock[0] += 0.5 * 480.0
    assert module.training_minutes() == pytest.approx(4.0) and factor(2) == pytest.approx(1.0)
    clock[0] += 0.375 * 480.0  # p = 0.875: half way through the cooldown
    assert factor(3) == pytest.approx(0.1 + 0.9 * 0.5)
    clock[0] += 480.0
    assert factor(4) == pytest.approx(0.1)


def test_a_resumed_run_keeps_the_training_minutes_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("knobcap.training.loop.time.monotonic", lambda: clock[0])
    first, _ = schedule(wsd(max_minutes=8.0))
    clock[0] = 60.0  # start-up
    first.on_train_start()
    clock[0] += 6.5 * 60.0
    saved: dict = {}
    first.on_save_checkpoint(saved)
    clock[0] += 1000.0  # the second run starts later, with its own start-up
    second, factor = schedule(wsd(max_minutes=8.0))
    second.on_load_checkpoint(saved)
    assert second.training_minutes() == pytest.approx(6.5)  # p = 0.8125: a quarter into the cooldown
    assert factor(5) == pytest.approx(0.1 + 0.9 * 0.75)
    second.on_train_start()
    clock[0] += 60.0
    assert second.training_minutes() == pytest.approx(7.5)
    old = {"knobcap": {"elapsed": 120.0}}  # a checkpoint from before training_seconds: its elapsed time
    second.on_load_checkpoint(old)
    assert second.train_seconds_before == 120.0


def test_resume_continues_the_schedule_where_it_was(tmp_path: Path) -> None:
    """Three epochs at once, or one then --resume to three: the resumed run carries on from the steps
    done (a scheduler that restarted would give the full rate again after 4 and 8 steps)."""
    data = tiny_data()
    options = {"model": tiny_wavenet_config(data.controls.vector_size), "steps_per_epoch": 4,
               "batch_size": 2, "segment_length": 512, "mrstft_weight": 0.0, "val_max_seconds": None,
               "threads": 1, "warmup_steps": 1, "lr_schedule": "wsd", "lr_cooldown": 0.5,
               "lr_final": 0.1}
    train(data, TrainConfig.from_dict({**options, "epochs": 3}), tmp_path / "once", progress=False)
    train(data, TrainConfig.from_dict({**options, "epochs": 1}), tmp_path / "split", progress=False)
    train(data, TrainConfig.from_dict({**options, "epochs": 3}), tmp_path / "split", resume=True,
          progress=False)
    lrs = {name: [float(r["lr"]) for r in Run(tmp_path / name).read_log()] for name in ("once", "split")}
    lr = 6e-3
    # 12 steps; the cooldown is steps 6..12: after 4 steps the full rate, after 8 a third of the way
    expected = [lr, lr * (0.1 + 0.9 * (1 - 8 / 12) / 0.5), lr * 0.1]
    assert lrs["once"] == pytest.approx(expected)
    assert lrs["split"][1:] == pytest.approx(expected[1:])
    assert lrs["split"][0] == pytest.approx(lr * 0.1)  # its first run's budget was one epoch: all spent
