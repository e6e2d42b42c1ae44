"""The session folder: what was planned, what was recorded, and the recordings aligned to their input.

    DIR/controls.toml   the device's knobs and switches (knobcap init; warp lines: knobcap screen)
    DIR/screen/         the screening probes: input.wav, plan.csv, probe01.wav, ... (see screen_session.py)
    DIR/plan.csv        take,<each control>,role, one row a take in recording order (knobcap plan)
    DIR/input.wav       the test signal played at every setting, and input.json its segment map
    DIR/takes/<take>.wav  the device's output at each take's setting
    DIR/check.json      latency, polarity and problems of each take (knobcap check)
    DIR/runs/<run>/     trained models

Planning (:func:`make_plan`) writes ``plan.csv`` and ``input.wav``; re-planning never touches a
recording, and refuses to change the settings or the input of a session that already has takes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knobcap import limits
from knobcap.capture.design import (
    DEFAULT_COSTS,
    ROLES,
    Design,
    DesignSize,
    MoveCosts,
    Role,
    SessionTime,
    check_method,
    default_size,
    describe_method,
    initial_design,
    session_time,
    size_for_minutes,
)
from knobcap.capture.testsignal import (
    SAMPLE_RATE,
    SIGNAL_VERSION,
    SignalError,
    TestSignal,
    custom_signal_map,
    generate_signal,
    map_path,
    read_signal,
    write_signal,
)
from knobcap.controls import (
    CONTROLS_FILE,
    Controls,
    ControlsError,
    Setting,
    controls_to_toml,
    format_value,
    load_controls,
)
from knobcap.fileio import read_wav, write_text_atomic

__all__ = ["ROLES", "PlanResult", "PlannedTake", "Role", "Session", "SessionError", "make_plan",
           "read_plan", "take_name"]

PLAN_FILE = "plan.csv"
INPUT_FILE = "input.wav"
TAKES_DIR = "takes"
CHECK_FILE = "check.json"
RUNS_DIR = "runs"
DEFAULT_SECONDS = 90.0
QUICK_SECONDS = 30.0
_TAKE_PATTERN = re.compile(r"^take\d{2,}$")


class SessionError(ValueError):
    """A session folder is incomplete or inconsistent; the message names the file and what to run."""


@dataclass(frozen=True)
class PlannedTake:
    """One row of plan.csv: the take's name, its setting (knob values in the user's units) and role."""

    take: str
    setting: Setting
    role: Role
    input: str = ""  # the take's own input file, relative to the session ("": input.wav)


def take_name(number: int) -> str:
    """``take01``, ``take02``, ... (three digits from 100 on)."""
    return f"take{number:02d}"


# ------------------------------------------------------------------------------------------ plan.csv
def _designed_then_added(rows: Sequence[PlannedTake], controls: Controls,
                         designed: Sequence[PlannedTake]) -> bool:
    """Whether plan rows are ``designed`` with some rows removed, in order, followed by rows the design
    does not have (``plan --more``'s)."""
    names = {t.take for t in designed}
    first_added = next((i for i, row in enumerate(rows) if row.take not in names), len(rows))
    remaining = iter(plan_csv_text(controls, [t]) for t in designed)
    return (first_added > 0
            and all(plan_csv_text(controls, [row]) in remaining for row in rows[:first_added])
            and all(row.take not in names for row in rows[first_added:]))


def plan_csv_text(controls: Controls, takes: Sequence[PlannedTake]) -> str:
    """The text of plan.csv: header ``take,<controls...>,role`` (``,input`` when a take has its own
    input file), one row a take."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    own_inputs = any(row.input for row in takes)
    writer.writerow(["take", *controls.names, "role", *(["input"] if own_inputs else [])])
    for row in takes:
        values = [format_value(k, float(row.setting[k.name])) for k in controls.knobs]  # type: ignore[arg-type]
        values += [str(row.setting[s.name]) for s in controls.switches]
        writer.writerow([row.take, *values, row.role, *([row.input] if own_inputs else [])])
    return buffer.getvalue()


def read_plan(path: str | Path, controls: Controls) -> list[PlannedTake]:
    """Read and validate plan.csv against the controls; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise SessionError(f"{path}: no plan; run 'knobcap plan {path.parent}' to choose the settings.")
    try:  # utf-8-sig: a spreadsheet's byte-order mark is read as nothing
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise SessionError(f"{path}: not a plan.csv (not UTF-8 text: {error}); run 'knobcap plan "
                           f"{path.parent}' to write it again.") from None
    if not rows:
        raise SessionError(f"{path}: empty; run 'knobcap plan {path.parent}' to write it again.")
    header = [h.strip() for h in rows[0]]
    expected = ["take", *controls.names, "role", *(["input"] if "input" in header else [])]
    if sorted(header) != sorted(expected) or header[0] != "take":
        missing = [h for h in expected if h not in header]
        extra = [h for h in header if h not in expected]
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing)}" if missing else "",
            f"unknown {', '.join(extra)}" if extra else "") if part) or "columns out of order"
        raise SessionError(
            f"{path}: the header must be {','.join(expected)} ({detail}). The plan does not match "
            f"{controls.source or CONTROLS_FILE}; re-run 'knobcap plan'.")
    takes: list[PlannedTake] = []
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise SessionError(f"{path}, line {line}: {len(row)} values but {len(header)} columns.")
        record = {h: cell.strip() for h, cell in zip(header, row, strict=True)}
        take, role, own_input = record.pop("take"), record.pop("role"), record.pop("input", "")
        if own_input and (Path(own_input).is_absolute() or ".." in Path(own_input).parts
                          or not own_input.lower().endswith(".wav")):
            raise SessionError(f"{path}, line {line}: input {own_input!r} must be a WAV file inside the "
                               "session folder (e.g. inputs/di02.wav).")
        if not _TAKE_PATTERN.match(take):
            raise SessionError(f"{path}, line {line}: take name {take!r} must look like take01.")
        if take in seen:
            raise SessionError(f"{path}, line {line}: take {take!r} is listed twice.")
        if role not in ROLES:
            raise SessionError(f"{path}, line {line}: role {role!r} must be one of {', '.join(ROLES)}.")
        try:
            setting = controls.validate_setting(record, where=f"{path}, line {line}")
        except ControlsError as error:
            raise SessionError(str(error)) from None
        seen.add(take)
        takes.append(PlannedTake(take, setting, role, own_input))  # type: ignore[arg-type]
    if not takes:
        raise SessionError(f"{path}: no takes; run 'knobcap plan {path.parent}' to write it again.")
    return takes


