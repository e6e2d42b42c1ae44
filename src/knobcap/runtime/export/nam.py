"""Bake one setting of a parametric model into a standard NAM ``.nam`` snapshot (no torch).

WaveNet: each layer's mixin sees ``[x; c]``; for a fixed setting ``c`` its control part is a constant
per channel, ``Mc c``, which folds into the conv bias, and its audio column becomes NAM's input mixer
with ``condition_size = 1``: an exact bake. With the ``product`` mixin (``[x; c; x c]``) the ``x c``
columns add ``Mxc c`` to that audio column, still exact. With FiLM (``"film": true``) the conv is
scaled per channel by ``g = 1 + F c``: ``g (W * h + b) = (g W) * h + g b``, so the baked conv weight is
``g W`` and its bias ``g b + Mc c``, exact too. With ``cond_hidden`` the setting features
``s = [c; tanh(A c + a)]`` take the place of ``c`` above (computed once, in float64): still exact.
With ``post_fir`` the WaveNet goes out as the ``.nam`` and the FIR's taps at that setting as an impulse
response WAV beside it (``<name>.ir.wav``, float32) for the NAM plugin's IR slot: exact, since the FIR
is linear and time-invariant at a held setting. The plugin scales an IR by ``10^(-18/20) * 48000 /
rate`` (AudioDSPTools ``ImpulseResponse::_SetWeights``), so the WAV holds the taps times the inverse:
the chain .nam -> IR in the plugin is the model; other IR loaders play it 18 dB loud (the taps
themselves are in the snapshot's metadata, ``knobcap.post_fir_taps``).
LSTM: ``W_ih [x; c] + b = W_ih[:, 0] x + (b + W_ih[:, 1:] c)`` gives a NAM LSTM with
``input_size = 1`` and a zero initial state (as knobcap's LSTM starts).

NAM's weights are one flat list in its loader's walk order. WaveNet, per layer array: rechannel weight;
then per layer: conv weight (out, in, tap), conv bias, input-mixer weight, 1x1 weight, 1x1 bias; then
head-rechannel weight and bias; after all arrays, ``head_scale``. LSTM, per layer: the
``[W_ih W_hh]`` matrix (gates i, f, g, o by rows), the summed bias, the initial hidden state, the initial
cell state; then the head weight and bias.

Two WaveNet config layouts are written: ``classic`` (file version 0.5.4: one ``activation`` string,
``head_size``, ``gated``, ``head_bias``), which every NAM plugin reads, and ``current`` (0.7.0, as
neural-amp-modeler 0.13 writes: per-layer ``kernel_sizes`` and activations, a ``head`` object,
``bottleneck``, ``layer1x1``, ``head1x1``). Both describe the same network with the same weights.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from knobcap import limits
from knobcap.controls import Setting
from knobcap.fileio import OutputPathError, check_output_path, write_json_atomic, write_wav_atomic
from knobcap.models.architectures import LEAKY_SLOPE
from knobcap.models.modelfile import ModelFile

LAYOUTS = ("classic", "current")
_VERSIONS = {"classic": "0.5.4", "current": "0.7.0"}
_ACTIVATIONS = {"tanh": "Tanh", "hardtanh": "Hardtanh", "leaky_relu": "LeakyReLU"}


class ExportError(ValueError):
    """A model cannot be exported as asked; the message says why and what to do."""


def bake_vector(model: ModelFile, setting: Mapping[str, object] | None) -> tuple[Setting, np.ndarray]:
    """The full setting (defaults filled in) and its normalised float64 vector."""
    full: dict[str, object] = dict(model.controls.default_setting())
    full.update(setting or {})
    clean = model.controls.validate_setting(full, where="export setting")
    return clean, model.controls.to_vector(clean).astype(np.float64)


NAM_IR_GAIN_DB = -18.0
"""The NAM plugin's fixed IR gain at 48 kHz (it also scales by ``48000 / rate``)."""


