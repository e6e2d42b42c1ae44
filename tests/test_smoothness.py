"""The curvature penalty over the knob space (training/smoothness.py) and its training option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from knobcap.controls import Controls
from knobcap.models.modelfile import load_model_file
from knobcap.training import smoothness
from knobcap.training.config import TrainConfig, TrainingError
from knobcap.training.loop import ParametricModule, train
from test_training import make_data, tiny_config


def _linear_in_setting(x: torch.Tensor, c: torch.Tensor, length: int) -> torch.Tensor:
    """A 'model' whose output is linear in the setting: x scaled by 1 + 2 c0 - c1, shifted by c2."""
    gain = 1.0 + 2.0 * c[:, :1] - c[:, 1:2]
    return (gain * x + c[:, 2:3])[:, -length:]


def _quadratic_in_setting(x: torch.Tensor, c: torch.Tensor, length: int) -> torch.Tensor:
    return ((1.0 + c[:, :1] ** 2) * x)[:, -length:]


def _batch(rows: int = 4, samples: int = 300) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((rows, samples), generator=generator)
    c = torch.tensor([[0.2, 0.9, -1.0], [0.0, 1.0, 1.0], [1.0, 0.0, -1.0], [0.5, 0.5, 1.0]])[:rows]
    return x, c, torch.ones(rows)


def test_the_penalty_is_zero_for_an_output_linear_in_the_knobs_and_grows_as_step_to_the_fourth() -> None:
    x, c, energy = _batch()
    options = {"length": 200, "coefficient": 0.85}
    linear = smoothness.curvature_penalty(_linear_in_setting, x, c, energy, [0, 1], step=0.1,
                                          generator=torch.Generator().manual_seed(0), **options)
    assert float(linear) < 1e-10
    bent = [float(smoothness.curvature_penalty(_quadratic_in_setting, x, c, energy, [0, 1], step=h,
                                               generator=torch.Generator().manual_seed(0), **options))
            for h in (0.05, 0.1)]
    assert bent[0] > 0
    # second difference of (1 + u^2) x along d is 2 h^2 d0^2 x: the penalty is 16x at twice the step
    assert bent[1] / bent[0] == pytest.approx(16.0, rel=1e-3)


def test_probe_points_keep_the_switches_and_stay_inside_the_knob_box() -> None:
    _, c, _ = _batch()
    centre, direction = smoothness.probe_points(c.repeat(50, 1), [0, 1], 0.1,
                                                torch.Generator().manual_seed(3))
    assert torch.equal(centre[:, 2], c.repeat(50, 1)[:, 2])
    assert float(centre[:, :2].min()) >= 0.1 and float(centre[:, :2].max()) <= 0.9
    assert torch.allclose(direction[:, :2].norm(dim=1), torch.ones(200))
    assert torch.equal(direction[:, 2], torch.zeros(200))
    again = smoothness.probe_points(c.repeat(50, 1), [0, 1], 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], centre) and torch.equal(again[1], direction)


def test_output_gain_knobs_are_not_bent() -> None:
    controls = Controls.from_dict({"knob": [
        {"name": "drive", "min": 0, "max": 10},
        {"name": "level", "min": 0, "max": 10, "gain_db": [-10.0, 0.0]},
        {"name": "tone", "min": 0, "max": 10}], "switch": [{"name": "fat", "positions": ["off", "on"]}]})
    assert smoothness.knob_columns(controls) == [0, 2]
    assert smoothness.knob_columns(controls, ["tone", "level"]) == [2]
    with pytest.raises(ValueError, match="no knob 'treble'"):
        smoothness.knob_columns(controls, ["treble"])


def test_bad_smoothness_options_are_refused_in_one_line() -> None:
    for bad in ({"smoothness_weight": -1.0}, {"smoothness_step": 0.5}, {"smoothness_step": 0},
                {"smoothness_windows": 0}, {"smoothness_length": True}, {"smoothness_knobs": "tone"},
                {"smoothness_knobs": []}, {"smoothness_knobs": ["tone"] * 1000}):
        with pytest.raises(TrainingError, match="smoothness") as error:
            TrainConfig.from_dict(bad)
        assert "\n" not in str(error.value)


def test_the_penalty_reaches_training_and_a_run_is_reproducible(tmp_path: Path) -> None:
    data = make_data()
    module = ParametricModule.for_data(data, tiny_config(smoothness_weight=2.0))[0]
    assert module.knob_columns == [0, 1]  # drive and tone; the switch is not bent
    assert ParametricModule.for_data(data, tiny_config(smoothness_knobs=["tone"]))[0].knob_columns == [1]
    with pytest.raises(TrainingError, match="smoothness_knobs: no knob 'volume'"):
        ParametricModule.for_data(data, tiny_config(smoothness_knobs=["volume"]))
    x = torch.randn(2, module.model.receptive_field - 1 + 512)
    c = torch.tensor(data.takes[0].vector[None].repeat(2, 0))
    assert float(module.curvature(x, 512, c, torch.ones(2, 2)).detach()) > 0  # a fresh model bends
    config = tiny_config(seed=2, smoothness_weight=2.0, smoothness_length=256)
    a = train(data, config, tmp_path / "a", progress=False)
    b = train(data, config, tmp_path / "b", progress=False)
    plain = train(data, tiny_config(seed=2), tmp_path / "plain", progress=False)
    wa, wb = load_model_file(a.model_path).weights, load_model_file(b.model_path).weights
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    w0 = load_model_file(plain.model_path).weights
    assert not all(np.array_equal(wa[k], w0[k]) for k in wa)
