"""Export: .nam snapshots load in neural-amp-modeler and match knobcap's engine; Proteus JSON; refusals.

The NAM check runs the ``nam`` package in a subprocess with a Python that has it: ``$KNOBCAP_NAM_PYTHON``
(CI makes one: .ci/run), else this Python if ``import nam`` works; otherwise it skips, saying so.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from knobcap.controls import Controls, Knob, Switch
from knobcap.models.architectures import weight_shapes
from knobcap.models.modelfile import ModelFile
from knobcap.runtime.engine import Engine
from knobcap.runtime.export import ExportError, export_nam, export_nam_grid, export_proteus, nam_snapshot
from knobcap.runtime.export.nam import classic_to_current, grid_settings
from playkit import tiny_controls

CONTROLS = tiny_controls()
SETTING = {"drive": 7.0, "tone": 3.0, "diodes": "led"}


def random_model(architecture: str, config: dict, controls: Controls = CONTROLS, seed: int = 0,
                 scale: float = 0.4) -> ModelFile:
    rng = np.random.default_rng(seed)
    weights = {name: (scale * rng.standard_normal(shape)).astype(np.float32)
               for name, shape in weight_shapes(architecture, config).items()}
    return ModelFile(architecture, config, controls, 48_000, weights)


def wavenet_config(n_controls: int, activation: str = "tanh", mixin: str = "linear", film: bool = False
                   ) -> dict:
    return {"n_controls": n_controls, "head_scale": 0.5, "activation": activation, "mixin": mixin,
            "film": film,
            "arrays": [{"channels": 5, "head_size": 3, "kernel_size": 3, "dilations": [1, 2, 4, 8]},
                       {"channels": 3, "head_size": 1, "kernel_size": 2, "dilations": [1, 16]}]}


def lstm_config(n_controls: int, layers: int = 2) -> dict:
    return {"n_controls": n_controls, "hidden_size": 6, "num_layers": layers}


def nam_python() -> str | None:
    env = os.environ.get("KNOBCAP_NAM_PYTHON")
    if env:
        return env
    if importlib.util.find_spec("nam") is not None:
        return sys.executable
    return None


_RUN_NAM = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch
    from nam.models import init_from_nam
    x = np.load(sys.argv[1])
    for path in sys.argv[2:]:
        with open(path) as f:
            model = init_from_nam(json.load(f))
        model.eval()
        with torch.no_grad():
            y = model(torch.from_numpy(x)[None], pad_start=True)[0].numpy()
        np.save(path + ".npy", y.astype(np.float32))
""")


