"""The ``knobcap`` command: thin verbs over the library, printed with rich.

Each verb of the user journey is registered here. A verb's body parses options, calls the library and
prints; errors from the library (``ValueError`` subclasses with a plain message) end in a red line and
exit status 1, never in a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.table import Table

    from knobcap.controls import Controls

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
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
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
    import math

    from rich.table import Table

    from knobcap.capture.testsignal import SignalError, generate_signal, write_signal

    try:
        generated = generate_signal(seconds)
        wav, js = write_signal(out, generated)
    except (SignalError, OSError) as error:
        fail(str(error))
    m = generated.map
    table = Table(title=f"{wav} ({m.length / m.sample_rate:.1f} s, {m.sample_rate} Hz, 24-bit, "
                  f"signal version {m.version})")
    for column in ("segment", "start (s)", "stop (s)", "length (s)", "peak (dBFS)"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for seg in m.segments:
        part = generated.audio[seg.start:seg.stop]
        peak = float(abs(part).max()) if len(part) else 0.0
        level = f"{20 * math.log10(peak):.1f}" if peak > 0 else "-inf"
        table.add_row(seg.name, f"{seg.start / m.sample_rate:.3f}", f"{seg.stop / m.sample_rate:.3f}",
                      f"{seg.length / m.sample_rate:.3f}", level)
    console.print(table)
    console.print(f"Wrote {wav} and its segment map {js}. Play it through the device at each setting.",
                  highlight=False)


# ------------------------------------------------------------------------------------------ session
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Session folder to create.")],
    device: Annotated[str | None, typer.Option(help="Copy a virtual device's controls (and screen its "
                                                     "knobs).")] = None,
    no_screen: Annotated[bool, typer.Option("--no-screen", help="With --device: do not screen the knobs "
                                            "(no warp lines; each knob keeps its taper).")] = False,
) -> None:
    """Create a session folder with a commented controls.toml template (or a virtual device's controls)."""
    from knobcap.capture.session import check_new_session, init_session
    from knobcap.devices import get_device

    controls = None
    if device is not None:
        try:
            virtual = get_device(device)
            check_new_session(directory)
        except KeyError as error:
            fail(str(error.args[0]))
        except ValueError as error:
            fail(str(error))
        controls = virtual.controls
        if not no_screen:
            from knobcap.capture.screening import ScreeningError, screen_device
            from knobcap.demo import progress_bar

            try:
                with progress_bar(console) as update:
                    controls = screen_device(virtual, progress=lambda knob, i, n: update(
                        f"screening {device}", i, n))
            except ScreeningError as error:
                fail(str(error))
    try:
        path = init_session(directory, controls, device)
    except ValueError as error:
        fail(str(error))
    console.print(f"Wrote [bold]{path}[/]" + (f" (the controls of {device})." if device else "."))
    if controls is not None and any(k.warp is not None for k in controls.knobs):
        console.print(warp_table(controls, f"Knobs of {device}, screened: u at each quarter turn"))
        console.print("Equal steps of u are equal steps of sound change; the design and the model use u. "
                      "Delete a warp line in controls.toml to use the taper instead.", highlight=False)
    if device is None:
        console.print("Describe your device's knobs and switches in it. Next: [bold]knobcap screen "
                      f"{directory}[/] (optional, about 6 min a knob: measures where each knob "
                      f"changes the sound), then [bold]knobcap plan {directory}[/].", highlight=False)
    else:
        console.print(f"Next: [bold]knobcap plan {directory}[/], then [bold]knobcap reamp {directory} "
                      f"--device {device}[/].", highlight=False)


def warp_table(controls: Controls, title: str) -> Table:
    """Per knob: u at 1/4, 1/2 and 3/4 of the turn, and where the sound changes fastest."""
    from rich.table import Table

    from knobcap.capture.screening import warp_summary

    table = Table(title=title, title_justify="left")
    table.add_column("knob")
    for quarter in ("1/4 turn", "1/2 turn", "3/4 turn"):
        table.add_column(f"u at {quarter}", justify="right")
    table.add_column("changes fastest")
    for knob in controls.knobs:
        summary = warp_summary(knob)
        source = "" if knob.warp is not None else f" [dim](no warp: {knob.taper} taper)[/]"
        table.add_row(knob.name, *(f"{u:.2f}" for u in summary.quarters), summary.fastest + source)
    return table


@app.command()
def screen(
    directory: Annotated[Path, typer.Argument(help="Session folder (made by knobcap init).")],
    levels: Annotated[int | None, typer.Option(help="Probes per knob, equally spaced over its turn "
                                               "(default 11, or as in an existing screen/plan.csv).")] = None,
    device: Annotated[str | None, typer.Option(help="Record the probes through this virtual device.")] = None,
    seed: Annotated[int, typer.Option(help="With --device: seed of the latencies and noise floors.")] = 0,
) -> None:
    """Screen the knobs: record a short probe at a few turns of each knob, and write the measured warps
    (where each knob changes the sound) into controls.toml. Run it before 'knobcap plan'."""
    from rich.table import Table

    from knobcap.capture.screen_session import PROBE_INPUT, PROBE_PLAN, screen_session
    from knobcap.capture.screening import screenable
    from knobcap.controls import setting_label
    from knobcap.demo import progress_bar
    from knobcap.devices import get_device

    try:
        virtual = get_device(device) if device is not None else None
    except KeyError as error:
        fail(str(error.args[0]))
    try:
        with progress_bar(console) as update:
            outcome = screen_session(directory, levels=levels, device=virtual, seed=seed, progress=update)
    except ValueError as error:
        fail(str(error))
    probes = outcome.probes
    folder = probes.folder
    for knob in probes.controls.knobs:
        if not screenable(knob):
            console.print(f"[dim]note: knob {knob.name!r} has a log taper and is not screened: a warp is "
                          "linear in the knob's value and would lose its low decades.[/]", highlight=False)
    written = [name for name, did in ((f"{PROBE_INPUT} (+ its segment map input.json)", probes.wrote_input),
                                      (PROBE_PLAN, probes.wrote_plan)) if did]
    if written:
        console.print(f"Wrote {' and '.join(written)} in {folder}.", highlight=False)
    if outcome.recorded_now:
        console.print(f"Recorded {len(outcome.recorded_now)} probe(s) through the virtual {device} in "
                      f"{folder}.", highlight=False)
    if outcome.measurement is None:
        seconds = probes.signal.map.length / probes.signal.sample_rate
        table = Table(title=f"{len(probes.probes)} probes ({PROBE_PLAN}), in recording order",
                      title_justify="left")
        for column in ("probe", "turn", "setting"):
            table.add_column(column)
        for probe in probes.probes:
            table.add_row(f"{probe.name}.wav", probe.knob, setting_label(probe.setting, digits=6))
        console.print(table)
        knobs = len({p.knob for p in probes.probes})
        console.print(
            f"Record: play {folder / PROBE_INPUT} ({seconds:.1f} s) through the device at each row's "
            f"setting of {folder / PROBE_PLAN}, in order ({knobs} knob(s) x {probes.levels} turns, one "
            f"knob at a time, the others at their defaults), and save each recording as "
            f"{folder}/probe01.wav, probe02.wav, ... (mono, {probes.signal.sample_rate} Hz, from the very "
            f"start of the file to a second after it ends). Keep the interface gain and the device's "
            f"level the same for every probe.", highlight=False)
        console.print(f"Recording time: {probes.time().describe()}.", highlight=False)
        console.print(f"Then run [bold]knobcap screen {directory}[/] again to measure the warps (or, "
                      f"with a virtual device: knobcap screen {directory} --device ts808).", highlight=False)
        return
    for warning in outcome.measurement.warnings:
        console.print(f"[yellow]warn[/] {warning}", highlight=False)
    assert outcome.controls is not None
    console.print(warp_table(outcome.controls, f"Screened {len(probes.probes)} probes: u at each quarter "
                                               "turn"))
    if outcome.wrote_controls:
        console.print(f"Wrote the warps into {probes.controls_path} (a 'warp = [...]' line in each knob's "
                      "table; the rest of the file is as it was).", highlight=False)
    else:
        console.print(f"{probes.controls_path} already holds these warps; nothing rewritten.",
                      highlight=False)
    for note in outcome.notes:
        console.print(f"[yellow]note[/] {note}", highlight=False)
    if not outcome.notes and not (directory / "plan.csv").is_file():
        console.print(f"Next: [bold]knobcap plan {directory}[/] (the design spreads the settings by "
                      "measured sound change).", highlight=False)


@app.command()
def plan(
    directory: Annotated[Path, typer.Argument(help="Session folder.")],
    n: Annotated[int | None, typer.Option("--n", help="Takes to record in all (default: sized for "
                                           "the controls).")] = None,
    minutes: Annotated[float | None, typer.Option(help="Time budget for the recording session, "
                                                   "instead of --n.")] = None,
    seconds: Annotated[float | None, typer.Option(help="Length of knobcap's test signal (30 to 180 s; "
                                                   "default 90, 30 with --quick).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the design (same seed, same plan).")] = 0,
    input: Annotated[Path | None, typer.Option("--input", help="Your own test signal (48 kHz mono "
                                                "WAV, e.g. NAM's reamp file), used as it is.")] = None,
    quick: Annotated[bool, typer.Option(help="A small session for a demo: 30 s signal, half the "
                                         "settings.")] = False,
) -> None:
    """Choose the settings to record, order them, write input.wav and plan.csv."""
    from rich.table import Table

    from knobcap.capture.session import make_plan
    from knobcap.controls import format_value

    try:
        result = make_plan(directory, n=n, minutes=minutes, seconds=seconds, seed=seed,
                           input_file=input, quick=quick)
    except ValueError as error:
        fail(str(error))
    from knobcap.controls import load_controls

    controls = load_controls(directory / "controls.toml")
    table = Table(title=f"Plan for {controls.name or directory}", title_justify="left")
    table.add_column("take")
    for knob in controls.knobs:
        table.add_column(knob.name + (f" ({knob.unit})" if knob.unit else ""), justify="right")
    for switch in controls.switches:
        table.add_column(switch.name)
    table.add_column("role")
    for row in result.takes:
        values = [format_value(k, float(row.setting[k.name])) for k in controls.knobs]
        values += [str(row.setting[s.name]) for s in controls.switches]
        style = {"anchor": "cyan", "holdout": "magenta"}.get(row.role, "")
        table.add_row(row.take, *values, f"[{style}]{row.role}[/]" if style else row.role)
    console.print(table)
    counts = {r: sum(t.role == r for t in result.takes) for r in ("train", "anchor", "holdout")}
    console.print(f"{counts['train']} space-filling, {counts['anchor']} anchor (knob ends) and "
                  f"{counts['holdout']} held-out settings (never trained on).", highlight=False)
    console.print(f"Session time: {result.time.describe()}.", highlight=False)
    console.print(f"[dim]Assumed: {result.costs.describe()}.[/]", highlight=False)
    written = [name for name, did in (("plan.csv", result.wrote_plan), ("input.wav", result.wrote_input))
               if did]
    console.print((f"Wrote {' and '.join(written)} in {directory}." if written else
                   f"{directory / 'plan.csv'} and input.wav are unchanged.")
                  + (f" {result.recorded} take(s) already recorded." if result.recorded else ""),
                  highlight=False)
    console.print(f"Next: play input.wav through the device at each setting, in order, and save "
                  f"{directory / 'takes'}/<take>.wav (or: knobcap reamp {directory} --device ts808).",
                  highlight=False)


@app.command()
def reamp(
    directory: Annotated[Path, typer.Argument(help="Session folder.")],
    device: Annotated[str, typer.Option(help="Virtual device to record through.")] = "ts808",
    seed: Annotated[int, typer.Option(help="Seed of the latencies and noise floors.")] = 0,
    invert_polarity: Annotated[bool, typer.Option(help="Record with the polarity inverted, as a "
                                                   "miswired interface would.")] = False,
    pcm24: Annotated[bool, typer.Option(help="Write 24-bit PCM instead of 32-bit float.")] = False,
) -> None:
    """Record every planned take through a virtual device."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from knobcap.capture.reamp import reamp_session
    from knobcap.capture.session import Session
    from knobcap.devices import get_device

    try:
        session = Session.open(directory)
        virtual = get_device(device)
        missing = len(session.missing_takes())
    except KeyError as error:
        fail(str(error.args[0]))
    except ValueError as error:
        fail(str(error))
    if missing == 0:
        console.print(f"All {len(session.plan())} takes are already recorded in {session.takes_dir}; "
                      "nothing to do (knobcap never overwrites a take).", highlight=False)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"reamp through {device}", total=missing)

        def step(row, index, count):
            bar.update(task, completed=index, description=f"{row.take} ({row.role})")

        try:
            done = reamp_session(session, virtual, seed=seed, invert_polarity=invert_polarity,
                                 subtype="PCM_24" if pcm24 else "FLOAT", progress=step)
        except ValueError as error:
            fail(str(error))
        bar.update(task, completed=missing, description="done")
    rate = session.input().sample_rate
    if done:
        lat = [1000.0 * d.latency / rate for d in done]
        console.print(f"Recorded {len(done)} take(s) in {session.takes_dir} (latency {min(lat):.1f} to "
                      f"{max(lat):.1f} ms, polarity {'inverted' if invert_polarity else 'normal'}). "
                      f"Next: knobcap check {directory}", highlight=False)


@app.command()
def check(directory: Annotated[Path, typer.Argument(help="Session folder.")]) -> None:
    """Check every take: latency, rate, length, clipping, silence, noise floor and drift."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from knobcap.capture.check import check_session
    from knobcap.capture.session import Session
    from knobcap.controls import setting_label

    try:
        session = Session.open(directory)
        count = len(session.plan())
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("check", total=count)
            report = check_session(session, progress=lambda take, i, n: bar.update(
                task, completed=i, description=f"check {take}"))
    except ValueError as error:
        fail(str(error))
    rate = report.signal_map.sample_rate
    table = Table(title=f"knobcap check {directory}")
    for column in ("take", "role", "setting", "latency (ms)", "polarity", "peak dBFS", "noise dBFS",
                   "drift ESR", "status", "problem"):
        table.add_column(column, justify="right" if column in (
            "latency (ms)", "peak dBFS", "noise dBFS", "drift ESR") else "left")
    colour = {"ok": "green", "warn": "yellow", "fail": "red"}

    def number(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for t in report.takes:
        lat = t.latency if t.latency is not None and t.latency.confident else None
        table.add_row(
            t.take, t.role, setting_label(t.setting, digits=6), number(lat and lat.milliseconds(rate), ".2f"),
            "-" if lat is None else ("+" if lat.polarity > 0 else "inverted"),
            number(t.peak_dbfs, ".1f"), number(t.noise_floor_dbfs, ".0f"), number(t.drift_esr, ".4f"),
            f"[{colour[t.status]}]{t.status}[/]", "; ".join(p.short for p in t.problems))
    console.print(table)
    for t in report.takes:
        for p in t.problems:
            console.print(f"[{colour[p.severity]}]{p.severity}[/] {t.take} ({p.code}): {p.message}",
                          highlight=False)
    for p in report.problems:
        console.print(f"[{colour[p.severity]}]{p.severity}[/] ({p.code}): {p.message}", highlight=False)
    failed = sum(t.status == "fail" for t in report.takes)
    summary = (f"{len(report.takes) - failed} of {len(report.takes)} takes pass; wrote "
               f"{session.check_path}.")
    if not report.ok:
        err_console.print(f"[bold red]check failed:[/] {summary} Fix the takes above and run "
                          f"'knobcap check {directory}' again.", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]check passed:[/] {summary} Next: knobcap train {directory}", highlight=False)


# ------------------------------------------------------------------------------------------ models
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
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data: same run).")] = 0,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: cores, at most 8).")] = None,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: cpu, gpu, auto.")] = "cpu",
    devices: Annotated[str, typer.Option(help="Lightning devices: a count or 'auto'.")] = "1",
    strategy: Annotated[str, typer.Option(help="Lightning strategy, e.g. ddp for several GPUs.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a parametric model on a checked session; writes DIR/runs/<run>/model.knobcap."""
    import json
    import logging
    import warnings

    from knobcap.training.loop import TrainConfig, train_session

    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    try:
        options: dict[str, object] = {"architecture": architecture, "seed": seed, "threads": threads,
                                      "accelerator": accelerator, "strategy": strategy,
                                      "devices": int(devices) if devices.isdigit() else devices}
        if model_config is not None:
            try:
                options["model"] = json.loads(model_config.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                fail(f"{model_config}: cannot read the model config as JSON ({error}).")
        for key, value in (("epochs", epochs), ("steps_per_epoch", steps), ("batch_size", batch_size),
                           ("ema_decay", ema_decay),
                           ("max_minutes", minutes)):
            if value is not None:
                options[key] = value
        config = TrainConfig.from_dict(options, "command line")
        what = f"resuming run {run}" if resume else f"training a parametric {architecture}"
        console.print(f"{what} on {directory}; a checkpoint every epoch (after Ctrl-C, --resume continues).")
        result = train_session(directory, config if not resume or epochs or minutes else None, run=run,
                               resume=resume, progress=progress)
    except (ValueError, KeyError, FileNotFoundError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted; continue with 'knobcap train DIR --resume --run <run>' (nothing is lost "
             "up to the last finished epoch).", code=130)
    from rich.table import Table

    table = Table(title="held-out settings (never trained on)")
    table.add_column("take")
    table.add_column("ESR", justify="right")
    for take, value in result.heldout_esr.items():
        table.add_row(take, f"{value:.4f}")
    if result.heldout_esr:
        console.print(table)
    validation = list(result.validation_esr.values())
    if validation:
        console.print(f"validation (held-out time of the trained settings): mean ESR "
                      f"{sum(validation) / len(validation):.4f}")
    console.print(f"{result.epochs} epochs (best {result.best_epoch}) in {result.minutes:.1f} min; "
                  f"model: [bold]{result.model_path}[/]")


@app.command(name="eval")
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run folder (holds model.knobcap).")],
    device: Annotated[str | None, typer.Option(
        help="Virtual device for a dense grid and DI (default: the one the session was reamped with; "
             "'none': skip).")] = None,
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
    from knobcap.evaluation.evaluate import evaluate_run, rows_table, summary_table

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
def report(
    run: Annotated[Path, typer.Argument(help="Run folder (SESSION/runs/<run>).")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="HTML file to write (default RUN/report.html).")] = None,
    di: Annotated[Path | None, typer.Option(help="A DI clip (WAV at the model's rate) for the real-guitar "
                                                 "example; default: the bundled clip.")] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Leave out the listening examples.")] = False,
) -> None:
    """Write one self-contained HTML report of a run: ESR map, table, curves, overlays, audio."""
    from knobcap.evaluation.report import write_report

    if output is not None and output.suffix.lower() not in {".html", ".htm"}:
        fail(f"{output}: the report is an HTML file; give a name ending in .html.")
    try:
        with console.status("Writing the report (rendering listening examples)…"):
            path = write_report(run, output, di_clip=di, audio=not no_audio)
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
    import math

    import numpy as np
    import soundfile as sf
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from scipy.signal import resample_poly

    from knobcap.controls import parse_setting_args, settings_from_args
    from knobcap.fileio import write_wav_atomic
    from knobcap.runtime.automation import load_automation
    from knobcap.runtime.automation import render as run_render
    from knobcap.runtime.engine import MAX_BLOCK, Engine

    try:
        out_resolved = output_wav.resolve()
        if out_resolved in (input_wav.resolve(), model.resolve()) or (
                automation is not None and out_resolved == automation.resolve()):
            fail(f"{output_wav}: is one of the inputs; knobcap never overwrites an input. Choose another "
                 "name.")
        if output_wav.exists() and not force:
            fail(f"{output_wav} exists; knobcap does not overwrite it. Choose another name or pass --force.")
        if not 1 <= block_size <= MAX_BLOCK:
            fail(f"--block-size must be from 1 to {MAX_BLOCK}, got {block_size}.")
        engine = Engine.from_file(model, ramp_ms=ramp_ms)
        fixed = settings_from_args(engine.controls, parse_setting_args(set_ or []))
        engine.set(fixed, ramp_ms=0)
        engine.reset()
        moves = load_automation(automation, engine.controls, engine.sample_rate) if automation else []
        if not input_wav.is_file():
            fail(f"{input_wav}: no such file.")
        try:
            audio, rate = sf.read(str(input_wav), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            fail(f"{input_wav}: not a readable audio file ({error}). Export it as WAV.")
        if audio.shape[0] == 0:
            fail(f"{input_wav}: holds no samples.")
        channels = audio.shape[1]
        if channels > 2:
            fail(f"{input_wav}: has {channels} channels; give a mono or stereo file.")
        model_rate = engine.sample_rate
        if rate != model_rate:
            factor = math.gcd(int(rate), model_rate)
            up, down = model_rate // factor, int(rate) // factor
            console.print(f"Resampling {rate} Hz -> {model_rate} Hz (the model's rate) with a polyphase "
                          "filter, and back afterwards.")
            audio = resample_poly(audio, up, down, axis=0).astype(np.float32)
        if channels == 2:
            console.print("Stereo input: each channel runs through the model on its own.")
        outputs = []
        cpu = seconds = 0.0
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("rendering", total=audio.shape[0] * channels)
            for ch in range(channels):
                if ch:
                    engine.set(fixed, ramp_ms=0)
                    engine.reset()
                y, stats = run_render(engine, audio[:, ch], moves, block_size,
                                      progress=lambda n: progress.advance(task, n))
                outputs.append(y)
                cpu += stats.cpu_seconds
                seconds += stats.seconds_of_audio
        result = np.stack(outputs, axis=1)
        if rate != model_rate:
            result = resample_poly(result, down, up, axis=0).astype(np.float32)
        peak = float(np.max(np.abs(result))) if result.size else 0.0
        write_wav_atomic(output_wav, result if channels == 2 else result[:, 0], int(rate))
    except ValueError as error:
        fail(str(error))
    console.print(f"Wrote {output_wav} ({result.shape[0] / rate:.2f} s, {channels} channel(s), peak "
                  f"{peak:.3f}).")
    console.print(f"CPU cost: {cpu / seconds if seconds else 0.0:.4f} cores (CPU seconds per second of "
                  f"audio per channel, block {block_size}, this machine).")


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
) -> None:
    """Export a model to NAM (.nam snapshots) or Proteus (JSON)."""
    from knobcap.controls import parse_setting_args, settings_from_args
    from knobcap.models.modelfile import load_model_file
    from knobcap.runtime.export import export_nam, export_nam_grid, export_proteus

    try:
        loaded = load_model_file(model)
        if output.resolve() == model.resolve():
            fail(f"{output}: is the model itself; choose another name.")
        setting = settings_from_args(loaded.controls, parse_setting_args(set_ or []))
        if format == "nam":
            if grid is not None:
                paths = export_nam_grid(loaded, output, grid, fixed=setting, layout=layout, force=force)
                console.print(f"Wrote {len(paths)} .nam snapshots into {output}.")
            else:
                path = export_nam(loaded, output, setting, layout=layout, force=force)
                console.print(f"Wrote {path} (NAM {loaded.architecture} snapshot, {layout} layout).")
        elif format == "proteus":
            if grid is not None:
                fail("--grid is for nam snapshots; Proteus keeps its knobs live.")
            path, warnings = export_proteus(loaded, output, setting, force=force)
            for warning in warnings:
                console.print(f"[yellow]note:[/] {warning}")
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
    import webbrowser

    from knobcap.play import PlayServer, open_app
    from knobcap.play.live import LiveError, LiveStream

    try:
        app = open_app(model, clip or [])
    except ValueError as error:
        fail(str(error))
    try:
        server = PlayServer(app, port=port)
    except OSError as error:
        if port == 0:
            fail(f"cannot open a port on 127.0.0.1 ({error.strerror}).")
        console.print(f"Port {port} is busy ({error.strerror}); using a free one.")
        server = PlayServer(app, port=0)
    stream = None
    if live:
        try:
            stream = LiveStream(model, block_size=block_size,
                                device=int(device) if device and device.isdigit() else device)
        except (LiveError, ValueError) as error:
            server.server_close()
            fail(str(error))
        app.listeners.append(stream.set)
        stream.start()
        console.print(f"Live: input 1 -> model -> outputs, blocks of {block_size} samples.")
    console.print(f"[bold green]knobcap play[/] {app.title}: {server.url}  (Ctrl-C to stop)")
    if browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("Stopped.")
    finally:
        server.server_close()
        if stream is not None:
            stream.stop()


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Demo folder (made, or resumed if an earlier demo "
                                              "made it).")] = Path("knobcap-demo"),
    quick: Annotated[bool, typer.Option(help="A tiny capture in under 2 minutes (a smoke test).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the design, the recordings and the training.")] = 0,
) -> None:
    """Capture the built-in virtual TS808 end to end: init, plan, reamp, check, train, eval, report."""
    import time

    from knobcap.demo import DemoConfig, print_result, run_demo

    config = DemoConfig.quick(seed) if quick else DemoConfig.full(seed)
    started = time.monotonic()
    try:
        result = run_demo(directory, config, console)
    except (ValueError, KeyError) as error:
        fail(str(error).strip("'\""))
    print_result(console, result)
    console.print(f"Done in {(time.monotonic() - started) / 60:.1f} min.", highlight=False)


if __name__ == "__main__":
    app()
