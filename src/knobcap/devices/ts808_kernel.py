"""The per-sample simulation of the TS808 circuit at the oversampled rate (numba, one thread).

All stages run in one loop over the oversampled input ``u`` (digital units):

1. input buffer high-pass, 2. (+)-input coupling high-pass -> ``V+``, 3. gain-leg current ``i3``,
4. the clipping ODE ``C2 dv/dt = i3 - v/R2 - I_D(v)`` by the trapezoidal rule, ``V_out = V+ + v``,
5. tone stage (biquad), 6. output coupling high-pass, 7. scale to digital.

Linear stages are bilinear transforms (the trapezoidal rule for linear ODEs), so the small-signal
response is exactly the bilinear image of the analytic one. The diodes are an antiparallel pair,
``I_D(v) = 2 Is sinh(v / nVt)``. With ``b = T / (2 C2)`` and ``a = 1 + b / R2`` the trapezoidal step
``v[n] = v[n-1] + b (f[n-1] + f[n])``, ``f = i3 - v/R2 - I_D(v)``, is

    phi(v[n]) = r[n],    phi(v) = a v + b I_D(v),
    r[n] = 2 v[n-1] - r[n-1] + b (i3[n-1] + i3[n])      (since b f[n] = b i3[n] + v[n] - r[n]).

``phi`` is one fixed, odd, increasing function per setting and rate, so the implicit step is the
inverse ``v = F(r)``: solved once per render on a grid (bisection, then Newton polish) and stored as
cubic Hermite cells, 64 per octave of ``|r|`` (the octave comes from the float's exponent), plus a uniform
base range near zero. The interpolation error is below 1e-8 V (checked in the tests against a direct
solve), no exponential is needed per sample, and the result is the trapezoidal rule solved exactly to
that tolerance. Beyond the table (a diode current above 1 A: never in this circuit) the step falls back
to Newton's method with SPICE-style junction limiting.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# coefficient vector layout (float64)
IN_B0, IN_B1, IN_A1 = 0, 1, 2  # input buffer high-pass
HP_B0, HP_B1, HP_A1 = 3, 4, 5  # (+)-input coupling high-pass: V+ from the buffer output
G_B0, G_B1, G_A1 = 6, 7, 8  # gain-leg admittance: i3 from V+
B_TRAP, INV_R2, IS, INV_NVT = 9, 10, 11, 12
T_B0, T_B1, T_B2, T_A1, T_A2 = 13, 14, 15, 16, 17  # tone stage biquad
O_B0, O_B1, O_A1 = 18, 19, 20  # output coupling high-pass
GAIN_IN, GAIN_OUT = 21, 22
N_COEFS = 23
N_STATE = 12
CELLS_PER_OCTAVE = 64
MAX_ITERATIONS = 100
NEWTON_TOLERANCE_V = 1e-10  # fallback solver only
MAX_EXPONENT = 300.0  # |v| / nVt beyond this would overflow; physical swings stay below ~60


@njit(cache=True)
def _phi_inverse_newton(r: float, a: float, b: float, i_s: float, nvt: float) -> tuple[float, int]:
    """Solve a v + 2 b Is sinh(v / nVt) = r by Newton's method (the rare path beyond the table)."""
    v = 0.0
    for it in range(MAX_ITERATIONS):
        x = min(max(v / nvt, -MAX_EXPONENT), MAX_EXPONENT)
        e = math.exp(x)
        g = a * v + b * i_s * (e - 1.0 / e) - r
        dg = a + b * i_s / nvt * (e + 1.0 / e)
        v_new = v - g / dg
        # junction limiting: an outward step longer than nVt is shortened logarithmically
        w = max(v, 0.0) if v_new > 0.0 else max(-v, 0.0)
        excess = abs(v_new) - w
        if excess > nvt:
            reach = w + nvt * (1.0 + math.log(excess / nvt))
            v_new = reach if v_new > 0.0 else -reach
        if abs(v_new - v) < NEWTON_TOLERANCE_V:
            return v_new, it + 1
        v = v_new
    return v, -1


def phi_inverse(r: np.ndarray, a: float, b: float, i_s: float, nvt: float) -> np.ndarray:
    """Vectorised ``F(r)``: bisection inside a guaranteed bracket, then three Newton steps."""
    r = np.asarray(r, dtype=float)
    cap = nvt * np.arcsinh(r / (2.0 * b * i_s))  # |F(r)| <= |r| / a and <= this
    lo = np.where(r >= 0, 0.0, np.maximum(r / a, cap))
    hi = np.where(r >= 0, np.minimum(r / a, cap), 0.0)
    for _ in range(90):
        mid = 0.5 * (lo + hi)
        below = a * mid + 2.0 * b * i_s * np.sinh(mid / nvt) < r
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    v = 0.5 * (lo + hi)
    for _ in range(3):
        g = a * v + 2.0 * b * i_s * np.sinh(v / nvt) - r
        v = v - g / (a + 2.0 * b * i_s / nvt * np.cosh(v / nvt))
    return v


