"""Audio through a model file on the streaming engine: a WAV file (``knobcap render``) or an array.

Rates: audio at rate ``r`` runs through a model of rate ``R`` after a polyphase resampling by
``up / down = (R / g) / (r / g)``, ``g = gcd(r, R)``, and is resampled back afterwards. Channels: each
channel of a stereo input runs through the engine on its own, each from silence at the fixed setting.

    job = open_render("model.knobcap", "in.wav", "out.wav", setting={"drive": 7})  # or ["drive=7"]
    result = job.run(progress=lambda n: ...)          # writes out.wav; CPU cost in result.cores

    model = LoadedModel.from_file("model.knobcap")     # knobcap.load_model
    y = model(x, 44100, drive=7, diodes="led")         # same shape and rate as x

    renderer = load_renderer("model.knobcap")          # the play page and the report
    y = renderer.render(x, {"drive": 7})               # mono, at renderer.sample_rate

``load_renderer`` opens the model on the streaming engine (a :class:`LoadedModel`); with
``allow_torch`` (the report), a machine where the engine cannot be imported falls back to the PyTorch
model (:class:`knobcap.models.bridge.TorchModel`, the same call shape). torch is imported only then.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy.signal import resample_poly

from knobcap.controls import Controls, parse_setting_args, settings_from_args
from knobcap.fileio import AudioFileError, check_output_path, read_wav, write_wav_atomic
from knobcap.runtime.automation import Move, load_automation
from knobcap.runtime.automation import render as render_moves

if TYPE_CHECKING:  # imported on use, so that load_renderer can fall back when numba is broken
    from knobcap.runtime.engine import Engine

Progress = Callable[[int], None]


class RenderFileError(ValueError):
    """A render cannot start; the message names the file and what to do."""


class Renderer(Protocol):
    """A model at a fixed setting, for the play page and the report: :class:`LoadedModel` or the
    PyTorch fallback :class:`knobcap.models.bridge.TorchModel`."""

    controls: Controls
    sample_rate: int
    description: str

    def render(self, audio: np.ndarray, setting: Mapping[str, object]) -> np.ndarray:
        """Output for mono float32 ``audio`` at ``sample_rate`` (from silence) at ``setting``; same
        length."""
        ...


@dataclass(frozen=True)
class RenderResult:
    """What a render wrote: the output file, its length and peak, and the engine's CPU cost."""

    output: Path
    frames: int
    sample_rate: int
    channels: int
    peak: float
    cpu_seconds: float
    audio_seconds: float  # of model-rate audio, summed over channels
    block_size: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    @property
    def cores(self) -> float:
        """CPU seconds per second of audio per channel (one core = 1.0)."""
        return self.cpu_seconds / self.audio_seconds if self.audio_seconds else 0.0


def rate_ratio(rate: int, model_rate: int) -> tuple[int, int]:
    """``(up, down)`` that take ``rate`` to ``model_rate`` (``(1, 1)`` when they are equal)."""
    factor = math.gcd(int(rate), int(model_rate))
    return int(model_rate) // factor, int(rate) // factor


def resample(audio: np.ndarray, up: int, down: int) -> np.ndarray:
    """Polyphase resampling along time (axis 0) by ``up / down``, as float32."""
    return resample_poly(audio, up, down, axis=0).astype(np.float32)


def run_channels(engine: Engine, audio: np.ndarray, fixed: Mapping[str, object], moves: list[Move],
                 block_size: int, progress: Progress | None = None) -> tuple[np.ndarray, float, float]:
    """Each column of ``audio`` (time, channels) through ``engine``, the first from where the engine is,
    the others from silence at ``fixed``; returns the output, CPU seconds and seconds of audio."""
    outputs = []
    cpu = seconds = 0.0
    for ch in range(audio.shape[1]):
        if ch:
            engine.set(fixed, ramp_ms=0)
            engine.reset()
        y, stats = render_moves(engine, audio[:, ch], moves, block_size, progress=progress)
        outputs.append(y)
        cpu += stats.cpu_seconds
        seconds += stats.seconds_of_audio
    return np.stack(outputs, axis=1), cpu, seconds


