"""Training throughput (issue 13): the tensor window sampler, compiled training, accelerator auto."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from knobcap.training.config import TrainConfig, TrainingError
from knobcap.training.data import Take, TrainingData, window_input
from knobcap.training.loop import ParametricModule, train
from knobcap.training.sampler import LoaderSampler, TensorSampler
from playkit import tiny_controls, tiny_wavenet_config

CONTROLS = tiny_controls()


def clipped_data() -> TrainingData:
    """Takes with clips (silent context before each clip's start, a skipped start) and one take with
    its own, longer input."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(6000).astype(np.float32)
    own = rng.standard_normal(9000).astype(np.float32)
    settings = [{"drive": float(d), "tone": 5.0, "diodes": "silicon"} for d in (0, 4, 8)]
    takes = [Take(f"take{i}", s, CONTROLS.to_vector(s), "train", np.tanh((1 + i) * x)) for i, s in
             enumerate(settings[:2])]
    takes.append(Take("own", settings[2], CONTROLS.to_vector(settings[2]), "anchor", np.tanh(3 * own),
                      x=own, spans=((0, 8000), (8000, 9000)), clips=((0, 4500), (4500, 9000))))
    return TrainingData(CONTROLS, 48000, x, takes, (0, 5000), (5000, 6000), clips=((0, 2500), (2500, 6000)),
                        skip=50)


def test_tensor_sampler_windows_are_the_former_windows_of_the_starts_it_draws() -> None:
    data = clipped_data()
    context, length = 300, 256
    sampler = TensorSampler(data, context, length, batch_size=64, seed=3)
    takes = data.train_takes
    seen_takes, seen_regions = set(), set()
    for step in range(4):
        x, y, c, _ = sampler.batch(epoch=2, step=step)
        take, start, rest = sampler.draw(2, step)
        assert x.shape == (64, context + length) and y.shape == (64, length) and c.shape == (64, 3)
        for i in range(64):
            t = takes[int(take[i])]
            s = int(start[i])
            spans = data.regions(t, "train", context, length)
            region = [r for r in spans if r[0] <= s <= r[1]]
            assert len(region) == 1 and region[0][2] == int(rest[i])  # a legal start, its clip's rest
            seen_takes.add(t.name)
            seen_regions.add((t.name, spans.index(region[0])))
            expected = window_input(data.input_of(t), s, s + length, context, region[0][2])
            assert np.array_equal(x[i].numpy(), expected)
            assert np.array_equal(y[i].numpy(), t.audio[s:s + length])
            assert np.array_equal(c[i].numpy(), t.vector.astype(np.float32))
    assert seen_takes == {"take0", "take1", "own"} and len(seen_regions) == 6
    again = TensorSampler(data, context, length, batch_size=64, seed=3).batch(epoch=2, step=1)
    assert torch.equal(again[0], sampler.batch(2, 1)[0])  # resumable: the same batch for (seed, epoch, step)
    assert not torch.equal(sampler.batch(3, 1)[0], sampler.batch(2, 1)[0])


def test_loader_sampler_is_the_former_window_dataset_path() -> None:
    data = clipped_data()
    batch = LoaderSampler(data, 300, 256, batch_size=4, seed=0, items=40).batch(1, 2)
    assert batch[0].shape == (4, 556) and batch[1].shape == (4, 256)


def test_both_samplers_give_each_window_its_own_takes_energy() -> None:
    from knobcap.training.losses import take_energy

    data = clipped_data()
    for k, take in enumerate(data.train_takes):  # takes at very different levels
        take.audio = take.audio * 10.0 ** (-k)
    energies = [(take_energy(t.audio, 0.85), take_energy(t.audio)) for t in data.train_takes]
    tensor = TensorSampler(data, 300, 256, batch_size=16, seed=0, pre_emphasis=0.85)
    take, _, _ = tensor.draw(0, 1)
    np.testing.assert_allclose(tensor.batch(0, 1)[3].numpy(), [energies[int(t)] for t in take], rtol=1e-5)
    loader = LoaderSampler(data, 300, 256, batch_size=4, seed=0, items=40, pre_emphasis=0.85)
    batch = loader.batch(1, 2)
    expected = [energies[loader.windows.take_of(8 + i)] for i in range(4)]
    np.testing.assert_allclose(batch[3].numpy(), expected, rtol=1e-5)
    assert len(set(expected)) > 1 or len(data.train_takes) == 1


def tiny(**changes: object) -> TrainConfig:
    options: dict = {"model": dict(tiny_wavenet_config(CONTROLS.vector_size)), "epochs": 1,
                     "steps_per_epoch": 2, "batch_size": 2, "segment_length": 512, "mrstft_weight": 1e-3,
                     "mrstft_fft_sizes": [256, 128], "val_max_seconds": None, "threads": 1, "warmup_steps": 1}
    options.update(changes)
    return TrainConfig.from_dict(options)


@pytest.mark.skipif(not os.environ.get("KNOBCAP_SLOW_TESTS"),
                    reason="torch.compile takes about a minute on the 2-core CPU; set KNOBCAP_SLOW_TESTS=1")
def test_compiled_and_eager_training_give_the_same_loss() -> None:
    data = clipped_data()
    losses = []
    for compiled in (False, True):
        torch.manual_seed(0)
        module, context = ParametricModule.for_data(data, tiny(compile=compiled))
        x, y, c, _ = TensorSampler(data, context, 512, 2, 0).batch(0, 0)
        optimizer = torch.optim.Adam(module.model.parameters(), lr=1e-3)
        run = []
        for _ in range(3):
            loss = module.loss(module.predict_batch(x, c, 512), y)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            run.append(float(loss.detach()))
        losses.append(run)
    assert np.allclose(losses[0], losses[1], rtol=1e-4, atol=1e-6)


def test_auto_accelerator_trains_on_the_cpu_without_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    said: list[str] = []
    config = tiny(accelerator="auto")
    result = train(clipped_data(), config, tmp_path / "run", progress=False, say=said.append)
    assert result.epochs == 1
    assert any(line.startswith("training on cpu") for line in said), said


def test_spectral_term_equals_auraloss_and_its_gradient() -> None:
    auraloss = pytest.importorskip("auraloss")
    from knobcap.training.losses import MultiResolutionSTFT

    torch.manual_seed(0)
    y = torch.randn(3, 4096)
    y_hat = (0.7 * y + 0.1 * torch.randn(3, 4096)).requires_grad_(True)
    sizes = [1024, 2048, 512]
    reference = auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=sizes, hop_sizes=[n // 4 for n in sizes],
                                                      win_lengths=sizes)
    expected = reference(y_hat[:, None], y[:, None])
    (grad_expected,) = torch.autograd.grad(expected, y_hat)
    got = MultiResolutionSTFT(sizes)(y_hat, y)
    (grad_got,) = torch.autograd.grad(got, y_hat)
    assert torch.allclose(got, expected, rtol=1e-5)
    assert torch.allclose(grad_got, grad_expected, rtol=1e-3, atol=1e-9)


def test_cli_default_accelerator_is_auto_and_lr_schedule_is_an_option(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU path, on any machine

    from typer.testing import CliRunner

    from knobcap.cli import app
    from playkit import make_session

    plan = [("take01", {"drive": 0.0, "tone": 5.0, "diodes": "silicon"}, "train"),
            ("take02", {"drive": 10.0, "tone": 5.0, "diodes": "led"}, "anchor")]
    session = make_session(tmp_path / "s", CONTROLS, plan,
                           device=lambda x, s: np.tanh((1 + s["drive"]) * x).astype(np.float32))
    model = tmp_path / "tiny.json"
    model.write_text(json.dumps(tiny_wavenet_config(CONTROLS.vector_size)), encoding="utf-8")
    common = [str(session), "--steps", "2", "--batch-size", "2", "--threads", "1", "--no-progress",
              "--epochs", "1", "--model-config", str(model)]
    runner = CliRunner()
    bad = runner.invoke(app, ["train", *common, "--run", "bad", "--lr-schedule", "linear"])
    assert bad.exit_code == 1 and "lr_schedule" in bad.output and "cosine" in bad.output
    heavy = runner.invoke(app, ["train", *common, "--run", "bad2", "--take-weighting", "2"])
    assert heavy.exit_code == 1 and "take_weighting must be a fraction" in heavy.output
    result = runner.invoke(app, ["train", *common, "--run", "r1", "--lr-schedule", "wsd",
                                 "--take-weighting", "0.5"])
    assert result.exit_code == 0, result.output
    assert "training on cpu (1 thread)" in result.output
    saved = json.loads((session / "runs" / "r1" / "config.json").read_text(encoding="utf-8"))
    assert saved["lr_schedule"] == "wsd" and saved["accelerator"] == "auto"
    assert saved["take_weighting"] == 0.5
    assert TrainConfig().lr_schedule == "cosine" and TrainConfig().accelerator == "auto"


def test_spectral_gradient_in_closed_form_matches_autograd_with_silent_bins() -> None:
    from knobcap.training.losses import MultiResolutionSTFT

    def by_autograd(y_hat: torch.Tensor, y: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        total = y_hat.new_zeros(())
        for n in sizes:
            window = torch.hann_window(n).to(y_hat.dtype)  # as the module's buffer, cast by .double()
            mags = [torch.sqrt(torch.clamp(torch.stft(v, n, n // 4, n, window, return_complex=True).abs()
                                           .pow(2), min=1e-8)) for v in (y_hat, y)]
            total = total + torch.linalg.vector_norm(mags[1] - mags[0]) / torch.linalg.vector_norm(mags[1])
            total = total + (torch.log(mags[0]) - torch.log(mags[1])).abs().mean()
        return total / len(sizes)

    torch.manual_seed(1)
    y = torch.randn(2, 2048, dtype=torch.float64)
    y_hat = 0.5 * y + 0.2 * torch.randn(2, 2048, dtype=torch.float64)
    y_hat[:, :700] = 0.0  # whole frames below the floor: no gradient there, as with the clamp
    y_hat.requires_grad_(True)
    sizes = [256, 512]
    expected = by_autograd(y_hat, y, sizes)
    (grad_expected,) = torch.autograd.grad(expected, y_hat)
    loss = MultiResolutionSTFT(sizes).double()
    got = loss(y_hat, y)
    (grad_got,) = torch.autograd.grad(got, y_hat)
    assert torch.allclose(got, expected, rtol=1e-10), (got - expected).item()
    assert torch.allclose(grad_got, grad_expected, rtol=1e-7, atol=1e-12)
    assert grad_got.abs().max() > 0


def test_kernel_gets_the_run_threads_and_torch_one_while_the_fit_runs() -> None:
    from knobcap.models import wavenet_kernel
    from knobcap.models.base import create_model
    from knobcap.training.cpu_threads import ThreadPlan, plan_threads, training_threads

    wavenet = create_model("wavenet", tiny_wavenet_config(CONTROLS.vector_size))
    wavenet.kernel = "auto"
    assert plan_threads(tiny(threads=2), wavenet) == ThreadPlan(torch=1, kernel=2)
    assert plan_threads(tiny(threads=2), wavenet).describe() == (
        "cpu (2 threads for the WaveNet kernel, 1 for torch)")
    wavenet.kernel = "torch"
    assert plan_threads(tiny(threads=2), wavenet) == ThreadPlan(torch=2, kernel=0)
    lstm = create_model("lstm", {"n_controls": CONTROLS.vector_size, "hidden_size": 4, "num_layers": 1})
    assert plan_threads(tiny(threads=3), lstm).describe() == "cpu (3 threads)"

    before = torch.get_num_threads()
    seen: list[int] = []
    with training_threads(ThreadPlan(torch=1, kernel=2)):
        seen += [torch.get_num_threads(), wavenet_kernel._THREADS[0] or 0]
        assert torch.tensor([1e-39]).mul(1.0).item() == 0.0  # denormals flushed while it runs
    assert seen == [1, 2]
    assert torch.get_num_threads() == before and wavenet_kernel._THREADS[0] is None
    assert torch.tensor([1e-39]).mul(1.0).item() != 0.0


def test_dc_term_charges_an_offset_the_pre_emphasised_esr_hardly_sees() -> None:
    from knobcap.training.losses import TrainingLoss

    torch.manual_seed(0)
    y = torch.randn(2, 1024)
    offset = y + 0.3  # a DC offset: 0.09 / 1 of the energy
    plain = TrainingLoss(mrstft_weight=0.0, floor=0.0)
    with_dc = TrainingLoss(mrstft_weight=0.0, floor=0.0, dc_weight=2.0)
    assert float(plain(offset, y)["loss"]) < 2e-3  # 0.15^2 x 0.09 / (1 + 0.85^2): almost free
    parts = with_dc(offset, y)
    assert float(parts["dc"]) == pytest.approx(0.09 / float(y.pow(2).mean(-1).mean()), rel=0.05)
    assert float(parts["loss"]) == pytest.approx(float(plain(offset, y)["loss"]) + 2.0 * float(parts["dc"]))
    assert "dc" not in plain(offset, y)
    with pytest.raises(TrainingError, match="dc_weight"):
        TrainConfig.from_dict({"dc_weight": -1.0})


def test_take_weights_draw_the_worst_fitted_take_more_and_keep_every_take() -> None:
    data = clipped_data()
    sampler = TensorSampler(data, 300, 256, batch_size=4000, seed=3)
    uniform, _, _ = sampler.draw(0, 0)
    sampler.set_weights(np.array([0.01, 0.01, 0.08]), weighting=0.5)
    assert np.allclose(sampler.probabilities.numpy(), [1 / 6 + 0.05, 1 / 6 + 0.05, 1 / 6 + 0.4])
    weighted, _, _ = sampler.draw(0, 0)
    share = np.bincount(weighted.numpy(), minlength=3) / 4000
    assert abs(share[2] - (1 / 6 + 0.4)) < 0.03 and share.min() > 0.18  # every take still drawn
    assert abs(np.bincount(uniform.numpy(), minlength=3)[2] / 4000 - 1 / 3) < 0.03
    assert torch.equal(weighted, sampler.draw(0, 0)[0])  # the same weights: the same batch
    for bad in (None, np.array([0.0, 0.0, 0.0]), np.array([0.1, np.nan, 0.1]), np.array([0.1, 0.2])):
        sampler.set_weights(bad, weighting=0.5)
        assert sampler.probabilities is None and torch.equal(sampler.draw(0, 0)[0], uniform)


def test_take_weighting_is_checked_and_survives_a_resume(tmp_path: Path) -> None:
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(TrainingError, match="take_weighting"):
            tiny(take_weighting=bad)
    with pytest.raises(TrainingError, match="sampler 'tensor'"):
        tiny(take_weighting=0.5, sampler="loader")
    data = clipped_data()
    module, _ = ParametricModule.for_data(data, tiny(take_weighting=0.5))
    module.last_esr = np.array([0.02, 0.01, 0.05])
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    resumed, _ = ParametricModule.for_data(data, tiny(take_weighting=0.5))
    resumed.on_load_checkpoint(checkpoint)
    assert np.array_equal(resumed.last_esr, module.last_esr)
    sampler = TensorSampler(data, 300, 256, batch_size=8, seed=0)
    resumed.weigh_takes(sampler)  # what each epoch's start does: the resumed run weighs as before
    assert np.allclose(sampler.probabilities.numpy(), 0.5 / 3 + 0.5 * np.array([2, 1, 5]) / 8)
    fresh, _ = ParametricModule.for_data(data, tiny(take_weighting=0.5))
    fresh.weigh_takes(sampler)  # no validation yet: uniform
    assert sampler.probabilities is None
    result = train(data, tiny(take_weighting=0.5, epochs=2), tmp_path / "run", progress=False)
    assert result.epochs == 2
