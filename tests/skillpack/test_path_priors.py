"""Feedback priors of reasoning paths (skillpack.kg.priors): bounded influence, the fleet's and the
node's counts counted once, schema checks, and what confirm / reject do to the search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from contracts.memory import MAX_NODE_PRIOR_COUNT
from skillpack.errors import BadRequest
from skillpack.kg.graph import KnowledgeGraph, default_graph
from skillpack.kg.priors import PathPriors, PriorCounts
from skillpack.kg.reasoner import HopState, PathReasoner
from skillpack.kg.schema import path_refusal

OPERATED = ("operated_by",)
MAINTAINED = ("maintained_by",)


@pytest.fixture(scope="module")
def graph() -> KnowledgeGraph:
    return default_graph()


def test_a_prior_is_bounded_both_ways() -> None:
    priors = PathPriors(weight=0.3, max_abs=1.0)
    assert priors.score("machine", OPERATED) == 0.0
    priors.record("machine", OPERATED, confirmed=3)
    assert priors.score("machine", OPERATED) == pytest.approx(0.3 * math.log1p(3))
    priors.record("machine", OPERATED, confirmed=10**6)  # saturates
    assert priors.counts("machine", OPERATED).confirmed == MAX_NODE_PRIOR_COUNT
    assert priors.score("machine", OPERATED) == 1.0
    priors.record("machine", MAINTAINED, rejected=10**6)
    assert priors.score("machine", MAINTAINED) == -1.0
    assert priors.updates == 3


def test_the_nodes_shared_counts_are_not_counted_twice_with_the_fleet_sum() -> None:
    c = PriorCounts().add(2, 0, shared=True).add(3, 1, shared=False)
    assert (c.confirmed, c.shared_confirmed, c.rejected, c.shared_rejected) == (5, 2, 1, 0)
    assert c.effective() == (5, 1)  # the fleet has nothing yet: own counts
    priors = PathPriors()
    priors.record("machine", OPERATED, confirmed=2, shared=True)
    priors.record("machine", OPERATED, confirmed=3)  # anonymous: this node only
    assert priors.set_fleet("machine", OPERATED, 2, 0)  # the fleet holds our 2
    assert priors.counts("machine", OPERATED).effective() == (5, 0)
    assert priors.set_fleet("machine", OPERATED, 9, 4)  # + 7 from other nodes
    assert priors.counts("machine", OPERATED).effective() == (12, 4)
    assert not priors.set_fleet("machine", OPERATED, 9, 4)  # same sums: no update


@pytest.mark.parametrize(
    ("start", "path", "why"),
    [
        ("machine", ("teleports_to",), "unknown relation"),
        ("machine", ("supervised_by",), "does not leave a machine"),
        ("robot", ("operated_by",), "unknown entity type"),
        ("machine", ("maintained_by", "supervised_by", "supervised_by", "supervised_by"), "1 to 3"),
        ("machine", (), "1 to 3"),
    ],
)
def test_paths_outside_the_schema_are_refused(start: str, path: tuple[str, ...], why: str) -> None:
    refusal = path_refusal(start, path)
    assert refusal is not None and why in refusal
    with pytest.raises(BadRequest, match=why):
        PathPriors().record(start, path, confirmed=1)
    assert path_refusal("machine", ("maintained_by", "supervised_by", "supervised_by")) is None


def _fixed(first_hop: dict[str, float]):  # type: ignore[no-untyped-def]
    """A scorer with fixed first-hop probabilities that stops after one hop."""

    def score(state: HopState, candidates: list[str]) -> np.ndarray:
        if state.path:
            return np.array([0.01] * len(candidates) + [0.99])
        return np.array([first_hop.get(c, 0.01) for c in candidates] + [0.01])

    return score


def test_feedback_decides_between_close_paths_but_never_overrides_a_clear_scorer(
    graph: KnowledgeGraph,
) -> None:
    q = "Tell me who is on RB-113"
    close = PathReasoner(graph, scorer=_fixed({"operated_by": 0.5, "maintained_by": 0.45}))
    assert close.answer(q, use_cache=False).path == OPERATED
    close.confirm("machine", MAINTAINED, weight=3)
    assert close.answer(q, use_cache=False).path == MAINTAINED
    # the scorer is sure (ratio 20 > e^(2 * max_abs)): the most extreme feedback cannot flip it
    clear = PathReasoner(graph, scorer=_fixed({"operated_by": 0.8, "maintained_by": 0.04}))
    clear.confirm("machine", MAINTAINED, weight=10**6)
    clear.reject("machine", OPERATED, weight=10**6)
    assert clear.prior("machine", MAINTAINED) == 1.0 and clear.prior("machine", OPERATED) == -1.0
    assert clear.answer(q, use_cache=False).path == OPERATED


def test_reject_lowers_the_prior_and_drops_the_cached_path(graph: KnowledgeGraph) -> None:
    reasoner = PathReasoner(graph, scorer=_fixed({"operated_by": 0.5, "maintained_by": 0.45}))
    assert reasoner.answer("Tell me who is on RB-113").path == OPERATED
    assert reasoner.answer("Tell me who is on RB-221").from_cache
    reasoner.reject("machine", OPERATED, weight=2)
    assert reasoner.prior("machine", OPERATED) < 0
    again = reasoner.answer("Tell me who is on RB-221")
    assert not again.from_cache and again.path == MAINTAINED
