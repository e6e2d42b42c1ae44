"""knobcap import (issue 14): existing recordings at their own rate, clips, per-take inputs, accepted
findings, and the device's polarity kept from the takes to the render."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from knobcap.capture.check import check_session
from knobcap.capture.importer import (
    ImportRefusedError,
    import_session,
    parse_clips,
    parse_take,
    read_takes_csv,
)
from knobcap.capture.options import OptionsError, parse_accept, update_options
from knobcap.capture.session import Session
from knobcap.training.config import TrainConfig
from knobcap.training.data import TrainingData, TrainingDataError, WindowDataset, validation_items
from knobcap.training.loop import train

RATE = 44_100
CLIP = RATE // 2  # 0.5 s


def music(n: int, seed: int) -> np.ndarray:
    """Band-limited noise bursts, each clip starting and ending near silence (a DI-like input)."""
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.standard_normal(n), np.hanning(9) / 4, mode="same")
    envelope = np.abs(np.sin(np.pi * np.arange(n) / CLIP))
    return (0.4 * x * envelope).astype(np.float32)


def inverting(x: np.ndarray, drive: float) -> np.ndarray:
    """A polarity-inverting soft clipper with a one-pole low-pass (memory, so clips start from rest)."""
    g = 1.0 + drive
    y = -np.tanh(g * x) / np.sqrt(g)
    out = np.empty_like(y)
    state = 0.0
    for i, v in enumerate(y):
        state = 0.6 * state + 0.4 * v
        out[i] = state
    return out.astype(np.float32)


def per_clip(x: np.ndarray, drive: float) -> np.ndarray:
    return np.concatenate([inverting(x[a:a + CLIP], drive) for a in range(0, len(x), CLIP)])


def dataset(folder: Path, seconds: float = 4.0) -> Path:
    """di.wav, di2.wav, four takes at 44.1 kHz (16-bit) and takes.csv (one take with its own input)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = round(seconds * RATE)
    di, di2 = music(n, 1), music(n, 2)
    sf.write(folder / "di.wav", di, RATE, subtype="PCM_16")
    sf.write(folder / "di2.wav", di2, RATE, subtype="PCM_16")
    rows = [["file", "drive", "role", "input"]]
    for k, (drive, role, own) in enumerate([(0, "train", False), (10, "train", False), (5, "train", True),
                                            (3, "holdout", False)]):
        name = f"t{k}.wav"
        sf.write(folder / name, per_clip(di2 if own else di, drive), RATE, subtype="PCM_16")
        rows.append([name, str(drive), role, "di2.wav" if own else ""])
    with (folder / "takes.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return folder / "takes.csv"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_config(**changes: object) -> TrainConfig:
    options: dict = {"model": {"arrays": [{"channels": 4, "head_size": 1, "kernel_size": 3,
                                           "dilations": [1, 2, 4]}], "head_scale": 1.0,
                               "activation": "tanh"},
                     "epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "segment_length": 2048,
                     "mrstft_weight": 0.0, "val_max_seconds": None, "threads": 1, "warmup_steps": 1}
    options.update(changes)
    return TrainConfig.from_dict(options)


@pytest.fixture
def imported(tmp_path: Path) -> Path:
    table = dataset(tmp_path / "data")
    import_session(tmp_path / "s", read_takes_csv(table), input_file=tmp_path / "data/di.wav", clips=0.5,
                   skip=0.05, holdout_seconds=1.0)
    return tmp_path / "s"


# ------------------------------------------------------------------------------------------ import
def test_import_from_csv_copies_files_keeps_the_rate_and_infers_controls(tmp_path: Path) -> None:
    table = dataset(tmp_path / "data")
    before = {p.name: digest(p) for p in (tmp_path / "data").glob("*.wav")}
    result = import_session(tmp_path / "s", read_takes_csv(table), input_file=tmp_path / "data/di.wav",
                            clips=0.5, skip=0.05, holdout_seconds=1.0)
    assert {p.name: digest(p) for p in (tmp_path / "data").glob("*.wav")} == before  # never modified
    assert result.controls_source == "inferred" and result.sample_rate == RATE and not result.resampled_from
    knob = result.controls.knobs[0]
    assert (knob.name, knob.min, knob.max) == ("drive", 0.0, 10.0)
    session = Session.open(tmp_path / "s")
    assert [(t.take, t.role, t.input) for t in session.plan()] == [
        ("take01", "train", ""), ("take02", "train", ""), ("take03", "train", "inputs/input02.wav"),
        ("take04", "holdout", "")]
    assert digest(session.take_path("take02")) == before["t1.wav"]   # copied byte for byte
    assert digest(session.input_path) == before["di.wav"]
    signal_map = session.input().map
    assert signal_map.sample_rate == RATE and len(signal_map.clips) == 8
    assert signal_map.skip == round(0.05 * RATE)
    held = signal_map.segment("validation_2")
    assert (held.start, held.stop) == (6 * CLIP, 8 * CLIP)  # the last second: two whole clips
    assert session.take_input("take03").map.length == 8 * CLIP


def test_import_from_take_options_infers_a_switch_and_keeps_given_controls(tmp_path: Path) -> None:
    dataset(tmp_path / "data")
    d = tmp_path / "data"
    specs = [parse_take(f"{d}/t0.wav drive=0 mode=a"), parse_take(f"{d}/t1.wav drive=10 mode=b"),
             parse_take(f"{d}/t3.wav drive=3 mode=a role=holdout")]
    result = import_session(tmp_path / "s", specs, input_file=d / "di.wav")
    assert result.controls.switches[0].positions == ("a", "b") and result.controls_source == "inferred"
    assert [t.role for t in result.takes] == ["train", "train", "holdout"]
    (tmp_path / "controls.toml").write_text('[[knob]]\nname = "drive"\nmax = 10\n\n[[knob]]\nname = "tone"\n')
    given = import_session(tmp_path / "s2", [parse_take(f"{d}/t0.wav drive=2 tone=5"),
                                             parse_take(f"{d}/t1.wav drive=9 tone=1")],
                           input_file=d / "di.wav", controls_file=tmp_path / "controls.toml")
    assert given.controls_source == "given" and given.controls.names == ["drive", "tone"]
    assert parse_clips("0.5") == 0.5 and parse_clips("0,0.5,1") == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(("case", "message"), [
    ("missing", r"nope\.wav: no such file"),
    ("unknown", r"unknown control 'gain'"),
    ("rates", r"different rates .* --rate"),
    ("clips", r"not a whole number of 0\.3 s clips"),
    ("role", r"role 'test' must be one of"),
    ("constant", r"'drive' is 3 in every take"),
    ("all_held", r"every take is held out"),
    ("no_input", r"names no input file; give --input"),
    ("exists", r"exists and is not an empty folder"),
])
def test_every_refusal_is_one_clear_line(tmp_path: Path, case: str, message: str) -> None:
    dataset(tmp_path / "data")
    d = tmp_path / "data"
    specs = [parse_take(f"{d}/t0.wav drive=0"), parse_take(f"{d}/t1.wav drive=10")]
    options: dict = {"input_file": d / "di.wav"}
    if case == "missing":
        specs.append(parse_take(f"{d}/nope.wav drive=4"))
    elif case == "unknown":
        (tmp_path / "c.toml").write_text('[[knob]]\nname = "drive"\n')
        specs = [parse_take(f"{d}/t0.wav gain=1"), parse_take(f"{d}/t1.wav gain=2")]
        options["controls_file"] = tmp_path / "c.toml"
    elif case == "rates":
        sf.write(d / "fast.wav", np.zeros(4800, np.float32), 48_000)
        specs.append(parse_take(f"{d}/fast.wav drive=4"))
    elif case == "clips":
        options["clips"] = 0.3
    elif case == "role":
        specs.append(parse_take(f"{d}/t3.wav drive=4 role=test"))
    elif case == "constant":
        specs = [parse_take(f"{d}/t0.wav drive=3"), parse_take(f"{d}/t1.wav drive=3")]
    elif case == "all_held":
        specs = [parse_take(f"{d}/t{k}.wav drive={k} role=holdout") for k in (0, 1)]
    elif case == "no_input":
        options = {}
    elif case == "exists":
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / "keep.txt").write_text("mine")
    with pytest.raises(ImportRefusedError, match=message) as caught:
        import_session(tmp_path / "s", specs, **options)
    assert "\n" not in str(caught.value)
    if case != "exists":
        assert not (tmp_path / "s").exists()  # nothing half-made is left behind
    else:
        assert (tmp_path / "s" / "keep.txt").read_text() == "mine"


