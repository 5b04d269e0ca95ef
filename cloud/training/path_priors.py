"""The fleet's graph-path feedback as a training signal of the path scorer (issue 13, item 2).

The cloud's sync hub sums every node's confirmations and rejections per path (start entity type +
relation sequence; ``contracts.memory.FleetPathPrior``, ``cloud.sync.repository``). A training run
of the path scorer (``cloud.training.hop_scorer.train_path_scorer(priors=...)``) reads them as the
edge does at answer time — the net evidence of a path ``s = log(1 + c) − log(1 + r)`` — and uses
them, bounded, in two ways:

- **confirmed** (``s > 0``): every training question whose gold path is that path gets the loss
  weight ``w = min(1 + CONFIRM_GAIN · s, CONFIRM_MAX_WEIGHT)`` in a weighted mean
  (``Σ w_i ℓ_i / Σ w_i``): questions of paths the fleet keeps confirming pull harder, at most
  ``CONFIRM_MAX_WEIGHT`` times as hard as any other;
- **rejected** (``s < 0``): the path is a hard negative. In every training question where it is a
  candidate but not the gold path, its logit gets the additive margin
  ``m = min(REJECT_GAIN · (−s), REJECT_MAX_MARGIN)`` inside the cross-entropy (a logit-adjusted
  loss): to reach the same loss the scorer must rank the rejected path ``m`` nats further below
  the gold one; at inference no margin is added, so the path ends up lower. The gold labels of
  the training questions are never changed: a path the fleet rejected keeps its own questions.

One statistic per path, the same sign as the edge's answer-time prior, so a path is either
weighted up or pushed down, never both. With no priors — or none that touches a training
question — ``training_plan`` returns ``None`` and the trainer runs exactly the loss it ran before
(bit for bit; ``tests/cloud/training/test_path_priors.py``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from contracts.memory import FleetPathPrior

CONFIRM_GAIN = 0.5  # weight per nat of net confirmation evidence
CONFIRM_MAX_WEIGHT = 3.0  # no question pulls more than 3x (reached at c ≈ 54 with r = 0)
REJECT_GAIN = 0.25  # margin per nat of net rejection evidence
REJECT_MAX_MARGIN = 1.0  # nats; the edge's answer-time prior is bounded by the same 1.0


def evidence(confirmed: int, rejected: int) -> float:
    """Net feedback evidence of a path in nats, as the edge's answer-time prior reads it."""
    return math.log1p(confirmed) - math.log1p(rejected)


def confirm_weight(confirmed: int, rejected: int = 0) -> float:
    """Loss weight of a training question whose gold path has these fleet counts (1.0: none)."""
    return min(1.0 + CONFIRM_GAIN * max(evidence(confirmed, rejected), 0.0), CONFIRM_MAX_WEIGHT)


def reject_margin(confirmed: int, rejected: int) -> float:
    """Logit margin of a path with these fleet counts where it competes (0.0: not rejected)."""
    return min(REJECT_GAIN * max(-evidence(confirmed, rejected), 0.0), REJECT_MAX_MARGIN)


def priors_digest(priors: Sequence[FleetPathPrior]) -> str:
    """First 16 hex digits of sha256 over the priors' (start type, path, confirmed, rejected),
    sorted: names the feedback a training run read, whatever order it came in."""
    lines = sorted(f"{p.start_type}:{'/'.join(p.relations)}:{p.confirmed}:{p.rejected}" for p in priors)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PriorPlan:
    """Per-question loss weights and per-(question, path) logit margins of one training set."""

    weights: torch.Tensor  # [N] float
    margins: torch.Tensor  # [N, P] float, 0 where no rejected path competes
    summary: dict[str, Any]


def prior_summary(priors: Sequence[FleetPathPrior]) -> dict[str, Any]:
    """What a training run records of the priors it read (without use counts: no training set)."""
    return {
        "paths": len(priors),
        "confirmed": sum(p.confirmed for p in priors),
        "rejected": sum(p.rejected for p in priors),
        "digest": priors_digest(priors),
    }


def training_plan(
    priors: Sequence[FleetPathPrior],
    paths: Sequence[tuple[str, tuple[str, ...]]],
    gold: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[PriorPlan | None, dict[str, Any]]:
    """Weights and margins for training questions with gold path indices ``gold`` [N] into
    ``paths`` and candidate mask ``mask`` [N, P]; ``None`` when no prior changes any question
    (the trainer then runs its unweighted loss). The summary says how many priors were read and
    how many acted: ``confirmed_paths`` / ``weighted_questions``, ``rejected_paths`` /
    ``margin_questions``; ``unknown_paths``: priors for paths not in ``paths``."""
    index = {tp: i for i, tp in enumerate(paths)}
    weight_of = torch.ones(len(paths))
    margin_of = torch.zeros(len(paths))
    unknown = 0
    for p in priors:
        i = index.get((p.start_type, tuple(p.relations)))
        if i is None:
            unknown += 1
            continue
        weight_of[i] = confirm_weight(p.confirmed, p.rejected)
        margin_of[i] = reject_margin(p.confirmed, p.rejected)
    weights = weight_of[gold]
    not_gold = torch.ones_like(mask, dtype=torch.bool)
    not_gold[torch.arange(len(gold)), gold] = False
    margins = margin_of.unsqueeze(0) * (mask & not_gold)
    acting_w, acting_m = weights > 1.0, (margins > 0).any(1)
    summary = {
        **prior_summary(priors),
        "unknown_paths": unknown,
        "confirmed_paths": int(torch.unique(gold[acting_w]).numel()),
        "weighted_questions": int(acting_w.sum()),
        "rejected_paths": int(((margins > 0).any(0)).sum()),
        "margin_questions": int(acting_m.sum()),
        "confirm": {"gain": CONFIRM_GAIN, "max_weight": CONFIRM_MAX_WEIGHT},
        "reject": {"gain": REJECT_GAIN, "max_margin": REJECT_MAX_MARGIN},
    }
    if not bool(acting_w.any() or acting_m.any()):
        return None, summary
    return PriorPlan(weights=weights, margins=margins, summary=summary), summary


def weighted_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy as a weighted mean over the batch, ``Σ w_i ℓ_i / Σ w_i``."""
    per = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    return (weights * per).sum() / weights.sum()
