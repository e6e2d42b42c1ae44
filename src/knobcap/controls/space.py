"""A device's knobs and switches: the ``controls.toml`` file, settings, and the vector a model sees.

A *setting* is a mapping ``name -> value``: a number in the knob's own units (a dial reading, a
frequency…) or a switch's position name. A model sees a setting as a normalised vector:

* knob -> ``u`` in [0, 1], *taper-aware* so that equal steps in ``u`` are roughly equal steps in sound:

  - ``linear``: ``u = p`` where ``p = (v - min) / (max - min)`` is the rotation;
  - ``log``: the value spans decades (a frequency, a time): ``u = log(v / min) / log(max / min)``;
  - ``audio``: the value is a dial reading on an audio-taper (A) pot whose resistance follows
    ``a(p) = (81^p - 1) / 80`` and sets a gain beside a fixed resistor about a tenth of the pot:
    ``u = log(1 + K a(p)) / log(1 + K)`` with ``K = 10`` (most of the change is near the top).

  - a measured ``warp`` (any taper): ``u`` at equally spaced rotations ``p = 0 … 1``, strictly
    increasing from 0 to 1, written by ``knobcap screen``; ``u`` is interpolated linearly between
    them. It replaces the taper's formula: it puts equal steps of *measured* sound change in equal
    steps of ``u`` (the virtual TS808's tone knob moves its sound more between 9.5 and 10 than
    between 1 and 9).

* switch -> ``±1`` for two positions, one-hot for three or more.

A knob with a measured ``gain_db`` is an exact output gain (a level or volume control after the last
nonlinearity; screening finds it, :mod:`knobcap.capture.screening`): the model never sees it (its entry
in the vector is 0) and its gain, ``10^(gain_db(p) / 20)`` at rotation ``p`` (interpolated linearly in
dB between equally spaced rotations, in amplitude next to a silent entry), multiplies the model's
output (:meth:`Controls.output_gain`). A model so learns the sound of the other controls only, and the
level is exact at every setting.

A knob's ``audible = [a, b]`` (screened) is where the device makes sound at the other controls'
defaults: a volume or preamp gain that is silent at 0 is ``[0.1, 1]`` when its first probe above 0
sounds. Plans record only within it (a silent take teaches a model nothing).

The same coordinates are used by the experimental design, so points are spread where the sound moves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path
from typing import Literal

import numpy as np

from knobcap import limits

Taper = Literal["linear", "audio", "log"]
TAPERS: tuple[str, ...] = ("linear", "audio", "log")
SettingValue = float | str
Setting = dict[str, SettingValue]

_AUDIO_LAW_BASE = 81.0  # a(p) = (81^p - 1) / 80: 10 % of the resistance at half rotation
_AUDIO_GAIN_RATIO = 10.0  # K: pot resistance over the fixed resistor beside it
_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")  # whole string (fullmatch): no "drive\n"
_POSITION_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f,;\"'=\\]")  # breaks plan.csv, --set or a terminal
MAX_POSITION_LENGTH = 64
_TOP_KEYS = {"name", "description", "device", "fixed", "knob", "switch"}
_KNOB_KEYS = {"name", "min", "max", "default", "taper", "unit", "warp", "gain_db", "audible"}
MAX_WARP_POINTS = 1001
MAX_GAIN_DB = 120.0  # a gain table's entries lie within +-this
_SWITCH_KEYS = {"name", "positions", "default"}


class ControlsError(ValueError):
    """A controls file or a setting is wrong; the message names the file, the control and the fix."""


def _where(source: str | Path | None) -> str:
    return str(source) if source is not None else "controls"


@dataclass(frozen=True)
class Knob:
    """A continuous control, from ``min`` to ``max`` in its own units, with a taper."""

    name: str
    min: float = 0.0
    max: float = 10.0
    default: float | None = None
    taper: Taper = "linear"
    unit: str = ""
    warp: tuple[float, ...] | None = None  # u at equally spaced rotations (see the module docstring)
    gain_db: tuple[float, ...] | None = None  # an output gain's dB at equally spaced rotations
    audible: tuple[float, float] | None = None  # where the device sounds (screened); plans stay inside

    def __post_init__(self) -> None:
        if self.default is None:  # the middle of the taper: a measured warp never moves the default
            object.__setattr__(self, "default", replace(self, warp=None, default=0.0).from_unit(0.5))
        if self.warp is not None:
            object.__setattr__(self, "warp", tuple(float(u) for u in self.warp))
        if self.gain_db is not None:
            object.__setattr__(self, "gain_db", tuple(float(g) for g in self.gain_db))
        if self.audible is not None:
            object.__setattr__(self, "audible", tuple(float(a) for a in self.audible))

    def gain(self, value: float) -> float:
        """The knob's output gain in dB at ``value`` (0 for a knob that is not an output gain).

        Between table entries the gain is interpolated in dB, except next to a silent entry
        (``-MAX_GAIN_DB``: a volume turned all the way down), where it is interpolated in amplitude:
        a pot's output falls to nothing at its end, and dB interpolation towards -120 dB would put the
        first notches far too quiet (-66 dB halfway to an entry of -12 dB, where -18 dB is right for a
        linear pot)."""
        if self.gain_db is None:
            return 0.0
        table = np.asarray(self.gain_db, dtype=float)
        rotations = np.linspace(0.0, 1.0, len(table))
        p = min(max(self.rotation(value), 0.0), 1.0)
        i = min(int(np.searchsorted(rotations, p, side="right")) - 1, len(table) - 2)
        pair = table[i:i + 2]
        if pair.min() > -MAX_GAIN_DB + 1e-9:
            return float(np.interp(p, rotations, table))
        amplitude = float(np.interp(p, rotations[i:i + 2], 10.0 ** (pair / 20.0)))
        return max(20.0 * math.log10(amplitude), -MAX_GAIN_DB) if amplitude > 0.0 else -MAX_GAIN_DB

    @property
    def default_value(self) -> float:
        return float(self.default)  # type: ignore[arg-type]

    def rotation(self, value: float) -> float:
        """Fraction of the knob's travel, ``p = (v - min) / (max - min)``."""
        return (float(value) - self.min) / (self.max - self.min)

    def to_unit(self, value: float) -> float:
        """Taper-aware normalised coordinate ``u`` in [0, 1] of a value in the knob's units."""
        if self.warp is not None:
            rotations = np.linspace(0.0, 1.0, len(self.warp))
            return float(np.interp(self.rotation(value), rotations, self.warp))
        if self.taper == "log":
            return math.log(float(value) / self.min) / math.log(self.max / self.min)
        p = self.rotation(value)
        if self.taper == "audio":
            a = (_AUDIO_LAW_BASE ** p - 1.0) / (_AUDIO_LAW_BASE - 1.0)
            return math.log1p(_AUDIO_GAIN_RATIO * a) / math.log1p(_AUDIO_GAIN_RATIO)
        return p

    def from_unit(self, u: float) -> float:
        """Inverse of :meth:`to_unit`: the value in the knob's units at coordinate ``u``."""
        u = min(max(float(u), 0.0), 1.0)
        if self.warp is not None:
            p = float(np.interp(u, self.warp, np.linspace(0.0, 1.0, len(self.warp))))
            return self.min + p * (self.max - self.min)
        if self.taper == "log":
            return self.min * (self.max / self.min) ** u
        if self.taper == "audio":
            a = math.expm1(u * math.log1p(_AUDIO_GAIN_RATIO)) / _AUDIO_GAIN_RATIO
            p = math.log1p((_AUDIO_LAW_BASE - 1.0) * a) / math.log(_AUDIO_LAW_BASE)
        else:
            p = u
        return self.min + p * (self.max - self.min)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "min": self.min, "max": self.max,
                                  "default": self.default_value, "taper": self.taper}
        if self.unit:
            out["unit"] = self.unit
        if self.warp is not None:
            out["warp"] = [round(u, 6) for u in self.warp]
        if self.gain_db is not None:
            out["gain_db"] = [round(g, 4) for g in self.gain_db]
        if self.audible is not None:
            out["audible"] = [float(a) for a in self.audible]
        return out


