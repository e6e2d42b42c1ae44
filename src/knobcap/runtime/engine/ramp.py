"""Knob smoothing: the conditioning vector ramps linearly to a new setting; switches jump.

After ``set`` at some sample, with ``c0`` the vector the engine was using and ``c1`` the new one,
the ``n``-th sample processed afterwards (``n = 1, 2, ...``) is conditioned on

    c(n) = c0 + (c1 - c0) * min(n, R) / R          (knob entries; R = ramp length in samples)
    c(n) = c1                                      (switch entries, and every entry when R = 0)

so a knob arrives exactly at ``c1`` after ``R`` samples and nothing is ever stepped (no zipper noise).
The ramp state lives in small arrays that the kernels read and advance: ``cstate`` (float64, shape
(2, C): start, target) and the first entries of the kernel's int64 table ``itab`` (ring position,
samples since the last ``set``, ramp length R, ring capacity); the vectors are written into the
kernel's float32 memory at ``itab[CBUF]`` with row stride ``itab[STRIDE]`` (one row a control).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Header of every kernel's int64 table: ring position, samples since ``set``, ramp length, ring
# capacity, offset of the conditioning rows in the float32 memory, their stride, number of controls.
RING_POS, ELAPSED, RAMP_LEN, RING_CAPACITY, CBUF, STRIDE, N_CONTROLS = range(7)
HEADER = 8


@njit(cache=True, error_model="numpy")
def fill_conditioning(cstate: np.ndarray, itab: np.ndarray, mem: np.ndarray, n: int) -> bool:
    """Write the next ``n`` conditioning vectors into the memory's rows and advance the ramp.

    Returns True when the vector changes within this block (then every column is filled), False when
    it is constant (then only column 0 is filled).
    """
    C = itab[N_CONTROLS]
    base = itab[CBUF]
    stride = itab[STRIDE]
    elapsed = itab[ELAPSED]
    length = itab[RAMP_LEN]
    if elapsed >= length:
        for j in range(C):
            mem[base + j * stride] = np.float32(cstate[1, j])
        return False
    for t in range(n):
        e = elapsed + t + 1
        if e >= length:
            for j in range(C):
                mem[base + j * stride + t] = np.float32(cstate[1, j])
        else:
            f = e / length
            for j in range(C):
                mem[base + j * stride + t] = np.float32(cstate[0, j] + (cstate[1, j] - cstate[0, j]) * f)
    itab[ELAPSED] = min(elapsed + n, length)
    return True


@njit(cache=True, error_model="numpy")
def apply_gain(y: np.ndarray, n: int, gain_db: np.ndarray, elapsed: int, length: int) -> None:
    """Multiply ``y[:n]`` by an output gain that ramps by the same law, in dB: ``gain_db`` = (start,
    target); ``elapsed`` is the ramp's sample count before this block (an output-gain knob,
    :meth:`knobcap.controls.Controls.output_gain`)."""
    if elapsed >= length:
        g = np.float32(10.0 ** (gain_db[1] / 20.0))
        for t in range(n):
            y[t] *= g
        return
    for t in range(n):
        e = min(elapsed + t + 1, length)
        db = gain_db[0] + (gain_db[1] - gain_db[0]) * (e / length)
        y[t] *= np.float32(10.0 ** (db / 20.0))


def current_vector(cstate: np.ndarray, istate: np.ndarray) -> np.ndarray:
    """The conditioning vector of the last processed sample (float64)."""
    length = int(istate[RAMP_LEN])
    elapsed = int(istate[ELAPSED])
    if elapsed >= length:
        return cstate[1].copy()
    return cstate[0] + (cstate[1] - cstate[0]) * (elapsed / length)


def ramp_trajectory(start: np.ndarray, target: np.ndarray, knob_mask: np.ndarray, ramp: int,
                    n: int) -> np.ndarray:
    """The (C, n) float32 vectors of ``n`` samples after a ``set`` (the law above, for tests and tools)."""
    start = np.asarray(start, float).copy()
    target = np.asarray(target, float)
    start[~knob_mask] = target[~knob_mask]
    steps = np.arange(1, n + 1, dtype=float)
    frac = np.ones(n) if ramp <= 0 else np.minimum(steps, ramp) / ramp
    out = start[:, None] + (target - start)[:, None] * frac[None, :]
    return out.astype(np.float32)
