"""Training: config, loss, windows across settings, predict alignment, run folder, resume, CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from knobcap.metrics import EvaluationError, esr
from knobcap.models.base import create_model
from knobcap.models.bridge import load as load_torch_model
from knobcap.models.bridge import predict
from knobcap.models.modelfile import load_model_file
from knobcap.training.config import TrainConfig, TrainingError
from knobcap.training.data import Take, TrainingData, TrainingDataError, WindowDataset
from knobcap.training.loop import train
from knobcap.training.losses import TrainingLoss, esr_per_item
from knobcap.training.run import Run, RunError
from playkit import make_session as make_session_folder
from playkit import tiny_controls, tiny_wavenet_config

CONTROLS = tiny_controls()
TINY_WAVENET = tiny_wavenet_config(CONTROLS.vector_size)


def device(x: np.ndarray, setting: dict) -> np.ndarray:
    gain = 1.0 + float(setting["drive"])
    y = np.tanh(gain * x) / gain
    return (y if setting["diodes"] == "silicon" else 0.5 * y).astype(np.float32)


def make_data(n: int = 6000) -> TrainingData:
    rng = np.random.default_rng(0)
    x = (0.5 * rng.standard_normal(n)).astype(np.float32)
    plan = [({"drive": 0.0, "tone": 5.0, "diodes": "silicon"}, "train"),
            ({"drive": 10.0, "tone": 5.0, "diodes": "led"}, "anchor"),
            ({"drive": 4.0, "tone": 5.0, "diodes": "led"}, "train"),
            ({"drive": 7.0, "tone": 5.0, "diodes": "silicon"}, "holdout")]
    takes = [Take(f"take{i + 1:02d}", s, CONTROLS.to_vector(s), role, device(x, s))
             for i, (s, role) in enumerate(plan)]
    return TrainingData(CONTROLS, 48000, x, takes, (100, n - 1000), (n - 1000, n), source="memory")


def tiny_config(**changes: object) -> TrainConfig:
    options: dict = {"model": dict(TINY_WAVENET), "epochs": 1, "steps_per_epoch": 2, "batch_size": 2,
                     "segment_length": 512, "mrstft_weight": 1e-3, "mrstft_fft_sizes": [256, 128],
                     "val_max_seconds": None, "threads": 1, "warmup_steps": 1}
    options.update(changes)
    return TrainConfig.from_dict(options)


def test_config_is_json_able_and_checked() -> None:
    config = tiny_config(seed=3)
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(TrainingError, match="unknown training option"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(TrainingError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": 0})
    with pytest.raises(TrainingError, match="STFT"):
        TrainConfig.from_dict({"segment_length": 1000, "mrstft_weight": 1e-3, "mrstft_fft_sizes": [2048]})
    assert config.model_config(3)["n_controls"] == 3


_BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "lightning"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize("module", ["knobcap.training.config", "knobcap.training.run"])
def test_torch_free_modules_import_with_torch_blocked(module: str) -> None:
    code = _BLOCK_TORCH + f"""
import {module}
try:
    import torch
except ImportError:
    print("torch blocked")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "torch blocked"


def test_a_quiet_takes_windows_weigh_as_much_as_a_loud_ones_against_their_own_take() -> None:
    """The floor's reference is the window's own take: a take 40 dB down with the same relative error
    scores the same ESR, where the batch's mean floored it about 200x lower (the former rule)."""
    from knobcap.training.losses import take_energy

    rng = np.random.default_rng(2)
    loud = rng.standard_normal(4000)
    takes = np.stack([loud, 0.01 * loud])
    y = torch.from_numpy(takes[:, 1000:2000])
    y_hat = y * 1.1  # 1 % ESR in both
    energy = torch.tensor([take_energy(t, 0.85) for t in takes])
    per_take = esr_per_item(y_hat, y, 0.85, 0.2, energy).numpy()
    np.testing.assert_allclose(per_take, [0.01, 0.01], rtol=1e-6)
    per_batch = esr_per_item(y_hat, y, 0.85, 0.2).numpy()
    assert per_batch[0] == pytest.approx(0.01, rel=1e-6) and per_batch[1] < 0.01 / 50
    for scope, expected in (("take", per_take), ("batch", per_batch)):  # the loss applies its own scope
        loss = TrainingLoss(0.85, 0.0, floor=0.2, floor_scope=scope)
        assert float(loss(y_hat, y, energy)["esr"]) == pytest.approx(float(expected.mean()), rel=1e-6)
    silent = torch.zeros(1, 1000)  # a silent stretch of a take still cannot blow the loss up
    assert float(esr_per_item(silent + 0.01, silent, 0.85, 0.2, energy[:1])) < 1e-3
    assert take_energy(np.ones(1)) == 0.0


