"""Test helpers for the report and play tests: a tiny random model file and a run folder (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from knobcap.controls import Controls, Knob, Switch
from knobcap.models.architectures import weight_shapes
from knobcap.models.modelfile import ModelFile, save_model_file

RATE = 48_000


def tiny_controls() -> Controls:
    return Controls(knobs=(Knob("drive", taper="audio"), Knob("tone")),
                    switches=(Switch("diodes", ("silicon", "led")),), name="Tiny Drive")


def tiny_model(path: Path, controls: Controls | None = None, seed: int = 0) -> Path:
    """A small conditioned WaveNet with random weights whose output clearly depends on every control."""
    controls = controls or tiny_controls()
    config = {"n_controls": controls.vector_size,
              "arrays": [{"channels": 4, "head_size": 2, "kernel_size": 3, "dilations": [1, 2, 4]},
                         {"channels": 2, "head_size": 1, "kernel_size": 3, "dilations": [1, 2]}],
              "head_scale": 0.3, "activation": "tanh"}
    rng = np.random.default_rng(seed)
    weights = {name: (rng.standard_normal(shape) * (0.0 if name.endswith("bias") else 0.5)).astype(np.float32)
               for name, shape in weight_shapes("wavenet", config).items()}
    for name, w in weights.items():
        if name.endswith("mixin.weight"):  # the input drives the net; the controls shift it gently
            w[:, 0] *= 6.0
            w[:, 1:] *= 0.4
    save_model_file(path, ModelFile("wavenet", config, controls, RATE, weights, {"test": True}))
    return path


def make_run(root: Path, controls: Controls | None = None, model: bool = True, grid: bool = True,
             history: str = "csv") -> Path:
    """A session folder with plan.csv and a run folder with metrics.json (evaluate's layout)."""
    controls = controls or tiny_controls()
    run = root / "runs" / "r1"
    run.mkdir(parents=True)
    from knobcap.controls import save_controls

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
