"""The report's figures, drawn with matplotlib (Agg, no display) and returned as PNG bytes.

Every function takes plain data (numbers, settings, :class:`~knobcap.controls.Controls`) so that it can be
tested without a trained model. Knob axes are drawn in the knob's taper-aware coordinate ``u`` in [0, 1]
(equal steps are roughly equal steps in sound) with tick labels in the knob's own units (dial readings).

ESR colours use a log scale; NAM's verdicts mark the colour bar: < 0.01 great, < 0.035 not bad,
< 0.1 might sound OK, else probably not.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from knobcap.controls import Controls, Knob
from knobcap.metrics import VERDICT_LIMITS
from knobcap.metrics import verdict as _nam_verdict

ROLE_MARKERS: dict[str, tuple[str, str]] = {  # role -> (marker, face colour)
    "train": ("o", "white"),
    "anchor": ("s", "white"),
    "holdout": ("X", "#ff3b30"),
}
_DPI = 80
_NOT_CURVES = {"minutes", "lr", "step", "epoch", "time", "seconds"}


def verdict(esr: float) -> str:
    """NAM's plain word for an ESR."""
    return _nam_verdict(esr) if math.isfinite(esr) else "unknown"


@dataclass(frozen=True)
class PointESR:
    """One evaluated setting: its values, ESR, and a role (train/anchor/holdout/grid)."""

    setting: Mapping[str, float | str]
    esr: float
    role: str = "grid"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _knob_ticks(ax, knob: Knob, axis: str) -> None:
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    labels = [f"{knob.from_unit(u):.3g}" for u in ticks]
    if axis == "x":
        ax.set_xticks(ticks, labels)
        ax.set_xlim(-0.04, 1.04)
    else:
        ax.set_yticks(ticks, labels)
        ax.set_ylim(-0.04, 1.04)


def _knob_label(knob: Knob) -> str:
    unit = f" [{knob.unit}]" if knob.unit else ""
    taper = "" if knob.taper == "linear" else f" ({knob.taper} taper)"
    if knob.warp is not None:
        taper = " (screened: equal steps of sound)"
    return f"{knob.name}{unit}{taper}"


def _esr_norm(values: Sequence[float]):
    from matplotlib.colors import LogNorm

    finite = [v for v in values if math.isfinite(v) and v > 0]
    low = min([*finite, 1e-3]) if finite else 1e-3
    high = max([*finite, 0.1]) if finite else 0.1
    return LogNorm(vmin=max(low, 1e-6), vmax=high)


def _matches(setting: Mapping[str, object], fixed: Mapping[str, object], controls: Controls) -> bool:
    """Whether ``setting`` has the ``fixed`` values (knobs within a small tolerance)."""
    for name, value in fixed.items():
        control = controls[name]
        if isinstance(control, Knob):
            tolerance = 1e-6 * (control.max - control.min)
            try:
                if abs(float(setting[name]) - float(value)) > tolerance:  # type: ignore[arg-type]
                    return False
            except (KeyError, TypeError, ValueError):
                return False
        elif str(setting.get(name)) != str(value):
            return False
    return True


def _grid_cells(points: list[PointESR], kx: Knob, ky: Knob):
    """A pcolormesh of scattered grid points: unique ``u`` values on each axis, cell edges halfway."""
    ux = sorted({round(kx.to_unit(float(p.setting[kx.name])), 9) for p in points})
    uy = sorted({round(ky.to_unit(float(p.setting[ky.name])), 9) for p in points})
    z = np.full((len(uy), len(ux)), np.nan)
    for p in points:
        i = uy.index(round(ky.to_unit(float(p.setting[ky.name])), 9))
        j = ux.index(round(kx.to_unit(float(p.setting[kx.name])), 9))
        z[i, j] = p.esr
    return _edges(ux), _edges(uy), z


