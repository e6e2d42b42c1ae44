"""Streaming conditioned WaveNet: the maths of ``knobcap.models.wavenet`` block by block, in numba.

Per layer (channels ``ch``, kernel ``k``, dilation ``d``), for the block's samples ``t``:

    z[o, t] = b[o] + sum_j Mc[o, j] c_j(t) + mx[o] x(t) + sum_{i, m} W[o, i, m] h[i, t - (k - 1 - m) d]
    a = act(z);   head += a;   h_next[o, t] = h[o, t] + ob[o] + sum_i O[o, i] a[i, t]

The setting enters only through ``b + Mc c(t)``: a per-channel constant for a held setting (computed
once a block) and a per-sample bias during a knob ramp. Each layer keeps the history of its input
``h`` in a ring of length ``L + R`` (``L = (k - 1) d`` samples of past, room ``R`` for new blocks): the
block is written at ``L + w`` and, when ``w`` would run past ``R``, the last ``L`` samples are copied
to the front and ``w`` restarts at 0, so nothing is allocated while streaming.

All weights live in one flat float32 array and all offsets in int64 tables, so a block is one call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from knobcap.architectures import receptive_field
from knobcap.engine.activations import ACTIVATION_CODES, activate
from knobcap.engine.ramp import RING_CAPACITY, RING_POS, fill_conditioning

# Columns of the array table and of the layer table.
A_LAYERS, A_FIRST, A_IN, A_CH, A_HEAD, A_RECH, A_HEADW, A_HEADB = range(8)
L_CH, L_K, L_D, L_PAST, L_CONVW, L_CONVB, L_MX, L_MC, L_OUTW, L_OUTB, L_HIST, L_ROW = range(12)

# Scratch planes: activations, head sum, array output h, head output, one plane for the ramped bias.
S_A, S_HEAD, S_H, S_HOUT, S_BIAS = range(5)


class WaveNetCore:
    """The packed weights, ring buffers and scratch of one streaming WaveNet."""

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], max_block: int
                 ) -> None:
        self.n_controls = int(config["n_controls"])
        self.receptive_field = receptive_field("wavenet", config)
        self.head_scale = np.float32(config["head_scale"])
        self.activation = ACTIVATION_CODES[config["activation"]]
        self.max_block = int(max_block)
        self.capacity = 2 * self.max_block
        flat: list[np.ndarray] = []
        size = 0

        def put(array: np.ndarray) -> int:
            nonlocal size
            offset = size
            flat.append(np.ascontiguousarray(array, dtype=np.float32).ravel())
            size += flat[-1].size
            return offset

        arrays, layers = [], []
        hist_size = 0
        previous = 1
        for i, spec in enumerate(config["arrays"]):
            ch, k = int(spec["channels"]), int(spec["kernel_size"])
            first = len(layers)
            rech = put(weights[f"arrays.{i}.rechannel.weight"][:, :, 0])
            for j, d in enumerate(spec["dilations"]):
                p = f"arrays.{i}.layers.{j}"
                mixin = weights[f"{p}.mixin.weight"][:, :, 0]
                past = (k - 1) * int(d)
                row = past + self.capacity
                layers.append([ch, k, int(d), past, put(weights[f"{p}.conv.weight"]),
                               put(weights[f"{p}.conv.bias"]), put(mixin[:, 0]), put(mixin[:, 1:]),
                               put(weights[f"{p}.out.weight"][:, :, 0]), put(weights[f"{p}.out.bias"]),
                               hist_size, row])
                hist_size += ch * row
            head_w = put(weights[f"arrays.{i}.head_rechannel.weight"][:, :, 0])
            head_b = put(weights[f"arrays.{i}.head_rechannel.bias"])
            arrays.append([len(spec["dilations"]), first, previous, ch, int(spec["head_size"]), rech,
                           head_w, head_b])
            previous = ch
        self.weights = np.concatenate(flat).astype(np.float32)
        self.arrays = np.asarray(arrays, dtype=np.int64)
        self.layers = np.asarray(layers, dtype=np.int64)
        self.history = np.zeros(hist_size, dtype=np.float32)
        max_ch = int(max(max(a[A_CH], a[A_HEAD]) for a in arrays))
        self.scratch = np.zeros((5, max_ch, self.max_block), dtype=np.float32)

    def run(self, x: np.ndarray, y: np.ndarray, n: int, cstate: np.ndarray, istate: np.ndarray,
            cbuf: np.ndarray) -> None:
        _wavenet_block(x, y, n, self.weights, self.arrays, self.layers, self.history, self.scratch,
                       cstate, istate, cbuf, self.head_scale, self.activation)

    def clear(self) -> None:
        """Forget the past (zeros); the engine then pre-rolls silence to reach the steady state."""
        self.history[:] = 0.0

    @property
    def preroll(self) -> int:
        """Samples of silence that put every ring in the steady state of a silent input."""
        return self.receptive_field - 1


@njit(cache=True)
def _wavenet_block(x, y, n, wf, am, lm, hist, S, cstate, istate, cbuf, head_scale, act):
    C = cbuf.shape[0]
    ramping = fill_conditioning(cstate, istate, cbuf, n)
    w = istate[RING_POS]
    if w + n > istate[RING_CAPACITY]:
        for l in range(lm.shape[0]):  # noqa: E741
            past, row, base = lm[l, L_PAST], lm[l, L_ROW], lm[l, L_HIST]
            for i in range(lm[l, L_CH]):
                r = base + i * row
                for s in range(past):
                    hist[r + s] = hist[r + w + s]
        w = 0
    za = S[S_A]
    head = S[S_HEAD]
    hcur = S[S_H]
    hout = S[S_HOUT]
    bias = S[S_BIAS]
    for a in range(am.shape[0]):
        nlay, first, inch, ch, hs = am[a, A_LAYERS], am[a, A_FIRST], am[a, A_IN], am[a, A_CH], am[a, A_HEAD]
        # Rechannel the array's input into the first layer's ring.
        l0 = first
        for o in range(ch):
            dst = hist[lm[l0, L_HIST] + o * lm[l0, L_ROW] + lm[l0, L_PAST] + w:][:n]
            for t in range(n):
                dst[t] = 0.0
            for i in range(inch):
                wv = wf[am[a, A_RECH] + o * inch + i]
                src = x if a == 0 else hcur[i]
                for t in range(n):
                    dst[t] += wv * src[t]
        # The head sum starts from the previous array's head output (nothing for the first array).
        for o in range(ch):
            for t in range(n):
                head[o, t] = 0.0 if a == 0 else hout[o, t]
        for j in range(nlay):
            l = first + j  # noqa: E741
            k, d, past, row, base = lm[l, L_K], lm[l, L_D], lm[l, L_PAST], lm[l, L_ROW], lm[l, L_HIST]
            ocw, ocb, omx, omc = lm[l, L_CONVW], lm[l, L_CONVB], lm[l, L_MX], lm[l, L_MC]
            oow, oob = lm[l, L_OUTW], lm[l, L_OUTB]
            for o in range(ch):
                z = za[o]
                b = wf[ocb + o]
                mx = wf[omx + o]
                if ramping:
                    for t in range(n):
                        bias[0, t] = b
                    for jc in range(C):
                        mc = wf[omc + o * C + jc]
                        cj = cbuf[jc]
                        for t in range(n):
                            bias[0, t] += mc * cj[t]
                    for t in range(n):
                        z[t] = bias[0, t] + mx * x[t]
                else:
                    for jc in range(C):
                        b += wf[omc + o * C + jc] * cbuf[jc, 0]
                    for t in range(n):
                        z[t] = b + mx * x[t]
                for i in range(ch):
                    r = base + i * row + past + w
                    for m in range(k):
                        wv = wf[ocw + (o * ch + i) * k + m]
                        src = hist[r - (k - 1 - m) * d:][:n]
                        for t in range(n):
                            z[t] += wv * src[t]
            for o in range(ch):
                activate(za[o], n, act)
                h = head[o]
                z = za[o]
                for t in range(n):
                    h[t] += z[t]
            last = j == nlay - 1
            for o in range(ch):
                src = hist[base + o * row + past + w:][:n]
                if last:
                    dst = hcur[o]
                else:
                    ln = l + 1
                    dst = hist[lm[ln, L_HIST] + o * lm[ln, L_ROW] + lm[ln, L_PAST] + w:][:n]
                ob = wf[oob + o]
                for t in range(n):
                    dst[t] = src[t] + ob
                for i in range(ch):
                    wv = wf[oow + o * ch + i]
                    ai = za[i]
                    for t in range(n):
                        dst[t] += wv * ai[t]
        # Head rechannel: hout = head_b + head_w @ head.
        for hh in range(hs):
            dst = hout[hh]
            hb = wf[am[a, A_HEADB] + hh]
            for t in range(n):
                dst[t] = hb
            for c in range(ch):
                wv = wf[am[a, A_HEADW] + hh * ch + c]
                src = head[c]
                for t in range(n):
                    dst[t] += wv * src[t]
    for t in range(n):
        y[t] = head_scale * hout[0, t]
    istate[RING_POS] = w + n
