"""The session workflow of ``knobcap screen DIR``: the probe plan, its files, the recordings, the warps.

Files (all in ``DIR/screen/``): ``input.wav`` + ``input.json`` (the probe signal,
:func:`knobcap.capture.screening.probe_signal`, and its segment map), ``plan.csv`` (``probe,knob,<each
control>``: one row a probe, in recording order) and the recordings ``probe01.wav``,
``probe02.wav``, ... A plan that no longer matches controls.toml is rewritten while no probe is
recorded, and refused once one is.

The plan turns each knob through its range, the other controls at their defaults (the warps), then
records each knob three more times with every other control at its far end (knob column ``NAME (others
far)``; the knob at its default, minimum and maximum): with the knob's own probes these tell whether it
is an output gain (a level after the last nonlinearity;
:func:`knobcap.capture.gain_knobs.recorded_knob_gain`), which is then applied and not learned (its
``gain_db`` line in controls.toml). A plan written before these probes existed is kept as it is once
a probe is recorded (the gains are then not tested).

A probe at the noise floor (the check's "dead" or "silent", e.g. a volume turned all the way down) is
silence when it sits at an end of its knob's run of probes, a run of silent ones at most: screening takes
it as silence, not as a failed recording.

Recordings (a real device, or a virtual one through :func:`knobcap.capture.reamp.record`) are checked as
takes are (:func:`knobcap.capture.check.check_take`, its messages worded for probes) and aligned to the probe
input (blips, :mod:`knobcap.capture.latency`); their mean is removed, and their noise floor (measured on the
probe's leading silence) is passed to :func:`knobcap.capture.screening.step_distances` as the noise power
``s_i^2``. (Searching a sample or two of shift between neighbours, against misread latencies, was
tried and dropped: the blips read every TS808 probe exactly, and the shift absorbed a fifth of the
tone knob's real change between 9 and 10, a phase change.)

The warps go into ``DIR/controls.toml`` as a ``warp = [...]`` line in each knob's ``[[knob]]``
table, the rest of the file untouched (:func:`knobcap.controls.write_warps`).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from knobcap.capture.design import (
    DEFAULT_COSTS,
    MoveCosts,
    SessionTime,
    session_time,
)
from knobcap.capture.gain_knobs import Recording, far_setting, recorded_knob_gain
from knobcap.capture.screening import (
    DEFAULT_BLEND,
    MIN_CHANGE,
    SCREEN_LEVELS,
    Progress,
    ScreeningError,
    audible_range,
    check_levels,
    playing_part,
    probe_settings,
    probe_signal,
    round_warp,
    screenable,
    step_distances,
    warp_from_distances,
)
from knobcap.capture.session import PLAN_FILE, TAKES_DIR
from knobcap.capture.testsignal import SignalError, TestSignal, map_path, read_signal, write_signal
from knobcap.controls import (
    CONTROLS_FILE,
    Controls,
    ControlsError,
    Knob,
    Setting,
    format_value,
    load_controls,
    round_value,
    setting_label,
    write_warps,
)
from knobcap.fileio import read_wav, write_text_atomic, write_wav_atomic

SCREEN_DIR = "screen"
PROBE_INPUT = "input.wav"
PROBE_PLAN = "plan.csv"


# ------------------------------------------------------------------------------------------ probe plan
@dataclass(frozen=True)
class Probe:
    """One row of screen/plan.csv: the probe's name, the knob it turns, and its whole setting."""

    name: str
    knob: str
    setting: Setting
    far: bool = False  # a gain-test probe: every other control at its far end

    @property
    def label(self) -> str:
        """The plan's knob column: the knob's name, and ``(others far)`` for a gain-test probe."""
        return self.knob + FAR_LABEL if self.far else self.knob


FAR_LABEL = " (others far)"


def probe_name(number: int) -> str:
    """``probe01``, ``probe02``, ..."""
    return f"probe{number:02d}"


