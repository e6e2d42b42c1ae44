"""Training a parametric model on a session: Lightning module, run folder writing, resume, final evaluation.

Training writes the run folder (:class:`knobcap.training.run.Run`, which names its files): the
:class:`TrainConfig`, Lightning checkpoints every epoch and of the best one (our own files, for
``--resume``), the training log (one row an epoch: losses and ESR per take), the user-facing model file
(rewritten each epoch from the best weights so far) and the summary.

Recipe: batches of random windows from random training takes (settings mix in every batch; drawn
by tensor indexing, :mod:`knobcap.training.sampler`); loss = ESR with pre-emphasis + a small
multi-resolution STFT term (both optional); fused Adam with a short warm-up and, by default, an
exponential decay per epoch, or a decay to ``lr_final * lr`` tied to the training budget (cosine, or wsd:
the full rate, then a decay over its last ``lr_cooldown``; :mod:`knobcap.training.schedule`): the steps of
all epochs, or ``max_minutes`` of training from the first step if that ends first. With ``ema_decay``
(default) an exponential moving average of the weights is what is validated, selected and saved.

**Model selection** uses held-out *time* (the ``validation_2`` segment of every training take), never
the held-out *settings*: those are reported each epoch and at the end (over the whole signal), but
choosing the epoch on them would leak them into the model, and the headline figure would no longer be
honest.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from knobcap import __version__
from knobcap.dsp import dc_blocker
from knobcap.fileio import write_json_atomic
from knobcap.metrics import esr
from knobcap.models.base import ParametricModel, create_model
from knobcap.models.bridge import model_file_from, predict
from knobcap.models.modelfile import save_model_file
from knobcap.training import smoothness
from knobcap.training.checkpoints import SafeCheckpointIO, choose_resume
from knobcap.training.config import TrainConfig, TrainingError
from knobcap.training.cpu_threads import ThreadPlan, plan_threads, run_threads, training_threads
from knobcap.training.data import (
    TrainingData,
    TrainingDataError,
    WindowDataset,
    validation_items,
    window_input,
)
from knobcap.training.losses import TrainingLoss
from knobcap.training.run import Run, RunError
from knobcap.training.runlock import RunLock
from knobcap.training.sampler import EpochBatches, TensorSampler, make_sampler
from knobcap.training.schedule import budget_progress, lr_factor
from knobcap.training.warmstart import initial_weights, load_into, resolve_init

_HARMLESS_WARNINGS = (".*LeafSpec.*", ".*Checkpoint directory .* exists and is not empty.*",
                      ".*does not have many workers.*")


# ---------------------------------------------------------------------------------- lightning bits
class _ValidationSet(Dataset):
    def __init__(self, data: TrainingData, context: int,
                 items: list[tuple[str, str, int, int, int | None]]) -> None:
        self.data, self.context, self.items = data, context, items
        self.index = {t.name: i for i, t in enumerate(data.takes)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        name, _, start, stop, rest = self.items[i]
        take = self.data.takes[self.index[name]]
        x = torch.from_numpy(window_input(self.data.input_of(take), start, stop, self.context, rest).copy())
        y = torch.from_numpy(take.audio[start:stop].copy())
        return x, y, torch.from_numpy(take.vector.astype(np.float32)), self.index[name]


class ParametricModule(pl.LightningModule):
    """Lightning wrapper: training step, per-take validation, best-weights tracking."""

    def __init__(self, model: ParametricModel, config: TrainConfig, n_takes: int,
                 time_takes: list[int], setting_takes: list[int], knob_columns: Sequence[int] = ()) -> None:
        super().__init__()
        self.knob_columns = list(knob_columns)  # the setting entries the curvature penalty bends
        if hasattr(model, "kernel"):  # the WaveNet's training kernel; a compiled model stays in torch
            model.kernel = "torch" if config.compile and config.kernel == "auto" else config.kernel
        self.model = model
        self.cfg = config
        self.ema_model: ParametricModel | None = None
        if config.ema_decay > 0:
            self.ema_model = copy.deepcopy(model)
            self.ema_model.requires_grad_(False)
        self.loss = TrainingLoss(config.pre_emphasis, config.mrstft_weight, config.mrstft_fft_sizes,
                                 config.esr_floor, config.dc_weight, config.esr_floor_scope,
                                 config.plain_esr_weight)
        self.n_takes = n_takes
        self.time_takes, self.setting_takes = time_takes, setting_takes
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score = math.inf
        self.best_epoch = -1
        self.elapsed_before = 0.0
        self.fit_started = time.monotonic()
        self.train_seconds_before = 0.0  # training time of earlier runs of a resumed run
        self.train_started: float | None = None  # set at the first training step
        self.last_esr: np.ndarray = np.full(n_takes, np.nan)
        self.history: list[dict[str, Any]] = []
        self._train_losses: list[torch.Tensor] = []
        self._compiled: Any = None
        self._ema_params = [] if self.ema_model is None else list(self.ema_model.parameters())
        self._live_params = list(self.model.parameters())

    # ---- training
    def configure_optimizers(self) -> Any:
        # fused: one kernel for every parameter (CPU and CUDA; 4.8 -> 0.9 ms a step on the default model)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, fused=True)

        def factor(step: int) -> float:  # training/schedule.py; progress counts training time only
            return lr_factor(self.cfg, step, budget_progress(self.cfg, step, self.training_minutes()))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @classmethod
    def for_data(cls, data: TrainingData, config: TrainConfig) -> tuple[ParametricModule, int]:
        """The module for ``data`` (a fresh model seeded by the caller) and its window context."""
        model = create_model(config.architecture, config.model_config(data.controls.vector_size))
        recurrent = model.receptive_field == 1
        context = model.receptive_field - 1 + (config.recurrent_warmup if recurrent else 0)
        time_takes = [i for i, t in enumerate(data.takes) if t.role != "holdout"]
        setting_takes = [i for i, t in enumerate(data.takes) if t.role == "holdout"]
        try:
            bent = smoothness.knob_columns(data.controls, config.smoothness_knobs)
        except ValueError as error:
            raise TrainingError(f"smoothness_knobs: {error}") from None
        return cls(model, config, len(data.takes), time_takes, setting_takes, bent), context

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if isinstance(dataset, WindowDataset | EpochBatches):
            dataset.epoch = self.current_epoch
        if isinstance(dataset, EpochBatches):  # batches are drawn where the model trains
            dataset.sampler.to(self.device)
            if isinstance(dataset.sampler, TensorSampler):
                self.weigh_takes(dataset.sampler)
        self._train_losses = []

    def weigh_takes(self, sampler: TensorSampler) -> None:
        """With ``take_weighting``: draw the training takes by their last held-out-time ESR
        (training/sampler.py); uniformly before the first validation (``last_esr`` is NaN then, which
        :meth:`TensorSampler.set_weights` takes as uniform)."""
        if self.cfg.take_weighting > 0:
            sampler.set_weights(self.last_esr[self.time_takes], self.cfg.take_weighting)

    def predict_batch(self, x: torch.Tensor, c: torch.Tensor, length: int) -> torch.Tensor:
        """The training forward pass: the last ``length`` outputs (the compiled model if ``compile``)."""
        if self.cfg.control_noise > 0:
            c = c + self.cfg.control_noise * torch.randn_like(c)
        if self.cfg.compile and self._compiled is None:  # kept out of the module's state_dict
            object.__setattr__(self, "_compiled", torch.compile(self.model, dynamic=False))
        forward = self._compiled if self._compiled is not None else self.model
        return forward(x, c)[:, -length:]

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y, c, energy = batch
        y_hat = self.predict_batch(x, c, y.shape[-1])
        parts = self.loss(y_hat, y, energy)
        loss = parts["loss"]
        if self.cfg.smoothness_weight > 0 and self.knob_columns:
            loss = loss + self.cfg.smoothness_weight * self.curvature(x, y.shape[-1], c, energy)
        self.log("loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        self._train_losses.append(parts["loss"].detach())
        return loss

    def curvature(self, x: torch.Tensor, length: int, c: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        """The curvature penalty (training/smoothness.py) on the batch's first windows, drawn from a
        generator seeded by the run's seed and the step, so a resumed run draws what it would have."""
        rows = min(self.cfg.smoothness_windows, x.shape[0])
        scored = min(self.cfg.smoothness_length, length)
        context = x.shape[-1] - length
        reference = energy[:rows, 0] if energy.ndim == 2 else energy[:rows]
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + int(self.global_step))
        return smoothness.curvature_penalty(
            self.predict_batch, x[:rows, -(context + scored):], c[:rows], reference, self.knob_columns,
            step=self.cfg.smoothness_step, length=scored, coefficient=self.cfg.pre_emphasis,
            generator=generator)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.update_ema(self.global_step)

    def update_ema(self, step: int) -> None:
        """Move the average toward the live weights (one foreach lerp over all parameters)."""
        if self.ema_model is None:
            return
        decay = min(self.cfg.ema_decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            torch._foreach_lerp_(self._ema_params, self._live_params, 1.0 - decay)

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
        train_loss = (float(torch.stack(self._train_losses).mean()) if self._train_losses
                      else float("nan"))
        self.history.append({"epoch": self.current_epoch + 1, "train_loss": train_loss,
                             "val_time_esr": time_esr, "esr": ratio.tolist(),
                             "lr": self.trainer.optimizers[0].param_groups[0]["lr"],
                             "minutes": self.elapsed_minutes()})

    def elapsed_minutes(self) -> float:
        return (self.elapsed_before + time.monotonic() - self.fit_started) / 60.0

    def on_fit_start(self) -> None:
        self.fit_started = time.monotonic()

    def on_train_start(self) -> None:  # where Lightning's max_time clock starts too
        self.train_started = time.monotonic()

    def training_minutes(self) -> float:
        """Minutes of training spent on the budget, earlier runs of a resumed run included: counted from
        the first training step, so start-up, imports and data loading do not count."""
        now = 0.0 if self.train_started is None else time.monotonic() - self.train_started
        return (self.train_seconds_before + now) / 60.0

    # ---- checkpoints carry the best weights and the time spent
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["knobcap"] = {
            "best_state": self.best_state, "best_score": self.best_score, "best_epoch": self.best_epoch,
            "elapsed": self.elapsed_before + time.monotonic() - self.fit_started,
            "training_seconds": 60.0 * self.training_minutes(), "last_esr": self.last_esr.tolist()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("knobcap", {})
        self.best_state = extra.get("best_state")
        self.best_score = float(extra.get("best_score", math.inf))
        self.best_epoch = int(extra.get("best_epoch", -1))
        self.elapsed_before = float(extra.get("elapsed", 0.0))
        self.train_seconds_before = float(extra.get("training_seconds", self.elapsed_before))
        last = np.asarray(extra.get("last_esr", []), dtype=np.float64)
        if last.shape == (self.n_takes,):  # the take weights of a resumed run (training/sampler.py)
            self.last_esr = last


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
    """Training's writer of a run folder (:class:`knobcap.training.run.Run`): log rows and model file."""

    def __init__(self, data: TrainingData, config: TrainConfig, run_dir: Path) -> None:
        self.data, self.config, self.run = data, config, Run(run_dir)
        self.names = [t.name for t in data.takes]
        self.dc_blocker_hz, self.dc_blocker_line = dc_blocker_choice(config, data)

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
        rows = self.run.read_log()
        rows = [r for r in rows if int(r["epoch"]) < int(row["epoch"])] + [values]
        self.run.write_log(self.log_columns(), rows)

    def truncate_log(self, epochs_done: int) -> None:
        rows = [r for r in self.run.read_log() if int(r["epoch"]) <= epochs_done]
        if self.run.log_path.is_file():
            self.run.write_log(self.log_columns(), rows)

    def metadata(self, module: ParametricModule, final: dict[str, Any] | None = None) -> dict[str, Any]:
        data = self.data
        meta: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "knobcap_version": __version__,
            "session": data.info.get("session", data.source),
            "takes": [{"take": t.name, "role": t.role, "setting": t.setting} for t in data.takes],
            **({"polarity": int(data.info["polarity"]),  # type: ignore[call-overload]
                "polarity_source": data.info.get("polarity_source")}
               if data.info.get("polarity") in (1, -1) else {}),
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
        file.dc_blocker_hz = self.dc_blocker_hz
        return save_model_file(self.run.model_path, file, overwrite=True)


def dc_blocker_choice(config: TrainConfig, data: TrainingData) -> tuple[float | None, str]:
    """The model file's output DC blocker (``config.dc_blocker``; "auto": from the training takes, read
    once) and one line on what was chosen and why."""
    if config.dc_blocker != "auto":
        cutoff = None if config.dc_blocker == "off" else float(config.dc_blocker)
        return cutoff, (f"output DC blocker: {'off' if cutoff is None else f'{cutoff:g} Hz'} (dc_blocker "
                        f"{config.dc_blocker!r})")
    worst = dc_blocker.worst_ratio(t.audio for t in data.takes if t.role != "holdout")
    cutoff = dc_blocker.choose_for_ratio(worst)
    if cutoff is None:
        return None, (f"output DC blocker: off (the takes carry DC, up to {100 * worst:.2g} % of their rms: "
                      "the model keeps it)")
    return cutoff, f"output DC blocker: {cutoff:g} Hz (the takes hold no DC, as an AC-coupled device's)"


def output_dc_blocker(config: TrainConfig, data: TrainingData) -> float | None:
    """The model file's output DC blocker: ``config.dc_blocker`` ("auto": from the training takes)."""
    return dc_blocker_choice(config, data)[0]


def validation_set(data: TrainingData, context: int, config: TrainConfig) -> Dataset:
    """The validation items of an epoch (held-out time of training takes, held-out takes)."""
    max_samples = None if config.val_max_seconds is None else int(config.val_max_seconds * data.sample_rate)
    return _ValidationSet(data, context, validation_items(data, context, max_samples))


def validation_batches(data: TrainingData, context: int, config: TrainConfig,
                       device: Any = "cpu") -> Any:
    """The validation set's ``(x, y, c, take)`` batches on ``device`` (for benchmarks)."""
    for x, y, c, index in DataLoader(validation_set(data, context, config), batch_size=1):
        yield x.to(device), y.to(device), c.to(device), index


def _threads(config: TrainConfig) -> None:
    if config.accelerator == "cpu":
        torch.set_num_threads(run_threads(config))


def training_device(trainer: pl.Trainer, config: TrainConfig, model: torch.nn.Module
                    ) -> tuple[str, ThreadPlan | None]:
    """Where ``trainer`` trains, in words ("cpu (2 threads)", "cuda:0"), and on the CPU (``auto``
    included) how the model splits the run's threads (:mod:`knobcap.training.cpu_threads`)."""
    device = trainer.strategy.root_device
    if device.type != "cpu":
        more = f" (and {trainer.num_devices - 1} more)" if trainer.num_devices > 1 else ""
        return str(device) + more, None
    plan = plan_threads(config, model)
    return plan.describe(), plan


def final_evaluation(model: ParametricModel, data: TrainingData, context: int,
                     dc_blocker_hz: float | None = None) -> dict[str, Any]:
    """ESR of the best model: training takes on validation_2, held-out takes on the whole signal
    after the first ``receptive_field`` samples (their settings were never trained on); with the
    model file's output DC blocker, as every runtime plays it."""
    def run(x: np.ndarray, vector: np.ndarray) -> np.ndarray:
        y = predict(model, x, vector)
        return y if dc_blocker_hz is None else dc_blocker.apply(y, dc_blocker_hz, data.sample_rate)

    first = max(data.train_span[0], context)
    out: dict[str, Any] = {"validation_esr": {}, "heldout_esr": {}, "heldout_span": [first, len(data.x)]}
    for take in data.takes:
        x = data.input_of(take)
        held = take.role == "holdout"
        spans = data.regions(take, "all" if held else "time", context)
        if held and not data.clips_of(take):  # the whole signal in one pass, from its start
            predicted, target = [run(x, take.vector)[spans[0][0]:]], [take.audio[spans[0][0]:]]
        else:  # each span from a little before it (or from its clip's rest), scored on the span only
            predicted, target = [], []
            for start, stop, rest in spans:
                pre = start - max(start - context - 8192, rest if rest is not None else 0)
                y_hat = run(window_input(x, start, stop, pre, rest), take.vector)
                predicted.append(y_hat[pre:])
                target.append(take.audio[start:stop])
        value = esr(np.concatenate(predicted), np.concatenate(target))
        out["heldout_esr" if held else "validation_esr"][take.name] = value
    return out


def train(data: TrainingData, config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          progress: bool = True, say: Callable[[str], None] = print) -> TrainResult:
    """Train (or with ``resume``, continue) a run in ``run_dir``; see the module docstring.

    The run folder is locked while training (:mod:`knobcap.training.runlock`): a second trainer of the
    same run is refused. A new run's folder that training could not start in is removed again.
    """
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    lock = RunLock(run_dir, say)
    with lock:
        try:
            return _train(data, config, run_dir, resume=resume, progress=progress, say=say)
        except BaseException:
            if created and {p.name for p in run_dir.iterdir()} <= {Run.LOCK}:
                lock.release(remove=True)
                run_dir.rmdir()
            raise


def _train(data: TrainingData, config: TrainConfig, run_dir: Path, *, resume: bool, progress: bool,
           say: Callable[[str], None]) -> TrainResult:
    folder = Run(run_dir)
    config.validate(str(folder.config_path))
    checkpoints = folder.checkpoints_dir
    last = folder.last_checkpoint
    if resume:
        if not last.is_file() and not any(checkpoints.glob("*.ckpt")):
            raise TrainingError(f"{run_dir}: no checkpoint to resume ({last} is missing); start a new run.")
        point = choose_resume(checkpoints, last, say)  # refuses foreign objects; falls back when damaged
    elif any(p.name != Run.LOCK for p in run_dir.iterdir()):
        raise TrainingError(f"{run_dir}: the run folder exists already; pass --resume to continue it or "
                            "choose another run name.")
    _threads(config)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    module, context = ParametricModule.for_data(data, config)
    model = module.model
    data.check(context, config.segment_length)
    if config.init_from and not resume:
        state = initial_weights(config.init_from, config.architecture, model.config, data.controls)
        load_into([module.model, module.ema_model], state, config.init_from)
        say(f"starting from the weights of {config.init_from}")

    windows = EpochBatches(make_sampler(data, context, config), config.steps_per_epoch)
    run = TrainingRun(data, config, run_dir)

    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

    callbacks: list[pl.Callback] = [
        ModelCheckpoint(dirpath=checkpoints, filename="best-epoch{epoch:03d}", monitor="val_time_esr",
                        mode="min", save_top_k=1, save_last=True, auto_insert_metric_name=False,
                        enable_version_counter=False),
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
            plugins=[SafeCheckpointIO()],  # atomic writes, data-only reads
            enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0,
            default_root_dir=run_dir, deterministic=False)
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        raise TrainingError(
            f"cannot train with accelerator={config.accelerator!r}, devices={config.devices!r}, "
            f"strategy={config.strategy!r}: {error}. On a CPU-only machine use --accelerator cpu.") from None
    where, plan = training_device(trainer, config, model)
    if plan is not None:
        torch.set_num_threads(run_threads(config))  # the final evaluation's; the fit runs on the plan
    say(f"training on {where}")
    say(run.dc_blocker_line)
    for name in data.unvaried_knobs():
        say(f"note: knob {name!r} is at one value in every training take, so the model cannot learn what "
            "it does; plan takes that turn it, or hold it in controls.toml's [fixed].")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder.config_path, config.to_dict())
    train_loader = DataLoader(windows, batch_size=None, shuffle=False, num_workers=0)
    val_loader = DataLoader(validation_set(data, context, config), batch_size=1, shuffle=False)
    if resume:
        run.truncate_log(point.epoch + 1)  # rows are 1-based epochs
    with warnings.catch_warnings():
        for harmless in _HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=harmless)
        with training_threads(plan) if plan is not None else nullcontext():
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(point.path) if resume else None,
                        weights_only=True)

    if not trainer.is_global_zero:
        return TrainResult(run_dir, folder.model_path, trainer.current_epoch, module.best_epoch + 1,
                           {}, {}, module.elapsed_minutes())
    best = create_model(config.architecture, model.config)
    best.load_state_dict(module.best_state if module.best_state is not None
                         else module.scored_model.state_dict())
    best.eval()
    final = final_evaluation(best, data, context, run.dc_blocker_hz)
    path = run.write_model(module, final=final)
    minutes = module.elapsed_minutes()
    epochs = module.history[-1]["epoch"] if module.history else trainer.current_epoch
    summary = {"epochs": epochs, "best_epoch": module.best_epoch + 1, "minutes": round(minutes, 3),
               "validation_esr": final["validation_esr"], "heldout_esr": final["heldout_esr"],
               "heldout_esr_median": float(np.median(list(final["heldout_esr"].values())))
               if final["heldout_esr"] else None,
               "heldout_esr_max": max(final["heldout_esr"].values()) if final["heldout_esr"] else None,
               "parameters": int(sum(p.numel() for p in best.parameters())),
               "receptive_field": best.receptive_field,
               "dc_blocker_hz": run.dc_blocker_hz, "model": str(path)}
    write_json_atomic(folder.summary_path, summary)
    return TrainResult(run_dir, path, epochs, module.best_epoch + 1, final["validation_esr"],
                       final["heldout_esr"], minutes)


