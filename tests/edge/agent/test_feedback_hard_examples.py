"""A rejected answer becomes a hard example (issue 15): ``POST /v1/feedback`` with ``correct: false``
and the right ``route`` queues the question — even one the router answered confidently, which an
ask never queues — with reason ``user_rejected``, the route and confidence it was answered with and
the user's route as the suggested label (source ``user``).

- over a real Mosquitto: edge agent → outbox → MQTT → the cloud hub → its ``on_hard_examples`` hook →
  the learning loop's queue in the cloud database (SQLite); the triage prefers the user's route over
  a confident model suggestion, merges a paraphrase (a question this node never answered) into the
  same item, and the ``loop_auto_approve_user`` policy labels it;
- over a real uvicorn server: a route correction needs the edge admin token (401 without / with a
  wrong one, 403 where no token is configured), an unknown or malformed route, a route on a correct
  answer and oversize text are 400 with a message; the feedback counter in ``/metrics``.

The queue's triage function stands in for the full-precision model (a torch checkpoint): it returns
a fixed embedding and a confident wrong route, which is what the test needs the model to say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from autoglm.cli import app as cli_app
from cloud.api.container import CloudServices
from cloud.loop.queue import Triaged
from cloud.loop.settings import LoopSettings
from cloud.sync.hub import CloudSync
from contracts.loop import HardExampleReason, HardExampleStatus, SuggestionSource
from edge.agent.http import make_router
from edge.agent.types import FeedbackRequest, Source
from edge.http.auth import EdgeAdminAuth
from edge.http.errors import install_error_handlers
from edge.http.server import BackgroundServer
from edge.sync.agent import EdgeSync
from tests.cloud.controller.conftest import make_settings
from tests.support.mosquitto import MosquittoBroker
from tests.support.wait import wait_for

from .helpers import ask, make_agent

Q = "what is 48 * 12"  # the keyword router answers it confidently (calculator, 0.9)
PARAPHRASE = "48 times 12 please"  # never asked on the node
MEANT = "unit_convert"  # what the (test's) user says the question meant


def _feedback_total(agent: Any, node: str, verdict: str, *, queued: bool) -> float:
    labels = {"node": node, "verdict": verdict, "queued": str(queued).lower()}
    return agent.metrics.registry.get_sample_value("autoglm_edge_agent_feedback_total", labels) or 0.0


def _model_says_calculator(texts: list[str]) -> list[Triaged]:
    v = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    return [Triaged(v, "calculator", 0.97) for _ in texts]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[CloudServices]:
    svc = CloudServices.build(make_settings(tmp_path / "cloud"))
    yield svc
    svc.close()


def test_a_rejected_confident_answer_reaches_the_cloud_queue_with_the_users_label(
    tmp_path: Path,
    cloud: CloudServices,
    mosquitto_broker: MosquittoBroker,
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> None:
    hub = make_cloud(mosquitto_broker)
    queue = cloud.loop.queue

    def feed(node: str, records: list[dict[str, Any]]) -> None:  # as CloudServices.build wires it
        queue.ingest(node, records)

    hub.on_hard_examples(feed)
    hub.start()
    sync_a = make_edge(mosquitto_broker, "node-a").start()
    assert sync_a.wait_connected(30) and hub.wait_connected(30)
    agent = make_agent(tmp_path, "node-a", agent_cloud_url="", sync=sync_a)

    answered = ask(agent, Q)
    assert answered.source is Source.LOCAL_TOOL and answered.route == "calculator"
    assert not any(s["kind"] == "hard_example" for s in answered.steps)  # confident: not queued by ask

    out = agent.feedback(FeedbackRequest(text=Q, correct=False, route=MEANT), shared=True)
    hx = out["hard_example"]
    assert hx["queued"] and hx["route"] == "calculator" and hx["confidence"] == pytest.approx(0.9)
    again = agent.feedback(FeedbackRequest(text=Q, correct=False, route=MEANT), shared=True)
    assert again["hard_example"] == {"queued": False, "reason": "this rejection was already queued"}
    # a question this node never answered is still queued when the user names its route
    other = agent.feedback(FeedbackRequest(text=PARAPHRASE, correct=False, route=MEANT), shared=True)
    assert other["hard_example"]["queued"] and other["hard_example"]["route"] == ""
    # without a route and without a recent answer there is nothing to queue
    nothing = agent.feedback(FeedbackRequest(text="never asked", correct=False))
    assert nothing["hard_example"]["queued"] is False
    assert _feedback_total(agent, "node-a", "wrong_with_route", queued=True) == 2
    assert _feedback_total(agent, "node-a", "wrong_with_route", queued=False) == 1

    wait_for(lambda: queue.untriaged() == 2, 30, "both rejections in the cloud queue")
    (row,) = [r for r in hub.repo.hard_examples("node-a") if r["text"] == Q]
    assert row["reason"] == HardExampleReason.USER_REJECTED and row["user_route"] == MEANT
    assert row["edge_route"] == "calculator" and row["edge_confidence"] == pytest.approx(0.9)

    queue.settings = LoopSettings(loop_auto_approve=True, loop_auto_approve_user=True)
    assert queue.triage(_model_says_calculator) == 2
    (item,) = queue.items().items  # the paraphrase merged into the same item (same embedding)
    assert item.count == 2 and item.variants == [PARAPHRASE]
    assert item.reasons == {"user_rejected": 2} and item.user_routes == {MEANT: 2}
    assert item.edge_routes == {"calculator": 1, "?": 1}
    # the user's route beats the model's confident (wrong) one; the answered route is not a suggestion
    assert (item.suggested_route, item.suggestion_source) == (MEANT, SuggestionSource.USER)
    assert item.model_route == "calculator" and item.cloud_route is None
    assert item.status is HardExampleStatus.LABELLED and item.label == MEANT
    assert item.reason == "auto-approved (user)"
    assert hub.rejected_counts() == {}


def test_user_labels_wait_for_a_person_unless_the_policy_approves_them(cloud: CloudServices) -> None:
    queue = cloud.loop.queue
    rec = {"id": "u1", "text": Q, "reason": "user_rejected", "user_route": MEANT, "edge_route": "calculator"}
    bad = {"id": "u2", "text": "other", "reason": "made_up", "user_route": "Not A Route!"}
    assert queue.ingest("n1", [rec, bad]) == 2
    queue.settings = LoopSettings(loop_auto_approve=True, loop_auto_approve_any_source=True)

    def far(texts: list[str]) -> list[Triaged]:
        return [
            Triaged(np.array([1.0, 0, 0] if t == Q else [0, 1.0, 0], dtype=np.float32), "calculator", 0.97)
            for t in texts
        ]

    assert queue.triage(far) == 2
    by_text = {i.text: i for i in queue.items().items}
    user = by_text[Q]
    # any-source auto-approval does not cover a user's label: that needs loop_auto_approve_user
    assert user.suggestion_source is SuggestionSource.USER and user.status is HardExampleStatus.NEW
    # a malformed route or an unknown reason from an edge is dropped on ingest
    assert by_text["other"].user_routes == {} and by_text["other"].reasons == {}
    assert by_text["other"].suggestion_source is SuggestionSource.MODEL


def test_feedback_over_http_route_corrections_need_the_admin_token(tmp_path: Path) -> None:
    sent: list[dict[str, Any]] = []

    def sink(example: dict[str, Any]) -> str:
        sent.append(example)
        return f"hx-{len(sent)}"

    agent = make_agent(tmp_path, "node-h", agent_cloud_url="", hard_examples=sink)
    app = FastAPI()
    install_error_handlers(app)
    app.state.admin_auth = EdgeAdminAuth("s3cret")
    app.include_router(make_router(agent))
    ask(agent, Q)
    admin = {"Authorization": "Bearer s3cret"}
    fix = {"text": Q, "correct": False, "route": MEANT}
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        anon = c.post("/v1/feedback", json=fix)
        assert anon.status_code == 401 and "Authorization: Bearer" in anon.json()["error"]
        wrong_token = c.post("/v1/feedback", json=fix, headers={"Authorization": "Bearer x"})
        assert wrong_token.status_code == 401 and "invalid bearer token" in wrong_token.json()["error"]
        unknown = c.post("/v1/feedback", json={**fix, "route": "teleport"}, headers=admin)
        assert unknown.status_code == 400 and "unknown route 'teleport'" in unknown.json()["error"]
        malformed = c.post("/v1/feedback", json={**fix, "route": "Calc!"}, headers=admin)
        assert malformed.status_code == 400 and "route" in malformed.json()["error"]
        on_correct = c.post("/v1/feedback", json={**fix, "correct": True}, headers=admin)
        assert on_correct.status_code == 400 and "correct=false" in on_correct.json()["error"]
        oversize = c.post("/v1/feedback", json={**fix, "text": "x" * 4001}, headers=admin)
        assert oversize.status_code == 400 and "text" in oversize.json()["error"]
        assert sent == []  # nothing refused reached the outbox

        # the CLI: one line per refusal (400 is the user's input: exit 2), the queued example on success
        cli = CliRunner()
        base = ["feedback", Q, "--url", server.url, "--wrong"]
        r = cli.invoke(cli_app, [*base, "--route", "teleport", "--token", "s3cret"])
        assert r.exit_code == 2 and "400: unknown route 'teleport'" in r.output
        assert len(r.output.strip().splitlines()) == 1
        r = cli.invoke(cli_app, [*base, "--route", MEANT], env={"AUTOGLM_EDGE_HTTP_ADMIN_TOKEN": ""})
        assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and "401" in r.output
        r = cli.invoke(cli_app, ["feedback", Q, "--url", server.url, "--right", "--route", MEANT])
        assert r.exit_code == 2 and "--route" in r.output

        r = cli.invoke(cli_app, [*base, "--route", MEANT, "--token", "s3cret"])
        assert r.exit_code == 0 and "hard example queued (id hx-1, answered calculator" in r.output
        # a plain rejection (no route) stays open: it queues the answer without a label
        c.post("/v1/feedback", json={"text": "convert 3 m to feet", "correct": False})  # not asked yet
        ask(agent, "convert 3 m to feet")
        plain = c.post("/v1/feedback", json={"text": "convert 3 m to feet", "correct": False})
        assert plain.status_code == 200 and plain.json()["hard_example"]["queued"] is True
    assert [(e["text"], e["user_route"], e["reason"]) for e in sent] == [
        (Q, MEANT, "user_rejected"),
        ("convert 3 m to feet", "", "user_rejected"),
    ]
    assert sent[0]["edge_route"] == "calculator" and sent[0]["answer_source"] == "local_tool"
    assert _feedback_total(agent, "node-h", "wrong", queued=True) == 1
    assert _feedback_total(agent, "node-h", "wrong", queued=False) == 1

    closed = FastAPI()  # no admin token configured: route corrections are off (403), like /v1/knowledge
    install_error_handlers(closed)
    closed.state.admin_auth = EdgeAdminAuth("")
    closed.include_router(make_router(agent))
    with BackgroundServer(closed) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        off = c.post("/v1/feedback", json=fix)
        assert off.status_code == 403 and "AUTOGLM_EDGE_HTTP_ADMIN_TOKEN" in off.json()["error"]
