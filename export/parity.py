"""Parity numbers between a reference and a candidate (embedding cosine, route agreement, accuracy)
and the int8 accuracy guard built on them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts.tokenizer import TextTokenizer

RunFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def run_texts(
    run: RunFn, tokenizer: TextTokenizer, texts: Sequence[str], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and logits for ``texts``, batched (padding per batch, as the edge does)."""
    embs, logits = [], []
    for i in range(0, len(texts), batch_size):
        ids, mask = tokenizer(list(texts[i : i + batch_size]))
        e, lg = run(ids, mask)
        embs.append(np.asarray(e, dtype=np.float32))
        logits.append(np.asarray(lg, dtype=np.float32))
    return np.concatenate(embs), np.concatenate(logits)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return np.asarray((a * b).sum(axis=1) / np.maximum(na * nb, 1e-12), dtype=np.float64)


def parity_report(
    ref: tuple[np.ndarray, np.ndarray],
    cand: tuple[np.ndarray, np.ndarray],
    *,
    routes: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Numbers comparing ``cand`` to ``ref`` (both ``(embeddings, logits)`` over the same texts)."""
    (re_, rl), (ce, cl) = ref, cand
    cos = cosine_rows(re_, ce)
    ref_pred, cand_pred = rl.argmax(axis=1), cl.argmax(axis=1)
    report: dict[str, Any] = {
        "n": len(cos),
        "embedding_max_abs_diff": float(np.abs(re_ - ce).max()),
        "logits_max_abs_diff": float(np.abs(rl - cl).max()),
        "cosine_mean": float(cos.mean()),
        "cosine_p1": float(np.percentile(cos, 1)),
        "cosine_min": float(cos.min()),
        "route_agreement": float((ref_pred == cand_pred).mean()),
    }
    if labels is not None and routes is not None:
        index = {r: i for i, r in enumerate(routes)}
        known = [i for i, lab in enumerate(labels) if lab in index]
        if known:
            y = np.array([index[labels[i]] for i in known])
            report["accuracy_reference"] = float((ref_pred[known] == y).mean())
            report["accuracy"] = float((cand_pred[known] == y).mean())
            report["accuracy_drop"] = report["accuracy_reference"] - report["accuracy"]
            report["n_labelled"] = len(known)
    return {k: (float(f"{v:.6g}") if isinstance(v, float) else v) for k, v in report.items()}


@dataclass(frozen=True)
class GuardThresholds:
    min_route_agreement: float = 0.99
    max_accuracy_drop: float = 0.005
    min_cosine_p1: float = 0.97
    min_eval_size: int = 200


def guard_failures(report: dict[str, Any], t: GuardThresholds) -> list[str]:
    """Each failed condition as a readable line (empty: the guard passes)."""
    fails = []
    if report["n"] < t.min_eval_size:
        fails.append(f"evaluation set has {report['n']} queries, the guard needs at least {t.min_eval_size}")
    if report["route_agreement"] < t.min_route_agreement:
        fails.append(f"route agreement with fp32 {report['route_agreement']:.4f} < {t.min_route_agreement}")
    if "accuracy_drop" in report and report["accuracy_drop"] > t.max_accuracy_drop:
        fails.append(
            f"route accuracy {report['accuracy']:.4f} vs fp32 {report['accuracy_reference']:.4f}: "
            f"drop {report['accuracy_drop']:.4f} > {t.max_accuracy_drop}"
        )
    if report["cosine_p1"] < t.min_cosine_p1:
        fails.append(f"embedding cosine 1st percentile {report['cosine_p1']:.4f} < {t.min_cosine_p1}")
    return fails
