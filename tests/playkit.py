"""Shared test helpers (plain functions; tests/conftest.py wraps them as fixtures).

One control set, one tiny model config, one session builder, and a tiny random model file and run
folder for the report and play tests (no training).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from knobcap.capture.session import PlannedTake, plan_csv_text
from knobcap.capture.testsignal import TestSignal, generate_signal, write_signal
from knobcap.controls import Controls, Knob, Switch, save_controls
from knobcap.fileio import write_wav_atomic
from knobcap.models.architectures import weight_shapes
from knobcap.models.modelfile import ModelFile, save_model_file

RATE = 48_000

#: The two WaveNet arrays of every tiny test model (receptive field 1 + 2*(1+2+4) + 2*(1+2) = 21 samples).
TINY_ARRAYS = ({"channels": 4, "head_size": 2, "kernel_size": 3, "dilations": [1, 2, 4]},
               {"channels": 2, "head_size": 1, "kernel_size": 3, "dilations": [1, 2]})


def tiny_controls(*extra_switches: Switch, name: str = "Tiny Drive") -> Controls:
    """The test pedal: drive (audio taper), tone and a diodes switch, plus any extra switches."""
    return Controls(knobs=(Knob("drive", taper="audio"), Knob("tone")),
                    switches=(Switch("diodes", ("silicon", "led")), *extra_switches), name=name)


def tiny_wavenet_config(n_controls: int, **changes: object) -> dict:
    """A tiny conditioned WaveNet config (two small arrays, tanh); ``changes`` override its keys."""
    arrays = [dict(a, dilations=list(a["dilations"])) for a in TINY_ARRAYS]  # a fresh copy each call
    config: dict = {"n_controls": n_controls, "arrays": arrays, "head_scale": 0.3, "activation": "tanh"}
    config.update(changes)
    return config


def tiny_model(path: Path, controls: Controls | None = None, seed: int = 0) -> Path:
    """A small conditioned WaveNet with random weights whose output clearly depends on every control."""
    controls = controls or tiny_controls()
    config = tiny_wavenet_config(controls.vector_size)
    rng = np.random.default_rng(seed)
    weights = {name: (rng.standard_normal(shape) * (0.0 if name.endswith("bias") else 0.5)).astype(np.float32)
               for name, shape in weight_shapes("wavenet", config).items()}
    for name, w in weights.items():
        if name.endswith("mixin.weight"):  # the input drives the net; the controls shift it gently
            w[:, 0] *= 6.0
            w[:, 1:] *= 0.4
    save_model_file(path, ModelFile("wavenet", config, controls, RATE, weights, {"test": True}))
    return path


Device = Callable[[np.ndarray, Mapping[str, object]], np.ndarray]


def make_session(root: Path, controls: Controls, plan: Sequence[tuple[str, Mapping[str, object], str]],
                 signal: TestSignal | None = None, device: Device | None = None) -> Path:
    """A session folder: controls.toml, plan.csv (``(take, setting, role)`` rows), input.wav (``signal``,
    a TestSignal; a 30 s one if None) and takes/ holding ``device(input, setting)`` for every take
    (empty when ``device`` is None)."""

    root.mkdir(parents=True)
    save_controls(controls, root / "controls.toml")
    rows = [PlannedTake(take, dict(setting), role) for take, setting, role in plan]  # type: ignore[arg-type]
    (root / "plan.csv").write_text(plan_csv_text(controls, rows), encoding="utf-8")
    signal = signal if signal is not None else generate_signal(30.0)
    write_signal(root / "input.wav", signal)
    (root / "takes").mkdir()
    if device is not None:
        for row in rows:
            write_wav_atomic(root / "takes" / f"{row.take}.wav", device(signal.audio, row.setting), RATE)
    return root


def make_run(root: Path, controls: Controls | None = None, model: bool = True, grid: bool = True,
             history: str = "csv") -> Path:
    """A session folder with plan.csv and a run folder with metrics.json (evaluate's layout)."""
    controls = controls or tiny_controls()
    run = root / "runs" / "r1"
    run.mkdir(parents=True)
    save_controls(controls, root / "controls.toml")
    rng = np.random.default_rng(1)
    lines = ["take," + ",".join(controls.names) + ",role"]
    rows = []
    for i in range(8):
        setting = {k.name: round(float(rng.uniform(k.min, k.max)), 3) for k in controls.knobs}
        setting.update({s.name: s.positions[i % len(s.positions)] for s in controls.switches})
        role = "holdout" if i >= 6 else ("anchor" if i == 0 else "train")
        take = f"take{i + 1:02d}"
        lines.append(",".join([take, *(str(setting[n]) for n in controls.names), role]))
        rows.append({"take": take, "role": role, "setting": setting, "esr": 0.002 * (i + 1)})
    (root / "plan.csv").write_text("\n".join(lines) + "\n")
    metrics: dict[str, object] = {
        "format": "knobcap-metrics", "device": None,
        "heldout_time": {"rows": [r for r in rows if r["role"] != "holdout"]},
        "heldout_settings": {"rows": [r for r in rows if r["role"] == "holdout"]},
    }
    if grid:
        from knobcap.evaluation.evaluate import dense_grid

        metrics["grid"] = {"rows": [{"setting": s, "esr": 0.001 + 0.01 * float(controls.to_vector(s)[0])}
                                    for s in dense_grid(controls, levels=4)]}
    (run / "metrics.json").write_text(json.dumps(metrics))
    if history == "csv":
        (run / "train_log.csv").write_text(
            "epoch,train_loss,val_esr\n"
            + "".join(f"{e},{0.5 * 0.8 ** e},{0.2 * 0.7 ** e}\n" for e in range(6)))
    elif history == "json":
        (run / "history.json").write_text(json.dumps([{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(4)]))
    if model:
        tiny_model(run / "model.knobcap", controls)
    return run
