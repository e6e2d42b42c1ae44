"""Screening: measure how fast each knob changes the sound, and warp its coordinate to match.

A knob is probed one at a time at ``levels`` equally spaced rotations ``p_i`` (the other controls at
their defaults), on the same short probe audio. The sound change between neighbouring probes is
the relative RMS difference

    d_i = sqrt( sum (y_{i+1} - y_i)^2 / (0.5 * (sum y_i^2 + sum y_{i+1}^2)) ),

and the warp is its normalised running sum, blended with the rotation so that flat stretches keep
some resolution:  ``u_i = (1 - b) * D_i / D_n + b * p_i``  with ``D_i = d_0 + ... + d_{i-1}``.

Equal steps in ``u`` are then roughly equal steps of sound change, which is what the design spreads
points over and what the model sees (see ``controls.py``; DOE notes A7, step 0).

Recordings (a real device, ``knobcap screen DIR``) are aligned to the probe input first (blips,
:mod:`knobcap.latency`, as takes are for training) and checked as takes are
(:func:`knobcap.check.check_take`); their mean is removed. Their noise floor is taken out of ``d_i``:
with noise of power ``s_i^2`` per sample (measured on the probe's leading silence),
``E sum (y_{i+1} - y_i)^2`` grows by ``N (s_i^2 + s_{i+1}^2)``, which is subtracted (and ``N s_i^2``
from each energy), so a knob that changes nothing reads as ``d ~ 0``, not as noise. (Searching a
sample or two of shift between neighbours, against misread latencies, was tried and dropped: the
blips read every TS808 probe exactly, and the shift absorbed a fifth of the tone knob's real change
between 9 and 10, a phase change.)

A knob whose total change ``D_n`` is below ``MIN_CHANGE`` changes nothing measurable and keeps a
linear warp. Log-taper knobs (a value spanning decades, e.g. a frequency) are not screened: a warp
is linear in the knob's value, so equal value steps would leave their low decades unresolved.

Files (``knobcap screen DIR``; all in ``DIR/screen/``): ``input.wav`` + ``input.json`` (the probe
signal and its segment map), ``plan.csv`` (``probe,knob,<each control>``: one row a probe, in
recording order) and the recordings ``probe01.wav``, ``probe02.wav``, ...; the warps go into
``DIR/controls.toml`` as a ``warp = [...]`` line in each knob's ``[[knob]]`` table, the rest of the
file (comments, order, formatting) untouched.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import numpy as np

from knobcap.controls import Controls, ControlsError, Knob, Setting, load_controls
from knobcap.design import DEFAULT_COSTS, MoveCosts, SessionTime, format_value, round_value, session_time
from knobcap.fileio import read_wav, write_text_atomic, write_wav_atomic
from knobcap.session import CONTROLS_FILE, PLAN_FILE, TAKES_DIR
from knobcap.signal import (
    MIN_SECONDS,
    SIGNAL_VERSION,
    Segment,
    SignalError,
    SignalMap,
    TestSignal,
    generate_signal,
    map_path,
    read_signal,
    write_signal,
)

DEFAULT_LEVELS = 21
DEFAULT_BLEND = 0.25
SCREEN_LEVELS = 11          # probes per knob in the user journey: 0, 1, ..., 10 on a 0-10 dial
MIN_CHANGE = 0.02           # total relative change D_n below which a knob counts as flat
MAX_LEVELS = 101
SCREEN_DIR = "screen"
PROBE_INPUT = "input.wav"
PROBE_PLAN = "plan.csv"
WARP_DECIMALS = 4
_PHRASE_AFTER_SECONDS = 4.0  # the probe's playing runs to the first phrase end after this
_PLAYING_SECONDS = 6.0       # ... or is cut here (with a fade) when no phrase ends in time

Progress = Callable[[str, int, int], None]  # (what, index, count)


class ScreeningError(ValueError):
    """Screening probes cannot give a warp; the message says what to do."""


# ------------------------------------------------------------------------------------------ maths
def step_distances(outputs: Sequence[np.ndarray], noise_power: Sequence[float] | None = None) -> np.ndarray:
    """``d_i``: relative RMS change between neighbouring probe outputs (see the module docstring).

    ``noise_power``: each output's noise power per sample ``s_i^2``, taken out of the sums.
    """
    if len(outputs) < 2:
        raise ScreeningError("screening needs at least two probes per knob.")
    ys = [np.asarray(y, dtype=np.float64) for y in outputs]
    if len({len(y) for y in ys}) != 1:
        raise ScreeningError("the probes of one knob must all have the same length.")
    n = len(ys[0])
    noise = np.zeros(len(ys)) if noise_power is None else np.asarray(noise_power, dtype=np.float64)
    energy = np.array([np.sum(y * y) for y in ys]) - n * noise
    if np.any(energy <= 0):
        raise ScreeningError("a probe output is silent; check the connections and record it again.")
    diffs = np.array([np.sum((ys[i + 1] - ys[i]) ** 2) for i in range(len(ys) - 1)])
    change = np.maximum(diffs - n * (noise[:-1] + noise[1:]), 0.0)
    return np.sqrt(change / (0.5 * (energy[:-1] + energy[1:])))


def warp_from_distances(distances: Sequence[float], blend: float = DEFAULT_BLEND,
                        min_change: float = 0.0) -> tuple[float, ...]:
    """``u`` at ``len(distances) + 1`` equally spaced rotations: the blended, normalised running sum.

    A total change ``D_n`` of at most ``min_change`` (or none at all) gives the linear warp ``u = p``.
    """
    d = np.asarray(distances, dtype=np.float64)
    if not 0.0 < blend <= 1.0:
        raise ScreeningError(f"blend must be in (0, 1], got {blend}.")
    rotations = np.linspace(0.0, 1.0, len(d) + 1)
    total = float(np.sum(d))
    if not np.all(np.isfinite(d)) or total <= max(min_change, 0.0):
        return tuple(float(p) for p in rotations)  # the knob changes nothing measurable: stay linear
    cumulative = np.concatenate([[0.0], np.cumsum(d)]) / total
    u = (1.0 - blend) * cumulative + blend * rotations
    u[0], u[-1] = 0.0, 1.0
    return tuple(float(v) for v in u)


def round_warp(warp: Sequence[float]) -> tuple[float, ...]:
    """The warp as written to controls.toml: ``WARP_DECIMALS`` decimals (6 where 4 would tie)."""
    for decimals in (WARP_DECIMALS, 6):
        rounded = tuple(round(float(u), decimals) + 0.0 for u in warp)
        if all(b > a for a, b in pairwise(rounded)):
            return rounded
    return tuple(float(u) for u in warp)


def screenable(knob: Knob) -> bool:
    """Whether screening measures this knob (not a log-taper knob; see the module docstring)."""
    return knob.taper != "log"


def probe_settings(controls: Controls, knob: Knob, levels: int = DEFAULT_LEVELS) -> list[Setting]:
    """The one-at-a-time settings of ``knob`` (others at their defaults), low to high."""
    base = controls.default_setting()
    settings = []
    for p in np.linspace(0.0, 1.0, levels):
        setting = dict(base)
        setting[knob.name] = float(knob.min + p * (knob.max - knob.min))
        settings.append(setting)
    return settings


def screen(render: Callable[[Setting], np.ndarray], controls: Controls, levels: int = DEFAULT_LEVELS,
           blend: float = DEFAULT_BLEND, progress: Progress | None = None) -> dict[str, tuple[float, ...]]:
    """Measure every screenable knob's warp with ``render(setting) -> output audio`` (a virtual device).

    ``progress(knob, index, count)`` is called before each render, and with ``index = count`` at the
    end. A knob whose total change is at
    most ``MIN_CHANGE`` gets the linear warp.
    """
    knobs = [k for k in controls.knobs if screenable(k)]
    count, warps = len(knobs) * levels, {}
    for k, knob in enumerate(knobs):
        outputs = []
        for i, setting in enumerate(probe_settings(controls, knob, levels)):
            if progress is not None:
                progress(knob.name, k * levels + i, count)
            outputs.append(render(setting))
        warps[knob.name] = warp_from_distances(step_distances(outputs), blend, MIN_CHANGE)
    if progress is not None:
        progress("done", count, count)
    return warps


@dataclass(frozen=True)
class WarpSummary:
    """What a knob's warp says, for a table: ``u`` at each quarter turn and where it rises fastest."""

    quarters: tuple[float, float, float]   # u at 1/4, 1/2 and 3/4 of the turn
    fastest: str                           # e.g. "9 -> 10: 37 % of u in 10 % of the turn"