def default_run_name() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def train_session(session_dir: str | Path, config: TrainConfig | None = None, run: str | None = None,
                  resume: bool = False, progress: bool = True, say: Callable[[str], None] = print
                  ) -> TrainResult:
    """Train on a session folder; the run goes to ``DIR/runs/<run>``. With ``resume``, ``run`` names an
    existing run (folder name or path) whose ``config.json`` is used (``config`` may change epochs)."""
    session_dir = Path(session_dir)
    if resume:
        if run is None:
            raise TrainingError("--resume needs the run to continue (its folder name or path).")
        folder = Run.find(session_dir, run)
        run_dir = folder.path
        saved = folder.config_path
        if not saved.is_file():
            raise TrainingError(f"{run_dir}: not a training run (no {Run.CONFIG}).")
        try:
            stored = TrainConfig.from_saved(folder.read_config(), str(saved))
        except RunError as error:
            raise TrainingError(f"{error}; start a new run.") from None
        if config is not None:
            stored.epochs = config.epochs
            stored.max_minutes = config.max_minutes
        config = stored
    else:
        config = config or TrainConfig()
        run_dir = Run.in_session(session_dir, run or default_run_name()).path
        if config.init_from:
            config = replace(config, init_from=str(resolve_init(session_dir, config.init_from)))
    try:
        data = TrainingData.from_session(session_dir)
    except TrainingDataError:
        raise
    return train(data, config, run_dir, resume=resume, progress=progress, say=say)
