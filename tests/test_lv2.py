"""LV2 plugins as devices: lv2info parsing, controls, the lv2apply host's errors, and real renders."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from knobcap.capture.device_delay import measure_delay
from knobcap.capture.latency import align
from knobcap.controls import Controls, Knob, Switch, controls_to_toml
from knobcap.devices.errors import DeviceError
from knobcap.devices.lv2 import Lv2Device, lv2_device, run_lv2apply
from knobcap.devices.lv2_ports import Port, describe_controls, parse_lv2info, safe_name

DATA = Path(__file__).parent / "data"
TS9 = "http://guitarix.sourceforge.net/plugins/gxts9#ts9sim"
DS1 = "http://guitarix.sourceforge.net/plugins/gx_bossds1_#_bossds1_"
RATE = 48_000


def fixture(name: str) -> str:
    return (DATA / f"lv2info_{name}.txt").read_text(encoding="utf-8")


def installed(uri: str) -> bool:
    if shutil.which("lv2apply") is None or shutil.which("lv2info") is None:
        return False
    done = subprocess.run(["lv2info", uri], capture_output=True, text=True, check=False, timeout=30)
    return done.returncode == 0 and bool(done.stdout.strip())


needs_ts9 = pytest.mark.skipif(not installed(TS9), reason="needs lv2apply/lv2info (apt-get install "
                               "lilv-utils) and GxTubeScreamer (apt-get install guitarix-lv2)")
needs_ds1 = pytest.mark.skipif(not installed(DS1), reason="needs lv2apply/lv2info (lilv-utils) and "
                               "Guitarix's DS-1 (guitarix-lv2)")


# ------------------------------------------------------------------------------------------ parser
def test_tube_screamer_ports_become_three_knobs_and_bypass_is_left_out():
    plugin = parse_lv2info(fixture("gxts9"))
    assert plugin.uri == TS9 and plugin.name == "GxTubeScreamer"
    assert plugin.latency_port is None and plugin.required_features == ()
    assert [p.symbol for p in plugin.audio_inputs] == ["in"]
    assert [p.symbol for p in plugin.audio_outputs] == ["out"]
    desc = describe_controls(plugin)
    assert desc.controls.knobs == (Knob("level", -20.0, 4.0, -16.0), Knob("tone", 100.0, 1000.0, 400.0),
                                   Knob("drive", 0.0, 1.0, 0.5))
    assert desc.controls.switches == () and desc.fixed == {}
    assert "BYPASS" in desc.left_out and desc.host_values == {"BYPASS": 1.0}
    assert desc.ports["drive"].symbol == "fslider2_"


def test_toggle_enumeration_and_log_port_become_switches_and_a_log_knob():
    plugin = parse_lv2info(fixture("digital_delay"))
    desc = describe_controls(plugin)
    controls = desc.controls
    assert controls["sync"] == Switch("sync", ("off", "on"), "off")
    # scale points are listed in any order by lv2info; positions follow their values
    assert controls["mode"] == Switch("mode", ("plain", "presence", "tape", "tape2"), "plain")
    notes = controls["notes"]
    assert isinstance(notes, Switch) and notes.positions[:2] == ("dotted1_2note", "1_2note")
    assert notes.default == "1_4note"  # default 4.0
    assert controls["highpass"] == Knob("highpass", 20.0, 20000.0, 120.0, taper="log")
    assert controls["feedback"].taper == "linear"  # type: ignore[union-attr]
    assert desc.left_out["DD_CONTROL"] == "atom port"
    assert desc.left_out["DD_NOTIFY"] == "control output"
    assert "HOSTBPM" in desc.left_out and "BYPASS" in desc.left_out
    assert [p.symbol for p in plugin.unhostable_ports] == ["DD_CONTROL"]
    assert desc.port_values({**controls.default_setting(), "mode": "tape", "sync": "on"})["MODE"] == 2.0
    assert desc.port_values({**controls.default_setting(), "sync": "on"})["SYNC"] == 1.0


def test_controls_toml_from_lv2info_round_trips():
    controls = describe_controls(parse_lv2info(fixture("digital_delay"))).controls
    again = Controls.from_dict(tomllib.loads(controls_to_toml(controls)))
    assert again == controls


def test_latency_port_and_required_features_are_read():
    plugin = parse_lv2info(fixture("detune"))
    assert plugin.latency_port == 12
    assert "http://lv2plug.in/ns/ext/worker#schedule" in plugin.required_features
    desc = describe_controls(plugin)
    assert desc.left_out["latency"] == "latency output"
    assert desc.controls["latency"] == Switch("latency", ("highquality", "lowquality", "realtime"),
                                              "highquality")  # an input enumeration, not the output


def test_stereo_plugin_ports_and_a_symbol_only_label():
    plugin = parse_lv2info(fixture("gx_amp_stereo"))
    assert len(plugin.audio_inputs) == 2 and len(plugin.audio_outputs) == 2
    controls = describe_controls(plugin).controls
    cab = controls["cab_model"]
    assert isinstance(cab, Switch) and cab.positions[:2] == ("4x12", "2x12") and cab.positions[-1] == "off"
    assert controls["model"].positions[-1] == "position"  # type: ignore[union-attr]  # label "--"


def test_log_port_with_zero_minimum_stays_linear_and_names_are_made_unique():
    text = fixture("digital_delay").replace("Minimum:     20.000000", "Minimum:     0.000000", 1)
    text = text.replace("Name:        LEVEL", "Name:        Gain")
    controls = describe_controls(parse_lv2info(text)).controls
    assert controls["highpass"].taper == "linear"  # type: ignore[union-attr]
    assert controls["howpass"].taper == "log"  # type: ignore[union-attr]
    assert "gain" in controls.names and "gain_2" in controls.names
    assert safe_name("Low Cut (Hz)") == "low_cut_hz"


def test_select_and_fixed_controls():
    plugin = parse_lv2info(fixture("gxts9"))
    desc = describe_controls(plugin, select=["drive", "tone"], fixed={"level": -10})
    assert desc.controls.names == ["drive", "tone"]
    assert desc.fixed == {"level": -10.0}
    values = desc.port_values({"drive": 0.8, "tone": 500.0})
    assert values == {"BYPASS": 1.0, "fslider0_": -10.0, "fslider1_": 500.0, "fslider2_": 0.8}
    assert describe_controls(plugin, select=["drive"]).fixed == {"level": -16.0, "tone": 400.0}
    with pytest.raises(DeviceError, match=r"no control named 'gain'; choose from level, tone, drive"):
        describe_controls(plugin, select=["gain"])
    with pytest.raises(DeviceError, match="'drive' is captured"):
        describe_controls(plugin, select=["drive"], fixed={"drive": 0.3})
    with pytest.raises(DeviceError, match="knob 'level' = 9 is out of range"):
        describe_controls(plugin, select=["drive"], fixed={"level": 9})
    with pytest.raises(DeviceError, match="no plugin description"):
        parse_lv2info("")


def test_integer_port_without_scale_points_is_a_switch_of_numbers():
    port = Port(3, "STAGES", "Stages", frozenset({"ControlPort", "InputPort"}), 1.0, 4.0, 2.0,
                frozenset({"integer"}))
    plugin = dataclasses.replace(parse_lv2info(fixture("gxts9")), ports=(port,))
    desc = describe_controls(plugin)
    assert desc.controls["stages"] == Switch("stages", ("1", "2", "3", "4"), "2")
    assert desc.port_values({"stages": "3"}) == {"STAGES": 3.0}


# ------------------------------------------------------------------------------------------ errors
FAKE_LV2APPLY = """#!{python}
import os, signal, sys, time
import numpy as np, soundfile as sf
mode = os.environ.get("FAKE_LV2", "copy")
args = sys.argv[1:]
src, dst = args[args.index("-i") + 1], args[args.index("-o") + 1]
with open("argv.txt", "w") as f:
    f.write(" ".join(args))
