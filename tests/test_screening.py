"""Screening: the warp maths, the probe, controls.toml editing, and `knobcap screen` / `init --device`."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import lfilter
from typer.testing import CliRunner

from knobcap.capture.screen_session import prepare_probes, probe_plan, probe_wording
from knobcap.capture.screening import (
    MIN_CHANGE,
    ScreeningError,
    apply_warps,
    probe_signal,
    round_warp,
    screen_device,
    step_distances,
    warp_from_distances,
    warp_summary,
)
from knobcap.cli import app
from knobcap.controls import (
    Controls,
    ControlsError,
    Knob,
    load_controls,
    save_controls,
    warps_into_toml,
    write_warps,
)
from knobcap.devices import register_device

RATE = 48_000
LEVELS = 5
runner = CliRunner()


class StandIn:
    """A cheap pedal: tanh drive; a one-pole low-pass whose corner moves mostly near the top of 'tone'
    (500 Hz at 0, 8 kHz at 10, as (t/10)^4 in octaves); 'dead' does nothing."""

    name = "screen-standin"

    def __init__(self) -> None:
        knobs = (Knob("drive", taper="audio"), Knob("tone", default=5.0), Knob("dead"))
        self.controls = Controls(knobs=knobs, name="Stand-in")

    def process(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        gain = 1.0 + 2.0 * float(setting["drive"])  # type: ignore[arg-type]
        y = np.tanh(gain * np.asarray(audio, dtype=np.float64)) / gain ** 0.5
        corner = 500.0 * 2.0 ** (4.0 * (float(setting["tone"]) / 10.0) ** 4)  # type: ignore[arg-type]
        pole = np.exp(-2 * np.pi * corner / sample_rate)
        return 0.5 * lfilter([1 - pole], [1, -pole], y)


register_device("screen-standin", StandIn)

CONTROLS_TOML = """\
# My stand-in pedal (hand-written; keep these comments)
name = "Stand-in"

[[knob]]
name = "drive"      # the gain knob
taper = "audio"

[[knob]]
  name = "tone"
  default = 5

# a knob that does nothing
[[knob]]
name = "dead"
# end of file
"""


class Outcome:
    """Exit code and output, with rich's line wrapping undone so phrases can be matched."""

    def __init__(self, args: list[str]) -> None:
        result = runner.invoke(app, args, env={"COLUMNS": "400"})
        self.exit_code = result.exit_code
        self.output = " ".join(result.output.split())


def invoke(*args: str | Path) -> Outcome:
    return Outcome([str(a) for a in args])


