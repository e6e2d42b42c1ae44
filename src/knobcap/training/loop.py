"""Training a parametric model on a session: config, Lightning module, run folder, resume, predict.

A run folder ``runs/<name>/`` holds ``config.json`` (the :class:`TrainConfig`), ``checkpoints/``
(Lightning ``last.ckpt`` every epoch and the best one: our own files, for ``--resume``),
``train_log.csv`` (one row an epoch: losses and ESR per take), ``model.knobcap`` (the user-facing
model, rewritten each epoch from the best weights so far) and ``summary.json``.

Recipe: batches of random windows from random training takes (settings mix in every batch); loss
= ESR with pre-emphasis + a small multi-resolution STFT term (both optional); Adam with a short warm-up
and an exponential decay per epoch, or a cosine decay to ``lr_final * lr`` over the training budget
(the epochs, or ``max_minutes`` of wall time if that ends first). With ``ema_decay`` (default) an
exponential moving average of the weights is what is validated, selected and saved.

**Model selection** uses held-out *time* (the ``validation_2`` segment of every training take), never
the held-out *settings*: those are reported each epoch and at the end (over the whole signal), but
choosing the epoch on them would leak them into the model, and the headline figure would no longer be
honest.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from knobcap import __version__
from knobcap.controls import Controls
from knobcap.fileio import write_json_atomic, write_text_atomic
from knobcap.models.architectures import default_config
from knobcap.models.base import ParametricModel, create_model
from knobcap.models.modelfile import ModelFile, save_model_file
from knobcap.training.data import TrainingData, TrainingDataError, WindowDataset, validation_items
from knobcap.training.losses import TrainingLoss

MODEL_FILE = "model.knobcap"
CONFIG_FILE = "config.json"
LOG_FILE = "train_log.csv"
SUMMARY_FILE = "summary.json"
LAST_CHECKPOINT = "last.ckpt"
LR_SCHEDULES = ("exponential", "cosine")
_HARMLESS_WARNINGS = (".*LeafSpec.*", ".*Checkpoint directory .* exists and is not empty.*",
                      ".*does not have many workers.*")


class TrainingError(ValueError):
    """Training cannot start or resume; the message says what to do."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-able through :meth:`to_dict`)."""

    architecture: str = "wavenet"
    model: dict[str, Any] = field(default_factory=dict)  # architecture config; {} = the default
    seed: int = 0
    epochs: int = 100
    steps_per_epoch: int = 100  # validation (every epoch) then costs about a tenth of the time
    batch_size: int = 8
    segment_length: int = 4096  # scored samples per window (the receptive field comes on top)
    recurrent_warmup: int = 2048  # unscored leading samples for a recurrent model
    lr: float = 6e-3
    lr_decay: float = 0.9  # per epoch (lr_schedule "exponential")
    # "cosine": to lr * lr_final over the epochs or max_minutes. Measured (benchmarks/training_recipe.py,
    # 8 min): cosine + lr 1e-2 + plain ESR halves held-out-time ESR but did not help held-out settings.
    lr_schedule: str = "exponential"
    lr_final: float = 0.05  # the cosine schedule's last lr, as a fraction of lr
    warmup_steps: int = 10
    pre_emphasis: float = 0.85  # as NAM; 0 = plain ESR, the figure evaluation reports
    mrstft_weight: float = 2e-3  # 0: no spectral term (about 15% cheaper a step)
    esr_floor: float = 0.2  # a window's energy counts as at least this fraction of the batch mean
    mrstft_fft_sizes: list[int] = field(default_factory=lambda: [1024, 2048, 512])
    gradient_clip: float | None = 1.0
    # > 0: validate, select and save an exponential moving average of the weights (measured with FiLM
    # and warps: dense-grid median ESR 0.053 -> 0.047; held-out-time ESR stops swinging between epochs)
    ema_decay: float = 0.998
    control_noise: float = 0.0  # std of Gaussian noise added to the setting vector of each training window
    val_max_seconds: float | None = 2.0  # per take and epoch; the final report uses everything
    max_minutes: float | None = None
    threads: int | None = None  # CPU threads; None = min(cores, 8)
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"{source}: unknown training option(s) {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(known))}.")
        config = cls(**dict(data))
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        positive = ("epochs", "steps_per_epoch", "batch_size", "segment_length")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainingError(f"{source}: {name} must be a positive integer, got {value!r}.")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1):
            raise TrainingError(f"{source}: lr must be > 0 and lr_decay in (0, 1].")
        if not 0 <= self.ema_decay < 1 or self.control_noise < 0:
            raise TrainingError(f"{source}: ema_decay must be in [0, 1) and control_noise >= 0, got "
                                f"{self.ema_decay!r} and {self.control_noise!r}.")
        if self.lr_schedule not in LR_SCHEDULES or not 0 <= self.lr_final <= 1:
            raise TrainingError(f"{source}: lr_schedule must be one of {', '.join(LR_SCHEDULES)} and "
                                f"lr_final in [0, 1], got {self.lr_schedule!r} and {self.lr_final!r}.")
        if self.mrstft_weight > 0 and max(self.mrstft_fft_sizes) > self.segment_length:
            raise TrainingError(
                f"{source}: segment_length {self.segment_length} is shorter than the largest STFT "
                f"size {max(self.mrstft_fft_sizes)}; lengthen it or set mrstft_weight to 0.")

    def model_config(self, n_controls: int) -> dict[str, Any]:
        config = dict(self.model) if self.model else default_config(self.architecture, n_controls)
        config["n_controls"] = n_controls
        return config


