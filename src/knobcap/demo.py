"""``knobcap demo``: capture the built-in virtual TS808 end to end, in one command.

init -> plan -> reamp (virtual TS808) -> check -> train -> eval, each step with progress, in a demo
folder that is marked as such (``.knobcap-demo``) so that a rerun resumes it and a user's own folder is
never touched. Sizes are chosen to finish in about 15 minutes on a 2-core CPU (``--quick``: under 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


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
