"""The run report: one self-contained ``report.html`` a guitarist reads and listens to.

``write_report(run_dir)`` gathers what a run folder holds (``model.knobcap``, ``metrics.json`` from
evaluation, ``config.json`` and the training history from training) and, where the session folder is
beside it (``SESSION/runs/<run>/``), renders short listening examples: the recorded target against the
model at held-out settings, and the model on a real DI clip. Everything is embedded (PNG and FLAC as
base64 data URIs), so the file opens offline and can be mailed.

Each part is optional: a part whose data is missing is replaced by a plain note saying what is missing
and which command makes it, never by a made-up figure.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from knobcap import __version__, metrics
from knobcap.capture.session import CONTROLS_FILE, PLAN_FILE, read_plan
from knobcap.controls import Controls, ControlsError, setting_label
from knobcap.evaluation import plots
from knobcap.fileio import write_text_atomic
from knobcap.models.modelfile import ModelFileError
from knobcap.training.run import Run, RunError

EXCERPT_SECONDS = 6.0
PREROLL_SECONDS = 0.5
MAX_EXAMPLES = 3  # held-out settings with listening examples (worst, median, best)


class ReportError(ValueError):
    """A report cannot be written; the message names the folder and what to do."""


# -------------------------------------------------------------------------------------------- data
@dataclass
class SettingRow:
    """One recorded setting of the session with its ESR (None when not evaluated)."""

    take: str
    setting: dict[str, float | str]
    role: str
    esr: float | None


@dataclass
class RunData:
    """What a run folder tells, read defensively (missing parts are ``None`` or empty, with a note)."""

    run_dir: Path
    controls: Controls | None = None
    model_path: Path | None = None
    model_meta: dict[str, Any] = field(default_factory=dict)
    architecture: str = ""
    sample_rate: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    rows: list[SettingRow] = field(default_factory=list)
    grid: list[plots.PointESR] = field(default_factory=list)
    di: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.run_dir.name

    def heldout(self) -> list[SettingRow]:
        return [r for r in self.rows if r.role == "holdout" and r.esr is not None]


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    """A JSON object of a run folder; a missing file is ``{}``, an unreadable one ``{}`` and a note."""
    try:
        data = Run(path.parent).read_json(path)
    except RunError as error:
        notes.append(f"{path.name} could not be read ({error.reason}); it was left out.")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        notes.append(f"{path.name} is not a JSON object; it was left out.")
        return {}
    return data


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def read_history(run_dir: Path, notes: list[str] | None = None) -> dict[str, list[float]]:
    """The training history as columns: a CSV with an ``epoch`` (or ``step``) column, or JSON.

    JSON may be ``{"epoch": [...], "train_loss": [...]}`` or a list of per-epoch objects.
    Non-numeric cells become NaN; non-numeric columns are dropped.
    """
    notes = [] if notes is None else notes
    for path in Run(run_dir).history_paths():
        name = path.name
        if not path.is_file():
            continue
        try:
            if path.suffix == ".csv":
                with path.open(newline="", encoding="utf-8") as handle:
                    records: list[Mapping[str, Any]] = list(csv.DictReader(handle))
            else:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, Mapping) and isinstance(data.get("epochs"), list):
                    data = data["epochs"]
                if isinstance(data, Mapping):
                    length = max((len(v) for v in data.values() if isinstance(v, list)), default=0)
                    records = [{k: v[i] for k, v in data.items() if isinstance(v, list) and i < len(v)}
                               for i in range(length)]
                else:
                    records = [r for r in data if isinstance(r, Mapping)] if isinstance(data, list) else []
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as error:
            notes.append(f"{name} could not be read ({error}); no training curves.")
            return {}
        return _columns(records)
    return {}


def _columns(records: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    keys: list[str] = []
    for record in records:
        keys.extend(k for k in record if k not in keys)
    columns: dict[str, list[float]] = {}
    for key in keys:
        values = [_float(r.get(key)) for r in records]
        if any(v is not None for v in values):
            columns[key] = [math.nan if v is None else v for v in values]
    if "epoch" not in columns and "step" not in columns and records:
        columns = {"epoch": [float(i) for i in range(len(records))], **columns}
    return columns


def _metric_rows(metrics: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Every ``(section name, row)`` of metrics.json (sections are objects holding a ``rows`` list)."""
    for name, section in metrics.items():
        if isinstance(section, Mapping) and isinstance(section.get("rows"), list):
            for row in section["rows"]:
                if isinstance(row, Mapping) and isinstance(row.get("setting"), Mapping):
                    yield name, row


