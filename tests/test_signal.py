"""The test signal: determinism, layout, levels, the map, files, and custom signals."""

from __future__ import annotations

import hashlib
import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from knobcap.capture.testsignal import (
    MAX_SECONDS,
    MIN_SECONDS,
    SEGMENT_NAMES,
    SIGNAL_VERSION,
    SignalError,
    SignalMap,
    TestSignal,
    custom_signal_map,
    generate_signal,
    read_signal,
    write_signal,
)

# sha256 of the 30 s signal as little-endian int32 24-bit codes. A change here means the signal changed:
# bump SIGNAL_VERSION and record the new hash together.
HASHES = {1: "10493e9ad2756bce50b2b29e783f4fdd71895ae9df4318171eb67e9252f23adc"}
RATE = 48_000


def codes(audio: np.ndarray) -> np.ndarray:
    return (audio.astype(np.float64) * 2 ** 23).astype("<i4")


def dbfs(x: np.ndarray) -> float:
    return 20 * np.log10(float(np.max(np.abs(x))) + 1e-12)


def test_same_bytes_every_time(signal: TestSignal) -> None:
    assert hashlib.sha256(codes(signal.audio).tobytes()).hexdigest() == HASHES[SIGNAL_VERSION]
    again = generate_signal(30.0)
    assert np.array_equal(again.audio, signal.audio)
    assert again.map == signal.map


def test_audio_is_on_the_24_bit_grid(signal: TestSignal) -> None:
    scaled = signal.audio.astype(np.float64) * 2 ** 23
    assert signal.audio.dtype == np.float32
    assert np.array_equal(scaled, np.round(scaled))


def test_segments_in_order_and_cover_the_signal(signal: TestSignal) -> None:
    m = signal.map
    assert tuple(s.name for s in m.segments) == SEGMENT_NAMES
    assert m.segments[0].start == 0 and m.segments[-1].stop == m.length == len(signal.audio)
    for a, b in pairwise(m.segments):
        assert a.stop == b.start
    assert m.length == 30 * RATE and m.version == SIGNAL_VERSION and m.sample_rate == RATE
    assert m.train_span == (m.segment("validation_1").stop, m.segment("validation_2").start)


def test_validation_copies_identical_and_musical(signal: TestSignal) -> None:
    v1, v2 = signal.part("validation_1"), signal.part("validation_2")
    assert np.array_equal(v1, v2)
    assert 4.5 * RATE <= len(v1) <= 5.5 * RATE
    # several dynamics inside the phrase: soft, middle and loud thirds
    thirds = [dbfs(p) for p in np.array_split(v1, 3)]
    assert thirds[0] < -25 and thirds[2] > -6


