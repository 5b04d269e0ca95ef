"""Readable evaluation tables for a training run's metrics (shared by `autoglm train` and the demo)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"


def render_history(console: Console, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    table = Table(title="Training", title_justify="left")
    for col in ("epoch", "train loss", "val loss", "val acc", "val macro-F1", "seconds", "samples/s"):
        table.add_column(col, justify="right")
    for row in history:
        table.add_row(
            str(row["epoch"]),
            f"{row['train_loss']:.4f}",
            f"{row['val_loss']:.4f}",
            _pct(row["val_accuracy"]),
            f"{row['val_macro_f1']:.3f}",
            f"{row['seconds']:.1f}",
            f"{row.get('train_samples_per_s', 0):.0f}",
        )
    console.print(table)


def render_evaluation(
    console: Console, metrics: dict[str, Any], routes: list[str], title: str = "Evaluation"
) -> None:
    """Summary (overall, EN, ZH, macro-F1, temperature) and a per-route table with top confusions."""
    test = metrics["test"]
    summary = Table(
        title=f"{title} on the test split (unseen templates)" if metrics.get("split") == "test" else title,
        title_justify="left",
    )
    for col in (
        "examples",
        "accuracy",
        *[f"accuracy {lang.upper()}" for lang in sorted(test["by_lang"])],
        "macro-F1",
        "temperature",
    ):
        summary.add_column(col, justify="right")
    summary.add_row(
        str(test["n"]),
        _pct(test["accuracy"]),
        *[f"{_pct(v['accuracy'])} (n={v['n']})" for _, v in sorted(test["by_lang"].items())],
        f"{test['macro_f1']:.3f}",
        f"{metrics.get('temperature', 1.0):.3f}",
    )
    console.print(summary)
    per = Table(title="Per route", title_justify="left")
    for col, just in (
        ("route", "left"),
        ("precision", "right"),
        ("recall", "right"),
        ("F1", "right"),
        ("support", "right"),
        ("most confused with", "left"),
    ):
        per.add_column(col, justify=just)  # type: ignore[arg-type]
    for route in routes:
        s = test["per_route"].get(route)
        if s is None:
            continue
        wrong = sorted(
            ((c, n) for c, n in test["confusion"].get(route, {}).items() if c != route), key=lambda x: -x[1]
        )
        confused = ", ".join(f"{c} ({n})" for c, n in wrong[:3]) or "-"
        per.add_row(
            route,
            f"{s['precision']:.3f}",
            f"{s['recall']:.3f}",
            f"{s['f1']:.3f}",
            str(s["support"]),
            confused,
        )
    console.print(per)
