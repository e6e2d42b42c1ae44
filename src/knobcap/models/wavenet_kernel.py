"""A fused numba forward and backward of :class:`~knobcap.models.wavenet.ConditionedWaveNet` for training
on the CPU (issue 13): held setting, linear mixin, tanh, FiLM on or off, no ``cond_hidden``.

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
:func:`set_threads`' or torch's); loops run over time innermost on contiguous rows, and nothing is allocated
inside them (a backward allocates four ``Cmax x L`` gradient planes per item, outside them). ``tanh`` is the
engine's rational approximation (:mod:`knobcap.models.rational_tanh`, within 3.4e-7 of the exact value).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import numba
import numpy as np
import torch
from numba import njit, prange

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
    n_controls = int(config["n_controls"])
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
                for o in range(ch):
                    ub = u[o, t0:t1]
                    _fill(ub, theta[cb + o])
                    _conv_block(ub, h_in, theta, cw + o * ch * k, ch, k, d, t0, t1)
                    ab = act[o, t0:t1]
                    g, wx, cst = gain[o], theta[mix + o * (1 + n_c)], const[o]
                    for t in range(n):
                        ab[t] = fast_tanh(g * ub[t] + wx * xb[t] + cst)
                for o in range(ch):
                    hb_out, hb_in = h_out[o, t0:t1], h_in[o, t0:t1]
                    bias = theta[ob + o]
                    for t in range(n):
                        hb_out[t] = hb_in[t] + bias
                    for i in range(ch):
                        _axpy(hb_out, theta[ow + o * ch + i], act[i, t0:t1])
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
    """One layer's gradients; ``dh`` (of its output) becomes the gradient of its input, in place."""
    length = x.shape[0]
    n_c = s.shape[0]
    layer_row = layer_table[layer]
    ch, k, d = layer_row[L_CH], layer_row[L_K], layer_row[L_D]
    cw, cb, film, mix = layer_row[L_CONVW], layer_row[L_CONVB], layer_row[L_FILM], layer_row[L_MIX]
    ow, ob = layer_row[L_OUTW], layer_row[L_OUTB]
    begin, start_in = layer_row[L_START_OUT], layer_row[L_START_IN]
    for o in range(ch):  # out 1x1: dO, dob
        dho = dh[o, begin:]
        grad[ob + o] += _total(dho)
        for i in range(ch):
            grad[ow + o * ch + i] += _dot(dho, act[i, begin:])
    rb = row[begin:]
    for i in range(ch):  # dz = (O^T dh + dhead) (1 - a^2), into act
        rb[:] = dhead[i, begin:]
        for o in range(ch):
            _axpy(rb, theta[ow + o * ch + i], dh[o, begin:])
        ab = act[i, begin:]
        for t in range(ab.shape[0]):
            v = ab[t]
            ab[t] = rb[t] * (np.float32(1.0) - v * v)
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
        grad[mix + o * (1 + n_c)] += dx
        for q in range(n_c):
            grad[mix + o * (1 + n_c) + 1 + q] += dc * s[q]
        grad[cb + o] += g * dc
    for o in range(ch):  # conv weights
        ub = u[o, begin:]
        for i in range(ch):
            for m in range(k):
                shift = (k - 1 - m) * d
                grad[cw + (o * ch + i) * k + m] += _dot(ub, h_in[i, begin - shift:length - shift])
    for i in range(ch):  # dh_in = dh (residual) + the conv's transpose, in place
        _fill(dh[i, start_in:begin], 0.0)
        for o in range(ch):
            for m in range(k):
                shift = (k - 1 - m) * d
                _axpy(dh[i, begin - shift:length - shift], theta[cw + (o * ch + i) * k + m], u[o, begin:])


@njit(**_JIT)
def _backward_item(x: np.ndarray, s: np.ndarray, theta: np.ndarray, layer_table: np.ndarray,
                   array_table: np.ndarray, scale: float, hs: np.ndarray, us: np.ndarray, acts: np.ndarray,
                   heads: np.ndarray, dy: np.ndarray, grad: np.ndarray) -> None:
    length = x.shape[0]
    n_arrays = array_table.shape[0]
    cmax = hs.shape[1]
    dh = np.zeros((cmax, length), np.float32)  # gradient of the current layer's output h'
    dprev = np.zeros((cmax, length), np.float32)  # of the previous array's output
    dhead = np.zeros((cmax, length), np.float32)  # of the array's head sum
    dhout = np.zeros((cmax, length), np.float32)  # of the array's head output
    row = np.empty(length, np.float32)
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
             heads: np.ndarray, dy: np.ndarray, grads: np.ndarray) -> None:
    """Each item's parameter gradient into ``grads[n]`` (B, P) float64; overwrites ``us`` and ``acts``."""
    for n in prange(x.shape[0]):
        _backward_item(x[n], c[n], theta, layer_table, array_table, scale, hs[n], us[n], acts[n], heads[n],
                       dy[n], grads[n])


