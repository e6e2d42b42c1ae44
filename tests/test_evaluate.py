"""Evaluation: ESR and verdicts, grids, device comparisons with a render cache, DI clips, metrics.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from knobcap.controls import Controls, Knob
from knobcap.evaluation import evaluate as ev
from playkit import tiny_controls, tiny_wavenet_config

RATE = 48_000


class ToyDevice:
    """A memoryless clipper whose gain follows drive and whose mix follows tone (cheap, exact)."""

    name = "toy"

    def __init__(self) -> None:
        self.controls = tiny_controls()
        self.calls = 0

    def process(self, audio, sample_rate, setting):
        self.calls += 1
        s = self.controls.validate_setting(setting)
        gain = 1.0 + s["drive"]
        y = np.tanh(gain * audio) if s["diodes"] == "silicon" else np.clip(gain * audio, -0.5, 0.5)
        return (0.5 + 0.05 * s["tone"]) * y


def device_predictor(device: ToyDevice, scale: float = 1.0) -> ev.Predictor:
    """A 'model' that is the device itself, its output scaled by ``scale``."""
    def predict(x, settings):
        return np.stack([scale * device.process(x.astype(np.float64), RATE, s) for s in settings])
    return predict


def test_esr_matches_its_definition():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(1000)
    assert ev.esr(y, y) == 0.0
    assert ev.esr(np.zeros_like(y), y) == pytest.approx(1.0)
    assert ev.esr(1.1 * y, y) == pytest.approx(0.01)
    noise = rng.standard_normal(1000)
    expected = np.sum(noise**2) / np.sum(y**2)
    assert ev.esr(y + noise, y) == pytest.approx(expected)
    with pytest.raises(ev.EvaluationError, match="shapes"):
        ev.esr(y[:-1], y)
    with pytest.raises(ev.EvaluationError, match="silent"):
        ev.esr(y, np.zeros_like(y))


def test_verdicts_follow_nam_limits():
    assert ev.verdict(0.0) == "great"
    assert ev.verdict(0.0099) == "great"
    assert ev.verdict(0.01) == "not bad"
    assert ev.verdict(0.05) == "might sound OK"
    assert ev.verdict(0.1) == "probably not"
    assert ev.verdict(3.0) == "probably not"


def test_summarize():
    s = ev.summarize([0.5, 0.1, 0.2, 0.3, 0.4])
    assert s["count"] == 5 and s["median"] == pytest.approx(0.3) and s["max"] == pytest.approx(0.5)
    assert s["p90"] == pytest.approx(0.46)  # linear interpolation between 0.4 and 0.5
    assert s["mean"] == pytest.approx(0.3)
    assert ev.summarize([])["count"] == 0 and ev.summarize([])["median"] is None


def test_dense_grid_spans_every_knob_in_taper_aware_steps_and_every_switch(controls):
    grid = ev.dense_grid(controls, 4)
    assert len(grid) == 4 * 4 * 2
    for setting in grid:
        controls.validate_setting(setting)
    drive_units = sorted({round(controls["drive"].to_unit(s["drive"]), 9) for s in grid})
    assert drive_units == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert {s["diodes"] for s in grid} == {"silicon", "led"}
    assert len({json.dumps(s, sort_keys=True) for s in grid}) == len(grid)
    with pytest.raises(ev.EvaluationError):
        ev.dense_grid(controls, 1)


def test_dense_grid_is_bounded_before_any_setting_is_made(controls, monkeypatch):
    from knobcap.limits import LimitError

    combos = len(controls.switch_combinations())
    monkeypatch.setenv("KNOBCAP_MAX_GRID_SETTINGS", str(9 * combos))
    assert len(ev.dense_grid(controls, 3)) == 9 * combos  # at the limit: allowed
    with pytest.raises(LimitError, match=rf"^--grid 4: the number of grid settings is {16 * combos}, above"):
        ev.dense_grid(controls, 4)


def test_random_settings_are_seeded_valid_and_balanced_over_switches(controls):
    a = ev.random_settings(controls, 6, seed=3)
    assert a == ev.random_settings(controls, 6, seed=3)
    assert a != ev.random_settings(controls, 6, seed=4)
    assert [s["diodes"] for s in a] == ["silicon", "led"] * 3
    for setting in a:
        controls.validate_setting(setting)


def test_nearest_distance_only_counts_the_same_switch_positions(controls):
    training = [{"drive": 0.0, "tone": 0.0, "diodes": "silicon"},
                {"drive": 10.0, "tone": 10.0, "diodes": "led"}]
    assert ev.nearest_distance(controls, {"drive": 0.0, "tone": 5.0, "diodes": "silicon"}, training) \
        == pytest.approx(0.5)
    assert ev.nearest_distance(controls, {"drive": 0.0, "tone": 0.0, "diodes": "led"}, training) \
        == pytest.approx(math.sqrt(2))
    assert ev.nearest_distance(controls, {"drive": 0.0, "tone": 0.0, "diodes": "silicon"}, []) == math.inf


def test_device_comparison_flags_training_settings_and_scores_model_error(tmp_path):
    device = ToyDevice()
    controls = device.controls
    audio = (0.3 * np.sin(2 * np.pi * 220 * np.arange(RATE // 2) / RATE)).astype(np.float32)
    grid = ev.dense_grid(controls, 3)
    training = [grid[0], grid[4]]
    cache = ev.RenderCache(tmp_path / "cache")

    perfect = ev.evaluate_against_device(device_predictor(device), device, controls, audio, RATE, grid,
                                         start=RATE // 4, training=training, cache=cache)
    assert len(perfect) == len(grid)
    assert all(r.esr < 1e-10 for r in perfect)  # float32 cache round trip only
    assert [r.trained for r in perfect].count(True) == 2
    assert perfect[0].trained and perfect[4].trained and not perfect[1].trained

    calls = device.calls
    scaled = ev.evaluate_against_device(device_predictor(device, 1.05), device, controls, audio, RATE, grid,
                                        start=RATE // 4, training=training, cache=cache)
    assert device.calls - calls == len(grid)  # only the predictor ran the device: renders were cached
    assert all(r.esr == pytest.approx(0.0025, rel=1e-4) for r in scaled)

    doc = ev.section(controls, scaled, levels=3)
    assert doc["summary"]["count"] == len(grid) - 2
    assert doc["summary_all"]["count"] == len(grid)
    assert doc["rows"][0]["trained"] is True and doc["rows"][0]["verdict"] == "great"


def test_a_changed_setting_or_input_is_rendered_again(tmp_path):
    device = ToyDevice()
    cache = ev.RenderCache(tmp_path)
    audio = np.linspace(-0.5, 0.5, 2000).astype(np.float32)
    setting = {"drive": 5.0, "tone": 5.0, "diodes": "silicon"}
    ev.cached_render(device, cache, audio, 0, 2000, setting, RATE, 0)
    ev.cached_render(device, cache, audio, 0, 2000, setting, RATE, 0)
    assert device.calls == 1
    ev.cached_render(device, cache, audio, 0, 2000, {**setting, "drive": 6.0}, RATE, 0)
    ev.cached_render(device, cache, audio * 0.5, 0, 2000, setting, RATE, 0)
    assert device.calls == 3


def test_preroll_gives_the_segment_the_context_before_it():
    seen = []

    def predict(x, settings):
        seen.append(len(x))
        return np.stack([x for _ in settings])

    audio = np.arange(100, dtype=np.float32) + 1
    out = ev.predict_segment(predict, audio, 40, 60, [{}], preroll=10)
    assert seen == [30]
    np.testing.assert_array_equal(out[0], audio[40:60])


def test_takes_are_scored_against_their_recordings():
    device = ToyDevice()
    audio = (0.2 * np.sin(np.arange(4000) / 7)).astype(np.float32)
    settings = ev.random_settings(device.controls, 3, seed=0)
    takes = [(f"take0{i + 1}", s, "holdout" if i == 2 else "train") for i, s in enumerate(settings)]
    recorded = {t: device.process(audio.astype(np.float64), RATE, s) for t, s, _ in takes}
    rows = ev.evaluate_takes(device_predictor(device, 0.9), audio, takes, recorded.__getitem__, 1000, 4000,
                             RATE)
    assert [r.take for r in rows] == ["take01", "take02", "take03"]
    assert rows[2].role == "holdout"
    assert all(r.esr == pytest.approx(0.01, rel=1e-6) for r in rows)
    with pytest.raises(ev.EvaluationError, match="shorter"):
        ev.evaluate_takes(device_predictor(device), audio, takes, lambda t: recorded[t][:3000], 1000, 4000,
                          RATE)


def test_torch_predictor_chunks_give_the_same_samples_as_one_pass():
    torch = pytest.importorskip("torch")

    class TinyConv(torch.nn.Module):
        receptive_field = 5

        def __init__(self, n_controls):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv1d(1 + n_controls, 1, 5)

        def forward(self, x, c):
            cond = torch.cat([x[:, None], c[:, :, None].expand(-1, -1, x.shape[1])], dim=1)
            return self.conv(cond)[:, 0]

    controls = tiny_controls()
    model = TinyConv(controls.vector_size)
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    settings = [{"drive": 1.0, "tone": 5.0, "diodes": "silicon"},
                {"drive": 9.0, "tone": 5.0, "diodes": "led"}]
    whole = ev.torch_predictor(model, controls, chunk=10_000)(x, settings)
    pieces = ev.torch_predictor(model, controls, chunk=64)(x, settings)
    assert whole.shape == (2, 1000)
    np.testing.assert_allclose(pieces, whole, atol=1e-6)
    assert not np.allclose(whole[0], whole[1])


def test_di_clips_bundled_folder_and_refusals(tmp_path):
    clips = ev.di_clips(None, RATE)
    assert len(clips) == 1 and clips[0][0] == "di_guitar"
    assert 5 * RATE <= len(clips[0][1]) <= 10 * RATE and np.max(np.abs(clips[0][1])) > 0.05
    assert len(ev.di_clips(None, RATE, max_seconds=1.0)[0][1]) == RATE

    sf.write(tmp_path / "a.wav", np.full(100, 0.1, np.float32), 44_100)
    with pytest.raises(ValueError, match=r"a\.wav.*44100"):
        ev.di_clips(tmp_path, RATE)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ev.EvaluationError, match=r"no \.wav"):
        ev.di_clips(empty, RATE)
    with pytest.raises(ev.EvaluationError, match="no such"):
        ev.di_clips(tmp_path / "missing", RATE)
    silent = tmp_path / "silent"
    silent.mkdir()
    sf.write(silent / "s.wav", np.zeros(100, np.float32), RATE)
    with pytest.raises(ev.EvaluationError, match="silent"):
        ev.di_clips(silent, RATE)


def test_metrics_file_is_json_with_null_for_infinite_values(tmp_path):
    doc = ev.metrics_document(grid={"summary": ev.summarize([0.1]), "distance": math.inf})
    path = ev.write_metrics(tmp_path / "metrics.json", doc)
    data = json.loads(path.read_text())
    assert data["format"] == "knobcap-metrics" and data["grid"]["distance"] is None
    assert data["verdicts"]["great"] == 0.01 and data["verdicts"]["probably not"] is None
    assert not list(tmp_path.glob(".*tmp"))


# ------------------------------------------------------------------------------- a whole run folder
class ToyPedal:
    """A cheap stand-in with the TS808's controls, so a session can be reamped in milliseconds."""

    name = "toy808"

    def __init__(self) -> None:
        from knobcap.devices import get_device

        self.controls = get_device("ts808").controls

    def process(self, audio, sample_rate, setting):
        s = self.controls.validate_setting(setting)
        gain = 1.0 + float(s["drive"]) * (2.0 if s["diodes"] == "led" else 1.0)
        return (0.3 + 0.02 * float(s["tone"])) * np.tanh(gain * np.asarray(audio, dtype=np.float64))


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A session reamped through ToyPedal (a few takes) and a run holding a tiny untrained WaveNet."""
    torch = pytest.importorskip("torch")
    from knobcap.capture.reamp import reamp_session
    from knobcap.capture.session import Session, init_session, make_plan
    from knobcap.devices import register_device
    from knobcap.models.base import create_model
    from knobcap.models.modelfile import ModelFile, save_model_file

    register_device("toy808", ToyPedal)
    root = tmp_path_factory.mktemp("session")
    pedal = ToyPedal()
    init_session(root, pedal.controls, "toy808")
    make_plan(root, n=8, seconds=30.0)
    session = Session.open(root)
    reamp_session(session, pedal)
    torch.manual_seed(0)
    model = create_model("wavenet", tiny_wavenet_config(pedal.controls.vector_size, head_scale=0.02))
    run = root / "runs" / "r1"
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    save_model_file(run / "model.knobcap", ModelFile("wavenet", dict(model.config), pedal.controls, 48_000,
                                                     weights))
    return session, run, model


def test_evaluate_run_writes_metrics_for_every_kind_of_evaluation(toy_run):
    session, run, model = toy_run
    updates = []
    doc = ev.evaluate_run(run, grid=2, di_settings=2, di_seconds=1.0,
                          progress=lambda task, done, total: updates.append(task))
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk["format"] == "knobcap-metrics" and on_disk["device"] == "toy808"  # found in reamp.json
    plan = session.plan()
    held = [t for t in plan if t.role == "holdout"]
    assert len(on_disk["heldout_settings"]["rows"]) == len(held) >= 1
    assert len(on_disk["heldout_time"]["rows"]) == len(plan) - len(held)
    assert {r["role"] for r in on_disk["heldout_time"]["rows"]} <= {"train", "anchor"}
    assert len(on_disk["grid"]["rows"]) == 2 * 2 * 4
    trained = [r for r in on_disk["grid"]["rows"] if r["trained"]]
    assert on_disk["grid"]["summary"]["count"] == 16 - len(trained)
    assert trained, "the anchors sit at knob corners, so some corner grid points are training settings"
    assert len(on_disk["di"]["rows"]) == 2 and on_disk["di"]["clips"] == ["di_guitar"]
    assert on_disk["headline"]["source"] == "grid"
    assert {"held-out time", "held-out settings", "dense grid", "DI di_guitar"} <= set(updates)
    assert (run / "cache").is_dir()

    # the held-out-setting ESR is what one computes by hand from the take and the torch model
    seg = session.input().map.segment("validation_2")
    take = held[0]
    x = session.input().audio
    first = seg.start - 1000  # more than the tiny model's receptive field
    y = ev.torch_predictor(model, session.controls)(x[first:seg.stop], [take.setting])[0][1000:]
    row = next(r for r in doc["heldout_settings"]["rows"] if r["take"] == take.take)
    assert row["esr"] == pytest.approx(ev.esr(y, session.aligned_take(take.take)[seg.start:seg.stop]),
                                       rel=1e-3)


def test_evaluate_run_without_a_device_and_refusals(toy_run, tmp_path):
    _, run, _ = toy_run
    doc = ev.evaluate_run(run, device="none", write=False)
    assert "grid" not in doc and "di" not in doc and doc["headline"]["source"] == "heldout_settings"
    with pytest.raises(ev.EvaluationError, match=r"no model\.knobcap"):
        ev.evaluate_run(tmp_path)
    from knobcap.devices import register_device

    class OneKnob:
        name = "oneknob"
        controls = Controls(knobs=(Knob("gain"),))

        def process(self, audio, rate, setting):
            return audio

    register_device("oneknob", OneKnob)
    with pytest.raises(ev.EvaluationError, match="pass the device the session was recorded with"):
        ev.evaluate_run(run, device="oneknob", grid=2, write=False)
