"""``knobcap import DIR``: a session made from recordings that already exist.

The user brings an input (DI) file and takes at known settings, as a CSV (``file``, one column a
control, optional ``role`` train/holdout/anchor, optional ``input``: the take's own DI file; paths
relative to the CSV) or as ``--take "FILE drive=3 tone=5"`` items. The controls come from a
``controls.toml`` or are inferred from the values (a numeric column: a knob over the observed range;
text: a switch with the observed positions, in order of appearance).

The session keeps the recordings' own rate. ``rate`` resamples every file once, with a polyphase
filter (:func:`scipy.signal.resample_poly`, Kaiser window, beta 5). Files are copied (WAV) or
converted (other formats, or when resampling) into the new folder, never moved or modified; the
folder is assembled beside ``DIR`` and renamed into place only when complete.

Each input gets a signal map (input.json): ``playing`` then ``validation_2`` (held-out time: the last
``holdout_seconds``, or ``holdout_fraction`` of it, default as ``plan --input``: the last 9 s, or 10 %
under 90 s). Clips (``clips``: seconds each, or a list of start times) are independent recordings that
each start from rest; ``skip`` seconds at the start of each are never scored, and the held-out time
is rounded up to whole clips. Imported sessions remove each take's DC before training.
"""

from __future__ import annotations

import csv
import math
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import soundfile as sf

from knobcap.capture.design import ROLES
from knobcap.capture.options import SessionOptions, write_options
from knobcap.capture.session import (
    INPUT_FILE,
    PLAN_FILE,
    TAKES_DIR,
    PlannedTake,
    SessionError,
    plan_csv_text,
    take_name,
)
from knobcap.capture.testsignal import Segment, SignalMap, map_path
from knobcap.controls import (
    CONTROLS_FILE,
    Controls,
    ControlsError,
    Knob,
    Switch,
    controls_to_toml,
    load_controls,
)
from knobcap.fileio import write_json_atomic, write_text_atomic, write_wav_atomic
from knobcap.limits import MAX_TAKES

INPUTS_DIR = "inputs"
RESAMPLER = "scipy.signal.resample_poly (polyphase FIR, Kaiser window beta 5.0)"
_RESERVED = {"file", "role", "input", "take"}


class ImportRefusedError(SessionError):
    """An import cannot be made; the message names the file or option and what to do."""


_Refused = ImportRefusedError


@dataclass
class TakeSpec:
    """One recording to import: its file, its setting (as written), role and own input (if any)."""

    file: Path
    setting: dict[str, str]
    role: str = "train"
    input: Path | None = None
    where: str = ""


@dataclass
class ImportResult:
    root: Path
    controls: Controls
    controls_source: str              # "given" (a controls.toml) or "inferred"
    takes: list[PlannedTake]
    sample_rate: int
    resampled_from: list[int] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    clips: int = 0
    holdout_seconds: float = 0.0


# ------------------------------------------------------------------------------------------ reading
def read_takes_csv(path: str | Path) -> list[TakeSpec]:
    """The takes of a CSV: ``file``, one column a control, optional ``role`` and ``input``."""
    path = Path(path)
    if not path.is_file():
        raise _Refused(f"{path}: no such CSV file; give the list of takes (file, controls..., role).")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [r for r in csv.reader(handle) if any(c.strip() for c in r)]
    if not rows:
        raise _Refused(f"{path}: empty; write a header (file,<controls>,role) and one row a take.")
    header = [h.strip() for h in rows[0]]
    if "file" not in header:
        raise _Refused(f"{path}: the header needs a 'file' column (got {','.join(header)}).")
    if len(set(header)) != len(header):
        raise _Refused(f"{path}: a column is named twice in the header.")
    controls = [h for h in header if h not in _RESERVED]
    if not controls:
        raise _Refused(f"{path}: no control columns; add one column a knob or switch (e.g. drive).")
    specs = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise _Refused(f"{path}, line {line}: {len(row)} values but {len(header)} columns.")
        record = {h: c.strip() for h, c in zip(header, row, strict=True)}
        own = record.get("input", "")
        specs.append(TakeSpec(path.parent / record["file"], {c: record[c] for c in controls},
                              record.get("role") or "train", path.parent / own if own else None,
                              f"{path}, line {line}"))
    return specs


