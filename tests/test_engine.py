"""The streaming engine equals the PyTorch models (<= 1e-5) with changing knobs and mixed block sizes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from knobcap.controls import Switch
from knobcap.models.modelfile import ModelFile, save_model_file
from knobcap.runtime.engine import Engine, EngineError, ramp_trajectory
from knobcap.runtime.engine.activations import tanh_array
from playkit import tiny_controls

torch = pytest.importorskip("torch")
from knobcap.models.base import create_model  # noqa: E402

CONTROLS = tiny_controls(Switch("mode", ("a", "b", "c")))  # a three-way switch as well
RATE = 48_000
RAMP_MS = 5.0


def wavenet_config(activation: str = "tanh", mixin: str = "linear", film: bool = False) -> dict:
    return {"n_controls": CONTROLS.vector_size, "head_scale": 0.3, "activation": activation, "mixin": mixin,
            "film": film,
            "arrays": [{"channels": 6, "head_size": 3, "kernel_size": 3, "dilations": [1, 2, 4, 8, 16, 32]},
                       {"channels": 3, "head_size": 1, "kernel_size": 2, "dilations": [1, 64, 128]}]}


def torch_model(architecture: str, config: dict, seed: int = 0, gain: float = 2.0, film_std: float = 0.3):
    torch.manual_seed(seed)
    model = create_model(architecture, config).eval()
    with torch.no_grad():  # larger weights than the default init: drive the activations nonlinear
        for name, p in model.named_parameters():
            if name.endswith("film.weight"):  # FiLM starts at zero (g = 1): make the gains move
                p.normal_(0.0, film_std)
            else:
                p.mul_(gain)
    return model


def model_file(model) -> ModelFile:
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    return ModelFile(model.architecture, model.config, CONTROLS, RATE, weights)


EVENTS = {0: {"drive": 2.0, "tone": 8.0, "diodes": "silicon", "mode": "a"},
          3000: {"drive": 9.5},
          3100: {"tone": 1.0, "mode": "c"},  # a second move while the first still ramps
          9000: {"diodes": "led", "drive": 0.0},
          15000: {"mode": "b"}}
LENGTH = 20_000


def conditioning_path() -> np.ndarray:
    """The (C, T) vectors the engine should use, from the documented ramp law."""
    ramp = round(RAMP_MS * 1e-3 * RATE)
    mask = np.zeros(CONTROLS.vector_size, bool)
    mask[: len(CONTROLS.knobs)] = True
    out = np.zeros((CONTROLS.vector_size, LENGTH), np.float32)
    setting = dict(EVENTS[0])
    current = CONTROLS.to_vector(setting).astype(float)
    bounds = [*sorted(EVENTS), LENGTH]
    for start, stop in itertools.pairwise(bounds):
        setting.update(EVENTS[start])
        target = CONTROLS.to_vector(setting).astype(float)
        n_ramp = 0 if start == 0 else ramp
        # A new move starts from where the last one got to (not from its target).
        path = ramp_trajectory(current, target, mask, n_ramp, stop - start)
        out[:, start:stop] = path
        reached = min(stop - start, n_ramp) / n_ramp if n_ramp else 1.0
        start_vec = current.copy()
        start_vec[~mask] = target[~mask]
        current = start_vec + (target - start_vec) * reached
    return out


def run_engine(engine: Engine, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    y = np.zeros_like(x)
    pos, i = 0, 0
    later = sorted(EVENTS)[1:]
    while pos < x.size:
        stop = min([e for e in later if e > pos] + [x.size])
        n = min(sizes[i % len(sizes)], stop - pos)
        i += 1
        engine.process_block(x[pos:pos + n], y[pos:pos + n])
        pos += n
        if pos in EVENTS:
            engine.set(EVENTS[pos])
    return y


def torch_reference(model, x: np.ndarray) -> np.ndarray:
    cond = conditioning_path()
    pad = model.receptive_field - 1
    xp = np.concatenate([np.zeros(pad, np.float32), x])
    cp = np.concatenate([np.repeat(cond[:, :1], pad, axis=1), cond], axis=1)
    with torch.no_grad():
        return model(torch.from_numpy(xp)[None], torch.from_numpy(cp)[None])[0].numpy()


@pytest.mark.parametrize(("architecture", "config", "gain"), [
    ("wavenet", wavenet_config(), 2.0),
    ("wavenet", wavenet_config("leaky_relu"), 1.2),  # unbounded: keep the output at audio level
    ("wavenet", wavenet_config("hardtanh"), 2.0),
    ("wavenet", wavenet_config(mixin="product"), 2.0),
    ("wavenet", wavenet_config(film=True), 2.0),
    ("wavenet", wavenet_config("leaky_relu", film=True), 1.2),
    ("wavenet", wavenet_config(mixin="product", film=True), 2.0),
    ("lstm", {"n_controls": CONTROLS.vector_size, "hidden_size": 12, "num_layers": 2}, 2.0),
])
def test_engine_equals_torch_with_moving_knobs_and_mixed_blocks(architecture, config, gain):
    model = torch_model(architecture, config, gain=gain)
    x = (0.6 * np.random.default_rng(1).standard_normal(LENGTH)).astype(np.float32)
    x[5000:5400] = 0.0  # a little silence too
    expected = torch_reference(model, x)
    engine = Engine(model_file(model), ramp_ms=RAMP_MS, setting=EVENTS[0])
    got = run_engine(engine, x, [1, 7, 64, 333, 4096, 512, 2, 129])
    assert 0.05 < np.std(expected) < 5.0  # the check compares real signals at audio level
    assert np.max(np.abs(got - expected)) <= 1e-5
    # reset returns to the same state: the same input gives the same output.
    engine.reset()
    engine.set(EVENTS[0], ramp_ms=0)
    engine.reset()
    again = run_engine(engine, x, [256])
    assert np.max(np.abs(again - expected)) <= 1e-5


def test_ramp_has_no_steps_and_switches_jump():
    model = torch_model("lstm", {"n_controls": CONTROLS.vector_size, "hidden_size": 4, "num_layers": 1})
    engine = Engine(model_file(model), ramp_ms=10.0, setting={"drive": 0.0, "diodes": "silicon"})
    engine.set({"drive": 10.0, "diodes": "led"})
    x = np.zeros(64, np.float32)
    engine.process(x, block_size=64)
    vec = engine.vector
    assert vec[0] == pytest.approx(64 / 480)  # drive: 64 of 480 ramp samples along
    assert vec[2] == 1.0  # diodes jumped
    engine.process(np.zeros(480, np.float32), block_size=100)
    assert engine.vector[0] == pytest.approx(1.0)


def test_fast_tanh_accuracy():
    x = np.linspace(-20, 20, 400_001).astype(np.float32)
    err = np.abs(tanh_array(x).astype(np.float64) - np.tanh(x.astype(np.float64)))
    assert err.max() < 5e-7
    assert np.all(np.abs(tanh_array(x)) <= 1.0)


def test_from_file_and_errors(tmp_path):
    model = torch_model("wavenet", wavenet_config())
    path = save_model_file(tmp_path / "m.knobcap", model_file(model))
    engine = Engine.from_file(path)
    assert engine.receptive_field == model.receptive_field
    with pytest.raises(EngineError, match="float32"):
        engine.process_block(np.zeros(8), np.zeros(8))
    with pytest.raises(EngineError, match="max_block"):
        engine.process_block(np.zeros(5000, np.float32), np.zeros(5000, np.float32))
    with pytest.raises(ValueError, match="out of range"):
        engine.set({"drive": 11})
    other = ModelFile("mystery", {"n_controls": 4}, CONTROLS, RATE, {"w": np.zeros(1, np.float32)})
    with pytest.raises(EngineError, match="cannot run architecture 'mystery'"):
        Engine(other)


@pytest.mark.parametrize("film", [False, True])
def test_process_block_allocates_no_buffers(film):
    import tracemalloc

    model = torch_model("wavenet", wavenet_config(film=film))
    engine = Engine(model_file(model), setting=EVENTS[0])
    x = np.zeros(64, np.float32)
    y = np.zeros(64, np.float32)
    engine.process_block(x, y)
    # A knob ramp over the first half of the measured blocks (per-sample rows), held for the rest.
    engine.set({"drive": 9.0, "tone": 1.0}, ramp_ms=250 * 64 / RATE * 1e3)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(500):
        engine.process_block(x, y)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename") if stat.size_diff > 0)
    assert grown < 4096  # tracemalloc's own bookkeeping at most; one 64-sample buffer a block would be 128 kB


def test_engine_predictor_runs_a_film_model(tmp_path):
    from knobcap.evaluation.evaluate import engine_predictor, model_predictor, torch_predictor
    from knobcap.models.modelfile import load_model_file

    model = torch_model("wavenet", wavenet_config(film=True))
    loaded = load_model_file(save_model_file(tmp_path / "film.knobcap", model_file(model)))
    settings = [EVENTS[0], {"drive": 9.0, "tone": 0.5, "diodes": "led", "mode": "b"}]
    x = (0.6 * np.random.default_rng(2).standard_normal(3000)).astype(np.float32)
    want = torch_predictor(model, CONTROLS)(x, settings)
    assert np.max(np.abs(want[0] - want[1])) > 0.05  # the settings differ audibly
    for predict in (engine_predictor(loaded, block=512), model_predictor(loaded)):
        assert np.max(np.abs(predict(x, settings) - want)) <= 1e-5
