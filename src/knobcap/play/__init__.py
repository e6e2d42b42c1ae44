"""``knobcap play``: a local web page with a model's knobs, rendering clips through the streaming engine.

``PlayApp`` holds the model and the clips; ``PlayServer`` serves the page on 127.0.0.1;
``open_app(model, clips)`` builds an app from a model file with the bundled demo clip and optional
files; :mod:`knobcap.play.live` runs the engine on a sound card's input; ``serve`` does what
``knobcap play`` does: the page (and the live stream) until Ctrl-C.
"""

from __future__ import annotations

import webbrowser
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from knobcap.play.audio import UploadError, decode_upload, wav_bytes
from knobcap.play.live import LiveError, LiveStream
from knobcap.play.server import PlayApp, PlayServer, start_in_thread
from knobcap.runtime.render import Renderer, load_renderer


class PlayError(ValueError):
    """``knobcap play`` cannot start; the message says what to do."""


def demo_clip() -> Path:
    """The DI guitar clip shipped with knobcap."""
    return Path(str(resources.files("knobcap") / "data" / "di_guitar.wav"))


def open_app(model: str | Path, clips: Iterable[str | Path] = (), demo: bool = True) -> PlayApp:
    """A :class:`PlayApp` for a model file, with the demo clip (when present) and ``clips`` loaded."""
    app = PlayApp(load_renderer(model))
    if demo and demo_clip().is_file():
        app.add_file(demo_clip(), source="demo")
    for clip in clips:
        app.add_file(clip)
    return app


def serve(model: str | Path, clips: Iterable[str | Path] = (), *, port: int = 8808, browser: bool = True,
          live: bool = False, device: str | None = None, block_size: int = 128,
          say: Callable[[str], None] = print) -> None:
    """Serve the page of ``model`` on 127.0.0.1 until Ctrl-C (another free port if ``port`` is busy);
    with ``live``, also run the model on the sound card ``device`` (a name or a number)."""
    app = open_app(model, clips)
    try:
        server = PlayServer(app, port=port)
    except OSError as error:
        if port == 0:
            raise PlayError(f"cannot open a port on 127.0.0.1 ({error.strerror}).") from None
        say(f"Port {port} is busy ({error.strerror}); using a free one.")
        server = PlayServer(app, port=0)
    stream = None
    if live:
        try:
            stream = LiveStream(model, block_size=block_size,
                                device=int(device) if device and device.isdigit() else device)
        except (LiveError, ValueError) as error:
            server.server_close()
            raise PlayError(str(error)) from None
        app.listeners.append(stream.set)
        stream.start()
        say(f"Live: input 1 -> model -> outputs, blocks of {block_size} samples.")
    say(f"[bold green]knobcap play[/] {app.title}: {server.url}  (Ctrl-C to stop)")
    if browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        say("Stopped.")
    finally:
        server.server_close()
        if stream is not None:
            stream.stop()


__all__ = ["LiveError", "LiveStream", "PlayApp", "PlayError", "PlayServer", "Renderer",
           "UploadError", "decode_upload", "demo_clip", "load_renderer", "open_app", "serve",
           "start_in_thread", "wav_bytes"]
