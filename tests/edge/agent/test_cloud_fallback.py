"""The agent against a real cloud tool service (uvicorn on a free port): cloud tool answers,
hard examples answered by route-and-call, and the degraded paths — cloud down (connection
refused), cloud hanging (a real server that never answers in time), breaker open."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from edge.agent.routing import KeywordRouter
from edge.agent.types import Source
from skillpack.kg.graph import default_graph
from skillpack.kg.linking import EntityLinker
from tests.cloud.controller.conftest import ADMIN, LiveServer, free_port, make_settings

from .helpers import ask, make_agent, step


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LiveServer]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    with LiveServer(svc) as server:
        yield server
    svc.close()


class _UnsureRouter(KeywordRouter):
    """The keyword route with a low confidence: every request is a hard example."""

    def route(self, text: str) -> tuple[str, float]:
        return super().route(text)[0], 0.2


def test_cloud_tool_answer_and_hard_example_fallback(tmp_path: Path, cloud: LiveServer) -> None:
    agent = make_agent(tmp_path, agent_cloud_url=cloud.url, agent_cloud_token=ADMIN)
    r = ask(agent, "What is the average temperature in Beijing in July?")
    assert r.route == "climate" and r.source is Source.CLOUD_TOOL
    assert "26.7" in r.answer and r.data["city_id"] == "beijing"
    call = step(r, "cloud_call")
    assert (
        call["route_hint"] == "climate"
        and call["attempts"][0]["status"] == 200
        and call["breaker"] == "closed"
    )
    assert step(r, "prompt")["template"] == "climate"

    queued: list[dict] = []
    unsure = make_agent(
        tmp_path,
        "node-b",
        agent_cloud_url=cloud.url,
        agent_cloud_token=ADMIN,
        router=_UnsureRouter(EntityLinker(default_graph())),
        hard_examples=lambda ex: (queued.append(ex), f"hx-{len(queued)}")[1],
    )
    h = ask(unsure, "convert 5 km to miles")
    assert h.source is Source.CLOUD_FALLBACK and step(h, "route")["hard_example"] is True
    assert step(h, "cloud_call")["route_hint"] is None  # the cloud routes it itself
    assert "3.10686" in h.answer
    assert step(h, "hard_example") == {**step(h, "hard_example"), "queued": True, "id": "hx-1"}
    (ex,) = queued
    assert (
        ex["text"] == "convert 5 km to miles"
        and ex["edge_confidence"] == 0.2
        and ex["final_route"] == "unit_convert"
    )
    assert set(ex["probabilities"]) and ex["answer"] == h.answer


def test_cloud_down_gives_fast_offline_answer_and_breaker_opens(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    agent = make_agent(
        tmp_path,
        agent_cloud_url=dead,
        agent_cloud_retries=1,
        agent_breaker_failures=2,
        agent_breaker_reset_s=60.0,
    )
    r = ask(agent, "What is the average temperature in Beijing in July?")
    assert r.source is Source.OFFLINE and "offline" in r.answer
    assert [a.get("error") for a in step(r, "cloud_call")["attempts"]] == ["ConnectError", "ConnectError"]
    assert agent.cloud.breaker.state == "open"
    again = ask(agent, "How much rain does London get in October?")
    call = step(again, "cloud_call")
    assert again.source is Source.OFFLINE and call["attempts"] == [] and "breaker" in call["error"]
    # what the node can do itself still works while the cloud is away
    assert ask(agent, "what is 2 to the power of 10").answer.endswith("1024")
    kg = ask(agent, "Who maintains PR-111?")
    assert kg.source is Source.KNOWLEDGE_GRAPH


class _SlowCloud:
    """A real HTTP server whose tool route answers only after ``delay_s``."""

    def __init__(self, delay_s: float) -> None:
        app = FastAPI()

        @app.post("/api/v1/tools/route")
        async def route() -> dict:
            await asyncio.sleep(delay_s)
            return {"tool": "climate", "route": "climate", "result": {"text": "late"}}

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            self.thread.join(timeout=5)


def test_hanging_cloud_is_cut_off_by_timeout_and_budget(tmp_path: Path) -> None:
    with _SlowCloud(30.0) as url:
        agent = make_agent(
            tmp_path,
            agent_cloud_url=url,
            agent_cloud_timeout_s=0.3,
            agent_cloud_retries=5,
            agent_cloud_total_budget_s=0.8,
            agent_breaker_failures=10,
        )
        t0 = time.monotonic()
        r = ask(agent, "What is the average temperature in Tokyo in August?")
        elapsed = time.monotonic() - t0
    attempts = step(r, "cloud_call")["attempts"]
    assert r.source is Source.OFFLINE
    assert (
        all(a.get("error") == "TimeoutError" for a in attempts) and 1 <= len(attempts) < 6
    )  # budget cut retries
    assert elapsed < 20  # a safety net against a hang, not a speed assertion
