"""A device's own delay, measured the way ``knobcap check`` measures a recording's latency.

Plugins and devices can delay their output without saying so (Guitarix's DS-1 reports no latency yet
answers 31 samples late at 48 kHz, 32 at 44.1 kHz and 1 at 96 kHz: internal resampling). So the delay
is measured, never taken from a report: the device renders a probe at a setting (its default by default), and
:func:`knobcap.capture.latency.calibrate_latency` finds the arrival of the probe's two calibration
blips in the output, cross-checked against the validation music, exactly as for a take.

The probe is the start of knobcap's test signal: 1 s of silence, the two blips 1 s apart, and the
validation phrase (8 s in all at 48 kHz). At another sample rate it is resampled (polyphase), and the
reference is the resampled probe, so a pure delay still reads exactly.

The delay is signed. The calibration can read a device's arrival a sample or two *early* (it keeps
the earlier of the blips' and the music's onsets: early costs a causal model nothing), and in a
session that early reading is what aligns the takes, so a model learns the device's response that
many samples late. The device's output is therefore measured behind ``PAD`` samples of added delay,
so that an early reading stays representable: a delay of -1 moves renders one sample *later*, the
way the takes were aligned. Clipped at zero instead (session 6), the GxTubeScreamer's renders sat a
sample ahead of its takes, and its dense-grid median ESR read 0.054 instead of 0.031. For the same
reason the evaluation measures on the session's own signal (:func:`signal_probe`) at its recorded
settings (the median reading): the calibration's bias moves by a sample or two with the music and
the setting.

Where a session's recorded takes are at hand, the evaluation does better still: it lines the renders up
with the takes themselves (:func:`delay_from_takes`), since a model learns the takes however they were
aligned: by the calibration (``knobcap check``), by a virtual reamp's known latency (the benchmarks'
``check.json``) or by hand. The calibration's reading is the fallback, for a session without takes at
the device's sample rate or whose takes do not match the device's renders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TypeVar

import numpy as np
from scipy.signal import correlate, resample_poly

from knobcap.capture.latency import Latency, calibrate_latency
from knobcap.capture.testsignal import MIN_SECONDS, SAMPLE_RATE, Segment, SignalMap, generate_signal
from knobcap.devices import Device

PROBE_SEGMENTS = ("silence", "blip_1", "blip_2", "validation_1")
PAD = 64  # samples of delay added before measuring, so that a reading up to PAD early stays signed
MAX_SETTINGS = 8  # settings a session-aligned device is measured at
T = TypeVar("T")
TAKE_PREROLL = 8192  # samples a device renders before a take's compared span, to settle
MIN_TAKE_CORRELATION = 0.5  # a take whose best correlation with the render is lower says nothing


@lru_cache(maxsize=8)
def delay_probe(sample_rate: int) -> tuple[np.ndarray, SignalMap]:
    """The probe (float32, read-only) and its map at ``sample_rate``."""
    signal = generate_signal(MIN_SECONDS)
    cut = signal_probe(signal.audio, signal.map)
    assert cut is not None  # knobcap's own signal has every probe segment and its blips
    if sample_rate == SAMPLE_RATE:
        return cut
    common = math.gcd(int(sample_rate), SAMPLE_RATE)
    audio = resample_poly(np.asarray(cut[0], dtype=np.float64), sample_rate // common, SAMPLE_RATE // common)
    ratio = sample_rate / SAMPLE_RATE
    segments = tuple(Segment(s.name, round(s.start * ratio), min(round(s.stop * ratio), len(audio)))
                     for s in cut[1].segments)
    probe = audio.astype(np.float32)
    probe.setflags(write=False)
    return probe, SignalMap(int(sample_rate), len(probe), None, segments,
                            tuple(round(b * ratio) for b in cut[1].blips))


def signal_probe(audio: np.ndarray, signal_map: SignalMap) -> tuple[np.ndarray, SignalMap] | None:
    """A session's own test signal cut to the probe's segments (None for a signal without blips): the
    delay is then read on the very music and blips its takes were calibrated on."""
    if not signal_map.blips or not all(signal_map.has(name) for name in PROBE_SEGMENTS):
        return None
    segments = tuple(signal_map.segment(name) for name in PROBE_SEGMENTS)
    probe = np.array(audio[:segments[-1].stop], dtype=np.float32)
    probe.setflags(write=False)
    return probe, SignalMap(signal_map.sample_rate, len(probe), None, segments, signal_map.blips)


def measure_delay(device: Device, sample_rate: int, setting: Mapping[str, object] | None = None,
                  max_seconds: float = 0.5, probe: tuple[np.ndarray, SignalMap] | None = None) -> Latency:
    """How late (samples, polarity, confidence) ``device`` answers at ``setting`` (default: its own).

    ``Latency.samples`` is the onset of the output behind the input, as a take's calibration reads
    it; it may be negative (down to ``-PAD``) where that reading is early. Check ``confident`` (and
    ``reason``) before trusting it; a device that mutes or randomises its input cannot be measured.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise ValueError(f"measure_delay: sample_rate must be a positive whole number of Hz; "
                         f"got {sample_rate!r}.")
    probe, signal_map = probe if probe is not None else delay_probe(int(sample_rate))
    if signal_map.sample_rate != int(sample_rate):
        raise ValueError(f"measure_delay: the probe is at {signal_map.sample_rate} Hz, not {sample_rate} Hz.")
    chosen = device.controls.default_setting() if setting is None else dict(setting)
    output = np.asarray(device.process(probe.copy(), int(sample_rate), chosen), dtype=np.float64)
    if output.ndim != 1 or len(output) != len(probe):
        raise ValueError(f"measure_delay: {device.name} returned audio of shape {output.shape} for a "
                         f"mono probe of {len(probe)} samples; a device must return mono audio of the "
                         "input's length.")
    padded = np.concatenate([np.zeros(PAD), output])
    latency = calibrate_latency(padded, probe, signal_map, max_seconds=max_seconds + PAD / sample_rate)
    return replace(latency, samples=latency.samples - PAD)


