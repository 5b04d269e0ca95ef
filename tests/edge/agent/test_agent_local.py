"""The agent on one node without a cloud: local tools, graph reasoning with real steps, session
coreference, device control guard, memory recall, the semantic cache's gates.

These tests pin the route with the keyword router and use the hashing encoder (no bundle): the
behaviour under test is the agent's, not a random tiny model's routing."""

from __future__ import annotations

import numpy as np
import pytest

from edge.agent.cloud_client import CircuitBreaker
from edge.agent.memory import SemanticCache, calibrate_threshold
from edge.agent.prompts import PromptEngine
from edge.agent.types import Source
from edge.memory.store import MemoryStore
from skillpack.kg.graph import default_graph

from .helpers import ask, kinds, make_agent, step


def test_local_calculator_answer(tmp_path) -> None:
    agent = make_agent(tmp_path)
    r = ask(agent, "what is 15% of 240")
    assert r.source is Source.LOCAL_TOOL and r.route == "calculator" and "36" in r.answer
    call = step(r, "tool_call")
    assert (
        call["tool"] == "calculator"
        and call["args"] == {"expression": "15% * 240"}
        and call["result"]["value"] == 36
    )
    assert step(r, "route")["router"] == "keyword"
    assert r.latency_ms > 0 and r.model_version == "hashing-encoder"


def test_two_hop_graph_question_with_steps(tmp_path) -> None:
    g = default_graph()
    agent = make_agent(tmp_path)
    r = ask(agent, "Who is the supervisor of the technician who maintains PR-111?")
    tech = g.neighbors("machine:PR-111", "maintained_by")[0]
    boss = g.neighbors(tech, "supervised_by")[0]
    assert r.source is Source.KNOWLEDGE_GRAPH and r.data["answers"] == [boss]
    assert step(r, "kg_link")["entity"] == "machine:PR-111"
    hops = [s for s in r.steps if s["kind"] == "kg_hop"]
    assert [h["relation"] for h in hops] == ["maintained_by", "supervised_by"]
    assert hops[0]["to"] == [tech] and hops[1]["from"] == [tech] and hops[1]["to"] == [boss]
    assert all(0 < h["score"] <= 1 and h["candidates"][0]["relation"] == h["relation"] for h in hops)
    zh = ask(agent, "PR-111的维护人员的主管是谁？")
    assert zh.data["answers"] == [boss] and g.entities[boss].name_zh in zh.answer


def test_session_coreference_and_line_3(tmp_path) -> None:
    g = default_graph()
    agent = make_agent(tmp_path)
    first = ask(agent, "Who supervises Stuttgart line 2?", session_id="s1")
    assert first.data["answers"] == g.neighbors("line:ST-L2", "supervised_by")
    follow = ask(agent, "and line 3?", session_id="s1")
    co = step(follow, "coreference")
    assert co["rewritten"] == "Who supervises line 3?" and co["entity"] == "line:ST-L3"
    assert follow.data["answers"] == g.neighbors("line:ST-L3", "supervised_by")
    # another session has no context: "and line 3?" is not rewritten there
    other = ask(agent, "and line 3?", session_id="s2")
    assert "coreference" not in kinds(other)
    recall = ask(agent, "what did I just ask?", session_id="s1")
    assert recall.route == "memory_recall" and "line 3" in recall.answer


def test_device_control_refused_without_confirmation(tmp_path) -> None:
    agent = make_agent(tmp_path)
    refused = ask(agent, "set OV-122 to 190 °C")
    assert refused.route == "device_control" and refused.source is Source.LOCAL_TOOL
    assert step(refused, "tool_call")["refused"] == "not_confirmed" and "confirm" in refused.answer
    assert agent.devices.status("OV-122")["setpoints"]["temperature"] == 180.0
    not_allowed = ask(agent, "stop PR-111", confirm=True)
    assert step(not_allowed, "tool_call")["refused"] == "not_allowed"
    done = ask(agent, "set OV-122 to 190 °C", confirm=True)
    assert step(done, "tool_call")["refused"] is None
    assert agent.devices.status("OV-122")["setpoints"]["temperature"] == 190.0
    # never cached: asking again runs the tool again
    again = ask(agent, "set OV-122 to 190 °C", confirm=True)
    assert (
        again.source is Source.LOCAL_TOOL
        and "cache" not in kinds(again)
        and "cache_store" not in kinds(again)
    )


def test_semantic_cache_hits_only_same_signature(tmp_path) -> None:
    agent = make_agent(tmp_path)
    first = ask(agent, "Who maintains PR-111?")
    assert first.source is Source.KNOWLEDGE_GRAPH and "cache_store" in kinds(first)
    second = ask(agent, "who maintains PR-111")
    assert second.source is Source.SEMANTIC_CACHE and second.answer == first.answer
    assert step(second, "cache")["similarity"] >= agent.cache.threshold
    other = ask(agent, "Who maintains PR-112?")  # similar text, another machine
    assert other.source is Source.KNOWLEDGE_GRAPH and other.answer != first.answer


