"""The session folder: plan.csv, opening with clear errors, safe re-planning, aligned takes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from knobcap.capture.session import (
    PlannedTake,
    Session,
    SessionError,
    init_session,
    make_plan,
    plan_csv_text,
    read_plan,
)
from knobcap.capture.testsignal import read_signal
from knobcap.controls import Controls, save_controls
from knobcap.fileio import write_wav_atomic
from playkit import tiny_controls

RATE = 48_000


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("base") / "s"
    root.mkdir()
    save_controls(tiny_controls(), root / "controls.toml")
    make_plan(root, n=8, seconds=30)
    return root


@pytest.fixture
def session_dir(base: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "s"))


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ plan.csv
def test_plan_csv_round_trips_in_recording_order(session_dir: Path) -> None:
    session = Session.open(session_dir)
    plan = session.plan()
    assert [p.take for p in plan] == [f"take{i:02d}" for i in range(1, 9)]
    text = (session_dir / "plan.csv").read_text()
    assert text.splitlines()[0] == "take,drive,tone,diodes,role"
    assert plan_csv_text(session.controls, plan) == text
    assert {p.role for p in plan} == {"train", "anchor", "holdout"}
    trained, held = session.training_takes(), session.holdout_takes()
    assert len(trained) + len(held) == 8 and not {p.take for p in trained} & {p.take for p in held}


@pytest.mark.parametrize("header, row, message", [
    ("take,drive,tone,role", "take01,1,2,train", "missing diodes"),
    ("take,drive,tone,diodes,level,role", "take01,1,2,silicon,3,train", "unknown level"),
    ("take,drive,tone,diodes,role", "take01,1,2,silicon,training", "role 'training'"),
    ("take,drive,tone,diodes,role", "first,1,2,silicon,train", "take name 'first'"),
    ("take,drive,tone,diodes,role", "take01,11,2,silicon,train", "line 2: knob 'drive' = 11 is out of range"),
    ("take,drive,tone,diodes,role", "take01,1,2,blue,train", "no position 'blue'"),
    ("take,drive,tone,diodes,role", "take01,1,2,silicon", "4 values but 5 columns"),
])
def test_bad_plan_rows_are_refused_with_the_file_and_line(tmp_path: Path, controls: Controls, header: str,
                                                           row: str, message: str) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(f"{header}\n{row}\n")
    with pytest.raises(SessionError, match=message) as info:
        read_plan(path, controls)
    assert str(path) in str(info.value)


def test_duplicate_takes_are_refused(tmp_path: Path, controls: Controls) -> None:
    path = tmp_path / "plan.csv"
    path.write_text("take,drive,tone,diodes,role\ntake01,1,2,silicon,train\ntake01,3,2,silicon,train\n")
    with pytest.raises(SessionError, match="listed twice"):
        read_plan(path, controls)


# ------------------------------------------------------------------------------------------ open
def test_open_names_the_missing_file_and_the_command(session_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="knobcap init"):
        Session.open(tmp_path / "nowhere")
    for name, command in (("input.wav", "knobcap plan"), ("plan.csv", "knobcap plan"),
                          ("controls.toml", "knobcap init")):
        (session_dir / name).unlink()
        with pytest.raises(SessionError, match=command) as info:
            Session.open(session_dir)
        assert name in str(info.value)


# ------------------------------------------------------------------------------------------ planning
def test_replanning_with_the_same_options_changes_nothing(session_dir: Path) -> None:
    before = snapshot(session_dir)
    result = make_plan(session_dir, n=8, seconds=30)
    assert not result.wrote_plan and not result.wrote_input
    assert snapshot(session_dir) == before


def test_replanning_before_any_take_rewrites_the_plan(session_dir: Path) -> None:
    result = make_plan(session_dir, n=10, seconds=30, seed=4)
    assert result.wrote_plan and not result.wrote_input
    assert len(Session.open(session_dir).plan()) == 10
    longer = make_plan(session_dir, n=10, seconds=35, seed=4)
    assert longer.wrote_input and read_signal(session_dir / "input.wav").map.length == 35 * RATE


def test_replanning_never_touches_recorded_takes(session_dir: Path) -> None:
    session = Session.open(session_dir)
    write_wav_atomic(session.take_path("take01"), np.zeros(RATE), RATE)
    before = snapshot(session_dir)
    with pytest.raises(SessionError, match="1 recording"):
        make_plan(session_dir, n=10, seconds=30)
    with pytest.raises(SessionError, match="invalidate"):
        make_plan(session_dir, n=8, seconds=40)
    assert snapshot(session_dir) == before
    assert not make_plan(session_dir, n=8, seconds=30).wrote_plan        # same plan: fine


def test_a_plan_with_rows_removed_and_added_is_kept_and_a_reordered_one_refused(session_dir: Path) -> None:
    """A user removes the row of a setting where the device is silent (check's advice), and 'plan
    --more' appends rows: re-planning with the same options keeps that plan; any other change is refused."""
    session = Session.open(session_dir)
    rows = session.plan()
    write_wav_atomic(session.take_path(rows[0].take), np.zeros(RATE), RATE)
    extra = PlannedTake("take99", dict(rows[1].setting), "train")
    edited = plan_csv_text(session.controls, [rows[0], *rows[2:], extra])
    session.plan_path.write_text(edited)
    assert not make_plan(session_dir, n=8, seconds=30).wrote_plan
    assert session.plan_path.read_text() == edited
    session.plan_path.write_text(plan_csv_text(session.controls, [rows[2], rows[0], *rows[3:]]))
    with pytest.raises(SessionError, match="1 recording"):
        make_plan(session_dir, n=8, seconds=30)


def test_plan_refuses_contradictory_options(session_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SessionError, match="not both"):
        make_plan(session_dir, n=8, minutes=30)
    with pytest.raises(SessionError, match="knobcap init"):
        make_plan(tmp_path)


def test_own_input_file_is_used_as_it_is(tmp_path: Path, controls: Controls) -> None:
    root = tmp_path / "s"
    init_session(root, controls)
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(20 * RATE)).clip(-0.9, 0.9).astype(np.float32)
    mine = tmp_path / "reamp.wav"
    sf.write(mine, audio, RATE, subtype="PCM_24")
    result = make_plan(root, n=8, input_file=mine)
    signal = read_signal(root / "input.wav")
    assert result.signal_seconds == pytest.approx(20.0)
    assert signal.map.blips == () and signal.map.version is None
    assert np.max(np.abs(signal.audio - sf.read(mine, dtype="float32")[0])) < 2 ** -22
    sf.write(tmp_path / "cd.wav", audio, 44_100)
    with pytest.raises(SessionError, match="44100 Hz") as info:
        make_plan(tmp_path / "s", n=8, input_file=tmp_path / "cd.wav")
    assert "cd.wav" in str(info.value)


