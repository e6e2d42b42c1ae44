"""The capture verbs: signal, init, screen, plan, reamp, check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from knobcap.cli.base import app, console, err_console, fail, lazy

show = lazy("knobcap.console")
controls_lib = lazy("knobcap.controls")
testsignal = lazy("knobcap.capture.testsignal")
sessions = lazy("knobcap.capture.session")
screening = lazy("knobcap.capture.screening")
probing = lazy("knobcap.capture.screen_session")
reamping = lazy("knobcap.capture.reamp")
checking = lazy("knobcap.capture.check")
refining = lazy("knobcap.training.refine")
options = lazy("knobcap.capture.options")
session_devices = lazy("knobcap.capture.session_device")


@app.command()
def signal(
    out: Annotated[Path, typer.Argument(help="WAV file to write (refused if it exists).")],
    seconds: Annotated[float, typer.Option(help="Length in seconds (about 30 to 180).")] = 90.0,
) -> None:
    """Write knobcap's test signal (48 kHz reamp file) and its segment map beside it."""
    try:
        generated = testsignal.generate_signal(seconds)
        wav, js = testsignal.write_signal(out, generated)
    except (testsignal.SignalError, OSError) as error:
        fail(str(error))
    show.signal_written(console, generated, wav, js)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Session folder to create.")],
    device: Annotated[str | None, typer.Option(help="Copy a device's controls (and screen its knobs): "
                                                     "ts808, or lv2:<plugin URI>.")] = None,
    no_screen: Annotated[bool, typer.Option("--no-screen", help="With --device: do not screen the knobs "
                                            "(no warp lines; each knob keeps its taper).")] = False,
    controls_: Annotated[str | None, typer.Option("--controls", help="With --device lv2:URI: the controls "
                                                  "to capture, e.g. drive,tone (default: all).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="With --device lv2:URI: hold a control "
                                                   "not captured at a value, e.g. --set level=0.5.")] = None,
) -> None:
    """Create a session folder with a commented controls.toml template (or a device's controls)."""
    controls = None
    try:
        if device is None and (controls_ is not None or set_):
            raise ValueError("--controls and --set choose an LV2 plugin's controls; add --device lv2:<URI>.")
        if device is not None:
            virtual = session_devices.device_from_options(device, controls_, set_ or [])
            sessions.check_new_session(directory)
            with show.progress_bar(console) as update:
                controls = session_devices.init_controls(
                    virtual, screen=not no_screen,
                    progress=lambda knob, i, n: update(f"screening {device}", i, n))
        path = sessions.init_session(directory, controls, device)
    except ValueError as error:
        fail(str(error))
    show.session_created(console, path, directory, device, controls)


@app.command()
def screen(
    directory: Annotated[Path, typer.Argument(help="Session folder (made by knobcap init).")],
    levels: Annotated[int | None, typer.Option(help="Probes per knob, equally spaced over its turn "
                                               "(default 11, or as in an existing screen/plan.csv).")] = None,
    device: Annotated[str | None, typer.Option(help="Record the probes through this device (ts808, "
                                               "lv2:<URI>; default: the one controls.toml names).")] = None,
    seed: Annotated[int, typer.Option(help="With --device: seed of the latencies and noise floors.")] = 0,
) -> None:
    """Screen the knobs: record a short probe at a few turns of each knob, and write the measured warps
    (where each knob changes the sound) into controls.toml. Run it before 'knobcap plan'."""
    try:
        device = device or session_devices.named_device(directory)
        virtual = session_devices.open_device(device, controls_lib.load_controls(
            directory / controls_lib.CONTROLS_FILE)) if device is not None else None
        with show.progress_bar(console) as update:
            outcome = probing.screen_session(directory, levels=levels, device=virtual, seed=seed,
                                             progress=update)
    except ValueError as error:
        fail(str(error))
    show.screened(console, outcome, directory, device, probing.PROBE_INPUT, probing.PROBE_PLAN)


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
    method: Annotated[str, typer.Option(help="The design: auto (chosen by the number of takes), "
                                        "coverage (every knob's ends and corners in every switch "
                                        "combination) or lhs (a sliced Latin hypercube).")] = "auto",
    more: Annotated[int | None, typer.Option(help="After a first model: append this many settings "
                                             "where it is least trustworthy.")] = None,
    run: Annotated[str | None, typer.Option(help="With --more: the run to refine from (default: the "
                                            "newest).")] = None,
) -> None:
    """Choose the settings to record, order them, write input.wav and plan.csv."""
    if more is not None or run is not None:
        try:
            if more is None:
                raise ValueError("--run picks the model for --more; add --more N.")
            added = refining.plan_more(directory, more, seed=seed, run=run)
        except ValueError as error:
            fail(str(error))
        show.refined(console, added, sessions.Session.open(directory).controls, directory)
        return
    try:
        result = sessions.make_plan(directory, n=n, minutes=minutes, seconds=seconds, seed=seed,
                                    input_file=input, quick=quick, method=method)
    except ValueError as error:
        fail(str(error))
    controls = controls_lib.load_controls(directory / controls_lib.CONTROLS_FILE)
    show.planned(console, result, controls, directory)


@app.command()
def reamp(
    directory: Annotated[Path, typer.Argument(help="Session folder.")],
    device: Annotated[str | None, typer.Option(help="Device to record through: ts808, lv2:<URI> "
                                               "(default: the one controls.toml names, else ts808).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latencies and noise floors.")] = 0,
    invert_polarity: Annotated[bool, typer.Option(help="Record with the polarity inverted, as a "
                                                   "miswired interface would.")] = False,
    pcm24: Annotated[bool, typer.Option(help="Write 24-bit PCM instead of 32-bit float.")] = False,
) -> None:
    """Record every planned take through a virtual device."""
    try:
        session = sessions.Session.open(directory)
        device = device or session.controls.device or "ts808"
        virtual = session_devices.open_device(device, session.controls)
        missing = len(session.missing_takes())
    except ValueError as error:
        fail(str(error))
    if missing == 0:
        show.nothing_to_reamp(console, session)
        return
    with show.counting(console, f"reamp through {device}", missing, done="done") as step:
        try:
            done = reamping.reamp_session(session, virtual, seed=seed, invert_polarity=invert_polarity,
                                          subtype="PCM_24" if pcm24 else "FLOAT",
                                          progress=lambda row, i, n: step(i, f"{row.take} ({row.role})"))
        except ValueError as error:
            fail(str(error))
    show.reamped(console, session, done, directory, invert_polarity)


@app.command()
def check(
    directory: Annotated[Path, typer.Argument(help="Session folder.")],
    accept: Annotated[list[str] | None, typer.Option(help="Accept a finding for a take, e.g. "
                                                     "clipped:take03 (kept in session.json).")] = None,
    polarity: Annotated[str | None, typer.Option(help="Declare the device's polarity: inverting, "
                                                 "normal, or measured (the default).")] = None,
) -> None:
    """Check every take: latency, rate, length, clipping, silence, noise floor and drift."""
    try:
        session = sessions.Session.open(directory)
        takes = [row.take for row in session.plan()]
        options.update_options(directory, options.parse_accept(accept or [], takes),
                               options.parse_polarity(polarity))
        count = len(session.plan())
        with show.counting(console, "check", count, remaining=False, transient=True) as step:
            report = checking.check_session(session, progress=lambda take, i, n: step(i, f"check {take}"))
    except ValueError as error:
        fail(str(error))
    if not show.checked(console, err_console, report, session.check_path, directory):
        raise typer.Exit(1)
