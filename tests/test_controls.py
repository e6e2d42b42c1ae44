"""Controls: the controls.toml format, settings, and the normalised vector a model sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knobcap.controls import (
    Controls,
    ControlsError,
    Knob,
    Switch,
    load_controls,
    parse_setting_args,
    save_controls,
)

EXAMPLE = """
name = "My Overdrive"
[[knob]]
name = "drive"
taper = "audio"
[[knob]]
name = "tone"
[[knob]]
name = "freq"
min = 100
max = 10000
taper = "log"
[[switch]]
name = "diodes"
positions = ["silicon", "led"]
[[switch]]
name = "mode"
positions = ["a", "b", "c"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "controls.toml"
    path.write_text(text)
    return path


def test_load_example_and_defaults(tmp_path: Path) -> None:
    controls = load_controls(write(tmp_path, EXAMPLE))
    assert controls.name == "My Overdrive"
    assert controls.names == ["drive", "tone", "freq", "diodes", "mode"]
    assert controls.vector_size == 3 + 1 + 3
    default = controls.default_setting()
    assert default["diodes"] == "silicon"
    assert controls["tone"].default_value == pytest.approx(5.0)
    assert controls["freq"].default_value == pytest.approx(1000.0)  # log midpoint
    assert len(controls.switch_combinations()) == 6


@pytest.mark.parametrize("taper", ["linear", "audio", "log"])
def test_unit_round_trip_and_monotone(taper: str) -> None:
    knob = Knob("k", min=1.0, max=11.0, taper=taper)
    values = np.linspace(1.0, 11.0, 41)
    units = [knob.to_unit(v) for v in values]
    assert units[0] == pytest.approx(0.0) and units[-1] == pytest.approx(1.0)
    assert np.all(np.diff(units) > 0)
    assert [knob.from_unit(u) for u in units] == pytest.approx(list(values))


def test_audio_taper_spreads_the_top() -> None:
    knob = Knob("drive", taper="audio")
    assert knob.to_unit(5.0) < 0.4  # most of the change is in the upper half
    assert knob.to_unit(9.0) > 0.8


def test_vector_round_trip(tmp_path: Path) -> None:
    controls = load_controls(write(tmp_path, EXAMPLE))
    setting = {"drive": 7.0, "tone": 2.5, "freq": 300.0, "diodes": "led", "mode": "c"}
    vector = controls.to_vector(setting)
    assert vector.dtype == np.float32 and vector.shape == (7,)
    assert list(vector[3:]) == [1.0, 0.0, 0.0, 1.0]
    back = controls.from_vector(vector)
    assert back["diodes"] == "led" and back["mode"] == "c"
    for name in ("drive", "tone", "freq"):
        assert back[name] == pytest.approx(setting[name], rel=1e-5)


def test_save_and_reload(tmp_path: Path) -> None:
    controls = load_controls(write(tmp_path, EXAMPLE))
    out = tmp_path / "copy" / "controls.toml"
    save_controls(controls, out)
    assert load_controls(out) == controls
    with pytest.raises(FileExistsError):
        save_controls(controls, out)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('[[knob]]\nname = "drive"\nmaxx = 3\n', ["drive", "maxx"]),
        ('[[knob]]\nname = "a"\n[[knob]]\nname = "a"\n', ["'a'", "twice"]),
        ('[[knob]]\nname = "gain"\nmin = 5\nmax = 1\n', ["gain", "min", "max"]),
        ('[[switch]]\nname = "fat"\npositions = ["on"]\n', ["fat", "at least two"]),
        ('[[knob]]\nname = "gain"\ndefault = 12\n', ["gain", "default", "out of range"]),
        ('[[knob]]\nname = "g"\ntaper = "reverse"\n', ["'g'", "taper"]),
        ('colour = "red"\n', ["colour", "[[knob]]"]),
        ('[[knob]]\nname = "f"\nmin = 0\nmax = 100\ntaper = "log"\n', ["'f'", "min > 0"]),
        ("[[knob]\n", ["TOML"]),
        ("", ["no controls"]),
    ],
)
def test_every_mistake_names_the_file_and_control(tmp_path: Path, text: str,
                                                  needles: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ControlsError) as error:
        load_controls(path)
    message = str(error.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_setting_errors(tmp_path: Path) -> None:
    controls = load_controls(write(tmp_path, EXAMPLE))
    good = {"drive": 7.0, "tone": 2.5, "freq": 300.0, "diodes": "led", "mode": "c"}
    with pytest.raises(ControlsError, match="'tone' is missing"):
        controls.to_vector({k: v for k, v in good.items() if k != "tone"})
    with pytest.raises(ControlsError, match=r"'drive' = 11 is out of range"):
        controls.to_vector({**good, "drive": 11})
    with pytest.raises(ControlsError, match="no position 'germanium'"):
        controls.to_vector({**good, "diodes": "germanium"})
    with pytest.raises(ControlsError, match="unknown control 'level'"):
        controls.to_vector({**good, "level": 3})
    with pytest.raises(ControlsError, match="not a number"):
        controls.to_vector({**good, "drive": "loud"})


def test_parse_setting_args() -> None:
    assert parse_setting_args(["drive=7", "diodes = led"]) == {"drive": "7", "diodes": "led"}
    with pytest.raises(ControlsError, match="name=value"):
        parse_setting_args(["drive"])


def test_controls_in_code() -> None:
    controls = Controls(knobs=(Knob("drive"),), switches=(Switch("fat", ("off", "on")),))
    assert controls.to_vector({"drive": 10, "fat": "on"}).tolist() == [1.0, 1.0]
    with pytest.raises(ControlsError, match="at least two"):
        Controls(switches=(Switch("x", ("only",)),))


def test_a_measured_warp_maps_both_ways_and_never_moves_the_default() -> None:
    plain = Knob("tone", taper="audio")
    warped = Knob("tone", taper="audio", warp=(0.0, 0.1, 0.3, 1.0))
    assert warped.default_value == plain.default_value  # the taper's middle, not the warp's
    assert warped.to_unit(10 / 3) == pytest.approx(0.1)
    assert warped.to_unit(5.0) == pytest.approx(0.2)  # linear between the measured points
    for u in (0.0, 0.05, 0.2, 0.65, 1.0):
        assert warped.to_unit(warped.from_unit(u)) == pytest.approx(u)
