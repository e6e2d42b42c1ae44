"""knobcap demo: the folder rules (never touch a user's folder; resume a demo) and a tiny end-to-end run."""

from __future__ import annotations

import json

import pytest

from knobcap import demo
from playkit import tiny_wavenet_config


def test_new_or_empty_folder_becomes_a_marked_demo_folder(tmp_path):
    config = demo.DemoConfig.quick()
    assert demo.prepare_folder(tmp_path / "new", config) is False
    marker = json.loads((tmp_path / "new" / demo.MARKER).read_text())
    assert marker == config.to_dict()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert demo.prepare_folder(empty, config) is False


def test_a_demo_folder_is_resumed_only_with_the_same_sizes(tmp_path):
    folder = tmp_path / "d"
    demo.prepare_folder(folder, demo.DemoConfig.quick())
    (folder / "plan.csv").write_text("take\n")
    assert demo.prepare_folder(folder, demo.DemoConfig.quick()) is True
    with pytest.raises(demo.DemoError, match="other sizes"):
        demo.prepare_folder(folder, demo.DemoConfig.full())
    with pytest.raises(demo.DemoError, match="other sizes"):
        demo.prepare_folder(folder, demo.DemoConfig.quick(seed=1))


def test_a_users_folder_is_never_touched(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "take01.wav").write_bytes(b"precious")
    with pytest.raises(demo.DemoError, match="not a knobcap demo folder"):
        demo.prepare_folder(folder, demo.DemoConfig.quick())
    assert sorted(p.name for p in folder.iterdir()) == ["take01.wav"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(demo.DemoError):
        demo.prepare_folder(a_file, demo.DemoConfig.quick())


TINY_MODEL = tiny_wavenet_config(4, head_scale=0.02)  # the TS808's 4 control inputs, a quiet start


def tiny_config() -> demo.DemoConfig:
    """The demo's steps at the smallest sizes (the real --quick is timed by hand, see the README)."""
    return demo.DemoConfig(
        signal_seconds=30.0, takes=6, grid=2, di_settings=1, di_seconds=1.0,
        training={"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "segment_length": 2048,
                  "mrstft_fft_sizes": [256, 512], "val_max_seconds": 0.5, "model": TINY_MODEL,
                  "threads": 1})


@pytest.mark.slow
def test_demo_runs_every_step_and_resumes_without_redoing_them(tmp_path):
    pytest.importorskip("torch")
    from rich.console import Console

    folder = tmp_path / "demo"
    console = Console(record=True, width=120)
    result = demo.run_demo(folder, tiny_config(), console)
    assert result.model_path.is_file() and result.metrics_path.is_file()
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["device"] == "ts808"
    assert len(metrics["grid"]["rows"]) == 2 * 2 * 4
    assert len(metrics["heldout_settings"]["rows"]) >= 1 and len(metrics["di"]["rows"]) == 1
    assert len(list((folder / "takes").glob("*.wav"))) == 6
    assert json.loads((folder / "check.json").read_text())["ok"] is True
    text = console.export_text()
    for number in range(1, 8):
        assert f"[{number}/7]" in text
    assert result.report_path == result.run_dir / "report.html"
    html = result.report_path.read_text(encoding="utf-8")
    assert "<img" in html and "<audio" in html and "http://" not in html.replace("http://www.w3.org", "")

    takes_before = {p.name: p.stat().st_mtime_ns for p in (folder / "takes").glob("*.wav")}
    model_before = result.model_path.stat().st_mtime_ns
    console = Console(record=True, width=120)
    again = demo.run_demo(folder, tiny_config(), console)
    text = console.export_text()
    assert "Resuming" in text and "every take is recorded already" in text and "reusing" in text
    assert again.model_path == result.model_path and result.model_path.stat().st_mtime_ns == model_before
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "takes").glob("*.wav")} == takes_before
    demo.print_result(console, again)
    closing = console.export_text()
    assert str(again.metrics_path) in closing and str(again.report_path) in closing


def test_the_closing_hint_sets_a_knob_within_its_own_range(tmp_path):
    from knobcap.controls import Controls, Knob
    from knobcap.controls.toml import save_controls

    ts9 = Controls(knobs=(Knob("level", -20.0, 4.0), Knob("tone", 100.0, 1000.0), Knob("drive", 0.0, 1.0)))
    save_controls(ts9, tmp_path / "controls.toml")
    assert demo.example_set(tmp_path) == " --set drive=0.7"  # an LV2 TS9: drive 0-1, not drive=7
    save_controls(Controls(knobs=(Knob("volume", 0.0, 10.0),)), tmp_path / "controls.toml", overwrite=True)
    assert demo.example_set(tmp_path) == " --set volume=7"
    assert demo.example_set(tmp_path / "missing") == ""


def test_takes_where_the_virtual_device_is_silent_leave_the_demo_plan(tmp_path):
    """An amp with its tone controls all at 0 makes no sound: the demo moves such takes aside and drops
    their rows (training refuses a failed take); the rest check as before, and nothing else moves."""
    import numpy as np

    from knobcap.capture.check import check_session
    from knobcap.capture.session import Session
    from playkit import make_session, tiny_controls

    def device(audio, setting):
        quiet = setting["tone"] == 0.0 and setting["drive"] == 0.0
        return np.zeros(len(audio) + 480) if quiet else np.concatenate([np.zeros(480), 0.5 * np.tanh(audio)])

    plan = [("take01", {"drive": 0.0, "tone": 0.0, "diodes": "led"}, "anchor"),
            ("take02", {"drive": 10.0, "tone": 0.0, "diodes": "led"}, "train"),
            ("take03", {"drive": 0.0, "tone": 10.0, "diodes": "silicon"}, "train")]
    root = make_session(tmp_path / "s", tiny_controls(), plan, device=device)
    report = check_session(Session.open(root))
    assert not report.ok and [t.take for t in report.takes if t.status == "fail"] == ["take01"]
    assert demo.drop_silent_takes(Session.open(root), report) == ["take01"]
    session = Session.open(root)
    assert [row.take for row in session.plan()] == ["take02", "take03"]
    assert (root / demo.SILENT_DIR / "take01.wav").is_file() and not session.take_path("take01").exists()
    assert check_session(session).ok
    assert demo.drop_silent_takes(session, check_session(session)) == []
