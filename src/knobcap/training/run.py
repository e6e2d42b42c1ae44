"""The run folder ``SESSION/runs/<run>/``: every file name in it and their readers, in one place.

    model.knobcap   the model (:mod:`knobcap.models.modelfile`), rewritten each epoch from the best weights
    config.json     the :class:`knobcap.training.config.TrainConfig` of the run
    train_log.csv   one row an epoch: minutes, lr, losses and the ESR of every take
    summary.json    training's final figures (epochs, best epoch, ESRs, parameters)
    checkpoints/    Lightning's ``last.ckpt`` and the best epoch (knobcap's own files, for ``--resume``)
    train.lock      held (flock) by the trainer while it trains; holds its pid
    metrics.json    the evaluation (``knobcap eval``)
    cache/          device renders kept by the evaluation
    report.html     the report (``knobcap report``)

Torch-free: the evaluation, the report and the demo read a run without importing torch.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from knobcap.capture.session import RUNS_DIR
from knobcap.fileio import write_text_atomic
from knobcap.models.modelfile import ModelFile, load_model_file


class RunError(ValueError):
    """A file of a run folder cannot be read; ``path`` names it and ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_name(name: str) -> str:
    """``name`` when it is a plain folder name (letters, digits, ``.``, ``_``, ``-``; no path separator,
    no ``..``), else a :class:`ValueError` that says so: a run stays inside ``DIR/runs``."""
    if not _RUN_NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"--run {name!r}: a run name is a plain folder name inside DIR/runs (letters, "
                         "digits, '.', '_' or '-'; no '/' or '..'); choose a name such as 'big-wavenet'.")
    return name


class Run:
    """One run folder: the paths of its files and their readers (nothing is read on construction)."""

    MODEL = "model.knobcap"
    CONFIG = "config.json"
    LOG = "train_log.csv"
    SUMMARY = "summary.json"
    METRICS = "metrics.json"
    REPORT = "report.html"
    CHECKPOINTS = "checkpoints"
    LAST_CHECKPOINT = "last.ckpt"
    LOCK = "train.lock"
    CACHE = "cache"
    HISTORY_FILES = (LOG, "history.csv", "history.json", "train_history.json")
    """Where a training history may be, first found first (knobcap writes the first)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @staticmethod
    def runs_dir(session_dir: str | Path) -> Path:
        """The folder of a session's runs: ``SESSION/runs``."""
        return Path(session_dir) / RUNS_DIR

    @classmethod
    def in_session(cls, session_dir: str | Path, name: str) -> Run:
        """The run ``name`` of a session: ``SESSION/runs/<name>`` (a plain folder name, see
        :func:`check_run_name`)."""
        return cls(cls.runs_dir(session_dir) / check_run_name(name))

    @classmethod
    def find(cls, session_dir: str | Path, run: str | Path) -> Run:
        """``run`` as an existing folder, else as the name of a run of the session."""
        return cls(run) if Path(run).is_dir() else cls.in_session(session_dir, str(run))

    @property
    def name(self) -> str:
        return self.path.name

    # ---- paths
    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def report_path(self) -> Path:
        return self.path / self.REPORT

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / self.LAST_CHECKPOINT

    @property
    def lock_path(self) -> Path:
        return self.path / self.LOCK

    @property
    def cache_dir(self) -> Path:
        return self.path / self.CACHE

    def history_paths(self) -> list[Path]:
        """The candidate training-history files, in the order they are looked for."""
        return [self.path / name for name in self.HISTORY_FILES]

    def is_trained(self) -> bool:
        """Training finished: the summary and the model file are both there."""
        return self.summary_path.is_file() and self.model_path.is_file()

    # ---- readers
    def read_json(self, path: Path) -> Any:
        """The JSON value in ``path`` (a file of this run); ``None`` when it is missing.

        Raises :class:`RunError` when the file cannot be read or parsed.
        """
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise RunError(path, f"not valid JSON ({error})") from None

    def read_config(self) -> Any:
        """``config.json`` as parsed (``None`` when missing)."""
        return self.read_json(self.config_path)

    def read_summary(self) -> Any:
        """``summary.json`` as parsed (``None`` when missing)."""
        return self.read_json(self.summary_path)

    def read_metrics(self) -> Any:
        """``metrics.json`` as parsed (``None`` when missing)."""
        return self.read_json(self.metrics_path)

    def read_model(self) -> ModelFile:
        """The checked model file (raises :class:`knobcap.models.modelfile.ModelFileError`)."""
        return load_model_file(self.model_path)

    def read_log(self) -> list[dict[str, str]]:
        """The rows of ``train_log.csv`` as strings ([] when there is none)."""
        if not self.log_path.is_file():
            return []
        with self.log_path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def write_log(self, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
        """Replace ``train_log.csv`` with ``rows`` (missing cells empty), atomically."""
        lines = [",".join(columns)]
        lines += [",".join(str(r.get(c, "")) for c in columns) for r in rows]
        return write_text_atomic(self.log_path, "\n".join(lines) + "\n")

    def session_candidates(self, config: Mapping[str, Any] | None = None) -> list[Path]:
        """Where the run's session folder may be, in order: ``config``'s ``"session"`` entry (relative to
        the run folder or absolute) when it has one, then the folder two levels up (``DIR/runs/<run>``)."""
        out = []
        if config is not None and isinstance(config.get("session"), str):
            given = Path(config["session"])
            out.append(given if given.is_absolute() else (self.path / given).resolve())
        out.append(self.path.resolve().parent.parent)
        return out

    def session_dir(self) -> Path:
        """The session folder: ``config.json``'s ``"session"`` if set, else two levels up (not checked).

        Raises :class:`RunError` when ``config.json`` is unreadable.
        """
        config = self.read_config()
        return self.session_candidates(config if isinstance(config, dict) else None)[0]
