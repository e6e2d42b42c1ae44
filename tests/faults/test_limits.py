"""Issue 15, part B, the size cases: whatever a file or an option declares, knobcap counts it against
:mod:`knobcap.limits` before allocating, and refuses with one line that names the file or option and
the limit. Each case runs the real command in a subprocess capped at 1 GiB of address space
(``resource.setrlimit(RLIMIT_AS)``), so a regression shows as a crash or a traceback, not as a
machine taken down.

    4  a model declaring a receptive field of 2e9 (or 16 M) samples -> render and export nam refuse it
    5  export --grid 100000 / --grid 300                             -> max_grid_files, nothing written
    6  plan --n 1000000; 8 switches of 10 positions                  -> max_takes / max_switch_combinations
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from knobcap.controls import Controls, Knob, Switch, save_controls
from playkit import RATE, tiny_model

CAP = 1 << 30  # bytes of address space: a knobcap verb needs about 0.6 GiB
SRC = str(Path(__file__).resolve().parents[2] / "src")


def knobcap(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``python -m knobcap.cli ARGS`` in a subprocess capped at :data:`CAP` bytes of address space."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    env = {**os.environ, "COLUMNS": "2000", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": "1", "PYTHONPATH": SRC}
    env = {k: v for k, v in env.items() if not k.startswith("KNOBCAP_MAX")}
    return subprocess.run([sys.executable, "-m", "knobcap.cli", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap, env=env)


def refused(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The one error line of a refused command; it contains every needle."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def wavenet_file(path: Path, arrays: list[dict]) -> Path:
    """A model file that passes every check but its sizes: tiny controls, any weights (the config is
    refused before they are read)."""
    controls = Controls(knobs=(Knob("drive"),))
    data = {"format": "knobcap-model", "format_version": 1, "knobcap_version": "0",
            "architecture": "wavenet", "sample_rate": RATE, "controls": controls.to_dict(),
            "config": {"n_controls": 1, "arrays": arrays, "head_scale": 0.1, "activation": "tanh"},
            "weights": {"x": {"shape": [1], "dtype": "float32", "data": "AAAAAA=="}}, "metadata": {}}
    path.write_text(json.dumps(data))
    return path


def deep(arrays: int, layers: int, kernel: int = 64, dilation: int = 1 << 16) -> list[dict]:
    return [{"channels": 1, "head_size": 1, "kernel_size": kernel, "dilations": [dilation] * layers}
            for _ in range(arrays)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "in.wav"
    sf.write(path, (0.1 * np.sin(np.arange(2 * RATE) / 20)).astype(np.float32), RATE, subtype="FLOAT")
    return path


# --------------------------------------------------------------------------- case 4: receptive field
@pytest.mark.parametrize(("arrays", "limit"), [
    (deep(8, 64), "(max_layers)"),                 # 2.1e9 samples, in 512 layers
    (deep(4, 64), "(max_receptive_field)"),        # 1.06e9 samples in the 256 layers allowed
    (deep(1, 4), "(max_receptive_field)"),         # 16.5 M samples: a 6.5 KB file, a 58 s render
], ids=["2e9-512-layers", "1e9", "16M"])
def test_a_model_declaring_a_huge_receptive_field_is_refused_at_load(tmp_path, clip, arrays, limit):
    model = wavenet_file(tmp_path / "huge.knobcap", arrays)
    started = time.monotonic()
    line = refused(knobcap("render", str(model), str(clip), str(tmp_path / "out.wav")), str(model), limit,
                   "KNOBCAP_")
    assert not (tmp_path / "out.wav").exists()
    refused(knobcap("export", str(model), "nam", str(tmp_path / "out.nam")), str(model), limit)
    assert not (tmp_path / "out.nam").exists()
    assert time.monotonic() - started < 60, line


def test_the_limit_can_be_raised_from_the_environment(tmp_path):
    from knobcap.models.modelfile import ModelFileError, load_model_file

    model = wavenet_file(tmp_path / "wide.knobcap", deep(1, 2, kernel=3, dilation=1 << 16))  # 262 k samples
    with pytest.raises(ModelFileError, match="max_receptive_field"):
        load_model_file(model)
    os.environ["KNOBCAP_MAX_RECEPTIVE_FIELD"] = str(1 << 20)
    try:  # the size passes now: the next refusal is the (deliberately wrong) weights
        with pytest.raises(ModelFileError, match="weights do not match"):
            load_model_file(model)
    finally:
        del os.environ["KNOBCAP_MAX_RECEPTIVE_FIELD"]


# ------------------------------------------------------------------------------- case 5: export grid
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "model.knobcap")  # 2 knobs, a 2-way switch


@pytest.mark.parametrize(("grid", "count"), [("100000", "20,000,000,000"), ("300", "180,000")])
def test_a_huge_export_grid_is_counted_and_refused_before_writing(tmp_path, model, grid, count):
    out = tmp_path / "grid"
    refused(knobcap("export", str(model), "nam", str(out), "--grid", grid, timeout=60),
            f"--grid {grid}", count, "(max_grid_files)", "--max-files")
    assert not out.exists()


def test_max_files_raises_or_lowers_the_grid_limit(tmp_path, model):
    refused(knobcap("export", str(model), "nam", str(tmp_path / "a"), "--grid", "3", "--max-files", "5"),
            "18", "limit of 5")
    assert not (tmp_path / "a").exists()
    result = knobcap("export", str(model), "nam", str(tmp_path / "b"), "--grid", "2", "--max-files", "8")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "b").glob("*.nam"))) == 8


# ------------------------------------------------------------------------------------- case 6: plan
def test_plan_n_a_million_is_refused_before_designing(tmp_path):
    save_controls(Controls(knobs=(Knob("drive"), Knob("tone"))), tmp_path / "controls.toml")
    refused(knobcap("plan", str(tmp_path), "--n", "1000000", timeout=60), "--n 1000000", "(max_takes)",
            "KNOBCAP_MAX_TAKES")
    refused(knobcap("plan", str(tmp_path), "--minutes", "1e9", timeout=60), "--minutes", "(max_takes)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["controls.toml"]


def test_eight_switches_of_ten_positions_are_counted_not_enumerated(tmp_path):
    switches = tuple(Switch(f"s{i}", tuple(f"p{j}" for j in range(10))) for i in range(8))
    save_controls(Controls(knobs=(Knob("drive"),), switches=switches), tmp_path / "controls.toml")
    started = time.monotonic()
    refused(knobcap("plan", str(tmp_path), "--n", "20", timeout=60), "controls.toml", "100,000,000",
            "(max_switch_combinations)")
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["controls.toml"]
