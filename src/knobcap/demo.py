"""``knobcap demo``: capture a device end to end, in one command: the built-in virtual TS808 by default,
or an LV2 plugin (``--device lv2:URI``).

init -> plan -> reamp (the device) -> check -> train -> eval -> report, each step with progress, in a demo
folder that is marked as such (``.knobcap-demo``) so that a rerun resumes it and a user's own folder is
never touched. Sizes are chosen to finish in about 15 minutes on a 2-core CPU (``--quick``: under 2).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from knobcap.fileio import write_json_atomic, write_text_atomic
from knobcap.training.run import Run

if TYPE_CHECKING:
    from knobcap.capture.check import CheckReport
    from knobcap.capture.session import Session

MARKER = ".knobcap-demo"
DEVICE = "ts808"
RUN_NAME = "demo"
FIRST_RUN = "first-model"  # with refinement: the model that 'plan --more' refines from
#: marker keys added after demo folders existed; an older marker without them means these values
_ADDED_KEYS = {"refine_takes": 0, "refine_share": 0.4}


class DemoError(ValueError):
    """The demo cannot run as asked; the message says what to do."""


@dataclass(frozen=True)
class DemoConfig:
    """The sizes of a demo capture (a full one fits 15 minutes on 2 CPU cores).

    ``takes``: planned takes in all (``None``: the design's default size); ``training``: fields of
    :class:`knobcap.training.config.TrainConfig` (``max_minutes`` bounds the training time on any machine).
    The full demo trains on the machine's cores (``threads`` unset: up to 8): the WaveNet's numba
    kernel splits each batch over them and torch's remaining ops run on one (issue 13, 2-core CPU,
    default model: about 28 steps/s on 2 threads against 18 on 1). The quick one keeps one thread.

    ``refine_takes`` > 0: one ``plan --more`` round within the same takes and training budget. The plan
    starts with ``takes - refine_takes`` takes; a first model trains for ``refine_share`` of the budget
    (``max_minutes`` and ``epochs``); ``plan --more refine_takes`` adds takes where it is least
    trustworthy; they are recorded and checked; the final model starts from the first one's weights
    and trains for the rest of the budget, its learning rate starting where one schedule over the
    whole budget would be at that point (:func:`knobcap.training.schedule.continued_lr`).
    """

    signal_seconds: float = 60.0
    takes: int | None = None
    training: dict[str, object] = field(default_factory=lambda: {
        "epochs": 60, "steps_per_epoch": 250, "batch_size": 8, "segment_length": 4096, "threads": None,
        "max_minutes": 8.0, "val_max_seconds": 2.0})
    grid: int = 4
    di_settings: int = 4
    di_seconds: float | None = None
    di: str | None = None  # a DI WAV or folder for the evaluation (None: the bundled clip)
    seed: int = 0
    device: str = DEVICE  # the device captured: "ts808" or "lv2:<plugin URI>" (all its controls)
    refine_takes: int = 0  # takes added by one 'plan --more' round (0: no refinement)
    refine_share: float = 0.4  # of the training budget, for the first model

    @classmethod
    def full(cls, seed: int = 0) -> DemoConfig:
        return cls(seed=seed)

    @classmethod
    def quick(cls, seed: int = 0) -> DemoConfig:
        return cls(signal_seconds=30.0, takes=8, training={
            "epochs": 20, "steps_per_epoch": 40, "batch_size": 8, "segment_length": 4096, "threads": 1,
            "max_minutes": 0.3, "val_max_seconds": 1.0}, grid=2, di_settings=1, di_seconds=4.0, seed=seed)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def for_device(self, device: str) -> DemoConfig:
        """These sizes, capturing ``device`` (``"ts808"`` or ``"lv2:<URI>"``)."""
        return DemoConfig(**{**asdict(self), "device": device})

    def with_refinement(self, takes: int) -> DemoConfig:
        """These sizes with one ``plan --more`` round of ``takes`` takes (0: none)."""
        if isinstance(takes, bool) or not isinstance(takes, int) or takes < 0:
            raise DemoError(f"--refine {takes!r}: give a number of takes >= 0 (0: no refinement round).")
        return replace(self, refine_takes=takes)


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
        if isinstance(earlier, dict):
            earlier = {**_ADDED_KEYS, **earlier}
        if earlier != config.to_dict():
            raise DemoError(
                f"{directory} holds a knobcap demo made with other sizes (another --quick, --seed or "
                "--refine); "
                "remove the folder or choose another one.")
        return True
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise DemoError(
            f"{directory} exists and is not a knobcap demo folder; the demo never writes into other "
            "folders. Choose a new folder (e.g. 'knobcap demo ./knobcap-demo').")
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, config.to_dict())
    return False


# ------------------------------------------------------------------------------------------ the run
@dataclass
class DemoResult:
    """Where the demo put its model and metrics, and the metrics themselves."""

    directory: Path
    run_dir: Path
    model_path: Path
    metrics_path: Path
    metrics: dict[str, object]
    resumed: bool
    report_path: Path | None = None
    refinement: str | None = None  # what the 'plan --more' round did, in words


Say = Callable[[str], None]


def run_demo(directory: str | Path, config: DemoConfig, console: Console | None = None) -> DemoResult:
    """init -> plan -> reamp (virtual TS808) -> check -> train -> eval -> report in ``directory``.

    Steps already done in an earlier run of the same demo are skipped (a model that finished training
    is reused; an interrupted training resumes from its last checkpoint).
    """
    from knobcap.capture.check import check_session
    from knobcap.capture.reamp import reamp_session
    from knobcap.capture.session import Session, init_session, make_plan
    from knobcap.capture.session_device import init_controls, new_device
    from knobcap.evaluation.evaluate import evaluate_run

    console = console or Console()
    directory = Path(directory)
    resumed = prepare_folder(directory, config)

    def step(number: int, text: str) -> None:
        console.print(f"[bold cyan][{number}/7][/] {text}", highlight=False)

    if resumed:
        console.print(f"Resuming the demo in {directory}.", highlight=False)
    name = config.device
    device = new_device(name)
    step(1, f"init: a session for {device.controls.name or name}, its knobs screened (its own delay "
            "measured and removed)")
    if not (directory / "controls.toml").is_file():
        with progress_bar(console) as update:
            controls = init_controls(device, progress=lambda knob, i, n: update("screen", i, n))
        init_session(directory, controls, name)

    step(2, "plan: settings by experimental design, and the test signal")
    total = planned_takes(directory, config)
    first_n = total - config.refine_takes if config.refine_takes else config.takes
    plan = make_plan(directory, n=first_n, seconds=config.signal_seconds, seed=config.seed)
    roles = {r: sum(t.role == r for t in plan.takes) for r in ("train", "anchor", "holdout")}
    console.print(f"      {len(plan.takes)} takes of {plan.signal_seconds:.0f} s: {roles['train']} "
                  f"space-filling, {roles['anchor']} anchors, {roles['holdout']} held out", highlight=False)

    def record() -> None:
        """reamp (steps 3) and check (4) every take of the plan not recorded yet."""
        session = Session.open(directory)
        missing = len(session.missing_takes())
        step(3, f"reamp: {missing} take(s) through {name}" if missing else
             "reamp: every take is recorded already")
        if missing:
            with progress_bar(console) as update:
                reamp_session(session, device, seed=config.seed,
                              progress=lambda row, i, n: update("reamp", i, n))
                update("reamp", missing, missing)
        step(4, "check: latency, levels, noise and drift of every take")
        with progress_bar(console) as update:
            report = check_session(session, progress=lambda take, i, n: update("check", i + 1, n))
        silent = drop_silent_takes(Session.open(directory), report)
        if silent:
            console.print(f"      {name} makes no sound at the setting of {', '.join(silent)}: left out of "
                          f"plan.csv (recordings moved to {directory / SILENT_DIR})", highlight=False)
            with progress_bar(console) as update:
                report = check_session(Session.open(directory),
                                       progress=lambda take, i, n: update("check", i + 1, n))
        if not report.ok:
            failed = [f"{t.take}: {p.message}" for t in report.takes for p in t.problems
                      if p.severity == "fail"]
            failed += [p.message for p in report.problems if p.severity == "fail"]
            raise DemoError("the check failed, so the demo cannot train (details in "
                            f"{directory / 'check.json'}):\n  " + "\n  ".join(failed))

    record()
    refinement = None
    if config.refine_takes:
        run_dir, refinement = refine_step(directory, config, total, lambda text: step(5, text), record)
    else:
        run_dir = train_step(directory, config, lambda text: step(5, text))

    step(6, "eval: held-out settings, a dense grid of the control space and real DI guitar")
    with progress_bar(console) as update:
        metrics = evaluate_run(run_dir, device=name, grid=config.grid, di=config.di,
                               di_settings=config.di_settings, di_seconds=config.di_seconds,
                               seed=config.seed, progress=update)

    step(7, "report: ESR map, settings table, curves and listening examples in one HTML page")
    from knobcap.evaluation.report import write_report

    report_path = write_report(run_dir)
    run = Run(run_dir)
    return DemoResult(directory, run_dir, run.model_path, run.metrics_path, metrics, resumed, report_path,
                      refinement)


SILENT_DIR = "takes-silent"


def drop_silent_takes(session: Session, report: CheckReport) -> list[str]:
    """The demo's takes in which the virtual device made no sound (the check's ``silent`` or ``dead``,
    and nothing else wrong but what silence brings: an amp's tone controls all at 0 can do that): their
    rows leave plan.csv and their recordings move to ``SILENT_DIR`` (a silent take teaches a model
    nothing, and training refuses a failed take). A real device's silent take is the user's to judge."""
    from knobcap.capture.check import only_silence
    from knobcap.capture.session import plan_csv_text

    quiet = [take.take for take in report.takes
             if only_silence({p.code for p in take.problems if p.severity == "fail"})]
    if not quiet:
        return []
    kept = [row for row in session.plan() if row.take not in quiet]
    write_text_atomic(session.plan_path, plan_csv_text(session.controls, kept))
    folder = session.root / SILENT_DIR
    folder.mkdir(exist_ok=True)
    for take in quiet:
        if session.take_path(take).is_file() and not (folder / f"{take}.wav").exists():
            session.take_path(take).rename(folder / f"{take}.wav")
    return quiet


def planned_takes(directory: Path, config: DemoConfig) -> int | None:
    """The takes of the whole demo: ``config.takes``, else (with refinement) the design's default size."""
    if config.takes is not None or not config.refine_takes:
        return config.takes
    from knobcap.capture.design import default_size
    from knobcap.controls import CONTROLS_FILE, load_controls

    return default_size(load_controls(directory / CONTROLS_FILE)).total


