"""``controls.toml``: read it, write it (one writer), and set measured warps in a user's file.

The file holds one ``[[knob]]`` table and one ``[[switch]]`` table per control, a key a line, so that a
user can read and edit it and knobcap can add a knob's ``warp`` line without touching the rest
(:mod:`knobcap.controls.warp_lines`).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from knobcap.controls.space import Controls, ControlsError
from knobcap.controls.warp_lines import by_hand, warps_into_toml
from knobcap.fileio import write_text_atomic

CONTROLS_FILE = "controls.toml"


def load_controls(path: str | Path) -> Controls:
    """Read and validate a ``controls.toml`` file."""
    path = Path(path)
    if not path.is_file():
        raise ControlsError(f"{path}: no such file; run 'knobcap init' to write a template.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as error:
        raise ControlsError(f"{path}: not a text file (not UTF-8: {error}); write the controls as TOML "
                            "text, or run 'knobcap init' for a template.") from None
    except tomllib.TOMLDecodeError as error:
        raise ControlsError(f"{path}: not valid TOML ({error}); fix the syntax.") from None
    return Controls.from_dict(data, source=path)


def controls_to_toml(controls: Controls, header: str = "") -> str:
    """The controls.toml text: ``header`` (comment lines), then one table per control; a knob with a
    measured warp gets its ``warp`` line (and the comment that says where it came from)."""
    import tomli_w

    def table(kind: str, entries: Mapping[str, object]) -> str:
        lines = [f"[[{kind}]]"]
        for key, value in entries.items():
            if isinstance(value, list) and all(isinstance(v, float | int) for v in value):
                lines.append(f"{key} = [{', '.join(repr(float(v)) for v in value)}]")
            elif isinstance(value, list):
                lines.append(f"{key} = [{', '.join(json.dumps(str(v)) for v in value)}]")
            else:
                lines.append(tomli_w.dumps({key: value}).rstrip("\n"))
        return "\n".join(lines) + "\n"

    warps = {k.name: k.warp for k in controls.knobs if k.warp is not None}
    plain = Controls(knobs=tuple(replace(k, warp=None) for k in controls.knobs), switches=controls.switches,
                     name=controls.name)
    data = plain.to_dict()
    top = {key: value for key, value in (("name", controls.name), ("device", controls.device)) if value}
    parts = [tomli_w.dumps(top)] if top else []
    if controls.fixed:  # before the [[knob]] tables, so that warp lines are added to knobs only
        parts.append("# Not captured: held at these values in every take (knob units, switch positions).\n"
                     + tomli_w.dumps({"fixed": controls.fixed_values}))
    parts += [table("knob", k) for k in data["knob"]]  # type: ignore[attr-defined]
    parts += [table("switch", s) for s in data["switch"]]  # type: ignore[attr-defined]
    text = header + "\n".join(parts)
    return warps_into_toml(text, plain, warps) if warps else text  # type: ignore[arg-type]


def save_controls(controls: Controls, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``controls.toml`` atomically; refuses to replace an existing file unless asked."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; knobcap never overwrites it. Remove it first.")
    write_text_atomic(path, controls_to_toml(controls))
    return path


def write_warps(path: str | Path, warps: Mapping[str, Sequence[float]],
                lines: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> tuple[Controls, bool]:
    """Set the warps (and the other screened lines, ``lines``: key -> knob -> values, for ``gain_db``
    and ``audible``) in the controls.toml at ``path`` (atomically; nothing written when unchanged).

    The result is parsed again and must differ from the file before only by these lines (defaults
    included), else the file is left alone and the error says what to add by hand.
    Returns the new controls and whether the file changed.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    before = load_controls(path)
    warps = {name: tuple(float(u) for u in w) for name, w in warps.items()}
    extra = {key: {name: tuple(float(v) for v in values) for name, values in table.items()}
             for key, table in (lines or {}).items() if table}
    hand = by_hand(warps, extra)
    try:
        new_text = warps_into_toml(text, before, warps, extra)
    except ControlsError as error:
        raise ControlsError(f"{error} Or add these lines yourself: {hand}") from None
    try:
        after = Controls.from_dict(tomllib.loads(new_text), path)
    except (ValueError, ControlsError) as error:
        raise ControlsError(f"{path}: knobcap could not add the warps safely ({error}); the file is "
                             f"unchanged. Add these lines yourself: {hand}") from None
    if not _only_warps_differ(before, after, {"warp": warps, **extra}):
        raise ControlsError(f"{path}: knobcap could not add the warps safely (the edited file reads "
                             f"differently); it is unchanged. Add these lines yourself: {hand}")
    if new_text == text:
        return before, False
    write_text_atomic(path, new_text)
    return after, True


def _only_warps_differ(before: Controls, after: Controls,
                       screened: Mapping[str, Mapping[str, tuple[float, ...]]]) -> bool:
    if (before.name, before.switches, len(before.knobs)) != (after.name, after.switches, len(after.knobs)):
        return False
    blank = dict.fromkeys(screened)
    return all(replace(old, **blank) == replace(new, **blank)  # type: ignore[arg-type]
               and all(getattr(new, key) == table.get(old.name, getattr(old, key))
                       for key, table in screened.items())
               for old, new in zip(before.knobs, after.knobs, strict=True))


