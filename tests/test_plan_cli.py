"""knobcap init / plan / reamp from the command line, with a cheap stand-in virtual device."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from knobcap.capture.reamp import LATENCY_MS, NOISE_DBFS
from knobcap.capture.screening import apply_warps
from knobcap.capture.session import Session
from knobcap.cli import app
from knobcap.controls import Controls, Knob, Switch, load_controls
from knobcap.devices import register_device

RATE = 48_000
runner = CliRunner()


class StandIn:
    """A memoryless soft clipper: y = tanh(g x) / g^0.5 (a sign flip on 'mode = flip'), cheap and exact."""

    name = "standin"

    def __init__(self) -> None:
        self.controls = Controls(knobs=(Knob("gain", taper="audio"), Knob("mix")),
                                 switches=(Switch("mode", ("plain", "flip")),), name="Stand-in")

    def process(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        g = 1.0 + float(setting["gain"])
        wet = np.tanh(g * np.asarray(audio, dtype=np.float64)) / np.sqrt(g)
        mix = float(setting["mix"]) / 10.0
        out = mix * wet + (1.0 - mix) * audio
        return -out if setting["mode"] == "flip" else out


register_device("standin", StandIn)


class Outcome:
    """Exit code and output, with rich's line wrapping undone so phrases can be matched."""

    def __init__(self, args: list[str]) -> None:
        result = runner.invoke(app, args)
        self.exit_code = result.exit_code
        self.output = " ".join(result.output.split())


def invoke(*args: str | Path) -> Outcome:
    return Outcome([str(a) for a in args])


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "s"
    assert invoke("init", root, "--device", "standin").exit_code == 0
    result = invoke("plan", root, "--quick", "--n", "7")
    assert result.exit_code == 0, result.output
    return root