def warp_summary(knob: Knob) -> WarpSummary:
    """Summarise ``knob.warp`` (or its taper, when it has none) in plain numbers."""
    warp = np.asarray(knob.warp if knob.warp is not None else
                      [knob.to_unit(knob.min + p * (knob.max - knob.min)) for p in np.linspace(0, 1, 11)])
    rotations = np.linspace(0.0, 1.0, len(warp))
    a, b, c = (float(np.interp(p, rotations, warp)) for p in (0.25, 0.5, 0.75))
    steps = np.diff(warp)
    if np.ptp(steps) <= 1e-3 * np.mean(steps):
        return WarpSummary((a, b, c), "evenly (linear: no measurable change, or a linear knob)")
    i = int(np.argmax(steps))
    low, high = (format_value(knob, knob.min + p * (knob.max - knob.min)) for p in rotations[i:i + 2])
    turn = 100.0 / len(steps)
    return WarpSummary((a, b, c), f"{low} -> {high}: {100 * steps[i]:.0f} % of u in {turn:.0f} % of the turn")


def apply_warps(controls: Controls, warps: Mapping[str, Sequence[float]]) -> Controls:
    """The same controls with the given knobs' warps set (validated as a controls file would be)."""
    unknown = sorted(set(warps) - {k.name for k in controls.knobs})
    if unknown:
        raise ScreeningError(f"no knob named {', '.join(unknown)} in these controls.")
    knobs = tuple(replace(k, warp=tuple(warps[k.name])) if k.name in warps else k for k in controls.knobs)
    return Controls(knobs=knobs, switches=controls.switches, name=controls.name, source=controls.source)


