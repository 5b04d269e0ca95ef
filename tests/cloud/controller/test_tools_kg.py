"""The cloud ``kg_query`` tool answers multi-hop graph questions with the edge's own reasoner:
over HTTP (a live controller), the held-out 1/2/3-hop questions in English and Chinese get the
same answers, relation paths and answer text as the edge agent's ``PathReasoner``, and the edge's
fallback client turns the cloud result into the same sentence. Entity-only texts still get the
entity's facts; by-name calls take a question, an entity, or an entity + path."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from skillpack.kg.graph import default_graph
from skillpack.kg.questions import generate_questions
from tests.cloud.controller.conftest import BOOTSTRAP, LiveServer, make_settings

TWO_HOP = "Who is the supervisor of the technician who maintains PR-111?"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    with LiveServer(svc) as live:
        yield live
    svc.close()


def _edge_reasoner(tmp_path: Path) -> Any:
    """The reasoner of an edge agent built with default settings (no bundle: lexical scorer)."""
    from edge.agent.factory import build_agent
    from edge.agent.settings import AgentSettings

    return build_agent(AgentSettings(agent_memory_db=tmp_path / "edge-memory.sqlite3")).reasoner


def test_multi_hop_questions_match_the_edge_reasoner(server: LiveServer, tmp_path: Path) -> None:
    graph = default_graph()
    edge = _edge_reasoner(tmp_path)
    questions = generate_questions(graph, "eval", per_pattern=1)
    assert {q.hops for q in questions} == {1, 2, 3} and {q.lang for q in questions} == {"en", "zh"}
    correct = 0
    with server.client() as c:
        for q in questions:
            r = c.post("/api/v1/tools/route", json={"text": q.text, "route": "kg_query"})
            assert r.status_code == 200, (q.text, r.text)
            doc = r.json()
            assert doc["tool"] == "kg_query"
            got = doc["result"]
            want = edge.answer(q.text, use_cache=False).to_dict()
            assert got["path"] == want["path"] and got["answers"] == want["answers"], q.text
            assert got["text"] == want["text"] and got["hops"] == len(want["path"])
            assert [s["relation"] for s in got["steps"]] == want["path"]
            assert got["reasoner"] == "PathReasoner" and got["scorer"] == "LexicalHopScorer"
            correct += got["answers"] == [q.answer]
    # The lexical reasoner gets every held-out question right (204/204 at per_pattern=3).
    assert correct == len(questions), f"{correct}/{len(questions)}"


def test_routing_entity_facts_and_by_name_calls(server: LiveServer) -> None:
    graph = default_graph()
    tech = graph.neighbors("machine:PR-111", "maintained_by")[0]
    boss = graph.neighbors(tech, "supervised_by")[0]
    with server.client() as c:
        # No route hint: the cloud's own router picks kg_query and the reasoner answers with its path.
        r = c.post("/api/v1/tools/route", json={"text": TWO_HOP})
        assert r.status_code == 200 and r.json()["tool"] == "kg_query", r.text
        res = r.json()["result"]
        assert res["answers"] == [boss] and res["path"] == ["maintained_by", "supervised_by"]
        assert [(s["from"], s["to"]) for s in res["steps"]] == [
            (["machine:PR-111"], [tech]),
            ([tech], [boss]),
        ]
        assert res["start"]["entity_id"] == "machine:PR-111" and res["facts"][0]["id"] == "machine:PR-111"
        # An entity without a relation cue: its facts (the describe answer), not an error.
        r = c.post("/api/v1/tools/route", json={"text": "tell me about PR-111", "route": "kg_query"})
        assert r.status_code == 200 and "path" not in r.json()["result"]
        assert r.json()["result"]["facts"][0]["id"] == "machine:PR-111"
        # No entity at all: a clear 4xx naming the problem.
        r = c.post("/api/v1/tools/route", json={"text": "what is the weather like", "route": "kg_query"})
        assert 400 <= r.status_code < 500 and "entity" in r.json()["error"]

        r = c.post("/api/v1/tools/kg_query/call", json={"params": {"question": TWO_HOP}})
        assert r.status_code == 200 and r.json()["result"]["answers"] == [boss]
        r = c.post("/api/v1/tools/kg_query/call", json={"params": {"entity": "PR-111"}})
        assert r.status_code == 200 and r.json()["result"]["id"] == "machine:PR-111"
        r = c.post(
            "/api/v1/tools/kg_query/call",
            json={"params": {"entity": "machine:PR-111", "path": ["maintained_by", "supervised_by"]}},
        )
        assert [e["id"] for e in r.json()["result"]["results"]] == [boss]
        r = c.post("/api/v1/tools/kg_query/call", json={"params": {"path": ["maintained_by"]}})
        assert r.status_code == 422


def test_edge_fallback_client_gets_the_edge_answer_text(server: LiveServer, tmp_path: Path) -> None:
    from edge.agent.cloud_client import CloudClient, result_text

    token = httpx.post(
        f"{server.url}/api/v1/nodes/register",
        json={"node_id": "edge-kg"},
        headers={"Authorization": f"Bearer {BOOTSTRAP}"},
    ).json()["token"]
    zh = "PR-111的维护人员的主管是谁？"

    async def go() -> list[Any]:
        client = CloudClient(server.url, token, timeout_s=5.0, total_budget_s=10.0)
        try:
            return [await client.route_and_call(q, "kg_query") for q in (TWO_HOP, zh)]
        finally:
            await client.aclose()

    edge = _edge_reasoner(tmp_path)
    for q, res in zip((TWO_HOP, zh), asyncio.run(go()), strict=True):
        assert res.tool == "kg_query"
        assert result_text(res.result) == edge.answer(q, use_cache=False).text
