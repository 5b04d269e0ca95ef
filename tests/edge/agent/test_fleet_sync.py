"""Two edge agents, the cloud tool service and the cloud sync hub over a real Mosquitto:

- node A answers a cloud-tool question; the answer enters A's semantic cache, is synced to the
  cloud and rebroadcast; node B then answers a paraphrase of it from its cache (origin node A);
- a hard example (low confidence) is answered by the cloud and received by the cloud hub.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from edge.agent.routing import KeywordRouter
from edge.agent.types import Source
from skillpack.kg.graph import default_graph
from skillpack.kg.linking import EntityLinker
from tests.cloud.controller.conftest import ADMIN, LiveServer, make_settings
from tests.sync.conftest import TwoNodes, wait_until

from .helpers import ask, make_agent, step


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LiveServer]:
    svc = CloudServices.build(make_settings(tmp_path / "svc"), channel=RecordingChannel())
    with LiveServer(svc) as server:
        yield server
    svc.close()


class _UnsureRouter(KeywordRouter):
    def route(self, text: str) -> tuple[str, float]:
        return super().route(text)[0], 0.25


def test_cloud_answer_becomes_cache_hit_on_another_node_and_hard_examples_reach_the_cloud(
    tmp_path: Path,
    cloud: LiveServer,
    two_nodes: TwoNodes,
) -> None:
    hub, sync_a, sync_b = two_nodes
    a = make_agent(tmp_path, "node-a", agent_cloud_url=cloud.url, agent_cloud_token=ADMIN, sync=sync_a)
    b = make_agent(tmp_path, "node-b", agent_cloud_url=cloud.url, agent_cloud_token=ADMIN, sync=sync_b)

    first = ask(a, "What is the average temperature in Shanghai in July?")
    assert first.source is Source.CLOUD_TOOL and "29" in first.answer
    key = step(first, "cache_store")["key"]
    wait_until(
        lambda: sync_b.store is not None and sync_b.store.get(key) is not None,
        30,
        "cache entry synced to node-b",
    )

    second = ask(b, "what is the average temperature in shanghai in july")
    assert second.source is Source.SEMANTIC_CACHE and second.answer == first.answer
    hit = step(second, "cache")
    assert hit["origin"] == "node-a" and hit["similarity"] >= b.cache.threshold
    assert "cloud_call" not in [s["kind"] for s in second.steps]

    unsure = make_agent(
        tmp_path,
        "node-a2",
        agent_cloud_url=cloud.url,
        agent_cloud_token=ADMIN,
        sync=sync_a,
        router=_UnsureRouter(EntityLinker(default_graph())),
    )
    hard = ask(unsure, "how many psi is 2.5 bar")
    assert hard.source is Source.CLOUD_FALLBACK and "36.2594" in hard.answer
    hx = step(hard, "hard_example")
    assert hx["queued"] is True
    wait_until(lambda: hub.repo.hard_example_count("node-a") == 1, 30, "hard example stored by the cloud")
    (ex,) = hub.repo.hard_examples("node-a")
    assert ex["id"] == hx["id"] and ex["text"] == "how many psi is 2.5 bar"
    assert (
        ex["edge_confidence"] == 0.25 and ex["final_route"] == "unit_convert" and ex["answer"] == hard.answer
    )
