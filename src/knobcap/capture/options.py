"""A session's own choices, beside its recordings: ``DIR/session.json``.

    {"format": "knobcap-session", "version": 1,
     "accepted": {"take03": ["clipped"]},      # check findings the user accepted for a named take
     "polarity": -1 | 1 | null,                # the device's polarity, when the user declared it
     "remove_dc": true | false,                # takes' DC removed before training and evaluation
     "imported": {...} | null}                 # where an imported session's files came from

Missing file: nothing accepted, polarity measured, DC kept, not imported. Written atomically; only
``knobcap import`` and ``knobcap check --accept/--polarity`` write it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knobcap.fileio import write_json_atomic

OPTIONS_FILE = "session.json"
OPTIONS_FORMAT = "knobcap-session"
OPTIONS_VERSION = 1
# findings a user may accept for a take: the recording is usable as it is, only not ideal
ACCEPTABLE = ("clipped", "dc_offset", "noise", "drift", "too_long")


class OptionsError(ValueError):
    """session.json or an --accept/--polarity value is wrong; the message names it and what to do."""


@dataclass
class SessionOptions:
    """What ``DIR/session.json`` holds (see the module docstring)."""

    accepted: dict[str, tuple[str, ...]] = field(default_factory=dict)
    polarity: int | None = None
    remove_dc: bool = False
    imported: dict[str, Any] | None = None

    def is_accepted(self, take: str, code: str) -> bool:
        return code in self.accepted.get(take, ())

    def to_dict(self) -> dict[str, Any]:
        return {"format": OPTIONS_FORMAT, "version": OPTIONS_VERSION,
                "accepted": {t: list(c) for t, c in sorted(self.accepted.items())},
                "polarity": self.polarity, "remove_dc": self.remove_dc, "imported": self.imported}


def options_path(root: str | Path) -> Path:
    return Path(root) / OPTIONS_FILE


def read_options(root: str | Path) -> SessionOptions:
    """The session's options (defaults when ``session.json`` is absent)."""
    path = options_path(root)
    if not path.is_file():
        return SessionOptions()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != OPTIONS_FORMAT:
            raise ValueError("not a knobcap session file")
        accepted = {str(t): tuple(str(c) for c in codes)
                    for t, codes in dict(data.get("accepted") or {}).items()}
        polarity = data.get("polarity")
        if polarity not in (None, 1, -1):
            raise ValueError(f"'polarity' must be 1, -1 or null, not {polarity!r}")
        imported = data.get("imported")
        if imported is not None and not isinstance(imported, dict):
            raise ValueError("'imported' must be an object")
        return SessionOptions(accepted, polarity, bool(data.get("remove_dc", False)), imported)
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise OptionsError(f"{path}: unreadable ({error}); fix or remove it (it holds accepted "
                           "warnings and the declared polarity).") from None


def write_options(root: str | Path, options: SessionOptions) -> Path:
    path = options_path(root)
    write_json_atomic(path, options.to_dict())
    return path


def parse_accept(specs: Iterable[str], takes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["clipped:take03", ...]`` -> ``{"take03": ("clipped",)}``; unknown codes and takes refused."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        code, sep, take = spec.partition(":")
        code, take = code.strip(), take.strip()
        if not sep or not code or not take:
            raise OptionsError(f"--accept {spec!r}: write CODE:TAKE, e.g. --accept clipped:take03.")
        if code not in ACCEPTABLE:
            raise OptionsError(f"--accept {spec!r}: {code!r} cannot be accepted; only "
                               f"{', '.join(ACCEPTABLE)} can (the others make a take unusable).")
        if take not in takes:
            raise OptionsError(f"--accept {spec!r}: there is no take {take!r} in plan.csv.")
        out.setdefault(take, [])
        if code not in out[take]:
            out[take].append(code)
    return {t: tuple(c) for t, c in out.items()}


def parse_polarity(value: str | None) -> int | None:
    """``--polarity``: ``inverting``/``-1``, ``normal``/``1``, or ``measured`` (forget a declaration)."""
    if value is None:
        return None
    table = {"inverting": -1, "-1": -1, "normal": 1, "1": 1, "+1": 1, "measured": 0}
    if value.strip().lower() not in table:
        raise OptionsError(f"--polarity {value!r}: use inverting, normal or measured.")
    return table[value.strip().lower()]


def update_options(root: str | Path, accepted: Mapping[str, Sequence[str]] | None = None,
                   polarity: int | None = None) -> SessionOptions:
    """Add accepted findings and/or declare the polarity (0: measure it again); write session.json."""
    options = read_options(root)
    for take, codes in (accepted or {}).items():
        merged = list(options.accepted.get(take, ()))
        merged += [c for c in codes if c not in merged]
        options.accepted[take] = tuple(merged)
    if polarity is not None:
        options.polarity = None if polarity == 0 else polarity
    if accepted or polarity is not None:
        write_options(root, options)
    return options
