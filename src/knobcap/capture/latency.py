"""Latency calibration: where the input arrives in a recording, with which polarity, and aligning it.

With blips (knobcap's own signal) each calibration pulse is found by matched filtering: the recording
around the blip's onset ``b`` is correlated with the reference pulse ``p``,

    r[k] = sum_j p[j] * y[b + k + j],   k = 0 .. max_lag,

and the first lobe of r as strong as half the strongest is the pulse's arrival (not the strongest:
some devices answer a pulse with a short lobe and a longer, bigger undershoot); its sign is the
device's polarity. A pulse counts as
found when its peak stands ``MIN_SNR`` times above the rms of the same filter run over the recording's
leading silence (the noise floor). Both blips must be found, agree in polarity and agree within
``MAX_DISAGREEMENT`` samples, otherwise the result is not confident. The answer is then held against
the music of ``validation_1`` (below): polarity and latency must agree there too, and the earlier onset
of the two is kept.

A bipolar response can hide its first lobe below half the strongest: the TS808 at drive 8-10, tone 0
with LED diodes answers the +0.5 pulse with a clipped spike, then a long undershoot as the gain leg's
capacitor recovers, and the dark tone stage smooths the spike far more than the undershoot, so the
true first lobe is only 0.38-0.49 of it (measured over drive x tone x diodes x fat). Read by the
half rule alone that is an inverted response 11 samples late, which the music rightly contradicts. So
when the first lobe reaching ``EARLY_LOBE`` (a quarter) of the strongest differs from it, the blips
give a second reading, and the music decides: the earliest confident reading that agrees with it is
kept. When neither agrees, or the music does not resemble the input (and so cannot decide), the
result is not confident. A quarter is above a linear-phase filter's pre-ringing after the matched
filter and above the noise (the lobe must also clear half the noise floor), and a false early lobe
would still have to agree between the two blips and with the music.

Without blips (a custom signal) the loudest 8 s of each half of the reference are cross-correlated
with the recording (FFT) over lags 0 .. max_lag, whitened by the input's spectrum so that music acts
like an impulse; the two estimates must agree the same way.

Onset, not peak: a device that low-passes the input delays the *peak* of its response by a few samples
beyond the true arrival. Aligning the whole response late asks a causal model to predict the future
(a 2-sample error on a pure delay costs an ESR of about 0.07 at 1 kHz), while aligning early costs
nothing (the model's receptive field absorbs it). So the arrival is the earliest lag of the arrival
lobe (same sign, ``|r| >= 0.1 |peak|``), plus the same distance measured on the reference's own
autocorrelation: exact for a pure delay, and for a filtering device only the response's first taps
below a tenth of its peak fall before it. Cross-correlation alone (a custom signal) is moved
``XCORR_SAFETY`` samples earlier still: on real guitar DI, whose top octaves are weak, its onset reads
the TS808 1-2 samples late.

The music moves the blips' reading earlier by at most ``MUSIC_PULL`` (2) samples. Unbounded (before
session 6), its onset, which moves with the setting, scattered the GxTubeScreamer LV2's takes: 27
settings x 4 delays with the 30-s signal read 1 late x 12, 2-7 early x 96; bounded, 1 late x 12 and 1
early x 96 (``latency_accuracy.py --seconds 30 --noise -85 --lv2 URI --delays 77 300 431 650``), and
every other row of that benchmark stays as it was at 30 and 60 s but the TS808 at drive 9, tone 5,
LED (2 early -> 1 early at 30 s). A model learns from takes whose alignment scatters as from blurred
ones: a 24-take, 30-s GxTubeScreamer session scored 0.112 / 0.323 / 0.448 on the dense grid, and
0.024 / 0.200 / 0.257 re-checked with the bound (median / p90 / max, 2,000 steps; docs/results.md).

Measured error in samples against the interface delay (benchmarks/latency_accuracy.py, noise -70 dBFS):
with blips (and the music cross-check): pure delay, inverted, 1.5 kHz one-pole, 200 Hz high-pass,
tanh(8x) into 2 kHz: 0; 2nd-order 1.5 kHz low-pass +1; 4th-order 3 kHz low-pass +2; tanh(30x) into
700 Hz -1; the TS808 at five settings 0, 0, -2, 0 and 0 (drive 10, tone 0, LED, fat: before the second
reading it was not confident, read inverted and 11 late). Before the first-lobe rule the TS808 at drive
3.6, tone 8.3 read inverted and 11 late. Over all 16 corners of the TS808 (drive 0/10, tone 0/10, both
switches, either polarity, noise -85 dBFS) the error is 0 (tests/test_latency.py checks them).
Cross-correlation alone (after the safety): knobcap's signal -2 to 0 (TS808 -2); a real DI recording
(celestial_guitar.wav) -2 for a pure delay, -7 (tanh(30x) into 700 Hz) to +3 (the 4th-order low-pass).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Literal, NamedTuple

import numpy as np
from scipy.fft import irfft, next_fast_len, rfft

from knobcap.capture.testsignal import SignalMap

MAX_DISAGREEMENT = 3      # samples between the two estimates for a confident result
MIN_SNR = 8.0             # blip peak over the matched filter's rms on the leading silence
MIN_XCORR = 0.1           # normalised cross-correlation needed without blips
MUSIC_TOLERANCE = 8       # samples between the blips' and the music's latency (a cross-check)
MUSIC_PULL = 2            # the most samples an earlier music onset moves the blips' reading
BLIP_ONSET_FRACTION = 0.1   # a lobe's edge, as a fraction of its peak
FIRST_LOBE = 0.5            # the first lobe this strong, relative to the strongest, is the arrival
EARLY_LOBE = 0.25           # an earlier lobe this strong makes a second reading, which the music judges
WHITEN_EPS = 1e-4           # regularisation of the whitened cross-correlation, relative to mean power
XCORR_SECONDS = 8.0       # length of each chunk cross-correlated without blips
XCORR_SAFETY = 2          # samples by which a latency from cross-correlation alone is moved earlier
_LOBE_LIMIT = 256         # how far back from the peak an onset may lie, in samples
CLARITY_GUARD = 64        # samples either side of a correlation's peak left out of its background
SMEARED = 10.0            # a correlation whose peak stands less than this over its background is smeared
COPY_RHO = 0.9            # music this alike the input (normalised correlation) is a copy of it
SHARPER = 3.0             # how many times clearer than a smeared estimate the other must be to overrule it
MIN_CLARITY = 20.0        # and it must stand at least this far above its own background

Method = Literal["blips", "xcorr", "takes"]  # "takes": a device lined up with a session's takes


@dataclass(frozen=True)
class Latency:
    """A recording's delay behind its input (``samples``), polarity (+1/-1) and how sure we are.

    ``disagreement`` is the distance in samples between the two independent estimates (two blips, or
    two halves of the signal); ``reason`` says in plain words why a result is not confident.
    """

    samples: int
    polarity: int
    method: Method
    disagreement: int
    confident: bool
    reason: str = ""

    def milliseconds(self, sample_rate: int) -> float:
        return 1000.0 * self.samples / sample_rate


def _lobe_onset(r: np.ndarray, peak: int, threshold: float) -> int:
    """Earliest index of the run ending at ``peak`` where r keeps the peak's sign and |r| >= threshold."""
    sign = np.sign(r[peak])
    k = peak
    while k > 0 and peak - k < _LOBE_LIMIT and r[k - 1] * sign >= threshold:
        k -= 1
    return k


