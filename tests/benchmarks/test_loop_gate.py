"""benchmarks/loop_gate.py: the scores it records are the right shares, and its pass/fail rule
fails a refit that loses more than 5 pt against the grown gate or claims too many other items
(what ``--break-refit`` shows on the real checkpoint)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.benchmarks.conftest import load_bench

lg = load_bench("loop_gate")


def test_score_counts_new_route_hits_other_route_hits_and_false_claims() -> None:
    pred = ["new", "kg_query", "new", "calculator", "new", "climate"]
    s = lg._score(pred, ["new", "new"], ["calculator", "kg_query", "climate", "climate"], "new")
    assert s["new_acc"] == pytest.approx(50.0)
    assert s["other_acc"] == pytest.approx(25.0)  # only the last of the four other items is right
    assert s["false_claims"] == pytest.approx(50.0)  # two of the four went to the new route


def _rec(grown: float, refit: float, false_claims: float) -> dict[str, Any]:
    def arm(new: float, fc: float = 0.0) -> dict[str, Any]:
        return {
            "new_acc": {"mean": new, "sd": 1.0},
            "drop_pt": {"mean": 0.1, "sd": 0.0},
            "false_claims": {"mean": fc, "sd": 0.0},
        }

    summary = {"grown": arm(grown), "refit": arm(refit, false_claims), "stale": arm(20.0), "proto": arm(60.0)}
    survives = (
        refit >= grown - lg.RULE_PT and false_claims <= 100 * lg.MAX_FALSE_CLAIMS
    )  # the rule as run() applies it
    return {"summary": summary, "survives": survives, "break_refit": False, "hard_other": 32, "hard_new": 8,
            "seeds": [0, 1, 2]}  # fmt: skip


@pytest.mark.parametrize(
    ("grown", "refit", "false_claims", "met"),
    [(55.0, 52.0, 0.1, True), (55.0, 49.0, 0.1, False), (55.0, 60.0, 0.8, False)],
)
def test_the_rule_fails_a_refit_that_loses_the_route(
    grown: float, refit: float, false_claims: float, met: bool
) -> None:
    row = lg.headline(_rec(grown, refit, false_claims))
    assert row.met is met
    assert f"refit after the job {refit:.1f}" in row.result and "old gate on the new adapters" in row.baseline


def test_dev_sets_hold_back_one_training_family_per_seed_and_never_read_the_frozen_set() -> None:
    from cloud.data.new_route import FROZEN_NEW_ROUTE, NEW_ROUTE, support_set
    from contracts.routes import DEFAULT_ROUTES

    routes = list(DEFAULT_ROUTES)
    frozen_texts = set(FROZEN_NEW_ROUTE.read_text(encoding="utf-8").split("\n"))
    seen = set()
    for seed in (0, 1, 2):
        new, other, support, extra, held = lg._sets(True, seed, routes)
        seen.add(held)
        assert len(support) == 16 and len(extra) == lg.HARD_NEW
        assert new and all(e.route == NEW_ROUTE and e.template_id == held for e in new)
        pool = lg._bench_loop().dev_support(24, held, seed)
        assert [e.text for e in pool] == support + extra and all(e.template_id != held for e in pool)
        assert other and NEW_ROUTE not in {e.route for e in other}
        assert not any(e.text in line for e in new + other for line in frozen_texts if line)
    assert len(seen) == 3  # a different held-back family per seed
    new, other, support, extra, held = lg._sets(False, 1, routes)  # the frozen protocol, unchanged
    assert held == "frozen" and support + extra == [e.text for e in support_set(24, seed=1)]
    assert {e.route for e in new} == {NEW_ROUTE} and len(other) == 1847
