"""The HTML run report and its plots, on a hand-made run folder (no training needed)."""

from __future__ import annotations

import base64
import io
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from knobcap.controls import Controls, Knob, Switch
from knobcap.evaluation import plots
from knobcap.evaluation.report import ReportError, audio_data_uri, load_run, read_history, write_report
from playkit import RATE, make_run  # tests/playkit.py

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def _audio(text: str) -> list[np.ndarray]:
    out = []
    for m in re.findall(r'src="data:audio/flac;base64,([^"]+)"', text):
        audio, rate = sf.read(io.BytesIO(base64.b64decode(m)), dtype="float32")
        assert rate == RATE
        out.append(audio)
    return out


# ------------------------------------------------------------------------------------------ plots
def test_verdict_words_follow_nam():
    assert [plots.verdict(v) for v in (0.005, 0.02, 0.05, 0.5)] == [
        "great", "not bad", "might sound OK", "probably not"]
    assert plots.verdict(float("nan")) == "unknown"


@pytest.mark.parametrize("knobs", [0, 1, 2, 3])
def test_esr_map_draws_for_any_number_of_knobs(knobs):
    controls = Controls(knobs=tuple(Knob(f"k{i}") for i in range(knobs)),
                        switches=(Switch("sw", ("a", "b")),))
    from knobcap.evaluation.evaluate import dense_grid

    grid = [plots.PointESR(s, 0.001 + 0.001 * i) for i, s in enumerate(dense_grid(controls, levels=3))]
    recorded = [plots.PointESR(controls.default_setting(), 0.02, "holdout")]
    png = plots.esr_map(controls, grid, recorded)
    assert png.startswith(PNG_MAGIC) and len(png) > 3000


def test_spectrum_finds_a_sine():
    t = np.arange(RATE) / RATE
    freqs, db = plots.spectrum(np.sin(2 * np.pi * 1000 * t), RATE)
    assert abs(freqs[int(np.argmax(db))] - 1000) < RATE / 4096


# --------------------------------------------------------------------------------------- reading
def test_load_run_reads_evaluate_metrics(tmp_path):
    run = load_run(make_run(tmp_path, model=False))
    assert len(run.rows) == 8
    assert {r.role for r in run.rows} == {"train", "anchor", "holdout"}
    assert sorted(r.esr for r in run.heldout()) == pytest.approx([0.014, 0.016])
    assert len(run.grid) == 4 * 4 * 2
    assert run.history["epoch"] == [0, 1, 2, 3, 4, 5]


def test_history_json_and_bad_files(tmp_path):
    assert read_history(make_run(tmp_path, history="json"))["loss"] == pytest.approx([1, 0.5, 1 / 3, 0.25])
    run_dir = tmp_path / "other"
    run_dir.mkdir()
    (run_dir / "history.json").write_text("{not json")
    notes: list[str] = []
    assert read_history(run_dir, notes) == {}
    assert "history.json" in notes[0]


def test_plan_and_model_are_read_by_their_own_readers(tmp_path):
    run_dir = make_run(tmp_path)
    run = load_run(run_dir)
    assert run.architecture == "wavenet" and run.sample_rate == RATE and run.controls is not None
    plan = tmp_path / "plan.csv"
    plan.write_text(plan.read_text().replace(",holdout\n", ",maybe\n", 1))  # read_plan refuses the role
    model = run_dir / "model.knobcap"
    model.write_text(model.read_text().replace('"knobcap-model"', '"something-else"'))  # the reader checks
    run = load_run(run_dir)
    assert any("plan.csv" in n and "maybe" in n for n in run.notes)
    assert any("model.knobcap could not be read" in n for n in run.notes)
    assert run.architecture == "" and run.controls is not None  # the controls then come from the session
    assert {r.role for r in run.rows} == {"train", "anchor", "holdout"}  # from metrics.json


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="no such run folder"):
        load_run(tmp_path / "nope")


# --------------------------------------------------------------------------------------- writing
def test_report_without_model_still_tells_what_is_known(tmp_path):
    path = write_report(make_run(tmp_path, model=False))
    text = path.read_text()
    assert path.name == "report.html"
    assert "no model.knobcap" in text
    assert text.count('<tr class="holdout">') == 2
    assert len(_images(text)) == 2  # the ESR map and the training curves
    assert all(png.startswith(PNG_MAGIC) for png in _images(text))
    assert "median ESR" in text and "0.0150" in text  # median of the held-out 0.014 and 0.016


