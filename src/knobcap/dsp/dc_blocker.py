"""The output DC blocker of a model whose device is AC-coupled, and the test that says a device is.

A first-order high-pass with its zero at DC,

    y[n] = x[n] - x[n-1] + R y[n-1],     R = exp(-2 pi fc / fs),

has gain 0 at DC and -3 dB near ``fc``; at the default 2 Hz it turns 80 Hz by 1.4 degrees and lowers
it by 0.003 dB. Why a model needs one: a WaveNet sees 21 ms of input, while an analog pedal's coupling
capacitors have time constants of 100-300 ms (``benchmarks/device_memory.py``). The device's output holds
no DC, but the model cannot form that high-pass, so at settings it never heard its output drifts
below a few Hz, and the drift grows with training. The blocker removes it (docs/results.md, issue 11).

It runs after the model, outside training (a 4,096-sample training window is shorter than its time
constant), and only where the recordings show that the device holds no DC (:func:`choose`): a plugin
whose output carries an offset (the GxTubeScreamer's clipper makes one every period) must keep it.

The blocker starts in the steady state of its first input sample ``c`` (``x[-1] = c``, ``y[-1] = 0``):
as if the model's first output had been held forever, so a model that answers silence with a
constant answers it with zeros. Every runtime starts it that way, so they agree sample for sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numba import njit
from scipy.signal import lfilter

DEFAULT_HZ = 2.0        # the corner chosen for an AC-coupled device
MAX_HZ = 20.0           # the highest corner a model file may declare: above it the blocker cuts bass
DC_FREE_RATIO = 1e-3    # |mean| / rms of every training take below this: the device holds no DC


def pole(cutoff_hz: float, sample_rate: int) -> float:
    """``R = exp(-2 pi fc / fs)``."""
    return math.exp(-2.0 * math.pi * float(cutoff_hz) / float(sample_rate))


def check_cutoff(value: object, where: str) -> float | None:
    """A model file's ``dc_blocker_hz``: ``None`` (no blocker) or a number in ``(0, MAX_HZ]``."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or not 0.0 < value <= MAX_HZ):
        raise ValueError(f"{where}: 'dc_blocker_hz' must be null or a number of Hz above 0 and at most "
                         f"{MAX_HZ:g}, got {value!r}.")
    return float(value)


def dc_ratio(audio: np.ndarray) -> float:
    """``|mean| / rms`` of a recording (0 for silence)."""
    x = np.asarray(audio, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return abs(float(np.mean(x))) / rms if rms > 0.0 else 0.0


def worst_ratio(takes: Iterable[np.ndarray]) -> float:
    """The largest :func:`dc_ratio` of ``takes`` (infinite for none: no evidence of a DC-free device)."""
    return max((dc_ratio(t) for t in takes), default=math.inf)


def choose_for_ratio(worst: float) -> float | None:
    """:data:`DEFAULT_HZ` when the takes' :func:`worst_ratio` is below :data:`DC_FREE_RATIO`, else ``None``.

    A pedal recorded through an interface is AC-coupled twice (its output capacitor, the interface's
    input): its takes' mean is the noise's, ~1e-5 of their rms. A plugin with an asymmetric clipper
    and no coupling shows 1e-2 (the GxTubeScreamer); so does a recording with an interface's DC offset,
    which then stays in the model as it is in the takes.
    """
    return DEFAULT_HZ if worst < DC_FREE_RATIO else None


def choose(takes: Iterable[np.ndarray]) -> float | None:
    """:data:`DEFAULT_HZ` when every take is DC-free (:data:`DC_FREE_RATIO`), else ``None``."""
    return choose_for_ratio(worst_ratio(takes))


def initial_state() -> np.ndarray:
    """A fresh streaming state ``[x[-1], y[-1], started]`` (float64): it takes the steady state of the
    first sample it filters."""
    return np.zeros(3, dtype=np.float64)


@njit(cache=True, error_model="numpy")
def run_inplace(y: np.ndarray, n: int, r: float, state: np.ndarray) -> None:  # pragma: no cover - numba
    """Filter ``y[:n]`` (float32) in place; ``state`` (:func:`initial_state`) carries across calls."""
    if n == 0:
        return
    if state[2] == 0.0:
        state[0] = np.float64(y[0])
        state[1] = 0.0
        state[2] = 1.0
    x1 = state[0]
    y1 = state[1]
    for i in range(n):
        x0 = np.float64(y[i])
        y1 = x0 - x1 + r * y1
        x1 = x0
        y[i] = y1
    state[0] = x1
    state[1] = y1


def apply(y: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """The blocker over whole signals ``y`` (``(T,)`` or ``(B, T)``, float32 out), each row from the
    steady state of its first sample, as :func:`run_inplace` starts."""
    r = pole(cutoff_hz, sample_rate)
    y = np.asarray(y, dtype=np.float32).astype(np.float64)
    if y.shape[-1] == 0:
        return y.astype(np.float32)
    # lfilter's state for b = [1, -1], a = [1, -R] is z = -x[-1] + R y[-1]: -c in the steady state of c
    out = lfilter([1.0, -1.0], [1.0, -r], y, axis=-1, zi=-y[..., :1])[0]
    return np.asarray(out, dtype=np.float32)