def spread(items: Sequence[T], count: int = MAX_SETTINGS) -> list[T]:
    """At most about ``count`` of ``items``, every k-th, spread over the list."""
    return list(items)[:: max(1, -(-len(items) // count))]


@dataclass(frozen=True)
class RecordedTake:
    """A recorded take as its session aligned it: ``take`` is the aligned recording of ``audio`` (its
    input, at ``sample_rate``) at ``setting``, and ``[start, stop)`` the span to compare on."""

    setting: Mapping[str, object]
    audio: np.ndarray
    take: np.ndarray
    start: int
    stop: int
    sample_rate: int


def take_lag(device: Device, recorded: RecordedTake, max_lag: int = PAD) -> tuple[int, float]:
    """The shift ``d`` (samples, within ``±max_lag``) for which the device's render ``y`` lines up with
    the take ``t``, and the correlation coefficient there:

        d = argmax_d Σ_n t[n] y[n + d]   over n in [start + max_lag, stop - max_lag)

    so that ``y[n + d]`` is what the take holds at ``n`` (``d > 0``: the render is late)."""
    start, stop = recorded.start, recorded.stop
    if stop - start <= 4 * max_lag:
        raise ValueError(f"take_lag: the span [{start}, {stop}) is too short for a lag of ±{max_lag}.")
    begin = max(0, start - TAKE_PREROLL)
    render = np.asarray(device.process(np.array(recorded.audio[begin:stop], dtype=np.float64),
                                       recorded.sample_rate, dict(recorded.setting)), dtype=np.float64)
    rendered = render[start - begin:]
    target = np.asarray(recorded.take[start + max_lag:stop - max_lag], dtype=np.float64)
    scores = correlate(rendered, target, mode="valid", method="fft")
    best = int(np.argmax(scores))
    window = rendered[best:best + len(target)]
    norm = float(np.sqrt(np.sum(target ** 2) * np.sum(window ** 2)))
    return best - max_lag, float(scores[best] / norm) if norm > 0 else 0.0


def delay_from_takes(device: Device, takes: Sequence[RecordedTake], max_lag: int = PAD) -> Latency:
    """The delay that lines ``device``'s renders up with a session's takes (the median of
    :func:`take_lag` over the takes that correlate, at most :data:`MAX_SETTINGS` of them spread over
    the list). Not confident when no take correlates at :data:`MIN_TAKE_CORRELATION` or more."""
    chosen = spread(takes)
    lags = sorted(lag for lag, rho in (take_lag(device, t, max_lag) for t in chosen)
                  if rho >= MIN_TAKE_CORRELATION)
    if not lags:
        return Latency(0, 1, "takes", 0, False, f"no recorded take matches the device's render (of "
                       f"{len(chosen)} compared, none correlates at {MIN_TAKE_CORRELATION} or more)")
    return Latency(lags[(len(lags) - 1) // 2], 1, "takes", lags[-1] - lags[0], True)


class DelayAligned:
    """``device`` with its own delay measured once per sample rate and removed from every render.

    For renders outside a session (screening's probes, the evaluation's grid and DI renders, the demo),
    where no take's blips are there to align on. Only the delay is removed: the device's polarity is
    kept (a session keeps it too, so a model learns it). A measurement that is not confident (a device
    that mutes at its default setting) leaves renders as they are, and says why in ``note``.

    With ``takes`` (a session's recorded takes), the delay is the one that lines renders up with them
    (:func:`delay_from_takes`) at their sample rate; the calibration's reading where they do not match.
    """

    def __init__(self, device: Device, setting: Mapping[str, object] | None = None,
                 probe: tuple[np.ndarray, SignalMap] | None = None,
                 settings: Sequence[Mapping[str, object]] = (),
                 takes: Sequence[RecordedTake] = ()) -> None:
        self.device = device
        self._takes = list(takes)
        # measured at each of these (a session's recorded settings, at most MAX_SETTINGS of them) and
        # the median kept: the calibration's reading of a device can move by a sample with the setting
        self._settings = spread([dict(s) for s in settings])
        self._probe = probe  # a session's own signal (:func:`signal_probe`); None: knobcap's
        self.name: str = getattr(device, "name", type(device).__name__)
        self.controls = device.controls
        self._setting = setting
        self.latencies: dict[int, Latency] = {}

    def delay(self, sample_rate: int) -> int:
        """Samples removed from renders at ``sample_rate`` (measured on first use)."""
        rate = int(sample_rate)
        matching = [t for t in self._takes if t.sample_rate == rate] if rate not in self.latencies else []
        if matching:
            matched = delay_from_takes(self.device, matching)
            if matched.confident:
                self.latencies[rate] = matched
        if rate not in self.latencies:
            probe = self._probe if self._probe is not None and self._probe[1].sample_rate == rate else None
            readings = [measure_delay(self.device, rate, s, probe=probe)
                        for s in (self._settings or [self._setting])]
            sure = sorted((r for r in readings if r.confident), key=lambda r: r.samples)
            self.latencies[rate] = sure[(len(sure) - 1) // 2] if sure else readings[0]
        latency = self.latencies[rate]
        return latency.samples if latency.confident else 0

    @property
    def note(self) -> str:
        """One line per measured rate: the delay removed, or why none was."""
        lines = []
        for rate, latency in sorted(self.latencies.items()):
            if latency.confident and latency.method == "takes":
                when = (f"{latency.samples} samples late" if latency.samples >= 0 else
                        f"{-latency.samples} sample(s) early")
                lines.append(f"{self.name}'s renders line up with the session's takes {when} at {rate} Hz "
                             "(measured on its recorded takes); renders aligned.")
            elif latency.confident:
                when = (f"{latency.samples} samples late" if latency.samples >= 0 else
                        f"{-latency.samples} sample(s) early as a take's calibration reads it")
                lines.append(f"{self.name} answers {when} at {rate} Hz (measured, {latency.method}); "
                             "renders aligned.")
            else:
                lines.append(f"{self.name}: its delay at {rate} Hz could not be measured "
                             f"({latency.reason}); renders left unaligned.")
        return " ".join(lines)

    def process(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        """The device's output at ``setting``, moved earlier by its measured delay (later when the
        delay is negative; same length)."""
        shift = self.delay(sample_rate)
        x = np.asarray(audio)
        if shift == 0:
            return np.asarray(self.device.process(x, sample_rate, setting))
        if shift < 0:
            y = np.asarray(self.device.process(x, sample_rate, setting))
            return np.concatenate([np.zeros(-shift, dtype=y.dtype), y[:len(y) + shift]])
        padded = np.concatenate([x, np.zeros(shift, dtype=x.dtype)])
        y = np.asarray(self.device.process(padded, sample_rate, setting))
        return y[shift:shift + len(x)]

    def __call__(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object] | None = None,
                 /, **controls: object) -> np.ndarray:
        full = {**self.controls.default_setting(), **(setting or {}), **controls}
        return self.process(audio, sample_rate, full)


def delay_aligned(device: Device, probe: tuple[np.ndarray, SignalMap] | None = None,
                  settings: Sequence[Mapping[str, object]] = (),
                  takes: Sequence[RecordedTake] = ()) -> DelayAligned:
    """``device`` aligned on its own measured delay (an already aligned one is returned as it is): lined
    up with ``takes`` (a session's recorded ones) when given and they match, else measured on ``probe``
    (:func:`signal_probe` of a session's signal) when given, at the median of ``settings`` (a
    session's recorded ones) when given, else at its default setting."""
    if isinstance(device, DelayAligned):
        return device
    return DelayAligned(device, probe=probe, settings=settings, takes=takes)