@dataclass(frozen=True)
class Switch:
    """A control with two or more named positions."""

    name: str
    positions: tuple[str, ...]
    default: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", tuple(self.positions))
        if self.default is None and self.positions:
            object.__setattr__(self, "default", self.positions[0])

    @property
    def width(self) -> int:
        """Entries in the model's vector: one (±1) for two positions, one-hot otherwise."""
        return 1 if len(self.positions) == 2 else len(self.positions)

    def encode(self, position: str) -> list[float]:
        index = self.positions.index(position)
        if len(self.positions) == 2:
            return [-1.0 if index == 0 else 1.0]
        return [1.0 if i == index else 0.0 for i in range(len(self.positions))]

    def decode(self, values: Iterable[float]) -> str:
        values = list(values)
        if len(self.positions) == 2:
            return self.positions[0 if values[0] < 0 else 1]
        return self.positions[int(np.argmax(values))]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "positions": list(self.positions), "default": self.default}


@dataclass(frozen=True)
class Controls:
    """The knobs and switches of one device."""

    knobs: tuple[Knob, ...] = ()
    switches: tuple[Switch, ...] = ()
    name: str = ""
    source: Path | None = field(default=None, compare=False)
    #: The device these controls drive (``"lv2:<URI>"``, ``"ts808"``), when knobcap can render it.
    device: str = field(default="", compare=False)
    #: The device's other controls, not captured, and the value each is held at (name -> number or
    #: switch position), as ``(name, value)`` pairs.
    fixed: tuple[tuple[str, float | str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "knobs", tuple(self.knobs))
        object.__setattr__(self, "switches", tuple(self.switches))
        object.__setattr__(self, "fixed", tuple((str(k), v) for k, v in dict(self.fixed).items()))
        _validate_controls(self)
        clash = [name for name, _ in self.fixed if name in self.names]
        if clash:
            raise ControlsError(f"{_where(self.source)}: {clash[0]!r} is both a control and fixed; remove it "
                                "from [fixed] or from the controls.")

    @property
    def fixed_values(self) -> dict[str, float | str]:
        """The fixed controls as a dict (name -> value)."""
        return dict(self.fixed)

    # --- structure -----------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [k.name for k in self.knobs] + [s.name for s in self.switches]

    @property
    def vector_size(self) -> int:
        return len(self.knobs) + sum(s.width for s in self.switches)

    def __getitem__(self, name: str) -> Knob | Switch:
        for control in (*self.knobs, *self.switches):
            if control.name == name:
                return control
        raise KeyError(name)

    @property
    def combination_count(self) -> int:
        """How many combinations of switch positions there are (1 without switches); nothing enumerated."""
        return math.prod(len(s.positions) for s in self.switches)

    def switch_combinations(self) -> list[dict[str, str]]:
        """Every combination of switch positions (one empty combination when there are none).

        Counted first: more than :data:`knobcap.limits.MAX_SWITCH_COMBINATIONS` raises
        :class:`~knobcap.limits.LimitError` before any is made."""
        limits.MAX_SWITCH_COMBINATIONS.check(self.combination_count, _where(self.source))
        names = [s.name for s in self.switches]
        return [dict(zip(names, combo, strict=True))
                for combo in product(*(s.positions for s in self.switches))]

    def default_setting(self) -> Setting:
        setting: Setting = {k.name: k.default_value for k in self.knobs}
        setting.update({s.name: str(s.default) for s in self.switches})
        return setting

    # --- settings --------------------------------------------------------------------------------
    def validate_setting(self, setting: Mapping[str, object], where: str = "setting") -> Setting:
        """Check a setting and return it with knob values as floats and switch positions as str."""
        unknown = [name for name in setting if name not in self.names]
        if unknown:
            raise ControlsError(
                f"{where}: unknown control {unknown[0]!r}; the controls of "
                f"{_where(self.source)} are {', '.join(self.names)}. Fix the name or add the control.")
        clean: Setting = {}
        for knob in self.knobs:
            if knob.name not in setting:
                raise ControlsError(
                    f"{where}: knob {knob.name!r} is missing; give it a value from {knob.min:g} "
                    f"to {knob.max:g}.")
            raw = setting[knob.name]
            try:
                value = float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise ControlsError(
                    f"{where}: knob {knob.name!r} has value {raw!r}, which is not a number; "
                    f"give a number from {knob.min:g} to {knob.max:g}.") from None
            tolerance = 1e-9 * (knob.max - knob.min)
            if not (knob.min - tolerance <= value <= knob.max + tolerance) or math.isnan(value):
                raise ControlsError(
                    f"{where}: knob {knob.name!r} = {value:g} is out of range; "
                    f"use a value from {knob.min:g} to {knob.max:g}.")
            clean[knob.name] = min(max(value, knob.min), knob.max)
        for switch in self.switches:
            if switch.name not in setting:
                raise ControlsError(
                    f"{where}: switch {switch.name!r} is missing; choose one of "
                    f"{', '.join(switch.positions)}.")
            position = str(setting[switch.name])
            if position not in switch.positions:
                raise ControlsError(
                    f"{where}: switch {switch.name!r} has no position {position!r}; choose one of "
                    f"{', '.join(switch.positions)}.")
            clean[switch.name] = position
        return clean

    def to_vector(self, setting: Mapping[str, object]) -> np.ndarray:
        """The normalised float32 vector of a setting: knobs' ``u`` then switches' codes; an output-gain
        knob's entry is 0 (:meth:`output_gain` applies it)."""
        clean = self.validate_setting(setting)
        values: list[float] = [0.0 if k.gain_db is not None else k.to_unit(clean[k.name])  # type: ignore[arg-type]
                               for k in self.knobs]
        for switch in self.switches:
            values.extend(switch.encode(str(clean[switch.name])))
        return np.asarray(values, dtype=np.float32)

    def to_matrix(self, settings: Iterable[Mapping[str, object]]) -> np.ndarray:
        rows = [self.to_vector(s) for s in settings]
        return np.stack(rows) if rows else np.zeros((0, self.vector_size), np.float32)

    def from_vector(self, vector: Iterable[float]) -> Setting:
        """The setting of a normalised vector (switch codes are rounded to the nearest position)."""
        values = [float(v) for v in vector]
        if len(values) != self.vector_size:
            raise ControlsError(
                f"{_where(self.source)}: a vector of {len(values)} entries does not match these "
                f"controls, which need {self.vector_size}.")
        setting: Setting = {}
        for i, knob in enumerate(self.knobs):
            setting[knob.name] = knob.from_unit(values[i])
        offset = len(self.knobs)
        for switch in self.switches:
            setting[switch.name] = switch.decode(values[offset:offset + switch.width])
            offset += switch.width
        return setting

    @property
    def has_output_gain(self) -> bool:
        """Whether a knob is an output gain (:meth:`output_gain`)."""
        return any(k.gain_db is not None for k in self.knobs)

    def output_gain_db(self, setting: Mapping[str, object]) -> float:
        """The output-gain knobs' gain at ``setting`` in dB, summed (0 when no knob is one)."""
        clean = self.validate_setting(setting)
        return float(sum(k.gain(clean[k.name]) for k in self.knobs))  # type: ignore[arg-type]

    def output_gain(self, setting: Mapping[str, object]) -> float:
        """The factor the output-gain knobs put on the model's output at ``setting``: ``10^(dB / 20)`` of
        :meth:`output_gain_db` (1 when no knob is one)."""
        return float(10.0 ** (self.output_gain_db(setting) / 20.0))

    def unit_knobs(self, setting: Mapping[str, object]) -> np.ndarray:
        """Only the knobs' taper-aware coordinates of a setting, as float64."""
        clean = self.validate_setting(setting)
        return np.array([k.to_unit(clean[k.name]) for k in self.knobs], dtype=float)  # type: ignore[arg-type]

    # --- files -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        if self.name:
            out["name"] = self.name
        if self.device:
            out["device"] = self.device
        if self.fixed:
            out["fixed"] = dict(self.fixed)
        out["knob"] = [k.to_dict() for k in self.knobs]
        out["switch"] = [s.to_dict() for s in self.switches]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object], source: str | Path | None = None) -> Controls:
        """Build and validate controls from parsed TOML/JSON, naming ``source`` in every error."""
        where = _where(source)
        if not isinstance(data, Mapping):
            raise ControlsError(f"{where}: expected a table of knobs and switches.")
        for key in data:
            if key not in _TOP_KEYS:
                raise ControlsError(
                    f"{where}: unknown key {key!r}; allowed at the top are "
                    f"{', '.join(sorted(_TOP_KEYS))}. Use [[knob]] or [[switch]] tables for controls.")
        knobs = [_knob_from_dict(entry, where) for entry in _table_list(data, "knob", where)]
        switches = [_switch_from_dict(e, where) for e in _table_list(data, "switch", where)]
        device = data.get("device", "")
        if not isinstance(device, str):
            raise ControlsError(f"{where}: 'device' must be a quoted name such as \"lv2:<plugin URI>\" or "
                                f"\"ts808\"; got {_short(device)}.")
        return cls(knobs=tuple(knobs), switches=tuple(switches), name=str(data.get("name", "")),
                   source=Path(source) if source is not None else None, device=device,
                   fixed=_fixed_from_dict(data.get("fixed", {}), where))