def setting_features(model: ModelFile, c: np.ndarray) -> np.ndarray:
    """What the mixins and FiLM see at ``c``: ``c``, or ``[c; tanh(A c + a)]`` with ``cond_hidden``."""
    if not int(model.config.get("cond_hidden", 0)):
        return c
    w = np.asarray(model.weights["cond_mlp.weight"], np.float64)[:, :, 0]
    return np.concatenate([c, np.tanh(w @ c + np.asarray(model.weights["cond_mlp.bias"], np.float64))])


def post_fir_taps(model: ModelFile, c: np.ndarray) -> np.ndarray | None:
    """The post FIR's taps at ``c`` (float64), or None for a model without one."""
    if model.architecture != "wavenet" or not model.config.get("post_fir"):
        return None
    w = model.weights
    hidden = np.tanh(np.asarray(w["post_fir.hidden.weight"], np.float64)[:, :, 0] @ c
                     + np.asarray(w["post_fir.hidden.bias"], np.float64))
    taps = (np.asarray(w["post_fir.taps.weight"], np.float64)[:, :, 0] @ hidden
            + np.asarray(w["post_fir.taps.bias"], np.float64))
    taps[0] += 1.0
    return taps


def nam_ir_samples(taps: np.ndarray, sample_rate: int) -> np.ndarray:
    """The IR WAV samples that the NAM plugin turns back into ``taps`` (its gain law undone)."""
    return np.asarray(taps, np.float64) / (10.0 ** (NAM_IR_GAIN_DB / 20.0) * 48_000 / sample_rate)


def ir_path(nam_path: Path) -> Path:
    """Where the post FIR's impulse response goes beside a ``.nam``: ``<stem>.ir.wav``."""
    return nam_path.with_name(nam_path.stem + ".ir.wav")


def export_notes(model: ModelFile, nam_path: Path) -> list[str]:
    """What a user must know about an export of ``model`` (empty when the .nam alone is the model)."""
    notes = []
    if post_fir_taps(model, np.zeros(model.controls.vector_size)) is not None:
        notes.append(f"this model ends in a setting-dependent FIR: load {ir_path(nam_path).name} in the NAM "
                     f"plugin's IR slot after {nam_path.name} (the WAV is pre-scaled for the plugin's -18 dB "
                     "IR gain; in other IR loaders turn it down 18 dB).")
    if model.dc_blocker_hz is not None:
        notes.append(dc_blocker_note(model.dc_blocker_hz))
    return notes


def dc_blocker_note(cutoff_hz: float) -> str:
    """The export note of a model with an output DC blocker, which NAM and Proteus files cannot hold."""
    return (f"knobcap plays this model through a {cutoff_hz:g} Hz DC blocker, which the exported file "
            "cannot hold: below a few Hz its output may drift (inaudible, but a DC meter shows it; an "
            "interface's output or the next pedal's coupling removes it).")


def _flat(array: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(array, np.float32).ravel()]


def _baked_layer(cfg: Mapping[str, Any], w: Mapping[str, np.ndarray], p: str, c: np.ndarray
                 ) -> list[np.ndarray]:
    """A layer's conv weight, conv bias and input-mixer weight at the setting ``c`` (NAM's order).

    ``z = g (W * h + b) + Mc c + mx x`` with ``g = 1 + F c`` (FiLM) or 1 bakes to the conv ``g W``,
    bias ``g b + Mc c`` and mixer ``mx`` (``+ Mxc c`` with the product mixin).
    """
    mixin = np.asarray(w[f"{p}.mixin.weight"], np.float64)[:, :, 0]
    n_c = c.size  # the setting features (see setting_features)
    weight = np.asarray(w[f"{p}.conv.weight"], np.float64)
    bias = np.asarray(w[f"{p}.conv.bias"], np.float64)
    if cfg.get("film", False):
        gain = 1.0 + np.asarray(w[f"{p}.film.weight"], np.float64)[:, :, 0] @ c
        weight, bias = gain[:, None, None] * weight, gain * bias
    bias = bias + mixin[:, 1:1 + n_c] @ c
    x_weight = mixin[:, 0]
    if cfg.get("mixin", "linear") == "product":  # [x; c; x c]: W_xc c joins the x column
        x_weight = x_weight + mixin[:, 1 + n_c:] @ c
    return _flat(weight) + _flat(bias) + _flat(x_weight)