def run_nam(python: str, nam_files: list[Path], x: np.ndarray, tmp_path: Path) -> list[np.ndarray]:
    """Run each .nam file on ``x`` with NAM's own loader (one subprocess for all)."""
    script = tmp_path / "run_nam.py"
    script.write_text(_RUN_NAM)
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([python, str(script), str(tmp_path / "x.npy"), *map(str, nam_files)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [np.load(f"{path}.npy") for path in nam_files]


@pytest.mark.slow
def test_nam_snapshots_match_engine_in_neural_amp_modeler(tmp_path):
    python = nam_python()
    if python is None:
        pytest.skip("neural-amp-modeler is not installed: set KNOBCAP_NAM_PYTHON to a Python that has "
                    "it (see .ci/run) to check .nam files against NAM's own loader")
    x = (0.5 * np.random.default_rng(3).standard_normal(6000)).astype(np.float32)
    cases = [("wavenet", "current", "tanh"), ("wavenet", "classic", "tanh"),
             ("wavenet", "current", "leaky_relu"), ("wavenet", "classic", "product"),
             ("wavenet", "classic", "film"), ("wavenet", "current", "film_product"),
             ("lstm", "classic", "tanh")]
    files, expected, skips = [], [], []
    for i, (architecture, layout, variant) in enumerate(cases):
        if architecture == "lstm":
            config = lstm_config(3)
        elif variant in ("product", "film", "film_product"):  # the [x; c; x c] mixin and FiLM bake too
            mixin = "product" if variant.endswith("product") else "linear"
            config = wavenet_config(CONTROLS.vector_size, mixin=mixin, film=variant.startswith("film"))
        else:
            config = wavenet_config(CONTROLS.vector_size, variant)
        model = random_model(architecture, config, seed=i)
        path = export_nam(model, tmp_path / f"snap{i}.nam", SETTING, layout=layout)
        data = json.loads(path.read_text())
        assert data["sample_rate"] == 48_000 and data["metadata"]["knobcap"]["setting"] == SETTING
        if layout == "classic" and architecture == "wavenet":
            # NAM 0.13's Python reads only the current layout; the classic one names the same network.
            assert data["version"].startswith("0.5") and data["config"]["layers"][0]["activation"] == "Tanh"
            data["config"] = classic_to_current(data["config"])
            path = tmp_path / f"snap{i}_as_current.nam"
            path.write_text(json.dumps(data))
        engine = Engine(model, setting=SETTING)
        files.append(path)
        expected.append(engine.process(x, block_size=256))
        skips.append(engine.receptive_field)
    outputs = run_nam(python, files, x, tmp_path)
    for case, want, got, skip in zip(cases, expected, outputs, skips, strict=True):
        assert np.abs(want).max() > 0.05, case  # a real signal, not silence
        assert np.max(np.abs(got[skip:] - want[skip:])) <= 1e-5, case


_FROM_NAM_ACTIVATION = {"Tanh": "tanh", "Hardtanh": "hardtanh", "LeakyReLU": "leaky_relu"}


def snapshot_as_model(snapshot: dict, controls: Controls = CONTROLS) -> ModelFile:
    """What a WaveNet ``.nam`` snapshot computes, as a knobcap WaveNet whose mixins ignore the setting.

    Reads NAM's flat weights in its loader's walk order (either layout), so the engine can run the file.
    """
    flat = np.asarray(snapshot["weights"], np.float32)
    pos = 0

    def take(*shape: int) -> np.ndarray:
        nonlocal pos
        size = int(np.prod(shape))
        pos += size
        return flat[pos - size:pos].reshape(shape)

    n_c = controls.vector_size
    weights: dict[str, np.ndarray] = {}
    arrays = []
    for i, lc in enumerate(snapshot["config"]["layers"]):
        ch, dilations = lc["channels"], list(lc["dilations"])
        k = lc["kernel_size"] if "kernel_size" in lc else lc["kernel_sizes"][0]
        hs = lc["head_size"] if "head_size" in lc else lc["head"]["out_channels"]
        act = lc["activation"] if isinstance(lc["activation"], str) else lc["activation"][0]["type"]
        weights[f"arrays.{i}.rechannel.weight"] = take(ch, lc["input_size"], 1)
        for j in range(len(dilations)):
            p = f"arrays.{i}.layers.{j}"
            weights[f"{p}.conv.weight"], weights[f"{p}.conv.bias"] = take(ch, ch, k), take(ch)
            mixer = take(ch, 1, 1)
            weights[f"{p}.mixin.weight"] = np.concatenate([mixer, np.zeros((ch, n_c, 1), np.float32)], axis=1)
            weights[f"{p}.out.weight"], weights[f"{p}.out.bias"] = take(ch, ch, 1), take(ch)
        weights[f"arrays.{i}.head_rechannel.weight"] = take(hs, ch, 1)
        weights[f"arrays.{i}.head_rechannel.bias"] = take(hs)
        arrays.append({"channels": ch, "head_size": hs, "kernel_size": k, "dilations": dilations})
    head_scale = float(take(1)[0])
    assert pos == flat.size
    config = {"n_controls": n_c, "arrays": arrays, "head_scale": head_scale,
              "activation": _FROM_NAM_ACTIVATION[act]}
    return ModelFile("wavenet", config, controls, snapshot["sample_rate"], weights)


@pytest.mark.parametrize("layout", ["classic", "current"])
@pytest.mark.parametrize("mixin", ["linear", "product"])
def test_film_bake_equals_the_engine_at_that_setting(layout, mixin):
    model = random_model("wavenet", wavenet_config(CONTROLS.vector_size, mixin=mixin, film=True), seed=5)
    x = (0.5 * np.random.default_rng(4).standard_normal(3000)).astype(np.float32)
    plain = {name: w for name, w in model.weights.items() if not name.endswith(".film.weight")}
    without_film = ModelFile("wavenet", {**model.config, "film": False}, CONTROLS, 48_000, plain)
    for setting in (SETTING, {"drive": 0.0, "tone": 10.0, "diodes": "silicon"}):
        snapshot = nam_snapshot(model, setting, layout=layout)
        assert len(snapshot["weights"]) == len(nam_snapshot(without_film, setting, layout)["weights"])
        want = Engine(model, setting=setting).process(x, block_size=256)
        got = Engine(snapshot_as_model(snapshot)).process(x, block_size=300)
        assert np.abs(want).max() > 0.05
        assert np.max(np.abs(got - want)) <= 1e-5
        # The gains matter: the same weights with FiLM off sound different.
        assert np.max(np.abs(Engine(without_film, setting=setting).process(x) - want)) > 1e-3


def test_film_grid_bakes_every_setting(tmp_path):
    model = random_model("wavenet", wavenet_config(CONTROLS.vector_size, film=True), seed=6)
    paths = export_nam_grid(model, tmp_path / "grid", 2, fixed={"tone": 4.0}, layout="current")
    assert len(paths) == 2 * 2
    x = (0.5 * np.random.default_rng(7).standard_normal(2000)).astype(np.float32)
    outputs = []
    for path in paths:
        snapshot = json.loads(path.read_text())
        want = Engine(model, setting=snapshot["metadata"]["knobcap"]["setting"]).process(x)
        got = Engine(snapshot_as_model(snapshot)).process(x)
        assert np.max(np.abs(got - want)) <= 1e-5
        outputs.append(got)
    assert min(np.max(np.abs(a - b)) for a, b in itertools.combinations(outputs, 2)) > 1e-3


def test_bake_changes_with_setting_and_weights_count():
    model = random_model("wavenet", wavenet_config(3))
    a = nam_snapshot(model, {"drive": 0.0})
    b = nam_snapshot(model, {"drive": 10.0})
    assert len(a["weights"]) == len(b["weights"])
    assert a["weights"] != b["weights"]
    # weights: per array rechannel, per layer conv w+b, mixer, 1x1 w+b; head w+b; head_scale.
    expected = 0
    previous = 1
    for arr in model.config["arrays"]:
        ch, k, hs = arr["channels"], arr["kernel_size"], arr["head_size"]
        per_layer = ch * ch * k + ch + ch + ch * ch + ch
        expected += ch * previous + len(arr["dilations"]) * per_layer + hs * ch + hs
        previous = ch
    assert len(a["weights"]) == expected + 1 and a["weights"][-1] == pytest.approx(0.5)


def test_grid_writes_every_setting_and_never_overwrites(tmp_path):
    model = random_model("lstm", lstm_config(3, layers=1))
    settings = grid_settings(model, 3, fixed={"tone": 5.0})
    assert len(settings) == 3 * 1 * 2
    paths = export_nam_grid(model, tmp_path / "grid", 3, fixed={"tone": 5.0})
    assert len(paths) == 6 and all(p.suffix == ".nam" for p in paths)
    assert len({p.name for p in paths}) == 6
    with pytest.raises(ExportError, match="exists"):
        export_nam_grid(model, tmp_path / "grid", 3, fixed={"tone": 5.0})


def test_proteus_json_and_refusals(tmp_path):
    controls = Controls(knobs=(Knob("gain"),), switches=(Switch("mode", ("a", "b")),))
    model = random_model("lstm", lstm_config(2, layers=1), controls=controls)
    path, warnings = export_proteus(model, tmp_path / "p.json", {"mode": "b"})
    data = json.loads(path.read_text())
    assert data["model_data"]["input_size"] == 2 and data["model_data"]["hidden_size"] == 6
    w_ih = np.asarray(data["state_dict"]["rec.weight_ih_l0"])
    assert w_ih.shape == (24, 2)
    # The switch (+1 for "b") is folded into the bias.
    folded = model.weights["lstm.bias_ih_l0"] + model.weights["lstm.weight_ih_l0"][:, 2]
    np.testing.assert_allclose(data["state_dict"]["rec.bias_ih_l0"], folded, atol=1e-6)
    assert any("hidden size" in w for w in warnings)
    with pytest.raises(ExportError, match="LSTM models only"):
        export_proteus(random_model("wavenet", wavenet_config(2), controls=controls), tmp_path / "w.json")
    three = Controls(knobs=(Knob("a"), Knob("b"), Knob("c")))
    with pytest.raises(ExportError, match="one or two knobs"):
        export_proteus(random_model("lstm", lstm_config(3, 1), controls=three), tmp_path / "t.json")
    with pytest.raises(ExportError, match="exists"):
        export_proteus(model, tmp_path / "p.json")


def optional_config(**extra) -> dict:
    return {**wavenet_config(CONTROLS.vector_size, film=True), **extra}


@pytest.mark.parametrize("layout", ["classic", "current"])
@pytest.mark.parametrize("mixin", ["linear", "product"])
def test_cond_hidden_bake_equals_the_engine(layout, mixin):
    """Features [c; tanh(A c + a)] fold into the conv exactly like c: the .nam has the plain size."""
    config = {**wavenet_config(CONTROLS.vector_size, mixin=mixin, film=True), "cond_hidden": 4}
    model = random_model("wavenet", config, seed=8)
    x = (0.5 * np.random.default_rng(9).standard_normal(3000)).astype(np.float32)
    plain = random_model("wavenet", wavenet_config(CONTROLS.vector_size, mixin=mixin, film=True))
    outputs = []
    for setting in (SETTING, {"drive": 0.0, "tone": 10.0, "diodes": "silicon"}):
        snapshot = nam_snapshot(model, setting, layout=layout)
        assert len(snapshot["weights"]) == len(nam_snapshot(plain, setting, layout)["weights"])
        want = Engine(model, setting=setting).process(x, block_size=256)
        got = Engine(snapshot_as_model(snapshot)).process(x, block_size=300)
        assert np.abs(want).max() > 0.05
        assert np.max(np.abs(got - want)) <= 1e-5
        outputs.append(got)
    assert np.max(np.abs(outputs[0] - outputs[1])) > 1e-3


def plugin_chain(nam_path: Path, x: np.ndarray) -> np.ndarray:
    """What the NAM plugin plays: the .nam, then the IR beside it with the plugin's IR gain law."""
    from knobcap.fileio import read_wav
    from knobcap.runtime.export.nam import ir_path

    snapshot = json.loads(nam_path.read_text())
    ir, rate = read_wav(ir_path(nam_path))
    taps = ir.astype(np.float64) * 10 ** (-18 / 20) * 48_000 / rate
    y = Engine(snapshot_as_model(snapshot)).process(x).astype(np.float64)
    return np.convolve(y, taps)[: x.size]


def test_post_fir_exports_a_nam_plus_ir_that_the_plugin_chain_matches(tmp_path):
    from knobcap.runtime.export import export_notes
    from knobcap.runtime.export.nam import ir_path

    config = optional_config(cond_hidden=3, post_fir={"taps": 12, "hidden": 4})
    model = random_model("wavenet", config, seed=10)
    x = (0.5 * np.random.default_rng(11).standard_normal(3000)).astype(np.float32)
    path = export_nam(model, tmp_path / "snap.nam", SETTING)
    assert ir_path(path).name == "snap.ir.wav" and ir_path(path).exists()
    taps = json.loads(path.read_text())["metadata"]["knobcap"]["post_fir_taps"]
    assert len(taps) == 12
    want = Engine(model, setting=SETTING).process(x, block_size=128)
    got = plugin_chain(path, x)
    skip = Engine(model).receptive_field  # both start from silence; compare after the warm-up
    assert np.abs(want).max() > 0.05
    assert np.max(np.abs(got[skip:] - want[skip:])) <= 1e-5
    # Without the IR the snapshot alone is not the model: the FIR matters.
    alone = Engine(snapshot_as_model(json.loads(path.read_text()))).process(x)
    assert np.max(np.abs(alone[skip:] - want[skip:])) > 1e-3
    notes = export_notes(model, path)
    assert len(notes) == 1 and "snap.ir.wav" in notes[0] and "IR slot" in notes[0]
    assert export_notes(random_model("wavenet", optional_config()), path) == []
    # Nothing is overwritten: an existing IR stops the export before the .nam is written.
    (tmp_path / "other.ir.wav").write_bytes(b"mine")
    with pytest.raises(ExportError, match="exists"):
        export_nam(model, tmp_path / "other.nam", SETTING)
    assert (tmp_path / "other.ir.wav").read_bytes() == b"mine" and not (tmp_path / "other.nam").exists()


def test_post_fir_grid_writes_an_ir_beside_every_snapshot(tmp_path):
    model = random_model("wavenet", optional_config(post_fir={"taps": 6, "hidden": 3}), seed=12)
    paths = export_nam_grid(model, tmp_path / "grid", 2, fixed={"tone": 4.0, "diodes": "led"})
    x = (0.5 * np.random.default_rng(13).standard_normal(2000)).astype(np.float32)
    skip = Engine(model).receptive_field
    for path in paths:
        setting = json.loads(path.read_text())["metadata"]["knobcap"]["setting"]
        want = Engine(model, setting=setting).process(x)
        assert np.max(np.abs(plugin_chain(path, x)[skip:] - want[skip:])) <= 1e-5
