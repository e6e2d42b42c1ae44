"""The per-sample simulation of the TS808 circuit at the oversampled rate (numba, one thread).

All stages run in one loop over the oversampled input ``u`` (volts at the pedal input):

1. input buffer high-pass, 2. (+)-input coupling high-pass -> ``V+``, 3. gain-leg current ``i3``,
4. the clipping ODE ``C2 dv/dt = i3 - v/R2 - I_D(v)`` by the trapezoidal rule,
``V_out = V+ + v``, 5. tone stage (biquad), 6. output coupling high-pass, 7. scale to digital.

Linear stages are bilinear transforms (the trapezoidal rule for linear ODEs), so the small-signal
response is exactly the bilinear image of the analytic one. The diodes are an antiparallel pair,
``I_D(v) = 2 Is sinh(v / nVt)``. Each step solves

    g(v) = a v + b I_D(v) - r = 0,   a = 1 + b/R2,  b = T/(2 C2),  r = v[n-1] + b (f[n-1] + i3[n])

by Newton's method; ``f = i3 - v/R2 - I_D(v)``. The first guess solves ``g`` with the diode linearised
at the previous step (``I_D(v) ~ I_D[n-1] + I_D'[n-1] (v - v[n-1])``, no exponential), which is within
about a microvolt of the root at 8x oversampling, so one Newton step usually suffices. With
``E = exp(v / nVt)``, ``g`` and ``g'`` share the factor ``1/E``::

    dv = -[(a v - r) E + b Is (E^2 - 1)] / [a E + (b Is / nVt)(E^2 + 1)],

one exponential and one division per iteration. After a step ``dv`` the remaining error is about
``(g''/2g') dv^2 <= dv^2 / (2 nVt)``; we stop once that bound is below the tolerance (``DV_TOL`` holds
``sqrt(2 nVt tol)``). Far from the root (a square wave's edge) Newton would overshoot deep into the
exponential and then crawl back one nVt per step; as in SPICE's junction limiting, a step that moves
``|v|`` outwards by more than nVt is shortened logarithmically (:func:`_limit`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# coefficient vector layout (float64)
IN_B0, IN_B1, IN_A1 = 0, 1, 2  # input buffer high-pass
HP_B0, HP_B1, HP_A1 = 3, 4, 5  # (+)-input coupling high-pass: V+ from the buffer output
G_B0, G_B1, G_A1 = 6, 7, 8  # gain-leg admittance: i3 from V+
B_TRAP, INV_R2, IS, INV_NVT, DV_TOL = 9, 10, 11, 12, 13
T_B0, T_B1, T_B2, T_A1, T_A2 = 14, 15, 16, 17, 18  # tone stage biquad
O_B0, O_B1, O_A1 = 19, 20, 21  # output coupling high-pass
GAIN_IN, GAIN_OUT = 22, 23
N_COEFS = 24
N_STATE = 14
MAX_ITERATIONS = 60
MAX_EXPONENT = 300.0  # |v| / nVt beyond this would overflow E^2; physical swings stay below ~60


@njit(cache=True, inline="always")
def _limit(v_old: float, v_new: float, nvt: float) -> float:
    """Shorten an outward step: ``w + nVt (1 + log(d / nVt))`` for an excess ``d > nVt`` beyond ``w``.

    ``w`` is how far ``v_old`` already lies on ``v_new``'s side of zero (0 when it is on the other side).
    """
    w = max(v_old, 0.0) if v_new > 0.0 else max(-v_old, 0.0)
    excess = abs(v_new) - w
    if excess <= nvt:
        return v_new
    reach = w + nvt * (1.0 + np.log(excess / nvt))
    return reach if v_new > 0.0 else -reach


@njit(cache=True)
def run_ts808(u: np.ndarray, c: np.ndarray, s: np.ndarray, stats: np.ndarray, out: np.ndarray) -> None:
    """Simulate the circuit over ``u`` (digital units) into ``out[:u.size]``, coefficients ``c``, state ``s``.

    ``s`` (length N_STATE, zeros at rest) is updated in place so that blocks chain seamlessly;
    ``stats`` accumulates [samples, Newton iterations, samples that hit the iteration limit].
    """
    in_b0, in_b1, in_a1 = c[IN_B0], c[IN_B1], c[IN_A1]
    hp_b0, hp_b1, hp_a1 = c[HP_B0], c[HP_B1], c[HP_A1]
    g_b0, g_b1, g_a1 = c[G_B0], c[G_B1], c[G_A1]
    b, inv_r2, i_s, inv_nvt, dv_tol = c[B_TRAP], c[INV_R2], c[IS], c[INV_NVT], c[DV_TOL]
    t_b0, t_b1, t_b2, t_a1, t_a2 = c[T_B0], c[T_B1], c[T_B2], c[T_A1], c[T_A2]
    o_b0, o_b1, o_a1 = c[O_B0], c[O_B1], c[O_A1]
    gain_in, gain_out = c[GAIN_IN], c[GAIN_OUT]
    a = 1.0 + b * inv_r2
    in_x1, in_y1, hp_y1, g_y1 = s[0], s[1], s[2], s[3]
    v1, f1, i_d1, inv1 = s[4], s[5], s[6], s[13]
    t_z1, t_z2, o_x1, o_y1 = s[7], s[8], s[9], s[10]
    hp_x1, g_x1 = s[11], s[12]
    iterations = 0
    failures = 0
    bis = b * i_s
    nvt = 1.0 / inv_nvt
    k = bis * inv_nvt
    if inv1 == 0.0:  # at rest: the diodes' small-signal conductance 2 Is / nVt
        inv1 = 1.0 / (a + 2.0 * k)
    for n in range(u.size):
        start = iterations
        x = gain_in * u[n]
        buf = in_b0 * x + in_b1 * in_x1 - in_a1 * in_y1
        in_x1 = x
        in_y1 = buf
        vp = hp_b0 * buf + hp_b1 * hp_x1 - hp_a1 * hp_y1
        hp_x1 = buf
        hp_y1 = vp
        i3 = g_b0 * vp + g_b1 * g_x1 - g_a1 * g_y1
        g_x1 = vp
        g_y1 = i3
        # clipping ODE, trapezoidal rule, Newton from a linearised guess
        r = v1 + b * (f1 + i3)
        v = _limit(v1, v1 + (r - a * v1 - b * i_d1) * inv1, nvt)
        while True:
            x_d = min(max(v * inv_nvt, -MAX_EXPONENT), MAX_EXPONENT)
            e = np.exp(x_d)
            e2 = e * e
            # g and g' both carry a factor 1/E: one division gives the step
            den = a * e + k * (e2 + 1.0)
            v_new = _limit(v, v - ((a * v - r) * e + bis * (e2 - 1.0)) / den, nvt)
            dv = v_new - v
            v = v_new
            iterations += 1
            if abs(dv) < dv_tol:
                break
            if iterations - start > MAX_ITERATIONS:
                failures += 1
                break
        ei = 1.0 / e
        di_d = i_s * inv_nvt * (e + ei)
        i_d1 = i_s * (e - ei) + di_d * dv
        inv1 = e / den
        f1 = i3 - v * inv_r2 - i_d1
        v1 = v
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
    s[0], s[1], s[2], s[3] = in_x1, in_y1, hp_y1, g_y1
    s[4], s[5], s[6], s[13] = v1, f1, i_d1, inv1
    s[7], s[8], s[9], s[10] = t_z1, t_z2, o_x1, o_y1
    s[11], s[12] = hp_x1, g_x1
    stats[0] += u.size
    stats[1] += iterations
    stats[2] += failures
