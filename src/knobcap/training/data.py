"""Training data across settings: one input signal, one aligned recording per setting.

:class:`TrainingData` holds the input ``x``, the takes (aligned output, setting vector, role) and the
spans of the signal map: ``train_span`` (sweeps, noise, playing) for training windows and
``val_span`` (``validation_2``, held-out time) for validation. It is built from a session folder
(:meth:`TrainingData.from_session`) or directly in memory. Takes are never normalised one by one:
the output level of each setting is part of what the model learns.

:class:`WindowDataset` draws random windows: item ``i`` of epoch ``e`` picks a random training take
and start with a generator seeded by ``(seed, e, i)``, so batches mix settings and a resumed run
draws exactly the windows it would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from knobcap.controls import Controls, Setting

TRAIN_ROLES = ("train", "anchor")


class TrainingDataError(ValueError):
    """The data cannot train a model; the message names the session/take and what to do."""


@dataclass
class Take:
    """One recorded setting: its aligned output (same length as the input), setting and role."""

    name: str
    setting: Setting
    vector: np.ndarray
    role: str
    audio: np.ndarray


@dataclass
class TrainingData:
    controls: Controls
    sample_rate: int
    x: np.ndarray
    takes: list[Take]
    train_span: tuple[int, int]
    val_span: tuple[int, int]
    source: str = "data"
    info: dict[str, object] = field(default_factory=dict)

    @property
    def train_takes(self) -> list[Take]:
        return [t for t in self.takes if t.role in TRAIN_ROLES]

    @property
    def heldout_takes(self) -> list[Take]:
        return [t for t in self.takes if t.role == "holdout"]

    def check(self, context: int, window: int) -> None:
        """Refuse data that cannot train: lengths, roles, finiteness, spans too short."""
        where = self.source
        if self.x.ndim != 1 or len(self.x) == 0:
            raise TrainingDataError(f"{where}: the input signal must be non-empty mono audio.")
        if not self.train_takes:
            raise TrainingDataError(
                f"{where}: no take has role 'train' or 'anchor'; plan and record some settings first.")
        for take in self.takes:
            if take.audio.shape != self.x.shape:
                raise TrainingDataError(
                    f"{where}: take {take.name!r} has {take.audio.shape[0]} samples but the input has "
                    f"{self.x.shape[0]}; align it to the input (knobcap check) or re-record it.")
            if not np.all(np.isfinite(take.audio)):
                raise TrainingDataError(f"{where}: take {take.name!r} holds NaN or infinite samples.")
            if take.role not in (*TRAIN_ROLES, "holdout"):
                raise TrainingDataError(f"{where}: take {take.name!r} has unknown role {take.role!r}.")
            if take.vector.shape != (self.controls.vector_size,):
                raise TrainingDataError(f"{where}: take {take.name!r} has a setting vector of the "
                                        "wrong size for these controls.")
        start, stop = self.train_span
        if stop - max(start, context) < window:
            raise TrainingDataError(
                f"{where}: the training span ({start}..{stop}) is shorter than one window of {window} "
                f"samples after {context} samples of context; use a longer test signal or a shorter "
                "segment_length.")
        v0, v1 = self.val_span
        if not 0 <= v0 < v1 <= len(self.x):
            raise TrainingDataError(f"{where}: the validation span {self.val_span} is outside the signal.")
        for take in self.takes:  # ESR (knobcap.metrics.esr) is undefined on a silent target
            first, last = (max(start, context), len(self.x)) if take.role == "holdout" else (v0, v1)
            if not np.any(take.audio[first:last]):
                raise TrainingDataError(
                    f"{where}: take {take.name!r} is silent on samples {first}..{last}, where its ESR is "
                    "measured; check the device's output and record the take again.")

    @classmethod
    def from_session(cls, root: str | Path) -> TrainingData:
        """Load a session folder (see ``knobcap.capture.session``); takes whose check failed are refused."""
        from knobcap.capture.session import Session, SessionError

        session = Session.open(root)
        signal = session.input()
        try:
            failed = session.failed_takes()
        except SessionError as error:
            raise TrainingDataError(str(error)) from None
        takes = []
        for planned in session.plan():
            if planned.take in failed:
                raise TrainingDataError(
                    f"{session.root}: take {planned.take!r} failed 'knobcap check'; re-record it (see "
                    "check.json for why) or remove it from plan.csv.")
            audio = np.asarray(session.aligned_take(planned.take), dtype=np.float32)
            takes.append(Take(name=planned.take, setting=dict(planned.setting),
                              vector=session.controls.to_vector(planned.setting), role=planned.role,
                              audio=audio))
        val = signal.map.segment("validation_2")
        return cls(controls=session.controls, sample_rate=int(signal.map.sample_rate),
                   x=np.asarray(signal.audio, dtype=np.float32), takes=takes,
                   train_span=tuple(signal.map.train_span), val_span=(val.start, val.stop),  # type: ignore[arg-type]
                   source=str(session.root), info={"session": str(Path(session.root).resolve()),
                                                   "checked": session.check_path.is_file()})


class WindowDataset(Dataset):
    """Random training windows: ``(x[context + length], y[length], vector)`` per item.

    ``context`` input samples precede the ``length`` target samples (receptive field - 1, plus the
    warm-up of a recurrent model, whose first outputs are not scored).
    """

    def __init__(self, data: TrainingData, context: int, length: int, items: int, seed: int) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(data.x, dtype=np.float32))
        takes = data.train_takes
        self.y = [torch.from_numpy(np.ascontiguousarray(t.audio, dtype=np.float32)) for t in takes]
        self.vectors = [torch.from_numpy(t.vector.astype(np.float32)) for t in takes]
        self.context, self.length, self.items, self.seed = context, length, items, seed
        start, stop = data.train_span
        self.first = max(start, context)
        self.last = stop - length  # inclusive
        self.epoch = 0

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        take = int(rng.integers(len(self.y)))
        start = int(rng.integers(self.first, self.last + 1))
        x = self.x[start - self.context:start + self.length]
        return x, self.y[take][start:start + self.length], self.vectors[take]


def validation_items(data: TrainingData, context: int, max_samples: int | None,
                     heldout_span: tuple[int, int] | None = None) -> list[tuple[str, str, int, int]]:
    """``(take, kind, start, stop)`` for each take: training takes on held-out time (``time``),
    held-out takes on ``heldout_span`` (default: the validation span) (``setting``)."""
    items = []
    v0, v1 = data.val_span
    for take in data.takes:
        kind = "setting" if take.role == "holdout" else "time"
        start, stop = (heldout_span or (v0, v1)) if kind == "setting" else (v0, v1)
        start = max(start, context)
        if max_samples is not None:
            stop = min(stop, start + max_samples)
        items.append((take.name, kind, start, stop))
    return items


def take_index(takes: Sequence[Take]) -> dict[str, int]:
    return {t.name: i for i, t in enumerate(takes)}