if mode == "crash":
    os.kill(os.getpid(), signal.SIGSEGV)
if mode == "refuse":
    sys.stderr.write("error: Port 10 has unsupported type\\n")
    sys.exit(5)
if mode == "sleep":
    time.sleep(30)
x, rate = sf.read(src, dtype="float32")
y = np.stack([x, 2 * x], axis=1)
if mode == "nan":
    y[len(y) // 2, 0] = np.nan
sf.write(dst, y, rate, subtype="FLOAT")
"""


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A PATH holding only a fake lv2apply (behaviour chosen by FAKE_LV2) and a fake lv2info."""
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "lv2apply"
    script.write_text(FAKE_LV2APPLY.format(python=sys.executable))
    script.chmod(0o755)
    info = folder / "lv2info"
    info.write_text("#!/bin/sh\nexit 255\n")
    info.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    return folder


def ts9_plugin():
    return parse_lv2info(fixture("gxts9"))


def test_missing_binaries_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeviceError, match=r"lv2info is not installed.*apt-get install lilv-utils"):
        Lv2Device(TS9)
    device = Lv2Device(TS9, plugin=ts9_plugin())
    with pytest.raises(DeviceError, match=r"lv2apply is not installed.*apt-get install lilv-utils"):
        device.process(np.zeros(100, np.float32), RATE, device.controls.default_setting())


