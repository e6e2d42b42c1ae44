"""How good is a parametric model? ESR per setting, on held-out time, held-out settings, a dense grid
of the control space and real guitar playing.

The error-to-signal ratio of a model output ``ŷ`` against the target ``y`` over a segment is

    ESR = Σ (ŷ[n] - y[n])² / Σ y[n]²

(0 is perfect; 1 is as bad as silence). NAM prints verdicts on it: < 0.01 great, < 0.035 not bad,
< 0.1 might sound OK, else probably not. knobcap's headline is the ESR on *settings never trained on*:

* **held-out time**: every recorded take at its own setting, on the validation segment of the test
  signal (the training span excludes it);
* **held-out settings**: the takes planned as ``holdout`` (never trained on), on the same segment;
* **dense grid** (with a virtual device): ``levels`` evenly spaced taper-aware positions ``u`` per knob
  times every switch combination, rendered by the device on the validation segment; grid points that
  coincide with a training setting are flagged and left out of the headline;
* **real DI**: clean guitar recordings rendered through the device at seeded random settings.

The results go to ``metrics.json`` in the run folder (see docs/internals.md for its layout).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from knobcap import limits
from knobcap.controls import Controls, Knob, Setting, setting_label
from knobcap.fileio import read_wav, write_json_atomic, write_wav_atomic
from knobcap.metrics import VERDICTS, EvaluationError, esr, is_silent, verdict
from knobcap.training.run import Run, RunError

if TYPE_CHECKING:
    from knobcap.capture.device_delay import DelayAligned, RecordedTake
    from knobcap.capture.session import Session

METRICS_FORMAT = "knobcap-metrics"
METRICS_VERSION = 1
PREROLL_SECONDS = 0.5  # audio fed before a segment so that model and device states settle
SAME_SETTING_TOL = 1e-3  # distance in normalised coordinates under which two settings are one
DEFAULT_DI_SETTINGS = 4

Predictor = Callable[[np.ndarray, Sequence[Setting]], np.ndarray]
"""``predict(x, settings) -> (len(settings), len(x))``: the model's output for one input at each
setting, from a zero initial state (the first outputs see zeros before ``x``)."""

Progress = Callable[[str, int, int], None]
"""``progress(task, done, total)``: called as work advances."""


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """Count, median, 90th percentile (linear interpolation), max and mean of some ESRs."""
    data = np.asarray([float(v) for v in values], dtype=np.float64)
    if data.size == 0:
        return {"count": 0, "median": None, "p90": None, "max": None, "mean": None}
    return {"count": int(data.size), "median": float(np.median(data)),
            "p90": float(np.percentile(data, 90)), "max": float(np.max(data)), "mean": float(np.mean(data))}


# ------------------------------------------------------------------------------------------ settings
def dense_grid(controls: Controls, levels: int = 6) -> list[Setting]:
    """``levels`` evenly spaced positions per knob in the coordinates of its *taper* (a measured warp
    is ignored, so that models with and without warps are scored on the same settings), times every
    switch combination (knob-major order, switches varying slowest)."""
    if levels < 2:
        raise EvaluationError(f"a grid needs at least 2 levels per knob (got {levels}).")
    size = levels ** len(controls.knobs) * len(controls.switch_combinations())
    limits.MAX_GRID_SETTINGS.check(size, f"--grid {levels}")  # before a setting is made
    units = np.linspace(0.0, 1.0, levels)
    knob_values = [[unwarped(k).from_unit(u) for u in units] for k in controls.knobs]
    grid: list[Setting] = []
    for combo in controls.switch_combinations():
        for values in _product(knob_values):
            setting: Setting = {k.name: float(v) for k, v in zip(controls.knobs, values, strict=True)}
            setting.update(combo)
            grid.append(setting)
    return grid


def unwarped(knob: Knob) -> Knob:
    """The knob with its taper's own coordinates (no measured warp)."""
    return knob if knob.warp is None else replace(knob, warp=None)


