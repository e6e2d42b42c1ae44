"""The ``knobcap play`` web page: a loopback-only HTTP server with a few JSON endpoints.

    GET  /                  the page (static/index.html, app.js, style.css from the package)
    GET  /api/controls      the model's knobs and switches, the clips, the limits
    POST /api/render        {"clip": id, "setting": {...}} -> audio/wav (the model's output, 16-bit)
    GET  /api/dry?clip=id   audio/wav (the clip itself, for A/B)
    POST /api/upload        the raw bytes of an audio file (header X-Filename) -> {"clip": id, ...}

Errors are JSON ``{"error": message}`` with status 400 (bad input), 403 (not from the page), 404, 408
(a body that stalls), 413 (too large) or 503 (busy). The server binds to 127.0.0.1 only and answers
only requests addressed to the loopback host (no DNS rebinding); every POST must come from the page it
served and carry that page's token (:mod:`knobcap.play.guard`). Renders and uploads go through a
bounded pool of workers; request bodies have a deadline; the listen backlog is 64.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from knobcap import limits
from knobcap.controls import ControlsError, Setting
from knobcap.play.audio import MAX_SECONDS, UploadError, decode_upload, wav_bytes
from knobcap.play.guard import (
    TOKEN_PLACEHOLDER,
    RefusedError,
    WorkPool,
    check_post,
    host_ok,
    new_token,
    read_body,
)
from knobcap.runtime.render import Renderer

HOST = "127.0.0.1"
MAX_UPLOAD_BYTES = limits.MAX_UPLOAD_BYTES.value
BODY_SECONDS = 20.0  # a request body must arrive within this
IDLE_SECONDS = 30.0  # an idle or stalled connection is dropped after this
MAX_CLIPS = 12  # uploads beyond this replace the oldest upload
CACHE_SIZE = 24
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/index.html": ("index.html", "text/html; charset=utf-8"),
           "/app.js": ("app.js", "text/javascript; charset=utf-8"),
           "/style.css": ("style.css", "text/css; charset=utf-8")}


@dataclass
class Clip:
    """A dry clip the page can render: id, a name to show, the audio at the model's rate."""

    id: str
    name: str
    audio: np.ndarray
    source: str  # "demo", "file" or "upload"
    notes: tuple[str, ...] = ()

    def describe(self, sample_rate: int) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "source": self.source,
                "seconds": round(len(self.audio) / sample_rate, 2), "notes": list(self.notes)}


class PlayApp:
    """The state behind the page: one renderer, the clips, a small cache of renders."""

    def __init__(self, renderer: Renderer, title: str = "", max_seconds: float = MAX_SECONDS) -> None:
        self.renderer = renderer
        self.title = title or renderer.controls.name or "knobcap model"
        self.max_seconds = max_seconds
        self.clips: OrderedDict[str, Clip] = OrderedDict()
        self.renders = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self.listeners: list[Callable[[Setting], None]] = []  # e.g. the live stream's set()
        self.token = new_token()  # written into the page; every POST must carry it
        self.pool = WorkPool()

    # --- clips ----------------------------------------------------------------------------------
    def add_clip(self, name: str, audio: np.ndarray, source: str, notes: tuple[str, ...] = ()) -> Clip:
        with self._lock:
            clip = Clip(f"c{next(self._ids)}", name, np.asarray(audio, np.float32), source, notes)
            self.clips[clip.id] = clip
            uploads = [c for c in self.clips.values() if c.source == "upload" and c is not clip]
            if len(self.clips) > MAX_CLIPS and uploads:
                del self.clips[uploads[0].id]
        return clip

    def add_file(self, path: str | Path, source: str = "file") -> Clip:
        """Add a clip from a file on disk (checked like an upload)."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UploadError(f"{path}: cannot be read ({error.strerror}).") from None
        audio, notes = decode_upload(data, str(path), self.renderer.sample_rate, self.max_seconds)
        return self.add_clip(path.name, audio, source, tuple(notes))

    def upload(self, data: bytes, name: str) -> Clip:
        audio, notes = decode_upload(data, name, self.renderer.sample_rate, self.max_seconds)
        return self.add_clip(name, audio, "upload", tuple(notes))

    def clip(self, clip_id: str) -> Clip:
        clip = self.clips.get(clip_id)
        if clip is None:
            raise LookupError(f"no clip {clip_id!r}; reload the page.")
        return clip

    # --- the page's data --------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        controls = self.renderer.controls
        return {
            "title": self.title,
            "sample_rate": self.renderer.sample_rate,
            "engine": self.renderer.description,
            "knobs": [k.to_dict() for k in controls.knobs],
            "switches": [s.to_dict() for s in controls.switches],
            "default": controls.default_setting(),
            "clips": [c.describe(self.renderer.sample_rate) for c in self.clips.values()],
            "limits": {"max_seconds": self.max_seconds, "max_bytes": MAX_UPLOAD_BYTES},
            "renders": self.renders,
        }

    def render(self, clip_id: str, setting: Mapping[str, object]) -> tuple[bytes, float]:
        """WAV bytes of the model's output for a clip at a setting, and the seconds it took."""
        clip = self.clip(clip_id)
        clean = self.renderer.controls.validate_setting(setting, where="render request")
        for listener in self.listeners:
            listener(clean)
        key = json.dumps([clip_id, clean], sort_keys=True)
        started = time.perf_counter()
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            out = self.renderer.render(clip.audio, clean)
            cached = wav_bytes(out, self.renderer.sample_rate)
            with self._lock:
                self._cache[key] = cached
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        with self._lock:
            self.renders += 1
        return cached, time.perf_counter() - started

    def dry(self, clip_id: str) -> bytes:
        return wav_bytes(self.clip(clip_id).audio, self.renderer.sample_rate)


