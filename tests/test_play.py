"""The play server without a browser: uploads, renders, errors, loopback only."""

from __future__ import annotations

import http.client
import io
import json

import numpy as np
import pytest
import soundfile as sf

from knobcap.play import PlayServer, UploadError, decode_upload, load_renderer, open_app, start_in_thread
from knobcap.runtime.render import RenderFileError
from playkit import RATE, tiny_model  # tests/playkit.py


def wav(seconds: float, rate: int = RATE, channels: int = 1, subtype: str = "PCM_16") -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.25 * np.sin(2 * np.pi * 330 * t)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([audio * (c + 1) / channels for c in range(channels)], axis=1), rate,
             format="WAV", subtype=subtype)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------- uploads
def test_upload_mono_at_the_model_rate_is_kept():
    audio, notes = decode_upload(wav(1.0), "a.wav", RATE)
    assert notes == [] and audio.dtype == np.float32 and len(audio) == RATE
    assert float(np.max(np.abs(audio))) == pytest.approx(0.25, abs=1e-3)


def test_upload_stereo_44k_is_mixed_and_resampled():
    audio, notes = decode_upload(wav(0.5, 44_100, channels=2), "s.wav", RATE)
    assert notes == ["mixed 2 channels to mono", "resampled from 44100 Hz to 48000 Hz"]
    assert len(audio) == RATE // 2
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * RATE / len(audio) - 330) < 3  # the pitch survived resampling
    assert float(np.max(np.abs(audio[1000:-1000]))) == pytest.approx(0.1875, abs=5e-3)  # mean of 1/2, 1


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"RIFF\x00\x00\x00\x00WAVEjunk" * 10, "not an audio file"),
    (wav(61.0, 8_000), "too long"),
    (wav(0.1, 4_000), "not supported"),
])
def test_bad_uploads_are_refused_clearly(data, message):
    with pytest.raises(UploadError, match=message) as error:
        decode_upload(data, "take.wav", RATE)
    assert "take.wav" in str(error.value)


# --------------------------------------------------------------------------------------- renders
@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model") / "model.knobcap")


def test_renderer_matches_the_engine_run_directly(model_path):
    from knobcap.runtime.engine import Engine

    renderer = load_renderer(model_path)
    x = np.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, 5000), np.float32)
    setting = {"drive": 8.0, "tone": 2.0, "diodes": "led"}
    engine = Engine.from_file(model_path, setting=setting)
    expected = engine.process(x, block_size=64)
    assert np.allclose(renderer.render(x, setting), expected, atol=1e-6)
    other = renderer.render(x, {"drive": 1.0, "tone": 9.0, "diodes": "silicon"})
    assert float(np.max(np.abs(other - expected))) > 1e-3


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(RenderFileError, match="no such model file"):
        load_renderer(tmp_path / "none.knobcap")


