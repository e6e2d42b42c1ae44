"""Results that cannot be right: an ESR above 1 on the dense grid or the DI clips.

ESR 1 is what silence scores against the device; a model that trained well on its takes but scores
above 1 against the device's own renders is almost always compared with a render that is late
(a device's hidden delay: Guitarix's DS-1 scored 2.1 on every grid setting while its held-out takes
scored 0.007) or inverted. ``eval`` prints these lines and ``report`` shows them at the top.
"""

from __future__ import annotations

from collections.abc import Mapping

MISALIGNED_ESR = 1.0
SECTIONS = (("grid", "dense grid"), ("di", "DI clips"))


def misalignment_warnings(doc: Mapping[str, object]) -> list[str]:
    """One line per device section whose median or worst ESR is above :data:`MISALIGNED_ESR`."""
    lines: list[str] = []
    for key, title in SECTIONS:
        part = doc.get(key)
        summary = part.get("summary") if isinstance(part, Mapping) else None
        if not isinstance(summary, Mapping) or not summary.get("count"):
            continue
        worst = summary.get("max")
        median = summary.get("median")
        if isinstance(worst, int | float) and worst > MISALIGNED_ESR:
            lines.append(
                f"{title}: ESR above {MISALIGNED_ESR:g} (median {median:.3g}, max {worst:.3g}): worse than "
                "silence. The model and the device look misaligned or inverted (a delay or a polarity the "
                "device does not report); compare the held-out takes, which check aligned, and the "
                "device's measured delay (metrics.json 'device_delay').")
    return lines
