"""The agent's graph heads (path scorer + scope gate) follow the served bundle: a real edge node
(uvicorn, ONNX Runtime, the tiny test encoder) starts on a bundle without heads (lexical scorer),
is hot-swapped over the repository API to an adapter-only update carrying heads trained on it
(learned scorer, the update's digest in ``/v1/agent/status``, a graph question answered by the
learned scorer), to a version whose heads graph is broken (the heads in use are kept, the
failure counted, their scope gate skipped for the served model's embeddings), and back to the
bundle without heads (lexical again). Two swaps in a row install only the newest bundle's heads.
While a swap's heads are held in their rebuild, a request is routed without the old model's scope
gate (counted), also when the new encoder has another embedding width; the gate applies again
once the new heads land."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cloud.data.paraphrase import train_items
from cloud.model.base import make_tiny_base
from cloud.training.hop_scorer import (
    CachedEmbed,
    attach_to_bundle,
    bundle_embedder,
    export_path_scorer,
    export_scope_head,
    train_path_scorer,
    train_scope_head,
)
from contracts.bundle import open_bundle, sha256_file
from contracts.manifest import MANIFEST_FILE, Manifest
from edge.agent.heads import GraphHeads, HeadsPolicy, HeadsSwapper
from edge.agent.hop_scorer import OnnxScopeHead
from edge.agent.routing import Encoded
from edge.agent.settings import AgentSettings
from edge.control.settings import ControlSettings
from edge.http.server import free_port
from edge.node import EdgeNode
from edge.serving.bundle_loader import BundleModelLoader
from edge.serving.loaded_model import LoadedModel
from export.pipeline import export_checkpoint
from tests.edge.agent.helpers import ask, make_agent
from tests.edge.conftest import ADMIN_HEADERS, MODEL, Bundles, _checkpoint, settings_for
from tests.support.wait import wait_for

NODE = "edge-heads"


@dataclass
class HeadsBundles:
    update: Path  # 1.1.0: the adapter-only update of v1 + heads trained on it
    broken: Path  # 1.0.2: v1 + heads whose path-scorer graph is not an ONNX model
    digest: str  # the update's heads digest
    gated: Path  # 1.0.3: v1 + the update's heads (same embedding width, another model)
    wide: Path  # 3.0.0: another tiny encoder, 48-d embeddings (v1's are 32-d), heads of its own


def _export_heads(bundle: Path, parent: Path | None, out: Path) -> list[tuple[Path, Path]]:
    """Small heads (a few questions, one epoch): the swap is the point, not their quality. The
    scope head's threshold is above any probability, so no question abstains."""
    embed = CachedEmbed(bundle_embedder(bundle, parent=parent))
    items = train_items(seed=0, kg_per_pattern=1, route_per_template=1)
    path, metrics = train_path_scorer(embed, items=items, epochs=1, describe=False, phrases=False)
    scope, _, _ = train_scope_head(embed, items=items, epochs=1)
    return [export_path_scorer(path, out, metrics), export_scope_head(scope, 2.0, out)]


def _with_version(bundle: Path, version: str) -> None:
    man = Manifest.from_yaml((bundle / MANIFEST_FILE).read_bytes())
    (bundle / MANIFEST_FILE).write_text(
        man.model_copy(update={"version": version}).to_yaml(), encoding="utf-8"
    )


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
    update_heads = _export_heads(update, bundles.v1, root / "out-update")
    attach_to_bundle(update, update_heads)
    broken = Path(shutil.copytree(bundles.v1, root / "broken-heads"))
    _with_version(broken, "1.0.2")
    heads = _export_heads(broken, None, root / "out-broken")
    heads[0][0].write_bytes(b"not an ONNX graph")  # listed with its real sha256: the load fails
    attach_to_bundle(broken, heads)
    gated = Path(shutil.copytree(bundles.v1, root / "gated-heads"))
    _with_version(gated, "1.0.3")
    attach_to_bundle(gated, update_heads)  # trained on the update's encoder: usable, not the point
    base = make_tiny_base(root / "wide-base", seed=3, hidden=48)
    wide = export_checkpoint(
        _checkpoint(root / "wide-ckpt", base, 3), root / "wide", name=MODEL, version="3.0.0"
    )
    attach_to_bundle(wide, _export_heads(wide, None, root / "out-wide"))
    return HeadsBundles(update, broken, _digest(update), gated, wide)


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


