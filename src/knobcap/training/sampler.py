"""Training batches as tensor indexing: every training take's input and output stacked in one tensor,
a batch gathered in a few tensor operations (no per-window Python, no DataLoader workers).

Batch ``step`` of epoch ``epoch`` is drawn by a generator seeded with ``(seed, epoch, step)``: a
resumed run draws exactly the batches it would have drawn (with take weights, given the same
weights). Each window picks a training take, uniformly or with :meth:`TensorSampler.set_weights`'s
probabilities, then a window start uniformly among the take's starts (over all its clips); context
before a clip's start (or the signal's) is silence, as :func:`knobcap.training.data.window_input` does.

Take weights (``take_weighting`` = lambda > 0): take ``t`` is drawn with probability

    p_t = (1 - lambda) / N + lambda e_t / sum_s e_s

where ``e_t`` is its held-out-time ESR at the last validation. Training time then goes where the fit is
worst (a mild form of minimising the worst take's loss), while every take keeps at least
``(1 - lambda) / N``.

:class:`LoaderSampler` is the former path (a :class:`WindowDataset` through a per-window loop), kept
for ``sampler="loader"`` and for comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from knobcap.training import losses
from knobcap.training.config import TrainConfig
from knobcap.training.data import TrainingData, WindowDataset

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x, y, vectors, take energies


class TensorSampler:
    """Random training windows drawn as tensor indexing (see the module docstring)."""

    def __init__(self, data: TrainingData, context: int, length: int, batch_size: int, seed: int,
                 pre_emphasis: float = 0.0) -> None:
        takes = data.train_takes
        self.energy = take_energies(data, pre_emphasis)
        size = max(len(data.input_of(t)) for t in takes)
        self.x = torch.zeros(len(takes), size)
        self.y = torch.zeros(len(takes), size)
        for k, take in enumerate(takes):
            x = torch.from_numpy(np.asarray(data.input_of(take), dtype=np.float32))
            self.x[k, :len(x)] = x
            self.y[k, :len(x)] = torch.from_numpy(np.asarray(take.audio, dtype=np.float32))
        self.vectors = torch.from_numpy(np.stack([t.vector for t in takes]).astype(np.float32))
        regions = [data.regions(t, "train", context, length) for t in takes]
        width = max(len(r) for r in regions)
        # per take and region: first start, cumulative count of starts, rest (-inf: none, as 0 floor)
        self.first = torch.zeros(len(takes), width, dtype=torch.int64)
        self.ends = torch.full((len(takes), width), torch.iinfo(torch.int64).max, dtype=torch.int64)
        self.rest = torch.zeros(len(takes), width, dtype=torch.int64)
        self.total = torch.zeros(len(takes), dtype=torch.int64)
        for k, spans in enumerate(regions):
            counts = np.cumsum([last - first + 1 for first, last, _ in spans])
            for r, (first, _, rest) in enumerate(spans):
                self.first[k, r], self.ends[k, r] = first, int(counts[r])
                self.rest[k, r] = max(rest or 0, 0)
            self.total[k] = int(counts[-1])
        self.context, self.length, self.batch_size, self.seed = context, length, batch_size, seed
        self.offsets = torch.arange(-context, length)
        self.probabilities: torch.Tensor | None = None  # None: every take equally likely

    def set_weights(self, errors: np.ndarray | None, weighting: float) -> None:
        """Draw takes by ``p_t`` (module docstring) from each training take's ``errors``; ``None``, a
        zero ``weighting`` or errors that are not all finite and >= 0 with a positive sum: uniformly."""
        if errors is None or weighting <= 0:
            self.probabilities = None
            return
        e = np.asarray(errors, dtype=np.float64)
        if e.shape != (len(self.total),) or not np.all(np.isfinite(e)) or np.any(e < 0) or e.sum() <= 0:
            self.probabilities = None
            return
        p = (1.0 - weighting) / len(e) + weighting * e / e.sum()
        self.probabilities = torch.from_numpy(p / p.sum())

    def to(self, device: torch.device | str) -> TensorSampler:
        for name in ("x", "y", "vectors", "offsets", "energy"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def draw(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(take, start, rest)`` of the windows of batch ``step`` of ``epoch`` (CPU, int64)."""
        state = np.random.SeedSequence([self.seed, epoch, step]).generate_state(2)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        if self.probabilities is None:
            take = torch.randint(len(self.total), (self.batch_size,), generator=generator)
        else:
            take = torch.multinomial(self.probabilities, self.batch_size, replacement=True,
                                     generator=generator)
        u = torch.rand(self.batch_size, generator=generator, dtype=torch.float64)
        k = (u * self.total[take]).long().clamp(max=self.total[take] - 1)
        region = torch.searchsorted(self.ends[take], k[:, None], right=True)[:, 0]
        before = torch.where(region > 0, self.ends[take, (region - 1).clamp(min=0)], 0)
        start = self.first[take, region] + k - before
        return take, start, self.rest[take, region]

    def batch(self, epoch: int, step: int) -> Batch:
        """``(x (B, context + length), y (B, length), vectors (B, C), energy (B, 2))`` on the sampler's
        device; ``energy``: each window's take's :func:`~knobcap.training.losses.take_energies`."""
        take, start, rest = self.draw(epoch, step)
        device = self.x.device
        take, start, rest = take.to(device), start.to(device), rest.to(device)
        index = start[:, None] + self.offsets
        x = self.x[take[:, None], index.clamp(min=0)]
        x = torch.where(index >= rest[:, None], x, torch.zeros((), device=device))
        y = self.y[take[:, None], index[:, self.context:]]
        return x, y, self.vectors[take], self.energy[take]


