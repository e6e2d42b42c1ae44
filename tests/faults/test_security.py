"""Issue 15, part A: hostile inputs that must not run code, reach the play server from another site,
or take the machine down. Each case expects a one-line refusal, no traceback and nothing lost.

    1  a pickled last.ckpt in a run folder           -> refused, the payload never runs
    2  cross-origin POSTs to knobcap play (and --live) -> 403 without the page's token and origin
    3  compressed upload bombs (OGG, FLAC)            -> refused from the header, in a memory cap
    7  play: backlog, bounded workers, stalled bodies -> 64 queued, 503 when full, 408 after N s
    8  a truncated last.ckpt (full disk)              -> writes are atomic; resume falls back, says so
    14 two trainers on one run folder                 -> the second is refused (pid named); stale locks
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from knobcap.play import PlayServer, UploadError, decode_upload, open_app, start_in_thread
from knobcap.play.guard import WorkPool
from playkit import RATE, tiny_model

SRC = str(Path(__file__).resolve().parents[2] / "src")


def one_line(message: str) -> None:
    assert message and "\n" not in message.strip() and "Traceback" not in message, message


# ------------------------------------------------------------------------------- play: the server
@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model") / "model.knobcap")


@pytest.fixture
def server(model_path):
    srv = PlayServer(open_app(model_path))
    start_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()


def post(server, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def render_body(server) -> bytes:
    clip = next(iter(server.app.clips))
    return json.dumps({"clip": clip, "setting": {"drive": 3, "tone": 7, "diodes": "led"}}).encode()


def test_case2_the_page_carries_a_token_and_its_own_posts_pass(server, model_path):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    connection.request("GET", "/")
    page = connection.getresponse().read().decode()
    assert f'name="knobcap-token" content="{server.app.token}"' in page and len(server.app.token) >= 32
    port = server.server_address[1]
    status, data = post(server, "/api/render", render_body(server),
                        {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin",
                         "X-Knobcap-Token": server.app.token})
    assert status == 200 and data[:4] == b"RIFF"
    other = PlayServer(open_app(model_path, demo=False))
    try:
        assert other.app.token != server.app.token  # one token per run of the server
    finally:
        other.server_close()


@pytest.mark.parametrize("headers", [
    {"Origin": "https://attacker.example"},  # another site, no token
    {"Origin": "https://attacker.example", "X-Knobcap-Token": "guess"},
    {"Origin": "http://127.0.0.1:1"},  # another server on this machine
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # another port of localhost
    {},  # no origin (curl, a form without one), no token
    {"X-Knobcap-Token": "x" * 43},
])
def test_case2_cross_origin_posts_are_refused_and_do_not_move_the_live_knobs(server, headers):
    moved: list[object] = []
    server.app.listeners.append(moved.append)  # what --live hangs on renders: the sound card's knobs
    renders = server.app.renders
    for path, body in (("/api/render", render_body(server)), ("/api/upload", b"RIFF....")):
        status, data = post(server, path, body, dict(headers))
        assert status == 403
        message = json.loads(data)["error"]
        one_line(message)
        assert "another site" in message or "token" in message
    assert moved == [] and server.app.renders == renders and len(server.app.clips) == 1
    if "Origin" in headers:  # the right token from the wrong origin is refused too
        status, _ = post(server, "/api/render", render_body(server),
                         dict(headers, **{"X-Knobcap-Token": server.app.token}))
        assert status == 403 and moved == []


def test_case7_a_full_pool_answers_503_and_the_queue_drains(server):
    server.app.pool = WorkPool(workers=1, queue=0)
    gate, started = threading.Event(), threading.Event()
    renderer = server.app.renderer
    original = renderer.render

    def slow(audio, setting):
        started.set()
        gate.wait(60)
        return original(audio, setting)

    renderer.render = slow  # type: ignore[method-assign]
    headers = {"X-Knobcap-Token": server.app.token}
    first: list[int] = []
    worker = threading.Thread(target=lambda: first.append(post(server, "/api/render", render_body(server),
                                                                headers)[0]))
    worker.start()
    try:
        assert started.wait(60)
        status, data = post(server, "/api/render", render_body(server), headers)
        assert status == 503
        message = json.loads(data)["error"]
        one_line(message)
        assert "busy" in message and "try again" in message
    finally:
        gate.set()
        worker.join(120)  # the first render may compile the engine
        renderer.render = original  # type: ignore[method-assign]
    assert first == [200]
    for _ in range(50):  # the slot comes back when the first handler leaves the pool, just after it answers
        status = post(server, "/api/render", render_body(server), headers)[0]
        if status != 503:
            break
        time.sleep(0.1)
    assert status == 200


def test_case7_a_stalled_upload_is_dropped_after_the_body_deadline(server):
    server.body_seconds = 1.0
    port = server.server_address[1]
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    started = time.monotonic()
    stalled.sendall(f"POST /api/upload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n"
                    f"X-Knobcap-Token: {server.app.token}\r\nX-Filename: slow.wav\r\n\r\nRIFF".encode())
    answer = b""
    while chunk := stalled.recv(4096):
        answer += chunk
    waited = time.monotonic() - started
    stalled.close()
    assert answer.startswith(b"HTTP/1.1 408") and 0.9 < waited < 5, (answer[:200], waited)
    message = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    one_line(message)
    assert "1 s" in message and "4 of 100000 bytes" in message
    assert len(server.app.clips) == 1  # nothing was added
    status, _ = post(server, "/api/render", render_body(server), {"X-Knobcap-Token": server.app.token})
    assert status == 200  # the server still answers


def test_case7_sixty_parallel_connections_wait_in_the_backlog(model_path):
    """Before anything accepts, 60 connections complete their handshake (backlog 64); with Python's
    default of 5 the kernel drops the SYNs beyond the queue and the connects time out."""
    srv = PlayServer(open_app(model_path, demo=False))  # listening, not serving yet
    sockets = []
    try:
        for _ in range(60):
            sockets.append(socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=0.5))
        assert len(sockets) == 60
    finally:
        for s in sockets:
            s.close()
        srv.server_close()


# --------------------------------------------------------------------------- play: upload bombs
def ogg_bomb(seconds: float, channels: int = 255, rate: int = 8000) -> bytes:
    """A small Vorbis file of silence that decodes to seconds * rate * channels float32 samples."""
    buffer = io.BytesIO()
    block = np.zeros((rate, channels), np.float32)
    with sf.SoundFile(buffer, "w", rate, channels, format="OGG", subtype="VORBIS") as handle:
        for _ in range(int(seconds)):
            handle.write(block)
    return buffer.getvalue()


def flac(seconds: float, channels: int, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((int(seconds * rate), channels), np.float32), rate, format="FLAC")
    return buffer.getvalue()


@pytest.mark.parametrize("data, limit", [
    (lambda: ogg_bomb(2), "max_upload_channels"),
    (lambda: flac(1, 8, 48_000), "max_upload_channels"),
])
def test_case3_compressed_uploads_are_bounded_from_the_header_before_decoding(monkeypatch, data, limit):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the upload was decoded")

    payload = data()
    assert len(payload) < 100_000
    monkeypatch.setattr(sf, "read", no_decoding)
    with pytest.raises(UploadError) as error:
        decode_upload(payload, "bomb.ogg", RATE, max_seconds=1e9)
    one_line(str(error.value))
    assert "bomb.ogg" in str(error.value) and limit in str(error.value)


def test_case3_decoded_bytes_and_length_are_bounded_too(monkeypatch):
    monkeypatch.setenv("KNOBCAP_MAX_DECODED_BYTES", str(1 << 20))  # 1 MiB: a 2 s stereo FLAC is 1.5 MiB
    with pytest.raises(UploadError, match="max_decoded_bytes") as error:
        decode_upload(flac(2, 2, 96_000), "long.flac", RATE, max_seconds=1e9)
    one_line(str(error.value))
    monkeypatch.setenv("KNOBCAP_MAX_AUDIO_SECONDS", "1")
    with pytest.raises(UploadError, match="max_audio_seconds"):
        decode_upload(flac(2, 1, 8_000), "long.flac", RATE, max_seconds=1e9)


def test_case3_an_ogg_bomb_is_refused_within_a_memory_cap(tmp_path):
    """In a process that cannot map 64 MiB more than it holds, the 255-channel OGG (15 s, 122 MB
    decoded) is refused from its header; decoding it there directly fails, so the cap is real."""
    bomb = tmp_path / "bomb.ogg"
    bomb.write_bytes(ogg_bomb(15))
    script = textwrap.dedent(f"""
        import resource, sys
        import soundfile as sf
        from knobcap.play.audio import UploadError, decode_upload
        data = open({str(bomb)!r}, "rb").read()
        held = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (held + (64 << 20), resource.RLIM_INFINITY))
        try:
            decode_upload(data, "bomb.ogg", 48000, max_seconds=1e9)
        except UploadError as error:
            print("refused:", error)
        import io
        try:
            sf.read(io.BytesIO(data), dtype="float32")
            print("decoded within the cap")
        except MemoryError:
            print("decoding directly: MemoryError")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("refused: bomb.ogg: the number of channels is 255"), lines
    assert lines[1] == "decoding directly: MemoryError", lines  # the cap would have been hit