def _product(lists: list[list[float]]) -> list[tuple[float, ...]]:
    out: list[tuple[float, ...]] = [()]
    for values in lists:
        out = [(*head, v) for head in out for v in values]
    return out


def random_settings(controls: Controls, count: int, seed: int = 0) -> list[Setting]:
    """``count`` settings with knobs uniform in taper ``u`` (no warp) and switch combinations in turn
    (seeded, so that runs and designs are compared on the same settings)."""
    rng = np.random.default_rng(seed)
    combos = controls.switch_combinations()
    settings: list[Setting] = []
    for i in range(count):
        setting: Setting = {k.name: unwarped(k).from_unit(float(rng.uniform())) for k in controls.knobs}
        setting.update(combos[i % len(combos)])
        settings.append(setting)
    return settings


def nearest_distance(controls: Controls, setting: Mapping[str, object],
                     others: Sequence[Mapping[str, object]]) -> float:
    """Euclidean distance in knob ``u`` from ``setting`` to the nearest of ``others`` with the same
    switch positions (``inf`` when none shares them). Output-gain knobs do not count: the model never
    sees them, so a setting that differs from a take only in them is one the model was trained on."""
    clean = controls.validate_setting(setting)
    seen = np.array([k.gain_db is None for k in controls.knobs], bool)
    u = controls.unit_knobs(clean)[seen]
    best = math.inf
    for other in others:
        o = controls.validate_setting(other)
        if any(clean[s.name] != o[s.name] for s in controls.switches):
            continue
        best = min(best, float(np.linalg.norm(u - controls.unit_knobs(o)[seen])))
    return best


