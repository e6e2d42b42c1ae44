"""The training run's settings: :class:`TrainConfig`, JSON-able and torch-free (the CLI, the demo and
``--resume`` read and check it without importing torch or Lightning)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from knobcap import limits
from knobcap.dsp.dc_blocker import MAX_HZ, check_cutoff
from knobcap.models.architectures import MAX_CONTROLS, default_config
from knobcap.models.kernel_support import unsupported_part

LR_SCHEDULES = ("exponential", "cosine", "wsd")
SAMPLERS = ("tensor", "loader")
KERNELS = ("auto", "torch", "numba")


class TrainingError(ValueError):
    """Training cannot start or resume; the message says what to do."""


# the value an option had in runs saved before it existed, where that differs from today's default
_SAVED_BEFORE: dict[str, Any] = {"lr_schedule": "exponential", "esr_floor_scope": "batch"}
ESR_FLOOR_SCOPES = ("take", "batch")


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
    # "cosine" (the default), "wsd": to lr * lr_final over the budget given, the epochs or max_minutes,
    # whichever ends first (training/schedule.py); "exponential": lr_decay an epoch, whatever the budget.
    # Cosine: dense grid never trained on, 32 takes, 6,000 steps, 3 seeds (data_efficiency.py), median /
    # p90 / max over seeds 0.0102 / 0.0217 / 0.0267 -> 0.0087 / 0.0174 / 0.0222 on the TS808 and 0.0400 /
    # 0.0653 / 0.1011 -> 0.0354 / 0.0434 / 0.0583 on the GxTubeScreamer against exponential over 6 epochs
    # (docs/results.md, issue 11 session 10). Issue 13's 800- and 2,400-step runs (12 takes, 2 held-out
    # settings, 1-2 seeds) had found it worse on held-out settings.
    lr_schedule: str = "cosine"
    lr_final: float = 0.05  # the last lr of cosine and wsd, as a fraction of lr
    lr_cooldown: float = 0.25  # wsd: the last fraction of the budget, where lr falls linearly to lr_final
    warmup_steps: int = 10
    pre_emphasis: float = 0.85  # as NAM; 0 = plain ESR, the figure evaluation reports
    # > 0: plus this weight x the plain ESR of each window (floored against its take's plain energy), so
    # that low-frequency error, which the pre-emphasis weighs ~0.02x, counts (training/losses.py). Not
    # the default: weight 1 (32 takes, 6,000 steps, 3 seeds, dense grid never trained on, median / p90 /
    # max) moved the TS808 from 0.0054 / 0.0118 / 0.0144 to 0.0052 / 0.0128 / 0.0173 and the
    # GxTubeScreamer (whose takes carry DC) from 0.0028 / 0.0085 / 0.0257 to 0.0035 / 0.0104 / 0.0200,
    # with a looser fit (docs/results.md, issue 11 session 12)
    plain_esr_weight: float = 0.0
    mrstft_weight: float = 2e-3  # 0: no spectral term (about 15% cheaper a step)
    esr_floor: float = 0.2  # a window's energy counts as at least this fraction of the scope's mean
    # the esr_floor's reference (training/losses.py): "take", the mean energy of the window's own take;
    # "batch", the batch's mean (the former rule, which floored quiet and dark takes whole)
    esr_floor_scope: str = "take"
    # > 0: plus dc_weight x the DC term |mean(y - y_hat)|^2 / mean(y^2) per window (Wright and Valimaki):
    # the pre-emphasis leaves a model's DC and sub-20 Hz drift almost free, and at settings never trained
    # on it drifts (session 5: a fifth of the demo's dense-grid median ESR was below 20 Hz). Not the
    # default: weight 1 doubled the dense-grid median (0.038 -> 0.077) and raised held-out time 0.020 ->
    # 0.028 (training_recipe.py --takes 12 --seconds 40 --grid 5, 1,500 steps, one seed)
    dc_weight: float = 0.0
    mrstft_fft_sizes: list[int] = field(default_factory=lambda: [1024, 2048, 512])
    gradient_clip: float | None = 1.0
    # > 0: validate, select and save an exponential moving average of the weights (measured with FiLM
    # and warps: dense-grid median ESR 0.053 -> 0.047; held-out-time ESR stops swinging between epochs)
    ema_decay: float = 0.998
    control_noise: float = 0.0  # std of Gaussian noise added to the setting vector of each training window
    # > 0: plus this weight x the curvature penalty over the knob space (training/smoothness.py): the
    # second difference of the output along a random knob direction, step ``smoothness_step`` in u, at
    # random points of the knob box, on ``smoothness_windows`` windows of ``smoothness_length`` samples.
    # Not the default: weight 1 moved the TS808 at 24 takes from 0.0082 / 0.0185 / 0.0274 to 0.0106 /
    # 0.0372 / 0.0596 (dense grid never trained on, 6,000 steps, 3 seeds; docs/results.md, issue 11), and
    # the tone alone at step 0.25, weight 0.1, to about 0.031 / 0.19 / 0.28-0.43 (2 seeds)
    smoothness_weight: float = 0.0
    smoothness_step: float = 0.1
    smoothness_windows: int = 2
    smoothness_length: int = 1024
    smoothness_knobs: list[str] | None = None  # the knobs the penalty bends; None: every learned knob
    # > 0: this fraction of each batch's windows comes from takes drawn in proportion to their
    # held-out-time ESR at the last validation, the rest uniformly (training/sampler.py); 0: uniform.
    # Not the default: 0.5 moved the dense-grid median / p90 / max by 0.99 / 1.00 / 0.95x, within seed
    # noise (TS808, 24 and 32 takes, 6,000 steps, 9 paired runs; docs/results.md, issue 11 session 9)
    take_weighting: float = 0.0
    val_max_seconds: float | None = 2.0  # per take and epoch; the final report uses everything
    max_minutes: float | None = None
    threads: int | None = None  # CPU threads; None = min(cores, 8)
    accelerator: str = "auto"  # Lightning's: a GPU when there is one, else the CPU
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"  # "bf16-mixed" on a GPU: unmeasured (issue 13)
    sampler: str = "tensor"  # "tensor": batches by tensor indexing; "loader": the former per-window path
    compile: bool = False  # torch.compile (inductor) the model for training; see docs/results.md
    # WaveNet training forward + backward on the CPU: "numba" (models/wavenet_kernel.py), "torch"
    # (autograd), "auto" (numba where the config and call allow it; torch with compile); docs/results.md
    kernel: str = "auto"
    # the model file whose weights a new run starts from (``--init-from RUN``; training/warmstart.py);
    # None: fresh weights from ``seed``. Only read, never written; ignored on --resume.
    init_from: str | None = None
    # the output DC blocker written into the model file (dsp/dc_blocker.py), applied by every runtime
    # after the model: "auto" (2 Hz when every training take is DC-free, as an AC-coupled pedal
    # recorded through an interface is; none when the takes carry DC, as some plugins' do), "off", or a
    # corner in Hz (0, 20]. TS808 demo, dense grid never trained on: 0.0254 / 0.095 / 0.184 -> 0.0208 /
    # 0.088 / 0.156 at 2 Hz (session 5; docs/results.md, issue 11)
    dc_blocker: str | float = "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"{source}: unknown training option(s) {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(known))}.")
        if not isinstance(data.get("model", {}), Mapping):
            raise TrainingError(f"{source}: the model config must be a JSON object of the architecture's "
                                f"options, got a {type(data['model']).__name__}; see 'knobcap train --help'.")
        config = cls(**dict(data))
        config.validate(source)
        return config

    @classmethod
    def from_saved(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """A run's saved ``config.json``: options it predates keep the value they had then (a run saved
        before ``lr_schedule`` existed decayed exponentially; cosine became the default later)."""
        if not isinstance(data, Mapping):
            raise TrainingError(f"{source}: not a JSON object of training options; start a new run.")
        return cls.from_dict({**_SAVED_BEFORE, **data}, source)

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
        self._validate_smoothness(source)
        weighting = self.take_weighting
        if isinstance(weighting, bool) or not isinstance(weighting, int | float) or not 0 <= weighting <= 1:
            raise TrainingError(f"{source}: take_weighting must be a fraction in [0, 1], got {weighting!r}.")
        if weighting > 0 and self.sampler != "tensor":
            raise TrainingError(f"{source}: take_weighting needs sampler 'tensor', got {self.sampler!r}.")
        if self.lr_schedule not in LR_SCHEDULES or not 0 <= self.lr_final <= 1:
            raise TrainingError(f"{source}: lr_schedule must be one of {', '.join(LR_SCHEDULES)} and "
                                f"lr_final in [0, 1], got {self.lr_schedule!r} and {self.lr_final!r}.")
        cooldown = self.lr_cooldown
        if isinstance(cooldown, bool) or not isinstance(cooldown, int | float) or not 0 < cooldown <= 1:
            raise TrainingError(f"{source}: lr_cooldown must be a fraction of the budget in (0, 1], "
                                f"got {self.lr_cooldown!r}.")
        if self.esr_floor_scope not in ESR_FLOOR_SCOPES or not 0 <= self.esr_floor <= 1:
            raise TrainingError(f"{source}: esr_floor_scope must be one of {', '.join(ESR_FLOOR_SCOPES)} "
                                f"and esr_floor in [0, 1], got {self.esr_floor_scope!r} and "
                                f"{self.esr_floor!r}.")
        if self.sampler not in SAMPLERS or not isinstance(self.compile, bool):
            raise TrainingError(f"{source}: sampler must be one of {', '.join(SAMPLERS)} and compile true "
                                f"or false, got {self.sampler!r} and {self.compile!r}.")
        if self.kernel not in KERNELS:
            raise TrainingError(f"{source}: kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}.")
        if self.kernel == "numba":
            self._validate_numba_kernel(source)
        self._validate_run_options(source)
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from):
            raise TrainingError(f"{source}: init_from must name a run or model file, got {self.init_from!r}.")
        if self.dc_blocker not in ("auto", "off"):
            try:
                check_cutoff(self.dc_blocker, source)
            except ValueError:
                raise TrainingError(f"{source}: dc_blocker must be 'auto', 'off' or a corner in Hz above 0 "
                                    f"and at most {MAX_HZ:g}, got {self.dc_blocker!r}.") from None
        if not (isinstance(self.dc_weight, int | float) and 0 <= self.dc_weight <= 1e3):
            raise TrainingError(f"{source}: dc_weight must be a number in [0, 1000], got {self.dc_weight!r}.")
        weight = self.plain_esr_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1e3:
            raise TrainingError(f"{source}: plain_esr_weight must be a number in [0, 1000], got {weight!r}.")
        if self.mrstft_weight > 0 and max(self.mrstft_fft_sizes) > self.segment_length:
            raise TrainingError(
                f"{source}: segment_length {self.segment_length} is shorter than the largest STFT "
                f"size {max(self.mrstft_fft_sizes)}; lengthen it or set mrstft_weight to 0.")

    def _validate_smoothness(self, source: str) -> None:
        weight, step = self.smoothness_weight, self.smoothness_step
        if (isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1e3
                or isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step < 0.5):
            raise TrainingError(f"{source}: smoothness_weight must be a number in [0, 1000] and "
                                f"smoothness_step one in (0, 0.5), got {weight!r} and {step!r}.")
        knobs = self.smoothness_knobs
        if knobs is not None and (not isinstance(knobs, list) or not 1 <= len(knobs) <= MAX_CONTROLS
                                  or not all(isinstance(k, str) and 0 < len(k) <= 256 for k in knobs)):
            raise TrainingError(f"{source}: smoothness_knobs must be a list of 1 to {MAX_CONTROLS} knob "
                                f"names or null, got {str(knobs)[:80]!r}.")
        for name in ("smoothness_windows", "smoothness_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 16:
                raise TrainingError(f"{source}: {name} must be an integer from 1 to 65536, got {value!r}.")

    def _validate_numba_kernel(self, source: str) -> None:
        """``kernel "numba"`` runs only what models/wavenet_kernel.py implements: refused here, before
        any data is read, rather than at the first training step."""
        if self.compile:  # torch.compile traces the model in torch; the kernel's numba calls are opaque to it
            raise TrainingError(f"{source}: kernel 'numba' and compile true exclude each other (a compiled "
                                "model trains in torch); set kernel to 'auto' or 'torch', or compile to "
                                "false.")
        if self.architecture != "wavenet":
            raise TrainingError(f"{source}: kernel 'numba' trains only the 'wavenet' architecture, not "
                                f"{self.architecture!r}; set kernel to 'auto' or 'torch'.")
        part = unsupported_part(self.model_config(1))
        if part is not None:
            raise TrainingError(f"{source}: kernel 'numba' does not run the model's {part}; set kernel to "
                                f"'auto' or 'torch'.")

    def _validate_run_options(self, source: str) -> None:
        """Time budget, threads and devices: options that are accepted by Lightning and torch but mean
        nothing (or crash deep inside them) when out of range."""
        minutes = self.max_minutes
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int | float)
                                    or not 0 < minutes < math.inf):
            raise TrainingError(f"{source}: --minutes must be a number of minutes above 0, got {minutes!r}.")
        if self.threads is not None:
            if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
                raise TrainingError(f"{source}: --threads must be a positive integer, got {self.threads!r}.")
            try:
                limits.MAX_THREADS.check(self.threads, f"{source}: --threads")
            except limits.LimitError as error:
                raise TrainingError(str(error)) from None
        devices = self.devices
        if isinstance(devices, str) and devices.isdigit():
            devices = self.devices = int(devices)
        count = isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or devices == -1)
        listed = isinstance(devices, str) and re.fullmatch(r"\d+(,\d+)*,?", devices) is not None
        if not (count or listed or devices == "auto"):
            raise TrainingError(f"{source}: --devices must be a count of devices (1, 2, ...), a list of "
                                f"device numbers such as '0,1', or 'auto'; got {self.devices!r}.")

    def model_config(self, n_controls: int) -> dict[str, Any]:
        config = dict(self.model) if self.model else default_config(self.architecture, n_controls)
        config["n_controls"] = n_controls
        return config
