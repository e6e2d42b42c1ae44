"""The numba training kernel of the WaveNet (models/wavenet_kernel.py): the same output and the same
parameter gradients as PyTorch's autograd, a torch fallback where it does not apply, and training with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from knobcap.models import wavenet_kernel
from knobcap.models.base import ModelConfigError
from knobcap.models.wavenet import ConditionedWaveNet
from knobcap.training.config import TrainConfig, TrainingError
from knobcap.training.loop import train
from playkit import tiny_wavenet_config
from test_training import make_data, tiny_config

N_CONTROLS = 3


def model_for(kernel_size: int = 3, film: bool = True, seed: int = 0, **changes: object
              ) -> ConditionedWaveNet:
    """A tiny two-array WaveNet with every weight (FiLM included, zero at start) random."""
    config = tiny_wavenet_config(N_CONTROLS, film=film, **changes)
    for spec in config["arrays"]:
        spec["kernel_size"] = kernel_size
    torch.manual_seed(seed)
    model = ConditionedWaveNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def inputs(model: ConditionedWaveNet, batch: int = 3, scored: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = 0.5 * torch.randn(batch, model.receptive_field - 1 + scored, generator=generator)
    return x, torch.rand(batch, N_CONTROLS, generator=generator)


def output_and_grads(model: ConditionedWaveNet, kernel: str, x: torch.Tensor, c: torch.Tensor,
                     dy: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.kernel = kernel
    model.zero_grad(set_to_none=True)
    y = model(x, c)
    if dy is None:
        dy = torch.rand(y.shape, generator=torch.Generator().manual_seed(2)) - 0.3  # little cancellation
    (y * dy).sum().backward()
    grads = {n: torch.zeros_like(p) if p.grad is None else p.grad.clone()
             for n, p in model.named_parameters()}
    return y.detach(), grads


def assert_same(model: ConditionedWaveNet, x: torch.Tensor, c: torch.Tensor) -> None:
    y_torch, g_torch = output_and_grads(model, "torch", x, c)
    y_numba, g_numba = output_and_grads(model, "numba", x, c)
    scale = y_torch.abs().max()
    assert (y_numba - y_torch).abs().max() <= 1e-5 * scale
    for name, expected in g_torch.items():
        size = expected.abs().max()
        error = (g_numba[name] - expected).abs().max()
        assert error <= 1e-4 * size + 1e-9, f"{name}: {error} against {size}"


@pytest.mark.parametrize("kernel_size", [3, 2])
@pytest.mark.parametrize("film", [True, False])
def test_output_and_every_gradient_match_autograd(kernel_size: int, film: bool) -> None:
    model = model_for(kernel_size, film)
    x, c = inputs(model)
    assert_same(model, x, c)


@pytest.mark.parametrize("channels", [(6, 3), (8, 5)])
def test_rows_in_fours_and_the_rest_match_autograd(channels: tuple[int, int]) -> None:
    """Channel counts that are not multiples of four: the kernel does four rows at a time, then the rest."""
    first, second = channels
    arrays = [{"channels": first, "head_size": second, "kernel_size": 3, "dilations": [1, 2, 4]},
              {"channels": second, "head_size": 1, "kernel_size": 3, "dilations": [1, 3]}]
    model = model_for(arrays=arrays)
    x, c = inputs(model, batch=2, scored=200)
    assert_same(model, x, c)


def test_a_wrong_gradient_is_caught() -> None:
    """The comparison can fail: a gradient from a perturbed upstream gradient does not pass."""
    model = model_for()
    x, c = inputs(model)
    y, g_torch = output_and_grads(model, "torch", x, c)
    dy = torch.rand(y.shape, generator=torch.Generator().manual_seed(2)) - 0.3
    dy[0, -1] += 0.5  # one sample's gradient off
    _, g_numba = output_and_grads(model, "numba", x, c, dy)
    worst = max(float((g_numba[n] - g).abs().max() / g.abs().max().clamp_min(1e-12))
                for n, g in g_torch.items())
    assert worst > 1e-3


@pytest.mark.parametrize("film", [True, False])
def test_cond_hidden_features_and_their_mlp_train_through_the_kernel(film: bool) -> None:
    """``[c; tanh(A c + a)]`` computed in torch, the layers in the kernel: the MLP's gradients come through
    the kernel's setting gradient, and match autograd's."""
    model = model_for(film=film, cond_hidden=4)
    x, c = inputs(model)
    assert_same(model, x, c)
    assert model.cond_mlp is not None and model.kernel_trains()


def test_the_settings_gradient_matches_autograd() -> None:
    model = model_for()
    x, c = inputs(model)
    found = {}
    for kernel in ("torch", "numba"):
        model.kernel = kernel
        setting = c.clone().requires_grad_(True)
        y = model(x, setting)
        (y * (torch.rand(y.shape, generator=torch.Generator().manual_seed(2)) - 0.3)).sum().backward()
        found[kernel] = setting.grad
    assert found["torch"] is not None and found["numba"] is not None
    assert (found["numba"] - found["torch"]).abs().max() <= 1e-4 * found["torch"].abs().max()


def test_post_fir_stays_in_torch_after_the_kernel() -> None:
    model = model_for(post_fir={"taps": 4, "hidden": 3})
    with torch.no_grad():
        for p in model.post_fir.parameters():  # type: ignore[union-attr]
            p.add_(0.2 * torch.randn_like(p))
    x, c = inputs(model)
    assert_same(model, x, c)


def test_unsupported_configs_and_calls_fall_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> torch.Tensor:
        raise AssertionError("the kernel ran")

    monkeypatch.setattr(wavenet_kernel, "run", refuse)
    monkeypatch.setattr(wavenet_kernel, "infer", refuse)
    for changes in ({"activation": "hardtanh"}, {"mixin": "product"}):
        model = model_for(**changes)
        model.kernel = "auto"
        x, c = inputs(model)
        model(x, c).sum().backward()  # torch's path
        model.kernel = "numba"
        with pytest.raises(ModelConfigError, match="kernel 'numba'"):
            model(x, c)
    model = model_for()
    model.kernel = "auto"
    x, c = inputs(model)
    model(x, c[:, :, None].expand(-1, -1, x.shape[-1])).sum().backward()  # automated setting: torch
    model(x.clone().requires_grad_(True), c).sum().backward()  # a gradient of the input: torch
    with pytest.raises(AssertionError, match="the kernel ran"):
        model(x, c)
    with torch.no_grad(), pytest.raises(AssertionError, match="the kernel ran"):
        model(x, c)  # nothing to differentiate: the inference forward


@pytest.mark.parametrize("changes", [{}, {"film": False}, {"post_fir": {"taps": 4, "hidden": 3}}])
@pytest.mark.parametrize("chunk", [1 << 16, 37])
def test_the_inference_forward_matches_torch_in_chunks(changes: dict[str, object], chunk: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model = model_for(**changes)
    x, c = inputs(model, batch=2, scored=500)
    model.kernel = "torch"
    with torch.no_grad():
        expected = model(x, c)
    infer = wavenet_kernel.infer
    monkeypatch.setattr(wavenet_kernel, "infer", lambda m, x, c: infer(m, x, c, chunk=chunk))
    model.kernel = "auto"
    with torch.no_grad():
        got = model(x, c)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
    for p in model.parameters():
        p.requires_grad_(False)
    assert torch.equal(model(x, c), got)  # frozen weights: nothing to differentiate either


def test_supported_needs_matching_heads() -> None:
    config = tiny_wavenet_config(N_CONTROLS)
    assert wavenet_kernel.supported(config)
    config["arrays"][1]["channels"] = 3  # the first head (2 rows) would broadcast into 3 channels
    assert not wavenet_kernel.supported(config)


def test_the_kernel_option_is_checked() -> None:
    assert TrainConfig().kernel == "auto"
    with pytest.raises(TrainingError, match="kernel must be one of auto, torch, numba"):
        TrainConfig.from_dict({"kernel": "fast"})


def test_training_with_the_kernel_resumes_and_matches_torch(tmp_path: Path) -> None:
    data = make_data()
    run = tmp_path / "run"
    # exponential: a rate that does not depend on the budget, which grows from 1 epoch to 2 on resume
    budget_free = {"lr_schedule": "exponential"}
    first = train(data, tiny_config(kernel="numba", **budget_free), run, progress=False)
    assert json.loads((run / "config.json").read_text())["kernel"] == "numba"
    second = train(data, tiny_config(kernel="numba", epochs=2, **budget_free), run, resume=True,
                   progress=False)
    assert first.epochs == 1 and second.epochs == 2
    reference = train(data, tiny_config(kernel="torch", epochs=2, **budget_free), tmp_path / "torch",
                      progress=False)
    for take, value in reference.heldout_esr.items():  # the same batches and maths: close figures
        assert second.heldout_esr[take] == pytest.approx(value, rel=1e-2)


@pytest.mark.parametrize(("changes", "part"), [
    ({"architecture": "lstm"}, "only the 'wavenet' architecture"),
    ({"model": {"activation": "hardtanh"}}, "activation 'hardtanh'"),
    ({"model": {"mixin": "product"}}, "mixin 'product'")])
def test_kernel_numba_is_refused_at_validation_where_it_would_not_run(changes: dict[str, object],
                                                                      part: str) -> None:
    """Refused when the config is read, naming the part, not silently ignored or at the first step."""
    data = dict(changes)
    if "model" in data:
        data["model"] = {**tiny_wavenet_config(N_CONTROLS), **data["model"]}  # type: ignore[dict-item]
    TrainConfig.from_dict({**data, "kernel": "auto"})  # accepted: auto falls back to torch
    with pytest.raises(TrainingError, match=f"kernel 'numba'.*{part}.*set kernel to 'auto' or 'torch'"):
        TrainConfig.from_dict({**data, "kernel": "numba"})
    TrainConfig.from_dict({"kernel": "numba"})  # the default WaveNet runs
    TrainConfig.from_dict({"kernel": "numba", "model": tiny_wavenet_config(N_CONTROLS)})


def test_the_model_names_the_part_the_kernel_does_not_run() -> None:
    model = model_for(mixin="product")
    model.kernel = "numba"
    x, c = inputs(model)
    with pytest.raises(ModelConfigError, match="kernel 'numba' does not run this WaveNet's mixin 'product'"):
        model(x, c)


def test_kernel_numba_with_compile_is_refused() -> None:
    """A compiled model trains in torch: an explicit numba kernel beside compile is refused, not ignored."""
    assert TrainConfig.from_dict({"kernel": "auto", "compile": True}).compile
    assert TrainConfig.from_dict({"kernel": "numba", "compile": False}).kernel == "numba"
    with pytest.raises(TrainingError, match=r"kernel 'numba' and compile true exclude each other.*compile"):
        TrainConfig.from_dict({"kernel": "numba", "compile": True})


def test_two_forwards_before_their_backwards_keep_their_own_saved_planes() -> None:
    """The saved planes are reused between steps: two forwards of the same shape before any backward (two
    calls in one step, gradient accumulation) must not share them."""
    model = model_for()
    x, c = inputs(model)
    x2 = torch.flip(x, dims=[0]) * 0.7
    for accumulate in (False, True):
        grads = {}
        for kernel in ("torch", "numba"):
            model.kernel = kernel
            model.zero_grad(set_to_none=True)
            y1, y2 = model(x, c), model(x2, c)
            if accumulate:  # each loss's backward on its own, the second one's planes taken later
                (y1 ** 2).sum().backward()
                (y2 * 3).sum().backward()
            else:
                ((y1 ** 2).sum() + (y2 * 3).sum()).backward()
            grads[kernel] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        for name, expected in grads["torch"].items():
            error = (grads["numba"][name] - expected).abs().max()
            assert error <= 1e-4 * expected.abs().max() + 1e-9, f"{name}: {error}"


def test_a_second_backward_through_the_kernel_is_refused_clearly() -> None:
    """The first backward hands the saved planes on to the next forward, so ``retain_graph=True`` cannot
    give a right second backward: it is refused with a clear error, never a wrong gradient."""
    model = model_for()
    model.kernel = "numba"
    x, c = inputs(model)
    loss = model(x, c).sum()
    loss.backward(retain_graph=True)
    model(x * 0.5, c).sum().backward()  # the next step may reuse the planes
    with pytest.raises(RuntimeError, match=r"second backward.*retain_graph.*kernel 'torch'"):
        loss.backward()
