"""The output DC blocker: its filter, the choice from the takes, the model file and every runtime."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy.signal import freqz

from knobcap.dsp import dc_blocker
from knobcap.models.modelfile import ModelFileError, load_model_file, save_model_file
from knobcap.runtime.engine import Engine
from playkit import tiny_model

RATE = 48_000
SETTING = {"drive": 7.0, "tone": 3.0, "diodes": "led"}


def test_blocker_response_and_streaming_equal_the_whole_signal():
    r = dc_blocker.pole(2.0, RATE)
    _, response = freqz([1.0, -1.0], [1.0, -r], worN=[0.0, 2.0, 80.0, 1000.0], fs=RATE)
    gain = np.abs(response)
    assert gain[0] == pytest.approx(0.0, abs=1e-12)
    assert gain[1] == pytest.approx(1 / np.sqrt(2), abs=2e-3)  # -3 dB at the corner
    assert gain[2] > 0.9996 and gain[3] > 0.99999  # the audio band is untouched

    rng = np.random.default_rng(0)
    y = (0.1 * rng.standard_normal(30_000) + 0.4).astype(np.float32)
    whole = dc_blocker.apply(y, 2.0, RATE)
    assert whole[0] == 0.0  # it starts in the steady state of the first sample
    assert abs(float(np.mean(whole[-RATE // 4:]))) < 2e-3  # the offset is gone
    streamed = y.copy()
    state = dc_blocker.initial_state()
    start = 0
    for n in [1, 7, 512, 3, 4096, 0, 999]:
        stop = min(start + n, y.size)
        dc_blocker.run_inplace(streamed[start:stop], stop - start, r, state)
        start = stop
    dc_blocker.run_inplace(streamed[start:], y.size - start, r, state)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)
    batch = dc_blocker.apply(np.stack([y, 2 * y]), 2.0, RATE)
    np.testing.assert_allclose(batch[1], 2 * whole, atol=1e-5)


def test_choice_follows_the_takes_dc():
    t = np.arange(48_000) / RATE
    clean = [a * np.sin(2 * np.pi * f * t) for a, f in [(0.1, 100), (0.5, 220), (0.01, 1000)]]
    assert dc_blocker.choose(clean) == dc_blocker.DEFAULT_HZ  # AC-coupled: no mean at all
    offset = [*clean, 0.1 * np.sin(2 * np.pi * 100 * t) - 0.0015]  # 2 % of the rms: a plugin's offset
    assert dc_blocker.choose(offset) is None
    assert dc_blocker.choose([]) is None
    assert dc_blocker.dc_ratio(np.zeros(10)) == 0.0


@pytest.mark.parametrize("value", [0, -1.0, 20.5, float("nan"), True, "2"])
def test_bad_cutoffs_are_refused(value):
    with pytest.raises(ValueError, match="dc_blocker_hz"):
        dc_blocker.check_cutoff(value, "model.knobcap")
    assert dc_blocker.check_cutoff(None, "x") is None
    assert dc_blocker.check_cutoff(20, "x") == 20.0


def test_model_file_round_trip_and_format_1(tmp_path):
    path = tiny_model(tmp_path / "plain.knobcap")
    model = load_model_file(path)
    assert model.dc_blocker_hz is None
    blocked = save_model_file(tmp_path / "blocked.knobcap", replace(model, dc_blocker_hz=2.0))
    assert load_model_file(blocked).dc_blocker_hz == 2.0
    data = json.loads(blocked.read_text())
    assert data["format_version"] == 2

    old = dict(data, format_version=1)
    del old["dc_blocker_hz"]
    (tmp_path / "old.knobcap").write_text(json.dumps(old))
    assert load_model_file(tmp_path / "old.knobcap").dc_blocker_hz is None  # format 1 still loads
    (tmp_path / "bad1.knobcap").write_text(json.dumps(dict(data, format_version=1)))
    with pytest.raises(ModelFileError, match=r"bad1.knobcap.*unknown top-level key.*dc_blocker_hz"):
        load_model_file(tmp_path / "bad1.knobcap")
    (tmp_path / "bad2.knobcap").write_text(json.dumps(dict(data, dc_blocker_hz=500)))
    with pytest.raises(ModelFileError, match=r"bad2.knobcap.*dc_blocker_hz.*500"):
        load_model_file(tmp_path / "bad2.knobcap")


def test_every_runtime_applies_the_blocker(tmp_path):
    plain = load_model_file(tiny_model(tmp_path / "m.knobcap"))
    blocked = replace(plain, dc_blocker_hz=5.0)
    rng = np.random.default_rng(2)
    x = (0.3 * rng.standard_normal(20_000)).astype(np.float32)

    reference = Engine(plain, ramp_ms=0.0, setting=SETTING).process(x, block_size=333)
    expected = dc_blocker.apply(reference, 5.0, RATE)
    assert np.abs(expected - reference).max() > 1e-3  # the blocker does something here

    engine = Engine(blocked, ramp_ms=0.0, setting=SETTING)
    np.testing.assert_allclose(engine.process(x, block_size=333), expected, atol=1e-5)
    engine.reset()  # blocks of any size, after a reset: the same samples
    out = np.zeros_like(x)
    for start in range(0, x.size, 1000):
        engine.process_block(x[start:start + 1000], out[start:start + 1000])
    np.testing.assert_allclose(out, expected, atol=1e-5)
    engine.reset()
    assert np.abs(engine.process(np.zeros(4096, np.float32))).max() == 0.0  # silence answers silence

    from knobcap.evaluation.evaluate import model_predictor
    from knobcap.models.bridge import TorchModel

    torch_out = TorchModel(blocked).render(x, SETTING)
    np.testing.assert_allclose(torch_out, expected, atol=2e-4)
    predicted = model_predictor(blocked)(x, [SETTING])[0]
    np.testing.assert_allclose(predicted, expected, atol=1e-5)