# ------------------------------------------------------------------------------------------ session
class Session:
    """An opened session folder (controls.toml, plan.csv and input.wav all present)."""

    def __init__(self, root: Path, controls: Controls) -> None:
        self.root = Path(root)
        self.controls = controls
        self._plan: list[PlannedTake] | None = None
        self._input: TestSignal | None = None
        self._inputs: dict[str, TestSignal] = {}

    @classmethod
    def open(cls, root: str | Path) -> Session:
        root = Path(root)
        if not root.is_dir():
            raise SessionError(f"{root}: no such session folder; create one with 'knobcap init {root}'.")
        controls_path = root / CONTROLS_FILE
        if not controls_path.is_file():
            raise SessionError(f"{controls_path}: missing; write it with 'knobcap init {root}' and "
                               f"describe the device's controls.")
        controls = load_controls(controls_path)
        for name in (PLAN_FILE, INPUT_FILE):
            if not (root / name).is_file():
                raise SessionError(f"{root / name}: missing; run 'knobcap plan {root}' first.")
        if not map_path(root / INPUT_FILE).is_file():
            raise SessionError(f"{map_path(root / INPUT_FILE)}: the segment map of input.wav is missing; "
                               f"start a new session ('knobcap init', 'knobcap plan').")
        return cls(root, controls)

    # --- paths ---------------------------------------------------------------------------------
    @property
    def plan_path(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def input_path(self) -> Path:
        return self.root / INPUT_FILE

    @property
    def takes_dir(self) -> Path:
        return self.root / TAKES_DIR

    @property
    def check_path(self) -> Path:
        return self.root / CHECK_FILE

    @property
    def runs_dir(self) -> Path:
        return self.root / RUNS_DIR

    def take_path(self, take: str) -> Path:
        return self.takes_dir / f"{take}.wav"

    # --- contents ------------------------------------------------------------------------------
    def plan(self) -> list[PlannedTake]:
        """The planned takes, in recording order."""
        if self._plan is None:
            self._plan = read_plan(self.plan_path, self.controls)
        return list(self._plan)

    def planned(self, take: str) -> PlannedTake:
        for row in self.plan():
            if row.take == take:
                return row
        raise SessionError(f"{self.plan_path}: there is no take {take!r} in the plan.")

    def training_takes(self) -> list[PlannedTake]:
        """Takes a model is trained on (roles train and anchor)."""
        return [row for row in self.plan() if row.role != "holdout"]

    def holdout_takes(self) -> list[PlannedTake]:
        """Takes never trained on: the held-out settings."""
        return [row for row in self.plan() if row.role == "holdout"]

    def recorded_takes(self) -> list[PlannedTake]:
        return [row for row in self.plan() if self.take_path(row.take).is_file()]

    def missing_takes(self) -> list[PlannedTake]:
        return [row for row in self.plan() if not self.take_path(row.take).is_file()]

    def input(self) -> TestSignal:
        """The test signal (input.wav and its map input.json)."""
        if self._input is None:
            self._input = read_signal(self.input_path)
        return self._input

    def take_input(self, take: str) -> TestSignal:
        """The signal this take was recorded with: its own input file (plan.csv's ``input``) or input.wav."""
        name = self.planned(take).input
        if not name:
            return self.input()
        if name not in self._inputs:
            try:
                signal = read_signal(self.root / name)
            except SignalError as error:
                raise SessionError(f"{error} (the input of take {take!r} in {self.plan_path})") from None
            if signal.sample_rate != self.input().sample_rate:
                raise SessionError(f"{self.root / name}: at {signal.sample_rate} Hz but input.wav is at "
                                   f"{self.input().sample_rate} Hz; a session runs at one rate.")
            self._inputs[name] = signal
        return self._inputs[name]

    def options(self):  # -> options.SessionOptions
        """The session's own choices (``session.json``: accepted findings, polarity, DC removal)."""
        from knobcap.capture.options import OptionsError, read_options

        try:
            return read_options(self.root)
        except OptionsError as error:
            raise SessionError(str(error)) from None

    def device_polarity(self):  # -> polarity.Polarity
        """The device's polarity and where it comes from (see :mod:`knobcap.capture.polarity`)."""
        from knobcap.capture.polarity import device_polarity

        return device_polarity(self.options().polarity, self.check_results())

    def time(self, costs: MoveCosts = DEFAULT_COSTS) -> SessionTime:
        signal = self.input()
        return session_time(self.controls, [r.setting for r in self.plan()],
                            signal.map.length / signal.map.sample_rate, costs)

    # --- recordings ----------------------------------------------------------------------------
    def read_take(self, take: str) -> np.ndarray:
        """The raw recording of a take (mono, at the input's rate)."""
        self.planned(take)
        path = self.take_path(take)
        if not path.is_file():
            raise SessionError(f"{path}: not recorded yet; record it at the setting in {self.plan_path} "
                               f"(or 'knobcap reamp {self.root}' with a virtual device).")
        audio, _ = read_wav(path, sample_rate=self.take_input(take).sample_rate)
        return audio

    def latency(self, take: str, recorded: np.ndarray | None = None):  # -> latency.Latency
        """The take's latency and polarity: from check.json when it has them, else calibrated now."""
        from knobcap.capture.latency import Latency, calibrate_latency

        entry = self._checked(take)
        signal = self.take_input(take)
        if entry is not None:
            method = "blips" if signal.map.blips else "xcorr"
            return Latency(int(entry["latency"]), int(entry.get("polarity", 1)), method, 0, True)
        if recorded is None:
            recorded = self.read_take(take)
        result = calibrate_latency(recorded, signal.audio, signal.map)
        if not result.confident:
            reason = result.reason or "the estimates disagree"
            raise SessionError(
                f"{self.take_path(take)}: its latency could not be measured reliably ({reason}); run "
                f"'knobcap check {self.root}' and follow its advice.")
        return result

    def aligned_take(self, take: str) -> np.ndarray:
        """The take's recording shifted by its latency, as long as its input, at the device's polarity.

        The device's polarity (:meth:`device_polarity`) is kept: only a take whose own polarity
        disagrees with it is flipped. With ``remove_dc`` (session.json) the take's mean is removed.
        """
        from dataclasses import replace

        from knobcap.capture.latency import align

        recorded = self.read_take(take)
        latency = self.latency(take, recorded)
        device = self.device_polarity().polarity  # unknown or ambiguous: each take as recorded
        device = latency.polarity if device is None else device
        out = align(recorded, replace(latency, polarity=latency.polarity * device),
                    self.take_input(take).map.length)
        if self.options().remove_dc and len(out):
            out = (out - np.mean(out, dtype=np.float64)).astype(np.float32)
        return out

    def check_results(self) -> Mapping[str, Mapping[str, object]] | None:
        """Each take's row of check.json (``knobcap check``), or ``None`` when it has not run.

        The one reader of check.json; an unreadable file is a :class:`SessionError`.
        """
        if not self.check_path.is_file():
            return None
        try:
            data = json.loads(self.check_path.read_text(encoding="utf-8"))
            takes = data["takes"]
            if not isinstance(takes, dict):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise SessionError(
                f"{self.check_path}: unreadable; run 'knobcap check {self.root}' again.") from None
        return {name: row for name, row in takes.items() if isinstance(row, dict)}

    def failed_takes(self) -> list[str]:
        """Takes whose check failed (empty when check has not run)."""
        rows = self.check_results() or {}
        return [name for name, row in rows.items() if row.get("status") == "fail"]

    def _checked(self, take: str) -> Mapping[str, object] | None:
        """The take's check row when it holds a latency."""
        try:
            entry = (self.check_results() or {}).get(take)
            if entry is None:
                return None
            int(entry["latency"])  # type: ignore[call-overload]
        except (SessionError, KeyError, TypeError, ValueError):
            return None
        return entry


# ------------------------------------------------------------------------------------------ planning
@dataclass(frozen=True)
class PlanResult:
    """What :func:`make_plan` did."""

    takes: list[PlannedTake]
    time: SessionTime
    costs: MoveCosts
    signal_seconds: float
    wrote_plan: bool
    wrote_input: bool
    recorded: int
    design: str = ""  # which design, in a sentence (design.describe_method)


def _recordings(root: Path) -> list[Path]:
    folder = root / TAKES_DIR
    return sorted(folder.glob("*.wav")) if folder.is_dir() else []


def _load_input_file(path: Path) -> TestSignal:
    audio, rate = read_wav(path)
    if rate != SAMPLE_RATE:
        raise SessionError(f"{path}: sample rate is {rate} Hz; knobcap sessions run at {SAMPLE_RATE} Hz. "
                           f"Resample the file to {SAMPLE_RATE} Hz (e.g. in your DAW) and try again.")
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        raise SessionError(f"{path}: the file is silent; choose the test signal you mean to play.")
    if peak > 1.0:
        raise SessionError(f"{path}: peaks at {peak:.2f}, above full scale; it would clip when played. "
                           "Lower its level and export it again.")
    try:
        return TestSignal(audio, custom_signal_map(audio, rate))
    except SignalError as error:
        raise SessionError(f"{path}: {error}") from None


def _same_audio(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.max(np.abs(a - b), initial=0.0) <= 2.0 ** -22)


def make_plan(root: str | Path, *, n: int | None = None, minutes: float | None = None,
              seconds: float | None = None, seed: int = 0, input_file: str | Path | None = None,
              quick: bool = False, costs: MoveCosts = DEFAULT_COSTS, method: str = "auto") -> PlanResult:
    """Choose the settings (design.py), write plan.csv and input.wav (+ input.json) into ``root``.

    ``n``: total takes; ``minutes``: a time budget instead; neither: the default size (``quick``: half
    as many space-filling settings and a 30 s signal). ``seconds``: the test signal's length (default
    90 s); ``input_file``: the user's own test signal instead, used as it is. ``method``: the design's
    (design.py): "auto" (chosen by the budget), "coverage" or "lhs".

    Safe to re-run: the same options give the same plan and nothing is rewritten. When takes/ holds
    recordings, a plan or input that differs from the one they were made with is refused.
    """
    root = Path(root)
    if n is not None and minutes is not None:
        raise SessionError("give either --n (takes) or --minutes (a time budget), not both.")
    check_method(method, "--method")  # before the signal is generated
    if n is not None:
        limits.MAX_TAKES.check(n, f"--n {n}")
    if input_file is not None and seconds is not None:
        raise SessionError("--seconds sets the length of knobcap's signal; with --input the file's own "
                           "length is used. Drop one of them.")
    controls_path = root / CONTROLS_FILE
    if not controls_path.is_file():
        raise SessionError(f"{controls_path}: missing; run 'knobcap init {root}' first and describe the "
                           f"device's controls.")
    controls = load_controls(controls_path)

    recordings = _recordings(root)
    plan_path, input_path = root / PLAN_FILE, root / INPUT_FILE
    try:
        existing = read_signal(input_path) if input_path.is_file() else None
    except SignalError:
        existing = None
    if input_file is not None:
        signal = _load_input_file(Path(input_file))
        input_changes = existing is None or not _same_audio(existing.audio, signal.audio)
    else:
        length = seconds if seconds is not None else QUICK_SECONDS if quick else DEFAULT_SECONDS
        same_kind = (existing is not None and existing.map.version is not None
                     and existing.map.length == round(length * SAMPLE_RATE))
        # knobcap's signal is deterministic for a version: an existing one of the asked length is kept
        # when takes were recorded with it (even from an older version), or when it is current.
        if existing is not None and same_kind and (recordings or existing.map.version == SIGNAL_VERSION):
            signal, input_changes = existing, False
        else:
            signal, input_changes = generate_signal(length), True
    signal_seconds = signal.map.length / signal.map.sample_rate

    if minutes is not None:
        design: Design = size_for_minutes(controls, minutes, signal_seconds, seed, costs,
                                          method=method)  # type: ignore[arg-type]
    else:
        size: DesignSize | int = n if n is not None else default_size(controls, quick)
        design = initial_design(controls, size, seed, costs, method=method)  # type: ignore[arg-type]
    takes = [PlannedTake(take_name(i + 1), p.setting, p.role) for i, p in enumerate(design.points)]
    text = plan_csv_text(controls, takes)

    start_over = (f"To record a different plan, start a new session: 'knobcap init NEWDIR' (copy "
                  f"{CONTROLS_FILE}) and 'knobcap plan NEWDIR'.")
    old_text, old_rows = None, None
    if plan_path.is_file():
        try:
            old_rows = read_plan(plan_path, controls)
            old_text = plan_csv_text(controls, old_rows)
        except SessionError:
            old_text = plan_path.read_text(encoding="utf-8", errors="replace")
    plan_changes = old_text != text
    if plan_changes and old_rows is not None and _designed_then_added(old_rows, controls, takes):
        # the designed plan, less rows removed (a setting where the device is silent), followed by rows
        # added later ('knobcap plan --more'): keep it as it is
        takes, plan_changes = old_rows, False
    input_exists = input_path.is_file() or map_path(input_path).is_file()
    if recordings and plan_changes:
        raise SessionError(
            f"{root / TAKES_DIR} already holds {len(recordings)} recording(s) made for {plan_path}; a new "
            f"plan would change the settings they were recorded at, so knobcap keeps the plan as it is. "
            f"Re-run 'knobcap plan' with the options used before (same --seed, size and --method) to see it. "
            + start_over)
    if recordings and input_changes:
        raise SessionError(
            f"{root / TAKES_DIR} already holds {len(recordings)} recording(s) made with {input_path}; a "
            f"different test signal would invalidate them, so knobcap keeps input.wav. " + start_over)

    wrote_input = False
    if input_changes:
        if input_exists:  # no recordings depend on it (checked above): replace knobcap's own files
            input_path.unlink(missing_ok=True)
            map_path(input_path).unlink(missing_ok=True)
        write_signal(input_path, signal)
        wrote_input = True
    if plan_changes:
        write_text_atomic(plan_path, text)
    (root / TAKES_DIR).mkdir(exist_ok=True)
    time = session_time(controls, [t.setting for t in takes], signal_seconds, costs)
    return PlanResult(takes, time, costs, signal_seconds, plan_changes, wrote_input, len(recordings),
                      describe_method(design, forced=method != "auto"))


# ------------------------------------------------------------------------------------------ init
CONTROLS_TEMPLATE = """\
# knobcap controls: describe every knob and switch of the device you capture.
#
# [[knob]]   name    a short name (letters, digits, '_' or '-')
#            min/max the dial's range in its own units (default 0 and 10)
#            taper   "linear" (default), "audio" (an A-taper pot: most of the change is near the top,
#                    typical of drive/gain), or "log" (a value spanning decades, e.g. a frequency in Hz;
#                    needs min > 0)
#            default optional: the value knobcap uses when none is given
#            unit    optional, e.g. "Hz" or "dB"
# [[switch]] name and positions = ["a", "b", ...] (two or more), in the order printed on the device
#
# Leave out a knob that only sets the output volume after the distortion (a "level" knob): fix it
# where you like it and record all takes there; a model applies volume digitally.
#
# Then run: knobcap screen {root}   (optional: measures where each knob changes the sound)
#      and:  knobcap plan {root}

name = "My Pedal"

[[knob]]
name = "drive"
taper = "audio"

[[knob]]
name = "tone"

# [[switch]]
# name = "mode"
# positions = ["a", "b"]
"""


def check_new_session(root: str | Path) -> None:
    """Refuse a folder that is a file or already holds a controls.toml (before any slow work)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise SessionError(f"{root}: exists and is not a folder; choose another name.")
    controls_path = root / CONTROLS_FILE
    if controls_path.exists():
        raise SessionError(f"{controls_path} already exists; knobcap never overwrites it. Edit it, or "
                           f"choose a new folder.")


def init_session(root: str | Path, controls: Controls | None = None, device_name: str | None = None) -> Path:
    """Create a session folder with controls.toml (the commented template, or ``controls``).

    Knobs of ``controls`` that carry a warp (measured by screening a virtual device) get a ``warp``
    line, and the header says where the warps came from and how to remove them.
    """
    root = Path(root)
    check_new_session(root)
    if controls is None:
        text = CONTROLS_TEMPLATE.format(root=root)
    else:
        text = _controls_text(root, controls, device_name)
    root.mkdir(parents=True, exist_ok=True)
    controls_path = root / CONTROLS_FILE
    write_text_atomic(controls_path, text)
    (root / TAKES_DIR).mkdir(exist_ok=True)
    return controls_path


def _controls_text(root: Path, controls: Controls, device_name: str | None) -> str:
    origin = (f"the LV2 plugin {device_name[4:]}" if device_name and device_name.lower().startswith("lv2:")
              else f"the virtual device {device_name!r}" if device_name else "a device")
    header = f"# knobcap controls, copied from {origin}. Values are in each knob's own units.\n"
    if any(k.warp is not None for k in controls.knobs):
        header += ("# The 'warp' lines were measured by screening the device (as 'knobcap screen' does for a "
                   "real one):\n# u at equally spaced turns of the dial, so that equal steps of u are equal "
                   "steps of sound.\n# Delete a knob's warp line to use its taper instead ('knobcap init "
                   "--no-screen' writes none).\n")
    gains = [k.name for k in controls.knobs if k.gain_db is not None]
    if gains:
        names = ", ".join(repr(g) for g in gains)
        header += (f"# {names}: an exact output gain (screening found the output a scaled copy at every "
                   "turn).\n# Its 'gain_db' line (dB at equally spaced turns) is applied to the model's "
                   "output, so the model\n# never learns it and plans hold it at its default. Delete the "
                   "line to capture it as a knob.\n")
    return controls_to_toml(controls, header + f"# Then run: knobcap plan {root}\n\n")
