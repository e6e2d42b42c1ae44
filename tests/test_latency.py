"""Latency calibration: blips and cross-correlation, polarity, noise, filtering devices, and align."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, lfilter

from knobcap.capture.latency import MAX_DISAGREEMENT, XCORR_SAFETY, Latency, align, calibrate_latency
from knobcap.capture.testsignal import TestSignal, custom_signal_map

RATE = 48_000
DI = Path("/work/shared/data/di")


def delayed(x: np.ndarray, delay: int, polarity: int = 1, noise_dbfs: float | None = None,
            seed: int = 0) -> np.ndarray:
    y = np.concatenate([np.zeros(delay), polarity * np.asarray(x, dtype=np.float64), np.zeros(RATE // 2)])
    if noise_dbfs is not None:
        y = y + 10 ** (noise_dbfs / 20) * np.random.default_rng(seed).standard_normal(len(y))
    return y


@pytest.mark.parametrize("delay", [0, 1, 137, 4_800, 23_990])
def test_pure_delay_is_exact(signal: TestSignal, delay: int) -> None:
    lat = calibrate_latency(delayed(signal.audio, delay), signal.audio, signal.map)
    assert lat == Latency(delay, 1, "blips", 0, True)


def test_polarity_inversion_and_noisy_floor(signal: TestSignal) -> None:
    y = delayed(signal.audio, 250, polarity=-1, noise_dbfs=-40)
    lat = calibrate_latency(y, signal.audio, signal.map)
    assert (lat.samples, lat.polarity, lat.confident) == (250, -1, True)


def test_dc_offset_does_not_hide_the_blips(signal: TestSignal) -> None:
    lat = calibrate_latency(delayed(signal.audio, 99) + 0.1, signal.audio, signal.map)
    assert (lat.samples, lat.confident) == (99, True)


@pytest.mark.parametrize(("name", "late"),
                         [("lowpass", 2), ("butterworth", 3), ("drive", 2), ("highpass", 0)])
def test_filtering_devices_are_never_aligned_late(signal: TestSignal, name: str, late: int) -> None:
    """The onset, not the peak: a low-passing device is aligned at most a couple of samples late (and at
    most a few early, which a causal model absorbs)."""
    x = signal.audio.astype(np.float64)
    if name == "lowpass":
        pole = np.exp(-2 * np.pi * 1500 / RATE)
        y = lfilter([1 - pole], [1, -pole], x)
    elif name == "butterworth":
        y = lfilter(*butter(2, 1500 / (RATE / 2)), x)
    elif name == "drive":
        pole = np.exp(-2 * np.pi * 700 / RATE)
        y = lfilter([1 - pole], [1, -pole], np.tanh(30 * x))
    else:
        y = lfilter(*butter(1, 200 / (RATE / 2), "high"), x)
    lat = calibrate_latency(delayed(y, 77, noise_dbfs=-70), signal.audio, signal.map)
    assert lat.confident and lat.polarity == 1
    assert -4 <= lat.samples - 77 <= late


def test_blips_that_disagree_are_not_confident(signal: TestSignal) -> None:
    """A recording that dropped samples between the two blips (a glitch) is refused."""
    y = delayed(signal.audio, 300)
    b2 = signal.map.blips[1]
    glitched = np.concatenate([y[:b2 - 1000], y[b2 - 1000 + 20:]])  # 20 samples lost before blip 2
    glitched = np.concatenate([glitched[:b2 - 1000], np.zeros(40), glitched[b2 - 1000:]])  # 40 added
    lat = calibrate_latency(glitched, signal.audio, signal.map)
    assert not lat.confident and lat.disagreement == 20 > MAX_DISAGREEMENT
    assert "disagree by 20 samples" in lat.reason


def test_opposite_blip_polarities_are_not_confident(signal: TestSignal) -> None:
    y = delayed(signal.audio, 10)
    b2 = signal.map.blips[1] + 10
    y[b2:b2 + 4] *= -1
    lat = calibrate_latency(y, signal.audio, signal.map)
    assert not lat.confident and "opposite polarities" in lat.reason


@pytest.mark.parametrize("case", ["too_late", "silent", "noise_only"])
def test_no_blips_found(signal: TestSignal, case: str) -> None:
    n = len(signal.audio)
    if case == "too_late":
        y = delayed(signal.audio, 30_000)  # 0.625 s, beyond the 0.5 s searched
    elif case == "silent":
        y = np.zeros(n)
    else:
        y = np.random.default_rng(1).standard_normal(n) * 0.01
    lat = calibrate_latency(y, signal.audio, signal.map)
    assert not lat.confident and "did not stand out" in lat.reason


def test_search_range_must_fit_between_blips(signal: TestSignal) -> None:
    with pytest.raises(ValueError, match="lower max_seconds"):
        calibrate_latency(signal.audio, signal.audio, signal.map, max_seconds=1.0)


def test_cross_correlation_without_blips(signal: TestSignal) -> None:
    custom = custom_signal_map(signal.audio, RATE)
    y = delayed(signal.audio, 1234, polarity=-1, noise_dbfs=-50)
    lat = calibrate_latency(y, signal.audio, custom)
    assert (lat.polarity, lat.method, lat.confident) == (-1, "xcorr", True)
    assert -XCORR_SAFETY - 1 <= lat.samples - 1234 <= 0
    unrelated = np.random.default_rng(2).standard_normal(len(y)) * 0.1
    assert not calibrate_latency(unrelated, signal.audio, custom).confident


def test_cross_correlation_on_a_real_di_recording() -> None:
    files = sorted(DI.glob("*.wav")) if DI.is_dir() else []
    if not files:
        pytest.skip(f"no DI recordings in {DI}")
    x, rate = sf.read(str(files[0]), dtype="float32", frames=40 * RATE, always_2d=True)
    x = x[:, 0]
    pole = np.exp(-2 * np.pi * 2000 / rate)
    y = delayed(lfilter([1 - pole], [1, -pole], np.tanh(8 * x)), 512, noise_dbfs=-70)
    lat = calibrate_latency(y, x, custom_signal_map(x, rate))
    assert lat.confident and -6 <= lat.samples - 512 <= 0


def test_align_shifts_fixes_polarity_and_pads() -> None:
    rec = np.arange(10, dtype=np.float32)
    assert align(rec, Latency(3, -1, "blips", 0, True), 5).tolist() == [-3, -4, -5, -6, -7]
    assert align(rec, 8, 5).tolist() == [8, 9, 0, 0, 0]
    assert align(rec, 0, 12).dtype == np.float32 and len(align(rec, 0, 12)) == 12
    with pytest.raises(ValueError, match="negative"):
        align(rec, -1, 5)


def test_ts808_pulse_response_is_not_read_as_inverted(signal: TestSignal) -> None:
    """The TS808 answers a pulse with a short positive lobe and a bigger, longer undershoot."""
    from knobcap.devices import get_device

    head = signal.map.segment("validation_1").stop
    setting = {"drive": 3.6, "tone": 8.3, "diodes": "led", "fat": "on"}
    wet = get_device("ts808").process(signal.audio[:head].astype(np.float64), RATE, setting)
    y = np.zeros(len(signal.audio) + 651)
    y[651:651 + head] = wet
    lat = calibrate_latency(y, signal.audio, signal.map)
    assert lat.confident and lat.polarity == 1 and -3 <= lat.samples - 651 <= 0


def test_blips_contradicted_by_the_music_are_not_confident(signal: TestSignal) -> None:
    """A recording whose blips were edited in (or came through a different path) is caught."""
    y = delayed(signal.audio, 200)
    v1 = signal.map.segment("validation_1")
    y[v1.start + 200:v1.stop + 200] = -delayed(signal.audio, 0)[v1.start:v1.stop]
    lat = calibrate_latency(y, signal.audio, signal.map)
    assert not lat.confident and "validation music gives 200 samples, inverted" in lat.reason

TS808_CORNERS = [{"drive": d, "tone": t, "diodes": di, "fat": fat} for d in (0.0, 10.0) for t in (0.0, 10.0)
                 for di in ("silicon", "led") for fat in ("off", "on")]
DARK_HOT = {"drive": 10.0, "tone": 0.0, "diodes": "led", "fat": "on"}  # its blip response is bipolar


def ts808_head(signal: TestSignal, setting: dict) -> np.ndarray:
    """The TS808's answer to the signal up to the end of ``validation_1`` (all the calibration reads)."""
    from knobcap.devices import get_device

    head = signal.map.segment("validation_1").stop
    return get_device("ts808").process(signal.audio[:head].astype(np.float64), RATE, setting)


