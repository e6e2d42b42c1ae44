"""Files that never lose a user's work: atomic writes, and audio reads with clear errors."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf


def _write_atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    return _write_atomic(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data: object) -> Path:
    """Write JSON atomically (indented, UTF-8)."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_wav_atomic(path: str | Path, audio: np.ndarray, sample_rate: int,
                     subtype: str = "FLOAT") -> Path:
    """Write a WAV file atomically (32-bit float by default, so nothing is clipped)."""
    data = np.asarray(audio, dtype=np.float32)
    return _write_atomic(
        Path(path), lambda tmp: sf.write(tmp, data, sample_rate, subtype=subtype, format="WAV"))


class AudioFileError(ValueError):
    """An audio file cannot be used; the message names the file and what to do."""


def read_wav(path: str | Path, sample_rate: int | None = None, mono: bool = True
             ) -> tuple[np.ndarray, int]:
    """Read audio as float32. With ``mono``, a file of several channels is refused (not mixed).

    With ``sample_rate``, a file at another rate is refused with a clear message.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file.")
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioFileError(f"{path}: not a readable audio file ({error}). Export it as WAV.") from None
    if sample_rate is not None and rate != sample_rate:
        raise AudioFileError(
            f"{path}: sample rate is {rate} Hz but {sample_rate} Hz is expected; record or export "
            f"it at {sample_rate} Hz.")
    if mono:
        if audio.shape[1] != 1:
            raise AudioFileError(
                f"{path}: has {audio.shape[1]} channels but mono is expected; record one channel.")
        return audio[:, 0], rate
    return audio, rate
