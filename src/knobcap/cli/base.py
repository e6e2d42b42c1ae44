"""The ``knobcap`` app, its consoles and its error line, and the library loaded lazily.

``knobcap --help`` takes 0.2 s, while scipy (capture), numba (the engine) and torch (training) take 1 to
5 s to import: a verb module names the library modules it calls with :func:`lazy`, which executes a
module on its first attribute access, so each verb pays only for what it uses.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import NoReturn

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


def lazy(name: str) -> ModuleType:
    """Module ``name``, executed on its first attribute access (:class:`importlib.util.LazyLoader`)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}; reinstall knobcap.")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)  # as a normal import does: knobcap.capture.session
    return module


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a plain error and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def main() -> None:
    """knobcap: describe controls -> plan -> reamp -> check -> train -> eval -> export / play."""