def refine_step(directory: Path, config: DemoConfig, total: int | None, say: Say,
                record: Callable[[], None]) -> tuple[Path, str]:
    """A first model, ``plan --more``, reamp and check of the added takes, and the final model that
    continues from the first one; each part is reused when an earlier run of the demo did it."""
    from knobcap.capture.session import Session
    from knobcap.training.config import TrainConfig
    from knobcap.training.refine import plan_more
    from knobcap.training.schedule import continued_lr

    training = dict(config.training)
    base = TrainConfig.from_dict(training, "demo training")  # the fields the demo leaves at their defaults
    epochs, minutes = base.epochs, base.max_minutes
    first_epochs = max(1, round(config.refine_share * epochs))
    first_training = {**training, "epochs": first_epochs}
    rest_training = {**training, "epochs": max(1, epochs - first_epochs)}
    if isinstance(minutes, int | float):
        first_training["max_minutes"] = config.refine_share * minutes
        rest_training["max_minutes"] = minutes - first_training["max_minutes"]
    first = train_step(directory, replace(config, training=first_training), say, name=FIRST_RUN,
                       what="train: a first model, to find where it is weakest")
    plan = Session.open(directory).plan()
    added = [row.take for row in plan[len(plan) - config.refine_takes:]]
    if total is None or len(plan) < total:
        done = plan_more(directory, config.refine_takes, seed=config.seed, run=first.name)
        added = [row.take for row in done.added]
        time = f"; added session time: {done.time.describe()}"
        say(f"refine: 'plan --more {config.refine_takes}' added {added[0]} to {added[-1]} where the first "
            f"model is least trustworthy{time}")
    else:
        time = ""
        say(f"refine: the plan holds its {config.refine_takes} added takes already ({added[0]} to "
            f"{added[-1]})")
    record()
    summary = Run(first).read_summary()
    done_epochs = int(summary.get("epochs", 0)) if isinstance(summary, dict) else 0
    if done_epochs:
        rest_training["lr"] = continued_lr(base, done_epochs, config.refine_share)
    rest_training["init_from"] = str(Run(first).model_path)
    final = train_step(directory, replace(config, training=rest_training), say,
                       what="train: the final model, from the first one's weights, on every take")
    budgets = [f" ({t['max_minutes']:.3g} min)" if isinstance(t.get("max_minutes"), float) else ""
               for t in (first_training, rest_training)]
    words = (f"one 'plan --more {config.refine_takes}' round: {added[0]} to {added[-1]} added{time}; first "
             f"model {first.name}{budgets[0]}, final model from its weights{budgets[1]}")
    return final, words


