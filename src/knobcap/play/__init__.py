"""``knobcap play``: a local web page with a model's knobs, rendering clips through the streaming engine.

``PlayApp`` holds the model and the clips; ``PlayServer`` serves the page on 127.0.0.1;
``open_app(model, clips)`` builds an app from a model file with the bundled demo clip and optional
files; :mod:`knobcap.play.live` runs the engine on a sound card's input.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from knobcap.play.audio import UploadError, decode_upload, wav_bytes
from knobcap.play.render import Renderer, RenderError, load_renderer
from knobcap.play.server import PlayApp, PlayServer, start_in_thread


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


__all__ = ["PlayApp", "PlayServer", "RenderError", "Renderer", "UploadError", "decode_upload", "demo_clip",
           "load_renderer", "open_app", "start_in_thread", "wav_bytes"]