def test_init_writes_a_template_that_plans_and_never_overwrites(tmp_path: Path) -> None:
    path = init_session(tmp_path / "new")
    text = path.read_text()
    assert text.lstrip().startswith("#") and 'taper = "audio"' in text
    assert make_plan(tmp_path / "new", n=6, seconds=30).takes
    with pytest.raises(SessionError, match="never overwrites"):
        init_session(tmp_path / "new")


# ------------------------------------------------------------------------------------------ takes
def delayed(session: Session, latency: int, polarity: int, gain: float = 0.5) -> np.ndarray:
    x = session.input().audio
    y = np.zeros(len(x) + latency, np.float32)
    y[latency:] = polarity * gain * x
    return y


def test_aligned_take_undoes_latency_and_keeps_the_device_polarity(session_dir: Path) -> None:
    session = Session.open(session_dir)
    take = session.plan()[2].take
    write_wav_atomic(session.take_path(take), delayed(session, 437, -1), RATE)
    assert session.latency(take).samples == 437 and session.latency(take).polarity == -1
    aligned = session.aligned_take(take)
    assert aligned.shape == session.input().audio.shape
    # polarity is the device's (issue 14): an inverted take stays inverted, only its delay is undone
    np.testing.assert_allclose(aligned, -0.5 * session.input().audio, atol=1e-6)
    assert [p.take for p in session.recorded_takes()] == [take]
    assert take not in [p.take for p in session.missing_takes()]


def test_latency_from_check_json_wins(session_dir: Path) -> None:
    session = Session.open(session_dir)
    write_wav_atomic(session.take_path("take01"), delayed(session, 300, 1), RATE)
    (session_dir / "check.json").write_text(json.dumps(
        {"ok": True, "takes": {"take01": {"status": "ok", "latency": 250, "polarity": 1}}}))
    assert session.latency("take01").samples == 250
    aligned = session.aligned_take("take01")
    np.testing.assert_allclose(aligned[50:], 0.5 * session.input().audio[:-50], atol=1e-6)  # 50 late


def test_reading_an_unrecorded_or_unknown_take_says_what_to_do(session_dir: Path) -> None:
    session = Session.open(session_dir)
    with pytest.raises(SessionError, match="not recorded yet"):
        session.aligned_take("take01")
    with pytest.raises(SessionError, match="no take 'take99'"):
        session.read_take("take99")
    write_wav_atomic(session.take_path("take02"), np.zeros(RATE), 44_100)
    with pytest.raises(ValueError, match="44100"):
        session.read_take("take02")