def train_step(directory: Path, config: DemoConfig, say: Say, name: str = RUN_NAME,
               what: str = "train: one parametric WaveNet for every setting") -> Path:
    """Train the demo's run (``runs/<name>``): reuse a finished one, resume an interrupted one."""
    from knobcap.training.config import TrainConfig
    from knobcap.training.loop import train_session

    runs = Run.runs_dir(directory)
    pattern = re.compile(re.escape(name) + r"(-\d+)?")
    earlier = sorted((p for p in runs.glob(f"{name}*") if p.is_dir() and pattern.fullmatch(p.name)),
                     key=lambda p: p.stat().st_mtime)
    run_dir = earlier[-1] if earlier else runs / name
    if Run(run_dir).is_trained():
        say(f"train: reusing the trained model in {run_dir}")
        return run_dir
    last = Run(run_dir).last_checkpoint
    train_config = TrainConfig.from_dict({**config.training, "seed": config.seed}, "demo settings")
    minutes = train_config.max_minutes
    budget = f" (at most {minutes:g} min)" if minutes else ""
    if last.is_file():
        say(f"train: resuming the interrupted training in {run_dir}{budget}")
        train_session(directory, train_config, run=run_dir.name, resume=True)
        return run_dir
    if run_dir.exists():  # an earlier attempt stopped before its first checkpoint: keep it, start anew
        index = 2
        while (runs / f"{name}-{index}").exists():
            index += 1
        run_dir = runs / f"{name}-{index}"
    say(f"{what}{budget}")
    train_session(directory, train_config, run=run_dir.name)
    return run_dir


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


