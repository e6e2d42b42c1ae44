"""Issue 15, part B: inputs that used to end in a traceback, a bad file or a meaningless run now end in
one ``error:`` line that names the file or option and the fix, with exit status 1 and nothing lost.

    9  a full disk under plan, reamp, check, render, export, report -> "the disk is full (N free)"
    10 a control named "drive\\n", positions " a" / "b "             -> refused at load (controls.toml)
    11 max = inf (and NaN)                                          -> refused at load, plan and screen
    12 render of NaN / Inf input                                    -> refused, the first bad sample named
    13 render --force onto /dev/full or a folder                    -> refused: not a regular file
    15 --devices abc, --model-config [..], /proc, a folder, a 401-digit default, binary files, a BOM
    16 --minutes -1, --threads 100000, --run ../../x                -> refused before training

The full disk is simulated: the write of knobcap's temporary file raises ``OSError(ENOSPC)`` (text) or
libsndfile's bare "System error" (audio) while the disk reports 1,234 bytes free.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from knobcap.cli import app
from knobcap.cli import base as cli_base
from knobcap.controls import Controls, Knob, Switch, save_controls
from playkit import RATE, make_run, make_session, tiny_controls, tiny_model

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_errors(monkeypatch):
    """Rich wraps at 80 columns under the test runner: widen it, so that 'one line' means one line."""
    monkeypatch.setattr(cli_base.err_console, "_width", 10_000)  # "width" would stay fixed at 80 after


def refused(args: list[str], *needles: str) -> str:
    """Run the CLI; it must exit 1 with exactly one ``error:`` line holding every needle, no traceback."""
    result = runner.invoke(app, args)
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a message, not a crash
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (to show that nothing was lost or left behind)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "model.knobcap")


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "in.wav"
    sf.write(path, (0.1 * np.sin(np.arange(RATE // 4) / 20)).astype(np.float32), RATE, subtype="FLOAT")
    return path


# ------------------------------------------------------------------------------- case 9: full disk
@pytest.fixture
def full_disk(monkeypatch):
    """Call it once the test's files are made: from then on every write of a temporary file fails as
    it does on a full disk."""
    return lambda: _fill(monkeypatch)


def _fill(monkeypatch) -> None:
    real_write_text = Path.write_text
    usage = namedtuple("usage", "total used free")

    def write_text(self: Path, *args, **kwargs):
        if self.name.startswith(".") and self.name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_text(self, *args, **kwargs)

    def write_audio(*args, **kwargs):
        raise sf.LibsndfileError(2)  # what libsndfile says when write() fails with ENOSPC

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setattr(sf, "write", write_audio)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, (1 << 30) - 1234, 1234))


def disk_full(args: list[str], folder: Path, name: str) -> None:
    before = snapshot(folder)
    line = refused(args, "the disk is full", "1.2 KiB free", name, "Free some space")
    assert snapshot(folder) == before, line  # nothing changed, no temporary file left


def test_full_disk_plan(tmp_path, full_disk):
    session = tmp_path / "s"
    session.mkdir()
    save_controls(tiny_controls(), session / "controls.toml")
    full_disk()
    disk_full(["plan", str(session), "--n", "12", "--seconds", "30"], tmp_path, str(session))


@pytest.fixture
def planned(tmp_path) -> Path:
    plan = [("take01", {"drive": 3.0, "tone": 5.0, "diodes": "led"}, "train"),
            ("take02", {"drive": 8.0, "tone": 2.0, "diodes": "silicon"}, "holdout")]
    return make_session(tmp_path / "s", tiny_controls(), plan,
                        device=lambda x, setting: (0.5 * x).astype(np.float32))


def test_full_disk_reamp(tmp_path, full_disk):
    from knobcap.devices import get_device

    controls = get_device("ts808").controls
    session = make_session(tmp_path / "s", controls, [("take01", controls.default_setting(), "train")])
    full_disk()
    disk_full(["reamp", str(session), "--device", "ts808"], session, "take01.wav")


def test_full_disk_check(planned, full_disk):
    full_disk()
    disk_full(["check", str(planned)], planned, "check.json")


def test_full_disk_render(tmp_path, model, clip, full_disk):
    full_disk()
    disk_full(["render", str(model), str(clip), str(tmp_path / "out.wav")], tmp_path, "out.wav")


def test_full_disk_export(tmp_path, model, full_disk):
    full_disk()
    disk_full(["export", str(model), "nam", str(tmp_path / "out.nam")], tmp_path, "out.nam")
    disk_full(["export", str(model), "nam", str(tmp_path / "grid"), "--grid", "2"], tmp_path, ".nam")


def test_full_disk_report(tmp_path, full_disk):
    run = make_run(tmp_path, model=False)
    full_disk()
    disk_full(["report", str(run), "--no-audio"], tmp_path, "report.html")


def test_disk_full_error_is_an_oserror_with_enospc(tmp_path, full_disk):
    from knobcap.fileio import DiskFullError, write_text_atomic

    full_disk()
    with pytest.raises(DiskFullError) as error:
        write_text_atomic(tmp_path / "x.txt", "x")
    assert error.value.errno == errno.ENOSPC and isinstance(error.value, OSError)


# ------------------------------------------------------------------ cases 10, 11: names and numbers
def session_with(tmp_path: Path, toml: str) -> Path:
    (tmp_path / "controls.toml").write_text(toml, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("toml", "needle"), [
    ('[[knob]]\nname = "drive\\n"\n', "must start with a letter"),
    ('[[knob]]\nname = "drive"\n[[switch]]\nname = "mode"\npositions = [" a", "b "]\n', "position ' a'"),
    ('[[knob]]\nname = "drive"\n[[switch]]\nname = "mode"\npositions = ["a,b", "c"]\n', "position 'a,b'"),
    ('[[knob]]\nname = "drive"\n[[switch]]\nname = "mode"\npositions = ["a\\"", "c"]\n', "position"),
    ('[[knob]]\nname = "drive"\nmax = inf\n', "'max' = inf is not a finite number"),
    ('[[knob]]\nname = "drive"\nmin = nan\n', "'min' = nan is not a finite number"),
    ('[[knob]]\nname = "drive"\ndefault = 1' + "0" * 400 + "\n", "characters) is not a finite number"),
], ids=["newline-name", "spaced-positions", "comma", "quote", "max-inf", "min-nan", "401-digits"])
def test_bad_names_positions_and_numbers_are_refused_at_load(tmp_path, toml, needle):
    session = session_with(tmp_path, toml)
    for verb in (["plan", str(session)], ["screen", str(session), "--device", "ts808"]):
        refused(verb, "controls.toml", needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["controls.toml"]  # no plan.csv written


def test_a_plan_csv_position_with_spaces_is_refused_by_the_same_rule(planned):
    text = (planned / "plan.csv").read_text()
    (planned / "plan.csv").write_text(text.replace(",led,", ',"led, x",'))
    refused(["check", str(planned)], "plan.csv, line", "'led, x'")


def test_a_401_digit_knob_default_in_a_model_file_is_refused(tmp_path, model, clip):
    data = json.loads(model.read_text())
    data["controls"]["knob"][0]["default"] = 10 ** 400
    bad = tmp_path / "bad.knobcap"
    bad.write_text(json.dumps(data))
    refused(["render", str(bad), str(clip), str(tmp_path / "out.wav")], str(bad), "not a finite number")
    refused(["export", str(bad), "nam", str(tmp_path / "out.nam")], str(bad), "not a finite number")
    assert not (tmp_path / "out.wav").exists() and not (tmp_path / "out.nam").exists()


# --------------------------------------------------------------------- case 12: non-finite audio
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_render_refuses_non_finite_input(tmp_path, model, bad):
    x = np.zeros((RATE, 2), np.float32)
    x[4800:4900, 1] = bad
    sf.write(tmp_path / "nan.wav", x, RATE, subtype="FLOAT")
    refused(["render", str(model), str(tmp_path / "nan.wav"), str(tmp_path / "out.wav")],
            "nan.wav: sample 4800 (at 0.100000 s, channel 2)", "100 sample(s)", "finite")
    assert not (tmp_path / "out.wav").exists()


def test_the_python_api_refuses_non_finite_audio_too(model):
    from knobcap.runtime.render import LoadedModel, RenderFileError

    with pytest.raises(RenderFileError, match="sample 3 "):
        LoadedModel.from_file(model)(np.array([0, 0, 0, np.nan], np.float32), RATE)


# ------------------------------------------------------------------- cases 13, 15: output paths
def test_render_force_onto_a_device_is_refused_and_the_device_kept(tmp_path, model, clip):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    refused(["render", str(model), str(clip), "/dev/full", "--force"], "/dev/full", "not a regular file")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_outputs_onto_a_folder_are_refused(tmp_path, model, clip):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    refused(["render", str(model), str(clip), str(folder), "--force"], str(folder), "is a folder")
    refused(["export", str(model), "nam", str(folder), "--force"], str(folder), "is a folder")
    refused(["export", str(model), "proteus", str(folder), "--force"], str(folder), "is a folder")
    run = make_run(tmp_path / "session", model=False)
    refused(["report", str(run), "--no-audio", "-o", str(_folder_html(tmp_path))], "is a folder")
    assert (folder / "keep.txt").read_text() == "mine"


def _folder_html(tmp_path: Path) -> Path:
    path = tmp_path / "report.html"
    path.mkdir()
    return path


def test_an_output_under_proc_is_refused(tmp_path, model, clip):
    if not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    refused(["render", str(model), str(clip), "/proc/knobcap-out.wav"], "/proc/knobcap-out.wav",
            "choose a folder you can write to")
    refused(["export", str(model), "nam", "/proc/knobcap.nam"], "/proc/knobcap.nam")


# ------------------------------------------------------------------------ case 15: files and options
def test_binary_controls_toml_and_plan_csv_name_the_file(planned, tmp_path):
    toml = tmp_path / "b"
    toml.mkdir()
    (toml / "controls.toml").write_bytes(b"\xff\xfe\x00binary\x00\x81")
    refused(["plan", str(toml)], "controls.toml", "not a text file")
    (planned / "plan.csv").write_bytes(b"take,drive\x00\xff\xfe\n\x81\x82")
    before = snapshot(planned)
    refused(["check", str(planned)], "plan.csv", "knobcap plan")
    assert snapshot(planned) == before


def test_a_plan_csv_with_a_byte_order_mark_is_accepted(planned):
    text = (planned / "plan.csv").read_text(encoding="utf-8")
    (planned / "plan.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    result = runner.invoke(app, ["check", str(planned)])
    assert "ufeff" not in result.output and "header" not in result.output, result.output
    assert (planned / "check.json").is_file(), result.output


def test_train_option_refusals_before_anything_is_written(tmp_path):
    session = tmp_path / "s"
    session.mkdir()
    config = tmp_path / "list.json"
    config.write_text("[1, 2]")
    cases = [
        (["--devices", "abc"], "--devices", "'auto'"),
        (["--model-config", str(config)], str(config), "JSON object"),
        (["--minutes", "-1"], "--minutes", "above 0"),
        (["--threads", "100000"], "--threads", "(max_threads)"),
        (["--run", "../../x"], "--run '../../x'", "plain folder name"),
        (["--run", "a/b"], "--run 'a/b'", "plain folder name"),
    ]
    for options, *needles in cases:
        refused(["train", str(session), *options], *needles)
    assert list(session.iterdir()) == [] and not (tmp_path / "x").exists()


def test_controls_built_in_python_follow_the_same_rules():
    from knobcap.controls import ControlsError

    with pytest.raises(ControlsError, match="not a finite number"):
        Controls(knobs=(Knob("drive", max=float("inf")),))
    with pytest.raises(ControlsError, match="position"):
        Controls(switches=(Switch("mode", ("a\n", "b")),))
    with pytest.raises(ControlsError, match="must start with a letter"):
        Controls(knobs=(Knob("drive\n"),))