def _plan_rows(session_dir: Path, controls: Controls, notes: list[str]) -> dict[str, SettingRow]:
    """Takes, settings and roles from the session's plan (:func:`knobcap.capture.session.read_plan`)."""
    path = session_dir / PLAN_FILE
    if not path.is_file():
        return {}
    try:
        plan = read_plan(path, controls)
    except (OSError, ValueError, csv.Error) as error:
        notes.append(f"{path} could not be read ({error}); the recorded settings come from metrics.json.")
        return {}
    return {t.take: SettingRow(t.take, dict(t.setting), t.role, None) for t in plan}


def session_dir_of(run_dir: Path, config: Mapping[str, Any]) -> Path | None:
    """The session folder of a run (:meth:`knobcap.training.run.Run.session_candidates`): the first
    candidate that holds a controls.toml or a plan.csv, else ``None``."""
    for candidate in Run(run_dir).session_candidates(config):
        if (candidate / CONTROLS_FILE).is_file() or (candidate / PLAN_FILE).is_file():
            return candidate.resolve()
    return None


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder. Only a missing folder is an error; a missing part becomes a note."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run folder; give a folder under SESSION/runs/.")
    run = RunData(run_dir=run_dir)
    folder = Run(run_dir)
    if folder.model_path.is_file():
        run.model_path = folder.model_path
        try:
            model = folder.read_model()
        except ModelFileError as error:
            run.notes.append(f"{Run.MODEL} could not be read ({error}); it was left out.")
        else:
            run.controls = model.controls
            run.architecture = model.architecture
            run.sample_rate = int(model.sample_rate)
            run.model_meta = dict(model.metadata)
    else:
        run.notes.append(f"no {Run.MODEL} in the run folder: run 'knobcap train' (no listening examples).")
    run.metrics = _read_json(folder.metrics_path, run.notes)
    if not run.metrics:
        run.notes.append(f"no {Run.METRICS}: run 'knobcap eval RUN' for ESRs, the map and the table.")
    run.config = _read_json(folder.config_path, run.notes)
    run.summary = _read_json(folder.summary_path, run.notes)
    run.history = read_history(run_dir, run.notes)
    if not run.history:
        run.notes.append(f"no training history ({Run.LOG}) in the run folder: no training curves.")

    session_dir = session_dir_of(run_dir, run.config)
    if run.controls is None and session_dir is not None:
        try:
            from knobcap.controls import load_controls

            run.controls = load_controls(session_dir / CONTROLS_FILE)
        except ControlsError as error:
            run.notes.append(str(error))
    if run.controls is None:
        run.notes.append("the controls are unknown (no model.knobcap, no controls.toml): no map.")
        return run

    rows = _plan_rows(session_dir, run.controls, run.notes) if session_dir else {}
    for name, row in _metric_rows(run.metrics):
        esr = _float(row.get("esr"))
        if "take" in row:
            take = str(row["take"])
            old = rows.get(take)
            role = str(row.get("role") or (old.role if old else "train"))
            if old is None or old.esr is None:
                rows[take] = SettingRow(take, dict(row["setting"]), role, esr)
        elif "clip" in row:
            run.di.append({"section": name, **row})
        elif "grid" in name.lower() and esr is not None:
            run.grid.append(plots.PointESR(dict(row["setting"]), esr, "grid"))
    if not any(r.esr is not None for r in rows.values()):  # no eval yet: training's final validation
        from_training = {**_esr_dict(run.summary.get("validation_esr")),
                         **_esr_dict(run.summary.get("heldout_esr"))}
        for take, esr in from_training.items():
            if take in rows:
                rows[take].esr = esr
        if from_training:
            run.notes.append("ESRs per take come from training's last validation (summary.json); "
                              "'knobcap eval RUN' adds the dense grid and real DI.")
    run.rows = list(rows.values())
    return run


def _esr_dict(value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in ((k, _float(v)) for k, v in value.items()) if v is not None}