def session(root: Path, text: str = CONTROLS_TOML) -> Path:
    root.mkdir(parents=True)
    (root / "controls.toml").write_text(text)
    return root


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session screened end to end through the stand-in (5 levels a knob)."""
    root = session(tmp_path_factory.mktemp("screen") / "s")
    first = invoke("screen", root, "--levels", LEVELS)
    assert first.exit_code == 0, first.output
    result = invoke("screen", root, "--device", "screen-standin")
    assert result.exit_code == 0, result.output
    return root


# ------------------------------------------------------------------------------------------ maths
def test_warp_is_the_blended_normalised_running_sum() -> None:
    d = [1.0, 0.0, 3.0]
    warp = warp_from_distances(d, blend=0.25)
    p = np.linspace(0, 1, 4)
    expected = 0.75 * np.array([0, 1, 1, 4]) / 4 + 0.25 * p
    assert warp == pytest.approx(expected)
    assert warp[0] == 0.0 and warp[-1] == 1.0 and np.all(np.diff(warp) > 0)
    assert warp_from_distances(d, blend=1.0) == pytest.approx(p)
    with pytest.raises(ScreeningError, match="blend"):
        warp_from_distances(d, blend=0.0)


def test_a_flat_knob_keeps_a_linear_warp() -> None:
    p = tuple(np.linspace(0, 1, 6))
    assert warp_from_distances([0.0] * 5) == pytest.approx(p)
    assert warp_from_distances([MIN_CHANGE / 10] * 5, min_change=MIN_CHANGE) == pytest.approx(p)
    assert warp_from_distances([np.nan, 1, 1, 1, 1]) == pytest.approx(p)
    assert warp_from_distances([MIN_CHANGE] * 5, min_change=MIN_CHANGE) != pytest.approx((*p[:-1], 0.9))


def test_step_distances_are_relative_rms_changes_and_noise_is_taken_out() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(48_000)
    assert step_distances([x, 2 * x])[0] == pytest.approx(np.sqrt(1 / 2.5))
    sigma = 0.05
    noisy = [x + sigma * rng.standard_normal(len(x)) for _ in range(3)]
    raw = step_distances(noisy)
    corrected = step_distances(noisy, [sigma ** 2] * 3)
    assert np.all(raw > 0.05) and np.all(corrected < 0.01)
    with pytest.raises(ScreeningError, match="silent"):
        step_distances([x, 0 * x])
    # a virtual device's volume at 0 is silence, not a dead cable: allowed, unless every probe is silent
    assert step_distances([0 * x, 0 * x, x], allow_silent=True) == pytest.approx([0.0, np.sqrt(2.0)])
    with pytest.raises(ScreeningError, match="silent"):
        step_distances([0 * x, 0 * x], allow_silent=True)


def test_rounded_warps_stay_strictly_increasing() -> None:
    assert round_warp([0.0, 0.123456, 1.0]) == (0.0, 0.1235, 1.0)
    assert round_warp([0.0, 0.50001, 0.50004, 1.0]) == (0.0, 0.50001, 0.50004, 1.0)


def test_summary_names_where_the_sound_changes_fastest() -> None:
    knob = Knob("tone", warp=(0.0, 0.1, 0.2, 0.3, 1.0))
    summary = warp_summary(knob)
    assert summary.quarters == pytest.approx((0.1, 0.2, 0.3))
    assert summary.fastest.startswith("7.5 -> 10: 70 % of u")
    assert "linear" in warp_summary(Knob("mix")).fastest


# ------------------------------------------------------------------------------------------ probe
def test_the_probe_is_short_with_blips_and_playing() -> None:
    probe = probe_signal()
    m = probe.map
    assert m.length <= 12 * RATE and m.sample_rate == RATE
    assert [s.name for s in m.segments] == ["silence", "blip_1", "blip_2", "validation_1", "playing",
                                            "validation_2"]
    assert m.blips == (RATE, 2 * RATE)
    assert np.array_equal(probe.part("validation_1"), probe.part("validation_2"))
    playing = probe.part("playing")
    assert 4.0 * RATE <= len(playing) <= 6.0 * RATE and -12 < 20 * np.log10(np.abs(playing).max()) < -1
    assert np.array_equal(probe_signal().audio, probe.audio)  # deterministic


def test_the_probe_plan_turns_one_knob_at_a_time_from_its_minimum_to_its_maximum() -> None:
    controls = StandIn().controls
    probes = probe_plan(controls, 3)
    assert [p.name for p in probes] == [f"probe{i:02d}" for i in range(1, 19)]
    turns, tests = probes[:9], probes[9:]
    order = ["drive"] * 3 + ["tone"] * 3 + ["dead"] * 3
    assert [p.knob for p in turns] == order and not any(p.far for p in turns)
    assert [p.setting["tone"] for p in turns[3:6]] == [0.0, 5.0, 10.0]
    assert {p.setting["drive"] for p in turns[3:]} == {round(controls.knobs[0].default_value, 1)}
    # the gain tests: each knob at its default, minimum and maximum, every other knob at its far end
    assert all(p.far for p in tests) and [p.knob for p in tests] == order
    assert [p.setting["tone"] for p in tests[3:6]] == [5.0, 0.0, 10.0]
    assert {(p.setting["drive"], p.setting["dead"]) for p in tests[3:6]} == {(0.0, 10.0)}  # audio taper
    assert probe_plan(Controls(knobs=(Knob("mix"),)), 3) == probe_plan(Controls(knobs=(Knob("mix"),)), 3,
                                                                         gain_tests=False)  # nothing far
    log = Controls(knobs=(Knob("freq", 100, 10_000, taper="log"), Knob("mix")))
    assert {p.knob for p in probe_plan(log, 3)} == {"mix"}  # log knobs are not screened


# ------------------------------------------------------------------------------------------ controls.toml
def test_warps_go_into_each_knob_table_and_nothing_else_changes(tmp_path: Path) -> None:
    path = session(tmp_path / "s") / "controls.toml"
    before = load_controls(path)
    warps = {"drive": (0.0, 0.3, 1.0), "tone": (0.0, 0.25, 0.5, 0.75, 1.0)}
    controls, changed = write_warps(path, warps)
    text = path.read_text()
    assert changed and controls == apply_warps(before, warps)
    assert load_controls(path) == apply_warps(before, warps)
    removed = [line for line in CONTROLS_TOML.splitlines() if line not in text.splitlines()]
    assert removed == []                                               # every line kept, comments too
    assert "  warp = [0.0, 0.25, 0.5, 0.75, 1.0]" in text              # the table's indentation
    assert "default =" not in text.split('name = "tone"')[0]           # drive's default stays unset ...
    assert load_controls(path).knobs[0].default_value == before.knobs[0].default_value  # ... and unmoved
    assert text.index("warp = [0.0, 0.3, 1.0]") < text.index('name = "tone"')
    assert write_warps(path, warps)[1] is False and path.read_text() == text   # idempotent
    again, changed = write_warps(path, {"tone": (0.0, 0.9, 1.0)})      # replaced, not added
    assert changed and again.knobs[1].warp == (0.0, 0.9, 1.0) and path.read_text().count("warp =") == 2
    assert path.read_text().count("measured by 'knobcap screen'") == 2


def test_a_long_warp_is_wrapped_and_crlf_files_stay_crlf(tmp_path: Path) -> None:
    text = CONTROLS_TOML.replace("\n", "\r\n")
    controls = Controls.from_dict(tomllib.loads(text))
    warp = round_warp(np.linspace(0, 1, 21) ** 1.5)
    new = warps_into_toml(text, controls, {"dead": warp})
    assert "\n" not in new.replace("\r\n", "")
    assert Controls.from_dict(tomllib.loads(new)).knobs[2].warp == warp
    assert max(len(line) for line in new.splitlines()) <= 100


def test_controls_without_knob_tables_are_refused_with_the_lines_to_add(tmp_path: Path) -> None:
    path = tmp_path / "controls.toml"
    path.write_text('knob = [{ name = "drive" }, { name = "tone" }]\n')
    with pytest.raises(ControlsError, match=r"\[\[knob\]\] table.*warp = \[0.0, 0.5, 1.0\]"):
        write_warps(path, {"tone": (0.0, 0.5, 1.0)})
    assert path.read_text() == 'knob = [{ name = "drive" }, { name = "tone" }]\n'


def test_warped_controls_round_trip_through_toml(tmp_path: Path) -> None:
    controls = apply_warps(StandIn().controls, {"tone": (0.0, 0.2, 0.7, 1.0)})
    assert Controls.from_dict(controls.to_dict()) == controls
    save_controls(controls, tmp_path / "c.toml")
    assert load_controls(tmp_path / "c.toml") == controls


# ------------------------------------------------------------------------------------------ knobcap screen
def test_first_run_writes_the_probe_files_and_says_what_to_record(tmp_path: Path) -> None:
    root = session(tmp_path / "s")
    result = invoke("screen", root, "--levels", 4)
    assert result.exit_code == 0, result.output
    folder = root / "screen"
    assert (folder / "input.wav").is_file() and (folder / "input.json").is_file()
    rows = (folder / "plan.csv").read_text().splitlines()
    assert rows[0] == "probe,knob,drive,tone,dead" and rows[1] == "probe01,drive,0,5,5" and len(rows) == 22
    assert rows[16] == "probe16,tone (others far),0,5,10"                 # the gain tests come last
    assert "probe01.wav" in result.output and "Recording time" in result.output
    assert "knobcap screen" in result.output and (root / "controls.toml").read_text() == CONTROLS_TOML
    again = invoke("screen", root)                                 # the plan's levels are kept
    assert again.exit_code == 0 and len((folder / "plan.csv").read_text().splitlines()) == 22


def test_a_virtual_screen_writes_warps_keeps_comments_and_is_idempotent(screened: Path) -> None:
    text = (screened / "controls.toml").read_text()
    for line in CONTROLS_TOML.splitlines():
        assert line in text.splitlines()
    controls = load_controls(screened / "controls.toml")
    drive, tone, dead = controls.knobs
    assert tone.warp is not None and np.argmax(np.diff(tone.warp)) == LEVELS - 2   # fastest at the top
    assert dead.warp == pytest.approx(tuple(np.linspace(0, 1, LEVELS)))             # flat: linear
    assert drive.default_value == StandIn().controls.knobs[0].default_value  # unmoved by the warp, exactly
    direct = screen_device(StandIn(), levels=LEVELS)              # rendered: no latency, no noise
    assert tone.warp == pytest.approx(direct.knobs[1].warp, abs=2e-3)
    again = invoke("screen", screened, "--device", "screen-standin")
    assert again.exit_code == 0 and "nothing rewritten" in again.output
    assert (screened / "controls.toml").read_text() == text


def test_screening_notes_a_plan_or_takes_recorded_before_the_warps(screened: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(screened, tmp_path / "s"))
    (root / "controls.toml").write_text(CONTROLS_TOML)           # as before screening
    (root / "plan.csv").write_text("take,drive,tone,dead,role\n")
    result = invoke("screen", root)
    assert result.exit_code == 0 and "designed without these warps" in result.output
    (root / "controls.toml").write_text(CONTROLS_TOML)
    (root / "takes").mkdir()
    sf.write(str(root / "takes" / "take01.wav"), np.zeros(100), RATE)
    result = invoke("screen", root)
    assert result.exit_code == 0 and "stay valid" in result.output and "model's coordinates" in result.output


def test_missing_silent_and_wrong_rate_probes_are_named_with_the_fix(screened: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(screened, tmp_path / "s"))
    folder = root / "screen"
    before = (root / "controls.toml").read_text()
    (folder / "probe03.wav").unlink()
    missing = invoke("screen", root)
    assert missing.exit_code == 1 and "1 of 24 probes are not recorded" in missing.output
    assert str(folder / "probe03.wav") in missing.output and "drive=5" in missing.output
    n = sf.info(str(folder / "probe01.wav")).frames
    sf.write(str(folder / "probe03.wav"), np.zeros(n), RATE)
    sf.write(str(folder / "probe07.wav"), np.zeros(n), 44_100)
    sf.write(str(folder / "probe09.wav"), np.ones((n, 2)), RATE)          # clipped and stereo
    bad = invoke("screen", root)
    assert bad.exit_code == 1
    assert f"{folder / 'probe03.wav'} is silent" in bad.output
    assert f"{folder / 'probe07.wav'} is at 44100 Hz" in bad.output and "record it again" in bad.output
    assert "but screen/input.wav is at 48000 Hz" in bad.output
    assert f"{folder / 'probe09.wav'} clips" in bad.output and "read as a change of sound" in bad.output
    assert "a probe is mono" in bad.output                          # worded for probes, not takes
    assert "take" not in bad.output.replace(str(root), "") and "model" not in bad.output
    assert "delete each file named above" in bad.output
    assert (root / "controls.toml").read_text() == before


def test_check_messages_are_worded_for_probes_after_the_file_name() -> None:
    path = Path("/take/screen/probe01.wav")
    message = (f"{path} clips: a model would learn the clipping. Keep the level the same for every take "
               "and record the take again; input.wav is at 48000 Hz.")
    worded = probe_wording(message, path)
    assert worded.startswith(f"{path} clips: the clipping would read as a change of sound.")
    assert "for every probe and record the probe again; screen/input.wav is at" in worded


def test_a_changed_plan_is_refused_once_probes_are_recorded(screened: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(screened, tmp_path / "s"))
    result = invoke("screen", root, "--levels", 7)
    assert result.exit_code == 1 and "no longer matches" in result.output
    with pytest.raises(ScreeningError, match="from 3 to"):
        prepare_probes(root, levels=2)


def test_screen_errors_without_a_session_or_a_matching_device(tmp_path: Path) -> None:
    assert "knobcap init" in invoke("screen", tmp_path / "none").output
    root = session(tmp_path / "s")
    result = invoke("screen", root, "--device", "ts808")
    assert result.exit_code == 1 and "does not describe the virtual device 'ts808'" in result.output
    assert invoke("screen", root, "--device", "nosuch").exit_code == 1


# ------------------------------------------------------------------------------------------ init --device
def test_init_with_a_device_writes_measured_warps_and_no_screen_does_not(tmp_path: Path) -> None:
    result = invoke("init", tmp_path / "a", "--device", "screen-standin")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "a" / "controls.toml").read_text()
    assert "measured by screening" in text and text.count("warp = [") == 3 and "[[knob]]" in text
    controls = load_controls(tmp_path / "a" / "controls.toml")
    assert controls == screen_device(StandIn())
    assert "u at 1/4 turn" in result.output
    plain = invoke("init", tmp_path / "b", "--device", "screen-standin", "--no-screen")
    assert plain.exit_code == 0 and "warp" not in (tmp_path / "b" / "controls.toml").read_text()
    assert load_controls(tmp_path / "b" / "controls.toml") == StandIn().controls
    refused = invoke("init", tmp_path / "a", "--device", "screen-standin")
    assert refused.exit_code == 1 and "never overwrites" in refused.output


def test_the_virtual_ts808_tone_changes_most_at_the_top() -> None:
    from knobcap.devices import get_device

    controls = screen_device(get_device("ts808"), levels=LEVELS)
    drive, tone = controls.knobs
    assert np.argmax(np.diff(tone.warp)) == LEVELS - 2 and tone.warp[-2] < 0.7
    assert drive.warp is not None and all(0 < u < 1 for u in drive.warp[1:-1])


def test_a_plan_recorded_before_the_gain_tests_is_kept_and_screens_without_them(
        screened: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(screened, tmp_path / "s"))
    (root / "controls.toml").write_text(CONTROLS_TOML)
    folder = root / "screen"
    rows = (folder / "plan.csv").read_text().splitlines()
    older = [r for r in rows if "(others far)" not in r]
    (folder / "plan.csv").write_text("\n".join(older) + "\n")
    for row in rows:
        if "(others far)" in row:
            (folder / f"{row.split(',')[0]}.wav").unlink()
    result = invoke("screen", root)
    assert result.exit_code == 0, result.output
    assert (folder / "plan.csv").read_text().splitlines() == older
    text = (root / "controls.toml").read_text()
    assert "gain_db" not in text and "warp = [" in text
