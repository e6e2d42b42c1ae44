"""Training throughput: scored samples/s and steps/s of the real training loop, and where the time goes.

    .venv/bin/python benchmarks/train_speed.py [--threads 1 2] [--sizes default nam] [--steps 12]
        [--repeats 3] [--loop-steps 100] [--config '{"compile": true}'] [--no-loop]
        [--kernels torch numba]

For each model size (knobcap's default FiLM WaveNet; NAM's standard size, 16 -> 8 channels) and each
CPU thread count (``torch.set_num_threads``), and on ``cuda`` when ``torch.cuda.is_available()``:

- **parts**: the same objects as training (model, :class:`TrainingLoss`, Adam, EMA, window sampler,
  validation set), timed outside Lightning over ``--steps`` steps: data (drawing a batch), forward,
  loss, backward, optimiser + EMA (clip, step, schedule, moving average), and one validation pass
  spread over an epoch's steps. Median of ``--repeats``.
- **loop**: :func:`knobcap.training.loop.train` itself (Lightning, loss, EMA, validation, checkpoints,
  log), 3 epochs of ``--loop-steps`` steps; the rate is taken between the end of epoch 1 and epoch 3
  (train_log.csv's minutes), so start-up and the final evaluation are left out.

Data: 8 synthetic takes (a one-pole tone filter and a tanh drive, settings on a small grid) of 30 s of
knobcap's test signal, with no denormal floats (the filter's decaying tails are set to 0: recorded and
reamped takes hold none, and they slow every multiply that touches them); otherwise the rates do not
depend on what the takes hold. The machine is shared: compare
ratios measured in one run, never figures from different runs. ``--kernels torch numba`` times the
WaveNet's training kernels (``TrainConfig.kernel``) in the same run, repeats alternating between them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def synthetic_data(seconds: float = 30.0, n_takes: int = 8) -> Any:
    """8 takes of a cheap parametric 'pedal' on knobcap's test signal (train, anchors, one held out)."""
    from scipy.signal import lfilter

    from knobcap.capture.testsignal import generate_signal
    from knobcap.controls import Controls, Knob, Switch
    from knobcap.training.data import Take, TrainingData

    controls = Controls(knobs=(Knob("drive"), Knob("tone")), switches=(Switch("diodes", ("silicon", "led")),))
    signal = generate_signal(seconds)
    x = signal.audio.astype(np.float32)
    rng = np.random.default_rng(0)
    takes = []
    for i in range(n_takes):
        setting = {"drive": float(rng.uniform(0, 10)), "tone": float(rng.uniform(0, 10)),
                   "diodes": ("silicon", "led")[i % 2]}
        pole = 0.2 + 0.07 * setting["tone"]
        low = lfilter([1 - pole], [1, -pole], x)
        gain = 1.0 + 3.0 * setting["drive"]
        y = np.tanh(gain * low) / np.sqrt(gain) * (1.0 if setting["diodes"] == "silicon" else 0.6)
        role = "holdout" if i == n_takes - 1 else ("anchor" if i < 2 else "train")
        y = y.astype(np.float32)
        y[np.abs(y) < np.finfo(np.float32).tiny] = 0.0  # no denormals (lfilter's tails): real takes have
        takes.append(Take(f"take{i + 1:02d}", setting, controls.to_vector(setting), role, y))  # none
    val = signal.map.segment("validation_2")
    return TrainingData(controls, signal.map.sample_rate, x, takes, tuple(signal.map.train_span),
                        (val.start, val.stop), source="synthetic")


def model_sizes(n_controls: int) -> dict[str, dict[str, Any]]:
    from knobcap.models.architectures import default_config

    default = default_config("wavenet", n_controls)
    nam = json.loads(json.dumps(default))
    dilations = [1 << i for i in range(10)]
    nam["arrays"] = [{"channels": 16, "head_size": 8, "kernel_size": 3, "dilations": dilations},
                     {"channels": 8, "head_size": 1, "kernel_size": 3, "dilations": dilations}]
    return {"default": default, "nam": nam}


def time_parts(data: Any, config: Any, device: str, steps: int) -> dict[str, float]:
    """Seconds per step of each part (validation: one pass / steps_per_epoch)."""
    from knobcap.training.loop import ParametricModule

    module, context = ParametricModule.for_data(data, config)
    module = module.to(device)
    if device == "cpu":  # the threads as training splits them (torch's and the WaveNet kernel's)
        try:
            from knobcap.training.cpu_threads import plan_threads, training_threads
        except ImportError:  # an older knobcap: torch's threads only
            return _time_parts(module, context, data, config, device, steps)
        with training_threads(plan_threads(config, module.model)):
            return _time_parts(module, context, data, config, device, steps)
    return _time_parts(module, context, data, config, device, steps)


