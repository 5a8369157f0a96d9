"""The release report's plots: small matplotlib figures rendered with Agg into base64 PNG.

Each function takes plain numbers and labels (no report document) and returns the PNG as base64
text, or None when there is nothing to draw, so the caller decides whether a plot appears at all.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

# Figure and FigureCanvasAgg instead of pyplot: no global figure registry to leak into, no backend
# to select for the whole process, and nothing to close (a Figure that pyplot never saw is freed
# like any other object). This is matplotlib's own advice for rendering inside a server.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

WIDTH_IN = 6.0
DPI = 100
MODEL_COLOUR = "#1f5fa8"
BASELINE_COLOUR = "#9aa5b1"
POSITIVE_COLOUR = "#2e7d32"
NEGATIVE_COLOUR = "#c62828"
GROUP_COLOURS = ("#1f5fa8", "#e07b00", "#2e7d32", "#8e24aa", "#c62828", "#00838f", "#6d4c41")


def finite(v: object) -> bool:
    """True for a real number that can be drawn (not None, not a bool, not NaN or infinite)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _figure(n_bars: int) -> Figure:
    # A fixed width keeps the page tidy; the height grows with the bars so labels never overlap.
    height = min(max(2.4, 0.28 * n_bars + 1.0), 6.0)
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    # No "Software" text chunk: it names matplotlib's web address, and the page should hold no
    # URL at all, even inside an image; it also makes the bytes depend only on the figure.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def metric_with_ci_plot(
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    is_model: Sequence[bool],
    metric: str,
    higher_is_better: bool | None,
) -> str | None:
    """Horizontal bars of one metric for a model and its baselines, with CI whiskers where known."""
    rows = [
        (lab, v, lo, hi, m)
        for lab, v, lo, hi, m in zip(labels, values, lows, highs, is_model)
        if finite(v)
    ]
    if not rows:
        return None
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]  # first row (the model) on top
    colours = [MODEL_COLOUR if r[4] else BASELINE_COLOUR for r in rows]
    ax.barh(ys, [r[1] for r in rows], color=colours)
    # Whiskers only where both bounds are known: a zero-width whisker would read as "no
    # uncertainty". matplotlib wants distances from the value, not the bounds.
    ci = [(y, r) for y, r in zip(ys, rows) if finite(r[2]) and finite(r[3])]
    if ci:
        ax.errorbar(
            [r[1] for _, r in ci],
            [y for y, _ in ci],
            xerr=[[r[1] - r[2] for _, r in ci], [r[3] - r[1] for _, r in ci]],
            fmt="none",
            ecolor="#333333",
            capsize=4,
        )
    ax.set_yticks(ys, [r[0] for r in rows])
    direction = {True: " (higher is better)", False: " (lower is better)"}.get(higher_is_better, "")
    ax.set_title(f"{metric}{direction}, 95% CI", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def bar_plot(
    labels: Sequence[str], values: Sequence[float], title: str, signed: bool = False
) -> str | None:
    """Horizontal bars in the order given (first on top); ``signed`` colours them by sign."""
    rows = [(lab, v) for lab, v in zip(labels, values) if finite(v)]
    if not rows:
        return None
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    if signed:
        colours = [POSITIVE_COLOUR if v >= 0 else NEGATIVE_COLOUR for _, v in rows]
        ax.axvline(0.0, color="#333333", linewidth=0.8)
    else:
        colours = [MODEL_COLOUR] * len(rows)
    ax.barh(ys, [v for _, v in rows], color=colours)
    ax.set_yticks(ys, [lab for lab, _ in rows], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def grouped_bar_plot(
    groups: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str
) -> str | None:
    """Vertical bars: a cluster per group, a bar per metric in ``series``; gaps where missing."""
    names = [name for name, vals in series.items() if any(finite(v) for v in vals)]
    if not groups or not names:
        return None
    fig = _figure(6)
    ax = fig.add_subplot()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        pairs = [(x, v) for x, v in zip(xs, series[name]) if finite(v)]
        ax.bar(
            [x for x, _ in pairs],
            [v for _, v in pairs],
            width=width,
            label=name,
            color=GROUP_COLOURS[i % len(GROUP_COLOURS)],
        )
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_title(title, fontsize=10)
    # Outside the axes: inside, it hides the tallest bars.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)
