"""The model verbs: train, eval, report, render, export, play, and the end-to-end demo."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

from knobcap.cli.base import app, console, fail, lazy

show = lazy("knobcap.console")
controls_lib = lazy("knobcap.controls")
training = lazy("knobcap.training.loop")
evaluation = lazy("knobcap.evaluation.evaluate")
reporting = lazy("knobcap.evaluation.report")
modelfiles = lazy("knobcap.models.modelfile")
rendering = lazy("knobcap.runtime.render")
exporting = lazy("knobcap.runtime.export")
playing = lazy("knobcap.play")
demos = lazy("knobcap.demo")


def dc_blocker_option(value: str | None) -> str | float | None:
    """``--dc-blocker``: auto, off or a number of Hz (TrainConfig checks its range)."""
    if value is None or value in ("auto", "off"):
        return value
    try:
        return float(value)
    except ValueError:
        fail(f"--dc-blocker {value!r}: give auto, off or a corner in Hz, e.g. --dc-blocker 2.")


@app.command()
def train(
    directory: Annotated[Path, typer.Argument(help="Session folder.")],
    run: Annotated[str | None, typer.Option(
        help="Run name (folder under DIR/runs); with --resume, the run to continue.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a killed or finished run from its last "
                                                "checkpoint (give --run).")] = False,
    architecture: Annotated[str, typer.Option(help="Model architecture (wavenet, lstm, or one you "
                                                   "registered).")] = "wavenet",
    model_config: Annotated[Path | None, typer.Option(
        help="JSON file with the architecture's config (default: the built-in size).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (with --resume: the new total).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps per epoch.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Windows per batch.")] = None,
    minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes of training.")] = None,
    ema_decay: Annotated[float | None, typer.Option(
        help="Decay of the moving average of the weights that is scored and saved (0: off; default "
             "0.998).")] = None,
    lr_schedule: Annotated[str | None, typer.Option(
        help="Learning-rate schedule: cosine (default: decays over the budget you give, --minutes or "
             "--epochs x --steps, whichever ends first), exponential (0.9 an epoch, whatever the budget) "
             "or wsd (the full rate, then a decay over the budget's last quarter).")] = None,
    take_weighting: Annotated[float | None, typer.Option(
        help="Share of each batch drawn from takes in proportion to their held-out-time ESR at the last "
             "validation, so training time goes where the fit is worst (0-1; 0: all equally).")] = None,
    init_from: Annotated[str | None, typer.Option(help="Start from the weights of this run (or model file) "
                                                   "instead of fresh ones; it is only read.")] = None,
    dc_blocker: Annotated[str | None, typer.Option(
        help="The output DC blocker every runtime applies after the model: auto (default: 2 Hz when the "
             "takes hold no DC, as an AC-coupled pedal's do; none when they carry DC, as some plugins' "
             "do), off, or a corner in Hz up to 20.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data: same run).")] = 0,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: cores, at most 8); the WaveNet "
                                                      "kernel gets them all and torch one.")] = None,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: auto (a GPU when there is "
                                                  "one), cpu, gpu.")] = "auto",
    devices: Annotated[str, typer.Option(help="Lightning devices: a count or 'auto'.")] = "1",
    strategy: Annotated[str, typer.Option(help="Lightning strategy, e.g. ddp for several GPUs.")] = "auto",
    compile: Annotated[bool, typer.Option(help="torch.compile the model (a minute or more to start; not "
                                               "faster on a 2-core CPU, unmeasured on a GPU).")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a parametric model on a checked session; writes DIR/runs/<run>/model.knobcap."""
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    options: dict[str, object] = {"architecture": architecture, "seed": seed, "threads": threads,
                                  "accelerator": accelerator, "strategy": strategy, "compile": compile,
                                  "devices": int(devices) if devices.isdigit() else devices}
    for key, value in (("epochs", epochs), ("steps_per_epoch", steps), ("batch_size", batch_size),
                       ("ema_decay", ema_decay), ("max_minutes", minutes), ("lr_schedule", lr_schedule),
                       ("init_from", init_from), ("dc_blocker", dc_blocker_option(dc_blocker)),
                       ("take_weighting", take_weighting)):
        if value is not None:
            options[key] = value
    try:
        if model_config is not None:
            try:
                options["model"] = json.loads(model_config.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                fail(f"{model_config}: cannot read the model config as JSON ({error}).")
            if not isinstance(options["model"], dict):
                fail(f"{model_config}: holds a JSON {type(options['model']).__name__}; a model config is a "
                     'JSON object of the architecture\'s options, e.g. {"hidden_size": 24, "num_layers": 1}.')
        config = training.TrainConfig.from_dict(options, "command line")
        what = f"resuming run {run}" if resume else f"training a parametric {architecture}"
        console.print(f"{what} on {directory}; a checkpoint every epoch (after Ctrl-C, --resume continues).")
        result = training.train_session(directory, config if not resume or epochs or minutes else None,
                                        run=run, resume=resume, progress=progress)
    except (ValueError, KeyError, FileNotFoundError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted; continue with 'knobcap train DIR --resume --run <run>' (nothing is lost "
             "up to the last finished epoch).", code=130)
    show.trained(console, result)


@app.command(name="eval")
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder (holds model.knobcap).")],
    device: Annotated[str | None, typer.Option(
        help="Device for a dense grid and DI: ts808, lv2:<URI> (default: the session's; 'none': "
             "skip).")] = None,
    grid: Annotated[int, typer.Option(help="Grid levels per knob (times every switch combination).")] = 6,
    di: Annotated[Path | None, typer.Option(
        help="DI WAV or folder of them (48 kHz); default: the clip bundled with knobcap.")] = None,
    no_di: Annotated[bool, typer.Option("--no-di", help="Skip the DI clips.")] = False,
    di_settings: Annotated[int, typer.Option(help="Random settings to render each DI clip at.")] = 4,
    di_seconds: Annotated[float | None, typer.Option(help="Use only the first seconds of each clip.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the DI settings.")] = 0,
) -> None:
    """Evaluate a trained model on held-out time, held-out settings, a dense grid and real DI clips."""
    try:
        with show.progress_bar(console) as update:
            doc = evaluation.evaluate_run(run, device=device, grid=grid, di=di, use_di=not no_di,
                                          di_settings=di_settings, di_seconds=di_seconds, seed=seed,
                                          progress=update)
    except (ValueError, KeyError, FileNotFoundError) as error:
        fail(str(error).strip("'\""))
    show.evaluated(console, doc, run)


@app.command()
def report(
    run: Annotated[Path, typer.Argument(help="Run folder (SESSION/runs/<run>).")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="HTML file to write (default RUN/report.html).")] = None,
    di: Annotated[Path | None, typer.Option(help="A DI clip (WAV at the model's rate) for the real-guitar "
                                                 "example; default: the bundled clip.")] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Leave out the listening examples.")] = False,
) -> None:
    """Write one self-contained HTML report of a run: ESR map, table, curves, overlays, audio."""
    if output is not None and output.suffix.lower() not in {".html", ".htm"}:
        fail(f"{output}: the report is an HTML file; give a name ending in .html.")
    try:
        with console.status("Writing the report (rendering listening examples)…"):
            path = reporting.write_report(run, output, di_clip=di, audio=not no_audio)
    except ValueError as error:
        fail(str(error))
    size = path.stat().st_size / 2**20
    console.print(f"[bold green]Report:[/] {path} ({size:.1f} MiB, self-contained: opens offline)")