def _self_offset(auto: np.ndarray, fraction: float) -> int:
    """For an autocorrelation ``auto`` (lag 0 first, lags >= 0), how far before its peak the lobe starts.

    The autocorrelation is symmetric, so the lobe's left edge lies as far before lag 0 as its right
    edge lies after it.
    """
    threshold = fraction * auto[0]
    k = 0
    while k + 1 < len(auto) and auto[k + 1] >= threshold:
        k += 1
    return k


def _arrival(r: np.ndarray, auto: np.ndarray, fraction: float, floor: float = 0.0,
             strong: float = FIRST_LOBE) -> tuple[int, int, int, float]:
    """(onset lag, lobe peak lag, polarity, |global peak|) of the *first* strong lobe in ``r``.

    The first lobe reaching ``strong`` (``FIRST_LOBE`` by default) of the strongest one, and ``floor``,
    is the arrival: a device whose response to a pulse is a short positive lobe followed by a long
    negative undershoot (a high-pass, a coupling capacitor recovering after clipping: the TS808 does
    this) must not read as inverted and late. ``auto`` is the reference's autocorrelation (lags >= 0),
    which gives the onset's offset.
    """
    offset = _self_offset(auto, fraction)
    magnitude = np.abs(r)
    height = float(magnitude.max())
    first = int(np.argmax(magnitude >= max(strong * height, floor)))
    sign = np.sign(r[first])
    end = first
    while end + 1 < len(r) and r[end + 1] * sign > 0:
        end += 1
    peak = first + int(np.argmax(magnitude[first:end + 1]))
    onset = _lobe_onset(r, peak, max(fraction * float(magnitude[peak]), floor))
    return min(onset + offset, peak), peak, (1 if sign >= 0 else -1), height


