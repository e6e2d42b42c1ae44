"""Any installed LV2 plugin as a knobcap device, rendered by ``lv2apply`` (Debian's ``lilv-utils``).

``Lv2Device("http://guitarix.sourceforge.net/plugins/gxts9#ts9sim", select=("drive", "tone"),
fixed={"level": -10})`` reads the plugin's ports with ``lv2info`` (:mod:`knobcap.devices.lv2_ports`),
captures the selected controls and holds the others at the given value or the plugin's default
(``device.fixed``).

Rendering: each call writes the audio as a float32 WAV in a fresh temporary folder and runs
``lv2apply -i in.wav -o out.wav -c SYMBOL VALUE ... URI`` as a new process, so every take gets a fresh
plugin instance (no state leaks between takes) running at the call's sample rate (lv2apply
instantiates the plugin at the WAV's rate). lv2apply runs one frame per ``run()`` call and writes
exactly as many frames as it reads, in the input's format. A mono file feeds every audio input of the
plugin (a stereo plugin gets the same signal on both). A plugin with several outputs is read on
output ``channel`` (0, the left, by default): a real output jack, whereas averaging the two sides of
a stereo chorus or delay would comb-filter into a sound no output makes.

Start-up: a fresh instance is not at rest. Guitarix's plugins fade from their bypassed (dry) sound
into the effect over about 8200 samples at 48 kHz (GxTubeScreamer: 8178), and the fuzz circuits'
bias settles for longer (peak deviation from a long-settled render, with 0 / 0.25 / 0.5 / 1 / 2 s of
silence first: GxFuzzFace 0.99 / 0.2 / 0.076 / 0.009 / 6e-5; GxTubeScreamer 2.0 / 6e-6 / 0 / 0 / 0;
DS-1 1.3 / 2e-3 / 5e-6 / 2e-7). So every render is preceded by ``preroll_s`` seconds of silence
(1 s by default; about 0.07 s of rendering at lv2apply's ~15x realtime), which is then dropped.
Plugins with an LFO (tremolo, flanger, tape) start at the same phase in every take.

Latency: lv2apply neither compensates a plugin's reported latency nor reports it (its control
outputs are connected but never read), and plugins delay their output without reporting it at all
(Guitarix's DS-1: 31 samples at 48 kHz). So the output is returned as the host renders it, late by the
plugin's delay, like a real pedal's: :func:`knobcap.capture.device_delay.measure_delay` measures that delay
(as for any device) and ``knobcap.capture.latency.align`` removes it. Inside a session ``check``'s
blip calibration aligns every take anyway.

Host limits (lv2apply 0.24): no host features at all (no ``urid:map``, no ``worker:schedule``), and only
audio and control ports. A plugin with atom or CV ports is refused before any render; one that needs
a feature may run in a reduced mode or crash (Guitarix: 64 of 72 run at their defaults).
"""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from knobcap.controls import Controls
from knobcap.devices.errors import DeviceError
from knobcap.devices.lv2_ports import Lv2Controls, PluginInfo, describe_controls, feature_name, parse_lv2info

LV2APPLY = "lv2apply"
LV2INFO = "lv2info"
PREFIX = "lv2:"
INFO_TIMEOUT_S = 30.0
MIN_TIMEOUT_S = 60.0      # a render may always take this long (process start, plugin load)...
SLOWEST_REALTIME = 0.25   # ...plus the audio's duration over this speed (x realtime)
PREROLL_S = 1.0           # silence rendered before every take, then dropped (see the module docstring)
_INSTALL = "install it with 'apt-get install lilv-utils'"
_LIST = "list the installed plugins with 'lv2ls'"


def tool_path(tool: str) -> str:
    """The full path of ``lv2apply`` or ``lv2info``, or a DeviceError saying how to install it."""
    path = shutil.which(tool)
    if path is None:
        raise DeviceError(f"{tool} is not installed (it renders LV2 plugins for knobcap); {_INSTALL}.")
    return path


def describe_plugin(uri: str, timeout_s: float = INFO_TIMEOUT_S) -> PluginInfo:
    """The plugin's ports as ``lv2info URI`` lists them."""
    command = [tool_path(LV2INFO), uri]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"lv2info took more than {timeout_s:g} s to describe {uri}; check the LV2 "
                          "installation (LV2_PATH).") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise DeviceError(f"LV2 plugin {uri!r} is not installed; {_LIST} (Guitarix's plugins come with "
                          "'apt-get install guitarix-lv2').")
    return parse_lv2info(done.stdout, uri)