def test_cache_freshness_per_route(tmp_path) -> None:
    now = [1000.0]
    store = MemoryStore(tmp_path / "m.sqlite3", "n")
    cache = SemanticCache(store, 0.9, {"device_status": 5.0, "climate": 3600.0}, wall=lambda: now[0])
    v = np.ones(8, dtype=np.float32)
    cache.store_answer("temp of OV-122?", v, "device_status", ["c:OV-122"], "180 °C")
    cache.store_answer("beijing july", v, "climate", ["e:x"], "26.7 °C")
    assert cache.lookup(v, "device_status", ["c:OV-122"])[0] is not None
    now[0] += 6.0
    assert cache.lookup(v, "device_status", ["c:OV-122"])[0] is None  # stale after 5 s
    assert cache.lookup(v, "climate", ["e:x"])[0] is not None  # climate lasts hours
    assert cache.store_answer("x", v, "device_control", [], "done") is None  # never cached


def test_threshold_calibration_bounds_false_hits() -> None:
    rng = np.random.default_rng(0)
    neg = rng.uniform(0.2, 0.9, 1000)
    pos = rng.uniform(0.85, 1.0, 1000)
    t = calibrate_threshold(pos, neg, 0.01)
    assert (neg >= t).mean() <= 0.01 and (neg >= t - 0.01).mean() > 0.005


def test_prompt_engine_bounds_size_and_picks_template() -> None:
    engine = PromptEngine.load(max_chars=400)
    p = engine.build(
        "kg_query",
        "Who maintains PR-111?",
        memory=["x" * 100] * 10,
        steps=[{"kind": "kg_link", "entity": "e"}],
    )
    assert (
        p.template == "kg_query" and len(p.text) <= 400 and p.truncated and "Who maintains PR-111?" in p.text
    )
    assert engine.build("kg_query", "and line 3?", followup=True).template == "kg_query.followup"
    assert engine.build("no_such_route", "hi").template == "default"


def test_circuit_breaker_opens_and_half_opens() -> None:
    now = [0.0]
    b = CircuitBreaker(failures=2, reset_s=10.0, clock=lambda: now[0])
    assert b.allow()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 10.5
    assert b.state == "half_open" and b.allow() and not b.allow()  # one trial at a time
    b.failure()
    assert b.state == "open"
    now[0] = 21.0
    assert b.allow()
    b.success()
    assert b.state == "closed"


def test_empty_text_is_a_bad_request(tmp_path) -> None:
    from pydantic import ValidationError

    from contracts.errors import BadRequest
    from edge.agent.types import AskRequest

    with pytest.raises(ValidationError):
        AskRequest(text="")
    with pytest.raises(BadRequest):
        ask(make_agent(tmp_path), "   ")


def test_feedback_confirms_the_path_and_raises_its_prior(tmp_path) -> None:
    from edge.agent.types import FeedbackRequest

    agent = make_agent(tmp_path)
    q = "Who is the supervisor of the technician who maintains PR-111?"
    ask(agent, q)
    before = agent.reasoner.prior("machine", ("maintained_by", "supervised_by"))
    out = agent.feedback(FeedbackRequest(text=q, correct=True))
    assert (
        out["confirmed"]
        and out["path"] == ["maintained_by", "supervised_by"]
        and out["start_type"] == "machine"
    )
    assert agent.reasoner.prior("machine", ("maintained_by", "supervised_by")) > before
    unknown = agent.feedback(FeedbackRequest(text="never asked", correct=True))
    assert unknown["confirmed"] is False


def test_heartbeat_rates(tmp_path) -> None:
    agent = make_agent(tmp_path, agent_cloud_url="")
    ask(agent, "what is 2 plus 2")
    ask(agent, "what is 2 plus 2")  # semantic cache
    ask(
        agent, "What is the average temperature in Beijing in July?"
    )  # climate is a cloud route: offline here
    hb = agent.metrics.heartbeat_fields()
    assert hb["agent_requests"] == 3 and hb["fallback_rate"] == round(1 / 3, 4)
    assert hb["semantic_cache_hit_rate"] == round(1 / 3, 4)


def test_long_term_memory_answers_a_close_question(tmp_path) -> None:
    import asyncio

    # the hashing encoder (no bundle) scores this pair at ~0.80; a sentence encoder would score it higher
    agent = make_agent(tmp_path, agent_memory_answer_threshold=0.75)
    out = asyncio.run(
        agent.remember("forklift-charging", "Forklift charging station location: next to gate 4 of hall B.")
    )
    assert out["key"] == "kb:forklift-charging"
    r = ask(agent, "forklift charging station location?")
    assert r.source is Source.MEMORY and "gate 4" in r.answer
    hit = step(r, "memory")["hits"][0]
    assert hit["key"] == "kb:forklift-charging" and hit["similarity"] >= 0.75
    # a computed route is never answered from a remembered text
    assert ask(agent, "what is 4 plus 4").source is Source.LOCAL_TOOL