def _fixed_from_dict(table: object, where: str) -> tuple[tuple[str, float | str], ...]:
    """``[fixed]``: control name -> a finite number or a switch position (a string)."""
    if not isinstance(table, Mapping):
        raise ControlsError(f"{where}: 'fixed' must be a [fixed] table of name = value lines.")
    out: list[tuple[str, float | str]] = []
    for name, value in table.items():
        if isinstance(value, str):
            out.append((str(name), value))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out.append((str(name), _finite(value, f"{where}: [fixed] {name!r}")))
        else:
            raise ControlsError(f"{where}: [fixed] {name!r} = {_short(value)} must be a number or a quoted "
                                "switch position.")
    return tuple(out)


def _table_list(data: Mapping[str, object], key: str, where: str) -> list[Mapping[str, object]]:
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ControlsError(f"{where}: '{key}' must be written as [[{key}]] tables, one per control.")
    return entries  # type: ignore[return-value]


def _table_label(entry: Mapping[str, object], kind: str, plural: str, allowed: set[str],
                 where: str) -> tuple[str, str]:
    """The control's name and how messages call it; a key outside ``allowed`` is refused."""
    name = str(entry.get("name", ""))
    label = f"{kind} {name!r}" if name else f"a {kind}"
    for key in entry:
        if key not in allowed:
            raise ControlsError(f"{where}: {label} has unknown key {key!r}; {plural} take "
                                f"{', '.join(sorted(allowed))}. Remove or rename it.")
    return name, label


