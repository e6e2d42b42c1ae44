"""Every size that a file or a request can declare, bounded in one place and checked before allocating.

A model file, a ``controls.toml``, an upload or a command-line option can ask for any size. Each
bound below is named; the error says which one was hit, by whom, and how to raise it where a user
could really need more (a CLI flag or the environment variable ``KNOBCAP_<NAME>``, e.g.
``KNOBCAP_MAX_RECEPTIVE_FIELD=200000``).

The defaults are far above what a guitar capture needs (NAM's standard WaveNet has a receptive field
of 8,192 samples and 13,802 weights; a long session has a few hundred takes) and far below what would
take a machine down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class LimitError(ValueError):
    """A declared size is above its limit; the message names the limit and how to raise it."""


@dataclass(frozen=True)
class Limit:
    """A named bound: ``what`` in words, its ``default``, and the flag that raises it (if any)."""

    name: str
    what: str
    default: int
    flag: str | None = None

    @property
    def env(self) -> str:
        return f"KNOBCAP_{self.name.upper()}"

    @property
    def value(self) -> int:
        """The bound in force: the environment's override when set to a positive integer."""
        raw = os.environ.get(self.env)
        if raw is not None:
            try:
                value = int(raw)
            except ValueError:
                raise LimitError(f"{self.env}={raw!r}: not an integer; unset it or give a number.") from None
            if value > 0:
                return value
        return self.default

    def check(self, requested: float, where: str, bound: int | None = None) -> None:
        """Raise :class:`LimitError` when ``requested`` exceeds the bound (``bound`` overrides it)."""
        limit = self.value if bound is None else bound
        if not requested <= limit:  # NaN is refused too
            how = f"pass {self.flag} to raise it" if self.flag else f"set {self.env} to raise it"
            raise LimitError(f"{where}: {self.what} is {_count(requested)}, above the limit of "
                             f"{_count(limit)} ({self.name}); {how} if you really need more.")


def _count(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


# ----------------------------------------------------------------------------------------- models
MAX_RECEPTIVE_FIELD = Limit("max_receptive_field", "the receptive field (samples)", 1 << 17)
MAX_WEIGHTS = Limit("max_weights", "the number of weights", 20_000_000)
MAX_LAYERS = Limit("max_layers", "the number of layers", 256)
MAX_CHANNELS = Limit("max_channels", "the number of channels", 1024)

# ------------------------------------------------------------------------------------ designs, grids
MAX_TAKES = Limit("max_takes", "the number of takes", 2000)
MAX_SWITCH_COMBINATIONS = Limit("max_switch_combinations", "the number of switch combinations", 4096)
MAX_GRID_FILES = Limit("max_grid_files", "the number of files", 2000, "--max-files")
MAX_GRID_SETTINGS = Limit("max_grid_settings", "the number of grid settings", 20_000)

# ----------------------------------------------------------------------------------- audio uploads
MAX_UPLOAD_BYTES = Limit("max_upload_bytes", "the upload (bytes)", 64 << 20)
MAX_UPLOAD_CHANNELS = Limit("max_upload_channels", "the number of channels", 2)
MAX_AUDIO_SECONDS = Limit("max_audio_seconds", "the length (seconds)", 600)
MAX_DECODED_BYTES = Limit("max_decoded_bytes", "the decoded audio (bytes)", 512 << 20)

# -------------------------------------------------------------------------------- command options
MAX_THREADS = Limit("max_threads", "the number of threads", max(1, os.cpu_count() or 1) * 4)
