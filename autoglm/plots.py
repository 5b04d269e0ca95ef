"""PNG figures beside benchmark records and training checkpoints (matplotlib, ``plots`` extra).

A benchmark describes what to draw with :class:`Figure` (bars: baseline vs. this project per
case; lines: latency / throughput vs. concurrency, curves over epochs) and passes the figures to
``autoglm.bench.records.write_record``, which renders them next to the JSON record with
:func:`render`. A benchmark that passes none gets :func:`overview`: every numeric metric of the
record as bars, grouped by its top-level key. matplotlib runs headless (Agg) and is imported
only when a figure is drawn; without it :func:`available` is false and no PNG is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MAX_PANELS = 6
MAX_BARS = 14
PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")


@dataclass(frozen=True)
class Figure:
    """One panel. ``bars``: ``categories`` on x, one bar per series in each; ``lines``: ``x`` against
    each series (``None`` values leave a gap)."""

    title: str
    kind: Literal["bars", "lines"] = "bars"
    series: Mapping[str, Sequence[float | None]] = field(default_factory=dict)
    categories: Sequence[str] = ()
    x: Sequence[float] = ()
    xlabel: str = ""
    ylabel: str = ""
    logy: bool = False
    logx: bool = False

    def __post_init__(self) -> None:
        n = len(self.categories) if self.kind == "bars" else len(self.x)
        for name, ys in self.series.items():
            if len(ys) != n:
                raise ValueError(
                    f"figure {self.title!r}: series {name!r} has {len(ys)} values for {n} "
                    f"{'categories' if self.kind == 'bars' else 'x values'}"
                )


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        if math.isfinite(float(value)):
            out[prefix] = float(value)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)


def overview(metrics: Mapping[str, Any]) -> list[Figure]:
    """Bars of the record's numeric metrics, one panel per top-level key (at most 6 panels, 14 bars)."""
    groups: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        flat: dict[str, float] = {}
        if isinstance(value, Mapping):
            _flatten("", value, flat)
        else:  # top-level numbers share one panel
            _flatten(key, value, flat)
            key = "scalars"
        if flat:
            groups.setdefault(key, {}).update(flat)
    figures = []
    for key, flat in list(groups.items())[:MAX_PANELS]:
        items = list(flat.items())[:MAX_BARS]
        figures.append(
            Figure(title=key, categories=[k for k, _ in items], series={key: [v for _, v in items]})
        )
    return figures


def render(figures: Sequence[Figure], out: Path, *, title: str = "") -> Path:
    """Draw ``figures`` as panels of one PNG at ``out`` (two columns); returns ``out``."""
    if not figures:
        raise ValueError("nothing to plot: no figures")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figures = list(figures)[:MAX_PANELS]
    cols = 1 if len(figures) == 1 else 2
    rows = math.ceil(len(figures) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 3.6 * rows), squeeze=False)
    try:
        for ax, spec in zip(axes.flat, figures, strict=False):
            _draw(ax, spec)
        for ax in list(axes.flat)[len(figures) :]:
            ax.set_visible(False)
        if title:
            fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out


def _draw(ax: Any, spec: Figure) -> None:
    names = list(spec.series)
    if spec.kind == "bars":
        n = max(len(names), 1)
        width = 0.8 / n
        for i, name in enumerate(names):
            xs = [c + (i - (n - 1) / 2) * width for c in range(len(spec.categories))]
            ys = [math.nan if v is None else v for v in spec.series[name]]
            bars = ax.bar(xs, ys, width=width, label=name, color=PALETTE[i % len(PALETTE)])
            ax.bar_label(bars, labels=[_short(v) for v in ys], fontsize=7, padding=1)
        ax.set_xticks(range(len(spec.categories)))
        rotate = any(len(c) > 10 for c in spec.categories) or len(spec.categories) > 6
        ax.set_xticklabels(
            spec.categories, rotation=30 if rotate else 0, ha="right" if rotate else "center", fontsize=8
        )
    else:
        for i, name in enumerate(names):
            ys = [math.nan if v is None else v for v in spec.series[name]]
            ax.plot(list(spec.x), ys, marker="o", markersize=3, label=name, color=PALETTE[i % len(PALETTE)])
        if spec.logx:
            ax.set_xscale("log", base=2)
    if spec.logy:
        ax.set_yscale("log")
    ax.set_title(spec.title, fontsize=10)
    ax.set_xlabel(spec.xlabel, fontsize=9)
    ax.set_ylabel(spec.ylabel, fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    if len(names) > 1:
        ax.legend(fontsize=8)


def _short(v: float) -> str:
    if math.isnan(v):
        return ""
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"
