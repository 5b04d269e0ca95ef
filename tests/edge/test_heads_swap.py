"""The agent's graph heads (path scorer + scope gate) follow the served bundle: a real edge node
(uvicorn, ONNX Runtime, the tiny test encoder) starts on a bundle without heads (lexical scorer),
is hot-swapped over the repository API to an adapter-only update carrying heads trained on it
(learned scorer, the update's digest in ``/v1/agent/status``, a graph question answered by the
learned scorer), to a version whose heads graph is broken (the heads in use are kept, the
failure counted), and back to the bundle without heads (lexical again). Two swaps in a row
install only the newest bundle's heads."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.data.paraphrase import train_items
from cloud.training.hop_scorer import (
    CachedEmbed,
    attach_to_bundle,
    bundle_embedder,
    export_path_scorer,
    export_scope_head,
    train_path_scorer,
    train_scope_head,
)
from contracts.bundle import sha256_file
from contracts.manifest import MANIFEST_FILE, Manifest
from edge.agent.heads import HeadsPolicy, HeadsSwapper
from edge.agent.settings import AgentSettings
from edge.control.settings import ControlSettings
from edge.http.server import free_port
from edge.node import EdgeNode
from edge.serving.bundle_loader import BundleModelLoader
from tests.edge.agent.helpers import make_agent
from tests.edge.conftest import ADMIN_HEADERS, MODEL, Bundles, settings_for
from tests.support.wait import wait_for

NODE = "edge-heads"


@dataclass
class HeadsBundles:
    update: Path  # 1.1.0: the adapter-only update of v1 + heads trained on it
    broken: Path  # 1.0.2: v1 + heads whose path-scorer graph is not an ONNX model
    digest: str  # the update's heads digest


def _export_heads(bundle: Path, parent: Path | None, out: Path) -> list[tuple[Path, Path]]:
    """Small heads (a few questions, one epoch): the swap is the point, not their quality. The
    scope head's threshold is above any probability, so no question abstains."""
    embed = CachedEmbed(bundle_embedder(bundle, parent=parent))
    items = train_items(seed=0, kg_per_pattern=1, route_per_template=1)
    path, metrics = train_path_scorer(embed, items=items, epochs=1, describe=False, phrases=False)
    scope, _, _ = train_scope_head(embed, items=items, epochs=1)
    return [export_path_scorer(path, out, metrics), export_scope_head(scope, 2.0, out)]


