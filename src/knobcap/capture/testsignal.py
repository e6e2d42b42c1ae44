"""knobcap's test signal: the reamp file played through a device at every setting, and its segment map.

Layout (in order; the :class:`SignalMap` holds the exact sample positions and is what other code reads):

* ``silence`` (1 s): the interface's noise floor is measured here (after the latency).
* ``blip_1``, ``blip_2`` (1 s each): a 4-sample pulse at +0.5 at the start of each, then silence, so a
  latency of up to 0.5 s is measured twice without the two search windows overlapping.
* ``validation_1``: a plucked-string phrase at several dynamics (5 s at 30 s, up to 9 s at 3 min).
* ``sweeps``: exponential sine sweeps 50 Hz -> 10 kHz at peaks of -30, -18 and -6 dBFS.
* ``noise``: white and pink noise at -40, -30, -20 and -12 dBFS rms (crest factor bounded).
* ``playing``: synthesised plucked strings (Karplus-Strong): single notes, strummed chords, palm mutes,
  bends, phrases whose peaks range from -40 to -1 dBFS; it takes the remaining time.
* ``validation_2``: an exact copy of ``validation_1`` (their difference in a recording shows drift).

Every segment ends in silence, so no tail rings into the next one. Peaks never exceed -1 dBFS.

Determinism: the audio is made from a PCG64 generator with fixed seeds, using only element-wise numpy
arithmetic, ``cumsum``/``interp`` and first-order ``lfilter`` (no threads, no BLAS), and is then rounded
to 24-bit PCM. Bit-identical output is guaranteed on one platform; across CPUs, last-bit differences
of vectorised ``sin``/``exp`` are far below the 24-bit step and vanish in the rounding (except with a
vanishing probability). A change to the generator must bump :data:`SIGNAL_VERSION`.

The WAV is written as 24-bit PCM (what interfaces play; the values are exactly the generated ones).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from knobcap.fileio import write_json_atomic, write_wav_atomic

SIGNAL_VERSION = 1
SAMPLE_RATE = 48_000
MIN_SECONDS = 30.0
MAX_SECONDS = 180.0
PEAK_LIMIT_DBFS = -1.0
SEGMENT_NAMES = ("silence", "blip_1", "blip_2", "validation_1", "sweeps", "noise", "playing",
                 "validation_2")
MAP_FORMAT = "knobcap-signal-map"

_BLIP = np.full(4, 0.5)           # the calibration pulse
_LEAD_SECONDS = 1.0               # leading silence, and the spacing of the blips
_SEED_VALIDATION = 20_241_101
_SEED_PLAYING = 20_241_102
_SEED_NOISE = 20_241_103
_SCALE_24 = float(2 ** 23)
_OPEN_STRINGS = (40, 45, 50, 55, 59, 64)  # MIDI notes of a guitar in standard tuning, E2 .. E4


class SignalError(ValueError):
    """A test signal or its map is unusable; the message names the file and what to do."""


@dataclass(frozen=True)
class Segment:
    """A named span of the signal, in samples (``stop`` exclusive)."""

    name: str
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SignalMap:
    """Where each part of a test signal lies; ``blips`` are the onsets of the calibration pulses."""

    sample_rate: int
    length: int
    version: int | None
    segments: tuple[Segment, ...]
    blips: tuple[int, ...] = ()
    clips: tuple[int, ...] = ()   # starts of independent clips, each from rest (empty: one signal)
    skip: int = 0                 # samples at the start of each clip that are never scored

    def segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(f"the signal map has no segment {name!r}; it has "
                       f"{', '.join(s.name for s in self.segments)}.")

    def has(self, name: str) -> bool:
        return any(seg.name == name for seg in self.segments)

    @property
    def train_span(self) -> tuple[int, int]:
        """From the end of ``validation_1`` (or 0 without one) to the start of ``validation_2``."""
        start = self.segment("validation_1").stop if self.has("validation_1") else 0
        return start, self.segment("validation_2").start

    def clip_spans(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each clip (one span, the whole signal, when there are no clips)."""
        starts = list(self.clips) or [0]
        return list(zip(starts, [*starts[1:], self.length], strict=True))

    @property
    def blip_length(self) -> int:
        return len(_BLIP) if self.blips else 0

    def to_dict(self) -> dict:
        out = {"format": MAP_FORMAT, "version": self.version, "sample_rate": self.sample_rate,
               "length": self.length, "blips": list(self.blips),
               "segments": [{"name": s.name, "start": s.start, "stop": s.stop} for s in self.segments]}
        if self.clips:
            out.update(clips=list(self.clips), skip=self.skip)
        return out

    @classmethod
    def from_dict(cls, d: dict, source: str | Path | None = None) -> SignalMap:
        """Read a map, refusing anything inconsistent (``source`` names the file in errors)."""
        where = str(source) if source is not None else "signal map"
        try:
            if d.get("format") != MAP_FORMAT:
                raise ValueError(f"'format' is {d.get('format')!r}, not {MAP_FORMAT!r}")
            version = d["version"]
            if version is not None and not isinstance(version, int):
                raise ValueError("'version' must be an integer or null")
            rate, length = int(d["sample_rate"]), int(d["length"])
            segments = tuple(Segment(str(s["name"]), int(s["start"]), int(s["stop"]))
                             for s in d["segments"])
            blips = tuple(int(b) for b in d.get("blips", []))
            clips = tuple(int(c) for c in d.get("clips", []))
            skip = int(d.get("skip", 0))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise SignalError(f"{where}: not a knobcap signal map ({error}). Regenerate it with "
                              f"'knobcap signal' or remove it.") from None
        if rate <= 0 or length <= 0:
            raise SignalError(f"{where}: sample rate and length must be positive.")
        for seg in segments:
            if not 0 <= seg.start < seg.stop <= length:
                raise SignalError(f"{where}: segment {seg.name!r} ({seg.start}..{seg.stop}) lies outside "
                                  f"the signal (0..{length}).")
        names = [s.name for s in segments]
        if "validation_2" not in names or "playing" not in names:
            raise SignalError(f"{where}: a signal map needs 'playing' and 'validation_2' segments.")
        if any(not 0 <= b < length for b in blips):
            raise SignalError(f"{where}: a blip lies outside the signal.")
        if clips and (clips[0] != 0 or any(b <= a for a, b in pairwise(clips)) or clips[-1] >= length):
            raise SignalError(f"{where}: 'clips' must be increasing clip starts from 0, inside the signal.")
        if skip < 0 or (clips and skip >= min(b - a for a, b in zip(
                clips, [*clips[1:], length], strict=True))):
            raise SignalError(f"{where}: 'skip' must be shorter than every clip.")
        return cls(rate, length, version, segments, blips, clips, skip)