def test_case3_decoding_is_serialised(monkeypatch):
    running, most = [0], [0]
    lock = threading.Lock()
    real_read = sf.read

    def counting_read(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        try:
            return real_read(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(sf, "read", counting_read)
    payload = flac(0.5, 2, RATE)
    threads = [threading.Thread(target=decode_upload, args=(payload, f"{i}.flac", RATE)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == 1


# ------------------------------------------------------------------------ training: checkpoints
class Payload:
    """Unpickling this creates ``marker``: what a hostile checkpoint would do with os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def trained_session(tmp_path: Path, epochs: int = 2) -> tuple[Path, list[str]]:
    from typer.testing import CliRunner

    from knobcap.cli import app
    from test_training import TINY_WAVENET, make_session  # tests/test_training.py

    session = make_session(tmp_path / "session")
    model_json = tmp_path / "tiny.json"
    model_json.write_text(json.dumps(TINY_WAVENET), encoding="utf-8")
    common = [str(session), "--run", "r1", "--steps", "2", "--batch-size", "2", "--threads", "1",
              "--no-progress"]
    result = CliRunner().invoke(app, ["train", *common, "--model-config", str(model_json),
                                      "--epochs", str(epochs)])
    assert result.exit_code == 0, result.output
    return session, common


def cli(args: list[str]):
    from typer.testing import CliRunner

    from knobcap.cli import app

    return CliRunner().invoke(app, args)


def stamps(run: Path) -> dict[str, int]:
    """Every file of a run folder and when it was last written (the lock file aside)."""
    return {p.name: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != "train.lock"}


def error_line(output: str) -> str:
    text = " ".join(output.split())  # rich wraps long lines
    assert "Traceback" not in output, output
    return text


def test_case1_a_pickled_last_ckpt_never_runs(tmp_path):
    import torch

    from knobcap.training.checkpoints import SafeCheckpointIO, UnsafeCheckpointError, load_checkpoint

    session, common = trained_session(tmp_path, epochs=1)
    run = session / "runs" / "r1"
    marker = tmp_path / "pwned"
    last = run / "checkpoints" / "last.ckpt"
    good = load_checkpoint(last)
    good["knobcap"] = {"payload": Payload(marker)}
    torch.save(good, last)
    before = stamps(run)
    result = cli(["train", *common, "--resume", "--epochs", "2"])
    assert result.exit_code == 1 and not marker.exists()
    text = error_line(result.output)
    assert "last.ckpt: refused" in text and "never runs it" in text
    assert stamps(run) == before  # nothing ran, nothing changed
    with pytest.raises(UnsafeCheckpointError):
        SafeCheckpointIO().load_checkpoint(last)  # what Lightning's fit(ckpt_path=...) reads through
    assert not marker.exists()
    # the payload is live: a plain unpickling does create the marker
    torch.load(last, weights_only=False)
    assert marker.exists()


def test_case8_a_truncated_last_ckpt_resumes_from_the_best_intact_one(tmp_path):
    session, common = trained_session(tmp_path, epochs=2)
    checkpoints = session / "runs" / "r1" / "checkpoints"
    last = checkpoints / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # what a disk that filled mid-copy left behind
    best = [p.name for p in checkpoints.glob("best-*.ckpt")]
    result = cli(["train", *common, "--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    text = error_line(result.output)
    assert "last.ckpt is damaged" in text and f"resuming from {best[0]}" in text
    assert (checkpoints / "last.ckpt.damaged").read_bytes() == data[: len(data) // 2]  # kept, not lost
    from knobcap.training.checkpoints import load_checkpoint
    assert load_checkpoint(last)["epoch"] == 2  # epochs 0-based: the third finished
    from knobcap.models.modelfile import load_model_file
    assert load_model_file(session / "runs" / "r1" / "model.knobcap").metadata["training"]["epochs"] == 3


def test_case8_with_no_intact_checkpoint_resume_says_how_to_start_afresh(tmp_path):
    session, common = trained_session(tmp_path, epochs=1)
    run = session / "runs" / "r1"
    for path in (run / "checkpoints").glob("*.ckpt"):
        path.write_bytes(path.read_bytes()[:100])
    model = (run / "model.knobcap").read_bytes()
    result = cli(["train", *common, "--resume", "--epochs", "2"])
    assert result.exit_code == 1
    text = error_line(result.output)
    assert "no intact checkpoint to resume" in text and "--run <new name>" in text
    assert (run / "model.knobcap").read_bytes() == model


def test_case8_checkpoint_writes_are_atomic_on_a_full_disk(tmp_path):
    """A checkpoint write that fails part-way (a file-size cap here, as a disk that fills) leaves the
    previous checkpoint whole and no temporary file behind."""
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from pathlib import Path
        from knobcap.training.checkpoints import SafeCheckpointIO, load_checkpoint
        io, path = SafeCheckpointIO(), Path({str(tmp_path / "last.ckpt")!r})
        io.save_checkpoint({{"epoch": 0, "state_dict": {{"w": torch.zeros(10)}}}}, path)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.RLIM_INFINITY))
        try:
            io.save_checkpoint({{"epoch": 1, "state_dict": {{"w": torch.zeros(1_000_000)}}}}, path)
            print("written")
        except (OSError, ValueError) as error:
            print("refused:", error)
        print("epoch", load_checkpoint(path)["epoch"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("refused: ") and "last.ckpt" in lines[0] and lines[1] == "epoch 0", lines
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_case8_training_writes_its_checkpoints_through_the_atomic_writer(tmp_path, monkeypatch):
    import knobcap.training.checkpoints as checkpoints

    written: list[str] = []
    real = checkpoints.write_bytes_atomic
    monkeypatch.setattr(checkpoints, "write_bytes_atomic",
                        lambda path, data: (written.append(Path(path).name), real(path, data))[1])
    trained_session(tmp_path, epochs=1)
    assert "last.ckpt" in written and any(name.startswith("best-") for name in written)


# ------------------------------------------------------------------------- training: the lock
def test_case14_a_second_trainer_of_the_same_run_is_refused(tmp_path):
    session, common = trained_session(tmp_path, epochs=1)
    run = session / "runs" / "r1"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom knobcap.training.runlock import RunLock\n"
         f"lock = RunLock({str(run)!r}).__enter__()\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"})
    try:
        assert holder.stdout.readline().strip() == "held"
        before = stamps(run)
        result = cli(["train", *common, "--resume", "--epochs", "2"])
        assert result.exit_code == 1
        text = error_line(result.output)
        assert f"{run}: another knobcap train (pid {holder.pid}) is training this run" in text
        assert stamps(run) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder died without unlocking: its pid stays in the file, the lock is taken over
    assert (run / "train.lock").read_text().strip() == str(holder.pid)
    result = cli(["train", *common, "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    text = error_line(result.output)
    assert f"took over the lock of a trainer that is no longer running (pid {holder.pid})" in text
    assert (run / "train.lock").read_text() == ""  # released


def test_case14_the_lock_leaves_no_folder_behind_when_training_cannot_start(tmp_path):
    from knobcap.training.config import TrainingError
    from knobcap.training.loop import train
    from test_training import make_data, tiny_config

    with pytest.raises(TrainingError, match="accelerator"):
        train(make_data(), tiny_config(accelerator="no-such"), tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
