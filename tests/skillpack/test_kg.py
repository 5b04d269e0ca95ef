from __future__ import annotations

import json
import zlib
from collections import Counter

import numpy as np
import pytest

from skillpack.errors import UnknownEntity
from skillpack.kg import generate
from skillpack.kg.graph import KnowledgeGraph, default_graph
from skillpack.kg.linking import EntityLinker
from skillpack.kg.questions import PATTERNS, generate_questions
from skillpack.kg.reasoner import STOP, HopState, PathReasoner
from skillpack.kg.schema import RELATIONS


@pytest.fixture(scope="module")
def graph() -> KnowledgeGraph:
    return default_graph()


def test_shipped_file_is_what_the_generator_makes() -> None:
    shipped = generate.SHIPPED.read_text(encoding="utf-8")
    assert shipped == generate.dumps(generate.generate(generate.SEED))
    assert json.loads(shipped)["seed"] == generate.SEED


def test_graph_shape(graph: KnowledgeGraph) -> None:
    stats = graph.stats()
    assert 200 <= stats["entities"] <= 600
    assert set(stats["by_type"]) == {
        "site",
        "line",
        "machine",
        "sensor",
        "person",
        "role",
        "supplier",
        "country",
        "interval",
    }
    assert {
        "located_on_line",
        "line_of_site",
        "maintained_by",
        "operated_by",
        "supervised_by",
        "supplied_by",
        "has_sensor",
        "maintenance_interval",
    } <= set(stats["by_relation"])
    # functional relations really have one tail per head
    for h, r, _ in graph.triples:
        if RELATIONS[r].functional:
            assert len(graph.neighbors(h, r)) == 1, (h, r)
    # every entity has names in both languages
    assert all(e.name and e.name_zh for e in graph.entities.values())


def test_query_functions(graph: KnowledgeGraph) -> None:
    machine = graph.get("machine:PR-111")
    line = graph.neighbors(machine.id, "located_on_line")
    assert line == ["line:SZ-L1"]
    assert graph.follow(machine.id, ["located_on_line", "line_of_site"]) == ["site:suzhou"]
    assert [e.id for e in graph.query("PR-111", ["located_on_line", "line_of_site"])] == ["site:suzhou"]
    sensors = graph.neighbors(machine.id, "has_sensor")
    assert len(sensors) == 2 and all(graph.neighbors(s, "sensor_of") == [machine.id] for s in sensors)
    assert machine.id in graph.incoming("line:SZ-L1", "located_on_line")
    with pytest.raises(UnknownEntity):
        graph.get("machine:NOPE")
    with pytest.raises(UnknownEntity):
        graph.find("no such thing")


def test_linking_by_code_alias_and_language(graph: KnowledgeGraph) -> None:
    linker = EntityLinker(graph)
    person = graph.of_type("person")[0]
    assert [m.entity_id for m in linker.link("Who maintains pr111?")] == ["machine:PR-111"]
    assert [m.entity_id for m in linker.link("PR 111 是谁维护的")] == ["machine:PR-111"]
    assert [m.entity_id for m in linker.link(f"{person.name_zh}的上级是谁")] == [person.id]
    assert [m.entity_id for m in linker.link(f"Who is {person.name}'s boss?")] == [person.id]
    assert [m.entity_id for m in linker.link("苏州三号线的主管")] == ["line:SZ-L3"]
    ambiguous = linker.link("and line 3?")
    assert {m.entity_id for m in ambiguous} == {"line:SZ-L3", "line:SH-L3", "line:ST-L3"}
    assert [m.entity_id for m in linker.link("and line 3?", context_site="site:stuttgart")] == ["line:ST-L3"]


def test_linking_embedding_hook_for_fuzzy_names(graph: KnowledgeGraph) -> None:
    target = "supplier:nordtherm"

    def embed(texts: list[str]) -> np.ndarray:
        # toy embedding: names sharing the first four letters (case-insensitive) are "similar"
        out = np.zeros((len(texts), 4096), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, zlib.crc32(t.lower()[:4].encode()) % 4096] = 1.0
        return out

    linker = EntityLinker(graph, embed=embed, embed_threshold=0.99)
    mentions = linker.link("who makes nordterm ovens")  # misspelt, no alias matches
    assert mentions and mentions[0].entity_id == target and mentions[0].method == "embedding"
    assert EntityLinker(graph).link("who makes nordterm ovens") == []


