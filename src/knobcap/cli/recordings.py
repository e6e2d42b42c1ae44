"""The verb for recordings made elsewhere: import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from knobcap.cli.base import app, console, fail, lazy

show = lazy("knobcap.console")
importing = lazy("knobcap.capture.importer")


@app.command("import")
def import_(
    directory: Annotated[Path, typer.Argument(help="New session folder to make (must not exist, or be "
                                                   "empty).")],
    input: Annotated[Path | None, typer.Option("--input", help="The input (DI) file played into the "
                                                "device, shared by every take without its own.")] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="The takes: columns file, one a control, "
                                              "optional role (train/holdout) and input.")] = None,
    take: Annotated[list[str] | None, typer.Option(
        "--take", help="One take, quoted: \"FILE drive=3 tone=5 [role=holdout] [input=DI.wav]\" "
        "(repeat).")] = None,
    controls: Annotated[Path | None, typer.Option("--controls", help="A controls.toml (default: "
                                                   "inferred from the values).")] = None,
    rate: Annotated[int | None, typer.Option(help="Resample every file once to this rate (default: "
                                             "keep the recordings' own rate).")] = None,
    clips: Annotated[str | None, typer.Option(help="The input is independent clips from rest: seconds "
                                              "each (e.g. 0.5) or start times, comma-separated.")] = None,
    skip: Annotated[float, typer.Option(help="Seconds at the start of each clip never scored.")] = 0.0,
    holdout_seconds: Annotated[float | None, typer.Option(help="Held-out time: the last S seconds of "
                                                          "each input.")] = None,
    holdout_fraction: Annotated[float | None, typer.Option(help="Held-out time as a fraction of each "
                                                           "input instead.")] = None,
) -> None:
    """Make a session from recordings you already have: a DI file and takes at known settings."""
    try:
        specs = importing.read_takes_csv(csv) if csv is not None else []
        specs += [importing.parse_take(text) for text in take or []]
        result = importing.import_session(
            directory, specs, input_file=input, controls_file=controls, rate=rate,
            clips=importing.parse_clips(clips), skip=skip, holdout_seconds=holdout_seconds,
            holdout_fraction=holdout_fraction)
    except (ValueError, OSError) as error:
        fail(str(error))
    show.imported(console, result)