@pytest.fixture
def server(model_path):
    app = open_app(model_path)
    srv = PlayServer(app)
    start_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method, path, body=None, headers=None):
    """A request as the page makes it: POSTs carry the page's token (tests/faults checks without)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    headers = dict(headers or {})
    if method == "POST":
        headers.setdefault("X-Knobcap-Token", server.app.token)
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def test_server_binds_to_loopback_only(server):
    assert server.server_address[0] == "127.0.0.1"
    response, _ = request(server, "GET", "/api/controls", headers={"Host": "attacker.example"})
    assert response.status == 403


def test_controls_page_and_render(server):
    response, data = request(server, "GET", "/")
    assert response.status == 200 and b"<audio" in data
    response, data = request(server, "GET", "/api/controls")
    info = json.loads(data)
    assert [k["name"] for k in info["knobs"]] == ["drive", "tone"]
    assert info["clips"][0]["source"] == "demo"
    clip = info["clips"][0]["id"]
    body = json.dumps({"clip": clip, "setting": {"drive": 3, "tone": 7, "diodes": "led"}})
    response, data = request(server, "POST", "/api/render", body, {"Content-Type": "application/json"})
    assert response.status == 200 and response.getheader("Content-Type") == "audio/wav"
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == RATE and len(audio) == len(server.app.clips[clip].audio)
    setting = {"drive": 3, "tone": 7, "diodes": "led"}
    expected = server.app.renderer.render(server.app.clips[clip].audio, setting)
    assert np.allclose(audio, np.clip(expected, -1, 1), atol=1 / 32768 + 1e-6)
    response, dry = request(server, "GET", f"/api/dry?clip={clip}")
    assert response.status == 200 and dry != data


@pytest.mark.parametrize("body, status, message", [
    ({"clip": "c1", "setting": {"drive": 30, "tone": 5, "diodes": "led"}}, 400, "out of range"),
    ({"clip": "c1", "setting": {"drive": 3, "tone": 5, "diodes": "germanium"}}, 400, "no position"),
    ({"clip": "nope", "setting": {}}, 404, "no clip"),
    ({"clip": "c1"}, 400, "bad render request"),
])
def test_render_errors(server, body, status, message):
    response, data = request(server, "POST", "/api/render", json.dumps(body))
    assert response.status == status
    assert message in json.loads(data)["error"]


def test_upload_endpoint(server):
    response, data = request(server, "POST", "/api/upload", wav(0.5, 44_100, channels=2),
                             {"X-Filename": "../../etc/my clip.wav"})
    clip = json.loads(data)
    assert response.status == 200 and clip["name"] == "my clip.wav" and clip["seconds"] == 0.5
    response, data = request(server, "POST", "/api/upload", b"hello", {"X-Filename": "x.txt"})
    assert response.status == 400 and "x.txt" in json.loads(data)["error"]


def test_too_large_upload_is_refused_before_reading(server, monkeypatch):
    monkeypatch.setattr("knobcap.play.server.MAX_UPLOAD_BYTES", 1000)
    response, data = request(server, "POST", "/api/upload", b"\0" * 2000, {"X-Filename": "big.wav"})
    assert response.status == 413 and "limit" in json.loads(data)["error"]


def test_render_informs_listeners(server):
    seen = []
    server.app.listeners.append(seen.append)
    clip = next(iter(server.app.clips))
    server.app.render(clip, {"drive": 2, "tone": 2, "diodes": "silicon"})
    assert seen == [{"drive": 2.0, "tone": 2.0, "diodes": "silicon"}]


def test_live_without_sounddevice_says_what_to_install(model_path, monkeypatch):
    import builtins

    from knobcap.play.live import LiveError, LiveStream

    real_import = builtins.__import__

    def no_sounddevice(name, *args, **kwargs):
        if name == "sounddevice":
            raise ImportError("no module named sounddevice")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sounddevice)
    with pytest.raises(LiveError, match="pip install sounddevice"):
        LiveStream(model_path)


def test_live_callback_runs_the_engine_block_by_block(model_path, monkeypatch):
    """With a stand-in for sounddevice: the callback's output equals the engine on the same blocks."""
    import sys
    import types

    from knobcap.play.live import LiveStream
    from knobcap.runtime.engine import Engine

    class FakeStream:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.started = False

        def start(self):
            self.started = True

        def stop(self):
            self.started = False

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(Stream=FakeStream))
    setting = {"drive": 7.0, "tone": 3.0, "diodes": "led"}
    live = LiveStream(model_path, block_size=64, setting=setting)
    stream = live._stream
    assert stream.kwargs["samplerate"] == RATE and stream.kwargs["blocksize"] == 64
    x = np.asarray(np.random.default_rng(2).uniform(-0.5, 0.5, 64 * 5), np.float32)
    out = np.zeros((len(x), 2), np.float32)
    for start in range(0, len(x), 64):
        stream.kwargs["callback"](x[start:start + 64, None], out[start:start + 64], 64, None, None)
    expected = Engine.from_file(model_path, setting=setting).process(x, block_size=64)
    assert np.allclose(out[:, 0], expected, atol=1e-6) and np.array_equal(out[:, 0], out[:, 1])
    live.set({"drive": 1.0})
    assert live.engine.setting["drive"] == 1.0
