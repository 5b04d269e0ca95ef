"""The graph prefetch (issue 13's latency work) changes no answer: on a really exported (tiny)
bundle with a trained path scorer attached, a question whose first hop state was prefetched —
in a worker thread, as the agent does while the router encodes — gets the same start entity,
path, answers, per-hop probabilities and path probability as without, and its search makes no
second encoder call."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from cloud.data.paraphrase import train_items
from cloud.training.hop_scorer import (
    CachedEmbed,
    attach_to_bundle,
    bundle_embedder,
    export_path_scorer,
    train_path_scorer,
)
from edge.agent.hop_scorer import OnnxPathScorer, learned_scorer_from_bundle
from skillpack.kg.graph import default_graph
from skillpack.kg.reasoner import PathReasoner

QUESTIONS = [  # 1 to 3 hops, English and Chinese (frozen evaluation families)
    "Who maintains PR-111?",
    "Any idea what the line that CV-124 lives on is? The audit is in 7 days.",
    "谁带吴涛？7天后要审核。",
    "在液压机PR-145上干活的人的顶头上司是谁？7天后要审核。",
    "苏州1号线隶属的基地说了算的人叫什么名字？",
    "Who oversees the one who looks after upkeep of the unit that IS-1242 sits on?",
]


@pytest.fixture(scope="module")
def heads_bundle(bundles, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("prefetch")
    bundle_dir = Path(shutil.copytree(bundles.v1, root / "bundle"))
    embed = CachedEmbed(bundle_embedder(bundle_dir))
    items = train_items(seed=0, kg_per_pattern=2, route_per_template=1)
    model, metrics = train_path_scorer(embed, items=items, epochs=10, phrases=False)
    attach_to_bundle(bundle_dir, [export_path_scorer(model, root / "out", metrics, length_bias=1.0)])
    return bundle_dir


class CountingEmbed:
    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out: np.ndarray = self.inner(texts)
        return out


def _scorer(bundle_dir: Path) -> tuple[OnnxPathScorer, CountingEmbed]:
    scorer = learned_scorer_from_bundle(bundle_dir)
    assert isinstance(scorer, OnnxPathScorer)
    counting = CountingEmbed(scorer.embed)
    scorer.embed = counting
    return scorer, counting


def test_prefetched_search_answers_the_same(heads_bundle: Path) -> None:
    graph = default_graph()
    plain_scorer, _ = _scorer(heads_bundle)
    fetched_scorer, embeds = _scorer(heads_bundle)
    plain = PathReasoner(graph, scorer=plain_scorer)
    fetched = PathReasoner(graph, scorer=fetched_scorer)
    for q in QUESTIONS:
        done: list[bool] = []
        worker = threading.Thread(target=lambda q=q, d=done: d.append(fetched.prefetch(q, "site:suzhou")))
        worker.start()
        worker.join()
        assert done == [True]
        before = embeds.calls
        a = plain.answer(q, context_site="site:suzhou", use_cache=False)
        b = fetched.answer(q, context_site="site:suzhou", use_cache=False)
        assert embeds.calls == before, "the search embedded the question again"
        assert (a.start, a.path, a.answers, a.text) == (b.start, b.path, b.answers, b.text)
        assert a.path_probability == b.path_probability and a.alternatives == b.alternatives
        assert [s.to_dict() for s in a.steps] == [s.to_dict() for s in b.steps]


def test_prefetch_needs_a_linked_entity_and_a_learned_scorer(heads_bundle: Path) -> None:
    scorer, embeds = _scorer(heads_bundle)
    assert not PathReasoner(default_graph(), scorer=scorer).prefetch("what is 3 plus 4")
    assert embeds.calls == 0
    assert not PathReasoner(default_graph()).prefetch("Who maintains PR-111?")  # lexical: nothing to do


def test_agent_answers_the_same_with_and_without_the_prefetch(heads_bundle: Path, tmp_path: Path) -> None:
    from .helpers import ask, make_agent, step

    kw = {"bundle_dir": heads_bundle, "agent_cache_enabled": False, "agent_confidence_threshold": 0.0}
    before = make_agent(tmp_path, "sequential", agent_kg_prefetch=False, **kw)
    after = make_agent(tmp_path, "prefetch", agent_kg_prefetch=True, **kw)
    assert type(after.reasoner.scorer).__name__ == "OnnxPathScorer"
    graph_answers = 0
    for q in QUESTIONS:
        a, b = ask(before, q), ask(after, q)
        assert (a.route, a.source, a.answer, a.data) == (b.route, b.source, b.answer, b.data)
        if b.source.value == "knowledge_graph":
            graph_answers += 1
            assert step(a, "kg_answer")["path"] == step(b, "kg_answer")["path"]
    assert graph_answers >= 4
    assert before._kg_pool is None and after._kg_pool is not None  # the old path starts no thread