# ------------------------------------------------------------------------------------ inference
def load_torch_model(model_file: ModelFile) -> ParametricModel:
    """Build the torch model of a loaded model file (architecture + config + numpy weights)."""
    model = create_model(model_file.architecture, model_file.config)
    state = {name: torch.from_numpy(np.array(w, dtype=np.float32)) for name, w in model_file.weights.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise TrainingError(f"the weights do not fit architecture {model_file.architecture!r}: "
                            f"{error}") from None
    return model.eval()


def model_file_from(model: ParametricModel, controls: Controls, sample_rate: int,
                    metadata: Mapping[str, Any] | None = None) -> ModelFile:
    """The :class:`ModelFile` of a torch model (weights copied to float32 numpy)."""
    weights = {k: v.detach().cpu().numpy().astype(np.float32).copy() for k, v in model.state_dict().items()}
    return ModelFile(architecture=model.architecture, config=dict(model.config), controls=controls,
                     sample_rate=int(sample_rate), weights=weights, metadata=dict(metadata or {}))


def predict(model: ParametricModel, audio: np.ndarray, setting_vector: np.ndarray,
            chunk: int = 1 << 17) -> np.ndarray:
    """Run ``model`` over ``audio`` at a setting; the output aligns sample for sample with the input.

    The start is padded with ``receptive_field - 1`` zeros. ``setting_vector`` is ``(C,)`` (held)
    or ``(C, T)`` (automation, one column a sample). A convolutional model runs in chunks that
    overlap by the receptive field (same samples as one pass, less memory).
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono (1-D), got shape {x.shape}.")
    vector = np.asarray(setting_vector, dtype=np.float32)
    rf = model.receptive_field
    padded = np.concatenate([np.zeros(rf - 1, np.float32), x])
    if vector.ndim == 2:
        if vector.shape[1] != len(x):
            raise ValueError(f"automation has {vector.shape[1]} columns but the audio {len(x)} samples.")
        vector = np.concatenate([np.repeat(vector[:, :1], rf - 1, axis=1), vector], axis=1)
    step = len(x) if rf == 1 else max(int(chunk), 1)
    pieces = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for first in range(0, len(x), max(step, 1)):
            part = torch.from_numpy(np.ascontiguousarray(padded[first:first + step + rf - 1]))
            if vector.ndim == 2:
                c = torch.from_numpy(np.ascontiguousarray(vector[:, first:first + step + rf - 1]))[None]
            else:
                c = torch.from_numpy(vector)[None]
            pieces.append(model(part[None], c)[0].numpy())
    model.train(was_training)
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def esr(y_hat: np.ndarray, y: np.ndarray) -> float:
    """``sum((y_hat - y)^2) / sum(y^2)``."""
    y64 = np.asarray(y, dtype=np.float64)
    return float(np.sum((np.asarray(y_hat, dtype=np.float64) - y64) ** 2) / max(np.sum(y64 ** 2), 1e-20))


# ---------------------------------------------------------------------------------- lightning bits
class _ValidationSet(Dataset):
    def __init__(self, data: TrainingData, context: int, items: list[tuple[str, str, int, int]]) -> None:
        self.data, self.context, self.items = data, context, items
        self.index = {t.name: i for i, t in enumerate(data.takes)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        name, _, start, stop = self.items[i]
        take = self.data.takes[self.index[name]]
        x = torch.from_numpy(self.data.x[start - self.context:stop].copy())
        y = torch.from_numpy(take.audio[start:stop].copy())
        return x, y, torch.from_numpy(take.vector.astype(np.float32)), self.index[name]


class ParametricModule(pl.LightningModule):
    """Lightning wrapper: training step, per-take validation, best-weights tracking."""

    def __init__(self, model: ParametricModel, config: TrainConfig, n_takes: int,
                 time_takes: list[int], setting_takes: list[int]) -> None:
        super().__init__()
        self.model = model
        self.cfg = config
        self.ema_model: ParametricModel | None = None
        if config.ema_decay > 0:
            self.ema_model = copy.deepcopy(model)
            self.ema_model.requires_grad_(False)
        self.loss = TrainingLoss(config.pre_emphasis, config.mrstft_weight, config.mrstft_fft_sizes,
                                 config.esr_floor)
        self.n_takes = n_takes
        self.time_takes, self.setting_takes = time_takes, setting_takes
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score = math.inf
        self.best_epoch = -1
        self.elapsed_before = 0.0
        self.fit_started = time.monotonic()
        self.last_esr: np.ndarray = np.full(n_takes, np.nan)
        self.history: list[dict[str, Any]] = []
        self._train_losses: list[float] = []

    # ---- training
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        gamma = self.cfg.lr_decay ** (1.0 / self.cfg.steps_per_epoch)
        warmup = max(self.cfg.warmup_steps, 1)

        def factor(step: int) -> float:
            ramp = min(1.0, (step + 1) / warmup)
            if self.cfg.lr_schedule == "exponential":
                return ramp * gamma ** step
            # cosine: lr_final + (1 - lr_final) (1 + cos(pi p)) / 2, with p the fraction spent of the
            # budget that ends first (the steps of all epochs, or max_minutes of wall time)
            progress = step / (self.cfg.epochs * self.cfg.steps_per_epoch)
            if self.cfg.max_minutes:
                progress = max(progress, self.elapsed_minutes() / self.cfg.max_minutes)
            progress = min(max(progress, 0.0), 1.0)
            final = self.cfg.lr_final
            return ramp * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, WindowDataset):
            dataset.epoch = self.current_epoch
        self._train_losses = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y, c = batch
        if self.cfg.control_noise > 0:
            c = c + self.cfg.control_noise * torch.randn_like(c)
        y_hat = self.model(x, c)[:, -y.shape[-1]:]
        parts = self.loss(y_hat, y)
        self.log("loss", parts["loss"], prog_bar=True, on_step=True, on_epoch=False)
        self._train_losses.append(float(parts["loss"].detach()))
        return parts["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_model is None:
            return
        decay = min(self.cfg.ema_decay, (1.0 + self.global_step) / (10.0 + self.global_step))
        with torch.no_grad():
            for ema, live in zip(self.ema_model.parameters(), self.model.parameters(), strict=True):
                ema.lerp_(live.detach(), 1.0 - decay)

    @property
    def scored_model(self) -> ParametricModel:
        """The weights that are validated and saved: the moving average if there is one."""
        return self.ema_model if self.ema_model is not None else self.model

    # ---- validation
    def on_validation_epoch_start(self) -> None:
        self._err = torch.zeros(self.n_takes, dtype=torch.float64, device=self.device)
        self._energy = torch.zeros(self.n_takes, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y, c, index = batch
        y_hat = self.scored_model(x, c)[:, -y.shape[-1]:]
        for row in range(y.shape[0]):
            k = int(index[row])
            self._err[k] += (y_hat[row].double() - y[row].double()).pow(2).sum()
            self._energy[k] += y[row].double().pow(2).sum()

    def on_validation_epoch_end(self) -> None:
        err = self.trainer.strategy.reduce(self._err, reduce_op="sum")
        energy = self.trainer.strategy.reduce(self._energy, reduce_op="sum")
        ratio = (err / energy.clamp(min=1e-20)).cpu().numpy()
        self.last_esr = ratio
        time_esr = float(np.mean(ratio[self.time_takes]))
        self.log("val_time_esr", time_esr, prog_bar=True, sync_dist=False)
        if self.setting_takes:
            held = ratio[self.setting_takes]
            self.log("val_heldout_median", float(np.median(held)), prog_bar=True, sync_dist=False)
            self.log("val_heldout_max", float(np.max(held)), sync_dist=False)
        if self.trainer.sanity_checking:
            return
        if time_esr < self.best_score:
            self.best_score = time_esr
            self.best_epoch = self.current_epoch
            self.best_state = {k: v.detach().cpu().clone()
                               for k, v in self.scored_model.state_dict().items()}
        train_loss = float(np.mean(self._train_losses)) if self._train_losses else float("nan")
        self.history.append({"epoch": self.current_epoch + 1, "train_loss": train_loss,
                             "val_time_esr": time_esr, "esr": ratio.tolist(),
                             "lr": self.trainer.optimizers[0].param_groups[0]["lr"],
                             "minutes": self.elapsed_minutes()})

    def elapsed_minutes(self) -> float:
        return (self.elapsed_before + time.monotonic() - self.fit_started) / 60.0

    def on_fit_start(self) -> None:
        self.fit_started = time.monotonic()

    # ---- checkpoints carry the best weights and the time spent
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["knobcap"] = {
            "best_state": self.best_state, "best_score": self.best_score, "best_epoch": self.best_epoch,
            "elapsed": self.elapsed_before + time.monotonic() - self.fit_started}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("knobcap", {})
        self.best_state = extra.get("best_state")
        self.best_score = float(extra.get("best_score", math.inf))
        self.best_epoch = int(extra.get("best_epoch", -1))
        self.elapsed_before = float(extra.get("elapsed", 0.0))


class _RunWriter(pl.Callback):
    """After each validation: append a row to train_log.csv and rewrite model.knobcap (rank 0).

    ``on_validation_end`` runs after the module's ``on_validation_epoch_end`` (which computes the row).
    """

    def __init__(self, run: TrainingRun) -> None:
        self.run = run

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        assert isinstance(module, ParametricModule)
        if module.history:
            self.run.append_log(module.history[-1])
        self.run.write_model(module, final=False)


# ------------------------------------------------------------------------------------ the run
@dataclass
class TrainResult:
    run_dir: Path
    model_path: Path
    epochs: int
    best_epoch: int
    validation_esr: dict[str, float]
    heldout_esr: dict[str, float]
    minutes: float


class TrainingRun:
    """One run folder: writes config, log, model file and summary."""

    def __init__(self, data: TrainingData, config: TrainConfig, run_dir: Path) -> None:
        self.data, self.config, self.run_dir = data, config, Path(run_dir)
        self.names = [t.name for t in data.takes]

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    def log_columns(self) -> list[str]:
        cols = ["epoch", "minutes", "lr", "train_loss", "val_time_esr", "heldout_esr_median",
                "heldout_esr_max"]
        return cols + [f"esr_{name}" for name in self.names]

    def append_log(self, row: Mapping[str, Any]) -> None:
        esr_values = row["esr"]
        held = [esr_values[i] for i, t in enumerate(self.data.takes) if t.role == "holdout"]
        values = {"epoch": row["epoch"], "minutes": f"{row['minutes']:.3f}", "lr": f"{row['lr']:.6g}",
                  "train_loss": f"{row['train_loss']:.6g}", "val_time_esr": f"{row['val_time_esr']:.6g}",
                  "heldout_esr_median": f"{np.median(held):.6g}" if held else "",
                  "heldout_esr_max": f"{np.max(held):.6g}" if held else ""}
        values.update({f"esr_{n}": f"{v:.6g}" for n, v in zip(self.names, esr_values, strict=True)})
        rows = self.read_log()
        rows = [r for r in rows if int(r["epoch"]) < int(row["epoch"])] + [values]
        self.write_log(rows)

    def read_log(self) -> list[dict[str, Any]]:
        if not self.log_path.is_file():
            return []
        with self.log_path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def write_log(self, rows: list[dict[str, Any]]) -> None:
        columns = self.log_columns()
        lines = [",".join(columns)]
        lines += [",".join(str(r.get(c, "")) for c in columns) for r in rows]
        write_text_atomic(self.log_path, "\n".join(lines) + "\n")

    def truncate_log(self, epochs_done: int) -> None:
        rows = [r for r in self.read_log() if int(r["epoch"]) <= epochs_done]
        if self.log_path.is_file():
            self.write_log(rows)

    def metadata(self, module: ParametricModule, final: dict[str, Any] | None = None) -> dict[str, Any]:
        data = self.data
        meta: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "knobcap_version": __version__,
            "session": data.info.get("session", data.source),
            "takes": [{"take": t.name, "role": t.role, "setting": t.setting} for t in data.takes],
            "training": {"config": self.config.to_dict(), "epochs": len(module.history) and
                         module.history[-1]["epoch"], "best_epoch": module.best_epoch + 1,
                         "minutes": round(module.elapsed_minutes(), 3),
                         "selection": "lowest mean ESR on validation_2 (held-out time) of the training "
                                      "takes; held-out settings are never used to choose"},
        }
        esr_values = module.last_esr
        if final is not None:
            meta["validation_esr"] = final["validation_esr"]
            meta["heldout_esr"] = final["heldout_esr"]
            meta["heldout_span"] = final["heldout_span"]
        else:
            meta["validation_esr"] = {n: float(esr_values[i]) for i, n in enumerate(self.names)
                                      if data.takes[i].role != "holdout" and np.isfinite(esr_values[i])}
        return meta

    def write_model(self, module: ParametricModule, final: dict[str, Any] | None = None) -> Path:
        model = create_model(module.model.architecture, module.model.config)
        state = module.best_state if module.best_state is not None else module.scored_model.state_dict()
        model.load_state_dict({k: v.detach().cpu() for k, v in state.items()})
        file = model_file_from(model, self.data.controls, self.data.sample_rate,
                               self.metadata(module, final or None))
        return save_model_file(self.run_dir / MODEL_FILE, file, overwrite=True)


def _threads(config: TrainConfig) -> None:
    if config.accelerator == "cpu":
        torch.set_num_threads(max(1, config.threads or min(os.cpu_count() or 1, 8)))


def final_evaluation(model: ParametricModel, data: TrainingData, context: int) -> dict[str, Any]:
    """ESR of the best model: training takes on validation_2, held-out takes on the whole signal
    after the first ``receptive_field`` samples (their settings were never trained on)."""
    v0, v1 = data.val_span
    first = max(data.train_span[0], context)
    out: dict[str, Any] = {"validation_esr": {}, "heldout_esr": {}, "heldout_span": [first, len(data.x)]}
    for take in data.takes:
        if take.role == "holdout":
            y_hat = predict(model, data.x, take.vector)
            out["heldout_esr"][take.name] = esr(y_hat[first:], take.audio[first:])
        else:
            start = max(v0 - context - 8192, 0)
            y_hat = predict(model, data.x[start:v1], take.vector)
            out["validation_esr"][take.name] = esr(y_hat[v0 - start:], take.audio[v0:v1])
    return out


def train(data: TrainingData, config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Train (or with ``resume``, continue) a run in ``run_dir``; see the module docstring."""
    run_dir = Path(run_dir)
    config.validate(str(run_dir / CONFIG_FILE))
    checkpoints = run_dir / "checkpoints"
    last = checkpoints / LAST_CHECKPOINT
    if resume:
        if not last.is_file():
            raise TrainingError(f"{run_dir}: no checkpoint to resume ({last} is missing); start a new run.")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise TrainingError(f"{run_dir}: the run folder exists already; pass --resume to continue it or "
                            "choose another run name.")
    _threads(config)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    model = create_model(config.architecture, config.model_config(data.controls.vector_size))
    recurrent = model.receptive_field == 1
    context = model.receptive_field - 1 + (config.recurrent_warmup if recurrent else 0)
    data.check(context, config.segment_length)

    windows = WindowDataset(data, context, config.segment_length,
                            config.steps_per_epoch * config.batch_size, config.seed)
    max_samples = None if config.val_max_seconds is None else int(config.val_max_seconds * data.sample_rate)
    items = validation_items(data, context, max_samples)
    time_takes = [i for i, t in enumerate(data.takes) if t.role != "holdout"]
    setting_takes = [i for i, t in enumerate(data.takes) if t.role == "holdout"]
    module = ParametricModule(model, config, len(data.takes), time_takes, setting_takes)
    run = TrainingRun(data, config, run_dir)

    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=checkpoints, filename="best-epoch{epoch:03d}", monitor="val_time_esr",
                        mode="min", save_top_k=1, save_last=True, auto_insert_metric_name=False),
        _RunWriter(run),
    ]
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        trainer = pl.Trainer(
            accelerator=config.accelerator, devices=config.devices, strategy=config.strategy,
            precision=config.precision, max_epochs=config.epochs,
            max_time={"minutes": config.max_minutes} if config.max_minutes else None,
            gradient_clip_val=config.gradient_clip, callbacks=callbacks, logger=False,
            enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
            default_root_dir=run_dir, deterministic=False)
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        raise TrainingError(
            f"cannot train with accelerator={config.accelerator!r}, devices={config.devices!r}, "
            f"strategy={config.strategy!r}: {error}. On a CPU-only machine use --accelerator cpu.") from None
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / CONFIG_FILE, config.to_dict())
    train_loader = DataLoader(windows, batch_size=config.batch_size, shuffle=False, num_workers=0,
                              drop_last=True)
    val_loader = DataLoader(_ValidationSet(data, context, items), batch_size=1, shuffle=False)
    if resume:
        previous = torch.load(last, map_location="cpu", weights_only=False)  # our own local file
        run.truncate_log(int(previous.get("epoch", -1)) + 1)  # rows are 1-based epochs
        del previous
    with warnings.catch_warnings():
        for harmless in _HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=harmless)
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume else None)

    if not trainer.is_global_zero:
        return TrainResult(run_dir, run_dir / MODEL_FILE, trainer.current_epoch, module.best_epoch + 1,
                           {}, {}, module.elapsed_minutes())
    best = create_model(config.architecture, model.config)
    best.load_state_dict(module.best_state if module.best_state is not None
                         else module.scored_model.state_dict())
    best.eval()
    final = final_evaluation(best, data, context)
    path = run.write_model(module, final=final)
    minutes = module.elapsed_minutes()
    epochs = module.history[-1]["epoch"] if module.history else trainer.current_epoch
    summary = {"epochs": epochs, "best_epoch": module.best_epoch + 1, "minutes": round(minutes, 3),
               "validation_esr": final["validation_esr"], "heldout_esr": final["heldout_esr"],
               "heldout_esr_median": float(np.median(list(final["heldout_esr"].values())))
               if final["heldout_esr"] else None,
               "heldout_esr_max": max(final["heldout_esr"].values()) if final["heldout_esr"] else None,
               "parameters": int(sum(p.numel() for p in best.parameters())),
               "receptive_field": best.receptive_field, "model": str(path)}
    write_json_atomic(run_dir / SUMMARY_FILE, summary)
    return TrainResult(run_dir, path, epochs, module.best_epoch + 1, final["validation_esr"],
                       final["heldout_esr"], minutes)


