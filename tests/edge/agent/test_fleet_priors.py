"""Graph-path feedback across the fleet, with real parts: two edge agents with their own memory
stores and MQTT sync, the cloud sync hub, a real Mosquitto; ``POST /v1/feedback`` on a real
uvicorn server for the admin-token rule.

- node A answers a 2-hop graph question, its operator confirms it (with the edge admin token):
  the cloud stores A's count, sums it over the fleet, and node B's prior for that path goes up;
- feedback without the token changes only node A's priors;
- a restarted agent (new process state, same memory file) keeps its priors;
- ``/metrics`` shows graph path-cache hits and prior updates.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client import generate_latest

from edge.agent.http import make_router
from edge.agent.types import FeedbackRequest, Source
from edge.http.auth import EdgeAdminAuth
from edge.http.errors import install_error_handlers
from edge.http.server import BackgroundServer
from tests.sync.conftest import TwoNodes, wait_until

from .helpers import ask, make_agent

Q = "Who is the supervisor of the technician who maintains PR-111?"
PATH = ("maintained_by", "supervised_by")


def _sample(agent: object, name: str, **labels: str) -> float:
    registry = agent.metrics.registry  # type: ignore[attr-defined]
    return registry.get_sample_value(name, labels) or 0.0


def test_a_confirmed_path_on_node_a_raises_node_bs_prior(
    tmp_path: Path,
    two_nodes: TwoNodes,
) -> None:
    hub, sync_a, sync_b = two_nodes
    a = make_agent(tmp_path, "node-a", agent_cloud_url="", sync=sync_a)
    b = make_agent(tmp_path, "node-b", agent_cloud_url="", sync=sync_b)

    first = ask(a, Q)
    assert first.source is Source.KNOWLEDGE_GRAPH and tuple(first.data["path"]) == PATH
    before_b = b.reasoner.prior("machine", PATH)
    out = a.feedback(FeedbackRequest(text=Q, correct=True), shared=True)
    assert out["confirmed"] and out["shared"] and tuple(out["path"]) == PATH and out["prior"] > 0
    wait_until(lambda: hub.repo.path_prior("node-a", "machine", PATH) == (1, 0), 30, "cloud stored A's count")
    wait_until(lambda: b.reasoner.prior("machine", PATH) > before_b, 30, "node-b's prior went up")
    assert b.reasoner.priors.counts("machine", PATH).fleet_confirmed == 1
    assert _sample(b, "autoglm_edge_agent_kg_prior_updates_total", node="node-b", kind="fleet") >= 1
    assert _sample(a, "autoglm_edge_agent_kg_prior_updates_total", node="node-a", kind="confirmed") == 1
    assert _sample(a, "autoglm_edge_agent_kg_path_cache_total", node="node-a", outcome="miss") == 1

    # anonymous feedback (no admin token): only node A's own priors move
    wrong = a.feedback(FeedbackRequest(text=Q, correct=False, path=["operated_by"], start_type="machine"))
    assert wrong["shared"] is False and wrong["prior"] < 0
    a.feedback(FeedbackRequest(text=Q, correct=True), shared=True)  # ordered after it on A's stream
    wait_until(lambda: hub.repo.path_prior("node-a", "machine", PATH) == (2, 0), 30, "A's second count")
    assert hub.repo.path_prior("node-a", "machine", ("operated_by",)) is None
    assert b.reasoner.priors.counts("machine", ("operated_by",)).rejected == 0

    # the same question shape again: a path-cache hit, counted in /metrics
    again = ask(a, "Who is the supervisor of the technician who maintains PR-112?")
    assert again.source is Source.KNOWLEDGE_GRAPH
    exposition = generate_latest(a.metrics.registry).decode()
    assert 'autoglm_edge_agent_kg_path_cache_total{node="node-a",outcome="hit"} 1.0' in exposition
    assert "autoglm_edge_agent_kg_prior_updates_total" in exposition

    # restart: a new agent on node A's memory file (no sync) keeps the local and fleet counts
    sync_a.stop()
    restarted = make_agent(tmp_path, "node-a", agent_cloud_url="")
    counts = restarted.reasoner.priors.counts("machine", PATH)
    assert (counts.confirmed, counts.shared_confirmed) == (2, 2)
    assert restarted.reasoner.prior("machine", PATH) == a.reasoner.prior("machine", PATH) > 0
    assert restarted.reasoner.priors.counts("machine", ("operated_by",)).rejected == 1
    assert hub.rejected_counts() == {}


def test_feedback_over_http_is_shared_only_with_the_admin_token(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, "node-h", agent_cloud_url="")
    app = FastAPI()
    install_error_handlers(app)
    app.state.admin_auth = EdgeAdminAuth("s3cret")
    app.include_router(make_router(agent))
    ask(agent, Q)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        anon = c.post("/v1/feedback", json={"text": Q, "correct": True})
        assert anon.status_code == 200 and anon.json()["shared"] is False
        admin = c.post(
            "/v1/feedback", json={"text": Q, "correct": True}, headers={"Authorization": "Bearer s3cret"}
        )
        assert admin.status_code == 200 and admin.json()["shared"] is True
        bad = c.post("/v1/feedback", json={"text": Q, "correct": True}, headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401
        off_schema = c.post(
            "/v1/feedback",
            json={"text": Q, "correct": True, "path": ["teleported_by"], "start_type": "machine"},
        )
        assert off_schema.status_code == 400 and "unknown relation" in off_schema.json()["error"]
    counts = agent.reasoner.priors.counts("machine", PATH)
    assert (counts.confirmed, counts.shared_confirmed) == (2, 1)
