"""Streaming conditioned LSTM: ``knobcap.models.lstm`` one sample at a time, in numba.

Layer 0 sees ``[x_t; c_t]``; with PyTorch's gate order (i, f, g, o):

    g_t = W_x x_t + (b_ih + b_hh + W_c c_t) + W_hh h_{t-1}
    i, f, o = sigmoid(...),  g = tanh(...),  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)

Deeper layers see ``h`` of the layer below; ``y_t = w_head . h_t + b_head``. The setting enters only
through the bias ``b + W_c c_t``: computed once a block for a held setting, per sample in a ramp.
Weight matrices are stored transposed (inputs x gates) so the gate loops run over contiguous memory;
weights, state and scratch share one float32 array and all offsets one int64 table, as in the WaveNet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from knobcap.engine.activations import fast_sigmoid, fast_tanh
from knobcap.engine.ramp import CBUF, HEADER, N_CONTROLS, STRIDE, fill_conditioning

G_LAYERS, G_HIDDEN, G_HEADW, G_HEADB, G_GATES, G_BIAS0, G_TAB = range(HEADER, HEADER + 7)
# Layer table columns: inputs, offsets of W_ih^T, W_hh^T, the summed bias, h and c.
M_IN, M_WIH, M_WHH, M_BIAS, M_H, M_C = range(6)
M_COLS = 6


class LSTMCore:
    """The packed memory and table of one streaming LSTM."""

    receptive_field = 1
    preroll = 0

    def __init__(self, config: Mapping[str, Any], weights: Mapping[str, np.ndarray], max_block: int
                 ) -> None:
        self.n_controls = int(config["n_controls"])
        hidden = int(config["hidden_size"])
        chunks: list[np.ndarray] = []
        size = 0

        def put(array: np.ndarray) -> int:
            nonlocal size
            offset = size
            chunks.append(np.ascontiguousarray(array, dtype=np.float32).ravel())
            size += chunks[-1].size
            return offset

        table = []
        for layer in range(int(config["num_layers"])):
            w_ih = np.asarray(weights[f"lstm.weight_ih_l{layer}"], np.float32)
            w_hh = np.asarray(weights[f"lstm.weight_hh_l{layer}"], np.float32)
            bias = (np.asarray(weights[f"lstm.bias_ih_l{layer}"], np.float32)
                    + np.asarray(weights[f"lstm.bias_hh_l{layer}"], np.float32))
            table.append([w_ih.shape[1], put(w_ih.T), put(w_hh.T), put(bias), 0, 0])
        head_w = put(np.asarray(weights["head.weight"], np.float32)[0])
        head_b = put(np.asarray(weights["head.bias"], np.float32))
        self._state = size
        for entry in table:
            entry[M_H] = put(np.zeros(hidden, np.float32))
            entry[M_C] = put(np.zeros(hidden, np.float32))
        self._state_end = size
        gates = put(np.zeros(4 * hidden, np.float32))
        bias0 = put(np.zeros(4 * hidden, np.float32))
        cbuf = put(np.zeros(max(1, self.n_controls) * int(max_block), np.float32))
        self.mem = np.concatenate(chunks).astype(np.float32)
        itab = np.zeros(HEADER + 7 + M_COLS * len(table), np.int64)
        itab[CBUF], itab[STRIDE], itab[N_CONTROLS] = cbuf, int(max_block), self.n_controls
        itab[G_LAYERS], itab[G_HIDDEN], itab[G_HEADW], itab[G_HEADB] = len(table), hidden, head_w, head_b
        itab[G_GATES], itab[G_BIAS0], itab[G_TAB] = gates, bias0, HEADER + 7
        itab[HEADER + 7:] = np.asarray(table, np.int64).ravel()
        self.itab = itab

    def run(self, x: np.ndarray, y: np.ndarray, n: int, cstate: np.ndarray) -> None:
        _lstm_block(x, y, n, self.mem, self.itab, cstate)

    def clear(self) -> None:
        """Zero initial state, as the PyTorch model starts."""
        self.mem[self._state:self._state_end] = 0.0


@njit(cache=True, error_model="numpy")
def _layer0_bias(mem, itab, t):
    """``b + W_c c_t`` for layer 0 (rows 1.. of W_ih^T belong to the control entries)."""
    G = 4 * itab[G_HIDDEN]
    e = itab[G_TAB]
    ob, owih, b0 = itab[e + M_BIAS], itab[e + M_WIH], itab[G_BIAS0]
    cb, stride = itab[CBUF], itab[STRIDE]
    for g in range(G):
        mem[b0 + g] = mem[ob + g]
    for j in range(itab[N_CONTROLS]):
        cj = mem[cb + j * stride + t]
        row = owih + (1 + j) * G
        for g in range(G):
            mem[b0 + g] += mem[row + g] * cj


@njit(cache=True, error_model="numpy")
def _lstm_block(x, y, n, mem, itab, cstate):
    ramping = fill_conditioning(cstate, itab, mem, n)
    if not ramping:
        _layer0_bias(mem, itab, 0)
    n_layers = itab[G_LAYERS]
    H = itab[G_HIDDEN]
    G = 4 * H
    gates, b0, tab = itab[G_GATES], itab[G_BIAS0], itab[G_TAB]
    for t in range(n):
        if ramping:
            _layer0_bias(mem, itab, t)
        for layer in range(n_layers):
            e = tab + layer * M_COLS
            owih, owhh, hh, cc = itab[e + M_WIH], itab[e + M_WHH], itab[e + M_H], itab[e + M_C]
            if layer == 0:
                xt = x[t]
                for g in range(G):
                    mem[gates + g] = mem[b0 + g] + mem[owih + g] * xt
            else:
                ob = itab[e + M_BIAS]
                below = itab[e - M_COLS + M_H]
                for g in range(G):
                    mem[gates + g] = mem[ob + g]
                for i in range(itab[e + M_IN]):
                    v = mem[below + i]
                    row = owih + i * G
                    for g in range(G):
                        mem[gates + g] += mem[row + g] * v
            for i in range(H):
                v = mem[hh + i]
                row = owhh + i * G
                for g in range(G):
                    mem[gates + g] += mem[row + g] * v
            for i in range(H):
                ig = fast_sigmoid(mem[gates + i])
                fg = fast_sigmoid(mem[gates + H + i])
                gg = fast_tanh(mem[gates + 2 * H + i])
                og = fast_sigmoid(mem[gates + 3 * H + i])
                ci = fg * mem[cc + i] + ig * gg
                mem[cc + i] = ci
                mem[hh + i] = og * fast_tanh(ci)
        top = itab[tab + (n_layers - 1) * M_COLS + M_H]
        ow = itab[G_HEADW]
        acc = mem[itab[G_HEADB]]
        for i in range(H):
            acc += mem[ow + i] * mem[top + i]
        y[t] = acc