class RenderJob:
    """A checked render, ready to run: the engine at its setting, the input read and at the model's rate.

    ``notes`` says what the render will do besides the model (resampling, stereo); ``total`` is the
    number of samples ``run`` reports to its progress callback.
    """

    def __init__(self, engine: Engine, audio: np.ndarray, rate: int, output: Path,
                 fixed: Mapping[str, object], moves: list[Move], block_size: int) -> None:
        self.engine = engine
        self.rate = rate
        self.output = output
        self.fixed = dict(fixed)
        self.moves = moves
        self.block_size = block_size
        self.channels = audio.shape[1]
        self.notes: list[str] = []
        self._ratio = rate_ratio(rate, engine.sample_rate)
        if rate != engine.sample_rate:
            self.notes.append(f"Resampling {rate} Hz -> {engine.sample_rate} Hz (the model's rate) with a "
                              "polyphase filter, and back afterwards.")
            audio = resample(audio, *self._ratio)
        if self.channels == 2:
            self.notes.append("Stereo input: each channel runs through the model on its own.")
        self.audio = audio

    @property
    def total(self) -> int:
        return self.audio.shape[0] * self.channels

    def run(self, progress: Progress | None = None) -> RenderResult:
        """Render every channel, resample back to the input's rate and write the output WAV."""
        result, cpu, seconds = run_channels(self.engine, self.audio, self.fixed, self.moves, self.block_size,
                                            progress)
        if self.rate != self.engine.sample_rate:
            up, down = self._ratio
            result = resample(result, down, up)
        peak = float(np.max(np.abs(result))) if result.size else 0.0
        write_wav_atomic(self.output, result if self.channels == 2 else result[:, 0], int(self.rate))
        return RenderResult(self.output, result.shape[0], int(self.rate), self.channels, peak, cpu, seconds,
                            self.block_size)


def open_render(model_path: str | Path, input_wav: str | Path, output_wav: str | Path,
                setting: Mapping[str, object] | Iterable[str] = (), automation: str | Path | None = None,
                ramp_ms: float = 50.0, block_size: int = 512, force: bool = False) -> RenderJob:
    """Check everything a render needs and load the model and the input; nothing is written yet.

    ``setting``: fixed values, as a mapping or as ``name=value`` strings typed after ``--set`` (checked
    once the model's controls are known); ``automation``: a CSV of moves
    (:mod:`knobcap.runtime.automation`). Refuses to overwrite an input, or an existing output unless
    ``force``.
    """
    model_path, input_wav, output_wav = Path(model_path), Path(input_wav), Path(output_wav)
    automation = Path(automation) if automation is not None else None
    out_resolved = output_wav.resolve()
    if out_resolved in (input_wav.resolve(), model_path.resolve()) or (
            automation is not None and out_resolved == automation.resolve()):
        raise RenderFileError(f"{output_wav}: is one of the inputs; knobcap never overwrites an input. "
                              "Choose another name.")
    check_output_path(output_wav, force)
    from knobcap.runtime.engine import MAX_BLOCK, Engine

    if not 1 <= block_size <= MAX_BLOCK:
        raise RenderFileError(f"--block-size must be from 1 to {MAX_BLOCK}, got {block_size}.")
    engine = Engine.from_file(model_path, ramp_ms=ramp_ms)
    raw = dict(setting) if isinstance(setting, Mapping) else parse_setting_args(setting)
    fixed = settings_from_args(engine.controls, raw)  # knobs to float (numbers or strings), switches kept
    engine.set(fixed, ramp_ms=0)
    engine.reset()
    moves = load_automation(automation, engine.controls, engine.sample_rate) if automation else []
    audio, rate = read_input(input_wav)
    return RenderJob(engine, audio, rate, output_wav, fixed, moves, block_size)


def read_input(path: Path) -> tuple[np.ndarray, int]:
    """A mono or stereo audio file as float32 ``(time, channels)`` and its rate; clear errors otherwise."""
    try:
        audio, rate = read_wav(path, mono=False)
    except AudioFileError as error:
        raise RenderFileError(str(error)) from None
    if audio.shape[0] == 0:
        raise RenderFileError(f"{path}: holds no samples.")
    if audio.shape[1] > 2:
        raise RenderFileError(f"{path}: has {audio.shape[1]} channels; give a mono or stereo file.")
    refuse_non_finite(audio, int(rate), str(path))
    return audio, int(rate)


def refuse_non_finite(audio: np.ndarray, rate: int, where: str) -> None:
    """Raise :class:`RenderFileError` naming the first NaN or infinite sample (time, channel)."""
    bad = ~np.isfinite(audio)
    if bad.any():
        frame, channel = (int(i) for i in np.argwhere(bad.reshape(audio.shape[0], -1))[0])
        value = audio.reshape(audio.shape[0], -1)[frame, channel]
        raise RenderFileError(
            f"{where}: sample {frame} (at {frame / rate:.6f} s, channel {channel + 1}) is {value}, and "
            f"{int(bad.sum())} sample(s) in all are not finite; knobcap renders only finite audio. Repair or "
            "re-export the file.")


