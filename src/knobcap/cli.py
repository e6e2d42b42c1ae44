"""The ``knobcap`` command: thin verbs over the library, printed with rich.

Each verb of the user journey is registered here. A verb's body parses options, calls the library and
prints; errors from the library (``ValueError`` subclasses with a plain message) end in a red line and
exit status 1, never in a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

app = typer.Typer(
    name="knobcap",
    help="Parametric neural capture of guitar pedals and amps: one model for every knob setting.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a plain error and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def not_built(verb: str) -> NoReturn:
    fail(f"'knobcap {verb}' is not built yet in this version of knobcap.", code=2)


@app.callback()
def main() -> None:
    """knobcap: describe controls -> plan -> reamp -> check -> train -> eval -> export / play."""


# ---------------------------------------------------------------------------------------------- signal
@app.command()
def signal(
    out: Annotated[Path, typer.Argument(help="WAV file to write (refused if it exists).")],
    seconds: Annotated[float, typer.Option(help="Length in seconds (about 30 to 180).")] = 90.0,
) -> None:
    """Write knobcap's test signal (48 kHz reamp file) and its segment map beside it."""
    not_built("signal")


# ------------------------------------------------------------------------------------------ session
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Session folder to create.")],
    device: Annotated[str | None, typer.Option(help="Copy a virtual device's controls.")] = None,
) -> None:
    """Create a session folder with a commented controls.toml template."""
    not_built("init")


@app.command()
def plan(directory: Annotated[Path, typer.Argument(help="Session folder.")]) -> None:
    """Choose the settings to record, order them, write input.wav and plan.csv."""
    not_built("plan")


@app.command()
def reamp(
    directory: Annotated[Path, typer.Argument(help="Session folder.")],
    device: Annotated[str, typer.Option(help="Virtual device to record through.")] = "ts808",
) -> None:
    """Record every planned take through a virtual device."""
    not_built("reamp")


@app.command()
def check(directory: Annotated[Path, typer.Argument(help="Session folder.")]) -> None:
    """Check every take: latency, rate, length, clipping, silence, noise floor and drift."""
    not_built("check")


# ------------------------------------------------------------------------------------------ models
@app.command()
def train(directory: Annotated[Path, typer.Argument(help="Session folder.")]) -> None:
    """Train a parametric model on a checked session."""
    not_built("train")


@app.command(name="eval")
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder (holds model.knobcap).")],
    device: Annotated[str | None, typer.Option(
        help="Virtual device the session was recorded with (e.g. ts808): adds a dense grid and DI.")] = None,
    grid: Annotated[int, typer.Option(help="Grid levels per knob (times every switch combination).")] = 6,
    di: Annotated[Path | None, typer.Option(
        help="DI WAV or folder of them (48 kHz); default: the clip bundled with knobcap.")] = None,
    no_di: Annotated[bool, typer.Option("--no-di", help="Skip the DI clips.")] = False,
    di_settings: Annotated[int, typer.Option(help="Random settings to render each DI clip at.")] = 4,
    di_seconds: Annotated[float | None, typer.Option(help="Use only the first seconds of each clip.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the DI settings.")] = 0,
) -> None:
    """Evaluate a trained model on held-out time, held-out settings, a dense grid and real DI clips."""
    from knobcap.demo import progress_bar
    from knobcap.evaluate import evaluate_run, rows_table, summary_table

    try:
        with progress_bar(console) as update:
            doc = evaluate_run(run, device=device, grid=grid, di=di, use_di=not no_di,
                               di_settings=di_settings, di_seconds=di_seconds, seed=seed, progress=update)
    except (ValueError, KeyError, FileNotFoundError) as error:
        fail(str(error).strip("'\""))
    console.print(rows_table(doc, "heldout_settings", "held-out settings (never trained on)"))
    if "grid" in doc:
        console.print(rows_table(doc, "grid", "dense grid: worst settings", limit=8))
    console.print(summary_table(doc))
    console.print(f"metrics: {Path(run) / 'metrics.json'}", highlight=False)


@app.command()
def report(run: Annotated[Path, typer.Argument(help="Run folder.")]) -> None:
    """Write an HTML report of a run."""
    not_built("report")


@app.command()
def render(
    model: Annotated[Path, typer.Argument(help="model.knobcap file.")],
    input_wav: Annotated[Path, typer.Argument(help="Input WAV.")],
    output_wav: Annotated[Path, typer.Argument(help="Output WAV.")],
) -> None:
    """Run a model over audio with fixed controls or automation."""
    not_built("render")


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="model.knobcap file.")],
    format: Annotated[str, typer.Argument(help="nam or proteus.")],
) -> None:
    """Export a model to NAM or Proteus."""
    not_built("export")


@app.command()
def play(model: Annotated[Path, typer.Argument(help="model.knobcap file.")]) -> None:
    """Open a local web page with the model's knobs."""
    not_built("play")


@app.command()
def demo() -> None:
    """Capture the built-in virtual TS808 end to end: init, plan, reamp, check, train, eval."""
    not_built("demo")


if __name__ == "__main__":
    app()
