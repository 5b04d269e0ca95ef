"""benchmarks/reasoning_priors.py: the simulated fleet confirms right first answers and rejects
wrong ones per (start type, answered path), the sums become valid fleet priors that the reasoner
reads at answer time, and the headline fails when training priors cost more than the rule allows
(here with the lexical scorer on a few training questions; the benchmark itself trains ONNX heads)."""

from __future__ import annotations

import dataclasses
from typing import Any

from cloud.data.paraphrase import train_items
from skillpack.kg.graph import default_graph
from tests.benchmarks.conftest import load_bench

rp = load_bench("reasoning_priors")


def _questions() -> list[Any]:
    graph = default_graph()
    reasoner = rp.reasoner_of(graph, None, None)
    kg = [it for it in train_items(seed=0) if it.kind == "kg" and it.lang == "en"]
    right = [q for q in kg[:200] if reasoner.answer(q.text, use_cache=False).answers[:1] == [q.answer]]
    assert len(right) >= 5
    return right[:5]


def test_feedback_confirms_right_answers_and_rejects_wrong_ones() -> None:
    graph = default_graph()
    right = _questions()
    # a deliberately broken pool: the same questions with a wrong gold answer
    wrong = [dataclasses.replace(q, answer="no-such-entity") for q in right]
    sums, stats = rp.simulate_feedback(rp.reasoner_of(graph, None, None), graph, right + wrong, 20)
    assert stats == {"confirmed": 5, "rejected": 5}
    assert sum(c for c, _ in sums.values()) == 100 and sum(r for _, r in sums.values()) == 100
    priors = rp.fleet_priors(sums)
    assert len(priors) == len(sums) and all(p.nodes == rp.FLEET_NODES for p in priors)
    # confirmations and rejections of the same paths cancel: the answer-time prior is 0
    applied = rp.reasoner_of(graph, None, priors)
    for p in priors:
        assert applied.prior(p.start_type, tuple(p.relations)) == 0.0
    only_right, _ = rp.simulate_feedback(rp.reasoner_of(graph, None, None), graph, right, 20)
    applied = rp.reasoner_of(graph, None, rp.fleet_priors(only_right))
    assert all(applied.prior(t, p) > 0 for t, p in only_right)


def test_headline_fails_when_training_priors_cost_more_than_the_rule() -> None:
    def rec(diff: float) -> dict[str, Any]:
        cell = {"all": {"mean": 0.5, "sd": 0.01}}
        arms = {a: cell for a in rp.ARMS}
        d = {a: {"mean": diff, "sd": 0.1} for a in ("training", "answer_time", "both")}
        return {
            "fleet_nodes": 20,
            "seeds": [0, 1, 2],
            "summary": {"frozen": arms, "feedback_pool": arms, "frozen_diff_pt": d},
        }

    assert rp.headline(rec(0.5))[0].met is True
    assert rp.headline(rec(-1.5))[0].met is False
