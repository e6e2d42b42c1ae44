"""Audio in and out of the play page: uploads checked and converted, WAV bytes for the browser."""

from __future__ import annotations

import io
import threading
from math import gcd

import numpy as np
import soundfile as sf

from knobcap import limits

MAX_SECONDS = 60.0
MIN_RATE, MAX_RATE = 8_000, 192_000
_DECODING = threading.Lock()  # one decode at a time: parallel uploads cannot add up their memory


class UploadError(ValueError):
    """An uploaded file cannot be played; the message says what is wrong and what to do."""


def decode_upload(data: bytes, name: str, sample_rate: int, max_seconds: float = MAX_SECONDS
                  ) -> tuple[np.ndarray, list[str]]:
    """Mono float32 audio at ``sample_rate`` from an uploaded file's bytes, and notes on what was done.

    Refused: bytes that are not audio soundfile reads (WAV, FLAC, OGG, AIFF), clips longer than
    ``max_seconds``, rates outside 8–192 kHz, empty clips, and (from the header, before decoding a
    sample) more channels, seconds or decoded bytes than :mod:`knobcap.limits` allows; decoding is
    serialised. Several channels are averaged to mono; another
    rate is resampled with a polyphase filter (``scipy.signal.resample_poly``).
    """
    if not data:
        raise UploadError(f"{name}: the file is empty; choose a WAV file with guitar on it.")
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise UploadError(f"{name}: this is not an audio file knobcap can read; upload a WAV (or FLAC, "
                          "AIFF, OGG) recording.") from None
    seconds = info.frames / info.samplerate if info.samplerate else 0.0
    if seconds > max_seconds:
        raise UploadError(f"{name}: {seconds:.1f} s is too long; the limit is {max_seconds:g} s. "
                          "Cut a shorter clip.")
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise UploadError(f"{name}: sample rate {info.samplerate} Hz is not supported; export it at "
                          f"{sample_rate} Hz.")
    try:  # what the header declares, before anything is decoded (a small OGG can hold hours)
        limits.MAX_UPLOAD_CHANNELS.check(info.channels, name)
        limits.MAX_AUDIO_SECONDS.check(seconds, name)
        limits.MAX_DECODED_BYTES.check(info.frames * info.channels * 4, name)
    except limits.LimitError as error:
        raise UploadError(f"{error} Upload a mono or stereo clip under {max_seconds:g} s.") from None
    with _DECODING:
        audio, rate = sf.read(io.BytesIO(data), frames=info.frames, dtype="float32", always_2d=True)
    if audio.shape[0] == 0:
        raise UploadError(f"{name}: the file holds no samples; choose a recording with sound in it.")
    notes = []
    if audio.shape[1] > 1:
        notes.append(f"mixed {audio.shape[1]} channels to mono")
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
        notes.append(f"resampled from {rate} Hz to {sample_rate} Hz")
    if not np.all(np.isfinite(mono)):
        raise UploadError(f"{name}: the audio holds NaN or infinite samples; export it again.")
    return mono.astype(np.float32), notes


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling by the reduced ratio ``rate_out / rate_in``."""
    from scipy.signal import resample_poly

    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(np.asarray(audio, np.float64), rate_out // g, rate_in // g).astype(np.float32)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV bytes (samples beyond full scale are clipped, NaN become 0)."""
    buffer = io.BytesIO()
    data = np.clip(np.nan_to_num(np.asarray(audio, np.float32)), -1.0, 1.0)
    sf.write(buffer, data, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
