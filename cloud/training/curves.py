"""The training curves PNG written beside ``checkpoint.yaml`` (``training_curves.png``).

Two panels from the checkpoint's training history: train / validation loss, and validation
accuracy (overall, per language, macro-F1) per epoch, with the best epoch marked. matplotlib
(the ``plots`` extra) is imported only here and only when installed; without it no PNG is
written and training is unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.logging import get_logger

log = get_logger("autoglm.cloud.training")

CURVES_FILE = "training_curves.png"


def write_training_curves(
    history: Sequence[Mapping[str, Any]], out: Path, *, best_epoch: int = 0
) -> Path | None:
    """Draw ``history`` (rows with ``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy``…) to ``out``.

    Returns the path, or ``None`` when there is no history or matplotlib is not installed."""
    if not history:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed (extra 'plots'): no training curves written")
        return None
    epochs = [int(r["epoch"]) for r in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    try:
        for key, label, color in (
            ("train_loss", "train loss", "#2563eb"),
            ("val_loss", "validation loss", "#dc2626"),
        ):
            if all(key in r for r in history):
                loss_ax.plot(
                    epochs,
                    [float(r[key]) for r in history],
                    marker="o",
                    markersize=3,
                    label=label,
                    color=color,
                )
        loss_ax.set_title("loss (cross-entropy)", fontsize=10)
        acc_keys = [k for k in history[-1] if k.startswith("val_accuracy") or k == "val_macro_f1"]
        palette = ("#059669", "#7c3aed", "#d97706", "#0891b2", "#db2777")
        for i, key in enumerate(sorted(acc_keys, key=lambda k: (k != "val_accuracy", k))):
            ys = [float(r[key]) * 100 if key in r else float("nan") for r in history]
            label = key.removeprefix("val_").replace("accuracy_", "accuracy ").replace("_", " ")
            acc_ax.plot(
                epochs,
                ys,
                marker="o",
                markersize=3,
                label=label,
                color=palette[i % len(palette)],
                linewidth=2.2 if key == "val_accuracy" else 1.2,
            )
        acc_ax.set_title("validation (%)", fontsize=10)
        for ax in (loss_ax, acc_ax):
            ax.set_xlabel("epoch", fontsize=9)
            ax.grid(True, alpha=0.3)
            if best_epoch:
                ax.axvline(
                    best_epoch, color="#6b7280", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}"
                )
            ax.legend(fontsize=8)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    finally:
        plt.close(fig)
    return out