def test_unknown_plugin_says_how_to_list_plugins(fake_bin):
    with pytest.raises(DeviceError, match=r"'http://example.org/nope' is not installed.*lv2ls"):
        lv2_device("lv2:http://example.org/nope")
    with pytest.raises(DeviceError, match="lv2:<plugin URI>"):
        lv2_device("http://example.org/nope")


@pytest.mark.skipif(shutil.which("lv2info") is None, reason="needs lv2info (apt-get install lilv-utils)")
def test_unknown_plugin_with_the_real_lv2info():
    with pytest.raises(DeviceError, match="lv2ls"):
        Lv2Device("http://example.org/knobcap-no-such-plugin")


def test_atom_ports_are_refused_before_rendering(fake_bin, monkeypatch):
    with pytest.raises(DeviceError, match=r"port 10 \(DD_CONTROL, atom\).*only audio and control"):
        Lv2Device("http://x", plugin=parse_lv2info(fixture("digital_delay")))
    monkeypatch.setenv("FAKE_LV2", "refuse")
    with pytest.raises(DeviceError, match=r"Port 10 has unsupported type.*atom or CV"):
        run_lv2apply(TS9, np.zeros(64), RATE, {}, "setting x=1")


def test_nan_output_names_the_setting(fake_bin, monkeypatch):
    monkeypatch.setenv("FAKE_LV2", "nan")
    device = Lv2Device(TS9, select=["drive"], plugin=ts9_plugin())
    with pytest.raises(DeviceError, match=r"1 NaN or infinite samples at setting drive=0\.7"):
        device.process(np.zeros(1000, np.float32), RATE, {"drive": 0.7})


def test_crash_names_the_setting_and_missing_features(fake_bin, monkeypatch):
    monkeypatch.setenv("FAKE_LV2", "crash")
    plugin = dataclasses.replace(ts9_plugin(), required_features=("http://lv2plug.in/ns/ext/urid#map",))
    device = Lv2Device(TS9, select=["drive", "tone"], plugin=plugin)
    with pytest.raises(DeviceError, match=r"crashed \(signal SIGSEGV\) at setting drive=0\.2, tone=300; "
                                          r"it requires urid:map"):
        device.process(np.zeros(1000, np.float32), RATE, {"drive": 0.2, "tone": 300})


def test_timeout(fake_bin, monkeypatch):
    monkeypatch.setenv("FAKE_LV2", "sleep")
    device = Lv2Device(TS9, plugin=ts9_plugin(), timeout_s=0.5)
    with pytest.raises(DeviceError, match=r"took more than 0\.5 s at setting"):
        device.process(np.zeros(100, np.float32), RATE, device.controls.default_setting())


def test_command_line_and_output_channel(fake_bin, tmp_path):
    plugin = ts9_plugin()
    stereo_out = Port(6, "out1", "Out1", frozenset({"AudioPort", "OutputPort"}))
    plugin = dataclasses.replace(plugin, ports=(*plugin.ports, stereo_out))
    x = np.linspace(-0.5, 0.5, 300, dtype=np.float32)
    left = Lv2Device(TS9, select=["drive"], fixed={"tone": 700}, plugin=plugin)
    right = Lv2Device(TS9, select=["drive"], fixed={"tone": 700}, plugin=plugin, channel=1)
    assert left.fixed == {"level": -16.0, "tone": 700.0}
    np.testing.assert_array_equal(left.process(x, RATE, {"drive": 0.25}), x)
    np.testing.assert_array_equal(right.process(x, RATE, {"drive": 0.25}), 2 * x)
    assert right.render(x, RATE, {"drive": 0.25}).shape == (300, 2)
    with pytest.raises(DeviceError, match="channel must be 0 to 1"):
        Lv2Device(TS9, plugin=plugin, channel=2)
    with pytest.raises(ValueError, match="unknown control 'tone'"):
        left.process(x, RATE, {"drive": 0.25, "tone": 100})