def test_rate_option_resamples_once(tmp_path: Path) -> None:
    dataset(tmp_path / "data", seconds=1.0)
    d = tmp_path / "data"
    specs = [parse_take(f"{d}/t0.wav drive=0"), parse_take(f"{d}/t1.wav drive=9")]
    result = import_session(tmp_path / "s", specs, input_file=d / "di.wav", rate=48_000)
    assert result.sample_rate == 48_000 and result.resampled_from == [RATE]
    assert sf.info(str(tmp_path / "s/input.wav")).samplerate == 48_000
    imported = json.loads((tmp_path / "s/session.json").read_text())["imported"]
    assert "resample_poly" in imported["resampler"]


# ------------------------------------------------------------------------------------------ clips
def test_training_windows_stay_inside_one_clip_after_its_skip(imported: Path) -> None:
    check_session(Session.open(imported))
    data = TrainingData.from_session(imported)
    assert data.sample_rate == RATE and data.skip == round(0.05 * RATE) and len(data.clips) == 8
    context, length = 300, 2048
    n = len(data.x)
    data.x = np.arange(1, n + 1, dtype=np.float32)  # nonzero everywhere: silence is the padding
    for take in data.takes:  # each sample names its index, so a window tells where it was cut
        take.audio = np.arange(n, dtype=np.float32)
        take.x = None if take.x is None else data.x
    windows = WindowDataset(data, context, length, items=300, seed=3)
    starts = [a for a, _ in data.clips]
    seen = set()
    for i in range(300):
        x, y, _ = windows[i]
        first = int(y[0])
        clip = max(a for a in starts if a <= first)
        stop = min(b for b in [*starts, n] if b > clip)
        assert first >= clip + data.skip and first + length <= stop  # never across a join
        assert first + length <= data.val_span[0]                     # never into held-out time
        silent = max(0, context - (first - clip))
        assert not np.any(x.numpy()[:silent])  # the context before the clip's start is silence
        assert np.all(x.numpy()[silent:] > 0)
        seen.add(clip)
    assert len(seen) == 6  # every training clip is drawn