def test_question_generator_deterministic_and_splits_disjoint(graph: KnowledgeGraph) -> None:
    train = generate_questions(graph, "train", per_pattern=4)
    again = generate_questions(graph, "train", per_pattern=4)
    evals = generate_questions(graph, "eval", per_pattern=4)
    assert [q.to_dict() for q in train] == [q.to_dict() for q in again]
    train_t = {t for q in train for t in q.templates}
    eval_t = {t for q in evals for t in q.templates}
    assert not train_t & eval_t
    assert not {q.text for q in train} & {q.text for q in evals}
    hops = Counter(q.hops for q in evals)
    assert set(hops) == {1, 2, 3}
    assert {q.lang for q in evals} == {"en", "zh"}
    for q in evals + train:
        assert graph.follow(q.start, q.path) == [q.answer]
        assert q.mention in q.text
    assert len(set(PATTERNS)) == len(PATTERNS)


def test_reasoner_two_hop_with_steps(graph: KnowledgeGraph) -> None:
    reasoner = PathReasoner(graph)
    ans = reasoner.answer("Who is the supervisor of the technician who maintains PR-111?")
    tech = graph.neighbors("machine:PR-111", "maintained_by")[0]
    boss = graph.neighbors(tech, "supervised_by")[0]
    assert ans.answers == [boss]
    assert ans.path == ("maintained_by", "supervised_by")
    assert [s.relation for s in ans.steps] == list(ans.path)
    assert ans.steps[0].to_entities == (tech,) and ans.steps[1].from_entities == (tech,)
    assert all(0 < s.score <= 1 and STOP in s.candidates for s in ans.steps)
    zh = reasoner.answer("PR-111的维护人员的主管是谁？")
    assert zh.answers == [boss] and graph.entities[boss].name_zh in zh.text


def test_reasoner_path_cache_and_feedback_prior(graph: KnowledgeGraph) -> None:
    reasoner = PathReasoner(graph)
    first = reasoner.answer("Who operates RB-113?")
    second = reasoner.answer("Who operates RB-221?")  # same question shape, other machine
    assert not first.from_cache and second.from_cache
    assert reasoner.cache_hits == 1
    assert second.answers == graph.neighbors("machine:RB-221", "operated_by")

    # a scorer that cannot tell two relations apart: feedback decides
    def undecided(state: HopState, candidates: list[str]) -> np.ndarray:
        return np.array([0.5] * len(candidates) + ([0.5] if state.path else [0.01]))

    fb = PathReasoner(graph, scorer=undecided)
    fb.confirm("machine", ("supplied_by",), weight=5)
    ans = fb.answer("Tell me about OV-122", use_cache=False)
    assert ans.path == ("supplied_by",)


def test_unknown_entity_is_404(graph: KnowledgeGraph) -> None:
    with pytest.raises(UnknownEntity) as info:
        PathReasoner(graph).answer("Who maintains the flux capacitor?")
    assert info.value.status == 404


def test_lexical_reasoner_meets_the_hop_goals_on_unseen_phrasings(graph: KnowledgeGraph) -> None:
    reasoner = PathReasoner(graph)
    evals = generate_questions(graph, "eval", per_pattern=3)
    hits: dict[int, list[bool]] = {1: [], 2: [], 3: []}
    for q in evals:
        ans = reasoner.answer(q.text, use_cache=False)
        hits[q.hops].append(ans.answers[:1] == [q.answer])
    rate = {h: sum(v) / len(v) for h, v in hits.items()}
    assert rate[1] >= 0.95 and rate[2] >= 0.90 and rate[3] >= 0.80, rate


def test_the_empty_path_describes_an_entity_the_question_asks_no_relation_of(graph: KnowledgeGraph) -> None:
    r = PathReasoner(graph)
    for text in ("tell me about PR-111", "介绍一下PR-111"):
        ans = r.answer(text, use_cache=False)
        assert ans.path == () and ans.answers == ["machine:PR-111"] and ans.steps == []
        tech = graph.entities[graph.neighbors("machine:PR-111", "maintained_by")[0]]
        assert tech.label("介绍" in text) in ans.text  # the facts name the technician
    # a cue word, or an interrogative asking for another entity, is no describe request
    assert r.answer("who maintains PR-111?", use_cache=False).path == ("maintained_by",)
    assert r.answer("PR-111 — who do I call?", use_cache=False).path != ()
