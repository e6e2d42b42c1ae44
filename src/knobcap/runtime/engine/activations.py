"""Activations of the streaming engine, as numba kernels that vectorise.

``tanh`` (:func:`knobcap.models.rational_tanh.fast_tanh`, shared with the training kernel) is a rational
approximation, odd and clamped, fitted by knobcap (weighted least squares
towards minimax on [0, 9], then checked in float32 arithmetic):

    tanh(x) ~= x P(x^2) / Q(x^2),   |x| <= 9;   +-1 beyond,
    P(s) = p0 + p1 s + ... + p4 s^4,   Q(s) = 1 + q1 s + ... + q4 s^4,

with max abs error about 3.4e-7 over the real line when evaluated in float32 (PyTorch's own float32
tanh is about 3e-8 from the exact value). It is built from multiplies, adds, a division and clamps,
so loops over it vectorise (a libm call would not), and it is accurate enough that the engine matches
the PyTorch models to 1e-5. The logistic sigmoid uses the identity ``sigmoid(x) = (1 + tanh(x/2)) / 2``.

Activation codes shared with the kernels: 0 = tanh, 1 = hardtanh (clip to [-1, 1]), 2 = leaky ReLU
(slope :data:`knobcap.models.architectures.LEAKY_SLOPE`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from knobcap.models.architectures import LEAKY_SLOPE
from knobcap.models.rational_tanh import fast_tanh

TANH, HARDTANH, LEAKY_RELU = 0, 1, 2
ACTIVATION_CODES: dict[str, int] = {"tanh": TANH, "hardtanh": HARDTANH, "leaky_relu": LEAKY_RELU}

_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_SLOPE = np.float32(LEAKY_SLOPE)


@njit(cache=True, inline="always", error_model="numpy")
def fast_sigmoid(x: float) -> float:
    """Logistic sigmoid through the rational tanh: ``(1 + tanh(x / 2)) / 2``."""
    return _HALF + _HALF * fast_tanh(_HALF * x)


@njit(cache=True, error_model="numpy")
def activate(z: np.ndarray, start: int, n: int, code: int) -> None:
    """Apply activation ``code`` in place to ``z[start:start + n]``."""
    if code == TANH:
        for t in range(start, start + n):
            z[t] = fast_tanh(z[t])
    elif code == HARDTANH:
        for t in range(start, start + n):
            z[t] = min(max(z[t], -_ONE), _ONE)
    else:
        for t in range(start, start + n):
            v = z[t]
            z[t] = v if v >= 0 else _SLOPE * v


def tanh_array(x: np.ndarray) -> np.ndarray:
    """The engine's tanh over a float32 array (a copy), for tests and for checking its accuracy."""
    out = np.array(x, dtype=np.float32, copy=True).ravel()
    activate(out, 0, out.size, TANH)
    return out.reshape(np.shape(x))


@njit(cache=True, error_model="numpy")
def activate_rows(S: np.ndarray, plane: int, head: int, rows: int, n: int, code: int) -> None:
    """``S[plane, r] = act(S[plane, r])`` and ``S[head, r] += S[plane, r]`` for rows r < ``rows``,
    samples < ``n`` (the WaveNet's activation and skip sum in one pass)."""
    for r in range(rows):
        if code == TANH:
            for t in range(n):
                a = fast_tanh(S[plane, r, t])
                S[plane, r, t] = a
                S[head, r, t] += a
        elif code == HARDTANH:
            for t in range(n):
                v = S[plane, r, t]
                v = _ONE if v > _ONE else v
                v = -_ONE if v < -_ONE else v
                S[plane, r, t] = v
                S[head, r, t] += v
        else:
            for t in range(n):
                v = S[plane, r, t]
                v = v if v >= 0 else _SLOPE * v
                S[plane, r, t] = v
                S[head, r, t] += v