@dataclass
class TestSignal:
    """Mono float32 audio and its segment map."""

    __test__ = False  # not a pytest test class
    audio: np.ndarray
    map: SignalMap

    @property
    def sample_rate(self) -> int:
        return self.map.sample_rate

    def part(self, name: str) -> np.ndarray:
        seg = self.map.segment(name)
        return self.audio[seg.start:seg.stop]


# ------------------------------------------------------------------------------------------ layout
def _layout(seconds: float, rate: int) -> dict[str, int]:
    """Segment lengths in samples for a total of ``seconds``; ``playing`` takes the rest."""
    frac = (seconds - MIN_SECONDS) / (MAX_SECONDS - MIN_SECONDS)
    lead = round(_LEAD_SECONDS * rate)
    lengths = {
        "silence": lead, "blip_1": lead, "blip_2": lead,
        "validation_1": round((5.0 + 4.0 * frac) * rate),
        "sweeps": 3 * round((1.1 + 2.0 * frac) * rate),
        "noise": 8 * round((0.3 + 0.6 * frac) * rate),
    }
    lengths["validation_2"] = lengths["validation_1"]
    lengths["playing"] = round(seconds * rate) - sum(lengths.values())
    return lengths


def generate_signal(seconds: float = 90.0, sample_rate: int = SAMPLE_RATE) -> TestSignal:
    """knobcap's test signal of about ``seconds`` (30 to 180), deterministic for a given version."""
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise SignalError(f"the test signal is {MIN_SECONDS:g} to {MAX_SECONDS:g} s long; "
                          f"{seconds:g} s was asked.")
    if sample_rate != SAMPLE_RATE:
        raise SignalError(f"knobcap's test signal is made at {SAMPLE_RATE} Hz; {sample_rate} Hz was "
                          f"asked. Record at {SAMPLE_RATE} Hz, or bring your own signal with --input.")
    lengths = _layout(seconds, sample_rate)
    validation = _validation(lengths["validation_1"], sample_rate)
    parts = {
        "silence": np.zeros(lengths["silence"]),
        "blip_1": _blip_part(lengths["blip_1"]),
        "blip_2": _blip_part(lengths["blip_2"]),
        "validation_1": validation,
        "sweeps": _sweeps(lengths["sweeps"], sample_rate),
        "noise": _noise(lengths["noise"], sample_rate),
        "playing": _playing(lengths["playing"], sample_rate),
        "validation_2": validation.copy(),
    }
    segments, pos = [], 0
    for name in SEGMENT_NAMES:
        n = len(parts[name])
        if n != lengths[name]:  # pragma: no cover - a bug in a generator
            raise AssertionError(f"segment {name} has {n} samples, {lengths[name]} planned")
        segments.append(Segment(name, pos, pos + n))
        pos += n
    audio = np.concatenate([parts[name] for name in SEGMENT_NAMES])
    audio = _quantise(audio)
    blips = (segments[1].start, segments[2].start)
    signal_map = SignalMap(sample_rate, len(audio), SIGNAL_VERSION, tuple(segments), blips)
    return TestSignal(audio, signal_map)