def _clarity(r: np.ndarray) -> float:
    """How sharply the strongest peak of ``r`` stands out: |peak| over the rms of r away from it.

    The background leaves out ``CLARITY_GUARD`` samples either side of the peak. A blip's matched
    filter in silence, or a clean device's whitened music correlation, reads in the hundreds; a
    correlation smeared by distortion or noise over many lags reads near 1.
    """
    magnitude = np.abs(r)
    peak = int(np.argmax(magnitude))
    background = np.concatenate([r[:max(0, peak - CLARITY_GUARD)], r[peak + CLARITY_GUARD + 1:]])
    if len(background) == 0:
        return float("inf")
    rms = float(np.sqrt(np.mean(background * background)))
    return float(magnitude[peak]) / rms if rms > 0 else float("inf")


def _padded(x: np.ndarray, start: int, n: int) -> np.ndarray:
    """x[start:start + n] as float64, zero-padded past the end."""
    out = np.zeros(n)
    part = np.asarray(x[start:start + n], dtype=np.float64)
    out[:len(part)] = part
    return out


def calibrate_latency(recorded: np.ndarray, reference: np.ndarray, signal_map: SignalMap,
                      max_seconds: float = 0.5) -> Latency:
    """Find the latency and polarity of ``recorded`` relative to ``reference`` (the test signal)."""
    recorded = np.asarray(recorded)
    if recorded.ndim != 1:
        raise ValueError(f"calibrate_latency needs a mono recording; got shape {recorded.shape}.")
    max_lag = round(max_seconds * signal_map.sample_rate)
    if max_lag < 0:
        raise ValueError("max_seconds must not be negative.")
    if signal_map.blips:
        readings, peaks, clarity = _from_blips(recorded, np.asarray(reference), signal_map, max_lag)
        if any(r.confident for r in readings):
            return _cross_check(readings, (peaks, clarity), recorded, np.asarray(reference), signal_map,
                                max_lag)
        return readings[0]
    return _from_xcorr(recorded, np.asarray(reference), max_lag, signal_map.sample_rate)


def _from_blips(recorded: np.ndarray, reference: np.ndarray, signal_map: SignalMap,
                max_lag: int) -> tuple[list[Latency], list[int], float]:
    """The blips' reading by the first lobe of ``FIRST_LOBE``; then, when it differs, by ``EARLY_LOBE``.

    A second reading means the blips' response is bipolar with an earlier lobe too weak for the first
    rule but too strong to be noise or a filter's pre-ringing: the validation music decides. Also
    returned: each reading's earliest lobe peak, and the least :func:`_clarity` of the blips' matched
    filter outputs.
    """
    blips = signal_map.blips
    size = signal_map.blip_length
    pulse = np.asarray(reference[blips[0]:blips[0] + size], dtype=np.float64)
    spacing = min((b - a for a, b in pairwise(blips)), default=signal_map.length)
    if max_lag + size >= spacing:
        raise ValueError(f"a latency of {max_lag} samples cannot be searched with blips {spacing} samples "
                         f"apart; lower max_seconds.")
    auto = np.array([np.dot(pulse[:size - k], pulse[k:]) for k in range(size)])
    lead = _padded(recorded, 0, blips[0])
    dc = float(np.mean(lead)) if len(lead) else 0.0  # a DC offset must not read as a blip or as noise
    lead -= dc
    noise = np.correlate(lead, pulse, mode="valid")
    noise_rms = float(np.sqrt(np.mean(noise * noise))) if len(noise) else 0.0
    floor = MIN_SNR * noise_rms
    least = 1e-4 * float(np.dot(pulse, pulse))  # -80 dB below the pulse's own energy: a digital zero
    found: list[tuple[int, int, int]] = []
    early: list[tuple[int, int, int]] = []
    clarity = float("inf")
    for onset in blips:
        window = _padded(recorded, onset, max_lag + size) - dc
        r = np.correlate(window, pulse, mode="valid")
        lag, peak, polarity, height = _arrival(r, auto, BLIP_ONSET_FRACTION, floor / 2)
        if height > floor and height > least:
            clarity = min(clarity, _clarity(r))
            found.append((lag, peak, polarity))
            early.append(_arrival(r, auto, BLIP_ONSET_FRACTION, floor / 2, EARLY_LOBE)[:3])
    if len(found) < len(blips):
        missing = len(blips) - len(found)
        lag, polarity = (found[0][0], found[0][2]) if found else (0, 1)
        return [Latency(lag, polarity, "blips", 0, False,
                        f"{missing} of the {len(blips)} calibration blips did not stand out of the noise "
                        f"within {max_lag} samples of where they were played")], [0], 0.0
    readings, peaks = [_combine(found)], [min(f[1] for f in found)]
    if early != found:
        readings.append(_combine(early))
        peaks.append(min(f[1] for f in early))
    return readings, peaks, clarity


