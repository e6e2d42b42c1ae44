"""A fused numba forward and backward of :class:`~knobcap.models.wavenet.ConditionedWaveNet` for training
on the CPU (issue 13): held setting, linear mixin, tanh, FiLM on or off. The setting ``s`` the layers see
is the model's (``c``, or ``[c; tanh(A c + a)]`` with ``cond_hidden``, which torch computes and
differentiates around the kernel), so the backward also gives each item's ``ds``.

Every signal is kept at the input's full length ``L`` on one global time axis: a layer whose output has
``L_out`` samples owns positions ``[L - L_out, L)``, so the residual, the head sum and the audio's mixin
all read the same ``t``. Per batch item ``n`` (setting ``s``), per layer (channels ``ch``, kernel ``k``,
dilation ``d``), for ``t >= start_out``:

    u[o, t] = b[o] + sum_{i, m} W[o, i, m] h[i, t - (k - 1 - m) d]
    z[o, t] = g[o] u[o, t] + Mx[o] x[t] + (Mc s)[o],   g = 1 + F s   (g = 1 without FiLM)
    a = tanh(z);   h'[o, t] = h[o, t] + ob[o] + sum_i O[o, i] a[i, t];   head[o, t] += a[o, t]

An array's first ``h`` is its rechannel ``R`` (1x1, no bias) of the audio (first array) or of the
previous array's last ``h'``; its head sum starts from the previous array's head output (0 for the
first); its head output is ``Hout = H head + hb`` (head_rechannel); the model's ``y = head_scale *
Hout[0]`` of the last array, over the positions ``[RF - 1, L)`` (``RF`` the receptive field).

The forward saves ``h`` (every layer's input), ``u`` and ``a``, and each array's head sum. The backward
walks the layers in reverse with ``dh`` (gradient of the layer's output ``h'``) and ``dhead`` (of the
head sum, the same for every layer of an array: ``H^T dHout`` where the head reaches the output, 0
elsewhere):

    da = O^T dh + dhead,   dz = da (1 - a^2),   du = g dz
    dO += dh a^T,  dob += sum_t dh,  dF += (sum_t dz u) s^T,  dMx += sum_t dz x,  dMc += (sum_t dz) s^T
    ds += F^T (sum_t dz u) + Mc^T (sum_t dz)   (per item; after the parameters' gradients in ``grads``)
    db += sum_t du,  dW[o, i, m] += sum_t du[o, t] h[i, t - (k - 1 - m) d]
    dh_in[i, t] = dh[i, t] + sum_{o, m} W[o, i, m] du[o, t + (k - 1 - m) d]

and per array ``dH += dHout head^T``, ``dhb += sum_t dHout``, ``dR += dh_0 h_prev^T`` and the previous
array's ``dh' = R^T dh_0`` and ``dHout = dhead`` (``dHout = head_scale dy`` on row 0 of the last array).

The saved planes (``hs``, ``us``, ``acts``, ``heads``: ``B (3 layers + 2 arrays) Cmax L`` float32
in all) are pooled by shape and reused between steps: each forward takes its own set, the backward
overwrites ``us`` and ``acts`` with ``du`` and ``dz`` and hands the set back, so one forward runs one
backward (a second one, ``retain_graph=True``, is refused) and forwards pending together never share.

Parameters travel as one flat float32 vector ``theta`` (:func:`parameters`' order), sizes and offsets
in two int64 tables (:func:`tables`). The batch items run in parallel (``prange``; the thread count is
:func:`set_threads`' or torch's); loops run over time innermost on contiguous rows, nothing is allocated
inside them, and the backward's gradient planes are pooled like the saved ones. Where the channel count
allows, rows go four at a time (each input row read once for four output rows: the convolution, the 1x1
output, their gradients), and with ``k = 3`` the three taps together: session 5, 2-core CPU, default
model, batch 8 x 5,116, 1 thread: forward 12.1 -> 9.6 ms, backward 20.7 -> 14 ms. ``tanh`` is the
engine's rational approximation (:mod:`knobcap.models.rational_tanh`, within 3.4e-7 of the exact value).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numba
import numpy as np
import torch
from numba import njit, prange

from knobcap.models.architectures import setting_size
from knobcap.models.kernel_support import unsupported_part
from knobcap.models.rational_tanh import fast_tanh

_JIT: dict[str, Any] = {"cache": True, "error_model": "numpy",
                        "fastmath": {"contract", "reassoc", "nsz", "arcp"}}
_BLOCK = 256  # samples per time block of the convolution (the rows stay in L1)


def _threading_layer() -> str:
    """numba's OpenMP pool where it loads, else its workqueue. Measured in the training loop (2-core
    CPU, default model, the kernel on 2 threads and torch on 1): 27-28 steps/s on the OpenMP pool
    against 22-23 on the workqueue, whose workers wake too slowly between kernel calls; torch's own
    forward was not slower after kernels on either (on 1 or 2 threads)."""
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (needs the system's libgomp)
    except ImportError:
        return "workqueue"
    return "omp"


if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = _threading_layer()

# The layer table's columns (one row per layer, all arrays in order): channels, kernel size, dilation; the
# offsets in the flat parameter vector of the conv weight and bias, FiLM (-1: none), mixin, out weight and
# bias; the first position of the layer's input and of its output on the global time axis.
L_CH, L_K, L_D, L_CONVW, L_CONVB, L_FILM, L_MIX, L_OUTW, L_OUTB, L_START_IN, L_START_OUT = range(11)
# The array table's columns (one row per array): input channels, channels, head size; the offsets of the
# rechannel weight and of the head_rechannel weight and bias; the array's first layer (a layer-table row)
# and layer count; its first slot in ``hs`` (the rechannel's output, then one per layer); the first
# position of its input and of its output.
A_CIN, A_CH, A_HS, A_RECH, A_HEADW, A_HEADB, A_FIRST, A_LAYERS, A_SLOT, A_START, A_END = range(11)


def supported(config: Mapping[str, Any]) -> bool:
    """Whether the kernel runs this WaveNet config (otherwise the model's torch path does)."""
    return unsupported_part(config) is None


def parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The WaveNet's parameters in the kernel's order (per array: rechannel, per layer conv weight and
    bias, FiLM, mixin, out weight and bias, then head_rechannel weight and bias)."""
    out: list[torch.nn.Parameter] = []
    for array in model.arrays:  # type: ignore[attr-defined]
        out.append(array.rechannel.weight)
        for layer in array.layers:
            out += [layer.conv.weight, layer.conv.bias]
            if hasattr(layer, "film"):
                out.append(layer.film.weight)
            out += [layer.mixin.weight, layer.out.weight, layer.out.bias]
        out += [array.head_rechannel.weight, array.head_rechannel.bias]
    return out


def tables(config: Mapping[str, Any], length: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The layer and array tables for inputs of ``length`` samples, and the flat parameter count."""
    n_controls = setting_size(config)  # the rows of the setting the layers see
    film = bool(config.get("film", False))
    layers: list[list[int]] = []
    arrays: list[list[int]] = []
    offset, start, slot, cin = 0, 0, 0, 1
    for spec in config["arrays"]:
        ch, k = int(spec["channels"]), int(spec["kernel_size"])
        rech = offset
        offset += ch * cin
        first, array_start = len(layers), start
        for d in spec["dilations"]:
            row = [ch, k, int(d), offset, offset + ch * ch * k, -1, 0, 0, 0, start, start + (k - 1) * int(d)]
            offset += ch * ch * k + ch
            if film:
                row[L_FILM] = offset
                offset += ch * n_controls
            row[L_MIX] = offset
            offset += ch * (1 + n_controls)
            row[L_OUTW], row[L_OUTB] = offset, offset + ch * ch
            offset += ch * ch + ch
            start = row[L_START_OUT]
            layers.append(row)
        hs = int(spec["head_size"])
        arrays.append([cin, ch, hs, rech, offset, offset + hs * ch, first, len(spec["dilations"]), slot,
                       array_start, start])
        offset += hs * ch + hs
        slot += len(spec["dilations"]) + 1
        cin = ch
    if start >= length:
        raise ValueError(f"input of {length} samples is shorter than the receptive field ({start + 1}).")
    return np.array(layers, np.int64), np.array(arrays, np.int64), offset


@njit(**_JIT)
def _fill(dst: np.ndarray, value: float) -> None:
    for t in range(dst.shape[0]):
        dst[t] = value


@njit(**_JIT)
def _axpy(dst: np.ndarray, w: float, src: np.ndarray) -> None:
    """``dst += w src`` (rows of equal length)."""
    for t in range(dst.shape[0]):
        dst[t] += w * src[t]


@njit(**_JIT)
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    acc = np.float32(0.0)
    for t in range(a.shape[0]):
        acc += a[t] * b[t]
    return acc


@njit(**_JIT)
def _total(a: np.ndarray) -> float:
    acc = np.float32(0.0)
    for t in range(a.shape[0]):
        acc += a[t]
    return acc


@njit(**_JIT)
def _dot4(a: np.ndarray, b0: np.ndarray, b1: np.ndarray, b2: np.ndarray, b3: np.ndarray
          ) -> tuple[float, float, float, float]:
    """``(a . b0, a . b1, a . b2, a . b3)``: ``a`` read once for four dot products."""
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for t in range(a.shape[0]):
        v = a[t]
        s0 += v * b0[t]
        s1 += v * b1[t]
        s2 += v * b2[t]
        s3 += v * b3[t]
    return s0, s1, s2, s3


@njit(**_JIT)
def _axpy4(d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, d3: np.ndarray, w0: float, w1: float, w2: float,
           w3: float, src: np.ndarray) -> None:
    """``d_j += w_j src`` for four rows at once (``src`` read once)."""
    for t in range(src.shape[0]):
        v = src[t]
        d0[t] += w0 * v
        d1[t] += w1 * v
        d2[t] += w2 * v
        d3[t] += w3 * v


@njit(**_JIT)
def _dot4x3(h0: np.ndarray, h1: np.ndarray, h2: np.ndarray, u0: np.ndarray, u1: np.ndarray, u2: np.ndarray,
            u3: np.ndarray) -> tuple[float, ...]:
    """``u_r . h_m`` for four rows ``u_r`` and three (shifted) rows ``h_m``, in the order ``3 r + m``: each
    row read once for the twelve sums (the conv weights' gradient of four output rows, ``k = 3``)."""
    a0 = a1 = a2 = b0 = b1 = b2 = c0 = c1 = c2 = e0 = e1 = e2 = np.float32(0.0)
    for t in range(u0.shape[0]):
        p, q, r = h0[t], h1[t], h2[t]
        v = u0[t]
        a0 += v * p
        a1 += v * q
        a2 += v * r
        v = u1[t]
        b0 += v * p
        b1 += v * q
        b2 += v * r
        v = u2[t]
        c0 += v * p
        c1 += v * q
        c2 += v * r
        v = u3[t]
        e0 += v * p
        e1 += v * q
        e2 += v * r
    return a0, a1, a2, b0, b1, b2, c0, c1, c2, e0, e1, e2


@njit(**_JIT)
def _transpose_block4(dh: np.ndarray, u: np.ndarray, theta: np.ndarray, cw: int, i: int, ch: int, d: int,
                      t0: int, t1: int) -> None:
    """``dh[i + j, t] += sum_{o, m} W[o, i + j, m] u[o, t + (2 - m) d]`` for ``j < 4``, ``t`` in ``[t0, t1)``
    where every tap is in range (``k = 3``): each ``u`` row read once for the four rows."""
    d0, d1, d2, d3 = dh[i, t0:t1], dh[i + 1, t0:t1], dh[i + 2, t0:t1], dh[i + 3, t0:t1]
    for o in range(ch):  # W[o, i + r, m] = theta[q + 3 r + m]
        _taps3_rows4(d0, d1, d2, d3, u[o, t0 + 2 * d:t1 + 2 * d], u[o, t0 + d:t1 + d], u[o, t0:t1], theta,
                     cw + (o * ch + i) * 3, 3)


@njit(**_JIT)
def _tanh_grad(act: np.ndarray, da: np.ndarray) -> None:
    """``act <- da (1 - act^2)``: the gradient through ``tanh`` from its output, in place."""
    for t in range(act.shape[0]):
        v = act[t]
        act[t] = da[t] * (np.float32(1.0) - v * v)


@njit(**_JIT)
def _conv_block(ub: np.ndarray, h_in: np.ndarray, theta: np.ndarray, q: int, ch: int, k: int, d: int,
                t0: int, t1: int) -> None:
    """``ub += sum_{i, m} W[o, i, m] h[i, t - (k - 1 - m) d]`` for ``t`` in ``[t0, t1)``; ``q`` = W[o]."""
    n = t1 - t0
    for i in range(ch):
        if k == 3:
            s0 = h_in[i, t0 - 2 * d:t1 - 2 * d]
            s1 = h_in[i, t0 - d:t1 - d]
            s2 = h_in[i, t0:t1]
            w0, w1, w2 = theta[q + i * 3], theta[q + i * 3 + 1], theta[q + i * 3 + 2]
            for t in range(n):
                ub[t] += w0 * s0[t] + w1 * s1[t] + w2 * s2[t]
        else:
            for m in range(k):
                shift = (k - 1 - m) * d
                _axpy(ub, theta[q + i * k + m], h_in[i, t0 - shift:t1 - shift])


@njit(inline="always", **_JIT)
def _taps3_rows4(r0: np.ndarray, r1: np.ndarray, r2: np.ndarray, r3: np.ndarray, s0: np.ndarray,
                 s1: np.ndarray, s2: np.ndarray, theta: np.ndarray, q: int, stride: int) -> None:
    """``r_j[t] += sum_m theta[q + j stride + m] s_m[t]`` for four rows and three (shifted) sources, each
    source read once: the ``k = 3`` convolution (:func:`_conv_block4`) and its transpose
    (:func:`_transpose_block4`) differ only in which rows and sources they pass and the weights' stride."""
    a0, a1, a2 = theta[q], theta[q + 1], theta[q + 2]
    b0, b1, b2 = theta[q + stride], theta[q + stride + 1], theta[q + stride + 2]
    c0, c1, c2 = theta[q + 2 * stride], theta[q + 2 * stride + 1], theta[q + 2 * stride + 2]
    e0, e1, e2 = theta[q + 3 * stride], theta[q + 3 * stride + 1], theta[q + 3 * stride + 2]
    for t in range(r0.shape[0]):
        v0, v1, v2 = s0[t], s1[t], s2[t]
        r0[t] += a0 * v0 + a1 * v1 + a2 * v2
        r1[t] += b0 * v0 + b1 * v1 + b2 * v2
        r2[t] += c0 * v0 + c1 * v1 + c2 * v2
        r3[t] += e0 * v0 + e1 * v1 + e2 * v2


@njit(**_JIT)
def _conv_block4(u: np.ndarray, h_in: np.ndarray, theta: np.ndarray, cw: int, cb: int, o: int, ch: int,
                 d: int, t0: int, t1: int) -> None:
    """:func:`_conv_block` with its bias for the rows ``o .. o + 3`` at once (``k = 3``): each input row
    is read once for four outputs (measured 10 % faster than one row at a time)."""
    n = t1 - t0
    u0, u1, u2, u3 = u[o, t0:t1], u[o + 1, t0:t1], u[o + 2, t0:t1], u[o + 3, t0:t1]
    b0, b1, b2, b3 = theta[cb + o], theta[cb + o + 1], theta[cb + o + 2], theta[cb + o + 3]
    for t in range(n):
        u0[t] = b0
        u1[t] = b1
        u2[t] = b2
        u3[t] = b3
    row = 3 * ch  # W[o] holds ch x 3 weights: W[o + r, i, m] = theta[q + r row + m]
    for i in range(ch):
        _taps3_rows4(u0, u1, u2, u3, h_in[i, t0 - 2 * d:t1 - 2 * d], h_in[i, t0 - d:t1 - d], h_in[i, t0:t1],
                     theta, cw + o * row + 3 * i, row)


@njit(**_JIT)
def _out_block4(h_out: np.ndarray, h_in: np.ndarray, act: np.ndarray, theta: np.ndarray, ow: int, ob: int,
                o: int, ch: int, t0: int, t1: int) -> None:
    """``h'[r] = h[r] + ob[r] + sum_i O[r, i] a[i]`` for the rows ``r = o .. o + 3`` at once (each ``a``
    row read once for four outputs: measured 20 % faster)."""
    n = t1 - t0
    r0, r1, r2, r3 = h_out[o, t0:t1], h_out[o + 1, t0:t1], h_out[o + 2, t0:t1], h_out[o + 3, t0:t1]
    i0, i1, i2, i3 = h_in[o, t0:t1], h_in[o + 1, t0:t1], h_in[o + 2, t0:t1], h_in[o + 3, t0:t1]
    b0, b1, b2, b3 = theta[ob + o], theta[ob + o + 1], theta[ob + o + 2], theta[ob + o + 3]
    for t in range(n):
        r0[t] = i0[t] + b0
        r1[t] = i1[t] + b1
        r2[t] = i2[t] + b2
        r3[t] = i3[t] + b3
    q = ow + o * ch
    for i in range(ch):
        src = act[i, t0:t1]
        w0, w1, w2, w3 = theta[q + i], theta[q + ch + i], theta[q + 2 * ch + i], theta[q + 3 * ch + i]
        for t in range(n):
            v = src[t]
            r0[t] += w0 * v
            r1[t] += w1 * v
            r2[t] += w2 * v
            r3[t] += w3 * v


@njit(**_JIT)
def _forward_item(x: np.ndarray, s: np.ndarray, theta: np.ndarray, layer_table: np.ndarray,
                  array_table: np.ndarray, scale: float, hs: np.ndarray, us: np.ndarray, acts: np.ndarray,
                  heads: np.ndarray, y: np.ndarray) -> None:
    length = x.shape[0]
    n_c = s.shape[0]
    n_arrays = array_table.shape[0]
    cmax = hs.shape[1]
    n_slots, n_planes = hs.shape[0], us.shape[0]  # fewer than needed: reused in turn (inference)
    gain = np.empty(cmax, np.float32)
    const = np.empty(cmax, np.float32)
    for a in range(n_arrays):
        array_row = array_table[a]
        cin, ch, n_head = array_row[A_CIN], array_row[A_CH], array_row[A_HS]
        rech, slot, start0, end = array_row[A_RECH], array_row[A_SLOT], array_row[A_START], array_row[A_END]
        h0 = hs[slot % n_slots]
        for o in range(ch):
            row = h0[o, start0:]
            _fill(row, 0.0)
            for i in range(cin):
                src = x[start0:] if a == 0 else hs[(slot - 1) % n_slots, i, start0:]
                _axpy(row, theta[rech + o * cin + i], src)
        head = heads[a]
        for j in range(array_row[A_LAYERS]):
            layer = array_row[A_FIRST] + j
            layer_row = layer_table[layer]
            k, d = layer_row[L_K], layer_row[L_D]
            cw, cb, film = layer_row[L_CONVW], layer_row[L_CONVB], layer_row[L_FILM]
            mix, ow, ob = layer_row[L_MIX], layer_row[L_OUTW], layer_row[L_OUTB]
            begin = layer_row[L_START_OUT]
            h_in, h_out = hs[(slot + j) % n_slots], hs[(slot + j + 1) % n_slots]
            u, act = us[layer % n_planes], acts[layer % n_planes]
            for o in range(ch):
                g = np.float32(1.0)
                if film >= 0:
                    for q in range(n_c):
                        g += theta[film + o * n_c + q] * s[q]
                gain[o] = g
                cst = np.float32(0.0)
                for q in range(n_c):
                    cst += theta[mix + o * (1 + n_c) + 1 + q] * s[q]
                const[o] = cst
            for t0 in range(begin, length, _BLOCK):
                t1 = min(t0 + _BLOCK, length)
                n = t1 - t0
                xb = x[t0:t1]
                quads = ch - ch % 4 if k == 3 else 0  # output rows done four at a time
                for o in range(0, quads, 4):
                    _conv_block4(u, h_in, theta, cw, cb, o, ch, d, t0, t1)
                for o in range(quads, ch):
                    ub = u[o, t0:t1]
                    _fill(ub, theta[cb + o])
                    _conv_block(ub, h_in, theta, cw + o * ch * k, ch, k, d, t0, t1)
                for o in range(ch):
                    ub, ab = u[o, t0:t1], act[o, t0:t1]
                    g, wx, cst = gain[o], theta[mix + o * (1 + n_c)], const[o]
                    for t in range(n):
                        ab[t] = fast_tanh(g * ub[t] + wx * xb[t] + cst)
                for o in range(0, ch - ch % 4, 4):
                    _out_block4(h_out, h_in, act, theta, ow, ob, o, ch, t0, t1)
                for o in range(ch - ch % 4, ch):
                    hb_out, hb_in = h_out[o, t0:t1], h_in[o, t0:t1]
                    bias = theta[ob + o]
                    for t in range(n):
                        hb_out[t] = hb_in[t] + bias
                    for i in range(ch):
                        _axpy(hb_out, theta[ow + o * ch + i], act[i, t0:t1])
                for o in range(ch):
                    hd, ab = head[o, t0:t1], act[o, t0:t1]
                    if a == 0 and j == 0:
                        for t in range(n):
                            hd[t] = ab[t]
                    else:
                        for t in range(n):
                            hd[t] += ab[t]
        hw, hb = array_row[A_HEADW], array_row[A_HEADB]
        if a == n_arrays - 1:  # the output: head_scale * (head_rechannel(head))[0]
            _fill(y, theta[hb])
            for i in range(ch):
                _axpy(y, theta[hw + i], head[i, end:])
            for t in range(y.shape[0]):
                y[t] *= scale
        else:  # the next array's head sum starts from this array's head output
            for o in range(n_head):
                row = heads[a + 1, o, end:]
                _fill(row, theta[hb + o])
                for i in range(ch):
                    _axpy(row, theta[hw + o * ch + i], head[i, end:])


@njit(parallel=True, **_JIT)
def forward(x: np.ndarray, c: np.ndarray, theta: np.ndarray, layer_table: np.ndarray,
            array_table: np.ndarray, scale: float, hs: np.ndarray, us: np.ndarray, acts: np.ndarray,
            heads: np.ndarray, y: np.ndarray) -> None:
    """``y`` (B, L - R + 1) for audio ``x`` (B, L) and held settings ``c`` (B, C); fills the saved
    planes ``hs`` (B, slots, Cmax, L), ``us`` and ``acts`` (B, layers, Cmax, L), ``heads`` (B, arrays,
    Cmax, L)."""
    for n in prange(x.shape[0]):
        _forward_item(x[n], c[n], theta, layer_table, array_table, scale, hs[n], us[n], acts[n], heads[n],
                      y[n])


@njit(**_JIT)
def forward_serial(x: np.ndarray, c: np.ndarray, theta: np.ndarray, layer_table: np.ndarray,
                   array_table: np.ndarray, scale: float, hs: np.ndarray, us: np.ndarray, acts: np.ndarray,
                   heads: np.ndarray, y: np.ndarray) -> None:
    """:func:`forward` on one thread (no thread pool: it would keep spinning beside torch's)."""
    for n in range(x.shape[0]):
        _forward_item(x[n], c[n], theta, layer_table, array_table, scale, hs[n], us[n], acts[n], heads[n],
                      y[n])


@njit(**_JIT)
def _backward_layer(x: np.ndarray, s: np.ndarray, theta: np.ndarray, layer_table: np.ndarray, layer: int,
                    h_in: np.ndarray, u: np.ndarray, act: np.ndarray, dh: np.ndarray, dhead: np.ndarray,
                    row: np.ndarray, grad: np.ndarray) -> None:
    """One layer's gradients; ``dh`` (of its output) becomes the gradient of its input, in place. ``grad``
    holds the parameters' (``theta``'s size) then the setting's (``n_c``)."""
    length = x.shape[0]
    n_c = s.shape[0]
    ds = theta.shape[0]  # the setting's gradient follows the parameters'
    layer_row = layer_table[layer]
    ch, k, d = layer_row[L_CH], layer_row[L_K], layer_row[L_D]
    cw, cb, film, mix = layer_row[L_CONVW], layer_row[L_CONVB], layer_row[L_FILM], layer_row[L_MIX]
    ow, ob = layer_row[L_OUTW], layer_row[L_OUTB]
    begin, start_in = layer_row[L_START_OUT], layer_row[L_START_IN]
    quads = ch - ch % 4  # rows done four at a time, then the rest one by one
    for o in range(ch):  # out 1x1: dO, dob
        grad[ob + o] += _total(dh[o, begin:])
    for o in range(0, quads, 4):
        for i in range(ch):
            p0, p1, p2, p3 = _dot4(act[i, begin:], dh[o, begin:], dh[o + 1, begin:], dh[o + 2, begin:],
                                   dh[o + 3, begin:])
            grad[ow + o * ch + i] += p0
            grad[ow + (o + 1) * ch + i] += p1
            grad[ow + (o + 2) * ch + i] += p2
            grad[ow + (o + 3) * ch + i] += p3
    for o in range(quads, ch):
        dho = dh[o, begin:]
        for i in range(ch):
            grad[ow + o * ch + i] += _dot(dho, act[i, begin:])
    for i in range(0, quads, 4):  # dz = (O^T dh + dhead) (1 - a^2), into act
        r0, r1, r2, r3 = row[0, begin:], row[1, begin:], row[2, begin:], row[3, begin:]
        r0[:] = dhead[i, begin:]
        r1[:] = dhead[i + 1, begin:]
        r2[:] = dhead[i + 2, begin:]
        r3[:] = dhead[i + 3, begin:]
        for o in range(ch):
            q = ow + o * ch + i
            _axpy4(r0, r1, r2, r3, theta[q], theta[q + 1], theta[q + 2], theta[q + 3], dh[o, begin:])
        for j in range(4):
            _tanh_grad(act[i + j, begin:], row[j, begin:])
    rb = row[0, begin:]
    for i in range(quads, ch):
        rb[:] = dhead[i, begin:]
        for o in range(ch):
            _axpy(rb, theta[ow + o * ch + i], dh[o, begin:])
        _tanh_grad(act[i, begin:], rb)
    xb = x[begin:]
    for o in range(ch):  # FiLM and mixin; du = g dz, into u
        g = np.float32(1.0)
        if film >= 0:
            for q in range(n_c):
                g += theta[film + o * n_c + q] * s[q]
        dg = np.float32(0.0)
        dx = np.float32(0.0)
        dc = np.float32(0.0)
        ub, dz = u[o, begin:], act[o, begin:]
        for t in range(ub.shape[0]):
            z = dz[t]
            dg += z * ub[t]
            dx += z * xb[t]
            dc += z
            ub[t] = g * z
        if film >= 0:
            for q in range(n_c):
                grad[film + o * n_c + q] += dg * s[q]
                grad[ds + q] += dg * theta[film + o * n_c + q]
        grad[mix + o * (1 + n_c)] += dx
        for q in range(n_c):
            grad[mix + o * (1 + n_c) + 1 + q] += dc * s[q]
            grad[ds + q] += dc * theta[mix + o * (1 + n_c) + 1 + q]
        grad[cb + o] += g * dc
    fast = quads if k == 3 else 0  # k = 3: rows four at a time and the three taps together
    for o in range(0, fast, 4):  # conv weights
        u0, u1, u2, u3 = u[o, begin:], u[o + 1, begin:], u[o + 2, begin:], u[o + 3, begin:]
        for i in range(ch):
            sums = _dot4x3(h_in[i, begin - 2 * d:length - 2 * d], h_in[i, begin - d:length - d],
                           h_in[i, begin:], u0, u1, u2, u3)
            q = cw + (o * ch + i) * 3
            for r in range(4):
                for m in range(3):
                    grad[q + r * ch * 3 + m] += sums[3 * r + m]
    for o in range(fast, ch):
        ub = u[o, begin:]
        for i in range(ch):
            for m in range(k):
                shift = (k - 1 - m) * d
                grad[cw + (o * ch + i) * k + m] += _dot(ub, h_in[i, begin - shift:length - shift])
    for i in range(ch):  # dh_in = dh (residual) + the conv's transpose, in place
        _fill(dh[i, start_in:begin], 0.0)
    inner = length - 2 * d  # positions [begin, inner) take all three taps of every output row
    if k != 3 or inner <= begin:
        fast = 0
    for i in range(0, fast, 4):
        for t0 in range(begin, inner, _BLOCK):
            _transpose_block4(dh, u, theta, cw, i, ch, d, t0, min(t0 + _BLOCK, inner))
        for o in range(ch):  # the edges: each tap over the part of its range outside [begin, inner)
            for m in range(3):
                shift = (2 - m) * d
                q = cw + (o * ch + i) * 3 + m
                for lo, hi in ((begin - shift, begin), (inner, length - shift)):
                    if hi > lo:
                        _axpy4(dh[i, lo:hi], dh[i + 1, lo:hi], dh[i + 2, lo:hi], dh[i + 3, lo:hi], theta[q],
                               theta[q + 3], theta[q + 6], theta[q + 9], u[o, lo + shift:hi + shift])
    for i in range(fast, ch):
        for o in range(ch):
            for m in range(k):
                shift = (k - 1 - m) * d
                _axpy(dh[i, begin - shift:length - shift], theta[cw + (o * ch + i) * k + m], u[o, begin:])


@njit(**_JIT)
def _backward_item(x: np.ndarray, s: np.ndarray, theta: np.ndarray, layer_table: np.ndarray,
                   array_table: np.ndarray, scale: float, hs: np.ndarray, us: np.ndarray, acts: np.ndarray,
                   heads: np.ndarray, dy: np.ndarray, grad: np.ndarray, scratch: np.ndarray) -> None:
    """One item's gradients; ``scratch`` (5, max(Cmax, 4), L) holds its gradient planes (zeroed here)."""
    n_arrays = array_table.shape[0]
    for j in range(scratch.shape[0]):
        for r in range(scratch.shape[1]):
            _fill(scratch[j, r], 0.0)
    dh = scratch[0]  # gradient of the current layer's output h'
    dprev = scratch[1]  # of the previous array's output
    dhead = scratch[2]  # of the array's head sum
    dhout = scratch[3]  # of the array's head output
    row = scratch[4]  # dz rows, four at a time
    last = n_arrays - 1
    end = array_table[last, A_END]
    top = dhout[0, end:]
    for t in range(top.shape[0]):
        top[t] = scale * dy[t]
    for a in range(last, -1, -1):
        array_row = array_table[a]
        cin, ch, n_head = array_row[A_CIN], array_row[A_CH], array_row[A_HS]
        rech, slot, start0, end = array_row[A_RECH], array_row[A_SLOT], array_row[A_START], array_row[A_END]
        hw, hb = array_row[A_HEADW], array_row[A_HEADB]
        head = heads[a]
        rows_out = 1 if a == last else n_head
        if a != last:  # this array's head output fed the next array's head sum, its h the next rechannel
            for o in range(n_head):
                dhout[o, end:] = dhead[o, end:]
            for o in range(ch):
                _fill(dh[o, :end], 0.0)
                dh[o, end:] = dprev[o, end:]
        else:
            for o in range(ch):
                _fill(dh[o], 0.0)
        for o in range(rows_out):
            dho = dhout[o, end:]
            grad[hb + o] += _total(dho)
            for i in range(ch):
                grad[hw + o * ch + i] += _dot(dho, head[i, end:])
        for i in range(ch):
            _fill(dhead[i], 0.0)
            for o in range(rows_out):
                _axpy(dhead[i, end:], theta[hw + o * ch + i], dhout[o, end:])
        for j in range(array_row[A_LAYERS] - 1, -1, -1):
            layer = array_row[A_FIRST] + j
            _backward_layer(x, s, theta, layer_table, layer, hs[slot + j], us[layer], acts[layer], dh, dhead,
                            row, grad)
        # dh: the gradient of the rechannel's output (the first layer's input)
        for o in range(ch):
            dho = dh[o, start0:]
            for i in range(cin):
                src = x[start0:] if a == 0 else hs[slot - 1, i, start0:]
                grad[rech + o * cin + i] += _dot(dho, src)
        if a > 0:
            for i in range(cin):
                _fill(dprev[i, start0:], 0.0)
                for o in range(ch):
                    _axpy(dprev[i, start0:], theta[rech + o * cin + i], dh[o, start0:])


@njit(parallel=True, **_JIT)
def backward(x: np.ndarray, c: np.ndarray, theta: np.ndarray, layer_table: np.ndarray,
             array_table: np.ndarray, scale: float, hs: np.ndarray, us: np.ndarray, acts: np.ndarray,
             heads: np.ndarray, dy: np.ndarray, grads: np.ndarray, scratch: np.ndarray) -> None:
    """Each item's parameter gradient, then its setting's, into ``grads[n]`` (B, P + S) float64; overwrites
    ``us`` and ``acts``;
    ``scratch`` (B, 5, max(Cmax, 4), L) float32 holds each item's gradient planes."""
    for n in prange(x.shape[0]):
        _backward_item(x[n], c[n], theta, layer_table, array_table, scale, hs[n], us[n], acts[n], heads[n],
                       dy[n], grads[n], scratch[n])


@njit(**_JIT)
def backward_serial(x: np.ndarray, c: np.ndarray, theta: np.ndarray, layer_table: np.ndarray,
                    array_table: np.ndarray, scale: float, hs: np.ndarray, us: np.ndarray, acts: np.ndarray,
                    heads: np.ndarray, dy: np.ndarray, grads: np.ndarray, scratch: np.ndarray) -> None:
    """:func:`backward` on one thread."""
    for n in range(x.shape[0]):
        _backward_item(x[n], c[n], theta, layer_table, array_table, scale, hs[n], us[n], acts[n], heads[n],
                       dy[n], grads[n], scratch[n])


class _Planes:
    """The forward's saved planes for one input shape, reused between steps (a step allocates nothing
    large once its shape has been seen)."""

    pool: ClassVar[dict[tuple[int, ...], list[tuple[np.ndarray, ...]]]] = {}
    scratches: ClassVar[dict[tuple[int, int, int], np.ndarray]] = {}

    @classmethod
    def take(cls, batch: int, slots: int, layers: int, arrays: int, cmax: int, length: int
             ) -> tuple[np.ndarray, ...]:
        key = (batch, slots, layers, arrays, cmax, length)
        free = cls.pool.get(key)
        if free:
            return free.pop()
        return (np.empty((batch, slots, cmax, length), np.float32),
                np.empty((batch, layers, cmax, length), np.float32),
                np.empty((batch, layers, cmax, length), np.float32),
                np.empty((batch, arrays, cmax, length), np.float32))

    @classmethod
    def scratch(cls, batch: int, rows: int, length: int) -> np.ndarray:
        """The backward's gradient planes (B, 5, rows, L), one set per shape (a backward runs at a time)."""
        key = (batch, rows, length)
        planes = cls.scratches.get(key)
        if planes is None:
            if len(cls.scratches) > 4:  # shapes seldom change; keep a few
                cls.scratches.clear()
            planes = cls.scratches[key] = np.empty((batch, 5, rows, length), np.float32)
        return planes

    @classmethod
    def give(cls, planes: tuple[np.ndarray, ...]) -> None:
        batch, slots, cmax, length = planes[0].shape
        key = (batch, slots, planes[1].shape[1], planes[3].shape[1], cmax, length)
        free = cls.pool.setdefault(key, [])
        if len(free) < 2:
            free.append(planes)


_THREADS: list[int | None] = [None]  # set by set_threads; None: follow torch's count


def set_threads(count: int | None) -> None:
    """The kernel's thread count for the next calls (``None``: torch's, as set by the training's
    ``threads``); :mod:`knobcap.training.cpu_threads` gives the kernel the run's threads and torch one."""
    _THREADS[0] = None if count is None else max(1, int(count))


def _threads() -> int:
    """Numba's thread count (:func:`set_threads`, else torch's), at most numba's pool size."""
    wanted = _THREADS[0] if _THREADS[0] is not None else torch.get_num_threads()
    threads = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
    if threads > 1:
        numba.set_num_threads(threads)
    return threads


def _inputs(config: Mapping[str, Any], x: torch.Tensor, c: torch.Tensor, params: Sequence[torch.Tensor]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.float32]:
    """What a forward passes to the kernel: ``x`` and ``c`` as contiguous float32 arrays, the flat
    parameters ``theta`` (checked against the config's count), the layer and array tables, the plane
    height ``Cmax`` and ``head_scale``."""
    xs = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
    cs = np.ascontiguousarray(c.detach().to(x.dtype).numpy(), dtype=np.float32)
    layer_table, array_table, count = tables(config, xs.shape[-1])
    theta = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
    if theta.size != count:
        raise ValueError(f"the WaveNet kernel expected {count} parameters, got {theta.size}.")
    cmax = int(max(array_table[:, A_CH].max(), array_table[:, A_HS].max()))
    return xs, cs, theta, layer_table, array_table, cmax, np.float32(config["head_scale"])


class WaveNetKernel(torch.autograd.Function):
    """``y = wavenet(x, c)`` by the numba kernels: ``apply(x, c, config, *parameters(model))``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, c: torch.Tensor, config: Mapping[str, Any],
                *params: torch.Tensor) -> torch.Tensor:
        xs, cs, theta, layer_table, array_table, cmax, scale = _inputs(config, x, c, params)
        length = xs.shape[1]
        n_layers, n_arrays = len(layer_table), len(array_table)
        planes = _Planes.take(xs.shape[0], n_layers + n_arrays, n_layers, n_arrays, cmax, length)
        y = np.empty((xs.shape[0], length - int(array_table[-1, A_END])), np.float32)
        run_forward = forward if _threads() > 1 else forward_serial
        run_forward(xs, cs, theta, layer_table, array_table, scale, *planes, y)
        ctx.saved = (xs, cs, theta, layer_table, array_table, scale, planes)
        ctx.shapes = [p.shape for p in params]
        return torch.from_numpy(y)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.saved is None:  # the first backward overwrote the planes and handed them to the next forward
            raise RuntimeError("the numba WaveNet kernel runs one backward per forward; a second backward "
                               "through the same forward (retain_graph=True) needs kernel 'torch'.")
        xs, cs, theta, layer_table, array_table, scale, planes = ctx.saved
        ctx.saved = None
        grads = np.zeros((xs.shape[0], theta.size + cs.shape[1]), np.float64)
        dys = np.ascontiguousarray(dy.detach().numpy(), dtype=np.float32)
        run_backward = backward if _threads() > 1 else backward_serial
        batch, _, cmax, length = planes[0].shape
        scratch = _Planes.scratch(batch, max(cmax, 4), length)
        run_backward(xs, cs, theta, layer_table, array_table, scale, *planes, dys, grads, scratch)
        _Planes.give(planes)
        flat = torch.from_numpy(grads[:, :theta.size].sum(axis=0).astype(np.float32))
        dc = torch.from_numpy(grads[:, theta.size:].astype(np.float32)) if ctx.needs_input_grad[1] else None
        out: list[torch.Tensor | None] = [None, dc, None]
        offset = 0
        for shape in ctx.shapes:
            size = int(np.prod(shape))
            out.append(flat[offset:offset + size].reshape(shape))
            offset += size
        return tuple(out)


def infer(model: torch.nn.Module, x: torch.Tensor, c: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """The model's output head (before ``post_fir``) for ``x`` (B, L) and held setting ``c`` (B, S) without
    autograd (validation): the forward with two ``h`` planes and one ``u`` and ``a`` plane reused by
    every layer, over at most ``chunk`` outputs at a time (``chunk + RF - 1`` inputs each), so memory
    stays about ``200 B x chunk`` per item whatever the length."""
    config = model.config  # type: ignore[attr-defined]
    xs, cs, theta, layer_table, array_table, cmax, scale = _inputs(config, x, c, parameters(model))
    batch, length = xs.shape
    context = int(array_table[-1, A_END])  # RF - 1
    y = np.empty((batch, length - context), np.float32)
    run_forward = forward if _threads() > 1 else forward_serial
    planes: tuple[np.ndarray, ...] = ()
    for first in range(0, length - context, chunk):
        stop = min(first + chunk, length - context)
        piece = np.ascontiguousarray(xs[:, first:stop + context])
        span = piece.shape[1]
        if not planes or planes[0].shape[-1] != span:  # one set for the full chunks, one for the last
            planes = tuple(np.empty((batch, rows, cmax, span), np.float32)  # h (2), u, a, heads
                           for rows in (2, 1, 1, len(array_table)))
        run_forward(piece, cs, theta, layer_table, array_table, scale, *planes, y[:, first:stop])
    return torch.from_numpy(y)


def run(model: torch.nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The model's output head (before ``post_fir``) for ``x`` (B, L) and the held setting its layers see,
    ``c`` (B, S: :func:`~knobcap.models.architectures.setting_size`), by the kernel; differentiable in
    the parameters and in ``c``."""
    config = model.config  # type: ignore[attr-defined]
    return WaveNetKernel.apply(x, c.to(x.dtype), config, *parameters(model))  # type: ignore[no-any-return]
