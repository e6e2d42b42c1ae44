"""Training checkpoints that hold data only: written atomically, read without running code.

A run folder may come from someone else (a shared drive, an archive), so a checkpoint is read with
``torch.load(weights_only=True)``: tensors, dicts, lists, numbers and strings, which is all a knobcap
checkpoint holds (Lightning's loops, optimizer and scheduler states, ModelCheckpoint's paths, our
``"knobcap"`` entry), so no extra types are allow-listed (``SAFE_GLOBALS`` is where one would go). A
file that asks for anything else (a class, a function: what a pickle payload needs) is refused and
nothing runs.

Writes go to a temporary file beside the target, flushed to disk, then renamed over it
(:func:`knobcap.fileio.write_bytes_atomic`): a full disk or a kill leaves the previous checkpoint whole.

``choose_resume`` picks what ``--resume`` continues from: ``last.ckpt`` when intact, else the newest
intact checkpoint of the folder (saying so; the damaged file is kept aside as ``*.damaged``).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from knobcap.fileio import write_bytes_atomic
from knobcap.training.config import TrainingError

SAFE_GLOBALS: list[Any] = []  # types beyond torch's weights_only defaults that our checkpoints need: none


class CheckpointError(TrainingError):
    """A checkpoint cannot be used; the message names the file and what to do."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint asks to create objects other than plain data: it is refused, never run."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint in ``path`` as plain data (``weights_only=True``, tensors on the CPU).

    Raises :class:`UnsafeCheckpointError` for a file that would create other objects, and
    :class:`CheckpointError` for one that is damaged (truncated, not a checkpoint).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error}).") from None
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error).lower():
            raise UnsafeCheckpointError(
                f"{path}: refused: the file asks to create objects other than tensors and numbers "
                "(it may hold code); knobcap never runs it. Delete it and resume from another checkpoint, "
                "or start a new run.") from None
        raise CheckpointError(f"{path}: damaged ({_first_line(error)}).") from None
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError, IndexError, KeyError) as error:
        raise CheckpointError(f"{path}: damaged ({_first_line(error)}).") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "epoch" not in checkpoint:
        raise CheckpointError(f"{path}: not a knobcap training checkpoint (no state_dict and epoch).")
    return checkpoint


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:160] if text else type(error).__name__


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic, durable writes and data-only reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
                        ) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomic(Path(path), buffer.getvalue())

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        return load_checkpoint(path)


@dataclass
class ResumePoint:
    """Where ``--resume`` continues: the checkpoint, its epoch (0-based, finished) and what was said."""

    path: Path
    epoch: int
    note: str | None = None


def choose_resume(folder: Path, last: Path, say: Callable[[str], None] = print) -> ResumePoint:
    """``last`` if intact, else the newest intact ``*.ckpt`` in ``folder`` (said through ``say``).

    A file refused as unsafe stops everything (:class:`UnsafeCheckpointError`): nothing runs. With no
    intact checkpoint, :class:`CheckpointError` says so and how to start afresh.
    """
    damaged: list[str] = []
    try:
        checkpoint = load_checkpoint(last)
        return ResumePoint(last, int(checkpoint.get("epoch", -1)))
    except UnsafeCheckpointError:
        raise
    except CheckpointError as error:
        damaged.append(str(error))
    candidates: list[tuple[int, int, Path]] = []
    for path in sorted(folder.glob("*.ckpt")):
        if path == last:
            continue
        try:
            checkpoint = load_checkpoint(path)
        except UnsafeCheckpointError:
            raise
        except CheckpointError as error:
            damaged.append(str(error))
            continue
        candidates.append((int(checkpoint.get("epoch", -1)), int(checkpoint.get("global_step", -1)), path))
    if not candidates:
        raise CheckpointError(f"{folder}: no intact checkpoint to resume ({'; '.join(damaged)}); start a new "
                              "run with 'knobcap train DIR --run <new name>' (the model.knobcap of this run "
                              "is kept).")
    epoch, _, path = max(candidates)
    if last.exists():
        why = f"is damaged ({damaged[0].split(': ', 1)[-1]}); kept as {_set_aside(last).name}"
    else:
        why = "is missing"
    note = f"{last.name} {why}; resuming from {path.name} (epoch {epoch + 1})."
    say(note)
    return ResumePoint(path, epoch, note)


def _set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to ``<name>.damaged`` (numbered if taken): kept, not overwritten."""
    target = path.with_name(path.name + ".damaged")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged{n}")
        n += 1
    path.rename(target)
    return target