def parse_take(text: str, base: Path | None = None) -> TakeSpec:
    """``"FILE drive=3 tone=5 [role=holdout] [input=DI.wav]"`` (one ``--take`` option)."""
    parts = shlex.split(text)
    where = f"--take {text!r}"
    if not parts or "=" in parts[0]:
        raise _Refused(f"{where}: start with the file, then name=value for each control.")
    values: dict[str, str] = {}
    for item in parts[1:]:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise _Refused(f"{where}: {item!r} is not name=value.")
        if name in values:
            raise _Refused(f"{where}: {name!r} is given twice.")
        values[name] = value
    base = base or Path.cwd()
    own = values.pop("input", None)
    role = values.pop("role", "train")
    if not values:
        raise _Refused(f"{where}: no control values; add name=value for each control.")
    return TakeSpec(base / parts[0], values, role, base / own if own else None, where)


def infer_controls(specs: Sequence[TakeSpec]) -> Controls:
    """Controls from the values: numeric -> a knob over the observed range, text -> a switch."""
    names = list(specs[0].setting)
    knobs, switches = [], []
    for name in names:
        raw = [s.setting[name] for s in specs]
        numbers = [_number(v) for v in raw]
        if all(n is not None for n in numbers):
            low, high = min(numbers), max(numbers)  # type: ignore[type-var]
            if low == high:
                raise _Refused(f"control {name!r} is {raw[0]} in every take, so nothing can be learned "
                                   "about it; drop the column, or give --controls with its range.")
            knobs.append(Knob(name, float(low), float(high)))  # type: ignore[arg-type]
        else:
            positions = list(dict.fromkeys(raw))
            if len(positions) < 2:
                raise _Refused(f"switch {name!r} is {raw[0]!r} in every take; drop the column, or give "
                                   "--controls with its positions.")
            switches.append(Switch(name, tuple(positions)))
    try:
        return Controls(tuple(knobs), tuple(switches), "imported")
    except ControlsError as error:
        raise _Refused(f"the controls inferred from the takes are not valid: {error}") from None


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


# ------------------------------------------------------------------------------------------ maps
def parse_clips(text: str | None) -> float | list[float] | None:
    """``--clips``: ``0.5`` (seconds each) or ``0,0.5,1.2`` (start times in seconds)."""
    if text is None:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise _Refused(f"--clips {text!r}: give seconds each (0.5) or start times (0,0.5,1.2).") from None
    return values[0] if len(values) == 1 and "," not in text else values


def clip_starts(n: int, rate: int, clips: float | Sequence[float] | None, where: str) -> tuple[int, ...]:
    """Clip starts in samples: ``clips`` seconds each (must divide the length) or a list of starts."""
    if clips is None:
        return ()
    if isinstance(clips, int | float):
        size = clips * rate
        if clips <= 0 or abs(size - round(size)) > 1e-6:
            raise _Refused(f"--clips {clips:g}: a clip must be a positive whole number of samples at "
                               f"{rate} Hz ({size:g} samples).")
        size = round(size)
        if n % size:
            raise _Refused(f"{where}: {n} samples is not a whole number of {clips:g} s clips "
                               f"({n / size:.2f} clips); check --clips or trim the file.")
        return tuple(range(0, n, size))
    starts = [round(float(t) * rate) for t in clips]
    if not starts or starts[0] != 0 or any(b <= a for a, b in pairwise(starts)) \
            or starts[-1] >= n:
        raise _Refused(f"--clips: clip starts must begin at 0, increase, and lie inside {where} "
                           f"({n / rate:.2f} s).")
    return tuple(starts)