def _route_step(node: EdgeNode, question: str) -> dict[str, Any]:
    """The ``route`` step of a question asked over HTTP (200: the gate never raises)."""
    r = httpx.post(f"{node.url}/v1/ask", json={"text": question}, timeout=60)
    assert r.status_code == 200, r.text
    step: dict[str, Any] = next(s for s in r.json()["steps"] if s["kind"] == "route")
    return step


def _skipped(node: EdgeNode) -> float:
    value = node.agent.metrics.registry.get_sample_value(
        "autoglm_edge_agent_scope_skipped_total", {"node": NODE, "reason": "model_mismatch"}
    )
    return value or 0.0


class HeldRebuild:
    """Wraps the swapper's heads build: it waits for ``release`` (set by the test) before it
    builds, so the test can ask questions while the new model is served with the old heads."""

    def __init__(self, swapper: HeadsSwapper) -> None:
        self.build = swapper._load
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, model: LoadedModel) -> GraphHeads:
        self.entered.set()
        assert self.release.wait(60), "the test never released the held rebuild"
        return self.build(model)


def test_the_heads_follow_the_served_bundle(
    node: EdgeNode, bundles: Bundles, heads_bundles: HeadsBundles
) -> None:
    # start: v1 has no heads; the start-up load only names the heads' model
    start = wait_for(
        lambda: (h := _heads(node))["served_model"] and h, 60, "the start-up model in the status"
    )
    assert start["model"] == start["served_model"] == f"{MODEL}:1.0.0/default"
    assert start["scorer"] == "lexical" and not start["scope_head"] and start["digest"] == ""
    assert start["scope_gate"] == "none"
    assert _graph_scorer(node, "Who maintains PR-111?") == "LexicalHopScorer"

    # an adapter-only update with heads of its own: built off the loop with the parent's encoder
    _load(node, heads_bundles.update, "1.1.0")
    learned = wait_for(
        lambda: (h := _heads(node))["digest"] == heads_bundles.digest and h, 60, "the update's heads"
    )
    assert learned["scorer"] == "learned" and learned["scorer_class"] == "OnnxPathScorer"
    assert learned["scope_head"] and learned["model"] == f"{MODEL}:1.1.0/default"
    assert not learned["rebuilding"] and node.agent.heads.source == str(heads_bundles.update)
    assert learned["scope_gate"] == "applied" and learned["served_model"] == learned["model"]
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
    # the update's gate is not applied to 1.0.2's embeddings: routed as without a gate, counted
    assert kept["served_model"] == f"{MODEL}:1.0.2/default"
    assert kept["scope_gate"] == "skipped_model_mismatch"
    skipped = _route_step(node, "Who maintains PR-111?")
    assert "p_unsure" not in skipped and skipped["scope_skipped"]["reason"] == "model_mismatch"
    assert skipped["scope_skipped"]["heads_model"] == f"{MODEL}:1.1.0/default"
    assert _skipped(node) == 1

    # back to the bundle without heads: the lexical scorer and no scope gate, as at start
    _load(node, bundles.v1, "1.0.0")
    back = wait_for(lambda: (h := _heads(node))["model"] == f"{MODEL}:1.0.0/default" and h, 60, "v1's heads")
    assert back["scorer"] == "lexical" and not back["scope_head"] and back["digest"] == ""
    assert back["last_error"] is None and _swaps(node, "lexical") == 1
    assert back["scope_gate"] == "none"
    assert _graph_scorer(node, "Who operates PR-111?") == "LexicalHopScorer"


