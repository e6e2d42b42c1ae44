"""knobcap demo with one 'plan --more' round (issue 11): the same takes and training budget, split."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from knobcap import demo
from test_demo import tiny_config


def test_refinement_is_off_by_default_and_checked() -> None:
    assert demo.DemoConfig.full().refine_takes == 0 and demo.DemoConfig.quick().refine_takes == 0
    assert demo.DemoConfig.quick().with_refinement(2).refine_takes == 2
    with pytest.raises(demo.DemoError, match="--refine -1"):
        demo.DemoConfig.quick().with_refinement(-1)


def test_a_demo_folder_from_before_refinement_is_still_resumed(tmp_path) -> None:
    folder = tmp_path / "d"
    config = demo.DemoConfig.quick()
    demo.prepare_folder(folder, config)
    marker = folder / demo.MARKER
    old = {k: v for k, v in config.to_dict().items() if k not in ("refine_takes", "refine_share")}
    marker.write_text(json.dumps(old))
    assert demo.prepare_folder(folder, config) is True
    with pytest.raises(demo.DemoError, match="--refine"):
        demo.prepare_folder(folder, config.with_refinement(2))


@pytest.mark.slow
def test_demo_with_a_refinement_round_adds_takes_and_continues_from_the_first_model(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from rich.console import Console

    from knobcap.training import refine

    base = tiny_config()
    config = replace(base, takes=8, refine_takes=2,
                     training={**base.training, "epochs": 2, "max_minutes": 5.0})
    folder = tmp_path / "demo"
    seen: dict[str, int] = {}
    original = refine.plan_more

    def spy(root, count, **options):  # the recordings as they are when 'plan --more' runs
        seen.update({p.name: p.stat().st_mtime_ns for p in (folder / "takes").glob("*.wav")})
        return original(root, count, **options)

    monkeypatch.setattr(refine, "plan_more", spy)
    console = Console(record=True, width=200)
    result = demo.run_demo(folder, config, console)
    text = console.export_text()

    assert len(seen) == 6  # the first round: takes - refine_takes
    takes = {p.name: p.stat().st_mtime_ns for p in (folder / "takes").glob("*.wav")}
    assert len(takes) == 8 and all(takes[name] == mtime for name, mtime in seen.items())
    plan = (folder / "plan.csv").read_text().splitlines()
    added = [line.split(",")[0] for line in plan[-2:]]
    assert not set(f"{a}.wav" for a in added) & set(seen)
    assert "plan --more 2" in text and "added session time" in text and "first model" in text
    assert result.refinement and added[0] in result.refinement
    assert result.model_path.is_file() and result.metrics_path.is_file()

    first = json.loads((folder / "runs" / demo.FIRST_RUN / "config.json").read_text())
    final = json.loads((result.run_dir / "config.json").read_text())
    assert final["init_from"] == str((folder / "runs" / demo.FIRST_RUN / "model.knobcap").resolve())
    assert first["max_minutes"] + final["max_minutes"] == pytest.approx(5.0)
    assert first["epochs"] + final["epochs"] == 2
    assert final["lr"] < first["lr"]  # the schedule goes on from where the first model left it

    console = Console(record=True, width=200)
    again = demo.run_demo(folder, config, console)
    text = console.export_text()
    assert "holds its 2 added takes already" in text and text.count("reusing") == 2
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "takes").glob("*.wav")} == takes
    assert again.model_path == result.model_path
