"""benchmarks/quality_cache.py can fail: a semantic cache that ignores the signature gate serves
hard negatives ("July in Beijing" for "July in Shanghai") and misses the ≤ 1 % goal; the real
cache (route + signature + threshold) meets it. Hashing encoder (a node without a model)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from edge.agent.memory import SemanticCache
from edge.agent.settings import AgentSettings
from tests.benchmarks.conftest import load_bench

qc = load_bench("quality_cache")
DEFAULT_T = AgentSettings.model_fields["agent_cache_threshold"].default


class IgnoresSignature(SemanticCache):
    """Broken on purpose: entries are stored and looked up without their signature."""

    def store_answer(
        self,
        question: str,
        embedding: np.ndarray,
        route: str,
        signature: list[str],
        answer: str,
        data: dict[str, Any] | None = None,
        source: str = "",
    ) -> str | None:
        return super().store_answer(question, embedding, route, [], answer, data, source)

    def lookup(self, embedding: np.ndarray, route: str | None, signature: list[str]) -> Any:
        return super().lookup(embedding, route, [])


@pytest.fixture(scope="module")
def sets() -> tuple[Any, Any]:
    return qc.generate(20, 101), qc.generate(20, 102)


def test_hard_negatives_change_one_slot_of_a_stored_question(sets: tuple[Any, Any]) -> None:
    calib, _ = sets
    stored = {a.meaning for a in calib.anchors}
    kinds = {p.kind for p in calib.probes}
    assert {
        "climate/city",
        "climate/month",
        "kg/entity",
        "kg/relation",
        "calculator/number",
        "units/direction",
        "device/reading",
        "paraphrase",
    } <= kinds
    for p in calib.probes:
        assert (p.meaning in stored) == (p.kind == "paraphrase")


def test_cache_ignoring_the_signature_serves_hard_negatives_and_misses_the_goal(
    sets: tuple[Any, Any],
) -> None:
    calib, held = sets
    out = qc.evaluate(
        calib, held, qc.hashing_encode(), qc.real_signature(), DEFAULT_T, cache_cls=IgnoresSignature
    )
    assert out["heldout_at_default"]["false_hit"] > qc.MAX_FALSE_HIT
    assert out["goal_met"] is False
    row = qc.headline({"hashing": out}, DEFAULT_T)[0]
    assert row.met is False


def test_real_cache_meets_the_goal_and_the_rule_picks_from_the_curve(sets: tuple[Any, Any]) -> None:
    calib, held = sets
    out = qc.evaluate(calib, held, qc.hashing_encode(), qc.real_signature(), DEFAULT_T)
    assert out["goal_met"] is True
    assert out["heldout_at_default"]["false_hit"] <= qc.MAX_FALSE_HIT
    # the signature gate is what separates same-template hard negatives: without it, more false hits
    assert out["baseline_no_signature_at_default"]["false_hit"] > out["heldout_at_default"]["false_hit"]
    pts = out["calibration_curve"]["points"]
    assert all(
        a["false_hit"] >= b["false_hit"] and a["true_hit"] >= b["true_hit"]
        for a, b in itertools.pairwise(pts)
    )
    chosen, n = out["chosen_threshold"], out["calibration_curve"]["n_hard_negative"]

    def bound(t: float) -> float:
        return float(qc.upper_bound(round(qc.at(out["calibration_curve"], t)["false_hit"] * n), n))

    assert chosen == 1.0 or bound(chosen) <= qc.MAX_FALSE_HIT
    lower = [p["t"] for p in pts if p["t"] < chosen]
    assert not lower or bound(lower[-1]) > qc.MAX_FALSE_HIT


def test_choose_threshold_rule() -> None:
    c = {
        "n_hard_negative": 400,
        "points": [
            {"t": 0.8, "false_hit": 0.05, "true_hit": 0.9},
            {"t": 0.9, "false_hit": 0.0025, "true_hit": 0.7},
            {"t": 0.95, "false_hit": 0.0, "true_hit": 0.2},
        ],
    }
    assert qc.choose_threshold(c) == 0.95  # 1 in 400 has a 95 % upper bound of 1.2 % > 1 %
    c["n_hard_negative"] = 2000  # 5 in 2000: upper bound 0.53 %
    assert qc.choose_threshold(c) == 0.9
    assert (
        qc.choose_threshold(
            {"n_hard_negative": 50, "points": [{"t": 0.9, "false_hit": 0.0, "true_hit": 1.0}]}
        )
        == 1.0
    )
    assert abs(qc.upper_bound(0, 300) - (1 - 0.05 ** (1 / 300))) < 1e-9
