"""A virtual Ibanez TS808 Tube Screamer, simulated at circuit level.

Signal chain and component values (Yeh, Abel & Smith, DAFx-07; see ``shared/notes/ts808.md``)::

    in -> 1k -> 20 nF -> 510k to bias, emitter follower (unity)       input high-pass, 15.6 Hz
       -> 1 uF -> 10k to bias -> op-amp (+)                            V+,  15.9 Hz high-pass
          op-amp (-) -> 4.7k + C3 to bias (C3 = 47 nF, 100 nF "fat")   gain leg, i3
          feedback: R2 = 51k + 500k drive pot (A taper) || 51 pF || diode pair
       -> tone: 1k, 0.22 uF || 10k into an op-amp (+); 20k tone pot between its inputs, wiper to
          220R + 0.22 uF; 1k feedback
       -> 1 uF into the 100k level pot (1.6 Hz high-pass), output buffer (unity)

Clipping stage, with an ideal op-amp (V- = V+) and v = V_out - V- the feedback-network voltage::

    V+ = H_hp(s) V_buf,   i3 = s C3 / (1 + s R4 C3) V+,
    C2 dv/dt = i3 - v / R2 - 2 Is sinh(v / (n Vt)),   V_out = V+ + v.

Drive ``d`` (0-10): ``R2 = 51k + 500k (81^p - 1) / 80`` with ``p = d / 10``. Tone ``t = tone / 10`` splits
the 20k pot into ``Rl = 20k t`` (towards the (+) input) and ``Rr = 20k (1 - t)``; the stage's transfer
function is (notes B4, checked by nodal analysis in the tests)::

    H(s) = [(1 + Rf Rl / Y) s + wz] / (Rs Cs)  /  [s^2 + (wp + wz + Rr / (Y Cs)) s + wp wz],
    Y = (Rl + Rr)(Rz + Rl||Rr),  wz = 1 / (Cz (Rz + Rl||Rr)),  wp = 1 / (Cs (Rs || Ri)).

Diodes: 1N914 pair (Is = 2.52 nA, n = 1.752) or red LED pair (Is = 93.2 pA, n = 3.73), Vt = 25.85 mV;
their series resistance (0.57 ohm for the 1N914) is neglected: the diode current stays below ~0.3 mA,
so it would add < 0.2 mV. Junction capacitance is neglected too (C2 dominates).

Levels: digital full scale 1.0 is ``input_volts`` (1 V by default, a hot humbucker) peak at the pedal
input; the output jack's volts times ``level`` (0.2 by default) is the digital output. At maximum
drive a full-scale 1 kHz sine comes out at up to about 0.3 (silicon) and 0.5 (LED) peak, and a
full-scale square wave at 0.65 at most (LED, tone 10), so renders never clip; the level is fixed and
never normalised per take. Op-amps are ideal and never reach their rails: within full scale the
clipping stage's output swings at most about 1.5 V (silicon) and 2.4 V (LED) for sines, 3.4 V for an
LED-clipped square wave, roughly the +-3.5 V headroom a 4558 has on 9 V.

Numerics: the circuit runs at ``sample_rate * oversampling`` (x8 by default) between half-band
resamplers (:mod:`knobcap.dsp.oversample`), so the output is band-limited and aligned with the input.
Linear stages are bilinear transforms; the clipping ODE uses the trapezoidal rule, whose implicit
equation per step is solved through a tabulated inverse (error < 1e-8 V), see
:mod:`knobcap.devices.ts808_kernel`. It matches an ngspice transient of the same netlist to an ESR of
about 2e-7 (tests/test_ts808_ngspice.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import bilinear

from knobcap.controls import Controls, Knob, Switch
from knobcap.devices import VirtualDevice
from knobcap.devices import ts808_kernel as kernel
from knobcap.dsp.oversample import Oversampler

# --- component values (ohms, farads) -------------------------------------------------------------
R_IN_SERIES, C_IN, R_IN_BIAS = 1e3, 20e-9, 510e3
R1, C1 = 10e3, 1e-6
R4 = 4.7e3
C3 = {"off": 47e-9, "on": 100e-9}
R2_FIXED, R_DRIVE = 51e3, 500e3
C2 = 51e-12
RS, CS, RI, RZ, CZ, RF, R_TONE = 1e3, 0.22e-6, 10e3, 220.0, 0.22e-6, 1e3, 20e3
C_OUT, R_LEVEL = 1e-6, 100e3
VT = 25.85e-3


@dataclass(frozen=True)
class Diode:
    """Shockley parameters of one diode (the pair is antiparallel and symmetric)."""

    saturation_current: float
    emission: float

    @property
    def nvt(self) -> float:
        return self.emission * VT


DIODES = {"silicon": Diode(2.52e-9, 1.752), "led": Diode(93.2e-12, 3.73)}

CONTROLS = Controls(
    knobs=(Knob("drive", 0.0, 10.0, default=5.0, taper="audio"),
           Knob("tone", 0.0, 10.0, default=5.0, taper="linear")),
    switches=(Switch("diodes", ("silicon", "led")), Switch("fat", ("off", "on"))),
    name="TS808 (virtual)",
)

MIN_RATE, MAX_RATE = 8_000, 384_000
BLOCK = 4096  # input samples per streaming block


def drive_resistance(drive: float) -> float:
    """R2 = 51k + 500k (81^p - 1)/80 for a dial reading ``drive`` in 0-10 (audio taper)."""
    p = drive / 10.0
    return R2_FIXED + R_DRIVE * (81.0 ** p - 1.0) / 80.0


def tone_polynomials(tone: float) -> tuple[np.ndarray, np.ndarray]:
    """Numerator and denominator (descending powers of s) of the tone stage for a dial in 0-10."""
    t = tone / 10.0
    r_l, r_r = R_TONE * t, R_TONE * (1.0 - t)
    r_p = r_l * r_r / (r_l + r_r)
    y = (r_l + r_r) * (RZ + r_p)
    w_z = 1.0 / (CZ * (RZ + r_p))
    w_p = 1.0 / (CS * (RS * RI / (RS + RI)))
    num = np.array([(1.0 + RF * r_l / y) / (RS * CS), w_z / (RS * CS)])
    den = np.array([1.0, w_p + w_z + r_r / (y * CS), w_p * w_z])
    return num, den


def _first_order(beta1: float, beta0: float, alpha1: float, alpha0: float,
                 rate: float) -> tuple[float, float, float]:
    """Bilinear transform of (beta1 s + beta0)/(alpha1 s + alpha0): (b0, b1, a1), a0 = 1."""
    k = 2.0 * rate
    norm = alpha1 * k + alpha0
    return (beta1 * k + beta0) / norm, (beta0 - beta1 * k) / norm, (alpha0 - alpha1 * k) / norm


def circuit_coefficients(setting: Mapping[str, object], rate: float, input_volts: float,
                         level: float) -> np.ndarray:
    """The kernel's coefficient vector for a validated setting at the simulation ``rate`` (Hz)."""
    c = np.zeros(kernel.N_COEFS)
    c[kernel.IN_B0:kernel.IN_A1 + 1] = _first_order(C_IN * R_IN_BIAS, 0.0,
                                                    C_IN * (R_IN_SERIES + R_IN_BIAS), 1.0, rate)
    c[kernel.HP_B0:kernel.HP_A1 + 1] = _first_order(R1 * C1, 0.0, R1 * C1, 1.0, rate)
    c3 = C3[str(setting["fat"])]
    c[kernel.G_B0:kernel.G_A1 + 1] = _first_order(c3, 0.0, R4 * c3, 1.0, rate)
    diode = DIODES[str(setting["diodes"])]
    c[kernel.B_TRAP] = 1.0 / (2.0 * C2 * rate)
    c[kernel.INV_R2] = 1.0 / drive_resistance(float(setting["drive"]))  # type: ignore[arg-type]
    c[kernel.IS] = diode.saturation_current
    c[kernel.INV_NVT] = 1.0 / diode.nvt
    num, den = tone_polynomials(float(setting["tone"]))  # type: ignore[arg-type]
    bz, az = bilinear(num, den, fs=rate)
    bz, az = bz / az[0], az / az[0]
    c[kernel.T_B0:kernel.T_B2 + 1] = bz
    c[kernel.T_A1], c[kernel.T_A2] = az[1], az[2]
    c[kernel.O_B0:kernel.O_A1 + 1] = _first_order(C_OUT * R_LEVEL, 0.0, C_OUT * R_LEVEL, 1.0, rate)
    c[kernel.GAIN_IN] = input_volts
    c[kernel.GAIN_OUT] = level
    return c