def import_signal_map(n: int, rate: int, *, clips: tuple[int, ...] = (), skip: int = 0,
                      holdout_seconds: float | None = None, holdout_fraction: float | None = None,
                      where: str = "the input") -> SignalMap:
    """``playing`` then ``validation_2`` (held-out time, whole clips when there are clips)."""
    if holdout_seconds is not None and holdout_fraction is not None:
        raise _Refused("give --holdout-seconds or --holdout-fraction, not both.")
    if holdout_fraction is not None and not 0 < holdout_fraction < 1:
        raise _Refused(f"--holdout-fraction {holdout_fraction:g}: must lie between 0 and 1.")
    if holdout_seconds is not None and holdout_seconds <= 0:
        raise _Refused(f"--holdout-seconds {holdout_seconds:g}: must be positive.")
    if holdout_seconds is not None:
        tail = round(holdout_seconds * rate)
    elif holdout_fraction is not None:
        tail = round(holdout_fraction * n)
    else:
        tail = 9 * rate if n >= 90 * rate else n // 10
    spans = list(zip(clips, [*clips[1:], n], strict=True)) if clips else []
    if spans:
        if skip >= min(b - a for a, b in spans):
            raise _Refused(f"--skip {skip / rate:g} s is as long as a clip of {where}; skip less.")
        held = 1  # whole clips from the end, until they cover the held-out time
        while held < len(spans) and n - spans[len(spans) - held][0] < tail:
            held += 1
        start = spans[len(spans) - held][0] if held < len(spans) else 0
        if held >= len(spans):
            raise _Refused(f"{where}: the held-out time ({tail / rate:g} s) takes every clip; hold out "
                               "less (--holdout-seconds) so that some clips are left to train on.")
    else:
        start = n - tail
        if skip and skip >= start:
            raise _Refused(f"--skip {skip / rate:g} s leaves nothing of {where} to train on.")
    if not 0 < start < n:
        raise _Refused(f"{where}: the held-out time ({tail / rate:g} s of {n / rate:g} s) leaves "
                                 "nothing to train or to validate on; change --holdout-seconds.")
    starts = clips or ((0,) if skip else ())
    return SignalMap(rate, n, None, (Segment("playing", 0, start), Segment("validation_2", start, n)),
                     (), starts, skip)