def test_report_is_self_contained_with_audio(tmp_path):
    run_dir = make_run(tmp_path)
    signal = np.asarray(0.3 * np.sin(np.linspace(0, 1400, RATE * 7)), np.float32)
    from knobcap.runtime.render import load_renderer

    renderer = load_renderer(run_dir / "model.knobcap")

    def aligned_take(take):  # a target: the model at the take's setting, slightly quieter
        setting = next(r for r in load_run(run_dir).rows if r.take == take).setting
        return 0.9 * renderer.render(signal, setting)

    session = SimpleNamespace(input=lambda: SimpleNamespace(audio=signal, map=None),
                              aligned_take=aligned_take)
    text = write_report(run_dir, renderer=renderer, session=session).read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched from elsewhere
    clips = _audio(text)
    # 2 held-out settings x (target, model, dry) + the DI clip (model, dry)
    assert len(clips) == 2 * 3 + 2
    assert all(abs(len(c) - 6 * RATE) <= 1 for c in clips)
    assert len(_images(text)) == 4  # map, curves, waveform and spectrum overlays
    assert 'id="waveform"' in text and 'id="spectrum"' in text


def test_di_example_compares_to_a_known_device(tmp_path):
    from knobcap.devices import register_device
    from knobcap.evaluation.report import di_example
    from knobcap.runtime.render import load_renderer

    run_dir = make_run(tmp_path)
    renderer = load_renderer(run_dir / "model.knobcap")

    class Quieter:  # the "device" is the model at 90 %: ESR = 0.1² / 0.9² exactly
        name = "quieter-model"
        controls = renderer.controls

        def process(self, audio, sample_rate, setting):
            return 0.9 * renderer.render(np.asarray(audio, np.float32), setting)

    register_device("quieter-model", Quieter)
    run = load_run(run_dir)
    run.metrics["device"] = "quieter-model"
    example = di_example(run, renderer, run.heldout()[0].setting, [])
    assert example is not None and example.target is not None
    assert example.esr == pytest.approx(0.01 / 0.81, rel=1e-3)


def test_audio_data_uri_is_16_bit_flac():
    uri = audio_data_uri(np.array([0.0, 0.5, 2.0, -3.0], np.float32), RATE)
    audio, _ = sf.read(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), dtype="float32")
    assert audio == pytest.approx([0.0, 0.5, 1.0, -1.0], abs=1e-4)


def test_cli_report(tmp_path):
    from typer.testing import CliRunner

    from knobcap.cli import app

    run_dir = make_run(tmp_path, model=False)
    result = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code == 1 and "no such run" in " ".join(bad.output.split())


def test_grid_slice_goes_through_the_default_setting():
    from knobcap.evaluation.evaluate import dense_grid

    controls = Controls(knobs=(Knob("a"), Knob("b"), Knob("c", default=7.0)),
                        switches=(Switch("s", ("x", "y")),))
    grid = [plots.PointESR(s, 0.01) for s in dense_grid(controls, levels=4)]  # c on 0, 3.33, 6.67, 10
    points, others = plots.grid_slice(controls, grid, controls.knobs[0], controls.knobs[1], {"s": "y"})
    assert others == pytest.approx({"c": 20 / 3})
    assert len(points) == 16
    assert all(p.setting["s"] == "y" and p.setting["c"] == pytest.approx(20 / 3) for p in points)


def test_report_before_eval_uses_training_summary(tmp_path):
    run_dir = make_run(tmp_path, model=False, grid=False)
    (run_dir / "metrics.json").unlink()
    (run_dir / "summary.json").write_text(json.dumps(
        {"epochs": 3, "minutes": 2.5, "validation_esr": {"take01": 0.004}, "heldout_esr": {"take07": 0.05}}))
    run = load_run(run_dir)
    esrs = {r.take: r.esr for r in run.rows}
    assert esrs["take01"] == 0.004 and esrs["take07"] == 0.05 and esrs["take02"] is None
    text = write_report(run_dir).read_text()
    assert "3 epochs, 2.5 minutes" in text and "summary.json" in text