def _knob_from_dict(entry: Mapping[str, object], where: str) -> Knob:
    name, label = _table_label(entry, "knob", "knobs", _KNOB_KEYS, where)
    numbers: dict[str, float | None] = {}
    for key in ("min", "max", "default"):
        raw = entry.get(key)
        if raw is None:
            numbers[key] = None
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ControlsError(f"{where}: {label}: '{key}' = {_short(raw)} must be a number.")
        numbers[key] = _finite(raw, f"{where}: {label}: '{key}'")
    taper = str(entry.get("taper", "linear"))
    if taper not in TAPERS:
        raise ControlsError(
            f"{where}: {label}: taper {taper!r} is unknown; use one of {', '.join(TAPERS)}.")
    low = numbers["min"] if numbers["min"] is not None else 0.0
    high = numbers["max"] if numbers["max"] is not None else 10.0
    if not low < high:
        raise ControlsError(
            f"{where}: {label}: min ({low:g}) must be smaller than max ({high:g}); swap or fix them.")
    if taper == "log" and low <= 0:
        raise ControlsError(
            f"{where}: {label}: a log taper needs min > 0 (got {low:g}); raise min or use 'linear'.")
    warp = entry.get("warp")
    if warp is not None:
        if (not isinstance(warp, list) or not all(isinstance(u, int | float) and not isinstance(u, bool)
                                                  for u in warp)):
            raise ControlsError(f"{where}: {label}: 'warp' must be a list of numbers (u at equally "
                                "spaced rotations); run 'knobcap screen' to measure it, or remove it.")
        warp = tuple(_finite(u, f"{where}: {label}: 'warp'") for u in warp)
    gain_db = entry.get("gain_db")
    if gain_db is not None:
        if not isinstance(gain_db, list) or not all(isinstance(g, int | float) and not isinstance(g, bool)
                                                      for g in gain_db):
            raise ControlsError(f"{where}: {label}: 'gain_db' must be a list of numbers (the output gain in "
                                "dB at equally spaced rotations); run 'knobcap screen' to measure it, or "
                                "remove it.")
        gain_db = tuple(_finite(g, f"{where}: {label}: 'gain_db'") for g in gain_db)
    audible = entry.get("audible")
    if audible is not None:
        if not isinstance(audible, list) or len(audible) != 2 or not all(
                isinstance(a, int | float) and not isinstance(a, bool) for a in audible):
            raise ControlsError(f"{where}: {label}: 'audible' must be two numbers (the knob's values between "
                                "which the device sounds); run 'knobcap screen' to measure it, or remove it.")
        audible = tuple(_finite(a, f"{where}: {label}: 'audible'") for a in audible)
    return Knob(name=name, min=low, max=high, default=numbers["default"], taper=taper,  # type: ignore[arg-type]
                unit=str(entry.get("unit", "")), warp=warp, gain_db=gain_db, audible=audible)  # type: ignore[arg-type]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _finite(raw: int | float, what: str) -> float:
    """``raw`` as a finite float, or a :class:`ControlsError` (``inf``, NaN, a 401-digit integer)."""
    try:
        value = float(raw)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise ControlsError(f"{what} = {_short(raw)} is not a finite number; give a number such as 10.")
    return value


