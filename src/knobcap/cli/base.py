"""The ``knobcap`` app, its consoles and its error line, and the library loaded lazily.

``knobcap --help`` takes 0.2 s, while scipy (capture), numba (the engine) and torch (training) take 1 to
5 s to import: a verb module names the library modules it calls with :func:`lazy`, which imports a
module on its first attribute access, so each verb pays only for what it uses.
"""

from __future__ import annotations

import importlib
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="knobcap",
    help="Parametric neural capture of guitar pedals and amps: one model for every knob setting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


class _Library:
    """A stand-in for module ``name`` that imports it on the first attribute asked of it.

    Not a module, and not in ``sys.modules``: code that scans the loaded modules never imports it early.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"lazy({self._name!r})"


def lazy(name: str) -> Any:
    """Module ``name``, imported when a verb first uses one of its names (``lazy(name).function``)."""
    return _Library(name)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a plain error and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def main() -> None:
    """knobcap: describe controls -> plan -> reamp -> check -> train -> eval -> export / play."""