@lru_cache(maxsize=64)
def _table(a: float, b: float, i_s: float, nvt: float) -> tuple[np.ndarray, int, int]:
    coefs, k_min, k_max, _ = kernel.inverse_table(a, b, i_s, nvt)
    coefs.setflags(write=False)
    return coefs, k_min, k_max


def clipper_table(coefs: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The tabulated inverse of the clipping step for a coefficient vector (cached per setting)."""
    b = float(coefs[kernel.B_TRAP])
    return _table(1.0 + b * float(coefs[kernel.INV_R2]), b, float(coefs[kernel.IS]),
                  1.0 / float(coefs[kernel.INV_NVT]))


class TS808(VirtualDevice):
    """The virtual Tube Screamer: ``TS808(oversampling=8)(audio, 48000, drive=7, diodes="led")``.

    ``input_volts``: volts peak at the pedal input for digital 1.0. ``level``: digital output per volt
    at the output jack (fixed; not a control). ``oversampling``: a power of two (8 for training targets,
    4 is enough for quick tests).
    """

    name = "ts808"
    controls = CONTROLS

    def __init__(self, oversampling: int = 8, input_volts: float = 1.0, level: float = 0.2) -> None:
        for label, value in (("input_volts", input_volts), ("level", level)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"TS808: {label} must be a positive number, got {value!r}.")
        self.oversampler = Oversampler(oversampling)
        self.oversampling = self.oversampler.factor
        self.input_volts = float(input_volts)
        self.level = float(level)
        self.last_stats = {"samples": 0, "beyond_table": 0, "solver_failures": 0}

    def __repr__(self) -> str:
        return (f"TS808(oversampling={self.oversampling}, input_volts={self.input_volts:g}, "
                f"level={self.level:g})")

    def process(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        """Render mono ``audio`` (digital units) at ``sample_rate`` through the pedal at ``setting``.

        Returns float32 of the same length, aligned with the input, starting from the circuit at rest.
        """
        clean = self.controls.validate_setting(setting, where="TS808 setting")
        x = _check_audio(audio)
        rate = _check_rate(sample_rate)
        coefs = circuit_coefficients(clean, rate * self.oversampling, self.input_volts, self.level)
        table, k_min, k_max = clipper_table(coefs)
        state = np.zeros(kernel.N_STATE)
        stats = np.zeros(3, dtype=np.int64)
        buffer = np.empty(BLOCK * self.oversampling)

        def simulate(block: np.ndarray) -> np.ndarray:
            kernel.run_ts808(block, coefs, table, k_min, k_max, state, stats, buffer)
            return buffer[:block.size]

        y = self.oversampler.process(x, simulate, block=BLOCK)
        self.last_stats = {"samples": int(stats[0]), "beyond_table": int(stats[1]),
                           "solver_failures": int(stats[2])}
        if stats[2] or not np.all(np.isfinite(y)):
            raise RuntimeError(f"TS808: the circuit solver did not converge on {int(stats[2])} of "
                               f"{int(stats[0])} samples; check the input level (digital full scale "
                               f"is {self.input_volts:g} V).")
        return y.astype(np.float32)


def _check_audio(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ValueError(f"TS808: audio must be mono (one channel, 1-D); got an array of shape {x.shape}. "
                         "Mix down or pick one channel first.")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"TS808: audio must be numbers, got dtype {x.dtype}.")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("TS808: audio contains NaN or infinite samples; clean the input first.")
    return x


def _check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) \
            or not MIN_RATE <= sample_rate <= MAX_RATE:
        raise ValueError(f"TS808: sample_rate must be a whole number of Hz from {MIN_RATE} to {MAX_RATE} "
                         f"(e.g. 44100, 48000, 96000); got {sample_rate!r}.")
    return int(sample_rate)