def probe_plan(controls: Controls, levels: int = SCREEN_LEVELS, gain_tests: bool = True) -> list[Probe]:
    """Every screenable knob from its minimum to its maximum in ``levels`` steps, one knob at a time,
    the other controls at their defaults, values rounded to what a user can dial; then (``gain_tests``)
    each knob at its default, minimum and maximum with every other control at its far end (none when
    the knob is the only control)."""
    def rounded(setting: Setting) -> Setting:
        return {**setting, **{k.name: round_value(k, float(setting[k.name])) for k in controls.knobs}}  # type: ignore[arg-type]

    probes: list[Probe] = []
    knobs = [k for k in controls.knobs if screenable(k)]
    for knob in knobs:
        for setting in probe_settings(controls, knob, check_levels(levels)):
            probes.append(Probe(probe_name(len(probes) + 1), knob.name, rounded(setting)))
    if gain_tests and len(controls.names) > 1:
        for knob in knobs:
            far = far_setting(controls, knob.name)
            for value in dict.fromkeys((knob.default_value, knob.min, knob.max)):
                probes.append(Probe(probe_name(len(probes) + 1), knob.name, rounded(far | {knob.name: value}),
                                    far=True))
    return probes


def probe_plan_text(controls: Controls, probes: Sequence[Probe]) -> str:
    """The text of screen/plan.csv: ``probe,knob,<each control>``, one row a probe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["probe", "knob", *controls.names])
    for probe in probes:
        values = [format_value(k, float(probe.setting[k.name])) for k in controls.knobs]  # type: ignore[arg-type]
        writer.writerow([probe.name, probe.label, *values, *(str(probe.setting[s.name])
                                                             for s in controls.switches)])
    return buffer.getvalue()


def read_probe_plan(path: Path, controls: Controls) -> list[Probe]:
    """Read screen/plan.csv back (errors name the file and the line)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.reader(handle) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError) as error:
        raise ScreeningError(f"{path}: cannot read it ({error}).") from None
    expected = ["probe", "knob", *controls.names]
    if not rows or [h.strip() for h in rows[0]] != expected:
        raise ScreeningError(f"{path}: the header must be {','.join(expected)}; it was written for other "
                             f"controls. {_START_OVER.format(folder=path.parent)}")
    probes = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(expected):
            raise ScreeningError(f"{path}, line {line}: {len(row)} values but {len(expected)} columns.")
        name, knob, *values = (cell.strip() for cell in row)
        far = knob.endswith(FAR_LABEL)
        try:
            setting = controls.validate_setting(dict(zip(controls.names, values, strict=True)),
                                                where=f"{path}, line {line}")
        except ControlsError as error:
            raise ScreeningError(str(error)) from None
        probes.append(Probe(name, knob[:-len(FAR_LABEL)] if far else knob, setting, far))
    return probes


_START_OVER = ("To screen again from scratch, move {folder} away (keep the recordings if you need them) "
               "and run 'knobcap screen' again.")


# ------------------------------------------------------------------------------------------ the folder
@dataclass
class ProbeSet:
    """A session's screening folder: the controls, the probe signal and the probes, in order."""

    root: Path
    controls: Controls
    signal: TestSignal
    probes: list[Probe]
    levels: int
    wrote_input: bool = False
    wrote_plan: bool = False

    @property
    def folder(self) -> Path:
        return self.root / SCREEN_DIR

    @property
    def controls_path(self) -> Path:
        return self.root / CONTROLS_FILE

    def path(self, probe: Probe) -> Path:
        return self.folder / f"{probe.name}.wav"

    def recorded(self) -> list[Probe]:
        return [p for p in self.probes if self.path(p).is_file()]

    def missing(self) -> list[Probe]:
        return [p for p in self.probes if not self.path(p).is_file()]

    def turns(self, knob: str) -> list[Probe]:
        """``knob``'s own probes (the other controls at their defaults), low to high."""
        return [p for p in self.probes if p.knob == knob and not p.far]

    def gain_tests(self, knob: str) -> list[Probe]:
        """``knob``'s gain-test probes (every other control at its far end), its default first."""
        return [p for p in self.probes if p.knob == knob and p.far]

    def time(self, costs: MoveCosts = DEFAULT_COSTS) -> SessionTime:
        """How long recording every probe takes (``design.session_time``, in probe order)."""
        seconds = round(self.signal.map.length / self.signal.sample_rate, 1)
        return session_time(self.controls, [p.setting for p in self.probes], seconds, costs)


