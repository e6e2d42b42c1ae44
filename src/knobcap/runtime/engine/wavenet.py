"""Streaming conditioned WaveNet: the maths of ``knobcap.models.wavenet`` block by block, in numba.

Per layer (channels ``ch``, kernel ``k``, dilation ``d``), for the block's samples ``t``:

    u[o, t] = b[o] + sum_{i, m} W[o, i, m] h[i, t - (k - 1 - m) d]          (the dilated conv)
    z[o, t] = g[o, t] u[o, t] + sum_j Mc[o, j] c_j(t) + mx[o] x(t)
    a = act(z);   head += a;   h_next[o, t] = h[o, t] + ob[o] + sum_i O[o, i] a[i, t]

with ``g = 1`` without FiLM and ``g[o, t] = 1 + sum_j F[o, j] c_j(t)`` with ``"film": true``.
The setting enters only through ``b + Mc c(t)`` (without FiLM), ``Mc c(t)`` and ``g`` (with FiLM):
per-channel constants for a held setting (computed once a block) and per-sample rows during a knob
ramp. With the ``product`` mixin (condition ``[x; c; x c]``) the audio's weight becomes
``mx + Mxc c(t)`` the same way. Without FiLM ``z`` is accumulated in one sweep starting from the bias
rows; with FiLM the sweep starts from ``b`` and one more pass per layer applies ``g`` and adds the mixin.

Each layer keeps the history of its input ``h`` in a ring of length ``L + R`` (``L = (k - 1) d``
samples of past, room ``R`` for new blocks): the block is written at ``L + w`` and, when ``w`` would
run past ``R``, the last ``L`` samples are copied to the front and ``w`` restarts at 0, so nothing is
allocated while streaming.

Weights live in one flat float32 array, the rings in another, scratch planes in a third, and every
size and offset in one int64 table ``itab``, so a block is one cheap call. Loops run over time
innermost (the compiler vectorises them), the convolution adds the three taps of two input rows
in one pass, and row views are made once per input row, not per sample.

Optional stages (issue 12). ``cond_hidden``: the setting features ``s = [c; tanh(A c + a)]`` are
written into the conditioning rows after ``c`` (column 0 when held, every sample during a ramp) and the
layers read ``s`` wherever they read ``c`` above. ``post_fir``: the output ``y`` goes through a causal
FIR whose taps ``e0 + B tanh(D c + d) + b`` are computed in further conditioning rows (once a block when
held, per sample during a ramp, as PyTorch does); its last ``T - 1`` inputs are kept after the rings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from knobcap.models.architectures import receptive_field, setting_size
from knobcap.runtime.engine.activations import ACTIVATION_CODES, activate_rows, fast_tanh
from knobcap.runtime.engine.ramp import (
    CBUF,
    HEADER,
    N_CONTROLS,
    RING_CAPACITY,
    RING_POS,
    STRIDE,
    fill_conditioning,
)

# Global fields after the ramp header.
G_ARRAYS, G_LAYERS, G_ACT, G_SCRATCH, G_PLANE, G_SCALE, G_ATAB, G_LTAB = range(HEADER, HEADER + 8)
# Optional stages: feature rows S, cond MLP (hidden H, weights), post FIR (taps T, hidden, weights, past).
G_NFEAT, G_CHID, G_CMLP, G_FIRT, G_FIRH, G_FIRW, G_FIRHIST = range(HEADER + 8, HEADER + 15)
G_COUNT = 15
# Columns of the array table and of the layer table.
A_LAYERS, A_FIRST, A_IN, A_CH, A_HEAD, A_RECH, A_HEADW, A_HEADB = range(8)
A_COLS = 8
L_CH, L_K, L_D, L_PAST, L_CONVW, L_CONVB, L_MX, L_MC, L_OUTW, L_OUTB, L_HIST, L_ROW, L_MXC, L_FILM = range(14)
L_COLS = 14
# Scratch planes (first index of ``scratch``): activations, head sum, array output h, head output,
# bias rows, the audio's mixin weight (product mixin), the FiLM gains (only allocated with FiLM).
P_A, P_HEAD, P_H, P_HOUT, P_BIAS, P_MX, P_GAIN = range(7)


class WaveNetCore:
    """The packed memory and tables of one streaming WaveNet."""

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], max_block: int
                 ) -> None:
        mixin_kind = config.get("mixin", "linear")
        if mixin_kind not in ("linear", "product"):
            raise ValueError(
                f"the streaming engine runs WaveNet mixins 'linear' ([x; c]) and 'product' ([x; c; x c]); "
                f"this one has mixin {mixin_kind!r}. Update knobcap.")
        product = mixin_kind == "product"
        film = bool(config.get("film", False))
        self.n_controls = int(config["n_controls"])
        self.n_features = setting_size(config)
        cond_hidden = int(config.get("cond_hidden", 0))
        fir = config.get("post_fir") or {}
        fir_taps, fir_hidden = int(fir.get("taps", 0)), int(fir.get("hidden", 0))
        self.receptive_field = receptive_field("wavenet", config)
        self.max_block = int(max_block)
        capacity = 2 * self.max_block
        chunks: list[np.ndarray] = []
        size = 0

        def put(array: np.ndarray | float) -> int:
            nonlocal size
            offset = size
            chunks.append(np.ascontiguousarray(array, dtype=np.float32).ravel())
            size += chunks[-1].size
            return offset

        arrays: list[list[int]] = []
        layers: list[list[int]] = []
        previous = 1
        for i, spec in enumerate(config["arrays"]):
            ch, k = int(spec["channels"]), int(spec["kernel_size"])
            first = len(layers)
            rech = put(weights[f"arrays.{i}.rechannel.weight"][:, :, 0])
            for j, d in enumerate(spec["dilations"]):
                p = f"arrays.{i}.layers.{j}"
                mixin = weights[f"{p}.mixin.weight"][:, :, 0]
                past = (k - 1) * int(d)
                n_c = self.n_features
                layers.append([ch, k, int(d), past, put(weights[f"{p}.conv.weight"]),
                               put(weights[f"{p}.conv.bias"]), put(mixin[:, 0]), put(mixin[:, 1:1 + n_c]),
                               put(weights[f"{p}.out.weight"][:, :, 0]), put(weights[f"{p}.out.bias"]),
                               0, past + capacity, put(mixin[:, 1 + n_c:]) if product else -1,
                               put(weights[f"{p}.film.weight"][:, :, 0]) if film else -1])
            head_w = put(weights[f"arrays.{i}.head_rechannel.weight"][:, :, 0])
            head_b = put(weights[f"arrays.{i}.head_rechannel.bias"])
            arrays.append([len(spec["dilations"]), first, previous, ch, int(spec["head_size"]), rech,
                           head_w, head_b])
            previous = ch
        scale = put(np.float32(config["head_scale"]))
        cmlp = -1
        if cond_hidden:
            cmlp = put(weights["cond_mlp.weight"][:, :, 0])
            put(weights["cond_mlp.bias"])
        firw = -1
        if fir_taps:
            firw = put(weights["post_fir.hidden.weight"][:, :, 0])
            for name in ("post_fir.hidden.bias", "post_fir.taps.weight", "post_fir.taps.bias"):
                put(weights[name][:, :, 0] if name.endswith("taps.weight") else weights[name])
        self.weights = np.concatenate(chunks).astype(np.float32)
        hist_size = 0
        for layer in layers:
            layer[L_HIST] = hist_size
            hist_size += layer[L_CH] * layer[L_ROW]
        fir_hist = hist_size
        hist_size += max(0, fir_taps - 1) + self.max_block if fir_taps else 0
        self.history = np.zeros(hist_size, np.float32)
        max_ch = max(max(a[A_CH], a[A_HEAD]) for a in arrays)
        self.scratch = np.zeros((P_GAIN + 1 if film else P_GAIN, max_ch, self.max_block), np.float32)
        rows = self.n_features + fir_hidden + fir_taps
        self.cbuf = np.zeros(max(1, rows) * self.max_block, np.float32)
        plane, scratch, cbuf = 0, 0, 0
        atab = HEADER + G_COUNT
        ltab = atab + A_COLS * len(arrays)
        itab = np.zeros(ltab + L_COLS * len(layers), np.int64)
        itab[RING_CAPACITY] = capacity
        itab[CBUF] = cbuf
        itab[STRIDE] = self.max_block
        itab[N_CONTROLS] = self.n_controls
        itab[G_ARRAYS], itab[G_LAYERS] = len(arrays), len(layers)
        itab[G_ACT] = ACTIVATION_CODES[config["activation"]]
        itab[G_SCRATCH], itab[G_PLANE], itab[G_SCALE] = scratch, plane, scale
        itab[G_ATAB], itab[G_LTAB] = atab, ltab
        itab[G_NFEAT], itab[G_CHID], itab[G_CMLP] = self.n_features, cond_hidden, cmlp
        itab[G_FIRT], itab[G_FIRH], itab[G_FIRW], itab[G_FIRHIST] = fir_taps, fir_hidden, firw, fir_hist
        itab[atab:ltab] = np.asarray(arrays, np.int64).ravel()
        itab[ltab:] = np.asarray(layers, np.int64).ravel()
        self.itab = itab

    def run(self, x: np.ndarray, y: np.ndarray, n: int, cstate: np.ndarray) -> None:
        _wavenet_block(x, y, n, self.weights, self.history, self.scratch, self.cbuf, self.itab, cstate)

    def clear(self) -> None:
        """Forget the past (zeros); the engine then pre-rolls silence to reach the steady state."""
        self.history[:] = 0.0

    @property
    def preroll(self) -> int:
        """Samples of silence that put every ring in the steady state of a silent input."""
        return self.receptive_field - 1


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _rewind(hist, itab, w):
    """Copy each ring's last ``L`` samples (before position ``w``) to its front."""
    ltab = itab[G_LTAB]
    for l in range(itab[G_LAYERS]):  # noqa: E741
        e = ltab + l * L_COLS
        past, row, base = itab[e + L_PAST], itab[e + L_ROW], itab[e + L_HIST]
        for i in range(itab[e + L_CH]):
            r = base + i * row
            for s in range(past):
                hist[r + s] = hist[r + w + s]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _setting_rows(wf, S, cb, itab, e, n, ramping):
    """The setting's rows of the layer at table entry ``e``: column 0 when held, ``:n`` when ramping.

    S[P_BIAS] = b + Mc c (without FiLM) or Mc c (with FiLM, where ``b`` is inside the gained conv);
    S[P_MX] = mx (+ Mxc c with the product mixin); S[P_GAIN] = 1 + F c (FiLM only).
    """
    ch, ocb, omx, omc = itab[e + L_CH], itab[e + L_CONVB], itab[e + L_MX], itab[e + L_MC]
    omxc, ofilm = itab[e + L_MXC], itab[e + L_FILM]
    product, film = omxc >= 0, ofilm >= 0
    C, stride = itab[G_NFEAT], itab[STRIDE]
    for o in range(ch):
        b = np.float32(0.0) if film else wf[ocb + o]
        mxo = wf[omx + o]
        if ramping:
            for t in range(n):
                S[P_BIAS, o, t] = b
                S[P_MX, o, t] = mxo
            for j in range(C):
                mc = wf[omc + o * C + j]
                cj = cb[j * stride:][:n]
                for t in range(n):
                    S[P_BIAS, o, t] += mc * cj[t]
                if product:  # [x; c; x c]: the x c columns scale the audio's weight
                    mxc = wf[omxc + o * C + j]
                    for t in range(n):
                        S[P_MX, o, t] += mxc * cj[t]
            if film:
                for t in range(n):
                    S[P_GAIN, o, t] = 1.0
                for j in range(C):
                    f = wf[ofilm + o * C + j]
                    cj = cb[j * stride:][:n]
                    for t in range(n):
                        S[P_GAIN, o, t] += f * cj[t]
        else:
            g = np.float32(1.0)
            for j in range(C):
                b += wf[omc + o * C + j] * cb[j * stride]
                if product:
                    mxo += wf[omxc + o * C + j] * cb[j * stride]
                if film:
                    g += wf[ofilm + o * C + j] * cb[j * stride]
            S[P_BIAS, o, 0] = b
            S[P_MX, o, 0] = mxo
            if film:
                S[P_GAIN, o, 0] = g


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _mlp_rows(wf, cb, stride, src, n_in, dst, n_out, ow, m, squash):
    """Rows ``dst + r`` (r < n_out) = [tanh](b + W rows ``src``), first ``m`` columns of ``cb``; the
    weights ``W`` (n_out, n_in) then ``b`` start at ``wf[ow]``."""
    ob = ow + n_out * n_in
    for r in range(n_out):
        dv = cb[(dst + r) * stride:][:m]
        b = wf[ob + r]
        for t in range(m):
            dv[t] = b
        for j in range(n_in):
            a = wf[ow + r * n_in + j]
            sv = cb[(src + j) * stride:][:m]
            for t in range(m):
                dv[t] += a * sv[t]
        if squash:
            for t in range(m):
                dv[t] = fast_tanh(dv[t])


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _post_fir(y, n, wf, hist, cb, itab, ramping):
    """``y[t] <- sum_k tap_k(t) y[t - k]`` with the last ``T - 1`` inputs kept in ``hist``."""
    T, H, C = itab[G_FIRT], itab[G_FIRH], itab[N_CONTROLS]
    stride, ow, base = itab[STRIDE], itab[G_FIRW], itab[G_FIRHIST]
    rh = itab[G_NFEAT]
    rt = rh + H
    m = n if ramping else 1
    _mlp_rows(wf, cb, stride, 0, C, rh, H, ow, m, True)
    _mlp_rows(wf, cb, stride, rh, H, rt, T, ow + H * C + H, m, False)
    for t in range(m):
        cb[rt * stride + t] += 1.0  # the identity: tap 0 starts at 1
    past = T - 1
    buf = hist[base:]
    for t in range(n):
        buf[past + t] = y[t]
    for t in range(n):
        y[t] = 0.0
    for k in range(T):
        src = buf[past - k:][:n]
        if ramping:
            tap = cb[(rt + k) * stride:][:n]
            for t in range(n):
                y[t] += tap[t] * src[t]
        else:
            g = cb[(rt + k) * stride]
            for t in range(n):
                y[t] += g * src[t]
    for i in range(past):  # the last T - 1 inputs to the front (ascending: the source is ahead)
        buf[i] = buf[n + i]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _apply_film(S, x, ch, n, ramping):
    """FiLM: S[P_A] = g * S[P_A] + bias rows + mx x, with ``S[P_A]`` the conv ``W * h + b`` (per
    sample rows when ramping, else the constants in column 0)."""
    for o in range(ch):
        if ramping:
            for t in range(n):
                S[P_A, o, t] = S[P_GAIN, o, t] * S[P_A, o, t] + S[P_BIAS, o, t] + S[P_MX, o, t] * x[t]
        else:
            g, b, mx = S[P_GAIN, o, 0], S[P_BIAS, o, 0], S[P_MX, o, 0]
            for t in range(n):
                S[P_A, o, t] = g * S[P_A, o, t] + b + mx * x[t]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _conv(wf, hist, S, itab, e, w, n, ramping, x):
    """S[P_A] = bias rows + mx x + dilated conv of the ring, for the layer at table entry ``e``; with
    FiLM only the conv ``W * h + b`` (:func:`_apply_film` adds the rest).

    The first pass over the input rows writes ``z`` and the others add to it, two input rows (six taps
    for k = 3) a pass. The bias rows come from :func:`_setting_rows`.
    """
    ch, k, d = itab[e + L_CH], itab[e + L_K], itab[e + L_D]
    past, row, base = itab[e + L_PAST], itab[e + L_ROW], itab[e + L_HIST]
    ocw, ocb = itab[e + L_CONVW], itab[e + L_CONVB]
    film = itab[e + L_FILM] >= 0
    # First pass: z = bias + mx x (without FiLM) or b (with FiLM), plus the taps of input row 0.
    r = base + past + w
    for o in range(ch):
        q = ocw + o * ch * k
        if film:
            b = wf[ocb + o]
            for t in range(n):
                S[P_A, o, t] = b
        elif ramping:
            for t in range(n):
                S[P_A, o, t] = S[P_BIAS, o, t] + S[P_MX, o, t] * x[t]
        else:
            b, mx = S[P_BIAS, o, 0], S[P_MX, o, 0]
            for t in range(n):
                S[P_A, o, t] = b + mx * x[t]
        if k == 3:
            s0 = hist[r - 2 * d:][:n]
            s1 = hist[r - d:][:n]
            s2 = hist[r:][:n]
            w0, w1, w2 = wf[q], wf[q + 1], wf[q + 2]
            for t in range(n):
                S[P_A, o, t] += w0 * s0[t] + w1 * s1[t] + w2 * s2[t]
        else:
            for m in range(k):
                src = hist[r - (k - 1 - m) * d:][:n]
                wv = wf[q + m]
                for t in range(n):
                    S[P_A, o, t] += wv * src[t]
    if k == 3:
        # The three taps of two input rows at once: a sixth of the passes over z.
        i = 1
        while i + 2 <= ch:
            r = base + i * row + past + w
            s0 = hist[r - 2 * d:][:n]
            s1 = hist[r - d:][:n]
            s2 = hist[r:][:n]
            u0 = hist[r + row - 2 * d:][:n]
            u1 = hist[r + row - d:][:n]
            u2 = hist[r + row:][:n]
            for o in range(ch):
                q = ocw + (o * ch + i) * 3
                w0, w1, w2, v0, v1, v2 = wf[q], wf[q + 1], wf[q + 2], wf[q + 3], wf[q + 4], wf[q + 5]
                for t in range(n):
                    S[P_A, o, t] += (w0 * s0[t] + w1 * s1[t] + w2 * s2[t]
                                     + v0 * u0[t] + v1 * u1[t] + v2 * u2[t])
            i += 2
        if i < ch:
            r = base + i * row + past + w
            s0 = hist[r - 2 * d:][:n]
            s1 = hist[r - d:][:n]
            s2 = hist[r:][:n]
            for o in range(ch):
                q = ocw + (o * ch + i) * 3
                w0, w1, w2 = wf[q], wf[q + 1], wf[q + 2]
                for t in range(n):
                    S[P_A, o, t] += w0 * s0[t] + w1 * s1[t] + w2 * s2[t]
        return
    for i in range(1, ch):
        r = base + i * row + past + w
        for m in range(k):
            src = hist[r - (k - 1 - m) * d:][:n]
            for o in range(ch):
                wv = wf[ocw + (o * ch + i) * k + m]
                for t in range(n):
                    S[P_A, o, t] += wv * src[t]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _wavenet_block(x, y, n, wf, hist, S, cb, itab, cstate):
    ramping = fill_conditioning(cstate, itab, cb, n)
    if itab[G_CHID] > 0:  # the setting features [c; tanh(A c + a)]
        C = itab[N_CONTROLS]
        _mlp_rows(wf, cb[itab[CBUF]:], itab[STRIDE], 0, C, C, itab[G_CHID], itab[G_CMLP],
                  n if ramping else 1, True)
    w = itab[RING_POS]
    if w + n > itab[RING_CAPACITY]:
        _rewind(hist, itab, w)
        w = 0
    act = itab[G_ACT]
    atab, ltab = itab[G_ATAB], itab[G_LTAB]
    for a in range(itab[G_ARRAYS]):
        ea = atab + a * A_COLS
        nlay, first, inch, ch = itab[ea + A_LAYERS], itab[ea + A_FIRST], itab[ea + A_IN], itab[ea + A_CH]
        # Rechannel the array's input into the first layer's ring.
        e0 = ltab + first * L_COLS
        dst0 = itab[e0 + L_HIST] + itab[e0 + L_PAST] + w
        row0 = itab[e0 + L_ROW]
        rech = itab[ea + A_RECH]
        for o in range(ch):
            dv = hist[dst0 + o * row0:][:n]
            if a == 0:
                wv = wf[rech + o]
                for t in range(n):
                    dv[t] = wv * x[t]
            else:
                for t in range(n):
                    dv[t] = 0.0
                for i in range(inch):
                    wv = wf[rech + o * inch + i]
                    for t in range(n):
                        dv[t] += wv * S[P_H, i, t]
        # The head sum starts from the previous array's head output (nothing for the first array).
        for o in range(ch):
            for t in range(n):
                S[P_HEAD, o, t] = 0.0 if a == 0 else S[P_HOUT, o, t]
        for j in range(nlay):
            e = ltab + (first + j) * L_COLS
            _setting_rows(wf, S, cb, itab, e, n, ramping)
            _conv(wf, hist, S, itab, e, w, n, ramping, x)
            if itab[e + L_FILM] >= 0:
                _apply_film(S, x, ch, n, ramping)
            activate_rows(S, P_A, P_HEAD, ch, n, act)
            # h_next = h + ob + O a, into the next layer's ring (or the array output S[P_H]).
            row = itab[e + L_ROW]
            src = itab[e + L_HIST] + itab[e + L_PAST] + w
            oow, oob = itab[e + L_OUTW], itab[e + L_OUTB]
            last = j == nlay - 1
            if not last:
                en = e + L_COLS
                dst, dst_row = itab[en + L_HIST] + itab[en + L_PAST] + w, itab[en + L_ROW]
            for o in range(ch):
                sv = hist[src + o * row:][:n]
                ob = wf[oob + o]
                dv = S[P_H, o, :n] if last else hist[dst + o * dst_row:][:n]
                for t in range(n):
                    dv[t] = sv[t] + ob
                q = oow + o * ch
                i = 0
                while i + 4 <= ch:
                    w0, w1, w2, w3 = wf[q + i], wf[q + i + 1], wf[q + i + 2], wf[q + i + 3]
                    for t in range(n):
                        dv[t] += (w0 * S[P_A, i, t] + w1 * S[P_A, i + 1, t] + w2 * S[P_A, i + 2, t]
                                  + w3 * S[P_A, i + 3, t])
                    i += 4
                while i < ch:
                    wv = wf[q + i]
                    for t in range(n):
                        dv[t] += wv * S[P_A, i, t]
                    i += 1
        # Head rechannel: S[P_HOUT] = head_b + head_w @ head.
        ohw, ohb = itab[ea + A_HEADW], itab[ea + A_HEADB]
        for hh in range(itab[ea + A_HEAD]):
            hb = wf[ohb + hh]
            for t in range(n):
                S[P_HOUT, hh, t] = hb
            for c in range(ch):
                wv = wf[ohw + hh * ch + c]
                for t in range(n):
                    S[P_HOUT, hh, t] += wv * S[P_HEAD, c, t]
    scale = wf[itab[G_SCALE]]
    for t in range(n):
        y[t] = scale * S[P_HOUT, 0, t]
    if itab[G_FIRT] > 0:
        _post_fir(y, n, wf, hist, cb[itab[CBUF]:], itab, ramping)
    itab[RING_POS] = w + n
