"""The error-to-signal ratio and NAM's plain verdicts on it: one definition for the whole project.

ESR = Σ(ŷ − y)² / Σy² over a segment (0 is perfect). Verdicts as NAM prints them to users:
below 0.01 great, below 0.035 not bad, below 0.1 might sound OK, else probably not.
"""

from __future__ import annotations

import math

import numpy as np

VERDICTS: tuple[tuple[float, str], ...] = (
    (0.01, "great"), (0.035, "not bad"), (0.1, "might sound OK"), (math.inf, "probably not"))
VERDICT_LIMITS: tuple[tuple[float, str], ...] = VERDICTS[:-1]
"""The finite limits only (for lines and colour-bar marks on plots)."""


SILENT_RMS = 1e-5
"""A device's output this quiet (-100 dBFS rms, under any interface's noise) is silence: a volume or a tone
stack all the way down leaves float residue there, whose ESR would be meaningless (up to 1e20)."""


def is_silent(audio: np.ndarray) -> bool:
    """Whether ``audio``'s rms is at most :data:`SILENT_RMS`."""
    y = np.asarray(audio, dtype=np.float64)
    return not len(y) or float(np.sqrt(np.mean(y * y))) <= SILENT_RMS


class EvaluationError(ValueError):
    """An evaluation cannot be done; the message names the file or setting and what to do."""


def esr(prediction: np.ndarray, target: np.ndarray) -> float:
    """Error-to-signal ratio ``Σ(ŷ - y)² / Σy²`` (float64 sums). A silent target is refused."""
    y_hat = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if y_hat.shape != y.shape:
        raise EvaluationError(f"ESR needs equal shapes; got {y_hat.shape} and {y.shape}.")
    energy = float(np.sum(y * y))
    if not energy > 0.0:
        raise EvaluationError("ESR is undefined on a silent target; evaluate a segment with sound in it.")
    return float(np.sum((y_hat - y) ** 2) / energy)


def verdict(value: float) -> str:
    """NAM's plain verdict on an ESR: great / not bad / might sound OK / probably not (also NaN)."""
    for limit, word in VERDICTS:
        if value < limit:
            return word
    return VERDICTS[-1][1]
