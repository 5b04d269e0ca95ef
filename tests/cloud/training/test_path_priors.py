"""The fleet's path feedback as a training signal of the path scorer (``cloud.training.path_priors``):
bounded weights and margins, exactly the old training without priors, and a confirmed (rejected)
path scored higher (lower) after training with the priors than without, on a tiny deterministic
setup (a hash embedding; one question said with two different gold paths)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from cloud.data.paraphrase import ParaItem
from cloud.training.hop_scorer import mention_span, train_path_scorer
from cloud.training.path_priors import (
    CONFIRM_MAX_WEIGHT,
    REJECT_MAX_MARGIN,
    confirm_weight,
    priors_digest,
    reject_margin,
    training_plan,
)
from contracts.hlc import HybridClock
from contracts.memory import FleetPathPrior
from skillpack.kg.hop_features import TYPE_NAMES, all_schema_paths, masked_question
from skillpack.text import to_ascii

MAINTAINED = ("maintained_by",)
OPERATED = ("operated_by",)
TEXT = "Who looks after PR-111?"


def _embed(texts: list[str]) -> np.ndarray:
    """A deterministic 16-d embedding per text (no model: the trainer's arithmetic is the point)."""
    out = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(16) for t in texts]
    return np.asarray(out, dtype=np.float32).reshape(len(texts), 16)


def _prior(
    path: tuple[str, ...], confirmed: int = 0, rejected: int = 0, start: str = "machine"
) -> FleetPathPrior:
    return FleetPathPrior(
        start_type=start,
        relations=path,
        confirmed=confirmed,
        rejected=rejected,
        nodes=1,
        merged=HybridClock("cloud").now().pack(),
    )


def _items() -> list[ParaItem]:
    """The same question four times with each of two gold paths: without priors the scorer can
    only split its mass between them."""
    out = []
    for k, path in enumerate([MAINTAINED, OPERATED] * 4):
        answer = "person:zhu-bo" if path == MAINTAINED else "person:ma-min"
        out.append(
            ParaItem(
                f"t{k}",
                "kg",
                "en",
                "train",
                TEXT,
                "kg_query",
                ("f",),
                "machine:PR-111",
                "PR-111",
                path,
                answer,
            )
        )
    return out


def _train(priors: list[FleetPathPrior] | None, epochs: int = 200) -> tuple[torch.nn.Module, dict]:
    return train_path_scorer(
        _embed, items=_items(), epochs=epochs, describe=False, phrases=False, priors=priors
    )


def _log_probs(model: torch.nn.Module) -> dict[tuple[str, ...], float]:
    """log p(path | the question) over the machine's 1-hop paths."""
    masked = masked_question(to_ascii(TEXT), mention_span(TEXT, "PR-111"), "machine")
    with torch.no_grad():
        logits = model(torch.from_numpy(_embed([masked])), torch.tensor([TYPE_NAMES.index("machine")]))[0]
    paths = all_schema_paths()
    one_hop = [i for i, (t, p) in enumerate(paths) if t == "machine" and len(p) == 1]
    lp = torch.log_softmax(logits[one_hop], -1)
    return {paths[i][1]: float(v) for i, v in zip(one_hop, lp, strict=True)}


def test_weights_and_margins_grow_with_the_counts_and_stay_bounded() -> None:
    assert confirm_weight(0) == 1.0 and reject_margin(0, 0) == 0.0
    ws = [confirm_weight(c) for c in (0, 1, 3, 10, 50, 10**6)]
    assert ws == sorted(ws) and ws[1] > 1.0 and ws[-1] == CONFIRM_MAX_WEIGHT
    ms = [reject_margin(0, r) for r in (0, 1, 3, 10, 100, 10**6)]
    assert ms == sorted(ms) and ms[1] > 0.0 and ms[-1] == REJECT_MAX_MARGIN
    # one net statistic per path, as the edge's prior: more rejections than confirmations never
    # weight the path's questions up, more confirmations never give it a margin
    assert confirm_weight(3, 10) == 1.0 and reject_margin(3, 10) > 0.0
    assert confirm_weight(10, 3) > 1.0 and reject_margin(10, 3) == 0.0
    assert confirm_weight(5, 5) == 1.0 and reject_margin(5, 5) == 0.0


