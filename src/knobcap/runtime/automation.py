"""Control automation from a CSV file, and rendering audio through the streaming engine.

Automation CSV: a header ``time,control,value`` then one row a change: ``time`` in seconds from the
start of the input, ``control`` a knob or switch name, ``value`` in the knob's own units or a switch
position name. Each row is a move that the engine makes at that sample: knobs ramp over the engine's
ramp time, switches jump. Rows may come in any order; a bad row is refused naming the file and row.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knobcap.controls import Controls, ControlsError, Knob


class AutomationError(ValueError):
    """An automation file is wrong; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class Move:
    sample: int
    control: str
    value: float | str


def load_automation(path: str | Path, controls: Controls, sample_rate: int) -> list[Move]:
    """Read an automation CSV into moves sorted by sample (stable for equal times)."""
    path = Path(path)
    if not path.is_file():
        raise AutomationError(f"{path}: no such automation file.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise AutomationError(f"{path}: not a text (UTF-8) CSV file.") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["time", "control", "value"]:
        raise AutomationError(f"{path}: the first row must be the header 'time,control,value'.")
    moves: list[Move] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}, row {number}"
        if len(row) != 3:
            raise AutomationError(f"{where}: expected 3 columns (time,control,value), found {len(row)}.")
        raw_time, name, raw_value = (c.strip() for c in row)
        try:
            seconds = float(raw_time)
        except ValueError:
            raise AutomationError(f"{where}: time {raw_time!r} is not a number of seconds.") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise AutomationError(f"{where}: time {raw_time!r} must be a number of seconds >= 0.")
        try:
            control = controls[name]
        except KeyError:
            raise AutomationError(
                f"{where}: unknown control {name!r}; this model's controls are "
                f"{', '.join(controls.names)}.") from None
        value: float | str = raw_value
        if isinstance(control, Knob):
            try:
                value = float(raw_value)
            except ValueError:
                raise AutomationError(f"{where}: knob {name!r} needs a number, got {raw_value!r}.") from None
        try:
            controls.validate_setting({**controls.default_setting(), name: value}, where=where)
        except ControlsError as error:
            raise AutomationError(str(error)) from None
        moves.append(Move(round(seconds * sample_rate), name, value))
    moves.sort(key=lambda m: m.sample)
    return moves


@dataclass(frozen=True)
class RenderStats:
    seconds_of_audio: float
    cpu_seconds: float

    @property
    def cores(self) -> float:
        """CPU seconds per second of audio (one core = 1.0)."""
        return self.cpu_seconds / self.seconds_of_audio if self.seconds_of_audio else 0.0


def render(engine, audio: np.ndarray, moves: list[Move] | None = None, block_size: int = 512,
           progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, RenderStats]:
    """Run mono ``audio`` through ``engine`` (a :class:`knobcap.runtime.engine.Engine`), applying ``moves``
    at their samples; returns the output and the CPU time spent in processing."""
    x = np.ascontiguousarray(audio, dtype=np.float32)
    y = np.zeros_like(x)
    pending = list(moves or [])
    index = 0
    pos = 0
    cpu = 0.0
    while pos < x.size:
        while index < len(pending) and pending[index].sample <= pos:
            group: dict[str, object] = {}
            sample = pending[index].sample
            while index < len(pending) and pending[index].sample == sample:
                group[pending[index].control] = pending[index].value
                index += 1
            if pos == 0:  # where the audio starts: no ramp from the previous setting
                engine.set(group, ramp_ms=0)
                engine.reset()
            else:
                engine.set(group)
        stop = min(pos + block_size, x.size)
        if index < len(pending):
            stop = min(stop, pending[index].sample)
        start = time.process_time()
        engine.process_block(x[pos:stop], y[pos:stop])
        cpu += time.process_time() - start
        if progress is not None:
            progress(stop - pos)
        pos = stop
    return y, RenderStats(x.size / engine.sample_rate, cpu)