# ----------------------------------------------------------------------------------------- audio
@dataclass
class Example:
    """A listening example: target (may be absent) and model output of one input at one setting."""

    title: str
    setting: dict[str, float | str]
    model: np.ndarray
    target: np.ndarray | None
    dry: np.ndarray | None
    sample_rate: int
    esr: float | None = None


def audio_data_uri(audio: np.ndarray, sample_rate: int) -> str:
    """A base64 ``data:audio/flac`` URI of 16-bit audio (clipped to [-1, 1])."""
    import soundfile as sf

    buffer = io.BytesIO()
    data = np.clip(np.nan_to_num(np.asarray(audio, dtype=np.float32)), -1.0, 1.0)
    sf.write(buffer, data, sample_rate, format="FLAC", subtype="PCM_16")
    return "data:audio/flac;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _excerpt_span(signal_map: Any, length: int, sample_rate: int) -> tuple[int, int]:
    """A musical excerpt of the test signal: the start of ``validation_2`` (held-out time), else
    ``playing``, else the middle."""
    span = int(EXCERPT_SECONDS * sample_rate)
    for name in ("validation_2", "playing"):
        try:
            segment = signal_map.segment(name)
        except (AttributeError, KeyError, ValueError):
            continue
        return segment.start, min(segment.start + span, segment.stop)
    start = max(0, (length - span) // 2)
    return start, min(length, start + span)


def _render_excerpt(renderer: Any, audio: np.ndarray, start: int, stop: int,
                    setting: Mapping[str, object]) -> np.ndarray:
    begin = max(0, start - int(PREROLL_SECONDS * renderer.sample_rate))
    out = renderer.render(np.asarray(audio[begin:stop], np.float32), setting)
    return np.asarray(out, np.float32)[start - begin:]


def _pick_examples(heldout: list[SettingRow]) -> list[SettingRow]:
    ranked = sorted(heldout, key=lambda r: -(r.esr or 0.0))
    if len(ranked) <= MAX_EXAMPLES:
        return ranked
    return [ranked[0], ranked[len(ranked) // 2], ranked[-1]]


def heldout_examples(run: RunData, renderer: Any, notes: list[str], session: Any = None) -> list[Example]:
    """Target vs model on the test signal's held-out-time excerpt at held-out settings.

    ``session`` (a :class:`knobcap.capture.session.Session`, or anything with ``input()`` and
    ``aligned_take(take)``) defaults to the session folder of the run.
    """
    picks = _pick_examples(run.heldout())
    if not picks:
        notes.append("no held-out takes with ESRs in metrics.json: no target-vs-model examples.")
        return []
    try:
        if session is None:
            session_dir = session_dir_of(run.run_dir, run.config)
            if session_dir is None:
                notes.append("no session folder beside the run: no target-vs-model examples.")
                return []
            from knobcap.capture.session import Session

            session = Session.open(session_dir)
        signal = session.input()
    except (ImportError, OSError, ValueError) as error:
        notes.append(f"the session cannot be opened ({error}): no target-vs-model audio.")
        return []
    start, stop = _excerpt_span(signal.map, len(signal.audio), renderer.sample_rate)
    examples = []
    for row in picks:
        try:
            target = np.asarray(session.aligned_take(row.take), np.float32)[start:stop]
            model = _render_excerpt(renderer, signal.audio, start, stop, row.setting)
        except (OSError, ValueError) as error:
            notes.append(f"take {row.take} could not be rendered ({error}).")
            continue
        examples.append(Example(f"{row.take} (held out)", row.setting, model, target,
                                np.asarray(signal.audio[start:stop], np.float32), renderer.sample_rate,
                                row.esr))
    return examples


def _device_name(run: RunData) -> str | None:
    for source in (run.metrics, run.config, run.model_meta):
        for key in ("device", "virtual_device"):
            if isinstance(source.get(key), str):
                return source[key]
        for value in source.values():
            if isinstance(value, Mapping) and isinstance(value.get("device"), str):
                return value["device"]
    return None


def _session_takes(run: RunData) -> list[Any]:
    """The run's recorded takes as its session aligned them (what a device's renders are lined up with,
    :func:`knobcap.evaluation.evaluate.delay_reference_takes`); none where the session cannot be read."""
    from knobcap.capture.session import Session, SessionError
    from knobcap.evaluation.evaluate import delay_reference_takes

    session_dir = session_dir_of(run.run_dir, run.config)
    if session_dir is None:
        return []
    try:
        return delay_reference_takes(Session.open(session_dir))
    except (SessionError, OSError, ValueError):
        return []


def di_example(run: RunData, renderer: Any, setting: Mapping[str, object], notes: list[str],
               clip: str | Path | None = None) -> Example | None:
    """The model on a real DI clip at ``setting``; the target too when a virtual device is known."""
    from knobcap.fileio import read_wav

    if clip is None:
        from importlib import resources

        clip = Path(str(resources.files("knobcap") / "data" / "di_guitar.wav"))
    try:
        dry, _ = read_wav(clip, sample_rate=renderer.sample_rate)
    except ValueError as error:
        notes.append(f"no DI example: {error}")
        return None
    dry = dry[: int(EXCERPT_SECONDS * renderer.sample_rate)]
    model = np.asarray(renderer.render(dry, setting), np.float32)
    target = None
    device_name = _device_name(run)
    if device_name:
        try:
            from knobcap.capture.device_delay import delay_aligned
            from knobcap.capture.session_device import open_device

            device = delay_aligned(open_device(device_name, run.controls), takes=_session_takes(run)) \
                if run.controls else None
            if device is None:
                raise ValueError("the controls are unknown")
            target = np.asarray(device.process(dry.astype(np.float64), renderer.sample_rate, setting),
                                np.float32)
        except (ImportError, KeyError, ValueError) as error:
            notes.append(f"the virtual device {device_name!r} is unavailable ({error}); DI target left out.")
    esr = None
    if target is not None and float(np.sum(target.astype(float) ** 2)) > 0:
        esr = metrics.esr(model, target)
    return Example(f"real DI guitar ({Path(clip).name})", dict(setting), model, target, dry,
                   renderer.sample_rate, esr)


# ------------------------------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.headline{font-size:1.25em;background:#f4f6fa;border-left:5px solid #4c72b0;padding:.6em 1em}
.great{color:#1a7f37}.not-bad{color:#9a6700}.might-sound-OK{color:#bc4c00}.probably-not{color:#cf222e}
table{border-collapse:collapse;font-size:.92em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f6fa} tr.holdout td{background:#fff4f2}
img{max-width:100%} .players{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1em}
.player{border:1px solid #ddd;border-radius:6px;padding:.6em} .player audio{width:100%}
.note{color:#555;font-size:.9em} code{background:#f4f4f4;padding:0 .2em}
"""


def _verdict_span(esr: float | None) -> str:
    if esr is None:
        return "<span>not evaluated</span>"
    word = plots.verdict(esr)
    return f'<span class="{word.replace(" ", "-")}">{esr:.4f} ({html.escape(word)})</span>'


def _summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    data = np.asarray(values, float)
    return {"count": len(values), "median": float(np.median(data)), "p90": float(np.percentile(data, 90)),
            "max": float(np.max(data))}


def _headline(run: RunData) -> str:
    parts = []
    held = _summary([r.esr for r in run.heldout() if r.esr is not None])
    if held:
        noun = "setting" if held["count"] == 1 else "settings"
        parts.append(f"On <b>{held['count']} {noun} never trained on</b> (held out): median ESR "
                     f"{_verdict_span(held['median'])}, worst {_verdict_span(held['max'])}.")
    grid = _summary([p.esr for p in run.grid])
    if grid:
        parts.append(f"Across a dense grid of {grid['count']} settings: median "
                     f"{_verdict_span(grid['median'])}, 90% below {grid['p90']:.4f}, "
                     f"worst {_verdict_span(grid['max'])}.")
    di = _summary([e for e in (_float(r.get("esr")) for r in run.di) if e is not None])
    if di:
        parts.append(f"On real DI guitar: median {_verdict_span(di['median'])}.")
    from knobcap.evaluation.sanity import misalignment_warnings

    warnings = [str(w) for w in run.metrics.get("warnings") or []] or misalignment_warnings(run.metrics)
    parts += [f'<b class="probably-not">Warning: {html.escape(w)}</b>' for w in warnings]
    if not parts:
        return ('<p class="headline">No ESRs yet: run <code>knobcap eval RUN</code>, then this report '
                "again.</p>")
    return ('<p class="headline">' + "<br>".join(parts) + "</p>"
            '<p class="note">ESR (error-to-signal ratio) = Σ(model − target)² / Σ target²: 0 is perfect. '
            "Verdicts as in NAM: below 0.01 great, below 0.035 not bad, below 0.1 might sound OK.</p>")


def _settings_table(run: RunData) -> str:
    if not run.rows:
        return '<p class="note">No recorded settings are known (no plan.csv and no metrics.json).</p>'
    names = run.controls.names if run.controls else sorted({k for r in run.rows for k in r.setting})
    order = {"holdout": 0, "anchor": 1, "train": 2}
    rows = sorted(run.rows, key=lambda r: (order.get(r.role, 3), -(r.esr or 0.0)))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for row in rows:
        cells = []
        for n in names:
            value = row.setting.get(n, "")
            number = _float(value)
            cells.append(f"<td>{number:.3g}</td>" if number is not None and not isinstance(value, str)
                         else f"<td>{html.escape(str(value))}</td>")
        body.append(f'<tr class="{html.escape(row.role)}"><td>{html.escape(row.take)}</td>'
                    f"<td>{html.escape(row.role)}</td>{''.join(cells)}<td>{_verdict_span(row.esr)}</td></tr>")
    return (f'<table id="settings-table"><tr><th>take</th><th>role</th>{head}<th>ESR</th></tr>'
            + "".join(body) + "</table>"
            '<p class="note">train: the model learned from it; anchor: a knob extreme, also trained on; '
            "holdout: never trained on, so its ESR says how the model does between recorded settings. "
            "ESR of trained takes is on held-out time (the validation segment).</p>")


def _figure(png: bytes, alt: str, figure_id: str) -> str:
    return f'<figure id="{figure_id}"><img alt="{html.escape(alt)}" src="{png_data_uri(png)}"></figure>'


def _players(examples: Sequence[Example], controls: Controls | None) -> str:
    cards = []
    for example in examples:
        rows = [("model", example.model)]
        if example.target is not None:
            rows.insert(0, ("target (the device)", example.target))
        if example.dry is not None:
            rows.append(("dry input", example.dry))
        audio = "".join(
            f'<div>{html.escape(label)}<br><audio controls preload="metadata" src="'
            f'{audio_data_uri(data, example.sample_rate)}"></audio></div>' for label, data in rows)
        esr = f"<br>ESR {_verdict_span(example.esr)}" if example.esr is not None else ""
        cards.append(f'<div class="player"><b>{html.escape(example.title)}</b><br>'
                     f'<span class="note">{html.escape(setting_label(example.setting, controls))}</span>{esr}'
                     f"{audio}</div>")
    return '<div class="players">' + "".join(cards) + "</div>"


def build_html(run: RunData, examples: Sequence[Example], di: Example | None,
               extra_notes: Sequence[str] = ()) -> str:
    """The whole report page as one string."""
    title = f"knobcap report: {run.name}"
    device = (run.controls.name if run.controls and run.controls.name else "") or _device_name(run) or ""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><meta name='viewport' content='width=device-width'><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{html.escape(device)} · model {html.escape(run.architecture or "?")} · '
             f"written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by knobcap {__version__}</p>",
             _headline(run)]

    parts.append("<h2>Listen: target vs model at settings never trained on</h2>")
    if examples:
        parts.append('<p class="note">Each excerpt is the held-out-time validation passage of the test '
                     "signal. Play the target, then the model: the worst held-out setting comes first.</p>")
        parts.append(_players(examples, run.controls))
    else:
        parts.append('<p class="note">No listening examples (see the notes at the end).</p>')
    if di is not None:
        parts.append("<h2>Listen: real guitar</h2>")
        where = "the worst held-out setting" if run.heldout() else "the default setting"
        parts.append(f'<p class="note">A clean DI recording the model never heard, at {where}'
                     + (", against the virtual device." if di.target is not None else ".") + "</p>")
        parts.append(_players([di], run.controls))

    parts.append("<h2>Where the model is accurate: ESR across the knobs</h2>")
    if run.controls is not None and (run.grid or any(r.esr is not None for r in run.rows)):
        recorded = [plots.PointESR(r.setting, r.esr if r.esr is not None else math.nan, r.role)
                    for r in run.rows]
        png = plots.esr_map(run.controls, run.grid, recorded)
        parts.append(_figure(png, "ESR map", "esr-map"))
        if run.grid:
            parts.append('<p class="note">Colour: ESR of the model against the virtual device on a dense '
                         "grid (darker is better). Markers: recorded settings (○ train, □ anchor, "
                         "✕ held out).</p>")
        else:
            parts.append('<p class="note">No dense grid (it needs a virtual device): the markers show the '
                         "recorded settings coloured by their ESR; elsewhere the ESR is unknown.</p>")
    else:
        parts.append('<p class="note">No ESRs to map yet.</p>')

    parts.append("<h2>Every recorded setting</h2>")
    parts.append(_settings_table(run))

    parts.append("<h2>Training</h2>")
    x_key = "epoch" if "epoch" in run.history else "step"
    if run.history and len(run.history.get(x_key, [])) >= 1:
        parts.append(_figure(plots.training_curves(run.history, x_key), "training curves", "training"))
    else:
        parts.append('<p class="note">No training history in the run folder.</p>')
    summary = run.summary
    if summary:
        facts = []
        if _float(summary.get("epochs")) is not None:
            facts.append(f"{int(summary['epochs'])} epochs")
        if _float(summary.get("minutes")) is not None:
            facts.append(f"{float(summary['minutes']):.1f} minutes")
        if _float(summary.get("parameters")) is not None:
            facts.append(f"{int(summary['parameters']):,} parameters")
        if _float(summary.get("receptive_field")) is not None and run.sample_rate:
            rf = int(summary["receptive_field"])
            facts.append(f"receptive field {rf} samples ({1000 * rf / run.sample_rate:.0f} ms)")
        if facts:
            parts.append(f"<p>Trained: {html.escape(', '.join(facts))}.</p>")
    if run.config:
        shown = {k: v for k, v in run.config.items() if not isinstance(v, dict | list) or len(str(v)) < 200}
        parts.append("<details><summary>training config</summary><pre>"
                     + html.escape(json.dumps(shown, indent=1)) + "</pre></details>")

    worst = examples[0] if examples and examples[0].target is not None else None
    parts.append("<h2>The worst held-out setting, up close</h2>")
    if worst is not None:
        label = setting_label(worst.setting, run.controls)
        parts.append(_figure(plots.waveform_overlay(worst.target, worst.model, worst.sample_rate,
                                                    f"waveforms at {label}"), "waveform overlay", "waveform"))
        parts.append(_figure(plots.spectrum_overlay(worst.target, worst.model, worst.sample_rate,
                                                    f"average spectrum at {label}"), "spectrum overlay",
                             "spectrum"))
    else:
        parts.append('<p class="note">Needs a held-out take and the session folder beside the run.</p>')

    notes = [*run.notes, *extra_notes]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, output: str | Path | None = None, *, renderer: Any = None,
                 session: Any = None, di_clip: str | Path | None = None, audio: bool = True) -> Path:
    """Write ``report.html`` (or ``output``) for a run folder and return its path.

    ``renderer`` (a :class:`knobcap.runtime.render.Renderer`) runs the model for the listening examples;
    by default the run's ``model.knobcap`` is opened with the streaming engine (PyTorch as a fallback).
    ``session`` defaults to the run's session folder (``config.json["session"]`` or ``RUN/../..``).
    The report is derived data: an older report at the same path is replaced (atomically).
    """
    run = load_run(run_dir)
    notes: list[str] = []
    examples: list[Example] = []
    di = None
    if audio and renderer is None and run.model_path is not None:
        from knobcap.runtime.render import RenderFileError, load_renderer

        try:
            renderer = load_renderer(run.model_path, allow_torch=True)
        except (RenderFileError, ValueError) as error:
            notes.append(f"the model could not be run ({error}): no listening examples.")
    if audio and renderer is not None:
        examples = heldout_examples(run, renderer, notes, session)
        held = sorted(run.heldout(), key=lambda r: -(r.esr or 0.0))
        setting = held[0].setting if held else (run.controls or renderer.controls).default_setting()
        di = di_example(run, renderer, setting, notes, di_clip)
    text = build_html(run, examples, di, notes)
    path = Path(output) if output is not None else Run(run.run_dir).report_path
    return write_text_atomic(path, text)
