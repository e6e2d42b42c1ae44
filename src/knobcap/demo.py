"""``knobcap demo``: capture the built-in virtual TS808 end to end, in one command.

init -> plan -> reamp (virtual TS808) -> check -> train -> eval, each step with progress, in a demo
folder that is marked as such (``.knobcap-demo``) so that a rerun resumes it and a user's own folder is
never touched. Sizes are chosen to finish in about 15 minutes on a 2-core CPU (``--quick``: under 2).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from knobcap.fileio import write_json_atomic

MARKER = ".knobcap-demo"
DEVICE = "ts808"
RUN_NAME = "demo"


class DemoError(ValueError):
    """The demo cannot run as asked; the message says what to do."""


@dataclass(frozen=True)
class DemoConfig:
    """The sizes of a demo capture (a full one fits 15 minutes on 2 CPU cores)."""

    signal_seconds: float = 60.0
    train: int | None = None     # space-filling settings (None: the design's default)
    anchors: int | None = None
    holdouts: int | None = None
    training: dict[str, object] = field(default_factory=dict)  # TrainConfig fields
    grid: int = 6
    di_settings: int = 4
    seed: int = 0

    @classmethod
    def full(cls, seed: int = 0) -> DemoConfig:
        return cls(seed=seed)

    @classmethod
    def quick(cls, seed: int = 0) -> DemoConfig:
        return cls(signal_seconds=30.0, grid=3, di_settings=2, seed=seed)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# ------------------------------------------------------------------------------------------ folder
def prepare_folder(directory: Path, config: DemoConfig) -> bool:
    """Make or reuse a demo folder; ``True`` when an earlier demo is resumed.

    A missing or empty folder becomes a demo folder (marked by ``.knobcap-demo``, which records the
    sizes). A folder made by an earlier demo with the same sizes is resumed; any other folder is
    refused, so that a user's own session or recordings are never touched.
    """
    directory = Path(directory)
    marker = directory / MARKER
    if marker.is_file():
        try:
            earlier = json.loads(marker.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            earlier = None
        if earlier != config.to_dict():
            raise DemoError(
                f"{directory} holds a knobcap demo made with other sizes (another --quick or --seed); "
                "remove the folder or choose another one.")
        return True
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DemoError(
            f"{directory} exists and is not a knobcap demo folder; the demo never writes into other "
            "folders. Choose a new folder (e.g. 'knobcap demo ./knobcap-demo').")
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, config.to_dict())
    return False


# ------------------------------------------------------------------------------------------ display
@contextlib.contextmanager
def progress_bar(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display; yields ``update(task, done, total)`` that adds a bar per task name."""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def update(task: str, done: int, total: int) -> None:
            if task not in tasks:
                tasks[task] = progress.add_task(task, total=total)
            progress.update(tasks[task], completed=done, total=total)

        yield update
