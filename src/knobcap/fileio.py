"""Files that never lose a user's work: atomic writes, and audio reads with clear errors."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf


class OutputPathError(OSError, ValueError):
    """An output path cannot be written (not a regular file, exists, or its folder refuses files)."""


class DiskFullError(OSError, ValueError):
    """The disk filled while writing; the message names the file and the space left.

    An ``OSError`` (``errno`` is ``ENOSPC``) and a ``ValueError``, so that every verb prints it as the
    one-line error of any other refused input.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        super().__init__(errno.ENOSPC, f"{path}: the disk is full ({_free_space(self.path)} free on "
                                       f"{_mount_folder(self.path)}); nothing was written. Free some space "
                                       "and run the command again.", str(path))

    def __str__(self) -> str:
        return str(self.strerror)


def _mount_folder(path: Path) -> Path:
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _free_space(path: Path) -> str:
    try:
        free = shutil.disk_usage(_mount_folder(path)).free
    except OSError:
        return "unknown"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if free >= size:
            return f"{free / size:.1f} {unit}"
    return f"{free} bytes"


_NEARLY_FULL = 16 << 20  # bytes


def _is_disk_full(error: BaseException, path: Path) -> bool:
    """ENOSPC/EDQUOT; or libsndfile's bare 'System error' (it hides the errno) on a disk with less than
    16 MiB left, which is how a write into a fresh temporary file fails when the disk fills."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, sf.LibsndfileError) and getattr(error, "code", None) == 2:
        try:
            return shutil.disk_usage(_mount_folder(path)).free < _NEARLY_FULL
        except OSError:
            return False
    return False


def check_output_path(path: str | Path, force: bool = False) -> Path:
    """The one policy for a path a user names to be written: nothing there, or (with ``force``) a regular
    file; never a folder, a device, a pipe or a socket. Raises :class:`OutputPathError`."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file (a device, pipe or socket)"
            raise OutputPathError(f"{path}: is {kind}; knobcap writes only regular files. Give the path of "
                                  "a new file.")
        if not force:
            raise OutputPathError(f"{path} exists; knobcap does not overwrite it. Choose another name or "
                                  "pass --force.")
    folder = _mount_folder(path)
    if not folder.is_dir():
        raise OutputPathError(f"{path}: {folder} is not a folder; give a path inside a folder.")
    return path


def _write_atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Refuses to replace anything but a regular file; a full disk raises :class:`DiskFullError`, a folder
    that refuses files :class:`OutputPathError`; the temporary file is removed either way.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_file():
        check_output_path(path, force=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        if _is_disk_full(error, path):
            raise DiskFullError(path) from None
        raise OutputPathError(f"{path}: cannot create a file in {path.parent} ({error.strerror or error}); "
                              "choose a folder you can write to.") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if _is_disk_full(error, path):
            raise DiskFullError(path) from None
        if isinstance(error, sf.LibsndfileError | OSError):
            raise OutputPathError(f"{path}: could not be written ({error}); nothing was changed. Check the "
                                  "disk and the folder's permissions.") from None
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


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically and durably (on the disk before the rename: a crash leaves old or new)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    return _write_atomic(Path(path), write)


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