def test_the_plan_weights_gold_questions_and_puts_margins_only_where_a_rejected_path_competes() -> None:
    paths = all_schema_paths()
    a, b = paths.index(("machine", MAINTAINED)), paths.index(("machine", OPERATED))
    gold = torch.tensor([a, b, a])
    mask = torch.zeros(3, len(paths), dtype=torch.bool)
    mask[:, [a, b]] = True
    mask[2, b] = False  # question 2: the rejected path is no candidate
    plan, summary = training_plan(
        [_prior(MAINTAINED, confirmed=20), _prior(OPERATED, rejected=20), _prior(("no_such",), 9)],
        paths,
        gold,
        mask,
    )
    assert plan is not None
    assert plan.weights.tolist() == pytest.approx([confirm_weight(20), 1.0, confirm_weight(20)])
    margin = reject_margin(0, 20)
    assert plan.margins[0, b] == pytest.approx(margin)  # b competes with the gold path a
    assert plan.margins[1].abs().sum() == 0  # b is the gold path of question 1: never its own negative
    assert plan.margins[2].abs().sum() == 0  # b is no candidate of question 2
    assert summary["paths"] == 3 and summary["unknown_paths"] == 1
    assert (summary["confirmed_paths"], summary["weighted_questions"]) == (1, 2)
    assert (summary["rejected_paths"], summary["margin_questions"]) == (1, 1)
    # priors that act on no question: no plan (the trainer's plain loss)
    none, s = training_plan(
        [_prior(MAINTAINED, 0, 0), _prior(("managed_by",), 5, start="site")], paths, gold, mask
    )
    assert none is None and s["paths"] == 2 and s["weighted_questions"] == 0


def test_the_digest_names_the_counts_not_their_order() -> None:
    one, two = _prior(MAINTAINED, 3, 1), _prior(OPERATED, 0, 2)
    assert priors_digest([one, two]) == priors_digest([two, one])
    assert priors_digest([one, two]) != priors_digest([_prior(MAINTAINED, 4, 1), two])
    assert len(priors_digest([])) == 16


def test_without_priors_training_is_exactly_what_it_was() -> None:
    base, metrics = _train(None, epochs=40)
    assert "fleet_priors" not in metrics
    for priors in ([], [_prior(MAINTAINED, 0, 0)], [_prior(("managed_by",), confirmed=50, start="site")]):
        model, m = _train(priors, epochs=40)
        for (name, t0), (_, t1) in zip(base.state_dict().items(), model.state_dict().items(), strict=True):
            assert torch.equal(t0, t1), name
        assert m["train_loss"] == metrics["train_loss"] and m["fleet_priors"]["weighted_questions"] == 0


def test_a_confirmed_path_scores_higher_and_a_rejected_one_lower_after_training_with_priors() -> None:
    plain = _log_probs(_train(None)[0])
    assert abs(plain[MAINTAINED] - plain[OPERATED]) < 0.4  # four labels each: the mass is split

    confirmed, m = _train([_prior(MAINTAINED, confirmed=500)])
    lp = _log_probs(confirmed)
    assert m["fleet_priors"]["weighted_questions"] == 4
    assert lp[MAINTAINED] > plain[MAINTAINED] + 0.2 and lp[MAINTAINED] > lp[OPERATED] + 0.5

    rejected, m = _train([_prior(OPERATED, rejected=500)])
    lp = _log_probs(rejected)
    assert m["fleet_priors"]["margin_questions"] == 4  # the maintained_by questions, where it competes
    assert lp[OPERATED] < plain[OPERATED] - 0.15 and lp[MAINTAINED] > lp[OPERATED]