def recording(wet: np.ndarray, total: int, delay: int, polarity: int = 1, noise_dbfs: float = -80.0,
              seed: int = 0) -> np.ndarray:
    y = np.zeros(total + delay)
    y[delay:delay + len(wet)] = polarity * wet
    return y + 10 ** (noise_dbfs / 20) * np.random.default_rng(seed).standard_normal(len(y))


def test_ts808_corners_are_calibrated_exactly(signal: TestSignal) -> None:
    """Every corner of the TS808 (drive 0/10, tone 0/10, both switches), either polarity: the latency is
    never late and at most 3 samples early. At drive 10, tone 0, LED the pulse's first (true) lobe is
    only about 0.4 of its undershoot; it used to read inverted and 11 samples late."""
    for i, setting in enumerate(TS808_CORNERS):
        delay, polarity = 100 + 37 * i, (-1) ** i
        y = recording(ts808_head(signal, setting), len(signal.audio), delay, polarity, seed=i)
        lat = calibrate_latency(y, signal.audio, signal.map)
        assert lat.confident, (setting, lat.reason)
        assert lat.polarity == polarity and -3 <= lat.samples - delay <= 0, (setting, lat)


@pytest.mark.parametrize("noise_dbfs", [-80.0, -40.0])
def test_bipolar_blips_inverted_and_noisy_take(signal: TestSignal, noise_dbfs: float) -> None:
    wet = ts808_head(signal, DARK_HOT)
    lat = calibrate_latency(recording(wet, len(signal.audio), 321, -1, noise_dbfs), signal.audio, signal.map)
    assert lat.confident and lat.polarity == -1 and -3 <= lat.samples - 321 <= 0