def test_validation_scores_each_clip_from_rest_and_skips_its_start(imported: Path) -> None:
    check_session(Session.open(imported))
    data = TrainingData.from_session(imported)
    items = validation_items(data, context=300, max_samples=None)
    take1 = [i for i in items if i[0] == "take01"]
    skip = round(0.05 * RATE)
    assert [(s, e, r) for _, _, s, e, r in take1] == [(6 * CLIP + skip, 7 * CLIP, 6 * CLIP),
                                                      (7 * CLIP + skip, 8 * CLIP, 7 * CLIP)]


def test_per_take_input_is_paired_with_its_own_take(imported: Path) -> None:
    check_session(Session.open(imported))
    data = TrainingData.from_session(imported)
    own = next(t for t in data.takes if t.name == "take03")
    di2, _ = sf.read(str(imported / "inputs/input02.wav"), dtype="float32")
    np.testing.assert_array_equal(data.input_of(own), di2)
    assert data.input_of(data.takes[0]) is data.x and not np.array_equal(data.x, di2)
    # the take is the device on its own input (the polarity kept; latency 0 in this dataset)
    np.testing.assert_allclose(own.audio - own.audio.mean(), per_clip(di2, 5) - per_clip(di2, 5).mean(),
                               atol=2e-4)


# ------------------------------------------------------------------------------------------ clipping
def test_a_clipped_take_is_refused_until_the_warning_is_accepted(imported: Path) -> None:
    session = Session.open(imported)
    audio, _ = sf.read(str(session.take_path("take02")), dtype="float32")
    audio[1000] = 1.0  # a 16-bit recording touching full scale
    session.take_path("take02").unlink()
    sf.write(session.take_path("take02"), audio, RATE, subtype="PCM_16")
    report = check_session(session)
    row = next(t for t in report.takes if t.take == "take02")
    assert row.status == "fail" and [p.code for p in row.problems] == ["clipped"]
    assert "--accept clipped:take02" in row.problems[0].message
    with pytest.raises(TrainingDataError, match=r"take02.*failed 'knobcap check'"):
        TrainingData.from_session(imported)
    with pytest.raises(OptionsError, match="'latency' cannot be accepted"):
        parse_accept(["latency:take02"], ["take02"])
    with pytest.raises(OptionsError, match="no take 'take09'"):
        parse_accept(["clipped:take09"], ["take02"])
    update_options(imported, parse_accept(["clipped:take02"], [t.take for t in session.plan()]))
    report = check_session(Session.open(imported))
    row = next(t for t in report.takes if t.take == "take02")
    assert report.ok and row.status == "warn" and "accepted" in row.problems[0].short
    assert json.loads((imported / "session.json").read_text())["accepted"] == {"take02": ["clipped"]}
    TrainingData.from_session(imported)  # trained on as it is


