"""Export an LSTM model to the JSON that GuitarML's Proteus plugin loads (CoreAudioML's SimpleRNN).

Proteus feeds the audio and up to two knob values in [0, 1] to a one-layer LSTM. knobcap's knob
coordinate ``u`` is already in [0, 1] (taper-aware, or the screened warp: then the plugin's knob moves in
equal steps of sound, not of the hardware dial), so knobs map one to one; switches have no place in
Proteus and are baked into the gate bias at the position given (default otherwise):
``b <- b + W_ih[:, switch columns] s``. ``skip`` is 0: knobcap's LSTM has no input-to-output skip.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from knobcap.fileio import write_json_atomic
from knobcap.models.modelfile import ModelFile
from knobcap.runtime.export.nam import ExportError, bake_vector, check_target, dc_blocker_note

PROTEUS_HIDDEN = 40
PROTEUS_RATE = 44_100


def proteus_model(model: ModelFile, switches: Mapping[str, object] | None = None
                  ) -> tuple[dict[str, Any], list[str]]:
    """The Proteus JSON object, and warnings (rate or size the stock plugin may not expect)."""
    n_knobs = len(model.controls.knobs)
    if model.architecture != "lstm":
        raise ExportError(
            f"Proteus runs LSTM models only; this model is a {model.architecture}. Train with the lstm "
            "architecture to export for Proteus, or export a .nam snapshot instead.")
    gains = [k.name for k in model.controls.knobs if k.gain_db is not None]
    if gains:
        raise ExportError(
            f"Proteus knobs feed the LSTM, and knob {gains[0]!r} of this model is an output gain that "
            "knobcap applies after it (controls 'gain_db'); export .nam snapshots instead.")
    if int(model.config["num_layers"]) != 1:
        raise ExportError(f"Proteus runs one LSTM layer; this model has {model.config['num_layers']}.")
    if not 1 <= n_knobs <= 2:
        raise ExportError(
            f"Proteus takes one or two knobs; this model has {n_knobs}. Export .nam snapshots instead.")
    unknown = [name for name in (switches or {}) if name not in [s.name for s in model.controls.switches]]
    if unknown:
        raise ExportError(f"--set {unknown[0]}: only switches are baked for Proteus (knobs stay live).")
    _, c = bake_vector(model, switches)
    w = model.weights
    w_ih = np.asarray(w["lstm.weight_ih_l0"], np.float64)
    bias_ih = np.asarray(w["lstm.bias_ih_l0"], np.float64) + w_ih[:, 1 + n_knobs:] @ c[n_knobs:]
    hidden = int(model.config["hidden_size"])

    def lst(array: np.ndarray) -> Any:
        return np.asarray(array, np.float32).astype(float).tolist()

    data = {
        "model_data": {"model": "SimpleRNN", "input_size": 1 + n_knobs, "skip": 0, "output_size": 1,
                       "unit_type": "LSTM", "num_layers": 1, "hidden_size": hidden, "bias_fl": True},
        "state_dict": {
            "rec.weight_ih_l0": lst(w_ih[:, : 1 + n_knobs]),
            "rec.weight_hh_l0": lst(w["lstm.weight_hh_l0"]),
            "rec.bias_ih_l0": lst(bias_ih),
            "rec.bias_hh_l0": lst(w["lstm.bias_hh_l0"]),
            "lin.weight": lst(w["head.weight"]),
            "lin.bias": lst(w["head.bias"]),
        },
    }
    warnings = []
    if hidden != PROTEUS_HIDDEN:
        warnings.append(f"the stock Proteus plugin is built for hidden size {PROTEUS_HIDDEN}; this model has "
                        f"{hidden}.")
    if int(model.sample_rate) != PROTEUS_RATE:
        warnings.append(f"Proteus models are made at {PROTEUS_RATE} Hz; this one is {model.sample_rate} Hz, "
                        "so it will sound right only at that rate.")
    if model.dc_blocker_hz is not None:
        warnings.append(dc_blocker_note(model.dc_blocker_hz))
    return data, warnings


def export_proteus(model: ModelFile, path: str | Path, switches: Mapping[str, object] | None = None,
                   force: bool = False) -> tuple[Path, list[str]]:
    """Write the Proteus JSON atomically (an existing file is kept unless ``force``)."""
    path = Path(path)
    check_target(path, force)
    data, warnings = proteus_model(model, switches)
    return write_json_atomic(path, data), warnings
