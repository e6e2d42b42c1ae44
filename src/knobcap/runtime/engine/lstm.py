"""Streaming conditioned LSTM: ``knobcap.models.lstm`` one sample at a time, in numba.

Layer 0 sees ``[x_t; c_t]``; with PyTorch's gate order (i, f, g, o):

    g_t = W_x x_t + (b_ih + b_hh + W_c c_t) + W_hh h_{t-1}
    i, f, o = sigmoid(...),  g = tanh(...),  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)

Deeper layers see ``h`` of the layer below; ``y_t = w_head . h_t + b_head``. The setting enters only
through the bias ``b + W_c c_t``: computed once a block for a held setting, per sample in a ramp.
Weight matrices are stored transposed (inputs x gates, one plane a layer) so the gate loops run over
contiguous memory and vectorise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from knobcap.runtime.engine.activations import fast_sigmoid, fast_tanh
from knobcap.runtime.engine.ramp import CBUF, HEADER, N_CONTROLS, STRIDE, fill_conditioning

_JIT = {"cache": True, "error_model": "numpy", "fastmath": {"contract"}}


class LSTMCore:
    """The packed weights and state of one streaming LSTM."""

    receptive_field = 1
    preroll = 0

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], max_block: int
                 ) -> None:
        self.n_controls = int(config["n_controls"])
        hidden = int(config["hidden_size"])
        layers = int(config["num_layers"])
        gates = 4 * hidden
        n_in = max(1 + self.n_controls, hidden)
        self.w_ih = np.zeros((layers, n_in, gates), np.float32)  # W_ih^T per layer
        self.w_hh = np.zeros((layers, hidden, gates), np.float32)  # W_hh^T per layer
        self.bias = np.zeros((layers, gates), np.float32)
        for layer in range(layers):
            w_ih = np.asarray(weights[f"lstm.weight_ih_l{layer}"], np.float32)
            self.w_ih[layer, : w_ih.shape[1]] = w_ih.T
            self.w_hh[layer] = np.asarray(weights[f"lstm.weight_hh_l{layer}"], np.float32).T
            self.bias[layer] = (np.asarray(weights[f"lstm.bias_ih_l{layer}"], np.float32)
                                + np.asarray(weights[f"lstm.bias_hh_l{layer}"], np.float32))
        self.head = np.concatenate([np.asarray(weights["head.weight"], np.float32)[0],
                                    np.asarray(weights["head.bias"], np.float32)])
        self.h = np.zeros((layers, hidden), np.float32)
        self.c = np.zeros((layers, hidden), np.float32)
        self.work = np.zeros((2, gates), np.float32)  # gates, layer-0 bias
        self.cbuf = np.zeros(max(1, self.n_controls) * int(max_block), np.float32)
        itab = np.zeros(HEADER, np.int64)
        itab[CBUF], itab[STRIDE], itab[N_CONTROLS] = 0, int(max_block), self.n_controls
        self.itab = itab

    def run(self, x: np.ndarray, y: np.ndarray, n: int, cstate: np.ndarray) -> None:
        _lstm_block(x, y, n, self.w_ih, self.w_hh, self.bias, self.head, self.h, self.c, self.work,
                    self.cbuf, self.itab, cstate)

    def clear(self) -> None:
        """Zero initial state, as the PyTorch model starts."""
        self.h[:] = 0.0
        self.c[:] = 0.0


@njit(**_JIT)
def _layer0_bias(w_ih, bias, work, cbuf, C, stride, t):
    """``b + W_c c_t`` for layer 0 (rows 1.. of W_ih^T belong to the control entries)."""
    G = bias.shape[1]
    for g in range(G):
        work[1, g] = bias[0, g]
    for j in range(C):
        cj = cbuf[j * stride + t]
        for g in range(G):
            work[1, g] += w_ih[0, 1 + j, g] * cj


@njit(**_JIT)
def _lstm_block(x, y, n, w_ih, w_hh, bias, head, hs, cs, work, cbuf, itab, cstate):
    ramping = fill_conditioning(cstate, itab, cbuf, n)
    C, stride = itab[N_CONTROLS], itab[STRIDE]
    if not ramping:
        _layer0_bias(w_ih, bias, work, cbuf, C, stride, 0)
    n_layers, H = hs.shape[0], hs.shape[1]
    G = 4 * H
    for t in range(n):
        if ramping:
            _layer0_bias(w_ih, bias, work, cbuf, C, stride, t)
        for layer in range(n_layers):
            if layer == 0:
                xt = x[t]
                for g in range(G):
                    work[0, g] = work[1, g] + w_ih[0, 0, g] * xt
            else:
                for g in range(G):
                    work[0, g] = bias[layer, g]
                for i in range(H):
                    v = hs[layer - 1, i]
                    for g in range(G):
                        work[0, g] += w_ih[layer, i, g] * v
            i = 0
            while i + 4 <= H:  # four hidden units a pass over the gates
                v0, v1, v2, v3 = hs[layer, i], hs[layer, i + 1], hs[layer, i + 2], hs[layer, i + 3]
                for g in range(G):
                    work[0, g] += (w_hh[layer, i, g] * v0 + w_hh[layer, i + 1, g] * v1
                                   + w_hh[layer, i + 2, g] * v2 + w_hh[layer, i + 3, g] * v3)
                i += 4
            while i < H:
                v = hs[layer, i]
                for g in range(G):
                    work[0, g] += w_hh[layer, i, g] * v
                i += 1
            for i in range(H):
                ig = fast_sigmoid(work[0, i])
                fg = fast_sigmoid(work[0, H + i])
                gg = fast_tanh(work[0, 2 * H + i])
                og = fast_sigmoid(work[0, 3 * H + i])
                ci = fg * cs[layer, i] + ig * gg
                cs[layer, i] = ci
                hs[layer, i] = og * fast_tanh(ci)
        acc = head[H]
        for i in range(H):
            acc += head[i] * hs[n_layers - 1, i]
        y[t] = acc
