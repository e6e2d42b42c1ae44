"""plan --more: sequential refinement appends takes where the model is weakest, and never rewrites."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from knobcap.capture.design import initial_design
from knobcap.capture.session import Session, read_plan
from knobcap.controls import Controls, Switch
from knobcap.training import refine
from playkit import make_session, tiny_controls


def ts_like() -> Controls:
    return tiny_controls(Switch("fat", ("off", "on")))


def session_with_run(root: Path, signal, errors=None, recorded: int | None = None, takes: int = 12) -> Path:
    """A ``takes``-take session (the first ``recorded`` takes recorded) and a run whose summary.json gives
    each recorded take an ESR (``errors(setting)``; default 0.01)."""
    controls = ts_like()
    design = initial_design(controls, takes, seed=0, iterations=300)
    plan = [(f"take{i + 1:02d}", p.setting, p.role) for i, p in enumerate(design.points)]
    make_session(root, controls, plan, signal, device=lambda audio, setting: 0.5 * audio)
    for take, _, _ in plan[recorded if recorded is not None else len(plan):]:
        (root / "takes" / f"{take}.wav").unlink()
    run = root / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "model.knobcap").write_bytes(b"stand-in: plan --more reads only the figures")
    kept = plan[:recorded] if recorded is not None else plan
    esr = {take: (errors or (lambda s: 0.01))(setting) for take, setting, _ in kept}
    (run / "summary.json").write_text(json.dumps({
        "validation_esr": {t: v for (t, _, r), v in zip(kept, esr.values(), strict=True) if r != "holdout"},
        "heldout_esr": {t: v for (t, _, r), v in zip(kept, esr.values(), strict=True) if r == "holdout"}}))
    return root


def test_more_appends_new_train_takes_and_never_rewrites(tmp_path: Path, signal) -> None:
    root = session_with_run(tmp_path / "s", signal, recorded=10)
    before_text = (root / "plan.csv").read_text()
    takes_before = {p.name: p.read_bytes() for p in (root / "takes").iterdir()}
    result = refine.plan_more(root, 4, seed=1)
    after_text = (root / "plan.csv").read_text()
    assert after_text.startswith(before_text)                      # every existing row, byte for byte
    assert {p.name: p.read_bytes() for p in (root / "takes").iterdir()} == takes_before
    plan = read_plan(root / "plan.csv", ts_like())
    assert [r.take for r in plan] == [f"take{i:02d}" for i in range(1, 17)]
    assert [r.take for r in result.added] == ["take13", "take14", "take15", "take16"]
    assert {r.role for r in plan[12:]} == {"train"}
    old = [r.setting for r in plan[:12]]
    assert all(r.setting not in old for r in plan[12:])
    assert result.time.takes == 4 and result.time.total_seconds > 4 * 30.0
    session = Session.open(root)                                   # reamp would record only these
    assert [r.take for r in session.missing_takes()] == ["take11", "take12", *[r.take for r in result.added]]


def test_more_without_a_model_fails_cleanly(tmp_path: Path, signal) -> None:
    root = session_with_run(tmp_path / "s", signal)
    shutil.rmtree(root / "runs")
    before = (root / "plan.csv").read_text()
    with pytest.raises(refine.RefineError, match=r"no trained model to refine from; run 'knobcap train"):
        refine.plan_more(root, 3)
    with pytest.raises(refine.RefineError, match="--run nope"):
        refine.plan_more(root, 3, run="nope")
    assert (root / "plan.csv").read_text() == before


def test_same_seed_same_state_gives_the_same_takes(tmp_path: Path, signal) -> None:
    first = session_with_run(tmp_path / "a", signal)
    second = tmp_path / "b"
    shutil.copytree(first, second)
    a = refine.plan_more(first, 5, seed=3)
    b = refine.plan_more(second, 5, seed=3)
    assert [(r.take, r.setting) for r in a.added] == [(r.take, r.setting) for r in b.added]
    assert (first / "plan.csv").read_text() == (second / "plan.csv").read_text()


def test_more_goes_where_the_model_is_weak(tmp_path: Path, signal) -> None:
    controls = ts_like()

    def errors(setting) -> float:   # bad at the tone's top in one combination, fine elsewhere
        weak = setting["diodes"] == "led" and setting["fat"] == "on" and float(setting["tone"]) > 6
        return 0.3 if weak else 0.005

    root = session_with_run(tmp_path / "s", signal, errors, takes=20)
    result = refine.plan_more(root, 3, seed=0)
    picked = sorted(result.added, key=lambda r: -result.scores[result.added.index(r)])[0].setting
    assert (picked["diodes"], picked["fat"]) == ("led", "on")
    assert float(picked["tone"]) > 5
    assert controls.unit_knobs(picked).shape == (2,)


def test_ordering_starts_from_the_current_knob_state() -> None:
    controls = ts_like()
    start = {"drive": 0.0, "tone": 0.0, "diodes": "silicon", "fat": "off"}
    settings = [{"drive": v, "tone": 0.0, "diodes": "silicon", "fat": "off"} for v in (9.0, 1.0, 5.0, 3.0)]
    order = refine.order_from(controls, start, settings)
    assert [settings[i]["drive"] for i in order] == [1.0, 3.0, 5.0, 9.0]


def test_surrogate_follows_the_take_errors() -> None:
    controls = ts_like()
    low = {"drive": 2.0, "tone": 2.0, "diodes": "led", "fat": "on"}
    high = {"drive": 8.0, "tone": 9.0, "diodes": "led", "fat": "on"}
    model = refine.Surrogate(controls, [low, high], [0.001, 0.1])
    assert np.exp(model.log_esr(high)) > 10 * np.exp(model.log_esr(low))


def test_plan_more_on_the_command_line(tmp_path: Path, signal) -> None:
    from typer.testing import CliRunner

    from knobcap.cli import app

    root = session_with_run(tmp_path / "s", signal, recorded=10)
    runner = CliRunner()
    done = runner.invoke(app, ["plan", str(root), "--more", "2", "--seed", "4"])
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "take13 to take14" in said and "Added session time" in said
    assert len(read_plan(root / "plan.csv", ts_like())) == 14
    shutil.rmtree(root / "runs")
    refused = runner.invoke(app, ["plan", str(root), "--more", "2"])
    assert refused.exit_code == 1 and "no trained model to refine from" in " ".join(refused.output.split())
    assert len(read_plan(root / "plan.csv", ts_like())) == 14


def test_plan_again_after_more_keeps_the_extended_plan(tmp_path: Path) -> None:
    """Re-running the first 'knobcap plan' once takes are recorded and '--more' rows were appended keeps
    plan.csv as it is (designed rows + added rows) and reports every take; a different plan is still
    refused."""
    from knobcap.capture.session import SessionError, init_session, make_plan

    root = tmp_path / "s"
    init_session(root, ts_like())
    make_plan(root, n=9, quick=True)
    (root / "takes" / "take01.wav").write_bytes(b"recorded")          # a recording now depends on it
    plan_path = root / "plan.csv"
    first = read_plan(plan_path, ts_like())
    extra = first[0].setting | {"drive": 3.3}
    row = "take10," + ",".join(str(extra[name]) for name in ts_like().names) + ",train\n"
    plan_path.write_text(plan_path.read_text() + row)                  # as 'plan --more 1' appends
    before = plan_path.read_bytes()
    again = make_plan(root, n=9, quick=True)
    assert plan_path.read_bytes() == before and not again.wrote_plan
    assert [t.take for t in again.takes] == [t.take for t in first] + ["take10"]
    with pytest.raises(SessionError, match="already holds 1 recording"):
        make_plan(root, n=10, quick=True)
