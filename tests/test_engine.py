"""The streaming engine equals the PyTorch models (<= 1e-5) with changing knobs and mixed block sizes."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

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


def wavenet_config(activation: str = "tanh", mixin: str = "linear", film: bool = False, cond_hidden: int = 0,
                   post_fir: dict | None = None) -> dict:
    extra: dict = {"cond_hidden": cond_hidden} if cond_hidden else {}
    if post_fir:
        extra["post_fir"] = post_fir
    return {"n_controls": CONTROLS.vector_size, "head_scale": 0.3, "activation": activation, "mixin": mixin,
            "film": film, **extra,
            "arrays": [{"channels": 6, "head_size": 3, "kernel_size": 3, "dilations": [1, 2, 4, 8, 16, 32]},
                       {"channels": 3, "head_size": 1, "kernel_size": 2, "dilations": [1, 64, 128]}]}


def torch_model(architecture: str, config: dict, seed: int = 0, gain: float = 2.0, film_std: float = 0.3):
    torch.manual_seed(seed)
    model = create_model(architecture, config).eval()
    with torch.no_grad():  # larger weights than the default init: drive the activations nonlinear
        for name, p in model.named_parameters():
            if name.endswith("film.weight"):  # FiLM starts at zero (g = 1): make the gains move
                p.normal_(0.0, film_std)
            elif name.startswith("post_fir.taps"):  # the FIR starts as the identity: make its taps move
                p.normal_(0.0, 0.3)
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
    ("wavenet", wavenet_config(film=True, cond_hidden=5), 2.0),
    ("wavenet", wavenet_config(mixin="product", film=True, cond_hidden=3), 2.0),
    ("wavenet", wavenet_config(film=True, post_fir={"taps": 9, "hidden": 4}), 2.0),
    ("wavenet", wavenet_config(film=True, cond_hidden=4, post_fir={"taps": 1, "hidden": 2}), 2.0),
    ("wavenet", wavenet_config(film=True, cond_hidden=4, post_fir={"taps": 17, "hidden": 6}), 2.0),
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


# Runs with NUMBA_NRT_STATS=1, which numba reads when it is imported: hence a fresh interpreter.
_NRT_CHECK = """
import importlib, json, pkgutil, sys
import numpy as np
from numba.core.dispatcher import Dispatcher
from numba.core.runtime import rtsys
import knobcap.runtime.engine as package
from knobcap.models.modelfile import load_model_file
from knobcap.runtime.engine import Engine

engine = Engine(load_model_file(sys.argv[1]), setting=json.loads(sys.argv[2]))
x, y = np.zeros(64, np.float32), np.zeros(64, np.float32)
engine.process_block(x, y)  # compiles (or loads the cache) outside the count

# numba wraps every array handed in from Python in an NRT MemInfo: one allocation, freed on return.
# Count those at the jitted functions' doors; any other NRT allocation is the engine's own.
handed = 0

def arrays(value):
    if isinstance(value, np.ndarray):
        return 1
    return sum(arrays(v) for v in value) if isinstance(value, tuple) else 0

def counted(dispatcher):
    def call(*args):
        global handed
        handed += arrays(args)
        return dispatcher(*args)
    return call

for info in pkgutil.iter_modules(package.__path__):
    module = importlib.import_module(f"{package.__name__}.{info.name}")
    for name, value in list(vars(module).items()):
        if isinstance(value, Dispatcher):
            setattr(module, name, counted(value))

blocks = int(sys.argv[4])
engine.set(json.loads(sys.argv[3]), ramp_ms=blocks * 64 / engine.sample_rate * 1e3)
result = {}
for phase in ("ramp", "held"):  # per-sample rows while the knobs move, per-block constants after
    handed = 0
    before = rtsys.get_allocation_stats()
    for _ in range(blocks):
        engine.process_block(x, y)
    after = rtsys.get_allocation_stats()
    result[phase] = {"allocated": after.alloc - before.alloc, "freed": after.free - before.free,
                     "handed": handed}
print(json.dumps(result))
"""


@pytest.mark.parametrize(("mixin", "film", "extra"), [
    *[(m, f, {}) for m, f in itertools.product(["linear", "product"], [False, True])],
    ("linear", True, {"cond_hidden": 4}),
    ("product", True, {"cond_hidden": 3, "post_fir": {"taps": 8, "hidden": 4}}),
    ("linear", False, {"post_fir": {"taps": 5, "hidden": 3}})])
def test_process_block_allocates_nothing_in_numba(tmp_path, mixin, film, extra):
    """numba's own allocation counter (NRT stats; tracemalloc cannot see them) over 250 blocks of a knob
    ramp and 250 at a held setting: nothing beyond the wrappers of the arrays handed in."""
    model = torch_model("wavenet", wavenet_config(mixin=mixin, film=film, **extra))
    path = save_model_file(tmp_path / "m.knobcap", model_file(model))
    env = {**os.environ, "NUMBA_NRT_STATS": "1"}
    out = subprocess.run([sys.executable, "-c", _NRT_CHECK, str(path), json.dumps(EVENTS[0]),
                          json.dumps({"drive": 9.0, "tone": 1.0}), "250"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    for phase, counts in stats.items():
        assert counts["handed"] >= 250, (phase, counts)  # the count saw the block calls
        assert counts["allocated"] == counts["handed"] == counts["freed"], (phase, counts)


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