def _quantise(audio: np.ndarray) -> np.ndarray:
    """Round to the 24-bit PCM grid (exact in float32) and hold the peak at -1 dBFS."""
    limit = math.floor(10 ** (PEAK_LIMIT_DBFS / 20) * _SCALE_24)
    ints = np.clip(np.round(audio * _SCALE_24), -limit, limit)
    return (ints / _SCALE_24).astype(np.float32)


def _db(x: float) -> float:
    return 10 ** (x / 20)


def _fade(x: np.ndarray, n: int) -> np.ndarray:
    """Linear fade-in and fade-out of ``n`` samples (no clicks)."""
    n = min(n, len(x) // 2)
    if n > 0:
        ramp = np.arange(n) / n
        x[:n] *= ramp
        x[len(x) - n:] *= ramp[::-1]
    return x


# ------------------------------------------------------------------------------------------ parts
def _blip_part(n: int) -> np.ndarray:
    part = np.zeros(n)
    part[:len(_BLIP)] = _BLIP
    return part


def _sweeps(n: int, rate: int) -> np.ndarray:
    """Three exponential sine sweeps 50 Hz -> 10 kHz at -30, -18, -6 dBFS, each followed by 0.1 s of silence.

    Phase of an exponential sweep from f1 to f2 over T seconds: phi(t) = 2 pi f1 L (exp(t / L) - 1),
    with L = T / ln(f2 / f1), so the instantaneous frequency f1 exp(t / L) rises one octave per L ln 2 s.
    """
    each = n // 3
    gap = round(0.1 * rate)
    f1, f2 = 50.0, 10_000.0
    length_s = (each - gap) / rate
    rate_l = length_s / math.log(f2 / f1)
    t = np.arange(each - gap) / rate
    tone = np.sin(2 * np.pi * f1 * rate_l * (np.exp(t / rate_l) - 1.0))
    tone = _fade(tone, round(0.01 * rate))
    out = []
    for level in (-30.0, -18.0, -6.0):
        out += [tone * _db(level), np.zeros(gap)]
    return np.concatenate(out)


def _irwin_hall(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bounded near-Gaussian noise with unit variance: sum of 4 uniforms (range +-2 sqrt 3)."""
    u = rng.random((4, n))
    return (u[0] + u[1] + u[2] + u[3] - 2.0) * math.sqrt(3.0)


def _pink(white: np.ndarray, rate: int) -> np.ndarray:
    """Approximately 1/f noise: a sum of one-pole low-passes at octave-spaced corners, 1/sqrt(f) weighted.

    Each branch is flat below its corner f_k and falls 6 dB/octave above it; with weights proportional
    to 1/sqrt(f_k) the sum's power falls about 3 dB per octave between the lowest and highest corners.
    """
    out = np.zeros_like(white)
    for k in range(11):
        corner = 10.0 * 2.0 ** k
        pole = math.exp(-2 * math.pi * corner / rate)
        out += lfilter([(1 - pole) / math.sqrt(corner)], [1.0, -pole], white)
    return out - lfilter([0.002], [1.0, -0.998], out)  # remove the slow drift (high-pass ~15 Hz)


def _noise(n: int, rate: int) -> np.ndarray:
    """White then pink noise at each of -40, -30, -20, -12 dBFS rms, with short fades and gaps."""
    rng = np.random.default_rng(_SEED_NOISE)
    each = n // 8
    gap = round(0.05 * rate)
    out = []
    for level in (-40.0, -30.0, -20.0, -12.0):
        for kind in ("white", "pink"):
            x = _irwin_hall(rng, each - gap)
            if kind == "pink":
                x = _pink(x, rate)
            x = x / math.sqrt(float(np.mean(x * x))) * _db(level)
            x *= min(1.0, _db(-1.5) / float(np.max(np.abs(x))))  # keep the crest under the limit
            out += [_fade(x, round(0.005 * rate)), np.zeros(gap)]
    return np.concatenate(out)


# ------------------------------------------------------------------------------------------ strings
def _pluck(freq: float, n: int, rng: np.random.Generator, rate: int, *, brightness: float,
           decay_s: float) -> np.ndarray:
    """A Karplus-Strong plucked string of ``n`` samples at ``freq``.

    y[n] = x[n] + g (c0 y[n-N] + c1 y[n-N-1] + c2 y[n-N-2]): a delay line closed through a two-point
    average (half a sample of delay, gentle high-frequency loss) and a linear-interpolation fractional
    delay ``f``, so that N + 0.5 + f = rate / freq. The loop gain g = 10^(-3 P / (T60 rate)) per period
    P gives a decay of 60 dB in ``decay_s``. The excitation is a burst of one period of noise, low-passed
    by ``brightness`` in (0, 1] (a soft or hard pick). Blocks of N samples depend only on earlier
    blocks, so the recursion runs block-wise with array arithmetic.
    """
    period = rate / freq
    delay = math.floor(period - 0.5)
    f = period - 0.5 - delay
    c0, c1, c2 = 0.5 * (1 - f), 0.5, 0.5 * f
    g = 10 ** (-3 * period / (decay_s * rate))
    burst = rng.random(delay) * 2.0 - 1.0
    pole = 1.0 - brightness
    burst = lfilter([1.0 - pole], [1.0, -pole], burst)
    burst -= burst.mean()
    buf = np.zeros(n + 2)
    y = buf[2:]
    y[:min(delay, n)] = burst[:n]
    for s in range(delay, n, delay):
        e = min(s + delay, n)
        y[s:e] = g * (c0 * buf[s + 2 - delay:e + 2 - delay] + c1 * buf[s + 1 - delay:e + 1 - delay]
                      + c2 * buf[s - delay:e - delay])
    return y


def _release(y: np.ndarray, rate: int, seconds: float = 0.03) -> np.ndarray:
    n = min(len(y), round(seconds * rate))
    y[len(y) - n:] *= np.linspace(1.0, 0.0, n)
    return y


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


_CHORDS = (  # fret offsets per string from low E (None: not played), moved up the neck by a root fret
    (0, 2, 2, None, None, None),     # power chord on E
    (None, 0, 2, 2, None, None),     # power chord on A
    (0, 2, 2, 1, 0, 0),              # E major shape
    (0, 2, 2, 0, 0, 0),              # E minor shape
    (None, 0, 2, 2, 2, 0),           # A major shape
    (None, 0, 2, 2, 1, 0),           # A minor shape
    (0, 2, 0, 1, 0, 0),              # E7 shape
)


def _event(kind: str, rng: np.random.Generator, rate: int) -> np.ndarray:
    """One musical gesture (normalised so that its peak is 1)."""
    if kind == "note":
        string = int(rng.integers(0, 6))
        fret = int(rng.integers(0, 15))
        dur = 0.15 + 1.1 * float(rng.random())
        y = _pluck(_midi_hz(_OPEN_STRINGS[string] + fret), round(dur * rate), rng, rate,
                   brightness=0.3 + 0.6 * float(rng.random()), decay_s=1.5 + 3.0 * float(rng.random()))
        y = _release(y, rate)
    elif kind == "chord":
        shape = _CHORDS[int(rng.integers(0, len(_CHORDS)))]
        root = int(rng.integers(0, 10))
        dur = 0.3 + 1.7 * float(rng.random())
        spacing = round((0.006 + 0.02 * float(rng.random())) * rate)
        down = bool(rng.random() < 0.7)
        strings = [s for s in range(6) if shape[s] is not None]
        if not down:
            strings.reverse()
        y = np.zeros(round(dur * rate) + spacing * 6)
        bright = 0.3 + 0.6 * float(rng.random())
        for k, s in enumerate(strings):
            note = _OPEN_STRINGS[s] + root + shape[s]  # type: ignore[operator]
            start = k * spacing
            y[start:start + round(dur * rate)] += _pluck(
                _midi_hz(note), round(dur * rate), rng, rate, brightness=bright,
                decay_s=2.0 + 2.0 * float(rng.random()))
        y = _release(y, rate)
    elif kind == "mute":
        string = int(rng.integers(0, 3))
        fret = int(rng.integers(0, 8))
        hits = int(rng.integers(3, 9))
        step = round((0.09 + 0.08 * float(rng.random())) * rate)
        y = np.zeros(step * hits)
        for h in range(hits):
            y[h * step:(h + 1) * step] = _release(
                _pluck(_midi_hz(_OPEN_STRINGS[string] + fret), step, rng, rate,
                       brightness=0.15 + 0.3 * float(rng.random()), decay_s=0.12), rate, 0.01) * (
                0.6 + 0.4 * float(rng.random()))
    else:  # bend: read a held note faster and faster (pitch up by 1 or 2 semitones, then held)
        string = int(rng.integers(1, 6))
        fret = int(rng.integers(3, 15))
        dur = 0.6 + 1.0 * float(rng.random())
        n = round(dur * rate)
        semis = 1.0 if rng.random() < 0.5 else 2.0
        src = _pluck(_midi_hz(_OPEN_STRINGS[string] + fret), round(n * 1.3) + 2, rng, rate,
                     brightness=0.4 + 0.5 * float(rng.random()), decay_s=2.5 + 2.0 * float(rng.random()))
        t0 = round((0.05 + 0.2 * float(rng.random())) * rate)
        tb = round((0.1 + 0.2 * float(rng.random())) * rate)
        speed = np.ones(n)
        speed[t0:t0 + tb] = np.linspace(1.0, 2.0 ** (semis / 12), len(speed[t0:t0 + tb]))
        speed[t0 + tb:] = 2.0 ** (semis / 12)
        pos = np.cumsum(speed) - 1.0
        y = _release(np.interp(pos, np.arange(len(src), dtype=float), src), rate)
    peak = float(np.max(np.abs(y)))
    return y / peak if peak > 0 else y


_KINDS = ("note", "chord", "mute", "bend")
_KIND_WEIGHTS = np.cumsum([0.4, 0.3, 0.15, 0.15])


def _phrase(n: int, rng: np.random.Generator, rate: int) -> np.ndarray:
    """``n`` samples of gestures with per-gesture dynamics (+-9 dB), ending in 0.1 s of silence."""
    out = np.zeros(n)
    usable = n - round(0.1 * rate)
    t = 0
    while t < usable:
        kind = _KINDS[int(np.searchsorted(_KIND_WEIGHTS, rng.random()))]
        y = _event(kind, rng, rate) * _db(-9.0 + 9.0 * float(rng.random()))
        y = y[:usable - t]
        out[t:t + len(y)] += _release(y, rate, 0.01)
        # the next gesture starts before this one has rung out, most of the time (legato playing)
        t += max(round(0.08 * rate), round(len(y) * (0.3 + 0.6 * float(rng.random()))))
    return out


def _phrases(n: int, rng: np.random.Generator, rate: int, levels: list[float] | None,
             min_s: float, max_s: float) -> np.ndarray:
    """Fill ``n`` samples with phrases, each normalised to a peak level in dBFS (drawn if not given)."""
    out = np.zeros(n)
    t, k = 0, 0
    while t < n:
        length = round((min_s + (max_s - min_s) * float(rng.random())) * rate)
        if n - t - length < round(min_s * rate):
            length = n - t
        y = _phrase(length, rng, rate)
        if levels is not None:
            level = levels[k % len(levels)]
        elif k % 6 == 0:  # loud (-4..-1 dBFS) and soft (-40..-28 dBFS) phrases come in every length
            level = -4.0 + 3.0 * float(rng.random())
        elif k % 6 == 2:
            level = -40.0 + 12.0 * float(rng.random())
        else:  # mostly ordinary playing (-20..-1 dBFS), some soft (-40..-20 dBFS)
            soft = rng.random() < 0.15
            level = -40.0 + 20.0 * float(rng.random()) if soft else -20.0 + 19.0 * float(rng.random())
        if rng.random() < 0.2 and levels is None:  # a swell: crescendo across the phrase
            y *= np.linspace(_db(-24.0), 1.0, len(y))
        peak = float(np.max(np.abs(y)))
        if peak > 0:
            out[t:t + length] = y / peak * _db(level)
        t += length
        k += 1
    return out


def _validation(n: int, rate: int) -> np.ndarray:
    """The validation phrase: plucked strings at -30, -15 and -3 dBFS peaks, ending in silence."""
    rng = np.random.default_rng(_SEED_VALIDATION)
    third = n // 3
    parts = [_phrase(third, rng, rate) for _ in range(2)] + [_phrase(n - 2 * third, rng, rate)]
    out = []
    for part, level in zip(parts, (-30.0, -15.0, -3.0), strict=True):
        peak = float(np.max(np.abs(part)))
        out.append(part / peak * _db(level))
    return np.concatenate(out)


def _playing(n: int, rate: int) -> np.ndarray:
    """The guitar-like playing section: phrases of 2 to 6 s, ending in 0.5 s of silence."""
    rng = np.random.default_rng(_SEED_PLAYING)
    tail = round(0.5 * rate)
    return np.concatenate([_phrases(n - tail, rng, rate, None, 2.0, 6.0), np.zeros(tail)])


# ------------------------------------------------------------------------------------------ custom
def custom_signal_map(audio: np.ndarray, sample_rate: int) -> SignalMap:
    """The map of a user's own test signal (e.g. NAM's ``v3_0_0.wav``): no blips, so latency comes from
    cross-correlation; ``validation_2`` is the last 9 s (or the last 10 % of a file under 90 s) and
    ``playing`` is everything before it. Such a signal has no ``validation_1``: drift is not measured.
    """
    n = int(np.asarray(audio).shape[0])
    if n < sample_rate:
        raise SignalError(f"a custom test signal must be at least 1 s long; this one has {n} samples.")
    tail = 9 * sample_rate if n >= 90 * sample_rate else n // 10
    segments = (Segment("playing", 0, n - tail), Segment("validation_2", n - tail, n))
    return SignalMap(int(sample_rate), n, None, segments, ())


# ------------------------------------------------------------------------------------------ files
def map_path(path: str | Path) -> Path:
    """Where the map of the signal at ``path`` lives: ``<stem>.json`` beside it."""
    path = Path(path)
    return path.with_suffix(".json")


def write_signal(path: str | Path, signal: TestSignal) -> tuple[Path, Path]:
    """Write the WAV (24-bit PCM) and its map ``<stem>.json``; refuse to overwrite either."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise SignalError(f"{path}: the test signal is written as WAV; name the file '*.wav'.")
    json_path = map_path(path)
    for target in (path, json_path):
        if target.exists():
            raise SignalError(f"{target} already exists; knobcap never overwrites a file. Choose another "
                              f"name or remove it yourself.")
    write_json_atomic(json_path, signal.map.to_dict())
    write_wav_atomic(path, signal.audio, signal.map.sample_rate, subtype="PCM_24")
    return path, json_path


def read_signal(path: str | Path) -> TestSignal:
    """Read a test signal (WAV) and its map (``<stem>.json`` beside it)."""
    path = Path(path)
    json_path = map_path(path)
    if not path.is_file():
        raise SignalError(f"{path}: no such file. Write one with 'knobcap signal {path}'.")
    if not json_path.is_file():
        raise SignalError(f"{json_path}: the segment map of {path.name} is missing. Regenerate the signal "
                          f"with 'knobcap signal', or describe your own file with custom_signal_map.")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise SignalError(f"{path}: not a readable audio file ({error}).") from None
    if audio.shape[1] != 1:
        raise SignalError(f"{path}: a test signal is mono; this file has {audio.shape[1]} channels.")
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SignalError(f"{json_path}: not valid JSON ({error}). Regenerate the signal.") from None
    if not isinstance(data, dict):
        raise SignalError(f"{json_path}: not a knobcap signal map. Regenerate the signal.")
    signal_map = SignalMap.from_dict(data, json_path)
    if signal_map.sample_rate != rate or signal_map.length != audio.shape[0]:
        raise SignalError(f"{json_path} describes {signal_map.length} samples at {signal_map.sample_rate} Hz "
                          f"but {path.name} has {audio.shape[0]} at {rate} Hz; the two files do not belong "
                          f"together. Regenerate the signal.")
    return TestSignal(audio[:, 0], signal_map)
