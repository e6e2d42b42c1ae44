"""model.knobcap: round trip without torch, and refusal of malformed or hostile files."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from knobcap.models.modelfile import (
    ModelFile,
    ModelFileError,
    load_model_file,
    model_to_dict,
    save_model_file,
)
from playkit import tiny_controls

CONTROLS = tiny_controls()
CONFIG = {"n_controls": 3, "hidden_size": 2, "num_layers": 1}


def lstm_file() -> ModelFile:
    rng = np.random.default_rng(0)
    shapes = {"lstm.weight_ih_l0": (8, 4), "lstm.weight_hh_l0": (8, 2), "lstm.bias_ih_l0": (8,),
              "lstm.bias_hh_l0": (8,), "head.weight": (1, 2), "head.bias": (1,)}
    weights = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    return ModelFile("lstm", dict(CONFIG), CONTROLS, 48000, weights, {"heldout_esr": {"take03": 0.002}})


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    model = lstm_file()
    path = save_model_file(tmp_path / "model.knobcap", model)
    loaded = load_model_file(path)
    assert loaded.architecture == "lstm" and loaded.config == CONFIG and loaded.sample_rate == 48000
    assert loaded.controls == CONTROLS and loaded.metadata == model.metadata
    assert set(loaded.weights) == set(model.weights)
    for name, array in model.weights.items():
        assert loaded.weights[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.weights[name], array)
    text = path.read_text(encoding="utf-8")
    assert json.loads(text)["format"] == "knobcap-model"


_NO_PICKLE = """
import pickle, sys
import numpy as np
from knobcap.models.modelfile import load_model_file

def refuse(*args, **kwargs):
    raise AssertionError("load_model_file unpickled something")

# numpy imports pickle itself, so its presence proves nothing: make every way to unpickle fail.
pickle.load = pickle.loads = pickle.Unpickler = refuse
np.load = refuse
m = load_model_file(sys.argv[1])
print("torch" in sys.modules, m.n_parameters)
"""


def test_loading_needs_neither_torch_nor_pickle(tmp_path: Path) -> None:
    path = save_model_file(tmp_path / "model.knobcap", lstm_file())
    out = subprocess.run([sys.executable, "-c", _NO_PICKLE, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", str(lstm_file().n_parameters)]


def test_an_existing_file_is_never_overwritten_unless_asked(tmp_path: Path) -> None:
    path = save_model_file(tmp_path / "model.knobcap", lstm_file())
    before = path.read_bytes()
    with pytest.raises(ModelFileError, match="already exists"):
        save_model_file(path, lstm_file())
    assert path.read_bytes() == before
    changed = lstm_file()
    changed.metadata = {"note": "second"}
    save_model_file(path, changed, overwrite=True)
    assert load_model_file(path).metadata == {"note": "second"}


def test_non_finite_weights_are_not_saved(tmp_path: Path) -> None:
    model = lstm_file()
    model.weights["head.bias"][0] = np.nan
    with pytest.raises(ModelFileError, match="NaN"):
        save_model_file(tmp_path / "model.knobcap", model)
    assert not (tmp_path / "model.knobcap").exists()


def _mutations() -> list[tuple[str, object, str]]:
    good = model_to_dict(lstm_file())

    def edit(fn) -> dict:
        data = json.loads(json.dumps(good))
        fn(data)
        return data

    nan_bytes = base64.b64encode(np.array([np.nan], "<f4").tobytes()).decode()
    huge = {"shape": [100000, 100000], "dtype": "float32", "data": "AAAA"}
    return [
        ("not json", "{not json", "not valid JSON"),
        ("a list", [1, 2], "not a JSON object"),
        ("other format", edit(lambda d: d.update(format="nam")), "not a knobcap model file"),
        ("future version", edit(lambda d: d.update(format_version=99)), "format_version 99"),
        ("extra key", edit(lambda d: d.update(evil=1)), "unknown top-level key"),
        ("bad rate", edit(lambda d: d.update(sample_rate="48k")), "sample_rate"),
        ("bad controls", edit(lambda d: d["controls"].update(knob=[{"name": ""}])), "bad controls"),
        ("config type", edit(lambda d: d["config"].update(hidden_size=2.5)), "hidden_size"),
        ("control count", edit(lambda d: d["config"].update(n_controls=5)), "control inputs"),
        ("bad base64", edit(lambda d: d["weights"]["head.bias"].update(data="!!!!!!!!")), "base64"),
        ("short data", edit(lambda d: d["weights"]["head.bias"].update(data="AAAA")),
         "does not match its shape"),
        ("nan weight", edit(lambda d: d["weights"]["head.bias"].update(data=nan_bytes)), "NaN"),
        ("NaN literal", json.dumps(good).replace('"metadata": {', '"metadata": {"x": NaN, ', 1),
         "not valid JSON"),
        ("wrong shape", edit(lambda d: d["weights"]["head.weight"].update(shape=[2, 1])), "head.weight"),
        ("missing weight", edit(lambda d: d["weights"].pop("head.bias")), "missing: head.bias"),
        ("unexpected weight", edit(lambda d: d["weights"].update(extra=d["weights"]["head.bias"])),
         "unexpected: extra"),
        ("float64", edit(lambda d: d["weights"]["head.bias"].update(dtype="float64")), "only float32"),
        ("huge", edit(lambda d: d["weights"].update({"head.weight": huge})), r"\(max_weights\)"),
        ("negative shape", edit(lambda d: d["weights"]["head.bias"].update(shape=[-1])), "malformed shape"),
        ("deep nesting", '{"format": ' + "[" * 100000 + "]" * 100000 + "}", "not"),
        ("no weights", edit(lambda d: d.update(weights={})), "non-empty"),
    ]


@pytest.mark.parametrize(("label", "data", "message"), _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_or_hostile_files_are_refused(tmp_path: Path, label: str, data: object,
                                                message: str) -> None:
    path = write(tmp_path / "bad.knobcap", data)
    with pytest.raises(ModelFileError, match=message) as error:
        load_model_file(path)
    assert str(path) in str(error.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model_file(tmp_path / "absent.knobcap")
