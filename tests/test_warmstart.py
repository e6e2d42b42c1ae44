"""``knobcap train --init-from RUN``: a new run starts from an earlier run's weights, which is only read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from knobcap.models.modelfile import load_model_file
from knobcap.training.config import TrainConfig, TrainingError
from knobcap.training.loop import train_session
from playkit import make_session, tiny_controls, tiny_wavenet_config

CONTROLS = tiny_controls()
TINY = tiny_wavenet_config(CONTROLS.vector_size)


def device(x: np.ndarray, setting: dict) -> np.ndarray:
    gain = 1.0 + float(setting["drive"])
    return (np.tanh(gain * x) / gain).astype(np.float32)


def session(root: Path) -> Path:
    plan = [("take01", {"drive": 0.0, "tone": 5.0, "diodes": "silicon"}, "train"),
            ("take02", {"drive": 10.0, "tone": 5.0, "diodes": "led"}, "anchor"),
            ("take03", {"drive": 5.0, "tone": 5.0, "diodes": "silicon"}, "holdout")]
    return make_session(root, CONTROLS, plan, device=device)


def config(**changes: object) -> TrainConfig:
    options: dict = {"model": dict(TINY), "epochs": 1, "steps_per_epoch": 3, "batch_size": 2,
                     "segment_length": 512, "mrstft_weight": 0.0, "val_max_seconds": 0.2, "threads": 1,
                     "warmup_steps": 1}
    options.update(changes)
    return TrainConfig.from_dict(options)


def weights(path: Path) -> dict[str, np.ndarray]:
    return load_model_file(path).weights


def test_a_run_starts_from_the_weights_of_another_and_leaves_it_untouched(tmp_path: Path) -> None:
    root = session(tmp_path / "s")
    first = train_session(root, config(seed=1), run="first", progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in first.run_dir.rglob("*") if p.is_file()}
    # a learning rate of almost 0: the run keeps the weights it starts from
    lines: list[str] = []
    warm = train_session(root, config(seed=2, lr=1e-12, init_from="first"), run="warm", progress=False,
                         say=lines.append)
    cold = train_session(root, config(seed=2, lr=1e-12), run="cold", progress=False)
    start, kept, fresh = weights(first.model_path), weights(warm.model_path), weights(cold.model_path)
    assert all(np.allclose(kept[k], start[k], atol=1e-6) for k in start)
    assert not all(np.allclose(fresh[k], start[k], atol=1e-3) for k in start)
    assert any("starting from the weights of" in line and "first" in line for line in lines)
    saved = json.loads((warm.run_dir / "config.json").read_text())
    assert saved["init_from"] == str((first.run_dir / "model.knobcap").resolve())
    assert {p.name: p.stat().st_mtime_ns for p in first.run_dir.rglob("*") if p.is_file()} == before
    # resuming the warm run does not read its source again
    (first.run_dir / "model.knobcap").rename(tmp_path / "moved.knobcap")
    train_session(root, config(epochs=2), run="warm", resume=True, progress=False)


def test_init_from_refuses_a_missing_run_or_another_model(tmp_path: Path) -> None:
    root = session(tmp_path / "s")
    with pytest.raises(TrainingError, match=r"--init-from nothing: .*not found"):
        train_session(root, config(init_from="nothing"), run="a", progress=False)
    assert not (root / "runs" / "a").exists()
    train_session(root, config(), run="small", progress=False)
    bigger = tiny_wavenet_config(CONTROLS.vector_size, head_scale=0.5)
    with pytest.raises(TrainingError, match="differs from this run's"):
        train_session(root, config(model=bigger, init_from="small"), run="b", progress=False)
    with pytest.raises(TrainingError, match="init_from must name"):
        config(init_from="")


def test_knobcap_train_init_from_on_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from knobcap.cli import app

    root = session(tmp_path / "s")
    model_json = tmp_path / "tiny.json"
    model_json.write_text(json.dumps(TINY), encoding="utf-8")
    common = [str(root), "--steps", "2", "--batch-size", "2", "--threads", "1", "--epochs", "1",
              "--model-config", str(model_json), "--no-progress"]
    runner = CliRunner()
    assert runner.invoke(app, ["train", *common, "--run", "r1"]).exit_code == 0
    result = runner.invoke(app, ["train", *common, "--run", "r2", "--init-from", "r1"])
    assert result.exit_code == 0, result.output
    saved = json.loads((root / "runs" / "r2" / "config.json").read_text())
    assert saved["init_from"].endswith("model.knobcap") and "r1" in saved["init_from"]
    bad = runner.invoke(app, ["train", *common, "--run", "r3", "--init-from", "r9"])
    assert bad.exit_code == 1 and "--init-from r9" in bad.output.replace("\n", "")