def _edges(centres: list[float]) -> np.ndarray:
    c = np.asarray(centres, dtype=float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def grid_slice(controls: Controls, grid: Sequence[PointESR], kx: Knob, ky: Knob,
               combo: Mapping[str, str]) -> tuple[list[PointESR], dict[str, float]]:
    """The grid points of one switch combination in the plane of knobs ``kx`` and ``ky``, with every
    other knob at the grid value nearest (in ``u``) to its default; returns the points and those values.
    """
    in_combo = [p for p in grid if _matches(p.setting, combo, controls)]
    others: dict[str, float] = {}
    for knob in controls.knobs:
        if knob in (kx, ky) or not in_combo:
            continue
        values = sorted({float(p.setting[knob.name]) for p in in_combo})  # type: ignore[arg-type]
        target = knob.to_unit(knob.default_value)
        others[knob.name] = min(values, key=lambda v: abs(knob.to_unit(v) - target))
    return [p for p in in_combo if _matches(p.setting, others, controls)], others


def esr_map(controls: Controls, grid: Sequence[PointESR], recorded: Sequence[PointESR],
            max_pairs: int = 3) -> bytes:
    """Held-out ESR across the control space, with the recorded settings on top.

    * one knob: ESR against the knob, one line per switch combination;
    * two knobs: a heatmap per switch combination;
    * more knobs: heatmaps of knob pairs, slicing through the default setting (each other knob at the
      grid value nearest its default).

    Without ``grid`` (no virtual device to render a dense grid), the recorded settings alone are drawn,
    coloured by their ESR: the map then shows only where ESR is known.
    """
    plt = _pyplot()
    knobs = list(controls.knobs)
    combos = controls.switch_combinations()
    norm = _esr_norm([p.esr for p in (*grid, *recorded)])
    cmap = "viridis"

    if len(knobs) == 0:
        fig, ax = plt.subplots(figsize=(6, 3))
        labels = [", ".join(f"{k}={v}" for k, v in c.items()) for c in combos]
        values = [min((p.esr for p in (*grid, *recorded) if _matches(p.setting, c, controls)),
                      default=float("nan")) for c in combos]
        ax.bar(labels, values, color="#4c72b0")
        ax.set_yscale("log")
        ax.set_ylabel("ESR")
        return _png(fig)

    if len(knobs) == 1:
        knob = knobs[0]
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        for combo in combos:
            label = ", ".join(f"{k}={v}" for k, v in combo.items()) or "ESR"
            pts = sorted((p for p in grid if _matches(p.setting, combo, controls)),
                         key=lambda p: float(p.setting[knob.name]))
            line = ax.plot([knob.to_unit(float(p.setting[knob.name])) for p in pts],
                           [p.esr for p in pts], "-", label=label)
            colour = line[0].get_color()
            for p in recorded:
                if _matches(p.setting, combo, controls):
                    marker, _ = ROLE_MARKERS.get(p.role, ("o", "white"))
                    ax.plot(knob.to_unit(float(p.setting[knob.name])), p.esr, marker, color=colour,
                            markeredgecolor="black", markersize=8)
        _add_verdict_lines(ax)
        ax.set_yscale("log")
        ax.set_ylabel("ESR (lower is better)")
        ax.set_xlabel(_knob_label(knob))
        _knob_ticks(ax, knob, "x")
        ax.legend(fontsize=8)
        return _png(fig)

    pairs = [(knobs[i], knobs[j]) for i in range(len(knobs)) for j in range(i + 1, len(knobs))][:max_pairs]
    panels = [(kx, ky, combo) for kx, ky in pairs for combo in combos]
    columns = min(len(panels), 4)
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns + 1.6, 3.2 * rows), squeeze=False,
                             gridspec_kw={"wspace": 0.38, "hspace": 0.55})
    image = None
    for ax, (kx, ky, combo) in zip(axes.flat, panels, strict=False):
        pts, others = grid_slice(controls, grid, kx, ky, combo)
        if len(pts) >= 2:
            xe, ye, z = _grid_cells(pts, kx, ky)
            image = ax.pcolormesh(xe, ye, np.ma.masked_invalid(z), norm=norm, cmap=cmap, shading="flat")
        near = [p for p in recorded if _matches(p.setting, combo, controls)]
        for p in near:
            marker, face = ROLE_MARKERS.get(p.role, ("o", "white"))
            colour = plt.get_cmap(cmap)(norm(p.esr)) if not pts else face
            scatter = ax.scatter(kx.to_unit(float(p.setting[kx.name])), ky.to_unit(float(p.setting[ky.name])),
                                 marker=marker, s=70, c=[colour], edgecolors="black", linewidths=1.0,
                                 norm=None, zorder=3)
            if not pts and image is None:
                image = scatter
        title = ", ".join(f"{k}={v}" for k, v in combo.items())
        if others:
            title = (title + "\n" if title else "") + " ".join(
                f"{name}={float(value):.3g}" for name, value in others.items())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(_knob_label(kx), fontsize=9)
        ax.set_ylabel(_knob_label(ky), fontsize=9)
        _knob_ticks(ax, kx, "x")
        _knob_ticks(ax, ky, "y")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.85, pad=0.02)
    bar.set_label("ESR (log scale; lower is better)")
    marks = [(limit, word) for limit, word in VERDICT_LIMITS if norm.vmin <= limit <= norm.vmax]
    if marks:  # label the colour bar with NAM's verdict limits instead of bare powers of ten
        from matplotlib.ticker import NullFormatter

        bar.set_ticks([limit for limit, _ in marks],
                      labels=[f"{word} below {limit:g}" for limit, word in marks])
        bar.ax.yaxis.set_minor_formatter(NullFormatter())
        for limit, _ in marks:
            bar.ax.axhline(limit, color="white", linewidth=1.2)
    handles = [plt.Line2D([], [], marker=m, linestyle="", markerfacecolor=f, markeredgecolor="black",
                          color="black", markersize=8, label=role) for role, (m, f) in ROLE_MARKERS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False,
               bbox_to_anchor=(0.45, -0.1 / rows))
    return _png(fig)


