"""``knobcap play --live``: the streaming engine on a sound card's input, through sounddevice.

sounddevice (PortAudio) is optional and imported only here; without it, or without an input and an
output device, :class:`LiveError` says what to install or connect. The audio callback processes each
block in place into preallocated buffers (no allocation in the audio thread); the page's knob moves
reach the engine through :meth:`LiveStream.set`, which ramps knobs as the engine does.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


class LiveError(RuntimeError):
    """Live audio cannot start; the message says what is missing and what to do."""


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError:
        raise LiveError("--live needs the sounddevice package: pip install sounddevice "
                        "(and a sound card with an input).") from None
    except OSError as error:  # the package is there but PortAudio is not
        raise LiveError(f"--live: PortAudio is missing ({error}); install it (e.g. apt-get install "
                        "libportaudio2).") from None
    return sounddevice


class LiveStream:
    """A duplex stream: input channel 1 -> engine -> every output channel."""

    def __init__(self, model_path: str | Path, block_size: int = 128, device: str | int | None = None,
                 setting: Mapping[str, object] | None = None) -> None:
        from knobcap.runtime.engine import Engine

        sd = _sounddevice()
        self.engine = Engine.from_file(model_path, max_block=block_size)
        if setting:
            self.engine.set(setting, ramp_ms=0.0)
            self.engine.reset()
        self.block_size = block_size
        self._in = np.zeros(block_size, np.float32)
        self._out = np.zeros(block_size, np.float32)
        self._lock = threading.Lock()
        self.xruns = 0
        try:
            self._stream = sd.Stream(samplerate=self.engine.sample_rate, blocksize=block_size,
                                     channels=(1, 2), dtype="float32", device=device, latency="low",
                                     callback=self._callback)
        except Exception as error:  # PortAudioError, ValueError: no such device / rate
            raise LiveError(f"--live: no usable sound card at {self.engine.sample_rate} Hz ({error}); "
                            "connect an audio interface or choose one with --device "
                            "(python -m sounddevice lists them).") from None

    def _callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            self.xruns += 1
        self._in[:frames] = indata[:frames, 0]
        with self._lock:
            self.engine.process_block(self._in[:frames], self._out)
        outdata[:frames, :] = self._out[:frames, None]

    def set(self, setting: Mapping[str, object]) -> None:
        """Move the live engine's controls (knobs ramp, switches jump)."""
        with self._lock:
            self.engine.set(setting)

    def start(self) -> None:
        self._stream.start()

    def stop(self) -> None:
        self._stream.stop()
        self._stream.close()