def _wavenet(model: ModelFile, c: np.ndarray, layout: str, gain: float) -> tuple[dict[str, Any], np.ndarray]:
    cfg, w = model.config, model.weights
    c = setting_features(model, c)
    activation = _ACTIVATIONS[cfg["activation"]]
    layers: list[dict[str, Any]] = []
    parts: list[np.ndarray] = []
    previous = 1
    for i, spec in enumerate(cfg["arrays"]):
        ch, k, dil, hs = spec["channels"], spec["kernel_size"], list(spec["dilations"]), spec["head_size"]
        parts += _flat(w[f"arrays.{i}.rechannel.weight"])
        for j in range(len(dil)):
            p = f"arrays.{i}.layers.{j}"
            parts += _baked_layer(cfg, w, p, c)
            parts += _flat(w[f"{p}.out.weight"]) + _flat(w[f"{p}.out.bias"])
        parts += _flat(w[f"arrays.{i}.head_rechannel.weight"]) + _flat(w[f"arrays.{i}.head_rechannel.bias"])
        if layout == "classic":
            layers.append({"input_size": previous, "condition_size": 1, "channels": ch, "head_size": hs,
                           "kernel_size": k, "dilations": dil, "activation": activation,
                           "gated": False, "head_bias": True})
        else:
            act: dict[str, Any] = {"type": activation}
            if cfg["activation"] == "leaky_relu":
                act["negative_slope"] = LEAKY_SLOPE
            layers.append({"input_size": previous, "condition_size": 1,
                           "head": {"out_channels": hs, "kernel_size": 1, "bias": True},
                           "channels": ch, "kernel_sizes": [k] * len(dil), "dilations": dil,
                           "activation": [dict(act) for _ in dil], "bottleneck": ch,
                           "head1x1": {"active": False, "out_channels": hs, "groups": 1},
                           "layer1x1": {"active": True, "groups": 1}, "groups_input": 1,
                           "groups_input_mixin": 1, "gating_mode": ["none"] * len(dil),
                           "secondary_activation": [None] * len(dil)})
        previous = ch
    head_scale = float(cfg["head_scale"]) * gain
    parts.append(np.asarray([head_scale], np.float32))
    config = {"layers": layers, "head": None, "head_scale": head_scale}
    return config, np.concatenate(parts)


def _lstm(model: ModelFile, c: np.ndarray, gain: float) -> tuple[dict[str, Any], np.ndarray]:
    cfg, w = model.config, model.weights
    hidden, n_layers = int(cfg["hidden_size"]), int(cfg["num_layers"])
    parts: list[np.ndarray] = []
    for layer in range(n_layers):
        w_ih = np.asarray(w[f"lstm.weight_ih_l{layer}"], np.float64)
        bias = (np.asarray(w[f"lstm.bias_ih_l{layer}"], np.float64)
                + np.asarray(w[f"lstm.bias_hh_l{layer}"], np.float64))
        if layer == 0:
            bias = bias + w_ih[:, 1:] @ c
            w_ih = w_ih[:, :1]
        matrix = np.concatenate([w_ih, np.asarray(w[f"lstm.weight_hh_l{layer}"], np.float64)], axis=1)
        parts += _flat(matrix) + _flat(bias) + _flat(np.zeros(2 * hidden))
    head = [gain * np.asarray(w[f"head.{name}"], np.float64) for name in ("weight", "bias")]
    parts += _flat(head[0]) + _flat(head[1])
    return {"input_size": 1, "hidden_size": hidden, "num_layers": n_layers}, np.concatenate(parts)