def test_the_plain_term_sees_a_dark_takes_low_frequency_error() -> None:
    """A low-frequency error (a 100 Hz tone 10 % off) on a dark take: the pre-emphasised ESR weighs it
    about 0.02x, the plain term in full; each term is floored against its own take energy."""
    from knobcap.training.losses import take_energies

    n = np.arange(48_000)
    take = np.sin(2 * np.pi * 100 * n / 48_000) + 1e-3 * np.sin(2 * np.pi * 5_000 * n / 48_000)
    y = torch.from_numpy(take[None, 1000:9192])
    y_hat = y + 0.1 * torch.from_numpy(np.sin(2 * np.pi * 100 * n[None, 1000:9192] / 48_000))
    reference = torch.tensor([take_energies(take, 0.85)])
    assert reference.shape == (1, 2) and float(reference[0, 1]) == pytest.approx(0.5, rel=1e-2)
    emphasised = TrainingLoss(0.85, 0.0, floor=0.2)(y_hat, y, reference)
    both = TrainingLoss(0.85, 0.0, floor=0.2, plain_weight=1.0)(y_hat, y, reference)
    assert float(both["plain_esr"]) == pytest.approx(0.01, rel=1e-3)  # (0.1)^2, as the evaluation reads
    assert float(both["esr"]) == pytest.approx(float(emphasised["esr"]), rel=1e-9)
    assert float(both["loss"]) == pytest.approx(float(both["esr"]) + 0.01, rel=1e-3)
    quiet = TrainingLoss(0.85, 0.0, floor=0.2, plain_weight=1.0)(1e-2 * y_hat, 1e-2 * y, 1e-4 * reference)
    assert float(quiet["plain_esr"]) == pytest.approx(0.01, rel=1e-3)  # a quiet take weighs the same
    assert "plain_esr" not in emphasised
    spectral = TrainingLoss(0.85, 1e-3, [256, 128], floor=0.2, plain_weight=1.0)(y_hat, y, reference)
    assert float(spectral["loss"]) == pytest.approx(float(spectral["esr"]) + float(spectral["plain_esr"])
                                                    + 1e-3 * float(spectral["mrstft"]), rel=1e-6)
    with pytest.raises(TrainingError, match="plain_esr_weight"):
        TrainConfig.from_dict({"plain_esr_weight": -1})