def inverse_table(a: float, b: float, i_s: float, nvt: float,
                  cells_per_octave: int = CELLS_PER_OCTAVE) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Cubic cells of ``F`` for ``r >= 0``: (coefficients (cells, 4), k_min, k_max, cell edges).

    Cells: ``[0, 2^k_min)`` cut in ``m`` equal parts, then each octave ``[2^(k-1), 2^k)`` up to ``2^k_max``
    in ``m`` equal parts. ``2^k_max`` exceeds ``phi`` at a diode current of 1 A; ``2^k_min`` is where
    ``v`` is a hundredth of nVt. In cell ``i`` with local coordinate ``t`` in [0, 1):
    ``F = c0 + t (c1 + t (c2 + t c3))``, matching ``F`` and ``F' = 1 / phi'(F)`` at both ends.
    """
    m = cells_per_octave
    v_max = nvt * math.log(1.0 / i_s)
    k_max = math.ceil(math.log2(a * v_max + b * 1.0))
    k_min = math.floor(math.log2(0.01 * nvt * a))
    pieces = [np.arange(m) * (2.0 ** k_min / m)]
    pieces += [2.0 ** (k - 1) * (1.0 + np.arange(m) / m) for k in range(k_min + 1, k_max + 1)]
    edges = np.concatenate([*pieces, [2.0 ** k_max]])
    y = phi_inverse(edges, a, b, i_s, nvt)
    slope = 1.0 / (a + 2.0 * b * i_s / nvt * np.cosh(y / nvt))
    width = np.diff(edges)
    y0, y1, d0, d1 = y[:-1], y[1:], slope[:-1] * width, slope[1:] * width
    coefs = np.stack([y0, d0, 3.0 * (y1 - y0) - 2.0 * d0 - d1, 2.0 * (y0 - y1) + d0 + d1], axis=1)
    return np.ascontiguousarray(coefs), k_min, k_max, edges


@njit(cache=True, inline="always")
def _lookup(r: float, table: np.ndarray, k_min: int, base_scale: float, m: int) -> float:
    """``F(r)`` from the table (``|r|`` below ``2^k_max``); ``base_scale = m / 2^k_min``."""
    s = abs(r)
    if s * base_scale < m:  # below 2^k_min: uniform cells
        pos = s * base_scale
        j = int(pos)
        cell = j
    else:
        mantissa, exponent = math.frexp(s)  # s = mantissa 2^exponent, mantissa in [0.5, 1)
        pos = (2.0 * mantissa - 1.0) * m
        j = int(pos)
        cell = (exponent - k_min) * m + j
    t = pos - j
    v = table[cell, 0] + t * (table[cell, 1] + t * (table[cell, 2] + t * table[cell, 3]))
    return v if r >= 0.0 else -v


@njit(cache=True)
def run_ts808(u: np.ndarray, c: np.ndarray, table: np.ndarray, k_min: int, k_max: int,
              s: np.ndarray, stats: np.ndarray, out: np.ndarray) -> None:
    """Simulate the circuit over ``u`` into ``out[:u.size]`` with coefficients ``c`` and ``F`` table.

    ``s`` (length N_STATE, zeros at rest) is updated in place so that blocks chain seamlessly;
    ``stats`` accumulates [samples, samples solved beyond the table, fallback failures].
    """
    in_b0, in_b1, in_a1 = c[IN_B0], c[IN_B1], c[IN_A1]
    hp_b0, hp_b1, hp_a1 = c[HP_B0], c[HP_B1], c[HP_A1]
    b = c[B_TRAP]
    g_b0, g_b1, g_a1 = b * c[G_B0], b * c[G_B1], c[G_A1]  # j = b i3
    a = 1.0 + b * c[INV_R2]
    i_s, nvt = c[IS], 1.0 / c[INV_NVT]
    t_b0, t_b1, t_b2, t_a1, t_a2 = c[T_B0], c[T_B1], c[T_B2], c[T_A1], c[T_A2]
    o_b0, o_b1, o_a1 = c[O_B0], c[O_B1], c[O_A1]
    gain_in, gain_out = c[GAIN_IN], c[GAIN_OUT]
    m = table.shape[0] // (k_max - k_min + 1)
    base_scale = m / 2.0 ** k_min
    r_max = 2.0 ** k_max
    in_x1, in_y1, hp_x1, hp_y1, g_x1, j1 = s[0], s[1], s[2], s[3], s[4], s[5]
    v1, r1 = s[6], s[7]
    t_z1, t_z2, o_x1, o_y1 = s[8], s[9], s[10], s[11]
    beyond = 0
    failures = 0
    for n in range(u.size):
        x = gain_in * u[n]
        buf = in_b0 * x + in_b1 * in_x1 - in_a1 * in_y1
        in_x1 = x
        in_y1 = buf
        vp = hp_b0 * buf + hp_b1 * hp_x1 - hp_a1 * hp_y1
        hp_x1 = buf
        hp_y1 = vp
        j = g_b0 * vp + g_b1 * g_x1 - g_a1 * j1
        g_x1 = vp
        # clipping stage: trapezoidal step, phi(v) = r
        r = 2.0 * v1 - r1 + j1 + j
        j1 = j
        if abs(r) < r_max:
            v = _lookup(r, table, k_min, base_scale, m)
        else:
            v, its = _phi_inverse_newton(r, a, b, i_s, nvt)
            beyond += 1
            if its < 0:
                failures += 1
        v1 = v
        r1 = r
        vout = vp + v
        # tone stage, transposed direct form II
        y = t_b0 * vout + t_z1
        t_z1 = t_b1 * vout - t_a1 * y + t_z2
        t_z2 = t_b2 * vout - t_a2 * y
        # output coupling
        o = o_b0 * y + o_b1 * o_x1 - o_a1 * o_y1
        o_x1 = y
        o_y1 = o
        out[n] = gain_out * o
    s[0], s[1], s[2], s[3], s[4], s[5] = in_x1, in_y1, hp_x1, hp_y1, g_x1, j1
    s[6], s[7] = v1, r1
    s[8], s[9], s[10], s[11] = t_z1, t_z2, o_x1, o_y1
    stats[0] += u.size
    stats[1] += beyond
    stats[2] += failures