def describe_setting(values: Mapping[str, object]) -> str:
    """``drive=0.7, tone=400`` for error messages."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()) \
        or "the default setting"


def run_lv2apply(uri: str, audio: np.ndarray, sample_rate: int, values: Mapping[str, float],
                 where: str, timeout_s: float | None = None, features: Sequence[str] = ()) -> np.ndarray:
    """Render mono ``audio`` through the plugin with port ``values`` (symbol -> number) in a new process.

    Returns float32 of shape (frames, audio outputs), as many frames as the input. ``where`` names the
    take in errors (e.g. ``"setting drive=0.7"``); ``features`` are the plugin's required features,
    named when it crashes. The timeout is ``MIN_TIMEOUT_S`` plus the duration over ``SLOWEST_REALTIME``.
    """
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if timeout_s is None:
        timeout_s = MIN_TIMEOUT_S + len(x) / sample_rate / SLOWEST_REALTIME
    command = [tool_path(LV2APPLY), "-i", "in.wav", "-o", "out.wav"]
    for symbol, value in values.items():
        command += ["-c", symbol, repr(float(value))]
    command.append(uri)
    with tempfile.TemporaryDirectory(prefix="knobcap-lv2-") as folder:
        sf.write(Path(folder) / "in.wav", x, int(sample_rate), subtype="FLOAT", format="WAV")
        try:
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"LV2 plugin {uri}: lv2apply took more than {timeout_s:g} s at {where} "
                              f"({len(x) / sample_rate:.1f} s of audio); the plugin may hang at this "
                              "setting.") from None
        if done.returncode != 0:
            raise DeviceError(_failure(uri, done, where, features))
        out_path = Path(folder) / "out.wav"
        if not out_path.is_file():
            raise DeviceError(f"LV2 plugin {uri}: lv2apply wrote no output at {where}.")
        y, rate = sf.read(out_path, dtype="float32", always_2d=True)
    if rate != sample_rate or len(y) != len(x):
        raise DeviceError(f"LV2 plugin {uri}: lv2apply returned {len(y)} frames at {rate} Hz for {len(x)} "
                          f"at {sample_rate} Hz ({where}).")
    if not np.all(np.isfinite(y)):
        bad = int(np.count_nonzero(~np.isfinite(y)))
        raise DeviceError(f"LV2 plugin {uri} output {bad} NaN or infinite samples at {where}; that setting "
                          "is unusable (leave it out of the plan, or fix that control).")
    return y


def _failure(uri: str, done: subprocess.CompletedProcess[str], where: str, features: Sequence[str]) -> str:
    """The one-line error for a failed lv2apply run."""
    said = " ".join(done.stderr.split())[-300:] or "no message"
    if "has unsupported type" in done.stderr:
        return (f"lv2apply cannot host LV2 plugin {uri}: {said} (lv2apply connects only audio and control "
                "ports; plugins with atom or CV ports need another host).")
    if "not found" in done.stderr:
        return f"LV2 plugin {uri!r} is not installed; {_LIST}."
    if done.returncode < 0:
        try:
            how = f"signal {signal.Signals(-done.returncode).name}"
        except ValueError:
            how = f"signal {-done.returncode}"
        missing = (f"; it requires {', '.join(feature_name(f) for f in features)}, which lv2apply does "
                   "not provide") if features else ""
        return f"LV2 plugin {uri} crashed ({how}) at {where}{missing}. lv2apply said: {said}"
    return f"LV2 plugin {uri}: lv2apply failed (exit {done.returncode}) at {where}: {said}"


class Lv2Device:
    """An installed LV2 plugin as a device (see the module docstring).

    ``select``: names of the controls to capture (all musical controls when None); ``fixed``: values
    for other controls (the plugin's defaults otherwise); ``channel``: the output read from a plugin
    with several;
    ``preroll_s``: seconds of silence rendered (and dropped) before every take, while the plugin settles;
    ``timeout_s``: per render (default: ``MIN_TIMEOUT_S`` + duration / ``SLOWEST_REALTIME``);
    ``plugin``: a description already read (tests, or to skip ``lv2info``).
    """

    def __init__(self, uri: str, select: Sequence[str] | None = None,
                 fixed: Mapping[str, object] | None = None, *, channel: int = 0,
                 timeout_s: float | None = None,
                 preroll_s: float = PREROLL_S, plugin: PluginInfo | None = None) -> None:
        uri = uri[len(PREFIX):] if uri.startswith(PREFIX) else uri
        self.uri = uri
        self.plugin = plugin if plugin is not None else describe_plugin(uri)
        refused = self.plugin.unhostable_ports
        if refused:
            ports = ", ".join(f"port {p.index} ({p.symbol}, {p.kind})" for p in refused)
            raise DeviceError(f"lv2apply cannot host LV2 plugin {self.plugin.name} ({uri}): it has {ports}, "
                              "and lv2apply connects only audio and control ports.")
        if not self.plugin.audio_inputs or not self.plugin.audio_outputs:
            raise DeviceError(f"LV2 plugin {self.plugin.name} ({uri}) has {len(self.plugin.audio_inputs)} "
                              f"audio inputs and {len(self.plugin.audio_outputs)} outputs; knobcap needs "
                              "at least one of each (an effect, not an instrument or a meter).")
        outputs = len(self.plugin.audio_outputs)
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < outputs:
            raise DeviceError(f"LV2 plugin {self.plugin.name}: channel must be 0 to {outputs - 1} (its audio "
                              f"outputs); got {channel!r}.")
        if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
            raise DeviceError(f"LV2 plugin {self.plugin.name}: timeout_s must be a positive number of "
                              f"seconds; got {timeout_s!r}.")
        if not (isinstance(preroll_s, int | float) and math.isfinite(preroll_s) and 0 <= preroll_s <= 60):
            raise DeviceError(f"LV2 plugin {self.plugin.name}: preroll_s must be 0 to 60 seconds; "
                              f"got {preroll_s!r}.")
        self.description: Lv2Controls = describe_controls(self.plugin, select, fixed)
        self.controls: Controls = self.description.controls
        self.name = f"{PREFIX}{uri}"
        self.channel = channel
        self.timeout_s = timeout_s
        self.preroll_s = float(preroll_s)

    def __repr__(self) -> str:
        return f"Lv2Device({self.uri!r}, select={tuple(self.controls.names)!r}, fixed={self.fixed!r})"

    @property
    def fixed(self) -> dict[str, float | str]:
        """The controls not captured and the value each is held at."""
        return dict(self.description.fixed)

    @property
    def left_out(self) -> dict[str, str]:
        """Port symbol -> why it is not a control (bypass, latency output, atom port...)."""
        return dict(self.description.left_out)

    @property
    def reports_latency(self) -> bool:
        """Whether the plugin has a latency output port (lv2apply never reads it: measure the delay)."""
        return self.plugin.latency_port is not None

    def port_values(self, setting: Mapping[str, object]) -> dict[str, float]:
        """Port symbol -> value sent to lv2apply for a setting of the captured controls."""
        clean = self.controls.validate_setting(setting, where=f"{self.name} setting")
        return self.description.port_values(clean)

    def render(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        """Every audio output, as rendered (late by the plugin's delay) after the pre-roll: float32
        (frames, outputs), as many frames as ``audio``."""
        values = self.port_values(setting)
        x = _check_audio(audio, self.name)
        rate = _check_rate(sample_rate, self.name)
        where = f"setting {describe_setting(self.controls.validate_setting(setting))}"
        preroll = round(self.preroll_s * rate)
        x = np.concatenate([np.zeros(preroll, dtype=np.float32), x])
        y = run_lv2apply(self.uri, x, rate, values, where, self.timeout_s, self.plugin.required_features)
        return y[preroll:]

    def process(self, audio: np.ndarray, sample_rate: int, setting: Mapping[str, object]) -> np.ndarray:
        """Mono float32 output (output ``channel``) of the same length as ``audio``, as rendered."""
        return np.ascontiguousarray(self.render(audio, sample_rate, setting)[:, self.channel])

    __call__ = process


def lv2_device(spec: str, **options: object) -> Lv2Device:
    """The device for ``lv2:<URI>`` (what ``get_device("lv2:...")`` should return)."""
    if not spec.startswith(PREFIX) or len(spec) == len(PREFIX):
        raise DeviceError(f"{spec!r} is not an LV2 device; write lv2:<plugin URI> ({_LIST}).")
    return Lv2Device(spec, **options)  # type: ignore[arg-type]


def _check_audio(audio: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name}: audio must be mono and not empty (1-D); got shape {x.shape}.")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: audio contains NaN or infinite samples; clean the input first.")
    return x


def _check_rate(sample_rate: int, name: str) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) \
            or not 1_000 <= sample_rate <= 768_000:
        raise ValueError(f"{name}: sample_rate must be a whole number of Hz (e.g. 48000); "
                         f"got {sample_rate!r}.")
    return int(sample_rate)