# ------------------------------------------------------------------------------------------ import
def import_session(root: str | Path, takes: Sequence[TakeSpec], *, input_file: str | Path | None = None,
                   controls_file: str | Path | None = None, rate: int | None = None,
                   clips: float | Sequence[float] | None = None, skip: float = 0.0,
                   holdout_seconds: float | None = None,
                   holdout_fraction: float | None = None) -> ImportResult:
    """Make session ``root`` from existing recordings (see the module docstring)."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise _Refused(f"{root}: exists and is not an empty folder; import into a new folder.")
    if not takes:
        raise _Refused("no takes: give --csv FILE or one --take \"FILE name=value ...\" per take.")
    MAX_TAKES.check(len(takes), "knobcap import")
    if skip < 0:
        raise _Refused(f"--skip {skip:g}: must be zero or positive.")
    controls, source = _controls(takes, controls_file)
    settings = []
    for spec in takes:
        if spec.role not in ROLES:
            raise _Refused(f"{spec.where}: role {spec.role!r} must be one of {', '.join(ROLES)}.")
        try:
            settings.append(controls.validate_setting(spec.setting, where=spec.where))
        except ControlsError as error:
            raise _Refused(str(error)) from None
    if not any(s.role != "holdout" for s in takes):
        raise _Refused("every take is held out; give at least one take role train.")
    inputs = _inputs(takes, input_file)
    for path in [*inputs, *(s.file for s in takes)]:
        if not path.is_file():
            where = next((s.where for s in takes if path in (s.file, s.input)), "--input")
            raise _Refused(f"{path}: no such file ({where}).")
    rates = {p: _info(p).samplerate for p in [*inputs, *(s.file for s in takes)]}
    if rate is None and len(set(rates.values())) > 1:
        listing = ", ".join(f"{p.name} {r} Hz" for p, r in list(rates.items())[:4])
        raise _Refused(f"the files are at different rates ({listing}, ...); a session runs at one rate. "
                           "Pass --rate 48000 (or the rate you want) to resample them all once.")
    session_rate = int(rate or next(iter(rates.values())))
    for path in inputs:
        if _info(path).channels != 1:
            raise _Refused(f"{path}: the input has {_info(path).channels} channels; export the mono DI.")

    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.importing-", dir=root.parent if
                                 root.parent.exists() else None))
    try:
        (work / TAKES_DIR).mkdir()
        names: dict[Path, str] = {}
        maps = []
        clip_count = 0
        for k, path in enumerate(inputs):
            name = INPUT_FILE if k == 0 else f"{INPUTS_DIR}/input{k + 1:02d}.wav"
            n = _copy(path, work / name, session_rate, rates[path])
            starts = clip_starts(n, session_rate, clips, str(path))
            clip_count += len(starts)
            signal_map = import_signal_map(n, session_rate, clips=starts, skip=round(skip * session_rate),
                                           holdout_seconds=holdout_seconds,
                                           holdout_fraction=holdout_fraction, where=str(path))
            write_json_atomic(map_path(work / name), signal_map.to_dict())
            names[path] = name
            maps.append(signal_map)
        planned = []
        for i, (spec, setting) in enumerate(zip(takes, settings, strict=True)):
            take = take_name(i + 1)
            _copy(spec.file, work / TAKES_DIR / f"{take}.wav", session_rate, rates[spec.file])
            own = names[spec.input] if spec.input is not None else ""
            planned.append(PlannedTake(take, setting, spec.role, "" if own == INPUT_FILE else own))  # type: ignore[arg-type]
        origin = (f"given by {controls_file}" if source == "given" else "inferred from the imported "
                  "takes (numbers: knobs over the observed range; text: switches)")
        header = f"# knobcap controls, {origin}.\n# Then run: knobcap check {root}\n\n"
        write_text_atomic(work / CONTROLS_FILE, controls_to_toml(controls, header))
        write_text_atomic(work / PLAN_FILE, plan_csv_text(controls, planned))
        resampled = sorted({r for r in rates.values() if r != session_rate})
        write_options(work, SessionOptions(remove_dc=True, imported={
            "sample_rate": session_rate, "resampled_from": resampled,
            "resampler": RESAMPLER if resampled else None, "controls": source,
            "inputs": {names[p]: str(p.resolve()) for p in inputs},
            "takes": {t.take: str(s.file.resolve()) for t, s in zip(planned, takes, strict=True)},
            "clips": clip_count, "skip_seconds": skip}))
        root.parent.mkdir(parents=True, exist_ok=True)
        if root.exists():
            root.rmdir()  # empty (checked above)
        work.rename(root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    held = maps[0].segment("validation_2")
    return ImportResult(root, controls, source, planned, session_rate, resampled,
                        [names[p] for p in inputs], clip_count, held.length / session_rate)


def _controls(takes: Sequence[TakeSpec], controls_file: str | Path | None) -> tuple[Controls, str]:
    names = list(takes[0].setting)
    for spec in takes:
        if list(spec.setting) != names and sorted(spec.setting) != sorted(names):
            raise _Refused(f"{spec.where}: controls {', '.join(spec.setting)} differ from the first "
                               f"take's ({', '.join(names)}); give every take the same controls.")
    if controls_file is None:
        return infer_controls(takes), "inferred"
    try:
        controls = load_controls(controls_file)
    except (ControlsError, OSError) as error:
        raise _Refused(f"{controls_file}: {error}") from None
    unknown = [n for n in names if n not in controls.names]
    if unknown:
        raise _Refused(f"unknown control {unknown[0]!r} in the takes: {controls_file} has "
                           f"{', '.join(controls.names)}.")
    return controls, "given"


def _inputs(takes: Sequence[TakeSpec], input_file: str | Path | None) -> list[Path]:
    """Distinct input files, the shared one (``--input``) first."""
    found: list[Path] = [Path(input_file)] if input_file is not None else []
    for spec in takes:
        if spec.input is None:
            if input_file is None:
                raise _Refused(f"{spec.where}: this take names no input file; give --input DI.wav "
                                   "(the DI played into the device) or an 'input' for every take.")
            spec.input = Path(input_file)
        if spec.input not in found:
            found.append(spec.input)
    return found


def _info(path: Path) -> sf._SoundFileInfo:  # type: ignore[name-defined]
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise _Refused(f"{path}: not a readable audio file ({error}); export it as WAV.") from None


def _copy(source: Path, target: Path, rate: int, source_rate: int) -> int:
    """Copy a WAV as it is, or write a float WAV (resampled once to ``rate``); its length in samples."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source_rate == rate and source.suffix.lower() == ".wav":
        shutil.copyfile(source, target)
        return int(_info(target).frames)
    audio, _ = sf.read(str(source), dtype="float64", always_2d=True)
    if source_rate != rate:
        from scipy.signal import resample_poly

        g = math.gcd(rate, source_rate)
        audio = resample_poly(audio, rate // g, source_rate // g, axis=0, window=("kaiser", 5.0))
    write_wav_atomic(target, audio[:, 0] if audio.shape[1] == 1 else audio, rate, subtype="FLOAT")
    return int(audio.shape[0])