def test_esr_loss_matches_its_formula_and_keeps_the_level() -> None:
    rng = np.random.default_rng(1)
    y = rng.standard_normal((3, 400))
    y_hat = y + 0.1 * rng.standard_normal((3, 400))
    plain = esr_per_item(torch.from_numpy(y_hat), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(plain, ((y_hat - y) ** 2).sum(1) / (y ** 2).sum(1), rtol=1e-10)
    p = lambda v: v[:, 1:] - 0.85 * v[:, :-1]  # noqa: E731
    emphasised = esr_per_item(torch.from_numpy(y_hat), torch.from_numpy(y), 0.85).numpy()
    np.testing.assert_allclose(emphasised, ((p(y_hat) - p(y)) ** 2).sum(1) / (p(y) ** 2).sum(1), rtol=1e-10)
    loss = TrainingLoss(0.85, 1e-3, [128, 64])
    target = torch.from_numpy(y).float()
    assert float(loss(target, target)["loss"]) < 1e-6
    assert float(loss(0.5 * target, target)["esr"]) == pytest.approx(0.25, rel=1e-5)  # level counts


def test_windows_mix_settings_stay_in_the_span_and_are_reproducible() -> None:
    data = make_data()
    windows = WindowDataset(data, context=10, length=300, items=64, seed=7)
    x_first, y_first, _ = windows[5]
    again = WindowDataset(data, context=10, length=300, items=64, seed=7)[5]
    torch.testing.assert_close(again[0], x_first)
    torch.testing.assert_close(again[1], y_first)
    assert x_first.shape == (310,) and y_first.shape == (300,)
    seen = set()
    for i in range(64):
        x, y, c = windows[i]
        # the target is the raw take (never normalised) at the same times as the last input samples
        matches = [t for t in data.train_takes if np.allclose(c.numpy(), t.vector)]
        assert len(matches) == 1
        start = int(np.flatnonzero(np.isclose(data.x, x.numpy()[10]))[0])
        assert data.train_span[0] <= start and start + 300 <= data.train_span[1]
        np.testing.assert_array_equal(y.numpy(), matches[0].audio[start:start + 300])
        seen.add(matches[0].name)
    assert seen == {t.name for t in data.train_takes}  # held-out take03 never appears
    windows.epoch = 1
    assert not torch.equal(windows[5][0], x_first)


def test_predict_aligns_output_with_input_and_chunks_exactly() -> None:
    model = create_model("wavenet", TINY_WAVENET)
    torch.manual_seed(0)
    x = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    c = CONTROLS.to_vector({"drive": 5.0, "tone": 10.0, "diodes": "led"}).astype(np.float32)
    out = predict(model, x, c)
    assert out.shape == x.shape
    padded = torch.from_numpy(np.concatenate([np.zeros(model.receptive_field - 1, np.float32), x]))
    with torch.no_grad():
        full = model(padded[None], torch.from_numpy(c)[None])[0].numpy()
    np.testing.assert_allclose(out, full, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(predict(model, x, c, chunk=97), out, rtol=1e-5, atol=1e-6)
    automation = np.repeat(c[:, None], len(x), axis=1)
    np.testing.assert_allclose(predict(model, x, automation, chunk=128), out, rtol=1e-5, atol=1e-6)
    zero_first = x.copy()
    zero_first[500:] = 0.0  # causal: the first 500 outputs do not see the change
    np.testing.assert_allclose(predict(model, zero_first, c)[:500], out[:500], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("architecture", ["wavenet", "lstm"])
def test_train_then_resume_and_reload_the_model_file(tmp_path: Path, architecture: str) -> None:
    data = make_data()
    changes = {} if architecture == "wavenet" else {
        "architecture": "lstm", "model": {"hidden_size": 3, "num_layers": 1}, "recurrent_warmup": 64}
    run = tmp_path / "run"
    first = train(data, tiny_config(**changes), run, progress=False)
    assert first.epochs == 1 and (run / "config.json").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert TrainConfig.from_dict(json.loads((run / "config.json").read_text())) == tiny_config(**changes)
    model_file = load_model_file(run / "model.knobcap")
    assert model_file.metadata["training"]["epochs"] == 1
    assert set(model_file.metadata["heldout_esr"]) == {"take04"}
    assert set(model_file.metadata["validation_esr"]) == {"take01", "take02", "take03"}

    with pytest.raises(TrainingError, match="exists already"):
        train(data, tiny_config(**changes), run, progress=False)
    second = train(data, tiny_config(epochs=2, **changes), run, resume=True, progress=False)
    assert second.epochs == 2
    with (run / "train_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[0]["esr_take04"]) > 0 and "heldout_esr_median" in rows[0]
    model_file = load_model_file(run / "model.knobcap")
    assert model_file.metadata["training"]["epochs"] == 2  # the file was rewritten by the resumed run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["heldout_esr"] == second.heldout_esr

    # Done means: the model reloaded from model.knobcap gives the reported figures exactly.
    reloaded = load_torch_model(model_file)
    take = data.takes[3]
    first_sample = model_file.metadata["heldout_span"][0]
    y_hat = predict(reloaded, data.x, take.vector)
    assert esr(y_hat[first_sample:], take.audio[first_sample:]) == pytest.approx(
        second.heldout_esr["take04"], rel=1e-6)


def test_moving_average_weights_are_what_is_scored_and_saved(tmp_path: Path) -> None:
    data = make_data()
    train(data, tiny_config(steps_per_epoch=4, ema_decay=0.5, control_noise=0.05), tmp_path / "ema",
          progress=False)
    checkpoint = torch.load(tmp_path / "ema" / "checkpoints" / "last.ckpt", map_location="cpu",
                            weights_only=False)  # our own file, written by the test
    weights = checkpoint["state_dict"]
    live = {k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")}
    average = {k[len("ema_model."):]: v for k, v in weights.items() if k.startswith("ema_model.")}
    assert set(live) == set(average)
    assert any(not torch.equal(live[k], average[k]) for k in live)  # the average lags the live weights
    saved = load_model_file(tmp_path / "ema" / "model.knobcap").weights
    assert set(saved) == set(average)
    for name, value in average.items():  # one epoch: the best weights are the last average
        np.testing.assert_array_equal(saved[name], value.numpy())
    for bad in ({"ema_decay": 1.0}, {"ema_decay": -0.1}, {"control_noise": -1.0}):
        with pytest.raises(TrainingError, match="ema_decay"):
            tiny_config(**bad)


def test_resume_needs_a_checkpoint_and_bad_data_is_refused(tmp_path: Path) -> None:
    data = make_data()
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(data, tiny_config(), tmp_path / "empty", resume=True, progress=False)
    data.takes[1].audio = data.takes[1].audio[:-5]
    with pytest.raises(TrainingDataError, match=r"take02.*samples"):
        train(data, tiny_config(), tmp_path / "bad", progress=False)
    with pytest.raises(TrainingError, match="accelerator"):
        train(make_data(), tiny_config(accelerator="no-such-accelerator"), tmp_path / "acc", progress=False)
    assert not (tmp_path / "acc").exists()
    data = make_data()
    for take in data.takes:
        take.role = "holdout"
    with pytest.raises(TrainingDataError, match="no take has role"):
        train(data, tiny_config(), tmp_path / "bad2", progress=False)
    with pytest.raises(TrainingDataError, match="training span"):
        train(make_data(1500), tiny_config(segment_length=2048, mrstft_weight=0.0), tmp_path / "b3",
              progress=False)


def test_same_seed_same_run(tmp_path: Path) -> None:
    data = make_data()
    a = train(data, tiny_config(seed=5), tmp_path / "a", progress=False)
    b = train(data, tiny_config(seed=5), tmp_path / "b", progress=False)
    assert a.heldout_esr == b.heldout_esr
    wa = load_model_file(a.model_path).weights
    wb = load_model_file(b.model_path).weights
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def make_session(root: Path) -> Path:
    """A small session folder on disk: controls, plan, a 30 s input and takes of a simple device."""
    plan = [("take01", {"drive": 0.0, "tone": 5.0, "diodes": "silicon"}, "train"),
            ("take02", {"drive": 10.0, "tone": 5.0, "diodes": "led"}, "anchor"),
            ("take03", {"drive": 5.0, "tone": 5.0, "diodes": "silicon"}, "holdout")]
    return make_session_folder(root, CONTROLS, plan, device=device)


def test_knobcap_train_on_a_session_folder_then_resume(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from knobcap.cli import app

    session = make_session(tmp_path / "session")
    model_json = tmp_path / "tiny.json"
    model_json.write_text(json.dumps(TINY_WAVENET), encoding="utf-8")
    runner = CliRunner()
    common = [str(session), "--run", "r1", "--steps", "2", "--batch-size", "2", "--threads", "1",
              "--no-progress"]
    result = runner.invoke(app, ["train", *common, "--model-config", str(model_json), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    flat = result.output.replace("\n", "")  # rich wraps long lines
    assert "take03" in flat and "model.knobcap" in flat
    run = session / "runs" / "r1"
    model_file = load_model_file(run / "model.knobcap")
    assert model_file.controls == CONTROLS and set(model_file.metadata["heldout_esr"]) == {"take03"}
    assert model_file.metadata["training"]["epochs"] == 1

    again = runner.invoke(app, ["train", *common, "--epochs", "1"])  # the run exists: refused
    assert again.exit_code == 1 and "--resume" in again.output.replace("\n", "")
    resumed = runner.invoke(app, ["train", *common, "--resume", "--epochs", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert load_model_file(run / "model.knobcap").metadata["training"]["epochs"] == 2
    (session / "check.json").write_text(json.dumps(
        {"ok": False, "takes": {"take02": {"status": "fail", "latency": 0, "problems": []}}}))
    refused = runner.invoke(app, ["train", str(session), "--run", "r2", "--no-progress"])
    assert refused.exit_code == 1 and "take02" in refused.output and "failed" in refused.output
    assert not (session / "runs" / "r2").exists()
    missing = runner.invoke(app, ["train", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "nowhere" in missing.output.replace("\n", "")


def test_a_silent_take_is_refused_before_training_and_esr_refuses_a_silent_target(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="silent"):
        esr(np.ones(8), np.zeros(8))  # one definition: no 1e-20 floor that would print a huge ESR
    data = make_data()
    data.takes[3].audio = np.zeros_like(data.takes[3].audio)  # the held-out take
    with pytest.raises(TrainingDataError, match=r"take04.*silent"):
        train(data, tiny_config(), tmp_path / "silent", progress=False)
    assert not (tmp_path / "silent").exists()
    data = make_data()
    v0, v1 = data.val_span
    data.takes[0].audio[v0:v1] = 0.0  # silent only where a trained take is scored
    with pytest.raises(TrainingDataError, match=r"take01.*silent"):
        train(data, tiny_config(), tmp_path / "silent2", progress=False)


def test_the_run_folder_names_every_file_and_reads_them(tmp_path: Path) -> None:
    run = Run.in_session(tmp_path / "session", "r1")
    assert run.path == tmp_path / "session" / "runs" / "r1" and run.name == "r1"
    names = {run.model_path.name, run.config_path.name, run.log_path.name, run.summary_path.name,
             run.metrics_path.name, run.report_path.name, run.last_checkpoint.name, run.cache_dir.name}
    assert names == {"model.knobcap", "config.json", "train_log.csv", "summary.json", "metrics.json",
                     "report.html", "last.ckpt", "cache"}
    assert run.last_checkpoint.parent == run.path / "checkpoints"
    assert run.read_config() is None and run.read_log() == [] and not run.is_trained()
    run.path.mkdir(parents=True)
    run.write_log(["epoch", "loss"], [{"epoch": 1, "loss": "0.5"}, {"epoch": 2}])
    assert run.read_log() == [{"epoch": "1", "loss": "0.5"}, {"epoch": "2", "loss": ""}]
    run.config_path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RunError, match=r"config\.json: not valid JSON"):
        run.read_config()
    run.config_path.write_text(json.dumps({"session": "../../elsewhere"}), encoding="utf-8")
    assert run.session_dir() == (run.path / "../../elsewhere").resolve()
    run.config_path.write_text(json.dumps(tiny_config().to_dict()), encoding="utf-8")
    assert run.session_dir() == (tmp_path / "session").resolve()
    assert Run.find(tmp_path / "session", "r1").path == run.path
    assert Run.find(tmp_path / "session", run.path).path == run.path


def test_no_module_but_the_run_folder_spells_its_file_names() -> None:
    import ast

    import knobcap

    names = {Run.MODEL, Run.CONFIG, Run.LOG, Run.SUMMARY, Run.METRICS, Run.REPORT, Run.LAST_CHECKPOINT,
             Run.LOCK, *Run.HISTORY_FILES}
    root = Path(knobcap.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "training" / "run.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.value}")
    assert not found, "use knobcap.training.run.Run instead: " + ", ".join(found)


def test_the_plain_esr_weight_reaches_the_training_loss() -> None:
    from knobcap.training.loop import ParametricModule

    data = make_data()
    assert ParametricModule.for_data(data, tiny_config())[0].loss.plain_weight == 0.0
    assert ParametricModule.for_data(data, tiny_config(plain_esr_weight=0.5))[0].loss.plain_weight == 0.5


def test_the_output_dc_blocker_is_chosen_from_the_takes_and_scored_as_played(tmp_path: Path) -> None:
    from knobcap.dsp import dc_blocker
    from knobcap.training.loop import output_dc_blocker

    data = make_data()  # tanh of noise: each take's mean is ~1 % of its rms, as a plugin's offset
    assert output_dc_blocker(tiny_config(), data) is None
    assert output_dc_blocker(tiny_config(dc_blocker="off"), data) is None
    assert output_dc_blocker(tiny_config(dc_blocker=5), data) == 5.0
    t = np.arange(data.x.size) / data.sample_rate
    ac_coupled = TrainingData(data.controls, data.sample_rate, data.x, [
        Take(take.name, take.setting, take.vector, take.role,
             (0.2 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)) for take in data.takes],
        data.train_span, data.val_span)
    assert output_dc_blocker(tiny_config(), ac_coupled) == dc_blocker.DEFAULT_HZ
    for bad in ("on", 0, 25.0):
        with pytest.raises(TrainingError, match="dc_blocker"):
            tiny_config(dc_blocker=bad)

    result = train(data, tiny_config(dc_blocker=3.0), tmp_path / "run", progress=False)
    model_file = load_model_file(result.model_path)
    assert model_file.dc_blocker_hz == 3.0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["dc_blocker_hz"] == 3.0
    take = data.takes[3]  # the held-out figure is the model's output through the blocker, as played
    first_sample = model_file.metadata["heldout_span"][0]
    y_hat = dc_blocker.apply(predict(load_torch_model(model_file), data.x, take.vector), 3.0, 48000)
    assert esr(y_hat[first_sample:], take.audio[first_sample:]) == pytest.approx(
        result.heldout_esr["take04"], rel=1e-5)
    plain = predict(load_torch_model(model_file), data.x, take.vector)
    assert esr(plain[first_sample:], take.audio[first_sample:]) != pytest.approx(
        result.heldout_esr["take04"], rel=1e-5)


def test_knobcap_train_refuses_a_bad_dc_blocker_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from knobcap.cli import app

    for value, expected in (("banana", "give auto, off or a corner in Hz"), ("50", "at most 20")):
        result = CliRunner().invoke(app, ["train", str(tmp_path), "--dc-blocker", value])
        assert result.exit_code != 0
        assert expected in " ".join(result.output.split()), result.output