def _digest(bundle: Path) -> str:
    """sha256 over the heads' graph files, as the status reports it."""
    h = hashlib.sha256()
    for role, name in (("hop_scorer", "hop_scorer.onnx"), ("scope_head", "scope_head.onnx")):
        h.update(f"{role}:{sha256_file(bundle / name)}\n".encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def heads_bundles(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> HeadsBundles:
    root = tmp_path_factory.mktemp("heads")
    update = Path(shutil.copytree(bundles.update, root / "update-heads"))
    attach_to_bundle(update, _export_heads(update, bundles.v1, root / "out-update"))
    broken = Path(shutil.copytree(bundles.v1, root / "broken-heads"))
    man = Manifest.from_yaml((broken / MANIFEST_FILE).read_bytes())
    (broken / MANIFEST_FILE).write_text(
        man.model_copy(update={"version": "1.0.2"}).to_yaml(), encoding="utf-8"
    )
    heads = _export_heads(broken, None, root / "out-broken")
    heads[0][0].write_bytes(b"not an ONNX graph")  # listed with its real sha256: the load fails
    attach_to_bundle(broken, heads)
    return HeadsBundles(update, broken, _digest(update))


@pytest.fixture()
def node(tmp_path: Path, bundles: Bundles) -> Iterator[EdgeNode]:
    serve = settings_for(
        tmp_path, node_id=NODE, http_host="127.0.0.1", http_port=free_port(), bundle_dir=bundles.v1
    )
    # every route decision is "hard" (the tiny router head is random) and there is no cloud:
    # a question naming a graph entity is answered on the edge by the graph search
    agent = AgentSettings(agent_memory_db=tmp_path / "memory.sqlite3", agent_confidence_threshold=1.0)
    n = EdgeNode.build(
        serve, control=ControlSettings(), with_sync=False, with_agent=True, agent_settings=agent
    )
    n.start()
    try:
        yield n
    finally:
        n.stop()


def _heads(node: EdgeNode) -> dict[str, Any]:
    r = httpx.get(f"{node.url}/v1/agent/status", timeout=10)
    assert r.status_code == 200, r.text
    heads: dict[str, Any] = r.json()["graph_heads"]
    return heads


def _load(node: EdgeNode, bundle: Path, version: str) -> None:
    r = httpx.post(
        f"{node.url}/v2/repository/models/{MODEL}/load",
        json={"parameters": {"bundle": str(bundle)}},
        headers=ADMIN_HEADERS,
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == version


def _swaps(node: EdgeNode, result: str) -> float:
    value = node.agent.metrics.registry.get_sample_value(
        "autoglm_edge_agent_heads_swaps_total", {"node": NODE, "result": result}
    )
    return value or 0.0


def _graph_scorer(node: EdgeNode, question: str) -> str:
    r = httpx.post(f"{node.url}/v1/ask", json={"text": question}, timeout=60)
    assert r.status_code == 200, r.text
    found = [s for s in r.json()["steps"] if s["kind"] == "kg_answer"]
    assert found, f"no graph answer: {r.json()}"
    return str(found[0]["scorer"])


def test_the_heads_follow_the_served_bundle(
    node: EdgeNode, bundles: Bundles, heads_bundles: HeadsBundles
) -> None:
    # start: v1 has no heads; the start-up load only names the heads' model
    start = wait_for(lambda: (h := _heads(node))["model"] and h, 60, "the start-up model in the status")
    assert start["model"] == f"{MODEL}:1.0.0/default"
    assert start["scorer"] == "lexical" and not start["scope_head"] and start["digest"] == ""
    assert _graph_scorer(node, "Who maintains PR-111?") == "LexicalHopScorer"

    # an adapter-only update with heads of its own: built off the loop with the parent's encoder
    _load(node, heads_bundles.update, "1.1.0")
    learned = wait_for(
        lambda: (h := _heads(node))["digest"] == heads_bundles.digest and h, 60, "the update's heads"
    )
    assert learned["scorer"] == "learned" and learned["scorer_class"] == "OnnxPathScorer"
    assert learned["scope_head"] and learned["model"] == f"{MODEL}:1.1.0/default"
    assert not learned["rebuilding"] and node.agent.heads.source == str(heads_bundles.update)
    assert (
        _graph_scorer(node, "Who is the supervisor of the person who maintains PR-111?") == "OnnxPathScorer"
    )
    assert _swaps(node, "learned") == 1

    # a version whose heads graph is broken: served, but its heads fail; the update's are kept
    _load(node, heads_bundles.broken, "1.0.2")
    wait_for(lambda: _swaps(node, "failed") == 1, 60, "the failed heads rebuild to be counted")
    kept = _heads(node)
    assert kept["digest"] == heads_bundles.digest and kept["model"] == f"{MODEL}:1.1.0/default"
    assert kept["scorer"] == "learned" and "1.0.2" in kept["last_error"]
    assert node.service.active is not None and node.service.active.version == "1.0.2"

    # back to the bundle without heads: the lexical scorer and no scope gate, as at start
    _load(node, bundles.v1, "1.0.0")
    back = wait_for(lambda: (h := _heads(node))["model"] == f"{MODEL}:1.0.0/default" and h, 60, "v1's heads")
    assert back["scorer"] == "lexical" and not back["scope_head"] and back["digest"] == ""
    assert back["last_error"] is None and _swaps(node, "lexical") == 1
    assert _graph_scorer(node, "Who operates PR-111?") == "LexicalHopScorer"


def test_two_swaps_in_a_row_install_the_newest_bundles_heads(
    tmp_path: Path, bundles: Bundles, heads_bundles: HeadsBundles
) -> None:
    settings = settings_for(tmp_path)
    v1 = BundleModelLoader(settings)(bundles.v1)
    update = BundleModelLoader(settings, parent_of=lambda: bundles.v1)(heads_bundles.update)
    agent = make_agent(tmp_path)
    swapper = HeadsSwapper(agent, HeadsPolicy(), agent.graph, agent.metrics)

    async def swaps(first: Any, second: Any) -> None:
        swapper(None, first)  # both rebuilds start; the first one's result is stale
        swapper(None, second)
        await swapper.settled_all()

    try:
        asyncio.run(swaps(update, v1))
        assert agent.heads.scorer_kind == "lexical" and agent.heads.model == v1.label
        asyncio.run(swaps(v1, update))
        assert agent.heads.scorer_kind == "learned" and agent.heads.digest == heads_bundles.digest
        assert agent.heads.scope is not None and agent.heads.model == update.label
        registry = agent.metrics.registry
        value = registry.get_sample_value(
            "autoglm_edge_agent_heads_swaps_total", {"node": agent.node_id, "result": "stale"}
        )
        assert value == 2
    finally:
        v1.close()
        update.close()