class LoadedModel:
    """A ``model.knobcap`` on the streaming engine (no torch), called as ``model(audio, rate, **setting)``.

    Each call starts from silence at the setting (controls not given take their defaults), takes mono
    ``(time,)`` or multichannel ``(time, channels)`` audio at any rate, and returns float32 audio of the
    same shape at the same rate. Calls from several threads take turns. ``render(audio, setting)`` is
    the :class:`Renderer` shape: mono audio at the model's rate, a setting checked as given.
    """

    description = "streaming engine"

    def __init__(self, engine: Engine, block_size: int = 512) -> None:
        if not 1 <= block_size <= engine.max_block:
            raise RenderFileError(f"block_size must be from 1 to {engine.max_block}, got {block_size}.")
        self.engine = engine
        self.block_size = block_size
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path, block_size: int = 512) -> LoadedModel:
        """Load and check a model file (no torch, no pickle)."""
        from knobcap.runtime.engine import Engine

        return cls(Engine.from_file(path, ramp_ms=0.0), block_size)

    @property
    def controls(self) -> Controls:
        return self.engine.controls

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    @property
    def architecture(self) -> str:
        return self.engine.model.architecture

    def __repr__(self) -> str:
        return (f"LoadedModel({self.engine.source!r}: {self.architecture}, {self.sample_rate} Hz, controls "
                f"{', '.join(self.controls.names)})")

    def __call__(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object] | None = None,
                 /, **controls: object) -> np.ndarray:
        """The model's output for ``audio`` at ``sample_rate`` and the setting (a mapping, keywords, or
        both; keywords win)."""
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[0] == 0:
            raise RenderFileError(f"audio must be a non-empty array of shape (time,) or (time, channels), "
                                  f"got shape {x.shape}.")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
            raise RenderFileError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}.")
        refuse_non_finite(x, int(sample_rate), "audio")
        full = {**self.controls.default_setting(), **(setting or {}), **controls}
        columns = x[:, None] if x.ndim == 1 else x
        up, down = rate_ratio(int(sample_rate), self.sample_rate)
        if (up, down) != (1, 1):
            columns = resample(columns, up, down)
        with self._lock:
            self.engine.set(full, ramp_ms=0)
            self.engine.reset()
            y, _, _ = run_channels(self.engine, np.ascontiguousarray(columns), self.engine.setting, [],
                                   self.block_size)
        if (up, down) != (1, 1):
            y = resample(y, down, up)[: x.shape[0]]  # ceil(ceil(n up / down) down / up) >= n
        return y[:, 0] if x.ndim == 1 else y

    def render(self, audio: np.ndarray, setting: Mapping[str, object]) -> np.ndarray:
        """The output for mono ``audio`` at the model's rate, from silence at ``setting`` (every control
        given, checked); same length."""
        clean = self.controls.validate_setting(setting)
        with self._lock:  # one engine, one state: renders take turns
            self.engine.set(clean, ramp_ms=0.0)
            self.engine.reset()  # silence at the setting: the same start as the report's target
            out = self.engine.process(np.ascontiguousarray(audio, dtype=np.float32),
                                      block_size=self.block_size)
        return np.asarray(out, dtype=np.float32)


#: The block the play page and the report render in (at most the engine's largest block).
RENDER_BLOCK = 2048


def load_renderer(path: str | Path, allow_torch: bool = False) -> Renderer:
    """A :class:`Renderer` for the model file ``path``: the streaming engine; with ``allow_torch``, the
    PyTorch model where the engine cannot be imported (torch is imported only then)."""
    path = Path(path)
    if not path.is_file():
        raise RenderFileError(f"{path}: no such model file; give the model.knobcap of a run.")
    try:
        from knobcap.runtime.engine import Engine
    except ImportError as error:
        if not allow_torch:
            raise RenderFileError(
                f"{path}: the streaming engine (knobcap.runtime.engine) cannot be imported ({error}); "
                "reinstall knobcap.") from None
        try:
            from knobcap.models.bridge import TorchModel
        except ImportError as torch_error:
            raise RenderFileError(
                f"{path}: neither the streaming engine nor PyTorch is available ({torch_error}).") from None
        return TorchModel.from_file(path)
    engine = Engine.from_file(path, ramp_ms=0.0)
    return LoadedModel(engine, block_size=min(RENDER_BLOCK, engine.max_block))
