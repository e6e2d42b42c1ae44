"""knobcap demo: the folder rules (never touch a user's folder; resume a demo) and a tiny end-to-end run."""

from __future__ import annotations

import json

import pytest

from knobcap import demo


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