def prepare_probes(root: str | Path, levels: int | None = None) -> ProbeSet:
    """Open or start ``DIR/screen``: write the probe signal and plan.csv when missing.

    ``levels``: probes per knob (default: as in an existing plan, else ``SCREEN_LEVELS``). A plan that
    no longer matches controls.toml or ``levels`` is rewritten while no probe is recorded, and
    refused once one is (the recordings were made at its settings).
    """
    root = Path(root)
    controls = _session_controls(root)
    if not any(screenable(k) for k in controls.knobs):
        raise ScreeningError(f"{root / CONTROLS_FILE} has no knob to screen (switches need no warp, and "
                             "log-taper knobs are not screened); go on with 'knobcap plan'.")
    folder = root / SCREEN_DIR
    plan_path, input_path = folder / PROBE_PLAN, folder / PROBE_INPUT
    recordings = sorted(folder.glob("probe*.wav")) if folder.is_dir() else []
    old = None
    if plan_path.is_file():
        try:
            old = read_probe_plan(plan_path, controls)
        except ScreeningError:
            if recordings:
                raise
            old = []  # written for other controls and nothing recorded with it: knobcap's own, rewritten
    if levels is None:
        levels = _levels_of(old) if old else SCREEN_LEVELS
    probes = probe_plan(controls, levels)
    text = probe_plan_text(controls, probes)
    wrote_plan = not old or probe_plan_text(controls, old) != text
    if wrote_plan and old and recordings and probe_plan_text(controls, old) == probe_plan_text(
            controls, probe_plan(controls, levels, gain_tests=False)):
        probes, wrote_plan = old, False  # written before the gain tests, and recorded from: kept
    if wrote_plan and old and recordings:
        raise ScreeningError(
            f"{plan_path} no longer matches {CONTROLS_FILE} and --levels {levels} ({len(old)} probes "
            f"planned, {len(probes)} now), and {folder} holds {len(recordings)} recording(s) made at its "
            f"settings. Run with the --levels used before, or undo the change to {CONTROLS_FILE}. "
            + _START_OVER.format(folder=folder))
    signal, wrote_input = _probe_input(input_path, recordings)
    if wrote_plan:
        write_text_atomic(plan_path, text)
    return ProbeSet(root, controls, signal, probes, levels, wrote_input, wrote_plan)


def _session_controls(root: Path) -> Controls:
    path = root / CONTROLS_FILE
    if not path.is_file():
        raise ScreeningError(f"{path}: missing; create the session with 'knobcap init {root}' and describe "
                             f"the device's controls first.")
    return load_controls(path)


def _levels_of(probes: Sequence[Probe]) -> int:
    """Probes per knob of a plan (every knob has as many)."""
    return sum(p.knob == probes[0].knob and not p.far for p in probes)


def _probe_input(path: Path, recordings: Sequence[Path]) -> tuple[TestSignal, bool]:
    """The probe signal on disk (what probes were recorded with), written when missing."""
    if path.is_file():
        try:
            return read_signal(path), False
        except SignalError as error:
            raise ScreeningError(f"{error} ({path} is the probe signal of 'knobcap screen'.) "
                                 + _START_OVER.format(folder=path.parent)) from None
    if recordings:
        raise ScreeningError(f"{path} is missing but {path.parent} holds {len(recordings)} probe "
                             "recording(s) made with it. " + _START_OVER.format(folder=path.parent))
    map_path(path).unlink(missing_ok=True)  # a map left without its WAV: knobcap's own, rewritten
    signal = probe_signal()
    write_signal(path, signal)
    return signal, True


