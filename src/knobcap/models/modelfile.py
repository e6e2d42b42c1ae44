"""The ``model.knobcap`` file: one JSON object that a stranger can send safely (no torch, no pickle).

    {"format": "knobcap-model", "format_version": 1, "knobcap_version": "...",
     "architecture": "wavenet", "config": {...}, "controls": {...}, "sample_rate": 48000,
     "weights": {"<state-dict name>": {"shape": [...], "dtype": "float32",
                                       "data": "<base64 of little-endian float32>"}},
     "dc_blocker_hz": null, "metadata": {...}}

``dc_blocker_hz`` (format 2; null or absent: none) is the corner of a first-order DC blocker that every
runtime applies to the model's output (:mod:`knobcap.dsp.dc_blocker`). Files of format 1 still load.

Loading checks everything before use: size limits, JSON types, the architecture's config, every
weight's shape against the config (for built-in architectures), base64, byte counts and finiteness.
A bad file is refused with :class:`ModelFileError` naming the file and the problem.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from knobcap import __version__, limits
from knobcap.controls import Controls, ControlsError
from knobcap.dsp.dc_blocker import check_cutoff
from knobcap.fileio import write_text_atomic
from knobcap.models.architectures import BUILT_IN, ArchitectureError, check_config, weight_shapes

FORMAT = "knobcap-model"
FORMAT_VERSION = 2
READS_VERSIONS = (1, 2)
MAX_FILE_BYTES = 512 * 1024 * 1024
_TOP_KEYS = {"format", "format_version", "knobcap_version", "architecture", "config", "controls",
             "sample_rate", "weights", "metadata", "dc_blocker_hz"}


class ModelFileError(ValueError):
    """A model file cannot be used; the message names the file and what is wrong."""


@dataclass
class ModelFile:
    """A model as stored on disk: architecture, config, controls, rate, weights and metadata."""

    architecture: str
    config: dict[str, Any]
    controls: Controls
    sample_rate: int
    weights: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    #: corner of the output DC blocker in Hz (None: no blocker); see :mod:`knobcap.dsp.dc_blocker`
    dc_blocker_hz: float | None = None

    @property
    def n_parameters(self) -> int:
        return int(sum(w.size for w in self.weights.values()))


def _encode(array: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(data.shape), "dtype": "float32",
            "data": base64.b64encode(data.tobytes()).decode("ascii")}


def model_to_dict(model: ModelFile) -> dict[str, Any]:
    """The JSON object of a model file (weights checked for finiteness first)."""
    for name, array in model.weights.items():
        if not np.all(np.isfinite(array)):
            raise ModelFileError(f"weight {name!r} holds NaN or infinity; the model is broken, not saved.")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "knobcap_version": __version__,
        "architecture": model.architecture,
        "config": model.config,
        "controls": model.controls.to_dict(),
        "sample_rate": int(model.sample_rate),
        "weights": {name: _encode(array) for name, array in model.weights.items()},
        "dc_blocker_hz": check_cutoff(model.dc_blocker_hz, "model"),
        "metadata": model.metadata,
    }


def save_model_file(path: str | Path, model: ModelFile, overwrite: bool = False) -> Path:
    """Write ``model`` to ``path`` atomically; an existing file is kept unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ModelFileError(f"{path}: already exists; choose another name or remove it first.")
    text = json.dumps(model_to_dict(model), allow_nan=False, separators=(",", ":"))
    return write_text_atomic(path, text)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"the number {name} is not allowed")


