"""Warp lines: measured warps (and the other screened lines: an output gain's ``gain_db``, a knob's
``audible`` range) written into a user's controls.toml, every other line kept as it is.

TOML libraries drop comments, so the file is edited line by line: each ``[[knob]]`` table is found by
its header (the n-th table is the n-th knob), and its ``warp`` line (with the comment knobcap writes
above it) is replaced, or added after the table's last key. An unset ``default`` stays unset: it is
the middle of the taper, which a warp never moves (``controls.Knob``). Comments, order, indentation
and line endings stay as they were.

:func:`knobcap.controls.toml.write_warps` parses the edited text again and writes it (atomically) only
when it differs from the file before by the warps alone; otherwise the file is left alone and the error
gives the lines to add by hand (``by_hand``). Errors are :class:`ControlsError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from knobcap.controls.space import Controls, ControlsError

_KNOB_HEADER = re.compile(r"^\s*\[\[\s*knob\s*\]\]\s*(#.*)?$")
_TABLE_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"^(\s*)([A-Za-z0-9_\-\"']+)\s*=")
_MARK = "knobcap screen"
WARP_COMMENT = "# warp (measured by '{mark}'): u at {n} equally spaced turns; delete it to use the taper"
COMMENTS = {  # the comment knobcap writes above each screened line
    "warp": WARP_COMMENT,
    "gain_db": "# gain_db (measured by '{mark}'): an output gain, in dB at {n} equally spaced turns, "
               "applied and not learned; delete it to learn the knob",
    "audible": "# audible (measured by '{mark}'): the device is silent outside these values; plans stay "
               "inside",
}


def warps_into_toml(text: str, controls: Controls, warps: Mapping[str, Sequence[float]],
                    lines: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> str:
    """``text`` (a controls.toml parsed as ``controls``) with a ``warp = [...]`` line set in the
    ``[[knob]]`` table of each knob in ``warps``, and the other screened lines (``lines``: key ->
    knob -> values; ``gain_db`` of an output gain, ``audible``) likewise; every other line is kept.

    An existing line (and the comment knobcap wrote above it) is replaced; a new one goes after
    the table's last key. (An unset ``default`` stays unset: it is the middle of the taper, which a warp
    never moves.)
    """
    screened = {"warp": warps, **(lines or {})}
    newline = "\r\n" if "\r\n" in text else "\n"
    text_lines = text.splitlines(keepends=True)
    if text_lines and not text_lines[-1].endswith(("\n", "\r")):
        text_lines[-1] += newline
    headers = [i for i, line in enumerate(text_lines) if _TABLE_HEADER.match(line)]
    starts = [i for i in headers if _KNOB_HEADER.match(text_lines[i])]
    if len(starts) != len(controls.knobs):
        raise ControlsError(
            f"{controls.source or 'controls.toml'}: found {len(starts)} [[knob]] table(s) for "
            f"{len(controls.knobs)} knob(s); write each knob as its own [[knob]] table so that knobcap can "
            f"add its warp line.")
    for index in reversed(range(len(starts))):
        knob = controls.knobs[index]
        start = starts[index]
        stop = next((h for h in headers if h > start), len(text_lines))
        body = text_lines[start + 1:stop]
        for key, values in screened.items():
            if knob.name in values:
                body = _knob_lines(body, key, values[knob.name], COMMENTS[key], newline)
        text_lines[start + 1:stop] = body
    return "".join(text_lines)


def _knob_lines(body: list[str], key: str, values: Sequence[float], comment: str, newline: str) -> list[str]:
    """The lines of one [[knob]] table (after its header) with ``key`` (warp, gain_db, audible) set."""
    body = list(body)
    keys = _key_spans(body)
    indent = next((_KEY.match(body[a]).group(1) for a, _ in keys.values()), "")  # type: ignore[union-attr]
    new = [indent + comment.format(mark=_MARK, n=len(values)) + newline,
           indent + _warp_text(values, indent, newline, key) + newline]
    if key in keys:
        a, b = keys[key]
        if a > 0 and body[a - 1].lstrip().startswith("#") and _MARK in body[a - 1]:
            a -= 1
        body[a:b] = new
        return body
    last = max((b for _, b in keys.values()), default=0)
    body[last:last] = new
    return body


def _key_spans(body: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``key -> (first line, line after its value)`` for the keys of one table (multi-line arrays too)."""
    spans: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(body):
        match = _KEY.match(body[i])
        if not match or body[i].lstrip().startswith("#"):
            i += 1
            continue
        j, depth = i, 0
        while True:
            code = body[j].split("#", 1)[0] if '"' not in body[j] and "'" not in body[j] else body[j]
            depth += code.count("[") - code.count("]")
            j += 1
            if depth <= 0 or j >= len(body):
                break
        spans[match.group(2).strip("\"'")] = (i, j)
        i = j
    return spans


def _number(x: float) -> str:
    """A float as TOML, short and exact enough (6 significant decimals)."""
    return repr(round(float(x), 6) + 0.0)


def _warp_text(warp: Sequence[float], indent: str, newline: str = "\n", key: str = "warp") -> str:
    """``warp = [...]`` (or ``key = [...]``) on one line, or wrapped 8 numbers a line when longer than
    100 characters."""
    numbers = [_number(u) for u in warp]
    line = f"{key} = [{', '.join(numbers)}]"
    if len(indent) + len(line) <= 100:
        return line
    rows = [", ".join(numbers[i:i + 8]) for i in range(0, len(numbers), 8)]
    inner = f",{newline}{indent}    ".join(rows)
    return f"{key} = [{newline}{indent}    {inner},{newline}{indent}]"


def by_hand(warps: Mapping[str, Sequence[float]],
            lines: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> str:
    tables = {"warp": warps, **(lines or {})}
    texts = [(name, _warp_text(values, "", key=key)) for key, table in tables.items()
             for name, values in table.items()]
    return "; ".join(f"in the [[knob]] table of {name!r}: {text}" for name, text in texts)
