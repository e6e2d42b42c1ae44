"""One trainer per run folder: an exclusive ``flock`` on the run's lock file while training.

The lock file holds the trainer's pid. The operating system releases the lock when the process ends,
however it ends, so a lock file left by a killed trainer (its pid no longer running) is simply taken
over, and said so. A second trainer on a locked folder is refused with one line naming the folder and
the pid that holds it. Torch-free.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from knobcap.training.config import TrainingError
from knobcap.training.run import Run


class RunLockedError(TrainingError):
    """Another process is training this run folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class RunLock:
    """``with RunLock(run_dir, say):`` holds the run folder's lock (making the folder if need be)."""

    def __init__(self, run_dir: str | Path, say: Callable[[str], None] = print) -> None:
        self.run_dir = Path(run_dir)
        self.path = Run(self.run_dir).lock_path
        self.say = say
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the file may be replaced between open and flock: lock the one in place
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"pid {holder}" if holder else "another process"
                raise RunLockedError(
                    f"{self.run_dir}: another knobcap train ({who}) is training this run; wait for it to "
                    "finish, or choose another --run.") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise RunLockedError(f"{self.path}: the lock file keeps changing; is another trainer starting? "
                                 "Try again.")
        previous = _read_pid(fd)
        if previous and previous != os.getpid() and not _pid_alive(previous):
            self.say(f"{self.run_dir}: took over the lock of a trainer that is no longer running "
                     f"(pid {previous}).")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()

    def release(self, remove: bool = False) -> None:
        """Unlock (emptying the pid); with ``remove``, delete the lock file while still holding it."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if remove:
                self.path.unlink(missing_ok=True)
            else:
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing releases the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
