"""Training data across settings: one input signal, one aligned recording per setting.

:class:`TrainingData` holds the input ``x``, the takes (aligned output, setting vector, role) and the
spans of the signal map: ``train_span`` (sweeps, noise, playing) for training windows and
``val_span`` (``validation_2``, held-out time) for validation. It is built from a session folder
(:meth:`TrainingData.from_session`) or directly in memory. Takes are never normalised one by one:
the output level of each setting is part of what the model learns.

:class:`WindowDataset` draws random windows: item ``i`` of epoch ``e`` picks a random training take
and start with a generator seeded by ``(seed, e, i)``, so batches mix settings and a resumed run
draws exactly the windows it would have drawn.

A take may have its own input (``Take.x``, with its own spans) and an input may be a set of clips
that each start from rest (``clips``, ``skip``): a window then lies inside one clip, its context
before the clip's start is silence, and the first ``skip`` samples of each clip are never scored
(:meth:`TrainingData.regions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from knobcap.controls import Controls, Setting

if TYPE_CHECKING:
    from knobcap.capture.testsignal import SignalMap

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
    x: np.ndarray | None = None                    # its own input (None: the shared one)
    spans: tuple[tuple[int, int], tuple[int, int]] | None = None  # own (train_span, val_span)
    clips: tuple[tuple[int, int], ...] | None = None  # own clips (None: the shared input's)


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
    clips: tuple[tuple[int, int], ...] = ()  # (start, stop) of the shared input's clips; () none
    skip: int = 0                            # samples never scored at the start of each clip

    def input_of(self, take: Take) -> np.ndarray:
        return self.x if take.x is None else take.x

    def spans_of(self, take: Take) -> tuple[tuple[int, int], tuple[int, int]]:
        return (self.train_span, self.val_span) if take.spans is None else take.spans

    def clips_of(self, take: Take) -> tuple[tuple[int, int], ...]:
        return self.clips if take.clips is None else take.clips

    def regions(self, take: Take, kind: str, context: int,
                length: int = 0) -> list[tuple[int, int, int | None]]:
        """``(first, last, rest)`` spans of the take's input: ``train`` (window starts ``first..last``
        inclusive, windows of ``length``), ``time`` (held-out time, scored ``first..last`` exclusive)
        or ``all`` (everything scorable). ``rest``: the clip's start (its context is silence before it),
        ``None`` without clips."""
        (t0, t1), (v0, v1) = self.spans_of(take)
        lo, hi = {"train": (t0, t1), "time": (v0, v1), "all": (t0, len(self.input_of(take)))}[kind]
        clips = self.clips_of(take)
        spans = [(max(a + self.skip, lo), min(b, hi), a) for a, b in clips] if clips else [
            (max(lo, context), hi, None)]
        if kind == "train":
            return [(first, stop - length, rest) for first, stop, rest in spans if stop - length >= first]
        return [(first, stop, rest) for first, stop, rest in spans if stop > first]

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
            x = self.input_of(take)
            if take.audio.shape != x.shape:
                raise TrainingDataError(
                    f"{where}: take {take.name!r} has {take.audio.shape[0]} samples but its input has "
                    f"{x.shape[0]}; align it to the input (knobcap check) or re-record it.")
            if not np.all(np.isfinite(take.audio)):
                raise TrainingDataError(f"{where}: take {take.name!r} holds NaN or infinite samples.")
            if take.role not in (*TRAIN_ROLES, "holdout"):
                raise TrainingDataError(f"{where}: take {take.name!r} has unknown role {take.role!r}.")
            if take.vector.shape != (self.controls.vector_size,):
                raise TrainingDataError(f"{where}: take {take.name!r} has a setting vector of the "
                                        "wrong size for these controls.")
        for take in self.takes:
            (start, stop), (v0, v1) = self.spans_of(take)
            if take.role != "holdout" and not self.regions(take, "train", context, window):
                clipped = " in any clip after its skipped start" if self.clips_of(take) else ""
                raise TrainingDataError(
                    f"{where}: the training span of take {take.name!r} ({start}..{stop}) holds no window "
                    f"of {window} samples after {context} samples of context{clipped}; use a longer "
                    "signal (or longer clips) or a shorter segment_length.")
            if not 0 <= v0 < v1 <= len(self.input_of(take)):
                raise TrainingDataError(f"{where}: the validation span {(v0, v1)} is outside the signal.")
            # ESR (knobcap.metrics.esr) is undefined on a silent target
            kind = "all" if take.role == "holdout" else "time"
            spans = self.regions(take, kind, context)
            if not any(np.any(take.audio[a:b]) for a, b, _ in spans):
                first, last = (spans[0][0], spans[-1][1]) if spans else (v0, v1)
                raise TrainingDataError(
                    f"{where}: take {take.name!r} is silent on samples {first}..{last}, where its ESR is "
                    "measured; check the device's output and record the take again.")

    def unvaried_knobs(self) -> list[str]:
        """Knobs the model sees (not output gains) that sit at one value in every training take: the
        model cannot learn what they do."""
        takes = self.train_takes
        return [k.name for k in self.controls.knobs if k.gain_db is None and len(takes) > 1
                and len({round(float(t.setting[k.name]), 9) for t in takes}) == 1]

    @classmethod
    def from_session(cls, root: str | Path) -> TrainingData:
        """Load a session folder (see ``knobcap.capture.session``); takes whose check failed are refused."""
        from knobcap.capture.session import Session, SessionError

        session = Session.open(root)
        signal = session.input()
        try:
            failed = session.failed_takes()
            polarity = session.device_polarity()
        except SessionError as error:
            raise TrainingDataError(str(error)) from None
        if polarity.ambiguous:
            raise TrainingDataError(
                f"{session.root}: the device's polarity is {polarity.source}; declare it with 'knobcap "
                f"check {session.root} --polarity inverting' (or normal), then train.")
        takes = []
        for planned in session.plan():
            if planned.take in failed:
                raise TrainingDataError(
                    f"{session.root}: take {planned.take!r} failed 'knobcap check'; re-record it (see "
                    "check.json for why) or remove it from plan.csv.")
            # an output-gain knob's gain is taken out: the model learns the sound at 0 dB of it
            audio = np.asarray(session.aligned_take(planned.take), dtype=np.float32) \
                / np.float32(session.controls.output_gain(planned.setting))
            own = session.take_input(planned.take) if planned.input else None
            takes.append(Take(name=planned.take, setting=dict(planned.setting),
                              vector=session.controls.to_vector(planned.setting), role=planned.role,
                              audio=audio, x=None if own is None else np.asarray(own.audio, np.float32),
                              spans=None if own is None else _spans(own.map),
                              clips=None if own is None else _clips(own.map)))
        train_span, val_span = _spans(signal.map)
        return cls(controls=session.controls, sample_rate=int(signal.map.sample_rate),
                   x=np.asarray(signal.audio, dtype=np.float32), takes=takes,
                   train_span=train_span, val_span=val_span,
                   source=str(session.root), info={"session": str(Path(session.root).resolve()),
                                                   "checked": session.check_path.is_file(),
                                                   "polarity": polarity.polarity,
                                                   "polarity_source": polarity.source},
                   clips=_clips(signal.map), skip=int(signal.map.skip))


def _spans(signal_map: SignalMap) -> tuple[tuple[int, int], tuple[int, int]]:
    val = signal_map.segment("validation_2")
    return tuple(signal_map.train_span), (val.start, val.stop)  # type: ignore[return-value]


def _clips(signal_map: SignalMap) -> tuple[tuple[int, int], ...]:
    return tuple(signal_map.clip_spans()) if signal_map.clips else ()


def window_input(x: np.ndarray, start: int, stop: int, context: int, rest: int | None) -> np.ndarray:
    """``x[start - context:stop]``, silent before ``rest`` (a clip's start) and before the signal."""
    first, floor = start - context, max(rest or 0, 0)
    if first >= floor:
        return np.asarray(x[first:stop], dtype=np.float32)
    out = np.zeros(stop - first, np.float32)
    out[floor - first:] = x[floor:stop]
    return out


class WindowDataset(Dataset):
    """Random training windows: ``(x[context + length], y[length], vector)`` per item.

    ``context`` input samples precede the ``length`` target samples (receptive field - 1, plus the
    warm-up of a recurrent model, whose first outputs are not scored).
    """

    def __init__(self, data: TrainingData, context: int, length: int, items: int, seed: int) -> None:
        takes = data.train_takes
        self.xs = [np.ascontiguousarray(data.input_of(t), dtype=np.float32) for t in takes]
        self.y = [torch.from_numpy(np.ascontiguousarray(t.audio, dtype=np.float32)) for t in takes]
        self.vectors = [torch.from_numpy(t.vector.astype(np.float32)) for t in takes]
        self.context, self.length, self.items, self.seed = context, length, items, seed
        self.regions = [data.regions(t, "train", context, length) for t in takes]
        self.epoch = 0

    def __len__(self) -> int:
        return self.items

    def _draw(self, index: int) -> tuple[np.random.Generator, int]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return rng, int(rng.integers(len(self.y)))

    def take_of(self, index: int) -> int:
        """The training take (index into ``train_takes``) that item ``index`` of this epoch is cut from."""
        return self._draw(index)[1]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng, take = self._draw(index)
        regions = self.regions[take]
        if len(regions) == 1:
            first, last, rest = regions[0]
            start = int(rng.integers(first, last + 1))
        else:  # a clip in proportion to its number of window starts, then a start in it
            sizes = np.cumsum([last - first + 1 for first, last, _ in regions])
            k = int(rng.integers(int(sizes[-1])))
            r = int(np.searchsorted(sizes, k, side="right"))
            first, _, rest = regions[r]
            start = first + k - (int(sizes[r - 1]) if r else 0)
        x = window_input(self.xs[take], start, start + self.length, self.context, rest)
        return torch.from_numpy(x), self.y[take][start:start + self.length], self.vectors[take]


def validation_items(data: TrainingData, context: int, max_samples: int | None,
                     heldout_span: tuple[int, int] | None = None
                     ) -> list[tuple[str, str, int, int, int | None]]:
    """``(take, kind, start, stop, rest)`` items: training takes on held-out time (``time``), held-out
    takes on ``heldout_span`` (default: the validation span) (``setting``); one item a clip, ``rest``
    the clip's start (None without clips); at most ``max_samples`` scored samples a take."""
    items = []
    for take in data.takes:
        kind = "setting" if take.role == "holdout" else "time"
        if kind == "setting" and heldout_span is not None and not data.clips_of(take):
            spans = [(max(heldout_span[0], context), heldout_span[1], None)]
        else:
            spans = data.regions(take, "time", context)
        budget = max_samples
        for start, stop, rest in spans:
            if budget is not None:
                stop = min(stop, start + budget)
                budget -= stop - start
            if stop > start:
                items.append((take.name, kind, start, stop, rest))
    return items


def take_index(takes: Sequence[Take]) -> dict[str, int]:
    return {t.name: i for i, t in enumerate(takes)}
