"""A rational ``tanh`` that vectorises, shared by the streaming engine (``knobcap.runtime.engine``) and the
training kernel (``knobcap.models.wavenet_kernel``); numpy and numba only, no torch.

Fitted by knobcap (weighted least squares towards minimax on [0, 9], then checked in float32 arithmetic):

    tanh(x) ~= x P(x^2) / Q(x^2),   |x| <= 9;   +-1 beyond,
    P(s) = p0 + p1 s + ... + p4 s^4,   Q(s) = 1 + q1 s + ... + q4 s^4,

with max abs error about 3.4e-7 over the real line when evaluated in float32 (PyTorch's own float32
tanh is about 3e-8 from the exact value). It is built from multiplies, adds, a division and clamps,
so loops over it vectorise (a libm call would not).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_CLAMP = np.float32(9.0)
_P0 = np.float32(0.9999999063286007)
_P1 = np.float32(0.13373205694495707)
_P2 = np.float32(0.0034865915589356515)
_P3 = np.float32(2.047199653154848e-05)
_P4 = np.float32(1.3184467175530786e-08)
_Q1 = np.float32(0.46706502550875284)
_Q2 = np.float32(0.025842015534607292)
_Q3 = np.float32(0.0003271401489159873)
_Q4 = np.float32(7.70276026843712e-07)
_ONE = np.float32(1.0)


@njit(cache=True, inline="always", error_model="numpy")
def fast_tanh(x: float) -> float:
    """Rational tanh (see the module docstring); float32 in, float32 out."""
    x = _CLAMP if x > _CLAMP else x  # selects, not branches: the loops stay vectorised
    x = -_CLAMP if x < -_CLAMP else x
    s = x * x
    p = (((_P4 * s + _P3) * s + _P2) * s + _P1) * s + _P0
    q = (((_Q4 * s + _Q3) * s + _Q2) * s + _Q1) * s + _ONE
    y = x * p / q
    y = _ONE if y > _ONE else y
    return -_ONE if y < -_ONE else y