@app.command()
def render(
    model: Annotated[Path, typer.Argument(help="model.knobcap file.")],
    input_wav: Annotated[Path, typer.Argument(help="Input WAV (any rate; mono or stereo).")],
    output_wav: Annotated[Path, typer.Argument(help="Output WAV (refused if it exists, unless --force).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="A control's value, e.g. --set drive=7 --set diodes=led (repeatable).")] = None,
    automation: Annotated[Path | None, typer.Option(
        help="CSV of moves: time,control,value (seconds; knob units; switch positions).")] = None,
    ramp_ms: Annotated[float, typer.Option(help="Knob smoothing time in milliseconds.")] = 50.0,
    block_size: Annotated[int, typer.Option(help="Samples per block (1 to 4096).")] = 512,
    force: Annotated[bool, typer.Option(help="Replace OUTPUT_WAV if it exists.")] = False,
) -> None:
    """Run a model over audio with fixed controls or automation."""
    try:
        job = rendering.open_render(model, input_wav, output_wav, set_ or [], automation, ramp_ms, block_size,
                                    force)
        for note in job.notes:
            console.print(note)
        with show.counting(console, "rendering", job.total, counts=False, transient=True) as step:
            result = job.run(progress=lambda n: step(advance=n))
    except ValueError as error:
        fail(str(error))
    show.rendered(console, output_wav, result)


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="model.knobcap file.")],
    format: Annotated[str, typer.Argument(help="nam or proteus.")],
    output: Annotated[Path, typer.Argument(help="File to write (a folder with --grid).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="A control's value to bake, e.g. --set drive=7 (others take their defaults; for "
                      "proteus only switches are baked).")] = None,
    grid: Annotated[int | None, typer.Option(
        help="nam: write a folder of snapshots, this many values per knob (not --set) and every "
             "switch position.")] = None,
    layout: Annotated[str, typer.Option(
        help="nam: 'classic' (file version 0.5, read by every NAM plugin) or 'current' (0.7).")] = "classic",
    force: Annotated[bool, typer.Option(help="Replace existing files.")] = False,
    max_files: Annotated[int | None, typer.Option(
        help="With --grid: the most .nam files to write (default 2000), counted before writing.")] = None,
) -> None:
    """Export a model to NAM (.nam snapshots) or Proteus (JSON)."""
    try:
        loaded = modelfiles.load_model_file(model)
        if output.resolve() == model.resolve():
            fail(f"{output}: is the model itself; choose another name.")
        raw = controls_lib.parse_setting_args(set_ or [])
        setting = controls_lib.settings_from_args(loaded.controls, raw)
        if format == "nam" and grid is not None:
            paths = exporting.export_nam_grid(loaded, output, grid, fixed=setting, layout=layout, force=force,
                                              max_files=max_files)
            console.print(f"Wrote {len(paths)} .nam snapshots into {output}.")
            for note in exporting.export_notes(loaded, paths[0]) if paths else []:
                console.print(f"[yellow]note:[/] {note} (each .nam has its own .ir.wav)")
        elif format == "nam":
            path = exporting.export_nam(loaded, output, setting, layout=layout, force=force)
            console.print(f"Wrote {path} (NAM {loaded.architecture} snapshot, {layout} layout).")
            for note in exporting.export_notes(loaded, path):
                console.print(f"[yellow]note:[/] {note}")
        elif format == "proteus":
            if grid is not None:
                fail("--grid is for nam snapshots; Proteus keeps its knobs live.")
            path, notes = exporting.export_proteus(loaded, output, setting, force=force)
            for note in notes:
                console.print(f"[yellow]note:[/] {note}")
            console.print(f"Wrote {path} (Proteus LSTM, knobs live).")
        else:
            fail(f"unknown export format {format!r}; use 'nam' or 'proteus'.")
    except ValueError as error:
        fail(str(error))