def _swap_held(
    node: EdgeNode, monkeypatch: pytest.MonkeyPatch, bundle: Path, version: str, questions: tuple[str, str]
) -> None:
    """Serve ``bundle`` with its heads' rebuild held: the first question is routed without the
    old heads' gate (skip counted, no error); once the heads land the gate applies again."""
    swapper = node.agent.heads_swapper
    assert swapper is not None
    old_model = node.agent.heads.model
    assert node.agent.heads.scope is not None and old_model is not None
    held = HeldRebuild(swapper)
    monkeypatch.setattr(swapper, "_load", held)
    served = f"{MODEL}:{version}/default"
    before = _skipped(node)
    try:
        _load(node, bundle, version)
        wait_for(held.entered.is_set, 60, "the held heads rebuild to start")
        window = _heads(node)
        assert window["rebuilding"] and window["served_model"] == served and window["model"] == old_model
        assert window["scope_gate"] == "skipped_model_mismatch"
        step = _route_step(node, questions[0])
        assert "p_unsure" not in step and not step.get("abstained", False)
        assert step["scope_skipped"] == {
            "reason": "model_mismatch",
            "heads_model": old_model,
            "model": served,
        }
        assert _skipped(node) == before + 1
    finally:
        held.release.set()
    landed = wait_for(lambda: (h := _heads(node))["model"] == served and h, 60, f"{version}'s heads")
    assert not landed["rebuilding"] and landed["scope_gate"] == "applied" and landed["scope_head"]
    step = _route_step(node, questions[1])
    assert 0.0 <= step["p_unsure"] <= 1.0 and "scope_skipped" not in step
    assert _skipped(node) == before + 1


def test_the_scope_gate_reads_only_its_own_models_embeddings(
    node: EdgeNode, heads_bundles: HeadsBundles, monkeypatch: pytest.MonkeyPatch
) -> None:
    wait_for(lambda: _heads(node)["served_model"], 60, "the start-up model in the status")
    _load(node, heads_bundles.update, "1.1.0")
    wait_for(lambda: _heads(node)["digest"] == heads_bundles.digest, 60, "the update's heads")
    assert _route_step(node, "Who maintains PR-111?")["p_unsure"] >= 0.0 and _skipped(node) == 0
    # (a) another model of the same embedding width: the window between the swap and its heads
    _swap_held(node, monkeypatch, heads_bundles.gated, "1.0.3", ("Who operates PR-111?", "Who owns CV-201?"))
    # (b) an encoder with another width (48-d embeddings, the gate in use reads 32-d): never raises
    assert node.agent.heads.scope.embed_dim == 32
    _swap_held(node, monkeypatch, heads_bundles.wide, "3.0.0", ("Where is PR-111?", "Who supplied PR-111?"))
    assert node.agent.heads.scope.embed_dim == 48
    assert _swaps(node, "failed") == 0 and _swaps(node, "stale") == 0


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


class _ModelEncoder:
    """Embeddings of a given width reported as a model's routing decision (so the agent consults
    its scope gate), labelled ``label``."""

    def __init__(self, width: int, label: str) -> None:
        self.width, self.label = width, label

    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Encoded]:
        emb = np.full(self.width, 1.0 / np.sqrt(self.width), dtype=np.float32)
        return [Encoded(emb, "chitchat", 0.9, {"chitchat": 0.9}, self.label, "model") for _ in texts]


def test_a_gate_of_unknown_origin_skips_an_embedding_of_another_width(
    tmp_path: Path, bundles: Bundles, heads_bundles: HeadsBundles
) -> None:
    """A gate set by hand (no model named) is applied to any model's embeddings of its width; one
    of another width is routed without it (``width_mismatch``), never an error."""
    gate = OnnxScopeHead.from_bundle(open_bundle(heads_bundles.update, parent=open_bundle(bundles.v1)))
    for width, applied in ((gate.embed_dim, True), (48, False)):
        agent = make_agent(tmp_path, f"w{width}", encoder=_ModelEncoder(width, "any:1/default"))
        agent.scope = gate
        route = next(s for s in ask(agent, "purple spreadsheet swims").steps if s["kind"] == "route")
        assert ("p_unsure" in route) is applied
        skipped = agent.metrics.registry.get_sample_value(
            "autoglm_edge_agent_scope_skipped_total", {"node": agent.node_id, "reason": "width_mismatch"}
        )
        assert (skipped or 0.0) == (0.0 if applied else 1.0)
        if not applied:
            assert route["scope_skipped"]["reason"] == "width_mismatch"