def test_blips_are_isolated_pulses(signal: TestSignal) -> None:
    m = signal.map
    assert m.blips == (m.segment("blip_1").start, m.segment("blip_2").start)
    for b in m.blips:
        assert signal.audio[b] > 0.4
        assert not np.any(signal.audio[b + m.blip_length:b + RATE // 2 + m.blip_length])
    assert not np.any(signal.part("silence"))


@pytest.mark.parametrize("seconds", [MIN_SECONDS, MAX_SECONDS])
def test_length_and_peak_limit(seconds: float) -> None:
    sig = generate_signal(seconds)
    assert len(sig.audio) == round(seconds * RATE)
    assert dbfs(sig.audio) <= -1.0
    playing = sig.part("playing")
    assert len(playing) > 0.35 * len(sig.audio)
    if seconds == MAX_SECONDS:
        assert 8.5 * RATE <= sig.map.segment("validation_1").length <= 9.5 * RATE
        # wide dynamics: loudest and softest 1 s windows of playing span most of -40 .. -1 dBFS
        windows = [dbfs(w) for w in np.array_split(playing[:len(playing) - RATE], len(playing) // RATE - 1)]
        assert min(w for w in windows if w > -100) < -30 and max(windows) > -4


def test_every_segment_ends_in_silence(signal: TestSignal) -> None:
    for name in ("validation_1", "sweeps", "noise", "playing"):
        assert not np.any(signal.part(name)[-RATE // 50:]), name


def test_sweeps_rise_in_frequency_and_level(signal: TestSignal) -> None:
    sweeps = signal.part("sweeps").astype(np.float64)
    first = sweeps[:len(sweeps) // 3]
    body = first[np.abs(first) > 0]
    crossings = np.flatnonzero(np.diff(np.sign(body)) != 0)
    early = np.sum(crossings < RATE // 10)
    late = np.sum(crossings > len(body) - RATE // 10)
    assert late > 20 * early
    levels = [dbfs(p) for p in np.array_split(sweeps, 3)]
    assert levels == pytest.approx([-30, -18, -6], abs=0.2)


def test_noise_levels(signal: TestSignal) -> None:
    noise = signal.part("noise").astype(np.float64)
    bursts = np.array_split(noise, 8)
    rms = [10 * np.log10(np.mean(b[np.abs(b) > 0] ** 2)) for b in bursts]
    assert rms[0] == pytest.approx(-40, abs=0.5) and rms[-2] == pytest.approx(-12, abs=0.5)


@pytest.mark.parametrize("seconds", [10.0, 200.0])
def test_refuses_lengths_out_of_range(seconds: float) -> None:
    with pytest.raises(SignalError, match="30 to 180 s"):
        generate_signal(seconds)


def test_refuses_other_rates() -> None:
    with pytest.raises(SignalError, match="44100 Hz"):
        generate_signal(30.0, 44_100)


def test_write_read_round_trip_and_never_overwrite(signal: TestSignal, tmp_path: Path) -> None:
    path = tmp_path / "input.wav"
    wav, js = write_signal(path, signal)
    assert js == tmp_path / "input.json"
    back = read_signal(path)
    assert np.array_equal(back.audio, signal.audio) and back.map == signal.map
    before = wav.read_bytes()
    with pytest.raises(SignalError, match="already exists"):
        write_signal(path, signal)
    assert wav.read_bytes() == before
    # a leftover map alone also blocks writing
    wav2 = tmp_path / "other.wav"
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(SignalError, match=r"other\.json already exists"):
        write_signal(wav2, signal)
    assert not wav2.exists()
    with pytest.raises(SignalError, match=r"\*\.wav"):
        write_signal(tmp_path / "x.flac", signal)


def test_read_refuses_a_missing_or_wrong_map(signal: TestSignal, tmp_path: Path) -> None:
    path = tmp_path / "sig.wav"
    write_signal(path, signal)
    js = tmp_path / "sig.json"
    data = json.loads(js.read_text())
    js.unlink()
    with pytest.raises(SignalError, match=r"segment map of sig\.wav is missing"):
        read_signal(path)
    js.write_text("not json")
    with pytest.raises(SignalError, match="not valid JSON"):
        read_signal(path)
    data["length"] += 10
    js.write_text(json.dumps(data))
    with pytest.raises(SignalError, match="do not belong together"):
        read_signal(path)
    with pytest.raises(SignalError, match="no such file"):
        read_signal(tmp_path / "absent.wav")


def test_map_from_dict_refuses_bad_maps(signal: TestSignal) -> None:
    good = signal.map.to_dict()
    assert SignalMap.from_dict(good) == signal.map
    bad_segment = json.loads(json.dumps(good))
    bad_segment["segments"][3]["stop"] = good["length"] + 1
    with pytest.raises(SignalError, match=r"validation_1.*outside"):
        SignalMap.from_dict(bad_segment, "m.json")
    with pytest.raises(SignalError, match=r"m\.json: not a knobcap signal map"):
        SignalMap.from_dict({"format": "other"}, "m.json")
    no_val = json.loads(json.dumps(good))
    no_val["segments"] = no_val["segments"][:-1]
    with pytest.raises(SignalError, match="validation_2"):
        SignalMap.from_dict(no_val)
    with pytest.raises(KeyError, match="no segment 'nope'"):
        signal.map.segment("nope")


def test_custom_signal_map() -> None:
    long = custom_signal_map(np.zeros(100 * RATE, dtype=np.float32), RATE)
    assert long.blips == () and long.version is None
    assert long.segment("validation_2").length == 9 * RATE
    assert long.segment("playing").start == 0
    assert long.train_span == (0, 91 * RATE)
    short = custom_signal_map(np.zeros(20 * RATE), RATE)
    assert short.segment("validation_2").length == 2 * RATE
    assert SignalMap.from_dict(long.to_dict()) == long
    with pytest.raises(SignalError, match="at least 1 s"):
        custom_signal_map(np.zeros(100), RATE)
