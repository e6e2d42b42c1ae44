"""Output-gain knobs: found by screening a virtual device, held out of the model and the design, and
applied exactly by every runtime (engine, torch, .nam export)."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from knobcap.capture import gain_knobs as gk
from knobcap.capture.design import initial_design
from knobcap.capture.screening import screen_device
from knobcap.capture.testsignal import generate_signal
from knobcap.controls import Controls, ControlsError, Knob, Switch
from knobcap.controls.toml import controls_to_toml
from knobcap.devices import VirtualDevice
from knobcap.evaluation.evaluate import engine_predictor, torch_predictor
from knobcap.models.modelfile import load_model_file
from knobcap.runtime.engine import Engine
from knobcap.runtime.export.nam import ExportError, nam_snapshot
from knobcap.runtime.export.proteus import proteus_model
from knobcap.training.data import TrainingData
from knobcap.training.refine import candidates
from playkit import make_session, tiny_model

LEVEL = Knob("level", -20.0, 4.0, default=-8.0, gain_db=(-12.0, 0.0, 12.0))


def level_controls() -> Controls:
    return Controls(knobs=(Knob("drive", taper="audio"), Knob("tone"), LEVEL),
                    switches=(Switch("diodes", ("silicon", "led")),), name="Tiny Level")


class LevelPedal(VirtualDevice):
    """A clipper with a tone filter and a level after both, in dB; ``pre`` is a level before the clipper
    that is a pure gain only while ``mode`` is ``clean``."""

    name = "level-pedal"
    controls = Controls(knobs=(Knob("drive"), Knob("level", -20.0, 4.0, default=-8.0),
                               Knob("pre", -6.0, 6.0, default=0.0)),
                        switches=(Switch("mode", ("clean", "dirty")),))

    def process(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        x = np.asarray(audio, np.float64) * 10.0 ** (float(setting["pre"]) / 20.0)  # type: ignore[arg-type]
        if setting["mode"] == "dirty":
            x = np.tanh(4.0 * x)
        y = np.tanh((1.0 + 3.0 * float(setting["drive"])) * x)  # type: ignore[arg-type]
        y = np.convolve(y, [0.5, 0.3, 0.2])[: len(y)]
        return (y * 10.0 ** (float(setting["level"]) / 20.0)).astype(np.float32)  # type: ignore[arg-type]


def test_a_scaled_copy_reads_as_its_gain_and_anything_else_does_not() -> None:
    y0 = np.sin(np.linspace(0.0, 40.0, 2000))
    gains, residual = gk.gain_curve([0.5 * y0, 2.0 * y0], y0)  # type: ignore[misc]
    assert np.allclose(gains, [20 * np.log10(0.5), 20 * np.log10(2.0)]) and residual < 1e-20
    _, clipped = gk.gain_curve([np.tanh(3 * y0)], y0)  # type: ignore[misc]
    assert clipped > gk.MAX_RESIDUAL
    assert gk.gain_curve([y0], np.zeros_like(y0)) is None
    assert gk.gain_curve([0 * y0, y0], y0) == (pytest.approx([-gk.MAX_GAIN_DB, 0.0]), 0.0)  # volume at 0
    assert gk.gain_curve([-y0], y0) is None  # an inverted copy is no level


def test_screening_finds_the_level_after_the_clipper_and_not_the_one_before_it() -> None:
    device = LevelPedal()
    controls = screen_device(device, levels=5)
    level = controls["level"]
    assert isinstance(level, Knob) and level.gain_db is not None
    assert np.allclose(level.gain_db, [-12.0, -6.0, 0.0, 6.0, 12.0], atol=1e-3)  # 0 dB at its default
    # "pre" is a pure gain at the defaults (mode clean) but not with mode dirty: not an output gain
    assert controls["pre"].gain_db is None and controls["drive"].gain_db is None  # type: ignore[union-attr]


def test_the_controls_file_keeps_the_gain_table_and_refuses_a_bad_one() -> None:
    controls = level_controls()
    again = Controls.from_dict(tomllib.loads(controls_to_toml(controls)))
    assert again == controls
    setting = {"drive": 3.0, "tone": 4.0, "level": 4.0, "diodes": "led"}
    assert controls.output_gain(setting) == pytest.approx(10 ** (12 / 20))
    assert controls.output_gain(setting | {"level": -14.0}) == pytest.approx(10 ** (-6 / 20))
    assert controls.to_vector(setting)[2] == 0.0  # the model never sees it
    assert not np.array_equal(controls.to_vector(setting)[:2], controls.to_vector(setting | {"drive": 5})[:2])
    for bad in ([1.0], [0.0, 200.0], ["loud", 1.0], [0.0] * 1002):
        with pytest.raises(ControlsError, match="gain_db"):
            Controls.from_dict({"knob": [{"name": "level", "gain_db": bad}]}, source="c.toml")


def test_a_design_holds_the_level_at_its_default_and_spreads_takes_over_the_rest() -> None:
    controls = level_controls()
    plain = replace(controls, knobs=controls.knobs[:2])
    design = initial_design(controls, 20, seed=3)
    assert all(s["level"] == LEVEL.default_value for s in design.settings)
    assert [{k: v for k, v in s.items() if k != "level"} for s in design.settings] == \
        initial_design(plain, 20, seed=3).settings
    assert all(s["level"] == LEVEL.default_value for s in candidates(controls, np.random.default_rng(0)))


def test_training_data_takes_the_level_out_of_the_takes(tmp_path: Path) -> None:
    controls = level_controls()
    plan = [("take01", {"drive": 2.0, "tone": 5.0, "level": 4.0, "diodes": "led"}, "train"),
            ("take02", {"drive": 7.0, "tone": 1.0, "level": -20.0, "diodes": "silicon"}, "train")]
    signal = generate_signal(30.0)

    def device(x: np.ndarray, setting: Mapping[str, object]) -> np.ndarray:
        return (np.tanh(3 * x) * controls.output_gain(setting)).astype(np.float32)

    data = TrainingData.from_session(make_session(tmp_path / "s", controls, plan, signal, device))
    for take in data.takes:
        assert np.allclose(take.audio, np.tanh(3 * signal.audio), atol=1e-5)
        assert take.vector[2] == 0.0
    assert data.unvaried_knobs() == []  # the level is applied, not learned: its one value is no gap
    same_tone = [(take, setting | {"tone": 5.0, "level": -8.0}, role) for take, setting, role in plan]
    data = TrainingData.from_session(make_session(tmp_path / "t", controls, same_tone, signal, device))
    assert data.unvaried_knobs() == ["tone"]


def test_every_runtime_scales_the_output_by_the_level(tmp_path: Path) -> None:
    controls = level_controls()
    model = load_model_file(tiny_model(tmp_path / "m.knobcap", controls))
    x = generate_signal(30.0).audio[48_000:52_000]
    loud = {"drive": 6.0, "tone": 3.0, "level": 4.0, "diodes": "led"}
    quiet = loud | {"level": -14.0}
    engine = engine_predictor(model)(x, [loud, quiet])
    assert np.allclose(engine[0] * 10 ** (-18 / 20), engine[1], atol=1e-6) and np.abs(engine[1]).max() > 1e-3
    from knobcap.models import bridge

    torch_out = torch_predictor(bridge.load(model), controls)(x, [loud, quiet])
    assert np.allclose(torch_out, engine, atol=1e-5)
    # a level move ramps the gain in dB as knobs ramp: no step in the output
    stream = Engine(model, ramp_ms=10.0, setting=loud)
    first = stream.process(x[:2000], block_size=256)
    stream.set({"level": -20.0})
    rest = stream.process(x[2000:], block_size=256)
    fixed = Engine(model, ramp_ms=0.0, setting=loud).process(x, block_size=256)
    ramp = round(0.010 * 48_000)
    expected_db = 12.0 - 24.0 * np.minimum(np.arange(1, len(rest) + 1), ramp) / ramp
    assert np.allclose(first, fixed[:2000], atol=1e-6)
    assert np.allclose(rest, fixed[2000:] * 10 ** ((expected_db - 12.0) / 20), atol=1e-5)
    # .nam snapshots bake the level into the head's scale; Proteus cannot hold it
    a, b = nam_snapshot(model, loud), nam_snapshot(model, quiet)
    assert a["config"]["head_scale"] == pytest.approx(b["config"]["head_scale"] * 10 ** (18 / 20), rel=1e-6)
    assert a["weights"][:-1] == b["weights"][:-1]
    lstm = replace(model, architecture="lstm")
    with pytest.raises(ExportError, match="output gain"):
        proteus_model(lstm)


def test_a_setting_that_differs_from_a_take_only_in_its_level_counts_as_trained() -> None:
    from knobcap.evaluation.evaluate import nearest_distance

    controls = level_controls()
    take = {"drive": 2.0, "tone": 5.0, "level": -8.0, "diodes": "led"}
    assert nearest_distance(controls, take | {"level": 4.0}, [take]) == 0.0
    assert nearest_distance(controls, take | {"tone": 6.0}, [take]) > 0.0


class VolumePedal(VirtualDevice):
    """A clipper with a volume pot after it whose end is silence (as most real pedals' volume)."""

    name = "volume-pedal"
    controls = Controls(knobs=(Knob("drive"), Knob("volume", 0.0, 1.0, default=0.5)))

    def process(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        y = np.tanh((1.0 + 5.0 * float(setting["drive"])) * np.asarray(audio, np.float64))  # type: ignore[arg-type]
        return (y * float(setting["volume"]) ** 2).astype(np.float32)  # type: ignore[arg-type]


def test_a_volume_that_ends_in_silence_is_screened_as_an_output_gain_and_scored_without_its_silence() -> None:
    from knobcap.evaluation.evaluate import evaluate_against_device

    controls = screen_device(VolumePedal(), levels=5)
    volume = controls["volume"]
    assert isinstance(volume, Knob) and volume.gain_db is not None
    assert volume.gain_db[0] == -gk.MAX_GAIN_DB
    assert np.allclose(volume.gain_db[1:], 40 * np.log10([0.5, 1.0, 1.5, 2.0]), atol=1e-3)  # (v / 0.5)^2
    x = generate_signal(30.0).audio[48_000:50_000]
    settings = [{"drive": 0.5, "volume": v} for v in (0.0, 0.5, 1.0)]
    silent: list = []

    def predict(audio: np.ndarray, chosen: list) -> np.ndarray:
        return np.stack([VolumePedal().process(audio, 48_000, s) * 1.01 for s in chosen])

    rows = evaluate_against_device(predict, VolumePedal(), controls, x, 48_000, settings, silent=silent)
    assert [r.setting["volume"] for r in rows] == [0.5, 1.0] and silent == [settings[0]]
    assert all(r.esr == pytest.approx(1e-4, rel=1e-3) for r in rows)


def test_the_plan_says_the_level_is_held_and_why() -> None:
    from knobcap.capture.design import describe_method

    text = describe_method(initial_design(level_controls(), 20, seed=0))
    assert "level is an output gain" in text and "at -8" in text


def test_a_gain_next_to_a_silent_end_is_interpolated_in_amplitude_and_elsewhere_in_db() -> None:
    volume = Knob("volume", 0.0, 10.0, default=5.0, gain_db=(-gk.MAX_GAIN_DB, -12.0, 0.0))
    assert volume.gain(0.0) == -gk.MAX_GAIN_DB
    assert volume.gain(2.5) == pytest.approx(-12.0 + 20 * np.log10(0.5), abs=1e-3)  # half the amplitude
    assert volume.gain(1e-9) == pytest.approx(-gk.MAX_GAIN_DB, abs=1.0)
    assert volume.gain(5.0) == pytest.approx(-12.0) and volume.gain(10.0) == pytest.approx(0.0)
    assert volume.gain(7.5) == pytest.approx(-6.0)  # in dB between audible entries


def recorded_screen(tmp_path: Path, device: VirtualDevice, levels: int = 5) -> Controls:
    """``knobcap screen`` with the probes recorded through the virtual reamp (a latency and a noise
    floor a probe, as a real interface's) and measured as a real device's are."""
    from knobcap.capture.screen_session import screen_session
    from knobcap.controls.toml import save_controls

    root = tmp_path / device.name
    root.mkdir()
    save_controls(device.controls, root / "controls.toml")
    outcome = screen_session(root, levels=levels, device=device)
    assert outcome.controls is not None
    return outcome.controls


def test_recorded_probes_find_the_level_after_the_clipper_and_not_the_one_before_it(tmp_path: Path) -> None:
    controls = recorded_screen(tmp_path, LevelPedal())
    level = controls["level"]
    assert isinstance(level, Knob) and level.gain_db is not None
    assert np.allclose(level.gain_db, [-12.0, -6.0, 0.0, 6.0, 12.0], atol=0.02)  # through -80 dBFS noise
    assert controls["pre"].gain_db is None and controls["drive"].gain_db is None  # type: ignore[union-attr]


def test_recorded_probes_take_a_volume_turned_down_as_silence_and_read_its_gain(tmp_path: Path) -> None:
    controls = recorded_screen(tmp_path, VolumePedal())
    volume = controls["volume"]
    assert isinstance(volume, Knob) and volume.gain_db is not None and volume.warp is not None
    assert volume.gain_db[0] == -gk.MAX_GAIN_DB
    assert np.allclose(volume.gain_db[1:], 40 * np.log10([0.5, 1.0, 1.5, 2.0]), atol=0.02)
    assert controls["drive"].gain_db is None  # type: ignore[union-attr]


def test_a_recorded_gain_needs_scaled_copies_within_the_noise_and_the_same_curve_far_away() -> None:
    rng = np.random.default_rng(0)
    x = np.tanh(3 * rng.standard_normal(20_000))
    knob = Knob("level", 0.0, 1.0, default=0.5)
    noise = 1e-8  # -80 dBFS a sample

    def take(value: float, y: np.ndarray) -> gk.Recording:
        return gk.Recording(value, y + np.sqrt(noise) * rng.standard_normal(len(y)), noise)

    own = [take(v, (0.5 + v) * x) for v in (0.0, 0.5, 1.0)]
    far = [take(v, 0.3 * (0.5 + v) * x) for v in (0.5, 0.0, 1.0)]
    gains = gk.recorded_knob_gain(knob, own, far, 3)
    assert gains == pytest.approx([20 * np.log10(0.5), 0.0, 20 * np.log10(1.5)], abs=0.01)
    assert gk.recorded_knob_gain(knob, own, [], 3) == gains  # the knob alone: nothing far to test
    bent = [far[0], far[1], take(1.0, 0.3 * 1.5 * np.tanh(2 * x))]  # clips far away: a level before it
    assert gk.recorded_knob_gain(knob, own, bent, 3) is None
    louder = [far[0], far[1], take(1.0, 0.3 * 1.7 * x)]  # a copy, but a different curve far away
    assert gk.recorded_knob_gain(knob, own, louder, 3) is None
    toned = [own[0], own[1], take(1.0, 1.5 * np.convolve(x, [0.9, 0.1])[:len(x)])]
    assert gk.recorded_knob_gain(knob, toned, far, 3) is None


class PreampPedal(VirtualDevice):
    """A preamp whose volume drives the clipping and is silent at 0 (not an output gain)."""

    name = "preamp-pedal"
    controls = Controls(knobs=(Knob("volume", 0.0, 1.0, default=0.5), Knob("tone")),
                        switches=(Switch("bright", ("off", "on")),))

    def process(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        x = np.asarray(audio, np.float64)
        if setting["bright"] == "on":
            x = x + 0.5 * np.diff(x, prepend=0.0)
        y = np.tanh(6.0 * float(setting["volume"]) * x)  # type: ignore[arg-type]
        return np.convolve(y, [1.0, 0.02 * float(setting["tone"])])[: len(y)].astype(np.float32)  # type: ignore[arg-type]


def test_a_knob_silent_at_an_end_keeps_plans_where_the_device_sounds(tmp_path: Path) -> None:
    from knobcap.capture.design import audible_space

    controls = screen_device(PreampPedal(), levels=5)
    volume = controls["volume"]
    assert isinstance(volume, Knob) and volume.gain_db is None and volume.audible == (0.25, 1.0)
    assert controls["tone"].audible is None  # type: ignore[union-attr]
    again = tomllib.loads(controls_to_toml(controls))
    assert Controls.from_dict(again) == replace(controls, source=None)
    for seed in range(3):
        values = [p.setting["volume"] for p in initial_design(controls, 16, seed=seed).points]
        assert min(values) == 0.25 and max(values) == 1.0  # its audible ends are the design's ends
    assert all(0.25 <= s["volume"] <= 1.0 for s in candidates(controls, np.random.default_rng(0)))
    assert audible_space(level_controls()) == level_controls()  # no audible range: unchanged
    recorded = recorded_screen(tmp_path, PreampPedal())
    assert recorded["volume"].audible == (0.25, 1.0)  # type: ignore[union-attr]
    assert "audible = [0.25, 1.0]" in (tmp_path / "preamp-pedal" / "controls.toml").read_text()
    bad = {"knob": [{"name": "volume", "min": 0.0, "max": 1.0, "audible": [1.0, 0.5]}]}
    with pytest.raises(ControlsError, match="'audible' must be two values from min to max"):
        Controls.from_dict(bad)


def test_float_residue_is_silence_and_a_quiet_playing_is_not() -> None:
    from knobcap.metrics import SILENT_RMS, is_silent

    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(100)) and is_silent(1e-9 * rng.standard_normal(1000))  # a tone stack at 0
    assert SILENT_RMS == 1e-5 and not is_silent(1e-4 * rng.standard_normal(1000))  # -80 dBFS: sound
