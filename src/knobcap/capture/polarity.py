"""The device's polarity: a property of the device, measured over every take, not a wiring fault.

A device may invert its input (many gain stages and tone stacks do). ``knobcap check`` measures each
take's polarity against its input; the device's polarity is the one most takes agree on, unless the
user declared it (``knobcap check DIR --polarity inverting``, kept in session.json). Training learns
the takes *at the device's polarity*, so a model (and everything that plays it: render, the engine,
the exports) answers with the device's polarity; only a take that disagrees with the others is
flipped, as a take recorded with the wiring the other way round. When as many takes read one way as
the other, the polarity is ambiguous: check fails and training refuses until it is declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DECLARE = "declare it with 'knobcap check {root} --polarity inverting' (or normal)"


@dataclass(frozen=True)
class Polarity:
    """The device's polarity (``None`` when unknown or ambiguous), its source, and who disagrees."""

    polarity: int | None
    source: str
    disagree: tuple[str, ...] = ()
    counts: dict[int, int] = field(default_factory=dict)

    @property
    def ambiguous(self) -> bool:
        return self.polarity is None and bool(self.counts) and self.counts.get(1) == self.counts.get(-1)

    @property
    def word(self) -> str:
        return {1: "normal", -1: "inverting"}.get(self.polarity or 0, "unknown")

    def to_dict(self) -> dict[str, object]:
        return {"value": self.polarity, "source": self.source, "disagree": list(self.disagree),
                "normal_takes": self.counts.get(1, 0), "inverting_takes": self.counts.get(-1, 0)}


def device_polarity(declared: int | None, rows: Mapping[str, Mapping[str, object]] | None) -> Polarity:
    """The polarity declared in session.json, else the majority of check.json's confident takes."""
    takes = {name: int(row["polarity"]) for name, row in (rows or {}).items()  # type: ignore[call-overload]
             if row.get("polarity") in (1, -1)}
    counts = {p: sum(1 for v in takes.values() if v == p) for p in (1, -1) if p in takes.values()}
    if declared in (1, -1):
        return Polarity(declared, "declared in session.json",
                        tuple(sorted(t for t, p in takes.items() if p != declared)), counts)
    if not takes:
        return Polarity(None, "not measured yet (run knobcap check)")
    normal, inverting = counts.get(1, 0), counts.get(-1, 0)
    if normal == inverting:
        return Polarity(None, f"ambiguous: {normal} takes read normal and {inverting} inverting", (), counts)
    majority = 1 if normal > inverting else -1
    agree = max(normal, inverting)
    return Polarity(majority, f"measured by knobcap check ({agree} of {len(takes)} takes)",
                    tuple(sorted(t for t, p in takes.items() if p != majority)), counts)