def _combine(found: list[tuple[int, int, int]]) -> Latency:
    """One latency from every blip's (onset lag, peak lag, polarity): they must agree."""
    lags = [f[0] for f in found]
    peaks = [f[1] for f in found]
    disagreement = max(peaks) - min(peaks)
    if len({f[2] for f in found}) > 1:
        return Latency(min(lags), found[0][2], "blips", disagreement, False,
                       "the calibration blips came back with opposite polarities")
    if disagreement > MAX_DISAGREEMENT:
        return Latency(min(lags), found[0][2], "blips", disagreement, False,
                       f"the calibration blips disagree by {disagreement} samples")
    return Latency(min(lags), found[0][2], "blips", disagreement, True)


def _words(samples: int, sign: int) -> str:
    return f"{samples} samples{'' if sign > 0 else ', inverted'}"


def _cross_check(readings: list[Latency], blips_seen: tuple[list[int], float], recorded: np.ndarray,
                 reference: np.ndarray, signal_map: SignalMap, max_lag: int) -> Latency:
    """Hold the blips' readings against the music of ``validation_1`` (whitened cross-correlation).

    When the music resembles the input (normalised correlation >= ``MIN_XCORR``) a confident reading
    must agree with it in polarity and within ``MUSIC_TOLERANCE`` samples; the earliest such reading
    is kept, moved earlier to the music's onset when that is earlier, by at most ``MUSIC_PULL``
    samples (each can read a low-passing device's onset a little late, and early costs a causal model
    nothing; but the music's onset scatters with the setting, and an unbounded pull scattered the
    GxTubeScreamer's takes from 1 to 7 samples early). When the music says nothing (no ``validation_1``, or a
    lower correlation), a single reading stands and two readings (a bipolar response) are not confident.
    When no reading agrees with the music, the clearly sharper correlation decides (:func:`_sharper`);
    when neither is, but the music's onset is a blips' reading's (within ``MUSIC_TOLERANCE``) with the
    opposite sign, and the music is no copy of the input (``rho < COPY_RHO``: the device distorts), the
    earliest such reading stands: a distorting device can invert the music's band and not an impulse's
    first lobe (the GxStudioPre's tube stages, rho 0.3-0.5: the blips read every take's latency exactly,
    the music's sign changed with the setting, and 4 takes of 16 had failed the check). A copy of the
    input (rho ~1) that contradicts the blips' sign came by another path (an edit): not confident.
    """
    lag, polarity, rho = 0, 1, 0.0
    music: _Estimate | None = None
    if signal_map.has("validation_1"):
        seg = signal_map.segment("validation_1")
        ref = np.asarray(reference[seg.start:seg.stop], dtype=np.float64)
        music = _xcorr_estimate(recorded, ref, seg.start, max_lag)
        lag, polarity, rho = music.onset, music.polarity, music.rho
    if rho < MIN_XCORR:
        if len(readings) == 1:
            return readings[0]
        options = " or ".join(_words(r.samples, r.polarity) for r in readings)
        return replace(readings[0], confident=False, reason=(
            f"the calibration blips' response is bipolar ({options}) and the validation music is too "
            f"unlike the input to tell which is the arrival"))
    usable = sorted((r for r in readings if r.confident), key=lambda r: r.samples)
    peaks = {r.samples: p for r, p in zip(readings, blips_seen[0], strict=True)}
    blip_clarity = blips_seen[1]
    for reading in usable:
        if reading.polarity == polarity and abs(lag - reading.samples) <= MUSIC_TOLERANCE:
            return replace(reading, samples=min(reading.samples, max(lag, reading.samples - MUSIC_PULL)))
    assert music is not None  # rho >= MIN_XCORR needs the music's estimate
    decided = _sharper(usable, [peaks[r.samples] for r in usable], blip_clarity, music)
    if decided is not None:
        return decided
    near = [r for r in usable if abs(lag - r.samples) <= MUSIC_TOLERANCE]
    if near and all(r.polarity != polarity for r in near) and rho < COPY_RHO:
        return replace(near[0], reason=(
            f"the validation music reads {_words(lag, polarity)}: the same arrival as the blips' "
            f"{_words(near[0].samples, near[0].polarity)} with the opposite sign, as from a device that "
            f"inverts the music's band but not an impulse's first lobe; the blips' reading was kept"))
    blips = " or ".join(_words(r.samples, r.polarity) for r in usable)
    bipolar = " (their response is bipolar)" if len(usable) > 1 else ""
    return replace(usable[0], confident=False, reason=(
        f"the blips give {blips}{bipolar} but the validation music gives {_words(lag, polarity)}, and "
        f"neither correlation is clearly sharper {_clarities(blip_clarity, music)}"))