def record_probes(probes: ProbeSet, device: object, *, seed: int = 0,
                  progress: Progress | None = None) -> list[str]:
    """Record every missing probe through a virtual device, as ``knobcap reamp`` records takes
    (``reamp.record``: a latency of 2-15 ms and a noise floor per probe); never overwrites one."""
    from knobcap.capture.reamp import compatible, record

    problem = compatible(probes.controls, device)  # type: ignore[arg-type]
    if problem:
        name = getattr(device, "name", "?")
        raise ScreeningError(f"{probes.controls_path} does not describe the virtual device {name!r} "
                             f"({problem}). Start a session for it with 'knobcap init NEWDIR --device "
                             f"{name}'.")
    missing = probes.missing()
    done = []
    for index, probe in enumerate(missing):
        if progress is not None:
            progress(probe.name, index, len(missing))
        path = probes.path(probe)
        if path.exists():
            continue
        rng = np.random.default_rng([seed, 0x5C7EE7, int(probe.name[5:])])
        audio, _ = record(device, probes.signal.audio, probes.signal.sample_rate,  # type: ignore[arg-type]
                          probe.setting, rng)
        write_wav_atomic(path, audio, probes.signal.sample_rate)
        done.append(probe.name)
    if progress is not None:
        progress("done", len(missing), len(missing))
    return done


# ------------------------------------------------------------------------------------------ measuring
@dataclass(frozen=True)
class KnobScreen:
    """One knob's screening: its probe values (low to high), the changes between them, and its warp."""

    knob: Knob
    values: tuple[float, ...]
    distances: tuple[float, ...]
    warp: tuple[float, ...]

    @property
    def flat(self) -> bool:
        """No measurable change: the warp is linear."""
        return float(np.sum(self.distances)) <= MIN_CHANGE

    def u_at(self, p: float) -> float:
        """The warped coordinate at rotation ``p``."""
        return float(np.interp(p, np.linspace(0.0, 1.0, len(self.warp)), self.warp))


@dataclass
class Measurement:
    """Every knob's screening from the recorded probes, and the warnings the checks raised."""

    knobs: list[KnobScreen]
    warnings: list[str] = field(default_factory=list)
    gains: dict[str, tuple[float, ...]] = field(default_factory=dict)  # output-gain knobs' gain_db
    audible: dict[str, tuple[float, float]] = field(default_factory=dict)  # knobs silent at an end

    @property
    def warps(self) -> dict[str, tuple[float, ...]]:
        return {k.knob.name: k.warp for k in self.knobs}


def measure_probes(probes: ProbeSet, blend: float = DEFAULT_BLEND,
                   progress: Progress | None = None) -> Measurement:
    """Check and align every recorded probe, and compute each knob's warp from the playing part.

    Raises :class:`ScreeningError` listing every missing or failing probe (the file, what is wrong,
    what to do).
    """
    from knobcap.capture.check import check_take, only_silence
    from knobcap.capture.latency import align

    missing = probes.missing()
    if missing:
        raise ScreeningError(_missing_message(probes, missing))
    signal, m = probes.signal, probes.signal.map
    failures, warnings = [], []
    aligned: dict[str, tuple[np.ndarray, float]] = {}
    quiet: dict[str, list[str]] = {}  # probes at the noise floor: silence, where their knob allows it
    for index, probe in enumerate(probes.probes):
        if progress is not None:
            progress(probe.name, index, len(probes.probes))
        path = probes.path(probe)
        checked = check_take(path, signal, take=probe.name, setting=probe.setting)
        failed = [p for p in checked.problems if p.severity == "fail"]
        warnings += [probe_wording(p.message, path) for p in checked.problems if p.severity == "warn"]
        if only_silence({p.code for p in failed}):
            quiet[probe.name] = [probe_wording(p.message, path) for p in failed]
            continue
        failures += [probe_wording(p.message, path) for p in failed]
        if checked.status == "fail" or checked.latency is None:
            continue
        recorded, _ = read_wav(path, sample_rate=m.sample_rate, mono=False)
        y = playing_part(signal, align(recorded[:, 0], checked.latency, m.length))
        floor = 0.0 if checked.noise_floor_dbfs is None else 10.0 ** (checked.noise_floor_dbfs / 10.0)
        aligned[probe.name] = (y - y.mean(), floor)
    if progress is not None:
        progress("done", len(probes.probes), len(probes.probes))
    silence = _silent_ends(probes, set(quiet))
    failures += [message for name, messages in quiet.items() if name not in silence for message in messages]
    if failures:
        raise ScreeningError("\n".join(failures) + f"\nFix these probes: delete each file named above, "
                             f"record it again at its row of {probes.folder / PROBE_PLAN}, and run "
                             f"'knobcap screen {probes.root}' again.")
    length = len(playing_part(signal, signal.audio))
    aligned |= {name: (np.zeros(length), 0.0) for name in silence}
    knobs = [_knob_screen(probes, name, aligned, blend) for name in _knob_order(probes)]
    gains = _gain_knobs(probes, aligned, silence)
    audible = {}
    for screened in knobs:
        found = audible_range(screened.values, [p.name in silence for p in probes.turns(screened.knob.name)])
        if found is not None and screened.knob.name not in gains:
            audible[screened.knob.name] = found
    return Measurement(knobs, warnings, gains, audible)