def _time_parts(module: Any, context: int, data: Any, config: Any, device: str, steps: int
                ) -> dict[str, float]:
    import torch

    from knobcap.training.loop import validation_batches
    from knobcap.training.sampler import make_sampler

    sampler = make_sampler(data, context, config, device)
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    params = list(module.model.parameters())
    out = {"data": 0.0, "forward": 0.0, "loss": 0.0, "backward": 0.0, "optimiser+ema": 0.0}

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for step in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        x, y, c, energy = sampler.batch(0, step)
        sync()
        t1 = time.perf_counter()
        y_hat = module.predict_batch(x, c, y.shape[-1])
        sync()
        t2 = time.perf_counter()
        loss = module.loss(y_hat, y, energy)["loss"]
        sync()
        t3 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t4 = time.perf_counter()
        if config.gradient_clip:
            torch.nn.utils.clip_grad_norm_(params, config.gradient_clip)
        optimizer.step()
        scheduler.step()
        module.update_ema(step)
        sync()
        t5 = time.perf_counter()
        if step >= 2:
            for key, seconds in zip(out, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                out[key] += seconds / steps
    t0 = time.perf_counter()
    with torch.no_grad():
        module.eval()
        module.on_validation_epoch_start()
        for i, batch in enumerate(validation_batches(data, context, config, device)):
            module.validation_step(batch, i)
        module.train()
    sync()
    out["validation"] = (time.perf_counter() - t0) / config.steps_per_epoch
    return out


def time_loop(data: Any, config: Any, epochs: int = 3) -> float:
    """Seconds per step of :func:`train` between the ends of epoch 1 and epoch ``epochs``."""
    from knobcap.training.loop import train
    from knobcap.training.run import Run

    folder = Path(tempfile.mkdtemp(prefix="knobcap-speed-")) / "run"
    config.epochs, config.max_minutes = epochs, None
    train(data, config, folder, progress=False, say=lambda _: None)
    minutes = [float(r["minutes"]) for r in Run(folder).read_log()]
    return (minutes[-1] - minutes[0]) * 60.0 / ((len(minutes) - 1) * config.steps_per_epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", nargs="+", default=["default", "nam"], choices=["default", "nam"])
    parser.add_argument("--steps", type=int, default=12, help="steps timed per repeat (parts)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-steps", type=int, default=100,
                        help="steps per epoch of the loop run (TrainConfig's default)")
    parser.add_argument("--config", default="{}", help="JSON object of TrainConfig fields")
    parser.add_argument("--no-loop", action="store_true", help="time the parts only")
    parser.add_argument("--loop-only", action="store_true",
                        help="time the loop only (also runs on an older knobcap, for a before figure)")
    parser.add_argument("--no-cuda", action="store_true")
    parser.add_argument("--kernels", nargs="+", default=None, choices=["auto", "torch", "numba"],
                        help="compare TrainConfig.kernel values in one run, alternating (the WaveNet's "
                             "training kernel; not passed to an older knobcap when omitted)")
    args = parser.parse_args()

    import torch

    from knobcap.training.config import TrainConfig

    data = synthetic_data()
    sizes = model_sizes(data.controls.vector_size)
    devices = [("cpu", t) for t in args.threads]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(("cuda", 0))
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
          f"torch {torch.__version__}" + (f", {torch.cuda.get_device_name(0)}" if any(
              d == "cuda" for d, _ in devices) else ""))
    print(f"data: {len(data.takes)} takes of {len(data.x) / data.sample_rate:g} s; "
          f"options {args.config}")
    for size in args.sizes:
        for device, threads in devices:
            options = {"model": sizes[size], "steps_per_epoch": args.loop_steps, "seed": 0,
                       "accelerator": "gpu" if device == "cuda" else "cpu", **json.loads(args.config)}
            if device == "cpu":
                options["threads"] = threads
                torch.set_num_threads(threads)
            config = TrainConfig.from_dict(options, "--config")
            scored = config.batch_size * config.segment_length
            where = f"{device}" + (f" {threads} thread{'s' * (threads > 1)}" if device == "cpu" else "")
            print(f"\n{size} model on {where}, batch {config.batch_size} x {config.segment_length} "
                  "scored samples:", flush=True)
            kernels = args.kernels or [None]
            label = {k: "" if k is None else f" [kernel {k}]" for k in kernels}
            with_kernel = {k: options if k is None else {**options, "kernel": k} for k in kernels}
            if not args.loop_only:  # repeats alternate between the kernels
                runs: dict[Any, list[dict[str, float]]] = {k: [] for k in kernels}
                for _ in range(args.repeats):
                    for k in kernels:
                        runs[k].append(time_parts(data, TrainConfig.from_dict(with_kernel[k], "--config"),
                                                  device, args.steps))
                for k in kernels:
                    parts = {p: statistics.median(r[p] for r in runs[k]) for p in runs[k][0]}
                    total = sum(parts.values())
                    print(f"  parts{label[k]} (ms/step): "
                          + ", ".join(f"{p} {1e3 * v:.1f}" for p, v in parts.items())
                          + f"; sum {1e3 * total:.1f} -> {scored / total:,.0f} scored samples/s, "
                          f"{1 / total:.2f} steps/s", flush=True)
            if not args.no_loop:
                loops: dict[Any, list[float]] = {k: [] for k in kernels}
                for _ in range(max(1, args.repeats - 1)):
                    for k in kernels:
                        loops[k].append(time_loop(data, TrainConfig.from_dict(with_kernel[k], "--config")))
                for k in kernels:
                    per_step = statistics.median(loops[k])
                    print(f"  loop{label[k]} (Lightning, {args.loop_steps} steps an epoch, validation "
                          f"included): {scored / per_step:,.0f} scored samples/s, {1 / per_step:.2f} "
                          f"steps/s (runs: {', '.join(f'{1 / s:.2f}' for s in loops[k])} steps/s)",
                          flush=True)

if __name__ == "__main__":
    main()
