"""What each built-in architecture's config means, without torch: defaults, checks, weight shapes.

``models/`` (torch) builds networks from these configs, ``modelfile.py`` checks a file's weights
against :func:`weight_shapes`, and the streaming engine can read the same facts. Configs are plain
JSON-able dicts; every check raises :class:`ArchitectureError` with a message that says what to fix.

Receptive field of a WaveNet: ``1 + sum over arrays and layers of (kernel_size - 1) * dilation``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from knobcap import limits

ACTIVATIONS: tuple[str, ...] = ("tanh", "hardtanh", "leaky_relu")
"""Activations of the WaveNet: ``tanh``; ``hardtanh`` = clip(z, -1, 1); ``leaky_relu`` =
``z if z >= 0 else 0.01 z``."""
LEAKY_SLOPE = 0.01
MIXINS: tuple[str, ...] = ("linear", "product")
"""What the WaveNet's mixins see: ``linear`` = ``[x; c]`` (the default; optional key, absent means
linear); ``product`` = ``[x; c; x * c]`` (experimental: a knob can scale the input, which still folds
exactly into the mixin's x column for a fixed setting). Independently, ``"film": true`` scales each
dilated convolution by ``1 + F c`` (see ``models/wavenet.py``).

Two optional conditioning stages (issue 12; absent = off, so older files are unchanged):
``"cond_hidden": H`` replaces the setting ``c`` seen by the mixins and FiLM with the features
``s = [c; tanh(A c + a)]`` (``H`` more rows), so a knob can act non-linearly; ``"post_fir": {"taps": T,
"hidden": H}`` follows the WaveNet with a causal FIR of ``T`` taps ``e0 + B tanh(D c + d) + b``
(``B``, ``b`` zero at start: the identity), which adds ``T - 1`` samples to the receptive field."""
MAX_FIR_TAPS = 512

MAX_CHANNELS = 256  # per array of a WaveNet; the totals are bounded by knobcap.limits
MAX_LAYERS = 64
MAX_DILATION = 1 << 16
MAX_KERNEL = 64
MAX_CONTROLS = 256
MAX_HIDDEN = 1024
MAX_LSTM_LAYERS = 8


class ArchitectureError(ValueError):
    """An architecture config is malformed; the message names the key and what to fix."""


def _dilations(count: int = 10) -> list[int]:
    return [1 << i for i in range(count)]


def default_config(architecture: str, n_controls: int) -> dict[str, Any]:
    """The default config of a built-in architecture for ``n_controls`` control inputs."""
    if architecture == "wavenet":
        return {
            "n_controls": n_controls,
            # receptive field 1021 samples (21 ms at 48 kHz). 12 -> 6 channels (8 -> 4 before issue 11's
            # session 11): 32 takes, 6,000 steps, 3 seeds, dense grid never trained on, median / p90 /
            # max 0.0080 / 0.0190 / 0.0246 -> 0.0054 / 0.0118 / 0.0144 on the TS808 and 0.0051 / 0.0152
            # / 0.0256 -> 0.0028 / 0.0085 / 0.0257 on the GxTubeScreamer, for about 1.5x the training
            # time a step and 2.2x the engine's CPU cost, 0.030 cores at block 64 (docs/results.md)
            "arrays": [
                {"channels": 12, "head_size": 6, "kernel_size": 3, "dilations": _dilations(8)},
                {"channels": 6, "head_size": 1, "kernel_size": 3, "dilations": _dilations(8)},
            ],
            "head_scale": 0.02,
            "activation": "tanh",
            # FiLM: measured on a 16-setting TS808 session (benchmarks/training_recipe.py --grid 5),
            # dense-grid median ESR 0.089 -> 0.053 and max 0.47 -> 0.22 at equal steps
            "film": True,
            # A 16-tap output FIR whose taps follow the setting (issue 12, "B16" in docs/results.md):
            # 32 TS808 takes, 1,500 steps, 3 seeds: dense-grid median 0.040 -> 0.027, knob ends
            # 0.055 -> 0.044, held-out time 0.039 -> 0.031, p90/max level; 1.02-1.07x the engine cost
            "post_fir": {"taps": 16, "hidden": 8},
        }
    if architecture == "lstm":
        return {"n_controls": n_controls, "hidden_size": 24, "num_layers": 1}
    raise ArchitectureError(f"no default config for architecture {architecture!r}.")


def _int(config: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArchitectureError(f"{where}: '{key}' must be an integer, got {value!r}.")
    if not low <= value <= high:
        raise ArchitectureError(f"{where}: '{key}' = {value} is out of range {low}..{high}.")
    return value


def check_config(architecture: str, config: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """Validate a built-in architecture's config and return a clean deep copy.

    Unknown architectures pass through unchecked (a user's own, checked by its own class).
    """
    if not isinstance(config, Mapping):
        raise ArchitectureError(f"{where}: the config must be a JSON object.")
    clean = copy.deepcopy(dict(config))
    _int(clean, "n_controls", where, 0, MAX_CONTROLS)
    if architecture == "wavenet":
        arrays = clean.get("arrays")
        if not isinstance(arrays, list) or not 1 <= len(arrays) <= 8:
            raise ArchitectureError(f"{where}: 'arrays' must be a list of 1 to 8 layer arrays.")
        for i, array in enumerate(arrays):
            here = f"{where}: arrays[{i}]"
            if not isinstance(array, Mapping):
                raise ArchitectureError(f"{here} must be an object.")
            channels = _int(array, "channels", here, 1, MAX_CHANNELS)
            head = _int(array, "head_size", here, 1, MAX_CHANNELS)
            _int(array, "kernel_size", here, 1, MAX_KERNEL)
            dilations = array.get("dilations")
            if (not isinstance(dilations, list) or not 1 <= len(dilations) <= MAX_LAYERS
                    or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_DILATION
                               for d in dilations)):
                raise ArchitectureError(
                    f"{here}: 'dilations' must be a list of 1 to {MAX_LAYERS} integers from 1 to "
                    f"{MAX_DILATION}.")
            if i + 1 < len(arrays):
                following = arrays[i + 1].get("channels") if isinstance(arrays[i + 1], Mapping) else None
                if head != following:
                    raise ArchitectureError(
                        f"{here}: head_size ({head}) must equal the channels of the next array "
                        f"({following}).")
            elif head != 1:
                raise ArchitectureError(f"{here}: the last array's head_size must be 1 (mono out).")
            del channels
        scale = clean.get("head_scale")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
            raise ArchitectureError(f"{where}: 'head_scale' must be a finite number.")
        if clean.get("mixin", "linear") not in MIXINS:
            raise ArchitectureError(f"{where}: 'mixin' must be one of {', '.join(MIXINS)}.")
        if not isinstance(clean.get("film", False), bool):
            raise ArchitectureError(f"{where}: 'film' must be true or false.")
        if "cond_hidden" in clean:
            _int(clean, "cond_hidden", where, 0, MAX_HIDDEN)
        fir = clean.get("post_fir")
        if fir is not None:
            if not isinstance(fir, Mapping):
                raise ArchitectureError(
                    f"{where}: 'post_fir' must be an object {{\"taps\": T, \"hidden\": H}} or null.")
            _int(fir, "taps", f"{where}: post_fir", 1, MAX_FIR_TAPS)
            _int(fir, "hidden", f"{where}: post_fir", 1, MAX_HIDDEN)
        if clean.get("activation") not in ACTIVATIONS:
            raise ArchitectureError(
                f"{where}: 'activation' must be one of {', '.join(ACTIVATIONS)}, got "
                f"{clean.get('activation')!r}.")
    elif architecture == "lstm":
        _int(clean, "hidden_size", where, 1, MAX_HIDDEN)
        _int(clean, "num_layers", where, 1, MAX_LSTM_LAYERS)
    if architecture in BUILT_IN:
        check_sizes(architecture, clean, where)
    return clean


def check_sizes(architecture: str, config: Mapping[str, Any], where: str = "config") -> None:
    """Refuse a checked built-in config whose totals pass :mod:`knobcap.limits`: layers, channels,
    receptive field and weights (counted from the config, before anything is allocated)."""
    try:
        if architecture == "wavenet":
            arrays = config["arrays"]
            limits.MAX_LAYERS.check(sum(len(a["dilations"]) for a in arrays), where)
            limits.MAX_CHANNELS.check(sum(a["channels"] for a in arrays), where)
        else:
            limits.MAX_LAYERS.check(config["num_layers"], where)
            limits.MAX_CHANNELS.check(config["hidden_size"], where)
        limits.MAX_RECEPTIVE_FIELD.check(receptive_field(architecture, config), where)
        shapes = weight_shapes(architecture, config).values()
        limits.MAX_WEIGHTS.check(sum(math.prod(shape) for shape in shapes), where)
    except limits.LimitError as error:
        raise ArchitectureError(str(error)) from None


def receptive_field(architecture: str, config: Mapping[str, Any]) -> int:
    """Input samples behind one output sample."""
    if architecture == "wavenet":
        fir = config.get("post_fir") or {}
        return (1 + sum((a["kernel_size"] - 1) * d for a in config["arrays"] for d in a["dilations"])
                + int(fir.get("taps", 1)) - 1)
    return 1


def weight_shapes(architecture: str, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state-dict names and shapes of a built-in architecture (the model file's contract)."""
    shapes: dict[str, tuple[int, ...]] = {}
    n_cond = 1 + int(config["n_controls"])
    if architecture == "wavenet":
        n_cond = condition_size(config)
        previous = 1
        for i, array in enumerate(config["arrays"]):
            ch, k = array["channels"], array["kernel_size"]
            shapes[f"arrays.{i}.rechannel.weight"] = (ch, previous, 1)
            for j in range(len(array["dilations"])):
                prefix = f"arrays.{i}.layers.{j}"
                shapes[f"{prefix}.conv.weight"] = (ch, ch, k)
                shapes[f"{prefix}.conv.bias"] = (ch,)
                shapes[f"{prefix}.mixin.weight"] = (ch, n_cond, 1)
                if config.get("film", False):
                    shapes[f"{prefix}.film.weight"] = (ch, setting_size(config), 1)
                shapes[f"{prefix}.out.weight"] = (ch, ch, 1)
                shapes[f"{prefix}.out.bias"] = (ch,)
            shapes[f"arrays.{i}.head_rechannel.weight"] = (array["head_size"], ch, 1)
            shapes[f"arrays.{i}.head_rechannel.bias"] = (array["head_size"],)
            previous = ch
        hidden = int(config.get("cond_hidden", 0))
        if hidden:
            shapes["cond_mlp.weight"] = (hidden, int(config["n_controls"]), 1)
            shapes["cond_mlp.bias"] = (hidden,)
        fir = config.get("post_fir")
        if fir:
            shapes["post_fir.hidden.weight"] = (int(fir["hidden"]), int(config["n_controls"]), 1)
            shapes["post_fir.hidden.bias"] = (int(fir["hidden"]),)
            shapes["post_fir.taps.weight"] = (int(fir["taps"]), int(fir["hidden"]), 1)
            shapes["post_fir.taps.bias"] = (int(fir["taps"]),)
        return shapes
    if architecture == "lstm":
        hidden = config["hidden_size"]
        for layer in range(config["num_layers"]):
            inputs = n_cond if layer == 0 else hidden
            shapes[f"lstm.weight_ih_l{layer}"] = (4 * hidden, inputs)
            shapes[f"lstm.weight_hh_l{layer}"] = (4 * hidden, hidden)
            shapes[f"lstm.bias_ih_l{layer}"] = (4 * hidden,)
            shapes[f"lstm.bias_hh_l{layer}"] = (4 * hidden,)
        shapes["head.weight"] = (1, hidden)
        shapes["head.bias"] = (1,)
        return shapes
    raise ArchitectureError(f"no weight layout known for architecture {architecture!r}.")


BUILT_IN: tuple[str, ...] = ("wavenet", "lstm")


def condition_size(config: Mapping[str, Any]) -> int:
    """Rows of a WaveNet's condition: ``1 + S`` (linear mixin) or ``1 + 2 S`` (product mixin), with
    ``S`` = :func:`setting_size`."""
    n = setting_size(config)
    return 1 + (2 * n if config.get("mixin", "linear") == "product" else n)


def setting_size(config: Mapping[str, Any]) -> int:
    """Rows of the setting features a WaveNet's mixins and FiLM see: ``C`` (+ ``cond_hidden``)."""
    return int(config["n_controls"]) + int(config.get("cond_hidden", 0))