# ------------------------------------------------------------------------------------------ renders
@needs_ts9
def test_tube_screamer_renders_two_drives_differently():
    device = lv2_device(f"lv2:{TS9}", select=["drive"])
    assert device.controls.names == ["drive"] and set(device.fixed) == {"level", "tone"}
    t = np.arange(RATE // 8) / RATE
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    low = device.process(x, RATE, {"drive": 0.1})
    high = device.process(x, RATE, {"drive": 1.0})
    again = device.process(x, RATE, {"drive": 1.0})
    for y in (low, high):
        assert y.dtype == np.float32 and y.shape == x.shape and np.all(np.isfinite(y))
        assert np.sqrt(np.mean(y ** 2)) > 1e-4
    assert np.sqrt(np.mean((high - low) ** 2)) > 0.1 * np.sqrt(np.mean(low ** 2))
    np.testing.assert_array_equal(high, again)  # a fresh instance per take: nothing leaks


@needs_ds1
def test_ds1_hidden_delay_is_measured_and_aligned():
    device = Lv2Device(DS1)
    assert not device.reports_latency
    latency = measure_delay(device, RATE)
    assert latency.confident and latency.polarity == 1 and 29 <= latency.samples <= 33

    class Aligned:
        name, controls = "aligned DS-1", device.controls

        def process(self, audio, sample_rate, setting):
            return align(device.process(audio, sample_rate, setting), latency, len(audio))

    assert abs(measure_delay(Aligned(), RATE).samples) <= 1


@needs_ts9
def test_preroll_lets_the_plugin_settle_before_the_take():
    """A fresh GxTubeScreamer fades in from its dry sound over ~8200 samples; the pre-roll hides that."""
    t = np.arange(RATE // 10) / RATE
    x = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    setting = {"drive": 0.9}
    settled = Lv2Device(TS9, select=["drive"], preroll_s=2.0).process(x, RATE, setting)
    default = Lv2Device(TS9, select=["drive"]).process(x, RATE, setting)
    cold = Lv2Device(TS9, select=["drive"], preroll_s=0).process(x, RATE, setting)
    peak = float(np.abs(settled).max())
    assert float(np.abs(default - settled).max()) < 1e-4 * peak
    assert float(np.abs(cold - settled).max()) > 0.1 * peak
    np.testing.assert_allclose(cold[:8], x[:8], rtol=1e-2)  # a cold start begins at the dry signal


# ------------------------------------------------------------------------ the journey (issue 16)
def _cli(*args: object) -> tuple[int, str]:
    """Run a knobcap verb in-process: exit code and output with rich's wrapping undone."""
    from typer.testing import CliRunner

    from knobcap.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def fake_info(tmp_path, monkeypatch):
    """A PATH with a fake lv2info that describes GxTubeScreamer (from the fixture) and no lv2apply."""
    folder = tmp_path / "infobin"
    folder.mkdir()
    info = folder / "lv2info"
    fixture_path = DATA / "lv2info_gxts9.txt"
    info.write_text(f"#!{sys.executable}\nprint(open({str(fixture_path)!r}, encoding='utf-8').read())\n")
    info.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    return folder


def test_registry_finds_lv2_devices_by_scheme_and_keeps_the_uri(fake_info):
    from knobcap.devices import available_devices, get_device

    device = get_device(f"LV2:{TS9}", select=["drive"], fixed={"tone": 500})
    assert isinstance(device, Lv2Device) and device.uri == TS9 and device.name == f"lv2:{TS9}"
    assert device.controls.names == ["drive"] and device.fixed == {"level": -16.0, "tone": 500.0}
    assert "lv2:" in available_devices() and "ts808" in available_devices()


def test_controls_toml_records_the_device_and_its_fixed_controls(fake_info, tmp_path):
    from knobcap.capture.session_device import open_device
    from knobcap.controls import load_controls

    code, out = _cli("init", tmp_path / "s", "--device", f"lv2:{TS9}", "--controls", "drive,tone",
                     "--set", "level=-5", "--no-screen")
    assert code == 0, out
    controls = load_controls(tmp_path / "s" / "controls.toml")
    assert controls.names == ["drive", "tone"] and controls.device == f"lv2:{TS9}"
    assert controls.fixed_values == {"level": -5.0}
    again = open_device(controls.device, controls)  # what screen, reamp and eval re-create
    assert again.controls.names == ["drive", "tone"] and again.fixed == {"level": -5.0}
    assert again.port_values({"drive": 0.2, "tone": 300.0})["fslider0_"] == -5.0
    code, out = _cli("init", tmp_path / "t", "--controls", "drive")
    assert code == 1 and "add --device lv2:<URI>" in out
    code, out = _cli("init", tmp_path / "t", "--device", "ts808", "--controls", "drive")
    assert code == 1 and "always has all its controls captured" in out
    code, out = _cli("init", tmp_path / "t", "--device", f"lv2:{TS9}", "--controls", "gain")
    assert code == 1 and "no control named 'gain'" in out and not (tmp_path / "t").exists()


def test_missing_lv2apply_and_crashes_name_the_take_and_keep_recordings(fake_info, tmp_path, monkeypatch):
    root = tmp_path / "s"
    assert _cli("init", root, "--device", f"lv2:{TS9}", "--controls", "drive", "--no-screen")[0] == 0
    assert _cli("plan", root, "--n", "5", "--seconds", "30")[0] == 0
    code, out = _cli("reamp", root)
    assert code == 1 and "take01: lv2apply is not installed" in out and "apt-get install lilv-utils" in out
    kept = root / "takes" / "take01.wav"
    kept.write_bytes(b"mine")  # a take recorded by hand meanwhile is never touched
    script = fake_info / "lv2apply"
    script.write_text(FAKE_LV2APPLY.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_LV2", "crash")
    code, out = _cli("reamp", root)
    assert code == 1 and out.count("error:") == 1
    assert "take02: LV2 plugin " + TS9 + " crashed (signal SIGSEGV)" in out
    assert kept.read_bytes() == b"mine"


def test_missing_plugin_through_the_cli_names_the_uri(fake_bin, tmp_path):
    code, out = _cli("init", tmp_path / "s", "--device", "lv2:http://example.org/nope")
    assert code == 1 and "'http://example.org/nope' is not installed" in out and "lv2ls" in out
    assert not (tmp_path / "s").exists()


def test_eval_says_when_the_grid_esr_is_above_one():
    from knobcap.evaluation.sanity import misalignment_warnings

    doc = {"grid": {"summary": {"count": 4, "median": 2.1, "p90": 2.2, "max": 2.3}},
           "di": {"summary": {"count": 1, "median": 0.02, "p90": 0.02, "max": 0.02}}}
    (line,) = misalignment_warnings(doc)
    assert line.startswith("dense grid: ESR above 1") and "misaligned or inverted" in line
    assert misalignment_warnings({"grid": {"summary": {"count": 4, "median": 0.1, "max": 0.9}}}) == []


@needs_ds1
def test_delay_aligned_removes_a_hidden_delay():
    from knobcap.capture.device_delay import DelayAligned

    device = Lv2Device(DS1)
    aligned = DelayAligned(device)
    assert aligned.delay(RATE) == 31 and "31 samples late" in aligned.note
    assert abs(measure_delay(aligned, RATE).samples) <= 1


TINY_MODEL = {"n_controls": 2, "head_scale": 0.02, "activation": "tanh",
              "arrays": [{"channels": 4, "head_size": 1, "kernel_size": 3, "dilations": [1, 2, 4]}]}


@needs_ts9
@pytest.mark.slow
def test_gxtubescreamer_drive_and_tone_through_the_whole_journey(tmp_path):
    pytest.importorskip("torch")
    import json

    from knobcap.training.config import TrainConfig
    from knobcap.training.loop import train_session

    root = tmp_path / "ts9"
    code, out = _cli("init", root, "--device", f"lv2:{TS9}", "--controls", "drive,tone", "--no-screen")
    assert code == 0, out
    assert 'device = "lv2:' + TS9 + '"' in (root / "controls.toml").read_text()
    assert "level = -16.0" in (root / "controls.toml").read_text()  # the plugin's default, fixed
    assert _cli("plan", root, "--n", "7", "--seconds", "30")[0] == 0
    code, out = _cli("reamp", root)  # the device named by controls.toml
    assert code == 0, out
    assert json.loads((root / "reamp.json").read_text())["device"] == f"lv2:{TS9}"
    code, out = _cli("check", root)
    assert code == 0, out
    config = TrainConfig.from_dict({"epochs": 1, "steps_per_epoch": 2, "batch_size": 2,
                                    "segment_length": 2048, "mrstft_fft_sizes": [256, 512],
                                    "val_max_seconds": 0.5, "model": TINY_MODEL, "threads": 1}, "test")
    train_session(root, config, run="tiny", progress=False)
    code, out = _cli("eval", root / "runs" / "tiny", "--grid", "2", "--no-di")
    assert code == 0, out
    metrics = json.loads((root / "runs" / "tiny" / "metrics.json").read_text())
    assert metrics["device"] == f"lv2:{TS9}" and len(metrics["grid"]["rows"]) == 4
    # the renders are aligned as the takes were: the plugin has no delay of its own, so the device delay
    # read on the session's signal lies within what the takes' calibration read (check - reamp truth)
    truth = json.loads((root / "reamp.json").read_text())["takes"]
    read = json.loads((root / "check.json").read_text())["takes"]
    offsets = [read[name]["latency"] - truth[name]["latency"] for name in truth]
    assert min(offsets) <= metrics["device_delay"]["samples"] <= max(offsets)
    assert min(offsets) >= -8 and max(offsets) <= 1  # check reads this plugin up to a sample late
    assert "renders aligned" in metrics["device_delay"]["note"]
    assert isinstance(metrics["warnings"], list)
    # aligned on the reamp's truth instead (as the benchmarks align), the renders follow the takes
    (root / "check.json").write_text(json.dumps({"ok": True, "takes": {
        name: {"status": "ok", "latency": t["latency"], "polarity": t["polarity"], "problems": []}
        for name, t in truth.items()}}))
    code, out = _cli("eval", root / "runs" / "tiny", "--grid", "2", "--no-di")
    assert code == 0, out
    metrics = json.loads((root / "runs" / "tiny" / "metrics.json").read_text())
    assert metrics["device_delay"]["samples"] == 0 and "session's takes" in metrics["device_delay"]["note"]


class _Late:
    """A device that answers 37 samples late at half level."""

    name = "late"
    controls = Controls(knobs=(Knob("gain"),))

    def process(self, audio, sample_rate, setting):
        x = np.asarray(audio, dtype=np.float64)
        return 0.5 * np.concatenate([np.zeros(37), x[:-37]])


def test_delay_aligned_measures_once_and_aligns_every_render():
    from knobcap.capture.device_delay import DelayAligned, delay_aligned

    aligned = delay_aligned(_Late())
    assert delay_aligned(aligned) is aligned
    x = np.random.default_rng(0).standard_normal(4800)
    y = aligned(x, RATE, gain=3.0)
    assert aligned.delay(RATE) == 37 and len(y) == len(x) and np.allclose(y, 0.5 * x)
    assert list(aligned.latencies) == [RATE] and isinstance(aligned, DelayAligned)


def test_a_delay_read_early_moves_renders_later_and_the_median_setting_counts():
    from dataclasses import replace

    from knobcap.capture.device_delay import DelayAligned, measure_delay, signal_probe
    from knobcap.capture.testsignal import generate_signal

    signal = generate_signal(30)
    probe = signal_probe(signal.audio, signal.map)
    assert probe is not None and len(probe[0]) == signal.map.segment("validation_1").stop
    assert measure_delay(_Late(), RATE, probe=probe).samples == 37  # the session's own signal reads it too
    aligned = DelayAligned(_Late(), probe=probe)
    aligned.latencies[RATE] = replace(measure_delay(_Late(), RATE), samples=-2)  # as if read 2 early
    x = np.random.default_rng(1).standard_normal(4800)
    y = aligned.process(x, RATE, {})
    assert len(y) == len(x) and np.allclose(y[2:], 0.5 * np.concatenate([np.zeros(37), x])[:len(x) - 2])
    settings = [{"gain": g} for g in np.linspace(0.5, 4.0, 20)]
    several = DelayAligned(_Late(), probe=probe, settings=settings)
    assert several.delay(RATE) == 37 and len(several._settings) <= 8


def _takes_of_late(shift: int, count: int = 3) -> list:
    """Takes of :class:`_Late` as a session would hold them, aligned ``shift`` samples short of its
    true 37 (0: on the reamp's truth; 1: read a sample early by a calibration)."""
    from knobcap.capture.device_delay import RecordedTake

    rng = np.random.default_rng(2)
    out = []
    for gain in np.linspace(1.0, 3.0, count):
        x = rng.standard_normal(24_000)
        y = _Late().process(x, RATE, {})
        take = np.concatenate([y[37 - shift:], np.zeros(37 - shift)])
        out.append(RecordedTake({"gain": float(gain)}, x, take, 4_000, 20_000, RATE))
    return out


@pytest.mark.parametrize("shift", [0, 1])
def test_renders_line_up_with_the_sessions_takes_however_they_were_aligned(shift):
    from knobcap.capture.device_delay import DelayAligned, delay_from_takes, take_lag

    takes = _takes_of_late(shift)
    lag, rho = take_lag(_Late(), takes[0])
    assert lag == 37 - shift and rho > 0.99
    assert delay_from_takes(_Late(), takes).samples == 37 - shift
    aligned = DelayAligned(_Late(), takes=takes)
    t = takes[1]
    y = aligned.process(t.audio, RATE, t.setting)
    assert aligned.delay(RATE) == 37 - shift and "session's takes" in aligned.note
    assert np.allclose(y[100:-100], t.take[100:-100])


def test_takes_that_do_not_match_the_device_fall_back_to_its_measured_delay():
    from dataclasses import replace

    from knobcap.capture.device_delay import DelayAligned, delay_from_takes

    noise = np.random.default_rng(3).standard_normal(24_000)
    takes = [replace(t, take=noise) for t in _takes_of_late(0)]
    assert not delay_from_takes(_Late(), takes).confident
    aligned = DelayAligned(_Late(), takes=takes)
    assert aligned.delay(RATE) == 37 and aligned.latencies[RATE].method == "blips"
    other_rate = DelayAligned(_Late(), takes=[replace(t, sample_rate=44_100) for t in _takes_of_late(1)])
    assert other_rate.delay(RATE) == 37  # takes at another rate say nothing about this one


def test_demo_config_captures_a_chosen_device():
    from knobcap.demo import DemoConfig

    config = DemoConfig.quick().for_device(f"lv2:{TS9}")
    assert config.device == f"lv2:{TS9}" and config.training == DemoConfig.quick().training
    assert DemoConfig.quick().device == "ts808"


@needs_ts9
@pytest.mark.parametrize("delay", [0, 658])
def test_dark_hot_tube_screamer_take_passes_check(tmp_path, delay):
    """Drive 1, tone 100 smears the validation music's correlation (its onset read 0 behind an
    interface delay of 658 and failed the take); the blips' sharp reading is now kept."""
    import soundfile as sf

    from knobcap.capture.check import check_take
    from knobcap.capture.testsignal import generate_signal

    signal = generate_signal(30)
    device = lv2_device(f"lv2:{TS9}")
    wet = device.process(signal.audio, RATE, {"drive": 1.0, "tone": 100.0, "level": -20.0})
    take = np.concatenate([np.zeros(delay), wet]).astype(np.float32)
    take += (1e-4 * np.random.default_rng(0).standard_normal(len(take))).astype(np.float32)
    sf.write(tmp_path / "take.wav", take, RATE, subtype="FLOAT")
    result = check_take(tmp_path / "take.wav", signal)
    assert result.latency is not None and result.latency.confident, result.latency
    assert 0 <= result.latency.samples - delay <= 1 and result.latency.polarity == 1
    assert not [p for p in result.problems if p.severity == "fail"], result.problems