def nam_snapshot(model: ModelFile, setting: Mapping[str, object] | None = None, layout: str = "classic",
                 metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``.nam`` JSON object of ``model`` baked at ``setting`` (missing controls take defaults)."""
    if layout not in LAYOUTS:
        raise ExportError(f"unknown .nam layout {layout!r}; use one of {', '.join(LAYOUTS)}.")
    clean, c = bake_vector(model, setting)
    gain = model.controls.output_gain(clean)  # an output-gain knob's level, baked into the head
    if model.architecture == "wavenet" and model.config.get("mixin", "linear") not in ("linear", "product"):
        raise ExportError(
            f"this WaveNet's mixin {model.config.get('mixin')!r} is unknown to this knobcap; update knobcap.")
    if model.architecture == "wavenet":
        architecture = "WaveNet"
        config, weights = _wavenet(model, c, layout, gain)
    elif model.architecture == "lstm":
        architecture = "LSTM"
        config, weights = _lstm(model, c, gain)
    else:
        raise ExportError(
            f"architecture {model.architecture!r} has no .nam equivalent; NAM snapshots can be made from "
            "wavenet and lstm models.")
    now = _dt.datetime.now()
    name = model.controls.name or "knobcap capture"
    setting_text = ", ".join(f"{k}={_fmt(v)}" for k, v in clean.items())
    meta: dict[str, Any] = {
        "date": {"year": now.year, "month": now.month, "day": now.day, "hour": now.hour,
                 "minute": now.minute, "second": now.second},
        "name": f"{name} ({setting_text})",
        "modeled_by": "knobcap",
        "gear_type": None, "gear_make": None, "gear_model": name, "tone_type": None,
        "input_level_dbu": None, "output_level_dbu": None,
        "knobcap": {"setting": clean, "architecture": model.architecture,
                    "dc_blocker_hz": model.dc_blocker_hz},
    }
    taps = post_fir_taps(model, c)
    if taps is not None:
        meta["knobcap"]["post_fir_taps"] = [float(v) for v in taps]
    heldout = model.metadata.get("heldout_esr") if isinstance(model.metadata, dict) else None
    if isinstance(heldout, dict):
        meta["training"] = {"knobcap_heldout_esr": heldout}
    meta.update(metadata or {})
    return {"version": _VERSIONS[layout], "metadata": meta, "architecture": architecture, "config": config,
            "weights": [float(v) for v in weights], "sample_rate": int(model.sample_rate)}


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_target(path: Path, force: bool) -> None:
    """fileio's output-path policy (a new file, or with ``force`` a regular one), as an ExportError."""
    try:
        check_output_path(path, force)
    except OutputPathError as error:
        raise ExportError(str(error)) from None


def export_nam(model: ModelFile, path: str | Path, setting: Mapping[str, object] | None = None,
               layout: str = "classic", force: bool = False) -> Path:
    """Write a ``.nam`` snapshot atomically (an existing file is kept unless ``force``), and with a
    ``post_fir`` its impulse response beside it (:func:`ir_path`; see :func:`export_notes`)."""
    path = Path(path)
    check_target(path, force)
    snapshot = nam_snapshot(model, setting, layout)
    taps = snapshot["metadata"]["knobcap"].get("post_fir_taps")
    if taps is not None:
        check_target(ir_path(path), force)
        write_wav_atomic(ir_path(path), nam_ir_samples(np.asarray(taps), model.sample_rate),
                         int(model.sample_rate))
    return write_json_atomic(path, snapshot)


def grid_size(model: ModelFile, steps: int, fixed: Mapping[str, object] | None = None) -> int:
    """How many settings :func:`grid_settings` makes, counted without making them."""
    fixed = fixed or {}
    free_knobs = sum(knob.name not in fixed for knob in model.controls.knobs)
    positions = math.prod(1 if s.name in fixed else len(s.positions) for s in model.controls.switches)
    return steps ** free_knobs * positions


def grid_settings(model: ModelFile, steps: int, fixed: Mapping[str, object] | None = None,
                  max_files: int | None = None) -> list[Setting]:
    """Settings over a grid: ``steps`` values per knob (even in the taper-aware coordinate), every switch
    position; controls in ``fixed`` are held. Counted first: more than ``max_files`` (default
    :data:`knobcap.limits.MAX_GRID_FILES`) is refused before any setting is made."""
    if steps < 2:
        raise ExportError(f"--grid needs at least 2 values per knob, got {steps}.")
    limits.MAX_GRID_FILES.check(grid_size(model, steps, fixed), f"--grid {steps}", max_files)
    fixed = dict(fixed or {})
    axes: list[list[tuple[str, object]]] = []
    for knob in model.controls.knobs:
        if knob.name in fixed:
            axes.append([(knob.name, fixed[knob.name])])
        else:
            axes.append([(knob.name, round(knob.from_unit(u), 6)) for u in np.linspace(0.0, 1.0, steps)])
    for switch in model.controls.switches:
        values = [fixed[switch.name]] if switch.name in fixed else list(switch.positions)
        axes.append([(switch.name, v) for v in values])
    return [dict(combo) for combo in product(*axes)]


def _file_name(setting: Mapping[str, object]) -> str:
    text = "_".join(f"{k}={_fmt(v)}" for k, v in setting.items())
    return re.sub(r"[^A-Za-z0-9_.=\-]", "-", text) + ".nam"


def export_nam_grid(model: ModelFile, folder: str | Path, steps: int,
                    fixed: Mapping[str, object] | None = None, layout: str = "classic",
                    force: bool = False, max_files: int | None = None) -> list[Path]:
    """Write one ``.nam`` a grid setting into ``folder`` (see :func:`grid_settings`)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} is a file; --grid writes a folder of .nam files. Choose a folder name.")
    settings = grid_settings(model, steps, fixed, max_files)
    paths = [folder / _file_name(s) for s in settings]
    fir = model.architecture == "wavenet" and bool(model.config.get("post_fir"))
    for path in paths:
        check_target(path, force)
        if fir:
            check_target(ir_path(path), force)
    folder.mkdir(parents=True, exist_ok=True)
    return [export_nam(model, p, s, layout, force=True) for p, s in zip(paths, settings, strict=True)]


def classic_to_current(config: Mapping[str, Any]) -> dict[str, Any]:
    """Translate a classic WaveNet config to the current layout (same network, same weights)."""
    layers = []
    for lc in config["layers"]:
        n = len(lc["dilations"])
        act = {"type": lc["activation"]}
        if lc["activation"] == "LeakyReLU":
            act["negative_slope"] = LEAKY_SLOPE
        layers.append({"input_size": lc["input_size"], "condition_size": lc["condition_size"],
                       "head": {"out_channels": lc["head_size"], "kernel_size": 1, "bias": lc["head_bias"]},
                       "channels": lc["channels"], "kernel_sizes": [lc["kernel_size"]] * n,
                       "dilations": list(lc["dilations"]), "activation": [dict(act) for _ in range(n)],
                       "gating_mode": ["gated" if lc.get("gated") else "none"] * n,
                       "secondary_activation": [{"type": "Sigmoid"} if lc.get("gated") else None] * n})
    return {"layers": layers, "head": config["head"], "head_scale": config["head_scale"]}


__all__: Sequence[str] = ["LAYOUTS", "ExportError", "bake_vector", "classic_to_current", "export_nam",
                          "export_nam_grid", "export_notes", "grid_settings", "ir_path", "nam_snapshot",
                          "post_fir_taps"]
