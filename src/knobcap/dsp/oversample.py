"""Oversampling by a power of two with a cascade of linear-phase half-band FIR filters.

A nonlinear circuit makes harmonics far above the audio band; simulated at the audio rate they fold
back (alias). :class:`Oversampler` runs a per-sample simulation at ``factor`` times the rate:

    x (fs) -> [up 2 -> up 2 -> ...] -> kernel (factor * fs) -> [... -> down 2 -> down 2] -> y (fs)

Each stage is a half-band FIR ``h`` of odd length ``N = 4K + 3``: the centre tap is 1/2 and every other
tap is zero, so one polyphase branch is a pure delay. With ``x`` the input and ``u`` its zero-stuffed
copy, the up stage computes ``y[2i] = sum_j 2 h[2j] x[i - j]`` and ``y[2i + 1] = x[i - K]``; the down
stage keeps the even outputs ``z[i] = sum_j h[2j] w[2i - 2j] + w[2i - 2K - 1] / 2``.

Stage ``s`` (rates ``2^(s-1) fs -> 2^s fs``) keeps the audio band ``[0, p fs]`` (``p`` = ``passband``,
20 kHz at 48 kHz) and stops everything from ``2^(s-1) fs - p fs``: whatever lies in the transition band
only ever lands above ``p fs``. Stage filters are Kaiser-windowed and checked numerically to reach the
requested stop-band attenuation (100 dB by default); later stages have wide transition bands and few taps,
so the whole cascade costs a few dozen multiply-adds per input sample.

Streaming: the stages keep their own history, so a long signal is processed in blocks with bounded
memory. The chain's delay is made a whole number ``latency`` of input samples (by a short extra delay at
the top rate) and removed, so ``process`` returns a signal aligned with its input, of the same length.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from numba import njit
from scipy.signal import firwin, freqz

DEFAULT_PASSBAND = 20_000.0 / 48_000.0  # audio band kept, as a fraction of the input rate
DEFAULT_ATTENUATION_DB = 100.0
MAX_FACTOR = 64


@lru_cache(maxsize=64)
def design_halfband(stopband_edge: float, attenuation_db: float = DEFAULT_ATTENUATION_DB) -> np.ndarray:
    """The shortest Kaiser half-band low-pass (odd length 4K + 3, unit DC gain) meeting the spec.

    ``stopband_edge`` is the start of the stop band as a fraction of the filter's own sample rate
    (between 0.25 and 0.5); the pass band mirrors it around a quarter of the rate. The attenuation is
    measured on a dense grid, and K grows until the filter meets it.
    """
    if not 0.25 < stopband_edge < 0.5:
        raise ValueError(f"half-band stop-band edge must lie between 0.25 and 0.5 of the rate, "
                         f"got {stopband_edge}")
    beta = 0.1102 * (attenuation_db - 8.7)
    width = 2.0 * (stopband_edge - 0.25)
    estimate = (attenuation_db - 7.95) / (14.36 * width) + 1.0
    k = max(0, int((estimate - 3) // 4) - 2)
    while True:
        n = 4 * k + 3
        h = firwin(n, 0.5, window=("kaiser", beta))  # cut-off at a quarter of the rate
        h[1::2] = 0.0  # exact zeros (firwin leaves ~1e-18) ...
        h *= 0.5 / h.sum()  # ... side taps summing to 1/2 ...
        h[2 * k + 1] = 0.5  # ... and a centre tap of exactly 1/2: unit DC gain, both polyphase branches
        _w, response = freqz(h, worN=np.linspace(stopband_edge, 0.5, 512) * 2.0 * np.pi)
        worst = 20.0 * np.log10(np.max(np.abs(response)) + 1e-300)
        if worst <= -attenuation_db or k > 4000:
            return h
        k += 1


@njit(cache=True, fastmath=True)
def _up2(x: np.ndarray, taps: np.ndarray, hist: np.ndarray, ext: np.ndarray, acc: np.ndarray,
         y: np.ndarray) -> None:
    """Upsample ``x`` by two into ``y[:2 n]``.

    ``taps`` = 2 h[0::2] (symmetric, 2K + 2 of them); ``hist`` = the last 2K + 1 inputs (updated);
    ``ext`` and ``acc`` are work buffers of at least 2K + 1 + n and n samples (reused: large fresh
    arrays would cost a page fault every few samples).
    """
    n_taps = taps.size
    n_hist = hist.size
    k = (n_hist - 1) // 2
    n = x.size
    for i in range(n_hist):  # plain loops: numba's slice assignment is slow to compile
        ext[i] = hist[i]
    for i in range(n):
        ext[n_hist + i] = x[i]
        acc[i] = 0.0
    for j in range(n_taps // 2):  # taps outside, samples inside: the inner loop vectorises
        c = taps[j]
        near = ext[n_hist - j:]  # views with non-negative indices: no wrap-around checks, so SIMD
        far = ext[n_hist - (n_taps - 1 - j):]
        for i in range(n):
            acc[i] += c * (near[i] + far[i])
    centre = ext[n_hist - k:]
    for i in range(n):
        y[2 * i] = acc[i]
        y[2 * i + 1] = centre[i]
    for i in range(n_hist):
        hist[i] = ext[n + i]


@njit(cache=True, fastmath=True)
def _down2(w: np.ndarray, taps: np.ndarray, hist: np.ndarray, even: np.ndarray, odd: np.ndarray,
           z: np.ndarray) -> None:
    """Downsample ``w`` (even length 2n) by two into ``z[:n]``.

    ``taps`` = h[0::2]; ``hist`` = the last 4K + 2 inputs (updated); ``even`` and ``odd`` are work
    buffers of at least 2K + 1 + n samples: the history and block split by parity, so that every tap
    reads contiguously.
    """
    n_taps = taps.size
    n_hist = hist.size
    k = (n_taps - 2) // 2
    n = w.size // 2
    half_hist = n_hist // 2
    for i in range(half_hist):
        even[i] = hist[2 * i]
        odd[i] = hist[2 * i + 1]
    for i in range(n):
        even[half_hist + i] = w[2 * i]
        odd[half_hist + i] = w[2 * i + 1]
    # centre tap: w[2i - 2K - 1] is odd sample number i - K - 1
    centre = odd[half_hist - k - 1:]
    for i in range(n):
        z[i] = 0.5 * centre[i]
    for j in range(n_taps // 2):
        c = taps[j]
        near = even[half_hist - j:]
        far = even[half_hist - (n_taps - 1 - j):]
        for i in range(n):
            z[i] += c * (near[i] + far[i])
    for i in range(half_hist):
        hist[2 * i] = even[n + i]
        hist[2 * i + 1] = odd[n + i]


class Oversampler:
    """Run a per-sample kernel at ``factor`` (1, 2, 4, …, 64) times the input rate, aligned and band-limited.

    ``kernel(block) -> block`` receives consecutive float64 blocks at the high rate and must keep its
    own state between calls (a circuit simulation does). ``latency`` is the cascade's delay in input
    samples, which :meth:`process` removes.
    """

    def __init__(self, factor: int = 8, passband: float = DEFAULT_PASSBAND,
                 attenuation_db: float = DEFAULT_ATTENUATION_DB) -> None:
        if not isinstance(factor, int | np.integer) or factor < 1 or factor > MAX_FACTOR \
                or factor & (factor - 1):
            raise ValueError(f"oversampling factor must be a power of two from 1 to {MAX_FACTOR}, "
                             f"got {factor!r}; use e.g. 4 or 8.")
        if not 0.0 < passband < 0.5:
            raise ValueError(f"passband must be a fraction of the rate below 0.5, got {passband}")
        self.factor = int(factor)
        self.passband = float(passband)
        self.stages = int(self.factor).bit_length() - 1
        self.filters: list[np.ndarray] = []
        for s in range(1, self.stages + 1):
            rate = 2.0 ** s  # in units of the input rate
            edge = (2.0 ** (s - 1) - passband) / rate
            self.filters.append(design_halfband(round(edge, 12), attenuation_db))
        # Delay of stage s (up + down): 2 (2K + 1) samples at rate 2^s, i.e. 2 (2K + 1) 2^(S - s) at the top.
        top = sum((h.size - 1) * 2 ** (self.stages - s) for s, h in enumerate(self.filters, start=1))
        self.extra_delay = (-top) % self.factor
        self.latency = (top + self.extra_delay) // self.factor

    def process(self, x: np.ndarray, kernel: Callable[[np.ndarray], np.ndarray],
                block: int = 4096) -> np.ndarray:
        """``kernel`` run at the high rate over ``x``; float64 output aligned with ``x``, same length.

        ``kernel`` gets blocks of at most ``block * factor`` samples; it may return a view of its own
        buffer (it is copied before the next call).
        """
        x = np.asarray(x, dtype=np.float64)
        n = x.size
        block = max(1, int(block))
        padded = np.concatenate([x, np.zeros(self.latency)])
        up_taps = [2.0 * h[0::2] for h in self.filters]
        down_taps = [np.ascontiguousarray(h[0::2]) for h in self.filters]
        ups, downs = [], []
        for s, h in enumerate(self.filters):
            cap = block * 2 ** s  # longest input of stage s + 1's up-sampler
            n_hist = (h.size - 1) // 2  # 2K + 1
            ups.append((np.zeros(n_hist), np.empty(n_hist + cap), np.empty(cap), np.empty(2 * cap)))
            downs.append((np.zeros(2 * n_hist), np.empty(n_hist + cap), np.empty(n_hist + cap),
                          np.empty(cap)))
        delay = np.zeros(self.extra_delay)
        joined = np.empty(self.extra_delay + block * self.factor)
        out = np.empty(padded.size)
        for start in range(0, padded.size, block):
            chunk = padded[start:start + block]
            for taps, (hist, ext, acc, y) in zip(up_taps, ups, strict=True):
                _up2(chunk, taps, hist, ext, acc, y)
                chunk = y[:2 * chunk.size]
            chunk = np.asarray(kernel(chunk), dtype=np.float64)
            if self.extra_delay:
                m = chunk.size
                joined[:self.extra_delay] = delay
                joined[self.extra_delay:self.extra_delay + m] = chunk
                delay[:] = joined[m:m + self.extra_delay]
                chunk = joined[:m]
            for taps, (hist, even, odd, z) in zip(reversed(down_taps), reversed(downs), strict=True):
                _down2(chunk, taps, hist, even, odd, z)
                chunk = z[:chunk.size // 2]
            out[start:start + chunk.size] = chunk
        return out[self.latency:self.latency + n]
