"""Small server-side SVG charts for the console (no JavaScript chart library).

``line_chart`` draws one series of (epoch seconds, value) points as a polyline with a y axis
from zero, three grid lines and time labels relative to the newest point; the result is
markup safe to embed (every text is escaped).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from markupsafe import Markup


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.1f}"
    return f"{v:.3g}"


def line_chart(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    unit: str = "",
    width: int = 520,
    height: int = 150,
    color: str = "#2563eb",
) -> Markup:
    left, right, top, bottom = 46, 8, 20, 22
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="13" class="chart-title">'
        f"{escape(title)}{escape(f' ({unit})' if unit else '')}</text>",
    ]
    if not points:
        parts.append(
            f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" class="chart-empty">'
            "no heartbeats yet</text></svg>"
        )
        return Markup("".join(parts))
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    ymax = max(ys) * 1.1 or 1.0
    span = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return left + (x - x0) / span * pw if x1 > x0 else left + pw

    def py(y: float) -> float:
        return top + ph - y / ymax * ph

    for frac in (0.0, 0.5, 1.0):
        y = top + ph - frac * ph
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="chart-grid"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end" class="chart-tick">'
            f"{_fmt(frac * ymax)}</text>"
        )
    for x, anchor in ((x0, "start"), (x1, "end")):
        label = datetime.fromtimestamp(x, UTC).strftime("%H:%M:%S")
        parts.append(
            f'<text x="{px(x):.1f}" y="{height - 6}" text-anchor="{anchor}" class="chart-tick">{label}</text>'
        )
    coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    parts.append(f'<polyline points="{coords}" fill="none" stroke="{escape(color)}" stroke-width="1.6"/>')
    lx, ly = points[-1]
    parts.append(f'<circle cx="{px(lx):.1f}" cy="{py(ly):.1f}" r="2.5" fill="{escape(color)}"/>')
    parts.append(f'<text x="{left + pw}" y="13" text-anchor="end" class="chart-last">last {_fmt(ly)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def progress_bar(steps: Sequence[float], step_index: int, state: str, width: int = 360) -> Markup:
    """The rollout's steps as segments: done, current (applying / baking), to come."""
    parts = [
        f'<svg class="steps" viewBox="0 0 {width} 26" width="{width}" height="26" role="img" '
        f'aria-label="steps">'
    ]
    prev = 0.0
    for i, pct in enumerate(steps):
        x = prev / 100 * width
        w = max((pct - prev) / 100 * width - 2, 2)
        if state == "succeeded" or i < step_index:
            cls = "done"
        elif i == step_index and state not in ("pending",):
            cls = {"aborted": "failed", "paused": "paused"}.get(state, "current")
        else:
            cls = "todo"
        parts.append(f'<rect x="{x:.1f}" y="2" width="{w:.1f}" height="14" class="step-{cls}"/>')
        parts.append(f'<text x="{x + w:.1f}" y="25" text-anchor="end" class="chart-tick">{pct:g}%</text>')
        prev = pct
    parts.append("</svg>")
    return Markup("".join(parts))