def plan_rows(root: Path) -> list[dict[str, str]]:
    with (root / "plan.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_init_copies_a_devices_controls_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = invoke("init", tmp_path / "s", "--device", "standin")
    assert result.exit_code == 0, result.output
    copied = load_controls(tmp_path / "s" / "controls.toml")    # the device's controls, knobs screened
    assert all(k.warp is not None for k in copied.knobs)
    assert copied == apply_warps(StandIn().controls, {k.name: k.warp for k in copied.knobs})
    again = invoke("init", tmp_path / "s")
    assert again.exit_code == 1 and "never overwrites" in again.output
    unknown = invoke("init", tmp_path / "t", "--device", "nosuch")
    assert unknown.exit_code == 1 and "no device named 'nosuch'" in unknown.output
    assert not (tmp_path / "t").exists()


def test_plan_prints_the_table_and_the_session_time(planned: Path) -> None:
    result = invoke("plan", planned, "--quick", "--n", "7")       # same options: nothing rewritten
    assert result.exit_code == 0, result.output
    assert "unchanged" in result.output and "Session time" in result.output
    assert "Design: a sliced Latin hypercube" in " ".join(result.output.split())
    rows = plan_rows(planned)
    assert list(rows[0]) == ["take", "gain", "mix", "mode", "role"]
    assert [r["take"] for r in rows] == [f"take{i:02d}" for i in range(1, 8)]
    for row in rows:
        assert row["take"] in result.output
    assert sf.info(planned / "input.wav").duration == pytest.approx(30.0)


def test_plan_errors_end_in_a_message_not_a_traceback(tmp_path: Path) -> None:
    result = invoke("plan", tmp_path / "none")
    assert result.exit_code == 1 and "knobcap init" in result.output
    invoke("init", tmp_path / "s", "--device", "standin")
    small = invoke("plan", tmp_path / "s", "--n", "3", "--seconds", "30")
    assert small.exit_code == 1 and "too few takes" in small.output
    long = invoke("plan", tmp_path / "s", "--seconds", "500")
    assert long.exit_code == 1 and "30 to 180 s" in long.output


def test_plan_method_forces_a_design_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "s"
    invoke("init", root, "--device", "standin")
    auto = invoke("plan", root, "--n", "12", "--seconds", "30")
    assert auto.exit_code == 0 and "Design: a sliced Latin hypercube" in auto.output
    latin = plan_rows(root)
    (root / "plan.csv").unlink()
    forced = invoke("plan", root, "--n", "12", "--seconds", "30", "--method", "coverage")
    assert forced.exit_code == 0, forced.output
    assert "ends and corners from takes on them, as --method asked" in forced.output
    covered = plan_rows(root)
    assert covered != latin
    for mode in ("plain", "flip"):   # both ends of both knobs in each switch position
        rows = [r for r in covered if r["mode"] == mode and r["role"] != "holdout"]
        for knob in ("gain", "mix"):
            assert {"0", "10"} <= {r[knob] for r in rows}
    bad = invoke("plan", root, "--n", "12", "--method", "grid")
    assert bad.exit_code == 1 and "--method 'grid': use one of auto, coverage, lhs" in bad.output


def test_reamp_records_every_take_once_with_latency_and_noise(planned: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(planned, tmp_path / "s"))
    result = invoke("reamp", root, "--device", "standin", "--seed", "3")
    assert result.exit_code == 0, result.output
    session = Session.open(root)
    truth = json.loads((root / "reamp.json").read_text())["takes"]
    x = session.input().audio
    silence = session.input().map.segment("silence")
    device = StandIn()
    for row in session.plan():
        y, rate = sf.read(session.take_path(row.take), dtype="float32")
        latency = truth[row.take]["latency"]
        assert rate == RATE and len(y) == len(x) + latency
        assert LATENCY_MS[0] <= 1000 * latency / RATE <= LATENCY_MS[1]
        floor = 20 * np.log10(np.sqrt(np.mean(y[latency + silence.start:latency + silence.stop] ** 2)))
        assert NOISE_DBFS[0] - 0.5 <= floor <= NOISE_DBFS[1] + 0.5
        clean = device.process(x, RATE, row.setting)
        assert np.sqrt(np.mean((y[latency:] - clean) ** 2)) < 10 ** (NOISE_DBFS[1] / 20) * 1.1
    # nothing is rendered again, nothing is overwritten
    before = {p.name: p.read_bytes() for p in session.takes_dir.iterdir()}
    again = invoke("reamp", root, "--device", "standin", "--seed", "9")
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert {p.name: p.read_bytes() for p in session.takes_dir.iterdir()} == before
    # a missing take is rendered alone, and the same as before (randomness per take)
    first = sf.read(session.take_path("take02"), dtype="float32")[0]
    session.take_path("take02").unlink()
    assert invoke("reamp", root, "--device", "standin", "--seed", "3").exit_code == 0
    after = {p.name: p.read_bytes() for p in session.takes_dir.iterdir()}
    assert {k: v for k, v in after.items() if k != "take02.wav"} == {
        k: v for k, v in before.items() if k != "take02.wav"}
    np.testing.assert_array_equal(sf.read(session.take_path("take02"), dtype="float32")[0], first)


def test_reamp_inverts_polarity_when_asked_and_writes_24_bit(planned: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(planned, tmp_path / "s"))
    result = invoke("reamp", root, "--device", "standin", "--invert-polarity", "--pcm24")
    assert result.exit_code == 0, result.output
    session = Session.open(root)
    row = session.plan()[0]
    assert sf.info(session.take_path(row.take)).subtype == "PCM_24"
    latency = json.loads((root / "reamp.json").read_text())["takes"][row.take]["latency"]
    y, _ = sf.read(session.take_path(row.take), dtype="float32")
    clean = StandIn().process(session.input().audio, RATE, row.setting)
    assert np.corrcoef(y[latency:], clean)[0, 1] < -0.99
    measured = session.latency(row.take)
    assert measured.polarity == (1 if row.setting["mode"] == "flip" else -1)  # device x interface
    assert abs(measured.samples - latency) <= 2


def test_reamp_refuses_a_device_that_does_not_match_the_session(tmp_path: Path) -> None:
    root = tmp_path / "s"
    invoke("init", root)                              # the template: drive and tone
    assert invoke("plan", root, "--n", "6", "--seconds", "30").exit_code == 0
    result = invoke("reamp", root, "--device", "standin")
    assert result.exit_code == 1
    assert "no knob 'drive'" in result.output and "--device standin" in result.output
    assert not list((root / "takes").glob("*.wav"))


def test_replan_after_reamp_is_refused(planned: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(planned, tmp_path / "s"))
    Session.open(root).take_path("take01").write_bytes((planned / "input.wav").read_bytes())
    plan_before = (root / "plan.csv").read_text()
    result = invoke("plan", root, "--n", "9", "--quick")
    assert result.exit_code == 1 and "new session" in result.output
    assert (root / "plan.csv").read_text() == plan_before
