"""A scored run's dense grid again, model output beside device render: what the re-scoring benchmarks
(``low_frequency_error.py``, ``gain_misfit.py``) share. Not a script."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from knobcap.capture.session import Session
from knobcap.evaluation.evaluate import (
    PREROLL_SECONDS,
    VALIDATION_SEGMENT,
    RenderCache,
    aligned_device,
    cached_render,
    model_predictor,
)
from knobcap.models.modelfile import load_model_file


def summary(values: list[float]) -> str:
    """``median / p90 / max`` of ``values``."""
    v = np.asarray(values)
    return f"{np.median(v):.4f} / {np.percentile(v, 90):.4f} / {v.max():.4f}"


def open_run(run: Path) -> tuple[Session, dict]:
    """The run's session and its ``metrics.json``, which must hold a dense grid."""
    session = Session.open(run.parent.parent)
    doc = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    if "grid" not in doc:
        raise SystemExit(f"{run / 'metrics.json'}: no dense grid; evaluate the run with a device first.")
    return session, doc


def untrained_grid(run: Path, session: Session, doc: dict, context_seconds: float = 0.0
                   ) -> Iterator[tuple[dict, np.ndarray, np.ndarray, int]]:
    """``(row, output, target, offset)`` for each dense-grid row never trained on: the model's output
    over the scored segment and ``context_seconds`` more before it (beyond the evaluation's pre-roll),
    the device's render of the segment, lined up with the session's takes as the evaluation scored it,
    and where the segment starts in the output."""
    predict = model_predictor(load_model_file(run / "model.knobcap"))
    signal = session.input()
    rate = signal.map.sample_rate
    segment = signal.map.segment(VALIDATION_SEGMENT)
    audio = np.asarray(signal.audio, np.float32)
    device = aligned_device(session, session.controls.device or doc["device"])
    cache = RenderCache(run / "cache")
    preroll = int(PREROLL_SECONDS * rate)
    begin = max(0, segment.start - preroll - int(context_seconds * rate))
    rows = [r for r in doc["grid"]["rows"] if not r["trained"]]
    for first in range(0, len(rows), 8):
        chunk = rows[first:first + 8]
        outputs = np.asarray(predict(audio[begin:segment.stop], [r["setting"] for r in chunk]))
        for row, output in zip(chunk, outputs, strict=True):
            target = cached_render(device, cache, audio, segment.start, segment.stop, row["setting"], rate,
                                   preroll)
            yield row, output, target, segment.start - begin