# ------------------------------------------------------------------------------------------ the probe
@lru_cache(maxsize=1)
def _probe_parts() -> tuple[np.ndarray, SignalMap]:
    source = generate_signal(MIN_SECONDS)
    m = source.map
    rate = m.sample_rate
    lead = source.audio[:m.segment("validation_1").start]           # silence, blip_1, blip_2
    validation = source.part("validation_1")
    validation = validation[2 * (len(validation) // 3):]            # its loud last phrase (-3 dBFS)
    playing = _first_phrases(source.part("playing"), rate)
    parts = [("validation_1", validation), ("playing", playing), ("validation_2", validation)]
    segments = [s for s in m.segments if s.stop <= len(lead)]
    pos = len(lead)
    for name, part in parts:
        segments.append(Segment(name, pos, pos + len(part)))
        pos += len(part)
    audio = np.concatenate([lead] + [part for _, part in parts]).astype(np.float32)
    return audio, SignalMap(rate, len(audio), SIGNAL_VERSION, tuple(segments), m.blips)


def _first_phrases(playing: np.ndarray, rate: int) -> np.ndarray:
    """The start of the test signal's playing, up to the end of the first phrase gap after 4 s."""
    gap, after = round(0.05 * rate), round(_PHRASE_AFTER_SECONDS * rate)
    silent = np.concatenate([[False], playing == 0.0, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= gap and start >= after and stop <= round(_PLAYING_SECONDS * rate):
            return playing[:stop].copy()
    cut = playing[:round(_PLAYING_SECONDS * rate)].copy()
    fade = round(0.05 * rate)
    cut[-fade:] *= np.linspace(1.0, 0.0, fade)
    return cut


def probe_signal() -> TestSignal:
    """The probe played at every screening setting (about 12 s, 48 kHz).

    ``silence``, ``blip_1``, ``blip_2`` as in knobcap's test signal (latency), ``validation_1`` (the
    loud last phrase of its validation segment), ``playing`` (its first phrases of playing, about
    5.7 s: the distances are computed here), ``validation_2`` (a copy of ``validation_1``: drift).
    """
    audio, signal_map = _probe_parts()
    return TestSignal(audio.copy(), signal_map)


def playing_part(signal: TestSignal, audio: np.ndarray) -> np.ndarray:
    """The ``playing`` segment of an output aligned to the probe."""
    seg = signal.map.segment("playing")
    return np.asarray(audio[seg.start:seg.stop], dtype=np.float64)


# ------------------------------------------------------------------------------------------ virtual
def screen_device(device: object, levels: int = SCREEN_LEVELS, blend: float = DEFAULT_BLEND,
                  progress: Progress | None = None) -> Controls:
    """A virtual device's controls with their warps measured on the probe (no latency, no noise)."""
    signal = probe_signal()
    x = signal.audio.astype(np.float64)
    controls: Controls = device.controls  # type: ignore[attr-defined]

    def render(setting: Setting) -> np.ndarray:
        return playing_part(signal, device.process(x, signal.sample_rate, setting))  # type: ignore[attr-defined]

    warps = screen(render, controls, _check_levels(levels), blend, progress)
    return apply_warps(controls, {name: round_warp(w) for name, w in warps.items()})


def _check_levels(levels: int) -> int:
    if not 3 <= levels <= MAX_LEVELS:
        raise ScreeningError(f"--levels must be from 3 to {MAX_LEVELS} probes per knob, got {levels}.")
    return int(levels)


# ------------------------------------------------------------------------------------------ probe plan
@dataclass(frozen=True)
class Probe:
    """One row of screen/plan.csv: the probe's name, the knob it turns, and its whole setting."""

    name: str
    knob: str
    setting: Setting


def probe_name(number: int) -> str:
    """``probe01``, ``probe02``, ..."""
    return f"probe{number:02d}"


def probe_plan(controls: Controls, levels: int = SCREEN_LEVELS) -> list[Probe]:
    """Every screenable knob from its minimum to its maximum in ``levels`` steps, one knob at a time,
    the other controls at their defaults, values rounded to what a user can dial."""
    probes: list[Probe] = []
    for knob in (k for k in controls.knobs if screenable(k)):
        for setting in probe_settings(controls, knob, _check_levels(levels)):
            rounded = {k.name: round_value(k, float(setting[k.name])) for k in controls.knobs}  # type: ignore[arg-type]
            probes.append(Probe(probe_name(len(probes) + 1), knob.name, {**setting, **rounded}))
    return probes


def probe_plan_text(controls: Controls, probes: Sequence[Probe]) -> str:
    """The text of screen/plan.csv: ``probe,knob,<each control>``, one row a probe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["probe", "knob", *controls.names])
    for probe in probes:
        values = [format_value(k, float(probe.setting[k.name])) for k in controls.knobs]  # type: ignore[arg-type]
        writer.writerow([probe.name, probe.knob, *values, *(str(probe.setting[s.name])
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
        try:
            setting = controls.validate_setting(dict(zip(controls.names, values, strict=True)),
                                                where=f"{path}, line {line}")
        except ControlsError as error:
            raise ScreeningError(str(error)) from None
        probes.append(Probe(name, knob, setting))
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
    counts = {p.knob: 0 for p in probes}
    for p in probes:
        counts[p.knob] += 1
    return next(iter(counts.values()))


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
    from knobcap.reamp import compatible, record

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

    @property
    def warps(self) -> dict[str, tuple[float, ...]]:
        return {k.knob.name: k.warp for k in self.knobs}


def measure_probes(probes: ProbeSet, blend: float = DEFAULT_BLEND,
                   progress: Progress | None = None) -> Measurement:
    """Check and align every recorded probe, and compute each knob's warp from the playing part.

    Raises :class:`ScreeningError` listing every missing or failing probe (the file, what is wrong,
    what to do).
    """
    from knobcap.check import check_take
    from knobcap.latency import align

    missing = probes.missing()
    if missing:
        raise ScreeningError(_missing_message(probes, missing))
    signal, m = probes.signal, probes.signal.map
    failures, warnings = [], []
    aligned: dict[str, tuple[np.ndarray, float]] = {}
    for index, probe in enumerate(probes.probes):
        if progress is not None:
            progress(probe.name, index, len(probes.probes))
        path = probes.path(probe)
        checked = check_take(path, signal, take=probe.name, setting=probe.setting)
        failures += [p.message for p in checked.problems if p.severity == "fail"]
        warnings += [p.message for p in checked.problems if p.severity == "warn"]
        if checked.status == "fail" or checked.latency is None:
            continue
        recorded, _ = read_wav(path, sample_rate=m.sample_rate, mono=False)
        y = playing_part(signal, align(recorded[:, 0], checked.latency, m.length))
        floor = 0.0 if checked.noise_floor_dbfs is None else 10.0 ** (checked.noise_floor_dbfs / 10.0)
        aligned[probe.name] = (y - y.mean(), floor)
    if progress is not None:
        progress("done", len(probes.probes), len(probes.probes))
    if failures:
        raise ScreeningError("\n".join(failures) + f"\nFix these probes: delete each file named above, "
                             f"record it again at its row of {probes.folder / PROBE_PLAN}, and run "
                             f"'knobcap screen {probes.root}' again.")
    return Measurement([_knob_screen(probes, name, aligned, blend) for name in _knob_order(probes)],
                       warnings)


def _knob_order(probes: ProbeSet) -> list[str]:
    return list(dict.fromkeys(p.knob for p in probes.probes))


def _knob_screen(probes: ProbeSet, name: str, aligned: Mapping[str, tuple[np.ndarray, float]],
                 blend: float) -> KnobScreen:
    rows = [p for p in probes.probes if p.knob == name]
    knob = probes.controls[name]
    assert isinstance(knob, Knob)
    outputs = [aligned[p.name][0] for p in rows]
    noise = [aligned[p.name][1] for p in rows]
    try:
        d = step_distances(outputs, noise)
    except ScreeningError as error:
        raise ScreeningError(f"knob {name!r} ({', '.join(p.name for p in rows)}): {error}") from None
    warp = round_warp(warp_from_distances(d, blend, MIN_CHANGE))
    values = tuple(float(p.setting[name]) for p in rows)  # type: ignore[arg-type]
    return KnobScreen(knob, values, tuple(float(x) for x in d), warp)


def _missing_message(probes: ProbeSet, missing: Sequence[Probe]) -> str:
    from knobcap.check import format_setting

    listed = "; ".join(f"{probes.path(p)} ({format_setting(p.setting)})" for p in missing[:6])
    more = f"; and {len(missing) - 6} more" if len(missing) > 6 else ""
    return (f"{len(missing)} of {len(probes.probes)} probes are not recorded yet: {listed}{more}. Play "
            f"{probes.folder / PROBE_INPUT} through the device at each of these settings (rows of "
            f"{probes.folder / PROBE_PLAN}) and save the recordings under these names, then run "
            f"'knobcap screen {probes.root}' again.")


# ------------------------------------------------------------------------------------------ controls.toml
_KNOB_HEADER = re.compile(r"^\s*\[\[\s*knob\s*\]\]\s*(#.*)?$")
_TABLE_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_\-\"']+)\s*=")
_MARK = "knobcap screen"
WARP_COMMENT = "# warp (measured by '{mark}'): u at {n} equally spaced turns; delete it to use the taper"
DEFAULT_COMMENT = "  # pinned by '{mark}': without it, the warp would move the default"


def warps_into_toml(text: str, controls: Controls, warps: Mapping[str, Sequence[float]]) -> str:
    """``text`` (a controls.toml parsed as ``controls``) with a ``warp = [...]`` line set in the
    ``[[knob]]`` table of each knob in ``warps``; every other line is kept as it is.

    An existing warp line (and the comment knobcap wrote above it) is replaced; a new one goes after
    the table's last key. A knob without a ``default`` gets one (its current default): an unset
    default is the middle of ``u``, which a warp would move.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += newline
    headers = [i for i, line in enumerate(lines) if _TABLE_HEADER.match(line)]
    starts = [i for i in headers if _KNOB_HEADER.match(lines[i])]
    if len(starts) != len(controls.knobs):
        raise ScreeningError(
            f"{controls.source or CONTROLS_FILE}: found {len(starts)} [[knob]] table(s) for "
            f"{len(controls.knobs)} knob(s); write each knob as its own [[knob]] table so that knobcap can "
            f"add its warp line.")
    for index in reversed(range(len(starts))):
        knob = controls.knobs[index]
        if knob.name not in warps:
            continue
        start = starts[index]
        stop = next((h for h in headers if h > start), len(lines))
        lines[start + 1:stop] = _knob_lines(lines[start + 1:stop], knob, warps[knob.name], newline)
    return "".join(lines)


def _knob_lines(body: list[str], knob: Knob, warp: Sequence[float], newline: str) -> list[str]:
    """The lines of one [[knob]] table (after its header) with the warp set."""
    body = list(body)
    keys = _key_spans(body)
    indent = next((_KEY.match(body[a]).group(1) for a, _ in keys.values()), "")  # type: ignore[union-attr]
    new = [indent + WARP_COMMENT.format(mark=_MARK, n=len(warp)) + newline,
           indent + _warp_text(warp, indent, newline) + newline]
    if "warp" in keys:
        a, b = keys["warp"]
        if a > 0 and body[a - 1].lstrip().startswith("#") and _MARK in body[a - 1]:
            a -= 1
        body[a:b] = new
        return body
    if "default" not in keys:
        new.insert(0, f"{indent}default = {knob.default_value!r}"
                      f"{DEFAULT_COMMENT.format(mark=_MARK)}{newline}")
    last = max((b for _, b in keys.values()), default=0)
    body[last:last] = new
    return body


def _key_spans(body: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``key -> (first line, line after its value)`` for the keys of one table (multi-line arrays too)."""
    spans: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(body):
        match = _KEY.match(body[i])
        if not match or body[i].lstrip().startswith("#"):
            i += 1
            continue
        j, depth = i, 0
        while True:
            code = body[j].split("#", 1)[0] if '"' not in body[j] and "'" not in body[j] else body[j]
            depth += code.count("[") - code.count("]")
            j += 1
            if depth <= 0 or j >= len(body):
                break
        spans[match.group(2).strip("\"'")] = (i, j)
        i = j
    return spans


def _number(x: float) -> str:
    """A float as TOML, short and exact enough (6 significant decimals)."""
    return repr(round(float(x), 6) + 0.0)


def _warp_text(warp: Sequence[float], indent: str, newline: str = "\n") -> str:
    """``warp = [...]`` on one line, or wrapped 8 numbers a line when longer than 100 characters."""
    numbers = [_number(u) for u in warp]
    line = f"warp = [{', '.join(numbers)}]"
    if len(indent) + len(line) <= 100:
        return line
    rows = [", ".join(numbers[i:i + 8]) for i in range(0, len(numbers), 8)]
    inner = f",{newline}{indent}    ".join(rows)
    return f"warp = [{newline}{indent}    {inner},{newline}{indent}]"


def write_warps(path: str | Path, warps: Mapping[str, Sequence[float]]) -> tuple[Controls, bool]:
    """Set the warps in the controls.toml at ``path`` (atomically; nothing written when unchanged).

    The result is parsed again and must differ from the file before only by the warps (a pinned
    default is the old default, exactly), else the file is left alone and the error says what to add by hand.
    Returns the new controls and whether the file changed.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    before = load_controls(path)
    warps = {name: tuple(float(u) for u in w) for name, w in warps.items()}
    try:
        new_text = warps_into_toml(text, before, warps)
    except ScreeningError as error:
        raise ScreeningError(f"{error} Or add these lines yourself: {_by_hand(warps)}") from None
    try:
        import tomllib

        after = Controls.from_dict(tomllib.loads(new_text), path)
    except (ValueError, ControlsError) as error:
        raise ScreeningError(f"{path}: knobcap could not add the warps safely ({error}); the file is "
                             f"unchanged. Add these lines yourself: {_by_hand(warps)}") from None
    if not _only_warps_differ(before, after, warps):
        raise ScreeningError(f"{path}: knobcap could not add the warps safely (the edited file reads "
                             f"differently); it is unchanged. Add these lines yourself: {_by_hand(warps)}")
    if new_text == text:
        return before, False
    write_text_atomic(path, new_text)
    return after, True


def _only_warps_differ(before: Controls, after: Controls, warps: Mapping[str, tuple[float, ...]]) -> bool:
    if (before.name, before.switches, len(before.knobs)) != (after.name, after.switches, len(after.knobs)):
        return False
    return all(replace(old, warp=None) == replace(new, warp=None)
               and new.warp == warps.get(old.name, old.warp)
               for old, new in zip(before.knobs, after.knobs, strict=True))


def _by_hand(warps: Mapping[str, Sequence[float]]) -> str:
    return "; ".join(f"in the [[knob]] table of {name!r}: {_warp_text(w, '')}" for name, w in warps.items())


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
    outcome.controls, outcome.wrote_controls = write_warps(probes.controls_path, outcome.measurement.warps)
    outcome.notes = session_notes(root, outcome.wrote_controls)
    return outcome