def _clarities(blips: float, music: _Estimate) -> str:
    return f"(peak over background: blips {blips:.0f}, music {music.clarity:.0f})"


def _sharper(usable: list[Latency], peaks: list[int], blip_clarity: float, music: _Estimate
             ) -> Latency | None:
    """The blips' or the music's reading, whichever correlation is ``SHARPER`` times clearer; or None.

    Clarity is :func:`_clarity`: the peak over the correlation's rms away from it. Distortion into a
    dark tone smears the music's whitened correlation over hundreds of lags (its onset then reads far
    early, or on a noise lobe) while the blips' matched filter stays sharp; a ringing device can do
    the opposite to the blips. Only a smeared estimate (clarity under ``SMEARED``) is overruled, by one
    at least ``SHARPER`` times and ``MIN_CLARITY`` clear: two sharp estimates that disagree (a take
    edited or glitched between the blips and the music) stay not confident. The blips win only with
    the reading the music's strongest lobe confirms (same sign, within ``MUSIC_TOLERANCE`` of the
    reading's lobe peak, ``peaks``): a
    smeared correlation's onset is unreliable but its peak still is; a bipolar response that reads
    inverted and late from the blips alone is so refused, not accepted. ``reason`` says what was
    overruled.
    """
    figures = _clarities(blip_clarity, music)
    if music.clarity < SMEARED and blip_clarity >= max(MIN_CLARITY, SHARPER * music.clarity):
        chosen = [r for r, p in zip(usable, peaks, strict=True) if r.polarity == music.strongest_sign
                  and abs(music.strongest - p) <= MUSIC_TOLERANCE]
        if len(chosen) != 1:
            return None
        return replace(chosen[0], reason=(
            f"the validation music's onset reads {_words(music.onset, music.polarity)}, but its "
            f"correlation is smeared; the blips' is far sharper {figures} and the music's strongest "
            f"peak ({_words(music.strongest, music.strongest_sign)}) agrees with them: kept"))
    if blip_clarity < SMEARED and music.clarity >= max(MIN_CLARITY, SHARPER * blip_clarity):
        blips = " or ".join(_words(r.samples, r.polarity) for r in usable)
        return replace(usable[0], samples=music.onset, polarity=music.polarity, reason=(
            f"the blips give {blips}, but their correlation is smeared; the validation music's is far "
            f"sharper {figures} and was kept"))
    return None


class _Estimate(NamedTuple):
    """A whitened cross-correlation's reading (see :func:`_xcorr_estimate`)."""

    onset: int        # the first strong lobe's onset (as for a blip)
    peak: int         # that lobe's peak
    polarity: int     # that lobe's sign
    rho: float        # the plain correlation's normalised peak: how alike input and recording are
    clarity: float    # :func:`_clarity` of the whitened correlation
    strongest: int    # lag of the strongest lobe's peak (may differ from ``peak``)
    strongest_sign: int


