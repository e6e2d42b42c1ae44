"""``knobcap render`` and ``knobcap export`` from the command line: outputs, refusals, automation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from knobcap.cli import app
from knobcap.models.architectures import weight_shapes
from knobcap.models.modelfile import ModelFile, save_model_file
from knobcap.runtime.automation import AutomationError, load_automation
from knobcap.runtime.engine import Engine
from playkit import tiny_controls

CONTROLS = tiny_controls()
runner = CliRunner()


@pytest.fixture
def model_path(tmp_path):
    config = {"n_controls": CONTROLS.vector_size, "hidden_size": 5, "num_layers": 1}
    rng = np.random.default_rng(0)
    weights = {k: (0.5 * rng.standard_normal(s)).astype(np.float32)
               for k, s in weight_shapes("lstm", config).items()}
    return save_model_file(tmp_path / "m.knobcap", ModelFile("lstm", config, CONTROLS, 48_000, weights))


def signal(n: int, seed: int = 1) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_render_fixed_setting_matches_engine(tmp_path, model_path):
    x = signal(9600)
    sf.write(tmp_path / "in.wav", x, 48_000, subtype="FLOAT")
    out = tmp_path / "out.wav"
    result = runner.invoke(app, ["render", str(model_path), str(tmp_path / "in.wav"), str(out),
                                 "--set", "drive=7", "--set", "diodes=led", "--block-size", "100"])
    assert result.exit_code == 0, result.output
    assert "CPU cost" in result.output
    y, rate = sf.read(out, dtype="float32")
    expected = Engine.from_file(model_path, setting={"drive": 7.0, "diodes": "led"}).process(x)
    assert rate == 48_000 and np.max(np.abs(y - expected)) < 1e-6
    again = runner.invoke(app, ["render", str(model_path), str(tmp_path / "in.wav"), str(out)])
    assert again.exit_code == 1 and "exists" in again.output
    same = runner.invoke(app, ["render", str(model_path), str(tmp_path / "in.wav"),
                               str(tmp_path / "in.wav"), "--force"])
    assert same.exit_code == 1 and "input" in same.output


def test_render_stereo_and_other_rate(tmp_path, model_path):
    x = np.stack([signal(4410, 1), signal(4410, 2)], axis=1)
    sf.write(tmp_path / "st.wav", x, 44_100, subtype="FLOAT")
    result = runner.invoke(app, ["render", str(model_path), str(tmp_path / "st.wav"),
                                 str(tmp_path / "o.wav")])
    assert result.exit_code == 0, result.output
    assert "Resampling 44100 Hz -> 48000 Hz" in result.output and "Stereo" in result.output
    y, rate = sf.read(tmp_path / "o.wav", dtype="float32")
    assert rate == 44_100 and y.shape == x.shape
    assert not np.allclose(y[:, 0], y[:, 1])


def test_automation_moves_and_errors(tmp_path, model_path):
    x = signal(4800)
    sf.write(tmp_path / "in.wav", x, 48_000, subtype="FLOAT")
    csv = tmp_path / "auto.csv"
    csv.write_text("time,control,value\n0,drive,1\n0.05,drive,9\n0.06,diodes,led\n")
    moves = load_automation(csv, CONTROLS, 48_000)
    assert [(m.sample, m.control, m.value) for m in moves] == [
        (0, "drive", 1.0), (2400, "drive", 9.0), (2880, "diodes", "led")]
    out = tmp_path / "auto.wav"
    result = runner.invoke(app, ["render", str(model_path), str(tmp_path / "in.wav"), str(out),
                                 "--automation", str(csv), "--ramp-ms", "0"])
    assert result.exit_code == 0, result.output
    y, _ = sf.read(out, dtype="float32")
    engine = Engine.from_file(model_path, setting={"drive": 1.0}, ramp_ms=0)
    first = engine.process(x[:2400])
    engine.set({"drive": 9.0})
    second = engine.process(x[2400:2880])
    engine.set({"diodes": "led"})
    third = engine.process(x[2880:])
    assert np.max(np.abs(y - np.concatenate([first, second, third]))) < 1e-6
    bad = tmp_path / "bad.csv"
    bad.write_text("time,control,value\n0.1,volume,3\n")
    with pytest.raises(AutomationError, match=r"bad.csv, row 2: unknown control 'volume'"):
        load_automation(bad, CONTROLS, 48_000)
    bad.write_text("time,control,value\nsoon,drive,3\n")
    with pytest.raises(AutomationError, match="row 2: time 'soon'"):
        load_automation(bad, CONTROLS, 48_000)
    bad.write_text("time,control,value\n1,diodes,germanium\n")
    with pytest.raises(AutomationError, match="no position 'germanium'"):
        load_automation(bad, CONTROLS, 48_000)


def test_export_cli_nam_grid_and_proteus(tmp_path, model_path):
    out = tmp_path / "snap.nam"
    result = runner.invoke(app, ["export", str(model_path), "nam", str(out), "--set", "drive=3"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["architecture"] == "LSTM" and data["config"]["input_size"] == 1
    result = runner.invoke(app, ["export", str(model_path), "nam", str(tmp_path / "grid"), "--grid", "3"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "grid").glob("*.nam"))) == 3 * 3 * 2  # drive x tone x diodes
    result = runner.invoke(app, ["export", str(model_path), "proteus", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(model_path), "onnx", str(tmp_path / "x")])
    assert result.exit_code == 1 and "unknown export format" in result.output


def test_open_render_is_the_library_side_of_render(tmp_path, model_path):
    from knobcap.runtime.render import RenderFileError, open_render

    x = np.stack([signal(4410, 3), signal(4410, 4)], axis=1)
    sf.write(tmp_path / "in.wav", x, 44_100, subtype="FLOAT")
    job = open_render(model_path, tmp_path / "in.wav", tmp_path / "lib.wav", {"drive": 7, "diodes": "led"})
    assert job.notes == ["Resampling 44100 Hz -> 48000 Hz (the model's rate) with a polyphase filter, and "
                         "back afterwards.", "Stereo input: each channel runs through the model on its own."]
    assert job.total == 2 * 4800
    seen = []
    result = job.run(progress=seen.append)
    assert sum(seen) == job.total and result.channels == 2 and result.sample_rate == 44_100
    cli = runner.invoke(app, ["render", str(model_path), str(tmp_path / "in.wav"), str(tmp_path / "cli.wav"),
                              "--set", "drive=7", "--set", "diodes=led"])
    assert cli.exit_code == 0, cli.output
    assert np.array_equal(sf.read(tmp_path / "lib.wav")[0], sf.read(tmp_path / "cli.wav")[0])
    with pytest.raises(RenderFileError, match="never overwrites an input"):
        open_render(model_path, tmp_path / "in.wav", tmp_path / "in.wav", force=True)
    with pytest.raises(ValueError, match="exists; knobcap does not overwrite it"):
        open_render(model_path, tmp_path / "in.wav", tmp_path / "lib.wav")