def load_model_file(path: str | Path) -> ModelFile:
    """Read and check a ``model.knobcap`` file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file.")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelFileError(
            f"{path}: {size / 2**20:.0f} MiB is too large for a model file (limit "
            f"{MAX_FILE_BYTES // 2**20} MiB); it is not a knobcap model.")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ModelFileError(f"{path}: not a knobcap model file (not valid JSON: {error}).") from None
    return model_from_dict(data, source=str(path))


def model_from_dict(data: Any, source: str = "model") -> ModelFile:
    """Check a parsed model object and return a :class:`ModelFile`."""
    def bad(message: str) -> ModelFileError:
        return ModelFileError(f"{source}: {message}")

    if not isinstance(data, dict):
        raise bad("not a knobcap model file (the top level is not a JSON object).")
    if data.get("format") != FORMAT:
        raise bad(f"not a knobcap model file ('format' is {data.get('format')!r}, expected {FORMAT!r}).")
    version = data.get("format_version")
    if isinstance(version, bool) or version not in READS_VERSIONS:
        raise bad(f"format_version {version!r} is not supported by knobcap {__version__} (reads "
                  f"{', '.join(map(str, READS_VERSIONS))}); update knobcap.")
    unknown = set(data) - _TOP_KEYS | ({"dc_blocker_hz"} & set(data) if version == 1 else set())
    if unknown:
        raise bad(f"unknown top-level key(s) {', '.join(sorted(unknown))}.")
    architecture = data.get("architecture")
    if not isinstance(architecture, str) or not architecture:
        raise bad("'architecture' must be a non-empty string.")
    rate = data.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1_000 <= rate <= 1_000_000:
        raise bad(f"'sample_rate' must be an integer in Hz, got {rate!r}.")
    try:
        controls = Controls.from_dict(data.get("controls"), source=f"{source} (controls)")
    except ControlsError as error:
        raise bad(f"bad controls: {error}") from None
    try:
        config = check_config(architecture, data.get("config"), where="config")
    except ArchitectureError as error:
        raise bad(str(error)) from None
    if config["n_controls"] != controls.vector_size:
        raise bad(f"config says {config['n_controls']} control inputs but the controls need "
                  f"{controls.vector_size}.")
    try:
        dc_blocker_hz = check_cutoff(data.get("dc_blocker_hz"), "the output DC blocker")
    except ValueError as error:
        raise bad(str(error)) from None
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise bad("'metadata' must be a JSON object.")
    weights = _decode_weights(data.get("weights"), bad)
    if architecture in BUILT_IN:
        expected = weight_shapes(architecture, config)
        missing = sorted(set(expected) - set(weights))
        extra = sorted(set(weights) - set(expected))
        if missing or extra:
            raise bad(f"weights do not match a {architecture} of this config (missing: "
                      f"{', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(extra[:3]) or 'none'}).")
        for name, shape in expected.items():
            if weights[name].shape != shape:
                raise bad(f"weight {name!r} has shape {list(weights[name].shape)} but the config needs "
                          f"{list(shape)}.")
    return ModelFile(architecture=architecture, config=config, controls=controls, sample_rate=rate,
                     weights=weights, metadata=metadata, dc_blocker_hz=dc_blocker_hz)


def _decode_weights(raw: Any, bad: Any) -> dict[str, np.ndarray]:
    if not isinstance(raw, dict) or not raw:
        raise bad("'weights' must be a non-empty JSON object.")
    weights: dict[str, np.ndarray] = {}
    total = 0
    for name, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) != {"shape", "dtype", "data"}:
            raise bad(f"weight {name!r} must be an object with exactly shape, dtype and data.")
        if entry["dtype"] != "float32":
            raise bad(f"weight {name!r} has dtype {entry['dtype']!r}; only float32 is allowed.")
        shape = entry["shape"]
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise bad(f"weight {name!r} has a malformed shape {shape!r}.")
        count = math.prod(shape)
        total += count
        try:
            limits.MAX_WEIGHTS.check(total, "weights")
        except limits.LimitError as error:
            raise bad(str(error)) from None
        if not isinstance(entry["data"], str) or len(entry["data"]) != 4 * ((4 * count + 2) // 3):
            raise bad(f"weight {name!r}: data length does not match its shape {shape}.")
        try:
            blob = base64.b64decode(entry["data"], validate=True)
        except (binascii.Error, ValueError):
            raise bad(f"weight {name!r}: data is not valid base64.") from None
        if len(blob) != 4 * count:
            raise bad(f"weight {name!r}: {len(blob)} bytes for shape {shape} (needs {4 * count}).")
        array = np.frombuffer(blob, dtype="<f4").astype(np.float32).reshape(shape)
        if not np.all(np.isfinite(array)):
            raise bad(f"weight {name!r} holds NaN or infinity.")
        weights[name] = array
    return weights


def describe(model: ModelFile) -> Mapping[str, Any]:
    """A short summary for printing."""
    return {"architecture": model.architecture, "parameters": model.n_parameters,
            "controls": model.controls.names, "sample_rate": model.sample_rate,
            "dc_blocker_hz": model.dc_blocker_hz}