def default_run_name() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def train_session(session_dir: str | Path, config: TrainConfig | None = None, run: str | None = None,
                  resume: bool = False, progress: bool = True) -> TrainResult:
    """Train on a session folder; the run goes to ``DIR/runs/<run>``. With ``resume``, ``run`` names an
    existing run (folder name or path) whose ``config.json`` is used (``config`` may change epochs)."""
    session_dir = Path(session_dir)
    if resume:
        if run is None:
            raise TrainingError("--resume needs the run to continue (its folder name or path).")
        run_dir = Path(run) if Path(run).is_dir() else session_dir / "runs" / run
        saved = run_dir / CONFIG_FILE
        if not saved.is_file():
            raise TrainingError(f"{run_dir}: not a training run (no {CONFIG_FILE}).")
        import json

        stored = TrainConfig.from_dict(json.loads(saved.read_text(encoding="utf-8")), str(saved))
        if config is not None:
            stored.epochs = config.epochs
            stored.max_minutes = config.max_minutes
        config = stored
    else:
        config = config or TrainConfig()
        run_dir = session_dir / "runs" / (run or default_run_name())
    try:
        data = TrainingData.from_session(session_dir)
    except TrainingDataError:
        raise
    return train(data, config, run_dir, resume=resume, progress=progress)