def test_dc_advice_for_imports_says_what_the_model_does(imported: Path) -> None:
    session = Session.open(imported)
    audio, _ = sf.read(str(session.take_path("take01")), dtype="float32")
    session.take_path("take01").unlink()
    sf.write(session.take_path("take01"), audio + 0.05, RATE, subtype="PCM_16")
    row = next(t for t in check_session(session).takes if t.take == "take01")
    message = next(p.message for p in row.problems if p.code == "dc_offset")
    assert "removes it" in message and "record again" not in message
    assert abs(float(np.mean(Session.open(imported).aligned_take("take01")))) < 1e-6


# ------------------------------------------------------------------------------------------ polarity
def test_polarity_is_the_devices_and_a_tie_is_refused(imported: Path) -> None:
    report = check_session(Session.open(imported))
    assert report.polarity["value"] == -1 and report.polarity["inverting_takes"] == 4
    session = Session.open(imported)
    aligned = session.aligned_take("take01")
    raw, _ = sf.read(str(session.take_path("take01")), dtype="float32")
    assert float(np.dot(aligned, raw - raw.mean())) > 0  # kept as recorded, not flipped
    for take in ("take01", "take02"):  # two takes wired the other way round: 2 against 2
        audio, _ = sf.read(str(session.take_path(take)), dtype="float32")
        session.take_path(take).unlink()
        sf.write(session.take_path(take), -audio, RATE, subtype="PCM_16")
    report = check_session(Session.open(imported))
    assert any(p.code == "polarity" and "train refuses" in p.message for p in report.problems)
    with pytest.raises(TrainingDataError, match=r"polarity is ambiguous.*--polarity inverting"):
        TrainingData.from_session(imported)
    update_options(imported, polarity=-1)
    data = TrainingData.from_session(imported)
    assert data.info["polarity"] == -1 and data.info["polarity_source"] == "declared in session.json"


def test_44k_end_to_end_an_inverting_device_renders_inverted(imported: Path, tmp_path: Path) -> None:
    from knobcap import load_model
    from knobcap.models.modelfile import load_model_file

    assert check_session(Session.open(imported)).ok
    data = TrainingData.from_session(imported)
    result = train(data, tiny_config(epochs=3, steps_per_epoch=15, lr=0.01), imported / "runs/r",
                   progress=False)
    model_file = load_model_file(result.model_path)
    assert model_file.sample_rate == RATE
    assert model_file.metadata["polarity"] == -1
    assert "measured by knobcap check" in model_file.metadata["polarity_source"]
    x = music(RATE, 7)  # new audio at the held-out setting
    device = np.concatenate([inverting(x[a:a + CLIP], 3.0) for a in range(0, RATE, CLIP)])
    y = np.asarray(load_model(result.model_path)(x, RATE, drive=3.0), np.float64)
    same = float(np.sum((y - device) ** 2) / np.sum(device ** 2))
    opposite = float(np.sum((y + device) ** 2) / np.sum(device ** 2))
    assert same < 0.5 < 1.5 < opposite, (same, opposite)  # the device's polarity, not its inverse