def _silent_ends(probes: ProbeSet, quiet: set[str]) -> set[str]:
    """The quiet probes that are silence: in a knob's run of probes, a run at one end that leaves some
    audible (a volume turned down); any gain-test probe (the gain test needs no audio from it)."""
    silence = {p.name for p in probes.probes if p.far and p.name in quiet}
    for knob in _knob_order(probes):
        names = [p.name for p in probes.turns(knob)]
        if all(name in quiet for name in names):
            continue  # nothing sounds: a dead connection, not a volume turned down
        for end in (names, names[::-1]):
            silence.update(itertools.takewhile(lambda name: name in quiet, end))
    return silence


def _gain_knobs(probes: ProbeSet, aligned: Mapping[str, tuple[np.ndarray, float]],
                silence: set[str]) -> dict[str, tuple[float, ...]]:
    """``gain_db`` of every knob whose probes show an output gain (none when every knob is one, as
    :func:`knobcap.capture.gain_knobs.find_gain_knobs`; none from a plan without gain-test probes)."""
    if not any(p.far for p in probes.probes) and len(probes.controls.names) > 1:
        return {}

    def recording(probe: Probe, knob: Knob) -> Recording:
        audio, noise = aligned[probe.name]
        return Recording(float(probe.setting[knob.name]), None if probe.name in silence else audio,  # type: ignore[arg-type]
                         noise)

    found = {}
    for name in _knob_order(probes):
        knob = probes.controls[name]
        assert isinstance(knob, Knob)
        own = [recording(p, knob) for p in probes.turns(name)]
        far = [recording(p, knob) for p in probes.gain_tests(name)]
        gains = recorded_knob_gain(knob, own, far, probes.levels)
        if gains is not None:
            found[name] = gains
    return {} if len(found) == len(probes.controls.knobs) else found


# check.py words its messages for takes (what a model learns from); these say what they mean for a probe
_FOR_A_PROBE = (
    ("a model would learn the clipping", "the clipping would read as a change of sound"),
    ("a model learns the noise as part of the sound", "noise blurs the small changes screening measures"),
    (", or the model wastes capacity on it", " (screening takes the mean out, but a model trained on "
                                             "the takes would waste capacity on it)"),
)
_TAKE = re.compile(r"\btake(s?)\b")
_INPUT = re.compile(r"(?<![\w/\\.])input\.wav\b")


def probe_wording(message: str, path: Path) -> str:
    """A message of :func:`knobcap.capture.check.check_take` about the probe at ``path``, worded for a probe.

    After the file name: "take" reads "probe", "input.wav" reads "screen/input.wav", and what a model
    would learn reads what screening would measure.
    """
    from knobcap.capture.check import SILENT_SETTING_ADVICE

    head = str(path) if message.startswith(str(path)) else ""
    message = message.replace(f" {SILENT_SETTING_ADVICE}", "")  # for takes only (drop the row)
    tail = _INPUT.sub(f"{SCREEN_DIR}/{PROBE_INPUT}", _TAKE.sub(r"probe\1", message[len(head):]))
    for take, probe in _FOR_A_PROBE:
        tail = tail.replace(take, probe)
    return head + tail


def _knob_order(probes: ProbeSet) -> list[str]:
    return list(dict.fromkeys(p.knob for p in probes.probes if not p.far))