def test_bipolar_blips_are_refused_when_the_music_is_shifted(signal: TestSignal) -> None:
    """Samples lost between the blips and the validation music (a glitch) still fail: neither of the
    blips' two readings agrees with the music."""
    y = recording(ts808_head(signal, DARK_HOT), len(signal.audio), 200)
    cut = signal.map.segment("validation_1").start - 1000
    glitched = np.concatenate([y[:cut], y[cut + 20:]])  # the music arrives 20 samples early
    lat = calibrate_latency(glitched, signal.audio, signal.map)
    assert not lat.confident
    assert "bipolar" in lat.reason and "validation music gives 180 samples" in lat.reason


def test_bipolar_blips_are_not_guessed_without_the_music(signal: TestSignal) -> None:
    """When the validation music does not resemble the input, the blips' two readings are not settled
    by a guess."""
    y = recording(ts808_head(signal, DARK_HOT), len(signal.audio), 200)
    v1 = signal.map.segment("validation_1")
    y[v1.start:v1.stop + 300] = 0.05 * np.random.default_rng(4).standard_normal(v1.length + 300)
    lat = calibrate_latency(y, signal.audio, signal.map)
    assert not lat.confident and "too unlike the input" in lat.reason


def test_music_smeared_by_dark_distortion_defers_to_the_sharp_blips(signal: TestSignal) -> None:
    """tanh(300x) into a 200 Hz low-pass (as GxTubeScreamer at drive 1, tone 100) smears the music's
    whitened correlation: its onset reads 0. The blips stay sharp and the music's strongest peak agrees
    with them, so their reading is kept (it used to be refused), and the reason says why."""
    from scipy.signal import butter

    head = signal.map.segment("validation_1").stop
    wet = lfilter(*butter(2, 200 / (RATE / 2)), np.tanh(300 * signal.audio[:head].astype(np.float64)))
    lat = calibrate_latency(recording(wet, len(signal.audio), 300, noise_dbfs=-80.0), signal.audio,
                            signal.map)
    assert lat.confident and lat.polarity == 1 and 0 <= lat.samples - 300 <= 6, lat
    assert "smeared" in lat.reason and "blips' is far sharper" in lat.reason


def test_sharp_blips_contradicted_by_the_music_s_peak_are_still_refused(signal: TestSignal) -> None:
    """A high-pass before the distortion makes the blips read inverted and late; the music is smeared
    but its strongest peak says otherwise, so the take is refused rather than aligned wrongly."""
    from scipy.signal import butter

    head = signal.map.segment("validation_1").stop
    x = lfilter(*butter(1, 100 / (RATE / 2), "high"), signal.audio[:head].astype(np.float64))
    wet = lfilter(*butter(2, 200 / (RATE / 2)), np.tanh(100 * x))
    lat = calibrate_latency(recording(wet, len(signal.audio), 300, noise_dbfs=-80.0), signal.audio,
                            signal.map)
    assert not lat.confident and "neither correlation is clearly sharper" in lat.reason


def test_clarity_reads_a_spike_high_and_noise_low() -> None:
    from knobcap.capture.latency import SMEARED, _clarity

    spike = np.zeros(4000)
    spike[100] = 1.0
    noise = np.random.default_rng(0).standard_normal(4000)
    assert _clarity(spike + 1e-3 * noise) > 100 > SMEARED > _clarity(noise)


def test_a_distorting_device_that_inverts_the_music_but_not_the_blips_onset_keeps_the_blips(
        signal: TestSignal) -> None:
    """A tube-like stage: the music comes back clipped and inverted (far from a copy of the input), the
    blips' first lobe positive, at the same arrival: the blips' reading stands (GxStudioPre)."""
    y = delayed(signal.audio, 200)
    v1 = signal.map.segment("validation_1")
    y[v1.start + 200:v1.stop + 200] = -np.tanh(30 * delayed(signal.audio, 0)[v1.start:v1.stop])
    lat = calibrate_latency(y, signal.audio, signal.map)
    assert lat.confident and (lat.samples, lat.polarity) == (200, 1)
    assert "blips' reading was kept" in lat.reason