def check_position(switch: str, position: object, where: str) -> str:
    """A switch position that survives plan.csv, ``--set`` and a terminal: non-empty, at most
    :data:`MAX_POSITION_LENGTH` characters, no space at either end, no control character, no
    ``, ; " ' = \\``."""
    if (not isinstance(position, str) or not position or len(position) > MAX_POSITION_LENGTH
            or position != position.strip() or _POSITION_FORBIDDEN.search(position)):
        raise ControlsError(
            f"{where}: switch {switch!r} has position {_short(position)}; a position is 1 to "
            f"{MAX_POSITION_LENGTH} characters, with no space at either end, no control character and "
            "none of , ; \" ' = \\. Rename it (e.g. \"led\", \"high-gain\").")
    return position


def _switch_from_dict(entry: Mapping[str, object], where: str) -> Switch:
    name, label = _table_label(entry, "switch", "switches", _SWITCH_KEYS, where)
    positions = entry.get("positions")
    if not isinstance(positions, list) or not all(isinstance(p, str) for p in positions):
        raise ControlsError(
            f"{where}: {label} needs positions = [\"a\", \"b\", ...], a list of two or more names.")
    default = entry.get("default")
    return Switch(name=name, positions=tuple(positions),
                  default=None if default is None else str(default))


def _validate_controls(controls: Controls) -> None:
    where = _where(controls.source)
    seen: set[str] = set()
    for control in (*controls.knobs, *controls.switches):
        kind = "knob" if isinstance(control, Knob) else "switch"
        if not control.name:
            raise ControlsError(f"{where}: a {kind} has no name; add name = \"...\".")
        if not _NAME_PATTERN.fullmatch(control.name):
            raise ControlsError(
                f"{where}: {kind} name {_short(control.name)} must start with a letter and use only "
                "letters, digits, '_' or '-' (at most 64); rename it.")
        if control.name in seen:
            raise ControlsError(
                f"{where}: the name {control.name!r} is used twice; give each control its own name.")
        seen.add(control.name)
    for knob in controls.knobs:
        for key in ("min", "max", "default"):
            _finite(getattr(knob, key), f"{where}: knob {knob.name!r}: '{key}'")
        if not knob.min < knob.max:
            raise ControlsError(
                f"{where}: knob {knob.name!r}: min ({knob.min:g}) must be smaller than max "
                f"({knob.max:g}); swap or fix them.")
        if knob.taper not in TAPERS:
            raise ControlsError(
                f"{where}: knob {knob.name!r}: taper {knob.taper!r} is unknown; use one of "
                f"{', '.join(TAPERS)}.")
        if knob.warp is not None:
            _validate_warp(knob, where)
        if knob.gain_db is not None and (
                not 2 <= len(knob.gain_db) <= MAX_WARP_POINTS
                or not all(math.isfinite(g) and abs(g) <= MAX_GAIN_DB for g in knob.gain_db)):
            raise ControlsError(
                f"{where}: knob {knob.name!r}: 'gain_db' must list 2 to {MAX_WARP_POINTS} numbers within "
                f"+-{MAX_GAIN_DB:g} dB (the output gain at equally spaced rotations); run 'knobcap screen' "
                "again to measure it, or remove it.")
        if knob.audible is not None and not knob.min <= knob.audible[0] < knob.audible[1] <= knob.max:
            raise ControlsError(
                f"{where}: knob {knob.name!r}: 'audible' must be two values from min to max, the first "
                f"smaller (got {list(knob.audible)}); run 'knobcap screen' again to measure it, or remove "
                "it.")
        if not knob.min <= knob.default_value <= knob.max:
            raise ControlsError(
                f"{where}: knob {knob.name!r}: default {knob.default_value:g} is out of range; use a "
                f"value from {knob.min:g} to {knob.max:g}.")
    for switch in controls.switches:
        for position in switch.positions:
            check_position(switch.name, position, where)
        if len(switch.positions) < 2:
            raise ControlsError(
                f"{where}: switch {switch.name!r} has {len(switch.positions)} position(s); a switch "
                "needs at least two. Add a position, or drop the switch if it is fixed.")
        if len(set(switch.positions)) != len(switch.positions):
            raise ControlsError(
                f"{where}: switch {switch.name!r} lists a position twice; give each its own name.")
        if switch.default not in switch.positions:
            raise ControlsError(
                f"{where}: switch {switch.name!r}: default {switch.default!r} is not one of its "
                f"positions ({', '.join(switch.positions)}).")
    if not controls.knobs and not controls.switches:
        raise ControlsError(f"{where}: no controls; add at least one [[knob]] or [[switch]].")


def _validate_warp(knob: Knob, where: str) -> None:
    warp = knob.warp or ()
    steps = np.diff(warp)
    if (not 2 <= len(warp) <= MAX_WARP_POINTS or not all(math.isfinite(u) for u in warp)
            or abs(warp[0]) > 1e-9 or abs(warp[-1] - 1.0) > 1e-9 or not np.all(steps > 0)):
        raise ControlsError(
            f"{where}: knob {knob.name!r}: 'warp' must list 2 to {MAX_WARP_POINTS} strictly increasing "
            "numbers from 0 to 1 (u at equally spaced rotations); run 'knobcap screen' again to "
            "measure it, or remove the warp to use the taper.")