class LoaderSampler:
    """The former path: :class:`WindowDataset` items collated one window at a time."""

    def __init__(self, data: TrainingData, context: int, length: int, batch_size: int, seed: int,
                 items: int, pre_emphasis: float = 0.0) -> None:
        self.windows = WindowDataset(data, context, length, items, seed)
        self.energy = take_energies(data, pre_emphasis)
        self.batch_size = batch_size
        self.device: torch.device | str = "cpu"

    def to(self, device: torch.device | str) -> LoaderSampler:
        self.device = device
        return self

    def batch(self, epoch: int, step: int) -> Batch:
        self.windows.epoch = epoch
        indices = [step * self.batch_size + i for i in range(self.batch_size)]
        items = [self.windows[i] for i in indices]
        x, y, c = (torch.stack([item[j] for item in items]).to(self.device) for j in range(3))
        energy = self.energy[[self.windows.take_of(i) for i in indices]].to(self.device)
        return x, y, c, energy


Sampler = TensorSampler | LoaderSampler


def take_energies(data: TrainingData, pre_emphasis: float) -> torch.Tensor:
    """Each training take's :func:`~knobcap.training.losses.take_energies` (``(takes, 2)``, float32, in
    ``train_takes``' order): the references of its windows' ESR floors, after the pre-emphasis and plain."""
    return torch.tensor([losses.take_energies(t.audio, pre_emphasis) for t in data.train_takes],
                        dtype=torch.float32)


def make_sampler(data: TrainingData, context: int, config: TrainConfig, device: Any = "cpu") -> Sampler:
    """The sampler ``config.sampler`` names, its tensors on ``device``."""
    if config.sampler == "loader":
        return LoaderSampler(data, context, config.segment_length, config.batch_size, config.seed,
                             config.steps_per_epoch * config.batch_size, config.pre_emphasis).to(device)
    return TensorSampler(data, context, config.segment_length, config.batch_size, config.seed,
                         config.pre_emphasis).to(device)


class EpochBatches(Dataset):
    """An epoch of whole batches for Lightning's loader (``batch_size=None``): item ``i`` is batch ``i``
    of the current ``epoch`` (set by the module at each epoch start)."""

    def __init__(self, sampler: Sampler, steps: int) -> None:
        self.sampler, self.steps, self.epoch = sampler, steps, 0

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> Batch:
        return self.sampler.batch(self.epoch, step)
