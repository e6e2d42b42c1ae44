"""Checking a session's recordings before training: ``knobcap check DIR``.

Takes are only read, never modified; the result goes to ``DIR/check.json`` (written atomically)::

    {"format": "knobcap-check", "version": 1, "ok": bool,
     "input": {"sample_rate", "length", "signal_version", "custom"},
     "takes": {take: {"status": "ok" | "warn" | "fail", "role", "setting", "latency" (samples, or null
                      when it could not be measured), "polarity", "method", "confident", "disagreement",
                      "latency_ms", "peak_dbfs", "noise_floor_dbfs", "snr_db", "dc_offset", "drift_esr",
                      "sample_rate", "channels", "length", "problems": [{"code", "severity", "message"}]}},
     "problems": [...]}   # about the session as a whole (e.g. extra takes)

What is checked, with the thresholds (``fail`` makes ``knobcap check`` exit non-zero):

=============  ==========================================================================  ========
code           condition                                                                   severity
=============  ==========================================================================  ========
missing        a take of plan.csv has no ``takes/<take>.wav``                              fail
extra          a WAV in takes/ is not in plan.csv (session-level; it is ignored)           warn
unreadable     the file is not audio soundfile can read                                    fail
sample_rate    the take's rate differs from input.wav's (nothing else is checked then)     fail
stereo         more than one channel (the first is checked)                                fail
not_finite     NaN or infinite samples (nothing else is checked then)                      fail
too_short      fewer samples than input.wav                                                fail
too_long       more than 1 s longer than input.wav                                         warn
silent         peak below -70 dBFS                                                         fail
clipped        integer WAV: peak at or above -0.01 dBFS (0.999); float WAV: also flat tops,  fail
               ``CLIP_RUN`` samples in a row stuck at that peak (a float take can exceed 1.0)
hot            a float WAV peaking at or above -0.01 dBFS without flat tops                warn
latency        the blips (or, without blips, the cross-correlation) give no confident     fail
               latency within 0.5 s (see knobcap.capture.latency)
dead           the playing section is less than 10 dB above the noise floor                fail
noise          noise floor above -50 dBFS rms, or less than 30 dB below the playing's rms   warn
dc_offset      |mean| above 0.01 (-40 dBFS)                                                warn
drift          ESR between the two validation copies above 0.01 (as NAM)                   fail
polarity       takes disagree on the device's polarity (session-level; a tie: train       warn
               refuses until it is declared, see knobcap.capture.polarity)
=============  ==========================================================================  ========

A ``fail`` a user accepted for a take (``--accept clipped:take03``, kept in session.json; only the
codes of :data:`knobcap.capture.options.ACCEPTABLE`) is reported as a ``warn``.

The noise floor is the rms of the recording over the input's leading silence (after the latency,
leaving out its first 0.1 s and last 10 ms); signals without one (custom inputs) skip it, and those
without ``validation_1`` skip the drift check. ESR = sum((v2 - v1)^2) / sum(v1^2) over the aligned
validation copies; noise alone adds about twice the floor's power over the validation's power.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import soundfile as sf

from knobcap.capture.latency import Latency, align, calibrate_latency
from knobcap.capture.testsignal import SignalMap, TestSignal
from knobcap.controls import setting_label
from knobcap.fileio import write_json_atomic
from knobcap.metrics import esr

CHECK_FORMAT = "knobcap-check"
CHECK_VERSION = 1
MAX_LATENCY_SECONDS = 0.5
CLIP_LEVEL = 0.999            # -0.01 dBFS
CLIP_RUN = 3                  # samples in a row stuck at a float take's peak: a flat top, so clipping
SILENT_DBFS = -70.0
DEAD_SNR_DB = 10.0
NOISE_FLOOR_DBFS = -50.0
NOISE_SNR_DB = 30.0
DC_LIMIT = 0.01
DRIFT_ESR = 0.01
TOO_LONG_SECONDS = 1.0
_FLOOR_DBFS = -150.0          # what an all-zero (digital) floor reads as

Severity = Literal["warn", "fail"]
Status = Literal["ok", "warn", "fail"]


class _SessionLike(Protocol):
    root: Path
    check_path: Path
    takes_dir: Path

    def plan(self) -> list: ...
    def input(self) -> TestSignal: ...
    def take_path(self, take: str) -> Path: ...


@dataclass(frozen=True)
class Problem:
    """One finding: a code, how bad it is, a one-line summary and the full message (what to do)."""

    code: str
    severity: Severity
    message: str
    short: str = ""

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message, "short": self.short}


@dataclass
class TakeCheck:
    """Everything measured about one take, and its problems."""

    take: str
    role: str = ""
    setting: dict = field(default_factory=dict)
    path: str = ""
    sample_rate: int | None = None
    channels: int | None = None
    length: int | None = None
    latency: Latency | None = None
    peak_dbfs: float | None = None
    noise_floor_dbfs: float | None = None
    snr_db: float | None = None
    dc_offset: float | None = None
    drift_esr: float | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def status(self) -> Status:
        severities = {p.severity for p in self.problems}
        return "fail" if "fail" in severities else "warn" if "warn" in severities else "ok"

    def latency_ms(self, sample_rate: int) -> float | None:
        return None if self.latency is None else self.latency.milliseconds(sample_rate)

    def to_dict(self, sample_rate: int) -> dict:
        lat = self.latency
        usable = lat is not None and lat.confident
        return {
            "status": self.status, "role": self.role, "setting": self.setting,
            "latency": lat.samples if usable else None,
            "polarity": lat.polarity if usable else None,
            "method": lat.method if lat is not None else None,
            "confident": bool(lat.confident) if lat is not None else False,
            "disagreement": lat.disagreement if lat is not None else None,
            "latency_ms": _finite(lat.milliseconds(sample_rate)) if usable else None,
            "peak_dbfs": _finite(self.peak_dbfs), "noise_floor_dbfs": _finite(self.noise_floor_dbfs),
            "snr_db": _finite(self.snr_db), "dc_offset": _finite(self.dc_offset),
            "drift_esr": _finite(self.drift_esr), "sample_rate": self.sample_rate,
            "channels": self.channels, "length": self.length,
            "problems": [p.to_dict() for p in self.problems],
        }


@dataclass
class CheckReport:
    """The check of a whole session: one :class:`TakeCheck` a planned take, plus session-level problems."""

    root: Path
    signal_map: SignalMap
    takes: list[TakeCheck]
    problems: list[Problem] = field(default_factory=list)
    polarity: dict = field(default_factory=dict)  # the device's (knobcap.capture.polarity)

    @property
    def ok(self) -> bool:
        return all(t.status != "fail" for t in self.takes) and all(
            p.severity != "fail" for p in self.problems)

    def to_dict(self) -> dict:
        m = self.signal_map
        return {"format": CHECK_FORMAT, "version": CHECK_VERSION, "ok": self.ok,
                "input": {"sample_rate": m.sample_rate, "length": m.length, "signal_version": m.version,
                          "custom": not m.blips},
                "takes": {t.take: t.to_dict(m.sample_rate) for t in self.takes},
                "problems": [p.to_dict() for p in self.problems], "polarity": self.polarity}


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _dbfs(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else _FLOOR_DBFS


def _rms(x: np.ndarray) -> float:
    """Root mean square of the signal's AC part (a DC offset is reported on its own)."""
    return float(np.std(x, dtype=np.float64)) if len(x) else 0.0