def _static(name: str) -> bytes:
    return (resources.files("knobcap.play") / "static" / name).read_bytes()


class PlayHandler(BaseHTTPRequestHandler):
    """HTTP handler; the :class:`PlayApp` is ``self.server.app``."""

    server_version = "knobcap-play"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS  # socket timeout: idle keep-alive connections and stalled headers are dropped

    @property
    def app(self) -> PlayApp:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints what matters
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    # --- helpers ----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str,
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _host_ok(self) -> bool:
        return host_ok(self.headers.get("Host"))

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._error(HTTPStatus.BAD_REQUEST, "the request has no valid Content-Length.")
            return None
        if length > MAX_UPLOAD_BYTES:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"the file is {length / 2**20:.1f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB "
                        f"(about {self.app.max_seconds:g} s of audio). Upload a shorter clip.")
            self.close_connection = True
            return None
        try:
            return read_body(self.rfile, self.connection, length,
                             getattr(self.server, "body_seconds", BODY_SECONDS))
        except RefusedError as refused:
            self.close_connection = True
            self._error(refused.status, refused.message)
            return None

    # --- verbs ------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.FORBIDDEN, "knobcap play answers only on 127.0.0.1 / localhost.")
            return
        url = urlsplit(self.path)
        if url.path in _STATIC:
            name, content_type = _STATIC[url.path]
            body = _static(name)
            if name == "index.html":
                body = body.replace(TOKEN_PLACEHOLDER.encode(), self.app.token.encode())
            self._send(HTTPStatus.OK, body, content_type)
        elif url.path == "/api/controls":
            self._json(self.app.describe())
        elif url.path == "/api/dry":
            clip_id = parse_qs(url.query).get("clip", [""])[0]
            try:
                self._send(HTTPStatus.OK, self.app.dry(clip_id), "audio/wav")
            except LookupError as error:
                self._error(HTTPStatus.NOT_FOUND, str(error.args[0]))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no page {url.path!r}.")

    def do_POST(self) -> None:
        if not self._host_ok():
            self._error(HTTPStatus.FORBIDDEN, "knobcap play answers only on 127.0.0.1 / localhost.")
            return
        url = urlsplit(self.path)
        try:
            check_post(self.headers, self.app.token, self.server.server_address[1])
        except RefusedError as refused:
            self.close_connection = True
            self._error(refused.status, refused.message)
            return
        body = self._body()
        if body is None:
            return
        try:
            with self.app.pool:
                self._post(url.path, body)
        except RefusedError as refused:
            self._error(refused.status, refused.message)

    def _post(self, path: str, body: bytes) -> None:
        if path == "/api/render":
            self._render(body)
        elif path == "/api/upload":
            name = self.headers.get("X-Filename") or "upload"
            name = Path(name.replace("\\", "/")).name[:120] or "upload"
            try:
                clip = self.app.upload(body, name)
            except UploadError as error:
                self._error(HTTPStatus.BAD_REQUEST, str(error))
                return
            self._json(clip.describe(self.app.renderer.sample_rate))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint {path!r}.")

    def _render(self, body: bytes) -> None:
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict) or not isinstance(request.get("setting"), dict):
                raise ValueError("expected {\"clip\": id, \"setting\": {name: value}}")
        except ValueError as error:
            self._error(HTTPStatus.BAD_REQUEST, f"bad render request: {error}.")
            return
        try:
            audio, seconds = self.app.render(str(request.get("clip", "")), request["setting"])
        except LookupError as error:
            self._error(HTTPStatus.NOT_FOUND, str(error.args[0]))
            return
        except ControlsError as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))
            return
        self._send(HTTPStatus.OK, audio, "audio/wav",
                   {"X-Render-Seconds": f"{seconds:.4f}", "X-Renders": str(self.app.renders)})


class PlayServer(ThreadingHTTPServer):
    """A threading HTTP server on the loopback interface holding a :class:`PlayApp`."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog: bursts of parallel requests wait instead of being reset

    def __init__(self, app: PlayApp, port: int = 0, verbose: bool = False) -> None:
        self.app = app
        self.verbose = verbose
        self.body_seconds = BODY_SECONDS
        super().__init__((HOST, port), PlayHandler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


def start_in_thread(server: PlayServer) -> threading.Thread:
    """Serve in a daemon thread (tests; ``server.shutdown()`` stops it)."""
    thread = threading.Thread(target=server.serve_forever, name="knobcap-play", daemon=True)
    thread.start()
    return thread
