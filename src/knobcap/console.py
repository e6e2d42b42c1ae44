"""What the ``knobcap`` command shows: rich tables, progress displays and the lines after each verb.

Nothing here computes or decides; each function takes what the library returned and lays it out.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from knobcap.capture.screening import screenable, warp_summary
from knobcap.capture.session import PLAN_FILE
from knobcap.controls import Controls, format_value, setting_label
from knobcap.demo import progress_bar
from knobcap.evaluation.evaluate import rows_table, summary_table
from knobcap.training.run import Run

__all__ = ["progress_bar"]  # with the rest: a bar per task, as the demo shows it
STATUS_COLOURS = {"ok": "green", "warn": "yellow", "fail": "red"}
Step = Callable[..., None]


# ------------------------------------------------------------------------------------------ progress
@contextlib.contextmanager
def counting(console: Console, description: str, total: int, *, counts: bool = True, remaining: bool = True,
             transient: bool = False, done: str | None = None) -> Iterator[Step]:
    """One bar, optionally with ``done/total`` and the time remaining; yields
    ``step(completed=None, description=None, advance=0)``. On success, ``done`` (if given) is its last
    description, with the bar full."""
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
    if counts:
        columns.append(MofNCompleteColumn())
    if remaining:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, transient=transient) as progress:
        task = progress.add_task(description, total=total)

        def step(completed: int | None = None, description: str | None = None, advance: int = 0) -> None:
            if advance:
                progress.advance(task, advance)
            else:
                progress.update(task, completed=completed, description=description)

        yield step
        if done is not None:
            progress.update(task, completed=total, description=done)


def label(setting: Mapping[str, object]) -> str:
    """``drive=5 tone=3.5 diodes=led``: knob values to 6 significant digits, in the setting's order."""
    return setting_label(setting, digits=6)


# ------------------------------------------------------------------------------------------- tables
def signal_table(generated: Any, wav: Path) -> Table:
    """Each segment of a generated test signal: where it starts and stops, and its peak level."""
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
    return table


def warp_table(controls: Controls, title: str) -> Table:
    """Per knob: u at 1/4, 1/2 and 3/4 of the turn, and where the sound changes fastest."""
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


def probe_table(probes: Iterable[Any], title: str) -> Table:
    """The screening probes to record, in order: file, knob turned, setting."""
    table = Table(title=title, title_justify="left")
    for column in ("probe", "turn", "setting"):
        table.add_column(column)
    for probe in probes:
        table.add_row(f"{probe.name}.wav", probe.label, label(probe.setting))
    return table


def plan_table(controls: Controls, takes: Iterable[Any], title: str) -> Table:
    """The planned takes: each knob rounded to its dial, each switch, and the take's role."""
    table = Table(title=title, title_justify="left")
    table.add_column("take")
    for knob in controls.knobs:
        table.add_column(knob.name + (f" ({knob.unit})" if knob.unit else ""), justify="right")
    for switch in controls.switches:
        table.add_column(switch.name)
    table.add_column("role")
    for row in takes:
        values = [format_value(k, float(row.setting[k.name])) for k in controls.knobs]  # type: ignore[arg-type]
        values += [str(row.setting[s.name]) for s in controls.switches]
        style = {"anchor": "cyan", "holdout": "magenta"}.get(row.role, "")
        table.add_row(row.take, *values, f"[{style}]{row.role}[/]" if style else row.role)
    return table