def _knob_screen(probes: ProbeSet, name: str, aligned: Mapping[str, tuple[np.ndarray, float]],
                 blend: float) -> KnobScreen:
    rows = probes.turns(name)
    knob = probes.controls[name]
    assert isinstance(knob, Knob)
    outputs = [aligned[p.name][0] for p in rows]
    noise = [aligned[p.name][1] for p in rows]
    try:
        d = step_distances(outputs, noise, allow_silent=True)  # silent ones were checked: a run at an end
    except ScreeningError as error:
        raise ScreeningError(f"knob {name!r} ({', '.join(p.name for p in rows)}): {error}") from None
    warp = round_warp(warp_from_distances(d, blend, MIN_CHANGE))
    values = tuple(float(p.setting[name]) for p in rows)  # type: ignore[arg-type]
    return KnobScreen(knob, values, tuple(float(x) for x in d), warp)


def _missing_message(probes: ProbeSet, missing: Sequence[Probe]) -> str:

    listed = "; ".join(f"{probes.path(p)} ({setting_label(p.setting, digits=6)})" for p in missing[:6])
    more = f"; and {len(missing) - 6} more" if len(missing) > 6 else ""
    return (f"{len(missing)} of {len(probes.probes)} probes are not recorded yet: {listed}{more}. Play "
            f"{probes.folder / PROBE_INPUT} through the device at each of these settings (rows of "
            f"{probes.folder / PROBE_PLAN}) and save the recordings under these names, then run "
            f"'knobcap screen {probes.root}' again.")


# ------------------------------------------------------------------------------------------ the session
def session_notes(root: Path, changed: bool) -> list[str]:
    """What new warps mean for a session that already has a plan or takes (plain sentences)."""
    if not changed:
        return []
    notes = []
    takes = sorted((root / TAKES_DIR).glob("*.wav")) if (root / TAKES_DIR).is_dir() else []
    if takes:
        notes.append(
            f"{root / TAKES_DIR} already holds {len(takes)} recording(s): they stay valid. The warps change "
            f"the model's coordinates (how a knob's value is fed to it), not what was recorded; training "
            f"and evaluation use them from now on, and models trained before keep their own. The plan "
            f"keeps its settings ('knobcap plan {root}' now refuses to change them).")
    elif (root / PLAN_FILE).is_file():
        notes.append(
            f"{root / PLAN_FILE} was designed without these warps: run 'knobcap plan {root}' again (same "
            f"options) before recording, so the settings are spread by measured sound change. Training "
            f"uses the warps either way.")
    return notes


@dataclass
class ScreenOutcome:
    """What :func:`screen_session` did: the probes, any it recorded, and the result once all are in."""

    probes: ProbeSet
    recorded_now: list[str] = field(default_factory=list)
    measurement: Measurement | None = None
    controls: Controls | None = None
    wrote_controls: bool = False
    notes: list[str] = field(default_factory=list)


def screen_session(root: str | Path, *, levels: int | None = None, device: object | None = None,
                   seed: int = 0, blend: float = DEFAULT_BLEND, progress: Progress | None = None
                   ) -> ScreenOutcome:
    """``knobcap screen DIR``: prepare the probes; record them through ``device`` if given; once every
    probe is recorded, measure the warps and write them into controls.toml.

    ``progress(stage, index, count)``: stage ``"record"`` (through ``device``) or ``"check"``.
    With no probe recorded (a real device's first run) only the probe files are written. With some
    but not all recorded, :class:`ScreeningError` lists the missing ones.
    """
    root = Path(root)
    probes = prepare_probes(root, levels)
    outcome = ScreenOutcome(probes)
    def stage(name: str) -> Progress | None:
        return None if progress is None else lambda probe, i, n: progress(name, i, n)

    if device is not None and probes.missing():
        outcome.recorded_now = record_probes(probes, device, seed=seed, progress=stage("record"))
    if not probes.recorded():
        return outcome
    outcome.measurement = measure_probes(probes, blend, stage("check"))
    try:
        outcome.controls, outcome.wrote_controls = write_warps(probes.controls_path,
                                                               outcome.measurement.warps,
                                                               {"gain_db": outcome.measurement.gains,
                                                                "audible": outcome.measurement.audible})
    except ControlsError as error:
        raise ScreeningError(str(error)) from None
    outcome.notes = session_notes(root, outcome.wrote_controls)
    return outcome