# --------------------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Row:
    """The ESR of one setting (and, for DI, one clip)."""

    setting: Setting
    esr: float
    take: str | None = None
    role: str | None = None
    clip: str | None = None
    trained: bool = False
    distance: float | None = None  # to the nearest training setting, in knob u

    def to_dict(self, controls: Controls) -> dict[str, object]:
        out: dict[str, object] = {"setting": dict(self.setting),
                                  "label": setting_label(self.setting, controls),
                                  "esr": self.esr, "verdict": verdict(self.esr)}
        for key in ("take", "role", "clip"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.distance is not None:
            out["trained"] = self.trained
            out["distance_to_training"] = None if math.isinf(self.distance) else self.distance
        return out


def predict_segment(predict: Predictor, audio: np.ndarray, start: int, stop: int,
                    settings: Sequence[Setting], preroll: int) -> np.ndarray:
    """Model output on ``audio[start:stop]`` at each setting, after ``preroll`` samples of context."""
    begin = max(0, start - preroll)
    out = predict(np.asarray(audio[begin:stop], dtype=np.float32), settings)
    return np.asarray(out)[:, start - begin:]


def render_segment(device: object, audio: np.ndarray, start: int, stop: int, setting: Setting,
                   sample_rate: int, preroll: int) -> np.ndarray:
    """Device output on ``audio[start:stop]``, rendered from ``preroll`` samples earlier."""
    begin = max(0, start - preroll)
    out = device.process(np.asarray(audio[begin:stop], dtype=np.float64), sample_rate, setting)  # type: ignore[attr-defined]
    return np.asarray(out, dtype=np.float64)[start - begin:]


class RenderCache:
    """Device renders kept as WAV files under ``folder`` and keyed by device, setting and input."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def key(self, device_name: str, setting: Mapping[str, object], audio: np.ndarray, extra: str) -> str:
        digest = hashlib.sha1(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()
        text = json.dumps({"device": device_name, "setting": dict(setting), "audio": digest,
                           "extra": extra}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def get(self, key: str, sample_rate: int) -> np.ndarray | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.wav"
        if not path.is_file():
            return None
        try:
            audio, _ = read_wav(path, sample_rate=sample_rate)
        except ValueError:
            return None  # a damaged cache entry is rendered again
        return audio.astype(np.float64)

    def put(self, key: str, audio: np.ndarray, sample_rate: int) -> None:
        if self.folder is not None:
            write_wav_atomic(self.folder / f"{key}.wav", audio, sample_rate)


def cached_render(device: object, cache: RenderCache, audio: np.ndarray, start: int, stop: int,
                  setting: Setting, sample_rate: int, preroll: int) -> np.ndarray:
    """:func:`render_segment`, read from ``cache`` when it was rendered before."""
    name = str(getattr(device, "name", type(device).__name__))
    options = repr(device) if type(device).__repr__ is not object.__repr__ else ""  # e.g. oversampling
    delay = getattr(device, "delay", None)  # a DelayAligned device: the shift is part of the render
    if callable(delay):
        options += f"|delay {delay(sample_rate)}"
    key = cache.key(name, setting, audio[max(0, start - preroll):stop], f"{start}:{stop}:{preroll}:{options}")
    hit = cache.get(key, sample_rate)
    if hit is not None and len(hit) == stop - start:
        return hit
    out = render_segment(device, audio, start, stop, setting, sample_rate, preroll)
    cache.put(key, out, sample_rate)
    return out


def evaluate_against_device(predict: Predictor, device: object, controls: Controls, audio: np.ndarray,
                            sample_rate: int, settings: Sequence[Setting], start: int = 0,
                            stop: int | None = None, training: Sequence[Setting] = (),
                            cache: RenderCache | None = None, clip: str | None = None,
                            batch: int = 8, progress: Progress | None = None,
                            task: str = "grid", silent: list[Setting] | None = None) -> list[Row]:
    """ESR of the model against the device on ``audio[start:stop]`` at each setting.

    Each row records whether its setting coincides with a training setting (distance in knob ``u``
    below :data:`SAME_SETTING_TOL` with equal switches) and its distance to the nearest one. A setting
    where the device is silent (:func:`knobcap.metrics.is_silent`: a volume at 0, a tone stack all the
    way down) has no ESR: it is left out and, given ``silent``, listed there.
    """
    stop = len(audio) if stop is None else stop
    preroll = int(PREROLL_SECONDS * sample_rate)
    cache = cache or RenderCache(None)
    rows: list[Row] = []
    for first in range(0, len(settings), batch):
        chunk = list(settings[first:first + batch])
        predicted = predict_segment(predict, audio, start, stop, chunk, preroll)
        for setting, y_hat in zip(chunk, predicted, strict=True):
            target = cached_render(device, cache, audio, start, stop, setting, sample_rate, preroll)
            if is_silent(target):
                if silent is not None:
                    silent.append(dict(setting))
                continue
            distance = nearest_distance(controls, setting, training) if training else math.inf
            rows.append(Row(setting=dict(setting), esr=esr(y_hat, target), clip=clip,
                            trained=distance < SAME_SETTING_TOL, distance=distance))
        if progress is not None:
            progress(task, min(first + batch, len(settings)), len(settings))
    return rows


def evaluate_takes(predict: Predictor, audio: np.ndarray, takes: Sequence[tuple[str, Setting, str]],
                   targets: Callable[[str], np.ndarray], start: int, stop: int, sample_rate: int,
                   batch: int = 8, progress: Progress | None = None, task: str = "takes") -> list[Row]:
    """ESR of the model against recorded (aligned) takes on ``[start, stop)``.

    ``takes`` lists ``(take, setting, role)``; ``targets(take)`` returns the take aligned to ``audio``.
    """
    preroll = int(PREROLL_SECONDS * sample_rate)
    rows: list[Row] = []
    for first in range(0, len(takes), batch):
        chunk = list(takes[first:first + batch])
        predicted = predict_segment(predict, audio, start, stop, [s for _, s, _ in chunk], preroll)
        for (take, setting, role), y_hat in zip(chunk, predicted, strict=True):
            target = np.asarray(targets(take), dtype=np.float64)[start:stop]
            if len(target) != stop - start:
                raise EvaluationError(
                    f"take {take!r} is shorter than the input segment it is evaluated on; run 'knobcap "
                    "check' and record the take again.")
            rows.append(Row(setting=dict(setting), esr=esr(y_hat, target), take=take, role=role))
        if progress is not None:
            progress(task, min(first + batch, len(takes)), len(takes))
    return rows


def section(controls: Controls, rows: Sequence[Row], **extra: object) -> dict[str, object]:
    """A metrics.json section: a summary over the rows never trained on, and every row."""
    fresh = [r.esr for r in rows if not r.trained]
    out: dict[str, object] = dict(extra)
    out["summary"] = summarize(fresh)
    out["summary_all"] = summarize(r.esr for r in rows)
    out["rows"] = [r.to_dict(controls) for r in rows]
    return out


# ------------------------------------------------------------------------------------------ DI clips
def bundled_di_clip() -> Path:
    """The short DI guitar clip shipped with knobcap (MIT, see data/LICENSE-DI.txt)."""
    return Path(str(resources.files("knobcap") / "data" / "di_guitar.wav"))


def di_clips(source: str | Path | None, sample_rate: int, max_seconds: float | None = None
             ) -> list[tuple[str, np.ndarray]]:
    """DI clips from a WAV file or a folder of them (``None``: the bundled clip), as (name, audio).

    Clips at another sample rate, or with several channels, are refused with a clear message; with
    ``max_seconds`` each clip is cut to its first ``max_seconds``.
    """
    path = bundled_di_clip() if source is None else Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.wav"))
        if not files:
            raise EvaluationError(f"{path}: no .wav files in this folder; give a folder of DI recordings.")
    elif path.is_file():
        files = [path]
    else:
        raise EvaluationError(f"{path}: no such file or folder of DI clips.")
    clips = []
    for file in files:
        audio, _ = read_wav(file, sample_rate=sample_rate)
        if max_seconds is not None:
            audio = audio[: int(max_seconds * sample_rate)]
        if not np.any(audio):
            raise EvaluationError(f"{file}: the clip is silent; give a recording of playing.")
        clips.append((file.stem, audio))
    return clips


# ------------------------------------------------------------------------------------------- writing
def metrics_document(**sections: object) -> dict[str, object]:
    """The metrics.json object: format, version, date, verdict limits, then the sections."""
    doc: dict[str, object] = {
        "format": METRICS_FORMAT, "format_version": METRICS_VERSION,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "verdicts": {word: (None if math.isinf(limit) else limit) for limit, word in VERDICTS},
    }
    doc.update(sections)
    return doc


def write_metrics(path: str | Path, doc: Mapping[str, object]) -> Path:
    """Write metrics.json atomically (replacing an older one: it is derived data, not a recording)."""
    return write_json_atomic(path, _finite(doc))


def _finite(value: object) -> object:
    """JSON has no inf/NaN: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ a model
def torch_predictor(model: object, controls: Controls, chunk: int = 1 << 17) -> Predictor:
    """A :data:`Predictor` over a torch parametric model: every setting in one batch, padded and chunked
    by :func:`knobcap.models.bridge.predict_settings` (the output has the input's length), times each
    setting's output gain (:meth:`knobcap.controls.Controls.output_gain`)."""
    from knobcap.models.bridge import predict_settings

    def predict(x: np.ndarray, settings: Sequence[Setting]) -> np.ndarray:
        out = predict_settings(model, x, controls.to_matrix(settings), chunk)  # type: ignore[arg-type]
        if controls.has_output_gain:
            out = out * np.array([controls.output_gain(s) for s in settings], np.float32)[:, None]
        return out

    return predict


def engine_predictor(model_file: object, block: int = 8192) -> Predictor:
    """A :data:`Predictor` over knobcap's streaming engine (numba, no torch): each setting is run from
    silence (``reset``) with no knob ramp, which gives the same samples as the torch model."""
    from knobcap.runtime.engine import Engine

    engine = Engine(model_file, ramp_ms=0.0, max_block=block)  # type: ignore[arg-type]

    def predict(x: np.ndarray, settings: Sequence[Setting]) -> np.ndarray:
        out = np.zeros((len(settings), len(x)), np.float32)
        for i, setting in enumerate(settings):
            engine.set(setting, ramp_ms=0.0)
            engine.reset()
            out[i] = engine.process(x, block_size=block)
        return out

    return predict


def model_predictor(model_file: object) -> Predictor:
    """The fastest :data:`Predictor` for a loaded model file: the streaming engine when it runs the
    architecture, else the torch model; either with the file's output DC blocker."""
    from knobcap.runtime.engine import supported_architectures

    if model_file.architecture in supported_architectures():  # type: ignore[attr-defined]
        return engine_predictor(model_file)
    from knobcap.dsp import dc_blocker
    from knobcap.models import bridge

    predict = torch_predictor(bridge.load(model_file), model_file.controls)  # type: ignore[arg-type, attr-defined]
    cutoff = model_file.dc_blocker_hz  # type: ignore[attr-defined]
    if cutoff is None:
        return predict
    rate = int(model_file.sample_rate)  # type: ignore[attr-defined]
    return lambda x, settings: dc_blocker.apply(predict(x, settings), cutoff, rate)


# -------------------------------------------------------------------------------------- a run folder
VALIDATION_SEGMENT = "validation_2"


def run_session_root(run: Path) -> Path:
    """The session folder of a run (:meth:`knobcap.training.run.Run.session_dir`)."""
    try:
        return Run(run).session_dir()
    except RunError as error:
        raise EvaluationError(f"{error}; train the run again.") from None


def session_device(root: Path) -> str | None:
    """The virtual device a session was reamped with (``reamp.json``), if any."""
    try:
        data = json.loads((root / "reamp.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = data.get("device") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def aligned_device(session: Session, device: str) -> DelayAligned:
    """``device`` (a name or ``lv2:URI``) with its renders lined up with ``session``'s takes, as the
    evaluation scores it; where no take matches, the device's own delay read on the session's signal as
    a take's calibration reads it, at the session's recorded training settings."""
    from knobcap.capture.device_delay import delay_aligned, signal_probe
    from knobcap.capture.session_device import open_device

    signal = session.input()
    recorded = [dict(t.setting) for t in session.recorded_takes() if t.role != "holdout"]
    return delay_aligned(open_device(device, session.controls),
                         probe=signal_probe(np.asarray(signal.audio, np.float32), signal.map),
                         settings=recorded, takes=delay_reference_takes(session))


def delay_reference_takes(session: Session) -> list[RecordedTake]:
    """At most :data:`~knobcap.capture.device_delay.MAX_SETTINGS` of ``session``'s recorded training
    takes, spread over the plan, as the session aligned them, on the validation segment of each take's
    input: what a device's renders are lined up with
    (:func:`~knobcap.capture.device_delay.delay_from_takes`)."""
    from knobcap.capture.device_delay import RecordedTake, spread

    out = []
    for planned in spread([t for t in session.recorded_takes() if t.role != "holdout"]):
        own = session.take_input(planned.take)
        span = own.map.segment(VALIDATION_SEGMENT)
        out.append(RecordedTake(dict(planned.setting), np.asarray(own.audio, np.float32),
                                np.asarray(session.aligned_take(planned.take), np.float32), span.start,
                                span.stop, int(own.map.sample_rate)))
    return out


def evaluate_run(run: str | Path, device: str | None = None, grid: int = 6,
                 di: str | Path | None = None, use_di: bool = True, di_settings: int = DEFAULT_DI_SETTINGS,
                 di_seconds: float | None = None, seed: int = 0, progress: Progress | None = None,
                 write: bool = True, cache_dir: str | Path | None = None) -> dict[str, object]:
    """Evaluate the model of a run folder and write ``metrics.json`` there.

    Always: held-out time and held-out settings on the session's takes. With a ``device`` (a registered
    virtual device, e.g. ``"ts808"``; ``None``: the one the session was reamped with, if any; ``"none"``:
    no device): also the dense ``grid`` (levels per knob, every switch combination) on the validation
    segment, and the DI clips (``di``: a WAV or a folder; ``None``: the bundled clip) rendered at
    ``di_settings`` seeded random settings. Device renders are cached in ``cache_dir`` (default
    the run's ``cache/``; runs of one session may share a folder).
    """
    from knobcap.capture.session import Session

    run = Path(run)
    folder = Run(run)
    model_path = folder.model_path
    if not model_path.is_file():
        raise EvaluationError(f"{run}: no {Run.MODEL} in this run folder; run 'knobcap train' first, "
                              "or give the folder that holds the model.")
    model_file = folder.read_model()
    controls = model_file.controls
    rate = int(model_file.sample_rate)
    session = Session.open(run_session_root(run))
    if session.controls.names != controls.names:
        raise EvaluationError(
            f"{model_path}: the model's controls ({', '.join(controls.names)}) differ from those of the "
            f"session {session.root} ({', '.join(session.controls.names)}); evaluate it on its own session.")
    if device is None:
        device = session.controls.device or session_device(session.root)
    elif device.lower() == "none":
        device = None
    signal = session.input()
    if signal.map.sample_rate != rate:
        raise EvaluationError(f"{model_path}: the model runs at {rate} Hz but the session's input is at "
                              f"{signal.map.sample_rate} Hz.")
    segment = signal.map.segment(VALIDATION_SEGMENT)
    audio = np.asarray(signal.audio, dtype=np.float32)
    predict = model_predictor(model_file)

    plan = [t for t in session.plan() if session.take_path(t.take).is_file()]
    seen = [(t.take, dict(t.setting), t.role) for t in plan if t.role != "holdout"]
    held = [(t.take, dict(t.setting), t.role) for t in plan if t.role == "holdout"]
    training = [s for _, s, _ in seen]
    doc: dict[str, object] = {
        "run": str(run), "model": Run.MODEL, "session": str(session.root), "device": device,
        "sample_rate": rate,
        "segment": {"name": segment.name, "start": segment.start, "stop": segment.stop,
                    "seconds": (segment.stop - segment.start) / rate},
    }
    def recorded(rows: list[tuple[str, Setting, str]], task: str) -> list[Row]:
        """Each take against its own input (input.wav, or the take's own input file)."""
        out: list[Row] = []
        for name in dict.fromkeys(session.planned(take).input for take, _, _ in rows):
            group = [r for r in rows if session.planned(r[0]).input == name]
            own = session.take_input(group[0][0])
            span = own.map.segment(VALIDATION_SEGMENT)
            out += evaluate_takes(predict, np.asarray(own.audio, np.float32), group, session.aligned_take,
                                  span.start, span.stop, rate, progress=progress, task=task)
        return out

    doc["heldout_time"] = section(controls, recorded(seen, "held-out time"), description="recorded "
                                  "takes at their own (trained) settings, on the validation segment, "
                                  "which training never saw")
    doc["heldout_settings"] = section(controls, recorded(held, "held-out settings"), description=(
        "takes planned as holdout (never trained on), on the validation segment"))
    headline: dict[str, object] = {"source": "heldout_settings", **doc["heldout_settings"]["summary"]}  # type: ignore[index]
    if device is not None:
        dev = aligned_device(session, device)
        if dev.controls.names != controls.names:
            raise EvaluationError(
                f"device {device!r} has controls {', '.join(dev.controls.names)} but the model has "
                f"{', '.join(controls.names)}; pass the device the session was recorded with.")
        cache = RenderCache(Path(cache_dir) if cache_dir is not None else folder.cache_dir)
        silent: list[Setting] = []
        grid_rows = evaluate_against_device(
            predict, dev, controls, audio, rate, dense_grid(controls, grid), segment.start, segment.stop,
            training, cache, progress=progress, task="dense grid", silent=silent)
        if not grid_rows:
            raise EvaluationError(f"{folder}: the device is silent at every dense-grid setting; check the "
                                  "device and its controls.")
        doc["grid"] = section(controls, grid_rows, levels=grid, silent=silent, description=(
            f"{grid} taper-aware levels per knob x every switch combination, device vs model on the "
            "validation segment; 'summary' covers the points never trained on; 'silent' lists the "
            "settings where the device is silent (no ESR)"))
        headline = {"source": "grid", **doc["grid"]["summary"]}  # type: ignore[index]
        if use_di:
            settings = random_settings(controls, di_settings, seed)
            clips = di_clips(di, rate, di_seconds)
            rows: list[Row] = []
            for name, clip in clips:
                rows += evaluate_against_device(predict, dev, controls, clip, rate, settings,
                                                training=training, cache=cache, clip=name,
                                                progress=progress, task=f"DI {name}")
            doc["di"] = section(controls, rows, clips=[n for n, _ in clips], seed=seed, description=(
                "real DI guitar clips rendered through the device at seeded random settings"))
        doc["device_delay"] = {"samples": dev.delay(rate), "note": dev.note}
    doc["headline"] = headline
    from knobcap.evaluation.sanity import misalignment_warnings

    doc["warnings"] = misalignment_warnings(doc)
    doc = metrics_document(**doc)
    if write:
        write_metrics(folder.metrics_path, doc)
    return doc


# ------------------------------------------------------------------------------------------- display
SECTION_TITLES = (("heldout_time", "held-out time (trained settings)"),
                  ("heldout_settings", "held-out settings (never trained on)"),
                  ("grid", "dense grid, never trained on"), ("di", "real DI playing, never trained on"))


def summary_table(doc: Mapping[str, object]) -> object:
    """A rich table: one row per section of a metrics.json object, with NAM's verdicts."""
    from rich.table import Table

    table = Table(title="ESR (error-to-signal ratio; lower is better)", title_justify="left")
    for column in ("evaluation", "settings", "median", "p90", "max", "verdict (median / max)"):
        table.add_column(column, justify="left" if column.startswith(("eval", "verdict")) else "right")
    for key, title in SECTION_TITLES:
        part = doc.get(key)
        if not isinstance(part, Mapping):
            continue
        s = part["summary"]
        if not s["count"]:
            table.add_row(title, "0", "-", "-", "-", "-")
            continue
        table.add_row(title, str(s["count"]), f"{s['median']:.4f}", f"{s['p90']:.4f}", f"{s['max']:.4f}",
                      f"{verdict(s['median'])} / {verdict(s['max'])}")
    return table


def rows_table(doc: Mapping[str, object], key: str, title: str, limit: int = 12) -> object:
    """A rich table of one section's rows, worst first (at most ``limit``)."""
    from rich.table import Table

    part = doc.get(key)
    rows = list(part["rows"]) if isinstance(part, Mapping) else []
    rows.sort(key=lambda r: -(r["esr"] if r["esr"] is not None else math.inf))
    table = Table(title=title, title_justify="left")
    for column in ("setting", "take / clip", "ESR", "verdict"):
        table.add_column(column, justify="right" if column == "ESR" else "left")
    for row in rows[:limit]:
        where = row.get("take") or row.get("clip") or ""
        if row.get("trained"):
            where = f"{where} (trained)".strip()
        table.add_row(row["label"], where, f"{row['esr']:.4f}", row["verdict"])
    return table