def check_table(report: Any, title: str) -> Table:
    """One row per checked take: latency, polarity, levels, drift, status and problems."""
    rate = report.signal_map.sample_rate
    table = Table(title=title)
    for column in ("take", "role", "setting", "latency (ms)", "polarity", "peak dBFS", "noise dBFS",
                   "drift ESR", "status", "problem"):
        table.add_column(column, justify="right" if column in (
            "latency (ms)", "peak dBFS", "noise dBFS", "drift ESR") else "left")

    def number(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for t in report.takes:
        lat = t.latency if t.latency is not None and t.latency.confident else None
        table.add_row(
            t.take, t.role, label(t.setting), number(lat and lat.milliseconds(rate), ".2f"),
            "-" if lat is None else ("+" if lat.polarity > 0 else "inverted"),
            number(t.peak_dbfs, ".1f"), number(t.noise_floor_dbfs, ".0f"), number(t.drift_esr, ".4f"),
            f"[{STATUS_COLOURS[t.status]}]{t.status}[/]", "; ".join(p.short for p in t.problems))
    return table


def check_problems(report: Any) -> Iterator[str]:
    """Each problem of a check report as one coloured line, takes first."""
    for t in report.takes:
        for p in t.problems:
            yield f"[{STATUS_COLOURS[p.severity]}]{p.severity}[/] {t.take} ({p.code}): {p.message}"
    for p in report.problems:
        yield f"[{STATUS_COLOURS[p.severity]}]{p.severity}[/] ({p.code}): {p.message}"


def esr_table(esr: Mapping[str, float], title: str) -> Table:
    """ESR by take."""
    table = Table(title=title)
    table.add_column("take")
    table.add_column("ESR", justify="right")
    for take, value in esr.items():
        table.add_row(take, f"{value:.4f}")
    return table


# --------------------------------------------------------------------------- what each verb prints
def _say(console: Console, message: str) -> None:
    console.print(message, highlight=False)


def signal_written(console: Console, generated: Any, wav: Path, js: Path) -> None:
    console.print(signal_table(generated, wav))
    _say(console, f"Wrote {wav} and its segment map {js}. Play it through the device at each setting.")


def session_created(console: Console, path: Path, directory: Path, device: str | None,
                    controls: Controls | None) -> None:
    console.print(f"Wrote [bold]{path}[/]" + (f" (the controls of {device})." if device else "."))
    if controls is not None and any(k.warp is not None for k in controls.knobs):
        console.print(warp_table(controls, f"Knobs of {device}, screened: u at each quarter turn"))
        _say(console, "Equal steps of u are equal steps of sound change; the design and the model use u. "
             "Delete a warp line in controls.toml to use the taper instead.")
    if controls is not None:
        _screened_knobs(console, controls, path)
    if device is None:
        _say(console, "Describe your device's knobs and switches in it. Next: [bold]knobcap screen "
             f"{directory}[/] (optional, about 6 min a knob: measures where each knob changes the sound), "
             f"then [bold]knobcap plan {directory}[/].")
    else:
        _say(console, f"Next: [bold]knobcap plan {directory}[/], then [bold]knobcap reamp {directory} "
             f"--device {device}[/].")


def _screened_knobs(console: Console, controls: Controls, path: Path) -> None:
    """What screening found beyond the warps: output-gain knobs and knobs silent at an end."""
    for knob in controls.knobs:
        if knob.gain_db is not None:
            what = ("changes nothing measurable (its probes are the same sound" if
                    max(map(abs, knob.gain_db)) < 0.05 else
                    "only sets the output level (its probes are scaled copies of each other")
            _say(console, f"Knob {knob.name!r} {what}, with the other controls at their defaults and at "
                 "their far ends): its gain is applied, not learned, and plans hold it at its default. "
                 f"Delete its 'gain_db' line in {path} to learn it instead.")
        elif knob.audible is not None:
            span = f"{format_value(knob, knob.audible[0])} to {format_value(knob, knob.audible[1])}"
            _say(console, f"The device is silent with knob {knob.name!r} outside {span} (at the other "
                 f"controls' defaults): plans record it only there (its 'audible' line in {path}).")


def screened(console: Console, outcome: Any, directory: Path, device: str | None, probe_input: str,
             probe_plan: str) -> None:
    """A screening step: what was written and recorded, then what to record or the measured warps."""
    probes = outcome.probes
    folder = probes.folder
    for knob in probes.controls.knobs:
        if not screenable(knob):
            _say(console, f"[dim]note: knob {knob.name!r} has a log taper and is not screened: a warp is "
                 "linear in the knob's value and would lose its low decades.[/]")
    written = [name for name, did in ((f"{probe_input} (+ its segment map input.json)", probes.wrote_input),
                                      (probe_plan, probes.wrote_plan)) if did]
    if written:
        _say(console, f"Wrote {' and '.join(written)} in {folder}.")
    if outcome.recorded_now:
        _say(console, f"Recorded {len(outcome.recorded_now)} probe(s) through the virtual {device} in "
             f"{folder}.")
    if outcome.measurement is None:
        seconds = probes.signal.map.length / probes.signal.sample_rate
        console.print(probe_table(probes.probes, f"{len(probes.probes)} probes ({probe_plan}), in recording "
                                                 "order"))
        knobs = len({p.knob for p in probes.probes})
        far = sum(p.far for p in probes.probes)
        tests = (f", then {far} with the other controls at their far ends, which tell whether a knob only "
                 f"sets the output level" if far else "")
        _say(console, f"Record: play {folder / probe_input} ({seconds:.1f} s) through the device at each "
             f"row's setting of {folder / probe_plan}, in order ({knobs} knob(s) x {probes.levels} turns, "
             f"one knob at a time, the others at their defaults{tests}), and save each recording as "
             f"{folder}/probe01.wav, probe02.wav, ... (mono, {probes.signal.sample_rate} Hz, from the very "
             f"start of the file to a second after it ends). Keep the interface gain and the device's "
             f"level the same for every probe.")
        _say(console, f"Recording time: {probes.time().describe()}.")
        _say(console, f"Then run [bold]knobcap screen {directory}[/] again to measure the warps (or, with a "
             f"virtual device: knobcap screen {directory} --device ts808).")
        return
    for warning in outcome.measurement.warnings:
        _say(console, f"[yellow]warn[/] {warning}")
    console.print(warp_table(outcome.controls, f"Screened {len(probes.probes)} probes: u at each quarter "
                                               "turn"))
    if outcome.controls is not None:
        _screened_knobs(console, outcome.controls, probes.controls_path)
    if outcome.wrote_controls:
        lines = "'warp = [...]' line in each knob's table" + (
            ", 'gain_db = [...]' in each output-gain knob's" if outcome.measurement.gains else "") + (
            ", 'audible = [...]' in each knob silent at an end" if outcome.measurement.audible else "")
        _say(console, f"Wrote the warps into {probes.controls_path} (a {lines}; the rest of the file is as "
             "it was).")
    else:
        _say(console, f"{probes.controls_path} already holds these warps; nothing rewritten.")
    for note in outcome.notes:
        _say(console, f"[yellow]note[/] {note}")
    if not outcome.notes and not (directory / PLAN_FILE).is_file():
        _say(console, f"Next: [bold]knobcap plan {directory}[/] (the design spreads the settings by measured "
             "sound change).")


def planned(console: Console, result: Any, controls: Controls, directory: Path) -> None:
    console.print(plan_table(controls, result.takes, f"Plan for {controls.name or directory}"))
    counts = {r: sum(t.role == r for t in result.takes) for r in ("train", "anchor", "holdout")}
    _say(console, f"{counts['train']} space-filling, {counts['anchor']} anchor (knob ends) and "
         f"{counts['holdout']} held-out settings (never trained on).")
    if result.design:
        _say(console, result.design)
    _say(console, f"Session time: {result.time.describe()}.")
    _say(console, f"[dim]Assumed: {result.costs.describe()}.[/]")
    written = [name for name, did in (("plan.csv", result.wrote_plan), ("input.wav", result.wrote_input))
               if did]
    _say(console, (f"Wrote {' and '.join(written)} in {directory}." if written else
                   f"{directory / 'plan.csv'} and input.wav are unchanged.")
         + (f" {result.recorded} take(s) already recorded." if result.recorded else ""))
    reamp = (f"knobcap reamp {directory}, through {escape(controls.device)}" if controls.device else
             f"knobcap reamp {directory} --device ts808")
    _say(console, f"Next: play input.wav through the device at each setting, in order, and save "
         f"{directory / 'takes'}/<take>.wav (or: {reamp}).")


def refined(console: Console, result: Any, controls: Controls, directory: Path) -> None:
    """What ``knobcap plan --more`` appended."""
    console.print(plan_table(controls, result.added, f"Added to the plan of {controls.name or directory}"))
    names = [t.take for t in result.added]
    _say(console, f"{len(names)} more take(s), {names[0]} to {names[-1]}, where the model of run "
         f"{result.run} is least trustworthy (its take errors from {result.source}, times the distance "
         "to the planned settings).")
    _say(console, f"Added session time: {result.time.describe()}, from the last planned setting.")
    _say(console, f"Next: record them (or: knobcap reamp {directory} --device ts808), then knobcap check "
         f"{directory} and knobcap train {directory}.")


def nothing_to_reamp(console: Console, session: Any) -> None:
    _say(console, f"All {len(session.plan())} takes are already recorded in {session.takes_dir}; nothing to "
         "do (knobcap never overwrites a take).")


def reamped(console: Console, session: Any, done: list[Any], directory: Path, invert_polarity: bool) -> None:
    rate = session.input().sample_rate
    if done:
        lat = [1000.0 * d.latency / rate for d in done]
        _say(console, f"Recorded {len(done)} take(s) in {session.takes_dir} (latency {min(lat):.1f} to "
             f"{max(lat):.1f} ms, polarity {'inverted' if invert_polarity else 'normal'}). "
             f"Next: knobcap check {directory}")


def checked(console: Console, err_console: Console, report: Any, check_path: Path, directory: Path) -> bool:
    """The check table, each problem, and the verdict (on stderr when a take fails); True if it passed."""
    console.print(check_table(report, f"knobcap check {directory}"))
    for line in check_problems(report):
        _say(console, line)
    polarity = getattr(report, "polarity", None) or {}
    if polarity.get("value") in (1, -1):
        word = "inverting" if polarity["value"] == -1 else "normal"
        _say(console, f"device polarity: {word} ({polarity['source']}); models keep it.")
    failed = sum(t.status == "fail" for t in report.takes)
    summary = f"{len(report.takes) - failed} of {len(report.takes)} takes pass; wrote {check_path}."
    if not report.ok:
        _say(err_console, f"[bold red]check failed:[/] {summary} Fix the takes above and run 'knobcap check "
             f"{directory}' again.")
        return False
    _say(console, f"[green]check passed:[/] {summary} Next: knobcap train {directory}")
    return True


def trained(console: Console, result: Any) -> None:
    if result.heldout_esr:
        console.print(esr_table(result.heldout_esr, "held-out settings (never trained on)"))
    validation = list(result.validation_esr.values())
    if validation:
        console.print(f"validation (held-out time of the trained settings): mean ESR "
                      f"{sum(validation) / len(validation):.4f}")
    console.print(f"{result.epochs} epochs (best {result.best_epoch}) in {result.minutes:.1f} min; "
                  f"model: [bold]{result.model_path}[/]")


def evaluated(console: Console, doc: Mapping[str, Any], run: Path) -> None:
    """The held-out settings, the worst of the dense grid, the summary and where metrics.json is."""
    console.print(rows_table(doc, "heldout_settings", "held-out settings (never trained on)"))
    if "grid" in doc:
        console.print(rows_table(doc, "grid", "dense grid: worst settings", limit=8))
    console.print(summary_table(doc))
    if isinstance(doc.get("device_delay"), dict) and doc["device_delay"].get("note"):
        _say(console, str(doc["device_delay"]["note"]))
    for line in doc.get("warnings") or []:
        console.print(f"[bold red]warning:[/] {escape(str(line))}", highlight=False)
    _say(console, f"metrics: {Run(run).metrics_path}")


def rendered(console: Console, output: Path, result: Any) -> None:
    console.print(f"Wrote {output} ({result.seconds:.2f} s, {result.channels} channel(s), peak "
                  f"{result.peak:.3f}).")
    console.print(f"CPU cost: {result.cores:.4f} cores (CPU seconds per second of audio per channel, block "
                  f"{result.block_size}, this machine).")


def imported(console: Console, result: Any) -> None:
    """What ``knobcap import`` made: controls (given or inferred), takes, rate, clips, next step."""
    controls = result.controls
    described = ", ".join(
        [f"{k.name} (knob {k.min:g}..{k.max:g})" for k in controls.knobs]
        + [f"{s.name} (switch: {'/'.join(s.positions)})" for s in controls.switches])
    source = "inferred from the takes' values" if result.controls_source == "inferred" else "given"
    _say(console, f"controls {source}: {described}")
    roles = {r: sum(t.role == r for t in result.takes) for r in ("train", "anchor", "holdout")}
    counts = ", ".join(f"{n} {r}" for r, n in roles.items() if n)
    _say(console, f"{len(result.takes)} takes ({counts}), {len(result.inputs)} input file(s), at "
         f"{result.sample_rate} Hz" + (f" (resampled once from {', '.join(map(str, result.resampled_from))}"
                                      " Hz, polyphase Kaiser filter)" if result.resampled_from else
                                      " (the recordings' own rate, not resampled)"))
    clips = f"{result.clips} clips; " if result.clips else ""
    _say(console, f"{clips}held-out time: the last {result.holdout_seconds:.2f} s of each input.")
    _say(console, f"[green]imported:[/] {result.root} (files copied; the originals are untouched). "
         f"Next: knobcap check {result.root}")