# ------------------------------------------------------------------------------------------ one take
def check_take(path: str | Path, signal: TestSignal, *, take: str | None = None, role: str = "",
               setting: Mapping[str, object] | None = None) -> TakeCheck:
    """Check one recording against the test signal it was made with (the file is only read)."""
    path = Path(path)
    name = take or path.stem
    result = TakeCheck(name, role, dict(setting or {}), str(path))
    m = signal.map
    problems = result.problems
    if not path.is_file():
        problems.append(Problem(
            "missing", "fail",
            f"{path} is missing: play input.wav through the device at this take's setting"
            f"{_setting_text(setting)} and save the recording there (or run 'knobcap reamp' with a "
            f"virtual device).", "not recorded"))
        return result
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        problems.append(Problem("unreadable", "fail", f"{path} is not a readable audio file ({error}); "
                                f"export the recording as WAV and save it again.", "unreadable"))
        return result
    result.sample_rate, result.channels, result.length = int(rate), int(audio.shape[1]), int(audio.shape[0])
    if rate != m.sample_rate:
        problems.append(Problem(
            "sample_rate", "fail",
            f"{path} is at {rate} Hz but input.wav is at {m.sample_rate} Hz. Set the interface and the "
            f"DAW project to {m.sample_rate} Hz and record it again (resampling a finished take also "
            f"resamples the latency and is not done for you).", f"{rate} Hz, not {m.sample_rate}"))
        return result
    if audio.shape[1] != 1:
        problems.append(Problem(
            "stereo", "fail",
            f"{path} has {audio.shape[1]} channels but a take is mono. Export only the channel the device "
            f"was recorded on (the first was checked here).", f"{audio.shape[1]} channels"))
    recorded = audio[:, 0]
    if not np.all(np.isfinite(recorded)):
        problems.append(Problem(
            "not_finite", "fail",
            f"{path} contains NaN or infinite samples (a broken float export or plug-in). Export the "
            f"recording again, as 24-bit PCM if the problem stays.", "NaN samples"))
        return result
    _check_length(result, path, len(recorded), m)
    _check_levels(result, path, recorded, _is_float(path))
    if any(p.code == "silent" for p in problems):
        return result
    latency = calibrate_latency(recorded, signal.audio, m, MAX_LATENCY_SECONDS)
    result.latency = latency
    if not latency.confident:
        blip_advice = ("Record input.wav from its very start (the blips are in its first 3 s), switch off "
                       "any noise gate, and keep the interface's latency under 0.5 s"
                       if m.blips else "Make sure the take is a recording of input.wav through the device")
        problems.append(Problem(
            "latency", "fail",
            f"{path}: the latency could not be measured: {latency.reason}. {blip_advice}; then record the "
            f"take again.", "latency unknown"))
    aligned = align(recorded, latency if latency.confident else Latency(0, 1, latency.method, 0, False),
                    m.length)
    _check_noise(result, path, aligned, m)
    if latency.confident:
        _check_drift(result, path, aligned, m, len(recorded) - latency.samples)
    return result


