"""Classification metrics: accuracy, macro-F1, per-route precision/recall/F1 and confusion."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (labels, preds), 1)
    return cm


def classification_report(labels: np.ndarray, preds: np.ndarray, routes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-route scores; ``confusion[true][predicted]`` counts."""
    n = len(routes)
    cm = confusion_matrix(labels, preds, n)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    present = support > 0
    total = int(cm.sum())
    return {
        "n": total,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_route": {
            r: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, r in enumerate(routes)
        },
        "confusion": {
            r: {c: int(cm[i, j]) for j, c in enumerate(routes) if cm[i, j]} for i, r in enumerate(routes)
        },
    }


def evaluate_predictions(
    labels: np.ndarray, preds: np.ndarray, langs: list[str], routes: list[str]
) -> dict[str, Any]:
    """:func:`classification_report` plus accuracy per language (``by_lang``)."""
    report = classification_report(labels, preds, routes)
    lang_arr = np.array(langs)
    report["by_lang"] = {}
    for lang in sorted(set(langs)):
        sel = lang_arr == lang
        report["by_lang"][lang] = {"n": int(sel.sum()), "accuracy": float((labels[sel] == preds[sel]).mean())}
    return report