def print_result(console: Console, result: DemoResult) -> None:
    """The closing lines of the demo: where the model and metrics are, and the held-out ESRs."""
    from knobcap.evaluation.evaluate import rows_table, summary_table

    console.print(rows_table(result.metrics, "heldout_settings", "held-out settings (never trained on)"))
    console.print(summary_table(result.metrics))
    if result.refinement:
        console.print(f"refinement: {result.refinement}", highlight=False)
    console.print(f"model:   [bold]{result.model_path}[/]", highlight=False)
    console.print(f"metrics: [bold]{result.metrics_path}[/]", highlight=False)
    if result.report_path is not None:
        console.print(f"report:  [bold]{result.report_path}[/] (open it in a browser)", highlight=False)
    console.print(f"Next: knobcap play {result.model_path}  |  knobcap render {result.model_path} IN.wav "
                  f"OUT.wav{example_set(result.directory)}", highlight=False)


#: knob names the closing hint turns first, when the device has one
_HINT_KNOBS = ("drive", "gain", "distortion", "fuzz", "overdrive")


def example_set(directory: Path) -> str:
    """`` --set NAME=VALUE`` for the closing hint: a drive-like knob (else the first knob) at 70% of
    its travel, in the device's own units (``drive=7`` on the TS808, ``drive=0.7`` on a 0-1 knob);
    ``""`` when the folder's controls cannot be read or have no knob."""
    from knobcap.controls.dial import format_value
    from knobcap.controls.toml import CONTROLS_FILE, load_controls

    try:
        knobs = load_controls(Path(directory) / CONTROLS_FILE).knobs
    except (OSError, ValueError):
        return ""
    if not knobs:
        return ""
    knob = next((k for name in _HINT_KNOBS for k in knobs if k.name.lower() == name), knobs[0])
    return f" --set {knob.name}={format_value(knob, knob.min + 0.7 * (knob.max - knob.min))}"
