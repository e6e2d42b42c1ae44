"""The CPU threads of a training run: torch's intra-op pool and the numba WaveNet kernel's pool.

A run is given ``threads`` (``TrainConfig.threads``; default ``min(cores, 8)``). When the WaveNet's numba
kernel trains (:mod:`knobcap.models.wavenet_kernel`, kernel ``auto`` or ``numba`` on the CPU) it holds
most of a step and splits the batch over its own threads, so the kernel gets all of them and torch's
remaining ops (output FIR, loss, optimiser, validation) get one: torch's OpenMP workers keep spinning
after each op and took the cores from the kernel's (issue 13, 2-core CPU, default model: 2 threads for
both ran at 9.5 steps/s against 13.3 with one thread for both). Otherwise torch gets every thread.

While the run trains, denormal floats are flushed to zero on the training thread (and on the kernel's
workers, which copy its floating-point state when the pool starts): a take written as float with
decaying tails below 1e-38 otherwise slows every multiply that touches them, in torch and in the kernel.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from knobcap.training.config import TrainConfig


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for torch's ops and for the WaveNet kernel (0: the kernel does not run)."""

    torch: int
    kernel: int

    def describe(self) -> str:
        """``"cpu (2 threads)"``, or with the kernel on more than one ``"cpu (2 threads for the WaveNet
        kernel, 1 for torch)"``."""
        if self.kernel > 1:
            return f"cpu ({self.kernel} threads for the WaveNet kernel, {self.torch} for torch)"
        threads = max(self.torch, self.kernel)
        return f"cpu ({threads} thread{'s' * (threads > 1)})"


def run_threads(config: TrainConfig) -> int:
    """The run's CPU threads: ``config.threads``, else ``min(cores, 8)``."""
    return max(1, config.threads or min(os.cpu_count() or 1, 8))


def plan_threads(config: TrainConfig, model: torch.nn.Module) -> ThreadPlan:
    """How ``model`` splits the run's threads when it trains on the CPU (see the module docstring)."""
    threads = run_threads(config)
    if getattr(model, "kernel_trains", lambda: False)():
        return ThreadPlan(torch=1, kernel=threads)
    return ThreadPlan(torch=threads, kernel=0)


@contextmanager
def training_threads(plan: ThreadPlan) -> Iterator[None]:
    """Apply ``plan`` and flush denormals while the block runs; torch's thread count, the kernel's and
    the denormal mode are put back afterwards (the caller's process goes on as before)."""
    from knobcap.models import wavenet_kernel

    before = torch.get_num_threads()
    torch.set_num_threads(plan.torch)
    wavenet_kernel.set_threads(plan.kernel or None)
    flushing = torch.set_flush_denormal(True)  # True where the CPU supports it (x86 SSE3)
    try:
        yield
    finally:
        if flushing:
            torch.set_flush_denormal(False)
        wavenet_kernel.set_threads(None)
        torch.set_num_threads(before)