def _add_verdict_lines(ax) -> None:
    for limit, word in VERDICT_LIMITS:
        ax.axhline(limit, color="grey", linewidth=0.6, linestyle=":")
        ax.text(1.0, limit, f" {word}", transform=ax.get_yaxis_transform(), fontsize=7, va="center",
                color="grey")


def training_curves(history: Mapping[str, Sequence[float]], x_key: str = "epoch") -> bytes:
    """Loss and ESR columns of a training history against ``x_key`` (ESR-like columns on a log axis)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    x = np.asarray(history.get(x_key, []), dtype=float)
    columns = [k for k in history if k != x_key and len(history[k]) == len(x)]
    esr = [k for k in columns if "esr" in k.lower()]
    summaries = [k for k in esr if not k.lower().startswith("esr_")]  # per-take columns are esr_<take>
    esr = summaries or esr
    loss = [k for k in columns if "loss" in k.lower()]
    if not loss:
        loss = [k for k in columns if "esr" not in k.lower() and k.lower() not in _NOT_CURVES]
    fig, axes = plt.subplots(1, 2 if esr and loss else 1, figsize=(10 if esr and loss else 6, 3.4),
                             squeeze=False)
    panels = [(loss, "loss"), (esr, "ESR")] if esr and loss else [(loss or esr, "value")]
    for ax, (keys, label) in zip(axes.flat, panels, strict=True):
        for key in keys[:12]:
            y = np.asarray(history[key], dtype=float)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], "o-", label=key, linewidth=1.4, markersize=3)
        if label == "ESR" or all(np.nanmin(np.asarray(history[k], float)) > 0 for k in keys):
            ax.set_yscale("log")
        if label == "ESR":
            _add_verdict_lines(ax)
        ax.set_xlabel(x_key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(x) == 1:  # one epoch: a single point in the middle
            ax.set_xlim(x[0] - 1, x[0] + 1)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def waveform_overlay(target: np.ndarray, model: np.ndarray, sample_rate: int, title: str = "",
                     zoom_seconds: float = 0.03) -> bytes:
    """Target and model waveforms: the whole excerpt, and a zoom on its loudest few milliseconds."""
    plt = _pyplot()
    target = np.asarray(target, dtype=float)
    model = np.asarray(model, dtype=float)
    t = np.arange(len(target)) / sample_rate
    fig, (full, zoom) = plt.subplots(2, 1, figsize=(10, 4.6))
    full.plot(t, target, color="#1f77b4", linewidth=0.6, label="target (device)")
    full.plot(t, model, color="#ff7f0e", linewidth=0.6, alpha=0.75, label="model")
    full.plot(t, target - model, color="#d62728", linewidth=0.5, label="difference")
    full.set_xlabel("time [s]")
    full.legend(fontsize=8, loc="upper right")
    full.set_title(title, fontsize=10)
    width = max(int(zoom_seconds * sample_rate), 16)
    centre = int(np.argmax(np.abs(target))) if len(target) else 0
    start = max(0, min(centre - width // 2, len(target) - width))
    part = slice(start, start + width)
    zoom.plot(t[part] * 1000, target[part], color="#1f77b4", linewidth=1.2, label="target")
    zoom.plot(t[part] * 1000, model[part], color="#ff7f0e", linewidth=1.2, linestyle="--", label="model")
    zoom.set_xlabel("time [ms] (zoom on the loudest part)")
    zoom.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _png(fig)


def spectrum(audio: np.ndarray, sample_rate: int, n_fft: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Average power spectrum in dB (Welch: Hann windows of ``n_fft``, half overlap)."""
    from scipy.signal import welch

    audio = np.asarray(audio, dtype=float)
    n = min(n_fft, max(len(audio), 16))
    freqs, power = welch(audio, fs=sample_rate, nperseg=n)
    return freqs, 10 * np.log10(power + 1e-20)


def spectrum_overlay(target: np.ndarray, model: np.ndarray, sample_rate: int, title: str = "") -> bytes:
    """Average spectra of target and model (and their difference) on a log frequency axis."""
    plt = _pyplot()
    f, pt = spectrum(target, sample_rate)
    _, pm = spectrum(model, sample_rate)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    keep = f > 0
    top.semilogx(f[keep], pt[keep], color="#1f77b4", linewidth=1.0, label="target (device)")
    top.semilogx(f[keep], pm[keep], color="#ff7f0e", linewidth=1.0, alpha=0.8, label="model")
    top.set_ylabel("power [dB]")
    top.set_title(title, fontsize=10)
    top.legend(fontsize=8)
    top.grid(alpha=0.3, which="both")
    bottom.semilogx(f[keep], pm[keep] - pt[keep], color="#d62728", linewidth=0.8)
    bottom.axhline(0, color="grey", linewidth=0.6)
    bottom.set_ylim(-12, 12)
    bottom.set_ylabel("model - target [dB]", fontsize=8)
    bottom.set_xlabel("frequency [Hz]")
    bottom.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return _png(fig)
