"""The public API at the package root: ``knobcap.load_model(path)(audio, rate, **setting)`` is the streaming
engine, a device is called the same way, and ``import knobcap`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import knobcap
from knobcap.runtime.engine import Engine
from playkit import RATE, tiny_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("api") / "m.knobcap")


def guitar(n: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n) / RATE
    noise = 0.05 * np.random.default_rng(seed).standard_normal(n)
    return (0.4 * np.sin(2 * np.pi * 110 * t) * np.exp(-2 * t) + noise).astype(np.float32)


def test_a_loaded_model_is_the_engine_at_a_setting(model_path) -> None:
    model = knobcap.load_model(model_path)
    x = guitar(6000)
    setting = {"drive": 5.0, "tone": 3.0, "diodes": "led"}
    expected = Engine.from_file(model_path, setting=setting).process(x)
    y = model(x, RATE, drive=5, tone=3, diodes="led")
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - expected)) < 1e-6
    assert np.array_equal(model(x, RATE, setting), y)  # a mapping, as well as keywords
    assert np.array_equal(model(x, RATE, {"drive": 9.0, "tone": 3.0}, drive=5, diodes="led"), y)  # kw win
    assert np.array_equal(model(x, RATE, drive=5, tone=3, diodes="led"), y)  # each call starts from silence


def test_controls_not_given_take_their_defaults(model_path) -> None:
    model = knobcap.load_model(model_path)
    x = guitar(3000, 1)
    defaults = model.controls.default_setting()
    assert np.max(np.abs(model(x, RATE) - Engine.from_file(model_path, setting=defaults).process(x))) < 1e-6
    assert not np.allclose(model(x, RATE, drive=10), model(x, RATE, drive=0))


def test_stereo_and_another_rate(model_path) -> None:
    model = knobcap.load_model(model_path)
    left, right = guitar(4800, 2), guitar(4800, 3)
    both = model(np.stack([left, right], axis=1), RATE, drive=7)
    assert both.shape == (4800, 2)
    assert np.array_equal(both[:, 0], model(left, RATE, drive=7))
    assert np.array_equal(both[:, 1], model(right, RATE, drive=7))
    x = guitar(4410, 4)
    y = model(x, 44_100, drive=7)
    assert y.shape == x.shape and np.all(np.isfinite(y)) and np.sqrt(np.mean(y**2)) > 1e-3


def test_bad_calls_say_what_to_fix(model_path) -> None:
    model = knobcap.load_model(model_path)
    with pytest.raises(ValueError, match="shape"):
        model(np.zeros((4, 4, 4), np.float32), RATE)
    with pytest.raises(ValueError, match="sample_rate must be a whole number of Hz"):
        model(np.zeros(16, np.float32), 44_100.5)
    with pytest.raises(ValueError, match="unknown control 'volume'"):
        model(np.zeros(16, np.float32), RATE, volume=3)
    with pytest.raises(ValueError, match="out of range"):
        model(np.zeros(16, np.float32), RATE, drive=30)


def test_a_device_has_the_same_call_shape() -> None:
    device = knobcap.get_device("ts808", oversampling=4)
    x = guitar(2400, 5).astype(np.float64)
    setting = {**device.controls.default_setting(), "drive": 5.0, "diodes": "led"}
    expected = device.process(x, RATE, setting)
    assert np.array_equal(device(x, RATE, drive=5, diodes="led"), expected)
    assert np.array_equal(device(x, RATE, setting), expected)  # the mapping form the code used before
    assert "ts808" in knobcap.available_devices()


def test_import_knobcap_is_light_and_names_resolve_on_use() -> None:
    code = ("import json, sys; import knobcap; "
            "before = sorted(m for m in ('numba', 'scipy', 'torch', 'numpy') if m in sys.modules); "
            "knobcap.Controls; knobcap.Session; knobcap.get_device; "
            "print(json.dumps({'before': before, 'version': knobcap.__version__}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"before": [], "version": knobcap.__version__}
    assert knobcap.Controls.__module__.startswith("knobcap.controls")
    assert set(knobcap.__all__) <= set(dir(knobcap))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        knobcap.nothing_here  # noqa: B018