def _setting_text(setting: Mapping[str, object] | None) -> str:
    return f" ({setting_label(setting, digits=6)})" if setting else ""


def _check_length(result: TakeCheck, path: Path, n: int, m: SignalMap) -> None:
    if n < m.length:
        short = (m.length - n) / m.sample_rate
        result.problems.append(Problem(
            "too_short", "fail",
            f"{path} is {short:.2f} s shorter than input.wav: the recording stopped early or its start was "
            f"cut. Record the whole of input.wav and keep recording a second after it ends.",
            f"{short:.2f} s too short"))
    elif n > m.length + TOO_LONG_SECONDS * m.sample_rate:
        extra = (n - m.length) / m.sample_rate
        result.problems.append(Problem(
            "too_long", "warn",
            f"{path} is {extra:.1f} s longer than input.wav (more than {TOO_LONG_SECONDS:g} s). The end is "
            f"ignored, but check that it is the right file and that the recording did not start early; "
            f"trim it to input.wav's length plus a second.", f"{extra:.1f} s too long"))


def _is_float(path: Path) -> bool:
    """Whether the file stores floating-point samples (which may exceed full scale unclipped)."""
    return sf.info(str(path)).subtype in ("FLOAT", "DOUBLE")


def _flat_top(recorded: np.ndarray, peak: float) -> int:
    """The longest run of consecutive samples whose magnitude equals ``peak`` (a flat top)."""
    at_peak = (np.abs(recorded) >= peak).astype(np.int8)
    if not at_peak.any():
        return 0
    edges = np.diff(np.concatenate([[0], at_peak, [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _check_levels(result: TakeCheck, path: Path, recorded: np.ndarray, is_float: bool = False) -> None:
    peak = float(np.max(np.abs(recorded))) if len(recorded) else 0.0
    result.peak_dbfs = _dbfs(peak)
    result.dc_offset = float(np.mean(recorded, dtype=np.float64)) if len(recorded) else 0.0
    if result.peak_dbfs < SILENT_DBFS:
        result.problems.append(Problem(
            "silent", "fail",
            f"{path} is silent (peak {result.peak_dbfs:.0f} dBFS): nothing reached the interface. Check "
            f"that the device is on, the cables and the input the DAW records from, then record again. "
            f"{SILENT_SETTING_ADVICE}", "silent"))
        return
    flat = _flat_top(recorded, peak) if peak >= CLIP_LEVEL else 0
    if peak >= CLIP_LEVEL and is_float and flat < CLIP_RUN:
        result.problems.append(Problem(
            "hot", "warn",
            f"{path} peaks at {result.peak_dbfs:+.2f} dBFS, above full scale, but it is a float WAV with no "
            f"flat tops (at most {flat} sample(s) in a row at the peak), so nothing clipped. The model "
            f"learns this level; played through a fixed-point output it would clip: lower the device's "
            f"output level if that matters.", f"peak {result.peak_dbfs:+.1f} dBFS, float, not clipped"))
    elif peak >= CLIP_LEVEL:
        tops = f", {flat} samples in a row stuck at the peak" if flat >= CLIP_RUN else ""
        result.problems.append(Problem(
            "clipped", "fail",
            f"{path} clips (peak {result.peak_dbfs:+.2f} dBFS{tops}): a model would learn the clipping. "
            f"Lower the interface's input gain (or the device's output level, the same for every take) and "
            f"record it again; if you cannot, accept it: 'knobcap check DIR --accept clipped:{path.stem}'.",
            "clipped"))
    if abs(result.dc_offset) > DC_LIMIT:
        result.problems.append(Problem(
            "dc_offset", "warn",
            f"{path} has a DC offset of {result.dc_offset:+.3f} (more than {DC_LIMIT:g}): the interface or "
            f"the device leaks DC. Use an AC-coupled input (not a DC-coupled/CV input) and record again, "
            f"or the model wastes capacity on it.", f"DC {result.dc_offset:+.3f}"))


SILENT_SETTING_ADVICE = ("If the device really makes no sound at this setting (its level or tone controls "
                         "all the way down), remove the take's row from plan.csv instead: a silent take "
                         "teaches a model nothing.")
SILENT_CODES = ("silent", "dead")  # a take with no sound of the device in it


def only_silence(codes: set[str]) -> bool:
    """Whether a take's failure codes are silence and what silence brings (no latency, no drift to
    read): the device made no sound, nothing else is wrong."""
    return bool(codes & set(SILENT_CODES)) and codes <= {*SILENT_CODES, "latency", "drift"}


def _check_noise(result: TakeCheck, path: Path, aligned: np.ndarray, m: SignalMap) -> None:
    """Noise floor on the leading silence, signal level on the playing section, both after alignment."""
    play = m.segment("playing")
    signal_rms = _rms(aligned[play.start:play.stop])
    if not m.has("silence"):
        return
    silence = m.segment("silence")
    start = silence.start + round(0.1 * m.sample_rate)
    stop = silence.stop - round(0.01 * m.sample_rate)
    floor = _rms(aligned[start:stop])
    result.noise_floor_dbfs = _dbfs(floor)
    snr = _dbfs(signal_rms) - result.noise_floor_dbfs
    result.snr_db = snr
    if snr < DEAD_SNR_DB:
        result.problems.append(Problem(
            "dead", "fail",
            f"{path} barely responds to the input: while input.wav plays, the level is only {snr:.0f} dB "
            f"above the noise when it is silent. The device may be off or bypassed into nothing, a cable "
            f"unplugged, or the wrong input recorded; fix it and record again. {SILENT_SETTING_ADVICE}",
            "dead take"))
    elif result.noise_floor_dbfs > NOISE_FLOOR_DBFS or snr < NOISE_SNR_DB:
        result.problems.append(Problem(
            "noise", "warn",
            f"{path} has a high noise floor: {result.noise_floor_dbfs:.0f} dBFS rms, {snr:.0f} dB below the "
            f"playing (want below {NOISE_FLOOR_DBFS:.0f} dBFS and at least {NOISE_SNR_DB:.0f} dB). Look for "
            f"hum (ground loops, a power supply, a single-coil near the rig) or hiss from too little "
            f"gain before the interface; a model learns the noise as part of the sound.",
            f"noise {result.noise_floor_dbfs:.0f} dBFS"))


def _check_drift(result: TakeCheck, path: Path, aligned: np.ndarray, m: SignalMap, recorded: int) -> None:
    """ESR between the aligned copies of the validation segment at the start and at the end.

    Only the part of ``validation_2`` the take covers (``recorded`` aligned samples) is compared. Noise
    of rms ``s`` adds about ``2 s^2 N / sum(v1^2)`` to the ESR; when that explains most of the drift the
    message says so.
    """
    if not m.has("validation_1"):
        return
    v1, v2 = m.segment("validation_1"), m.segment("validation_2")
    n = min(v1.length, v2.length, recorded - v2.start)
    if n < m.sample_rate // 2:
        return
    a = aligned[v1.start:v1.start + n].astype(np.float64)
    b = aligned[v2.start:v2.start + n].astype(np.float64)
    energy = float(np.dot(a, a))
    if energy <= 0:
        return
    result.drift_esr = esr(b, a)
    if result.drift_esr <= DRIFT_ESR:
        return
    floor = 10 ** (result.noise_floor_dbfs / 20) if result.noise_floor_dbfs is not None else 0.0
    noise_esr = 2 * floor ** 2 * n / energy
    if noise_esr > 0.5 * result.drift_esr:
        causes = (f"The noise floor alone accounts for an ESR of about {noise_esr:.3f}: lower the noise "
                  f"(see the noise floor) or raise the level reaching the interface, then record again.")
    else:
        causes = ("Likely causes: a knob or switch moved during the take, hum or noise, a time-based effect "
                  "(delay, reverb, modulation: switch it off), or a tube amp not yet warmed up (give it 20 "
                  "minutes). Fix it and record again.")
    result.problems.append(Problem(
        "drift", "fail",
        f"{path}: the device sounds different at the end than at the start (ESR {result.drift_esr:.3f} "
        f"between the two validation copies, more than {DRIFT_ESR:g}). {causes}",
        f"drift ESR {result.drift_esr:.3f}"))


# ------------------------------------------------------------------------------------------ session
def check_session(session: _SessionLike, *, write: bool = True,
                  progress: Callable[[str, int, int], None] | None = None) -> CheckReport:
    """Check every planned take of ``session`` (a :class:`knobcap.capture.session.Session`); write check.json.

    ``progress(take, index, count)`` is called before each take.
    """
    signal = session.input()
    plan = session.plan()
    options = session.options() if hasattr(session, "options") else None
    takes: list[TakeCheck] = []
    for index, row in enumerate(plan):
        if progress is not None:
            progress(row.take, index, len(plan))
        own = session.take_input(row.take) if hasattr(session, "take_input") else signal
        result = check_take(session.take_path(row.take), own, take=row.take, role=row.role,
                            setting=row.setting)
        if options is not None:
            result.problems[:] = [_as_chosen(p, row.take, options) for p in result.problems]
        takes.append(result)
    problems: list[Problem] = []
    planned = {row.take for row in plan}
    folder = session.takes_dir
    extra = sorted(p for p in folder.glob("*.wav") if p.stem not in planned) if folder.is_dir() else []
    for p in extra:
        problems.append(Problem(
            "extra", "warn",
            f"{p} is not a take of plan.csv, so it is ignored. Remove or rename it if it is a mistake "
            f"(a take's file is takes/<take>.wav, e.g. takes/{plan[0].take}.wav).", f"extra {p.name}"))
    report = CheckReport(Path(session.root), signal.map, takes, problems)
    _check_polarity(report, options.polarity if options is not None else None)
    if write:
        write_json_atomic(session.check_path, report.to_dict())
    return report


def _as_chosen(problem: Problem, take: str, options: object) -> Problem:
    """A finding the user accepted for this take (session.json) is a warning; DC advice for imports."""
    if problem.code == "dc_offset" and getattr(options, "remove_dc", False):
        first = problem.message.split(":")[0]
        return Problem(problem.code, "warn", f"{first}: knobcap removes it (the take's mean) before "
                       "training and evaluation, so the model will not reproduce it.", problem.short)
    if problem.severity == "fail" and options.is_accepted(take, problem.code):  # type: ignore[attr-defined]
        return Problem(problem.code, "warn", f"{problem.message} Accepted for {take} in session.json: "
                       "it is trained on as it is.", f"{problem.short} (accepted)")
    return problem


def _check_polarity(report: CheckReport, declared: int | None) -> None:
    """The device's polarity over all takes; takes that disagree are named, a tie fails."""
    from knobcap.capture.polarity import DECLARE, device_polarity

    rows = {t.take: {"polarity": t.latency.polarity} for t in report.takes
            if t.latency is not None and t.latency.confident}
    result = device_polarity(declared, rows)
    report.polarity = result.to_dict()
    declare = DECLARE.format(root=report.root)
    if result.ambiguous:
        report.problems.append(Problem(
            "polarity", "warn", f"{report.root}: the takes disagree on the device's polarity "
            f"({result.source}); train refuses until you {declare}.", "polarity ambiguous"))
    elif result.disagree:
        report.problems.append(Problem(
            "polarity", "warn", f"{report.root}: {', '.join(result.disagree)} read with the opposite "
            f"polarity to the device ({result.word}, {result.source}); they are flipped as if wired the "
            f"other way round. If the device really changes polarity, {declare} per session.",
            f"polarity: {len(result.disagree)} take(s) flipped"))
