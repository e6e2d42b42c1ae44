"""The streaming engine: a ``model.knobcap`` played block by block, without torch.

    engine = Engine.from_file("model.knobcap", ramp_ms=50)
    engine.set({"drive": 7, "diodes": "led"})      # knobs ramp over ramp_ms, switches jump
    engine.process_block(in_block, out_block)       # float32 buffers you own; 1..max_block samples
    y = engine.process(x, block_size=64)            # whole signal (allocates the output)
    engine.reset()                                  # silence, at the current setting

Outputs are aligned with inputs (no added latency). A WaveNet starts in the steady state of a silent
input at the current setting (as if the model had been fed zeros for its receptive field), which is
what the PyTorch model computes on an input padded with ``receptive_field - 1`` zeros in front; an
LSTM starts from zero state, as in PyTorch. An output-gain knob (a knob with ``gain_db``,
:meth:`knobcap.controls.Controls.output_gain`) scales the core's output, ramping in dB as knobs ramp;
then a model file's output DC blocker (``dc_blocker_hz``) runs, from the steady state of the core's
first output after a reset (:mod:`knobcap.dsp.dc_blocker`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from knobcap.controls import Controls, Setting
from knobcap.dsp import dc_blocker
from knobcap.models.modelfile import ModelFile, load_model_file
from knobcap.registry import Registry, check_callable
from knobcap.runtime.engine.lstm import LSTMCore
from knobcap.runtime.engine.ramp import ELAPSED, RAMP_LEN, RING_POS, apply_gain, current_vector
from knobcap.runtime.engine.wavenet import WaveNetCore

MAX_BLOCK = 4096
_F32 = np.dtype(np.float32)
DEFAULT_RAMP_MS = 50.0


class EngineError(ValueError):
    """The engine cannot run a model or a buffer; the message says what to do."""


class Core(Protocol):
    receptive_field: int
    preroll: int

    itab: np.ndarray  # int64 table whose first entries are the ramp header (knobcap.runtime.engine.ramp)

    def run(self, x: np.ndarray, y: np.ndarray, n: int, cstate: np.ndarray) -> None: ...

    def clear(self) -> None: ...


CoreFactory = Callable[[Mapping[str, Any], Mapping[str, np.ndarray], int], Core]
CORES: Registry[CoreFactory] = Registry("engine core", "knobcap.engine_cores",
                                        check=check_callable("an engine core"))
CORES.register("wavenet", WaveNetCore)
CORES.register("lstm", LSTMCore)


def register_core(architecture: str, factory: CoreFactory, *, replace: bool = False) -> None:
    """Let the engine run a user's architecture (``factory(config, weights, max_block) -> Core``); an
    installed package can declare one in the ``knobcap.engine_cores`` entry-point group instead."""
    CORES.register(architecture, factory, replace=replace)


def supported_architectures() -> list[str]:
    return CORES.names()


class Engine:
    """A model with its streaming state: set controls, process blocks, reset."""

    def __init__(self, model: ModelFile, *, ramp_ms: float = DEFAULT_RAMP_MS, max_block: int = MAX_BLOCK,
                 setting: Mapping[str, object] | None = None, source: str = "model") -> None:
        if model.architecture not in CORES:
            raise EngineError(
                f"{source}: the streaming engine cannot run architecture {model.architecture!r} (it runs "
                f"{', '.join(supported_architectures())}); register one with "
                f"knobcap.runtime.engine.register_core.")
        if not 1 <= int(max_block) <= 1 << 20:
            raise EngineError(f"max_block must be from 1 to {1 << 20} samples, got {max_block}.")
        if not (np.isfinite(ramp_ms) and ramp_ms >= 0):
            raise EngineError(f"ramp_ms must be a number of milliseconds >= 0, got {ramp_ms}.")
        self.model = model
        self.source = source
        self.controls: Controls = model.controls
        self.sample_rate = int(model.sample_rate)
        self.max_block = int(max_block)
        self.ramp_ms = float(ramp_ms)
        try:
            self.core: Core = CORES.get(model.architecture)(model.config, model.weights, self.max_block)
        except ValueError as error:
            raise EngineError(f"{source}: {error}") from None
        self._run = self.core.run
        self._blocker = (None if model.dc_blocker_hz is None
                         else dc_blocker.pole(model.dc_blocker_hz, self.sample_rate))
        self._blocker_state = dc_blocker.initial_state()
        n_controls = self.controls.vector_size
        self._knob_mask = np.zeros(n_controls, bool)
        self._knob_mask[: len(self.controls.knobs)] = True
        self._cstate = np.zeros((2, n_controls), np.float64)
        self._istate = self.core.itab
        self._setting: Setting = self.controls.default_setting()
        if setting is not None:
            self._setting = self._merge(setting)
        self._cstate[:] = self.controls.to_vector(self._setting)[None, :]
        self._gain_db = np.full(2, self.controls.output_gain_db(self._setting))  # output gain: start, target
        self._has_gain = self.controls.has_output_gain
        self.reset()

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> Engine:
        """Load a ``model.knobcap`` file (checked, no torch, no pickle) into an engine."""
        return cls(load_model_file(path), source=str(path), **options)

    # --- controls -----------------------------------------------------------------------------
    @property
    def setting(self) -> Setting:
        """The setting the engine is at or ramping to."""
        return dict(self._setting)

    @property
    def receptive_field(self) -> int:
        return int(self.core.receptive_field)

    @property
    def vector(self) -> np.ndarray:
        """The conditioning vector of the last processed sample (float64)."""
        return current_vector(self._cstate, self._istate)

    @property
    def ramp_samples(self) -> int:
        return round(self.ramp_ms * 1e-3 * self.sample_rate)

    def _merge(self, setting: Mapping[str, object]) -> Setting:
        merged: dict[str, object] = dict(self._setting)
        merged.update(setting)
        return self.controls.validate_setting(merged, where=f"{self.source}: setting")

    def set(self, setting: Mapping[str, object], ramp_ms: float | None = None) -> None:
        """Move to ``setting`` (all or some controls): knobs ramp over ``ramp_ms``, switches jump."""
        clean = self._merge(setting)
        target = self.controls.to_vector(clean).astype(np.float64)
        start_gain = current_vector(self._gain_db[:, None], self._istate)[0]  # ramps as the knobs do
        self.set_vector(target, ramp_ms)
        self._gain_db[:] = (start_gain, self.controls.output_gain_db(clean))
        self._setting = clean

    def set_vector(self, target: np.ndarray, ramp_ms: float | None = None) -> None:
        """Move to a normalised conditioning vector (see :mod:`knobcap.runtime.engine.ramp` for the law);
        an output-gain knob is not in the vector (:meth:`set` moves it)."""
        target = np.asarray(target, np.float64)
        if target.shape != (self._cstate.shape[1],):
            raise EngineError(f"a setting vector needs {self._cstate.shape[1]} entries, got {target.shape}.")
        ms = self.ramp_ms if ramp_ms is None else float(ramp_ms)
        start = current_vector(self._cstate, self._istate)
        start[~self._knob_mask] = target[~self._knob_mask]
        self._cstate[0] = start
        self._cstate[1] = target
        self._istate[ELAPSED] = 0
        self._istate[RAMP_LEN] = max(0, round(ms * 1e-3 * self.sample_rate))

    # --- audio --------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the past: silence at the current target setting (any ramp is finished)."""
        self._cstate[0] = self._cstate[1]
        self._gain_db[0] = self._gain_db[1]
        self._istate[ELAPSED] = 0
        self._istate[RAMP_LEN] = 0
        self._istate[RING_POS] = 0
        self.core.clear()
        self._blocker_state[:] = dc_blocker.initial_state()
        remaining = int(self.core.preroll)
        if remaining:
            zeros = np.zeros(self.max_block, np.float32)
            sink = np.zeros(self.max_block, np.float32)
            while remaining:
                n = min(remaining, self.max_block)
                self.core.run(zeros, sink, n, self._cstate)
                remaining -= n

    def _run_block(self, x: np.ndarray, y: np.ndarray, n: int) -> None:
        elapsed, length = int(self._istate[ELAPSED]), int(self._istate[RAMP_LEN])
        self._run(x, y, n, self._cstate)
        if self._has_gain:
            apply_gain(y, n, self._gain_db, elapsed, length)
        if self._blocker is not None:
            dc_blocker.run_inplace(y, n, self._blocker, self._blocker_state)

    def process_block(self, in_block: np.ndarray, out_block: np.ndarray) -> None:
        """Process one block: ``out_block[:n] = model(in_block)``, n = len(in_block) <= max_block.

        Both must be contiguous float32 arrays (``out_block`` at least as long); nothing is allocated.
        """
        n = in_block.shape[0]
        if (in_block.dtype is _F32 and out_block.dtype is _F32 and n <= self.max_block
                and out_block.shape[0] >= n and in_block.flags.c_contiguous and out_block.flags.c_contiguous):
            if n:
                self._run_block(in_block, out_block, n)
            return
        if n > self.max_block or out_block.shape[0] < n:
            raise EngineError(
                f"a block of {n} samples into {out_block.shape[0]}: blocks must be at most max_block "
                f"({self.max_block}) and the output at least as long as the input.")
        if in_block.dtype != np.float32 or out_block.dtype != np.float32:
            raise EngineError("process_block needs float32 buffers; convert once, outside the audio loop.")
        raise EngineError("process_block needs contiguous buffers (np.ascontiguousarray, once).")

    def process(self, audio: np.ndarray, block_size: int = 512,
                progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Run a whole mono signal through the engine in blocks (state carries on afterwards)."""
        if not 1 <= block_size <= self.max_block:
            raise EngineError(f"block_size must be from 1 to {self.max_block}, got {block_size}.")
        x = np.ascontiguousarray(audio, dtype=np.float32)
        if x.ndim != 1:
            raise EngineError(f"process takes mono audio (one dimension), got shape {x.shape}.")
        y = np.empty_like(x)
        for start in range(0, x.shape[0], block_size):
            stop = min(start + block_size, x.shape[0])
            self._run_block(x[start:stop], y[start:stop], stop - start)
            if progress is not None:
                progress(stop - start)
        return y