def _xcorr_estimate(recorded: np.ndarray, ref: np.ndarray, start: int, max_lag: int) -> _Estimate:
    """(onset lag, peak lag, polarity, normalised correlation, ...) of ``ref``, played at ``start``.

    The cross-spectrum is whitened by the input's power spectrum (regularised by ``WHITEN_EPS`` times
    its mean), h = IFFT(Y conj(X) / (|X|^2 + eps)): an estimate of the device's impulse response, whose
    onset is found as for a blip. Music's own wide correlation lobe would otherwise blur the onset.
    The plain correlation's peak, normalised by both energies, says how alike the two are.
    """
    rec = _padded(recorded, start, len(ref) + max_lag)
    rec -= rec.mean()  # a DC offset correlates with nothing
    ref = ref - ref.mean()
    size = next_fast_len(len(rec) + len(ref))
    spectrum = rfft(ref, size)
    power = np.abs(spectrum) ** 2
    cross = rfft(rec, size) * np.conj(spectrum)
    eps = WHITEN_EPS * float(np.mean(power))
    h = irfft(cross / (power + eps), size)[:max_lag + 1]
    auto = irfft(power / (power + eps), size)[:min(_LOBE_LIMIT, len(ref) - 1) + 1]
    lag, peak, polarity, _ = _arrival(h, auto, BLIP_ONSET_FRACTION)
    r = irfft(cross, size)[:max_lag + 1]
    best = int(np.argmax(np.abs(r)))
    energy = float(np.dot(ref, ref)) * float(np.dot(rec[best:best + len(ref)], rec[best:best + len(ref)]))
    rho = abs(float(r[best])) / np.sqrt(energy) if energy > 0 else 0.0
    strongest = int(np.argmax(np.abs(h)))
    return _Estimate(lag, peak, polarity, rho, _clarity(h), strongest, 1 if h[strongest] >= 0 else -1)


def _loudest_chunk(ref: np.ndarray, start: int, stop: int, size: int) -> int:
    """Start of the most energetic ``size``-sample chunk of ref[start:stop] (half-chunk steps)."""
    best, best_energy = start, -1.0
    for s in range(start, max(start, stop - size) + 1, max(1, size // 2)):
        chunk = ref[s:s + size]
        energy = float(np.dot(chunk, chunk))
        if energy > best_energy:
            best, best_energy = s, energy
    return best


def _from_xcorr(recorded: np.ndarray, reference: np.ndarray, max_lag: int, sample_rate: int) -> Latency:
    """Two estimates from the loudest ``XCORR_SECONDS`` of each half of the reference."""
    ref = np.asarray(reference, dtype=np.float64)
    if not np.any(ref):
        raise ValueError("the reference signal is silent; latency cannot be found from it.")
    half = len(ref) // 2
    size = min(half, round(XCORR_SECONDS * sample_rate))
    estimates = []
    for lo, hi in ((0, half), (half, len(ref))):
        s = _loudest_chunk(ref, lo, hi, size)
        estimates.append(_xcorr_estimate(recorded, ref[s:s + size], s, max_lag))
    lag = max(0, min(e[0] for e in estimates) - XCORR_SAFETY)
    strongest = max(estimates, key=lambda e: e[3])
    rho = min(e[3] for e in estimates)
    disagreement = abs(estimates[0][1] - estimates[1][1])
    if rho < MIN_XCORR:
        return Latency(lag, strongest[2], "xcorr", disagreement, False,
                       f"the recording hardly resembles the input (correlation {rho:.2f})")
    if estimates[0][2] != estimates[1][2] or disagreement > MAX_DISAGREEMENT:
        return Latency(lag, strongest[2], "xcorr", disagreement, False,
                       f"the two halves of the signal give latencies {disagreement} samples apart")
    return Latency(lag, strongest[2], "xcorr", disagreement, True)


def align(recorded: np.ndarray, latency: Latency | int, length: int) -> np.ndarray:
    """The recording moved earlier by the latency, its polarity fixed, trimmed or zero-padded to ``length``.

    ``out[n] = polarity * recorded[n + latency]`` (zero where the recording has ended), as float32.
    """
    if isinstance(latency, Latency):
        shift, polarity = latency.samples, latency.polarity
    else:
        shift, polarity = int(latency), 1
    if shift < 0:
        raise ValueError(f"latency must not be negative; got {shift} samples.")
    out = np.zeros(length, dtype=np.float32)
    part = np.asarray(recorded[shift:shift + length], dtype=np.float32)
    out[:len(part)] = part if polarity >= 0 else -part
    return out
