"""Streaming conditioned LSTM: ``knobcap.models.lstm`` one sample at a time, in numba.

Layer 0 sees ``[x_t; c_t]``; with PyTorch's gate order (i, f, g, o):

    g_t = W_x x_t + (b_ih + b_hh + W_c c_t) + W_hh h_{t-1}
    i, f, o = sigmoid(...),  g = tanh(...),  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)

Deeper layers see ``h`` of the layer below; ``y_t = w_head . h_t + b_head``. The setting enters only
through the bias ``b + W_c c_t``: computed once a block for a held setting, per sample in a ramp.
Weight matrices are stored transposed (inputs x gates) so the gate loops run over contiguous memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from knobcap.engine.activations import fast_sigmoid, fast_tanh
from knobcap.engine.ramp import fill_conditioning

# Layer table columns: inputs, hidden, offsets of W_ih^T, W_hh^T and the summed bias.
M_IN, M_HID, M_WIH, M_WHH, M_BIAS = range(5)


class LSTMCore:
    """The packed weights and state of one streaming LSTM."""

    receptive_field = 1
    preroll = 0

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], max_block: int
                 ) -> None:
        self.n_controls = int(config["n_controls"])
        hidden = int(config["hidden_size"])
        flat: list[np.ndarray] = []
        size = 0

        def put(array: np.ndarray) -> int:
            nonlocal size
            offset = size
            flat.append(np.ascontiguousarray(array, dtype=np.float32).ravel())
            size += flat[-1].size
            return offset

        table = []
        for layer in range(int(config["num_layers"])):
            w_ih = np.asarray(weights[f"lstm.weight_ih_l{layer}"], np.float32)
            w_hh = np.asarray(weights[f"lstm.weight_hh_l{layer}"], np.float32)
            bias = (np.asarray(weights[f"lstm.bias_ih_l{layer}"], np.float64)
                    + np.asarray(weights[f"lstm.bias_hh_l{layer}"], np.float64))
            table.append([w_ih.shape[1], hidden, put(w_ih.T), put(w_hh.T), put(bias.astype(np.float32))])
        self.head_offset = put(np.asarray(weights["head.weight"], np.float32)[0])
        put(np.asarray(weights["head.bias"], np.float32))
        self.weights = np.concatenate(flat).astype(np.float32)
        self.table = np.asarray(table, dtype=np.int64)
        self.h = np.zeros((len(table), hidden), np.float32)
        self.c = np.zeros((len(table), hidden), np.float32)
        self.gates = np.zeros(4 * hidden, np.float32)
        self.bias0 = np.zeros(4 * hidden, np.float32)

    def run(self, x: np.ndarray, y: np.ndarray, n: int, cstate: np.ndarray, istate: np.ndarray,
            cbuf: np.ndarray) -> None:
        _lstm_block(x, y, n, self.weights, self.table, self.head_offset, self.h, self.c, self.gates,
                    self.bias0, cstate, istate, cbuf)

    def clear(self) -> None:
        """Zero initial state, as the PyTorch model starts."""
        self.h[:] = 0.0
        self.c[:] = 0.0


@njit(cache=True)
def _layer0_bias(wf, table, cbuf, t, bias0):
    """``b + W_c c_t`` for layer 0 (inputs 1.. of W_ih^T are the control entries)."""
    G = bias0.shape[0]
    ob = table[0, M_BIAS]
    owih = table[0, M_WIH]
    for g in range(G):
        bias0[g] = wf[ob + g]
    for j in range(cbuf.shape[0]):
        cj = cbuf[j, t]
        row = owih + (1 + j) * G
        for g in range(G):
            bias0[g] += wf[row + g] * cj


@njit(cache=True)
def _lstm_block(x, y, n, wf, table, head_offset, hs, cs, gates, bias0, cstate, istate, cbuf):
    ramping = fill_conditioning(cstate, istate, cbuf, n)
    if not ramping:
        _layer0_bias(wf, table, cbuf, 0, bias0)
    n_layers = table.shape[0]
    for t in range(n):
        if ramping:
            _layer0_bias(wf, table, cbuf, t, bias0)
        for layer in range(n_layers):
            H = table[layer, M_HID]
            G = 4 * H
            owih, owhh = table[layer, M_WIH], table[layer, M_WHH]
            if layer == 0:
                xt = x[t]
                for g in range(G):
                    gates[g] = bias0[g] + wf[owih + g] * xt
            else:
                ob = table[layer, M_BIAS]
                below = hs[layer - 1]
                for g in range(G):
                    gates[g] = wf[ob + g]
                for i in range(table[layer, M_IN]):
                    v = below[i]
                    row = owih + i * G
                    for g in range(G):
                        gates[g] += wf[row + g] * v
            h = hs[layer]
            c = cs[layer]
            for i in range(H):
                v = h[i]
                row = owhh + i * G
                for g in range(G):
                    gates[g] += wf[row + g] * v
            for i in range(H):
                ig = fast_sigmoid(gates[i])
                fg = fast_sigmoid(gates[H + i])
                gg = fast_tanh(gates[2 * H + i])
                og = fast_sigmoid(gates[3 * H + i])
                ci = fg * c[i] + ig * gg
                c[i] = ci
                h[i] = og * fast_tanh(ci)
        top = hs[n_layers - 1]
        acc = wf[head_offset + top.shape[0]]
        for i in range(top.shape[0]):
            acc += wf[head_offset + i] * top[i]
        y[t] = acc
