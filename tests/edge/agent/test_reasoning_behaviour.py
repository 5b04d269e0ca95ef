"""Agent behaviour on reworded graph questions and on codes: a question about a graph entity is
answered from the local graph even with the cloud away and without any cue word; an unsure
scorer shows its candidate paths with probabilities and asks; the digits of an equipment code
are never a quantity; every route rule comes from the one policy table."""

from __future__ import annotations

from pathlib import Path

from contracts.routes import Route
from edge.agent.policy import POLICIES, Handler, policy_table
from edge.agent.routing import KeywordRouter, mask_codes
from edge.agent.types import Source
from skillpack.kg.graph import default_graph
from skillpack.kg.linking import EntityLinker
from tests.support.mosquitto import free_port

from .helpers import ask, make_agent, step


class UnsureRouter(KeywordRouter):
    """Stands in for a trained router head that is unsure of a reworded question (no trained
    head is available to the tests): the keyword route with probability 0.3."""

    def route(self, text: str) -> tuple[str, float]:
        return super().route(text)[0], 0.3


def _dead_cloud(tmp_path: Path, name: str = "node", **kw):  # type: ignore[no-untyped-def]
    return make_agent(
        tmp_path,
        name,
        agent_cloud_url=f"http://127.0.0.1:{free_port()}",
        agent_cloud_retries=0,
        agent_breaker_failures=1,
        agent_breaker_reset_s=60.0,
        **kw,
    )


def test_graph_question_without_cue_words_is_never_offline(tmp_path: Path) -> None:
    agent = _dead_cloud(tmp_path, router=UnsureRouter(EntityLinker(default_graph())))
    # no relation cue word at all: the router is unsure (hard example → cloud), the cloud is
    # down, the question names PR-111 → the local graph answers, and says that it is unsure
    for text in ("PR-111 — who do I call?", "PR-111那边找谁？"):
        r = ask(agent, text)
        assert r.source is Source.KNOWLEDGE_GRAPH, (text, r.answer)
        assert step(r, "route")["hard_example"] and step(r, "degraded")["route"] == "kg_query"
        unsure = step(r, "kg_unsure")
        assert unsure["path_probability"] < 0.5 and len(unsure["candidates"]) >= 2
        ps = [c["p"] for c in unsure["candidates"]]
        assert ps == sorted(ps, reverse=True) and all(0 < p < 1 for p in ps)
        assert r.data["unsure"] is True and f"p={ps[0]:.2f}" in r.answer
        assert ("Which one" in r.answer) or ("哪一个" in r.answer)
    # an unsure answer is not cached: asking again searches the graph again
    again = ask(agent, "PR-111 — who do I call?")
    assert step(again, "cache")["hit"] is False and again.source is Source.KNOWLEDGE_GRAPH
    reg = agent.metrics.registry
    assert reg.get_sample_value("autoglm_edge_agent_kg_unsure_total", {"node": "node"}) == 3
    path_answers = sum(
        reg.get_sample_value("autoglm_edge_agent_kg_path_cache_total", {"node": "node", "outcome": o}) or 0
        for o in ("hit", "miss")
    )
    assert path_answers == 3


def test_confident_graph_answer_has_a_path_probability(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    r = ask(agent, "Who is the supervisor of the technician who maintains PR-111?")
    assert r.source is Source.KNOWLEDGE_GRAPH and "unsure" not in r.data
    assert r.data["path"] == ["maintained_by", "supervised_by"] and r.data["path_probability"] >= 0.5


def test_equipment_code_digits_are_not_quantities(tmp_path: Path) -> None:
    linker = EntityLinker(default_graph())
    assert (
        mask_codes("How often is CV-314 serviced, in days?", linker)
        == "How often is device serviced, in days?"
    )
    assert mask_codes("convert 5 km to miles", linker) == "convert 5 km to miles"
    router = KeywordRouter(linker)
    # unmasked, "PR 142 days in days" parses as a (meaningless) conversion 142 d → d
    for text in (
        "PR 142 days in days",
        "Who looked after CV-314 in the last 30 days?",
        "CV-314 every how many days?",
    ):
        assert router.route(text)[0] not in ("unit_convert", "calculator"), text
    assert router.route("convert 142 days to hours")[0] == "unit_convert"
    agent = _dead_cloud(tmp_path)
    r = ask(agent, "Who looked after CV-314 in the last 30 days?")
    assert r.route == "kg_query" and r.source is Source.KNOWLEDGE_GRAPH and " d = " not in r.answer


def test_one_policy_table_decides_every_route_rule() -> None:
    assert set(POLICIES) == set(Route)
    table = policy_table(["climate", "doc_search"])
    assert table["climate"].handler is Handler.CLOUD_TOOL and table["kg_query"].handler is Handler.GRAPH
    assert table["device_control"].needs_confirmation and not table["device_control"].cacheable
    assert not table["memory_recall"].cacheable and table["memory_recall"].handler is Handler.MEMORY
    assert table["calculator"].computed and not table["doc_search"].computed
    local = policy_table([])
    assert local["climate"].handler is Handler.LOCAL_TOOL  # a node that keeps climate local
