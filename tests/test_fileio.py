"""Atomic writes: nothing half-written, usual permissions; audio reads refuse bad files clearly."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from knobcap.fileio import AudioFileError, read_wav, write_text_atomic, write_wav_atomic


def test_atomic_text_has_umask_permissions_and_leaves_no_temp(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a" / "x.txt", "hello")
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["x.txt"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "take.wav"
    write_wav_atomic(path, np.zeros(100), 48000)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - soundfile refuses a 3-D array
        write_wav_atomic(path, np.zeros((2, 2, 2)), 48000)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take.wav"]


def test_read_wav_refusals(tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.wav"
    write_wav_atomic(stereo, np.zeros((480, 2)), 48000)
    with pytest.raises(AudioFileError, match="2 channels"):
        read_wav(stereo)
    with pytest.raises(AudioFileError, match="44100 Hz is expected"):
        read_wav(stereo, sample_rate=44100, mono=False)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    with pytest.raises(AudioFileError, match=r"junk\.wav: not a readable audio file"):
        read_wav(junk)
    with pytest.raises(AudioFileError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