@app.command()
def play(
    model: Annotated[Path, typer.Argument(help="model.knobcap file.")],
    clip: Annotated[list[Path] | None, typer.Option(help="A DI clip to offer on the page (repeatable); "
                                                         "the bundled demo clip is always there.")] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 8808,
    browser: Annotated[bool, typer.Option(help="Open the page in the default browser.")] = True,
    live: Annotated[bool, typer.Option(help="Also run the model on the sound card's input "
                                            "(needs sounddevice).")] = False,
    device: Annotated[str | None, typer.Option(help="Sound device for --live (name or number).")] = None,
    block_size: Annotated[int, typer.Option(help="Block size for --live, in samples.")] = 128,
) -> None:
    """Open a local web page with the model's knobs; moving them re-renders a clip through the model."""
    try:
        playing.serve(model, clip or [], port=port, browser=browser, live=live, device=device,
                      block_size=block_size, say=console.print)
    except ValueError as error:
        fail(str(error))


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Demo folder (made, or resumed if an earlier demo "
                                              "made it).")] = Path("knobcap-demo"),
    quick: Annotated[bool, typer.Option(help="A tiny capture in under 2 minutes (a smoke test).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the design, the recordings and the training.")] = 0,
    device: Annotated[str, typer.Option(help="The device to capture: ts808 or lv2:<plugin URI> (all "
                                             "its controls).")] = "ts808",
    refine: Annotated[int | None, typer.Option(help="Takes added by one 'plan --more' round after a first "
                                                    "model, within the same takes and training time "
                                                    "(0: none; default: the demo's).")] = None,
) -> None:
    """Capture a device end to end (the built-in virtual TS808 by default): init, plan, reamp, check,
    train, eval, report."""
    config = demos.DemoConfig.quick(seed) if quick else demos.DemoConfig.full(seed)
    config = config.for_device(device)
    started = time.monotonic()
    try:
        if refine is not None:
            config = config.with_refinement(refine)
        result = demos.run_demo(directory, config, console)
    except (ValueError, KeyError) as error:
        fail(str(error).strip("'\""))
    demos.print_result(console, result)
    console.print(f"Done in {(time.monotonic() - started) / 60:.1f} min.", highlight=False)
