"""The play page in a real browser: controls built from the model, a knob turn renders new audio."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
import soundfile as sf

from knobcap.play import PlayServer, open_app, start_in_thread
from playkit import tiny_model


@pytest.fixture
def served(tmp_path):
    app = open_app(tiny_model(tmp_path / "model.knobcap"))
    server = PlayServer(app)
    start_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


def _renders(page) -> int:
    return int(page.get_attribute("#status", "data-renders") or 0)


def _model_audio(page) -> np.ndarray:
    """The WAV the page plays as model output, fetched back from its blob URL: RMS of 32 equal parts
    (16-bit samples after the 44-byte header)."""
    rms = page.evaluate("""async () => {
        const r = await fetch(document.getElementById('player').dataset.modelUrl);
        const buffer = await r.arrayBuffer();
        const samples = new Int16Array(buffer, 44, (buffer.byteLength - 44) >> 1);
        const parts = 32, size = Math.floor(samples.length / parts), out = [];
        for (let p = 0; p < parts; p++) {
            let sum = 0;
            for (let i = p * size; i < (p + 1) * size; i++) sum += (samples[i] / 32768) ** 2;
            out.push(Math.sqrt(sum / size));
        }
        return out;
    }""")
    return np.asarray(rms)


def test_play_page_turn_a_knob_renders_new_audio(page, served, screenshot):
    page.goto(served.url)
    page.wait_for_function("Number(document.getElementById('status').dataset.renders) >= 1", timeout=20000)
    assert page.text_content("#title") == "Tiny Drive"
    assert page.locator("#knobs input[type=range]").count() == 2
    assert page.locator("#switches select").count() == 1
    assert page.locator("#clip-select option").count() == 1
    assert page.locator("audio#player").count() == 1
    duration = page.evaluate("""() => new Promise(done => {
        const p = document.getElementById('player');
        if (p.readyState >= 1) done(p.duration);
        else p.addEventListener('loadedmetadata', () => done(p.duration)); })""")
    assert math.isclose(duration, 8.0, abs_tol=0.05)
    before = _model_audio(page)
    screenshot(page, "play_page")

    drive = page.locator("#knob-drive")
    drive.fill("9.5")  # a range input: fill sets the value and fires input + change
    page.wait_for_function("Number(document.getElementById('status').dataset.renders) >= 2", timeout=20000)
    assert "drive=9.5" in page.text_content("#status")
    after = _model_audio(page)
    assert before.shape == after.shape
    assert float(np.max(np.abs(after - before))) > 1e-3  # the model's sound changed with the knob
    assert served.app.renders >= 2

    page.select_option("#switch-diodes", "led")
    page.wait_for_function("Number(document.getElementById('status').dataset.renders) >= 3", timeout=20000)
    assert "diodes=led" in page.text_content("#status")
    assert page.is_hidden("#error")
    assert page.js_errors == []


def test_play_page_ab_switches_to_the_dry_clip(page, served):
    page.goto(served.url)
    page.wait_for_function("Number(document.getElementById('status').dataset.renders) >= 1", timeout=20000)
    model_src = page.get_attribute("#player", "src")
    page.click("#ab-dry")
    page.wait_for_function(f"document.getElementById('player').src !== {model_src!r}")
    assert page.get_attribute("#ab-dry", "aria-pressed") == "true"
    page.click("#ab-model")
    page.wait_for_function(f"document.getElementById('player').src === {model_src!r}")


def _wav(seconds: float, rate: int, channels: int = 1) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 220 * t)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([audio] * channels, axis=1), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_play_page_uploads_and_refusals(page, served, tmp_path, screenshot):
    page.goto(served.url)
    page.wait_for_function("Number(document.getElementById('status').dataset.renders) >= 1", timeout=20000)
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"RIFF" + struct.pack("<I", 4) + b"this is not audio at all")
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert "not an audio file" in page.text_content("#error")
    assert "notes.wav" in page.text_content("#error")
    screenshot(page, "play_page_bad_upload")

    good = tmp_path / "stereo44k.wav"
    good.write_bytes(_wav(1.0, 44_100, channels=2))
    page.set_input_files("#upload", str(good))
    page.wait_for_function("Number(document.getElementById('status').dataset.renders) >= 2", timeout=20000)
    assert page.locator("#clip-select option").count() == 2
    assert "stereo44k.wav" in page.text_content("#clip-select")
    notes = page.text_content("#clip-notes")
    assert "resampled from 44100 Hz" in notes and "mixed 2 channels" in notes
    assert page.is_hidden("#error")