@njit(**_JIT)
def backward_serial(x: np.ndarray, c: np.ndarray, theta: np.ndarray, layer_table: np.ndarray,
                    array_table: np.ndarray, scale: float, hs: np.ndarray, us: np.ndarray, acts: np.ndarray,
                    heads: np.ndarray, dy: np.ndarray, grads: np.ndarray) -> None:
    """:func:`backward` on one thread."""
    for n in range(x.shape[0]):
        _backward_item(x[n], c[n], theta, layer_table, array_table, scale, hs[n], us[n], acts[n], heads[n],
                       dy[n], grads[n])


class _Planes:
    """The forward's saved planes for one input shape, reused between steps (a step allocates nothing
    large once its shape has been seen)."""

    pool: ClassVar[dict[tuple[int, ...], list[tuple[np.ndarray, ...]]]] = {}

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


class WaveNetKernel(torch.autograd.Function):
    """``y = wavenet(x, c)`` by the numba kernels: ``apply(x, c, config, *parameters(model))``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, c: torch.Tensor, config: Mapping[str, Any],
                *params: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        layer_table, array_table, count = tables(config, length)
        theta = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
        if theta.size != count:
            raise ValueError(f"the WaveNet kernel expected {count} parameters, got {theta.size}.")
        xs = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
        cs = np.ascontiguousarray(c.detach().numpy(), dtype=np.float32)
        cmax = int(max(array_table[:, A_CH].max(), array_table[:, A_HS].max()))
        n_layers, n_arrays = len(layer_table), len(array_table)
        planes = _Planes.take(xs.shape[0], n_layers + n_arrays, n_layers, n_arrays, cmax, length)
        y = np.empty((xs.shape[0], length - int(array_table[-1, A_END])), np.float32)
        run_forward = forward if _threads() > 1 else forward_serial
        scale = np.float32(config["head_scale"])
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
        grads = np.zeros((xs.shape[0], theta.size), np.float64)
        dys = np.ascontiguousarray(dy.detach().numpy(), dtype=np.float32)
        run_backward = backward if _threads() > 1 else backward_serial
        run_backward(xs, cs, theta, layer_table, array_table, scale, *planes, dys, grads)
        _Planes.give(planes)
        flat = torch.from_numpy(grads.sum(axis=0).astype(np.float32))
        out: list[torch.Tensor | None] = [None, None, None]
        offset = 0
        for shape in ctx.shapes:
            size = int(np.prod(shape))
            out.append(flat[offset:offset + size].reshape(shape))
            offset += size
        return tuple(out)


def infer(model: torch.nn.Module, x: torch.Tensor, c: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """The model's output head (before ``post_fir``) for ``x`` (B, L) and held ``c`` (B, C) without
    autograd (validation): the forward with two ``h`` planes and one ``u`` and ``a`` plane reused by
    every layer, over at most ``chunk`` outputs at a time (``chunk + RF - 1`` inputs each), so memory
    stays about ``200 B x chunk`` per item whatever the length."""
    config = model.config  # type: ignore[attr-defined]
    params = parameters(model)
    theta = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
    xs = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
    cs = np.ascontiguousarray(c.detach().to(x.dtype).numpy(), dtype=np.float32)
    batch, length = xs.shape
    layer_table, array_table, count = tables(config, length)
    if theta.size != count:
        raise ValueError(f"the WaveNet kernel expected {count} parameters, got {theta.size}.")
    context = int(array_table[-1, A_END])  # RF - 1
    y = np.empty((batch, length - context), np.float32)
    cmax = int(max(array_table[:, A_CH].max(), array_table[:, A_HS].max()))
    run_forward = forward if _threads() > 1 else forward_serial
    scale = np.float32(config["head_scale"])
    for first in range(0, length - context, chunk):
        stop = min(first + chunk, length - context)
        piece = xs[:, first:stop + context]
        span = piece.shape[1]
        planes = (np.empty((batch, 2, cmax, span), np.float32), np.empty((batch, 1, cmax, span), np.float32),
                  np.empty((batch, 1, cmax, span), np.float32),
                  np.empty((batch, len(array_table), cmax, span), np.float32))
        run_forward(np.ascontiguousarray(piece), cs, theta, layer_table, array_table, scale, *planes,
                    y[:, first:stop])
    return torch.from_numpy(y)


def run(model: torch.nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The model's output head (before ``post_fir``) for ``x`` (B, L) and held ``c`` (B, C), by the kernel."""
    config = model.config  # type: ignore[attr-defined]
    return WaveNetKernel.apply(x, c.to(x.dtype), config, *parameters(model))  # type: ignore[no-any-return]
