"""The learning loop keeps the learned graph heads: when the production bundle carries them, the
job's new version (an adapter update: new adapters shift the embeddings the heads read) ships
heads of its own, trained on the parent's graph with the new adapters, covered by the update's
manifest; the edge's learned scorer loads from the materialised version. The job reads the fleet's
path feedback sums at its start from the sync hub's database (filled by a node over a real
Mosquitto, the normal ingestion path) and trains the path scorer with them: the version's
lineage records how many there were, their digest and how many training questions they moved."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.data.paraphrase import train_items
from cloud.sync.hub import CloudSync
from cloud.training.hop_scorer import (
    CachedEmbed,
    attach_to_bundle,
    bundle_embedder,
    export_path_scorer,
    export_scope_head,
    train_path_scorer,
    train_scope_head,
)
from cloud.training.path_priors import priors_digest
from contracts.bundle import open_bundle
from contracts.loop import JobOutcome, JobState
from contracts.manifest import MANIFEST_FILE, Manifest
from edge.agent.hop_scorer import learned_scorer_from_bundle
from edge.sync.agent import EdgeSync
from skillpack.kg.graph import default_graph
from skillpack.kg.reasoner import PathReasoner
from tests.cloud.loop.conftest import MODEL, World
from tests.cloud.loop.test_pipeline import label_all_wrong
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import make_cloud, make_edge, mosquitto_broker, wait_until  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def _small_path_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the wiring, not the scorer's accuracy: the jobs' path scorer trains on
    one question per pattern (as ``train_items`` is patched below), 60 epochs, instead of the
    shipped 192 x 150, which benchmarks/reasoning_families.py measures."""
    monkeypatch.setenv("AUTOGLM_EXPORT_GRAPH_HEADS_PATH_QUESTIONS", "1")
    monkeypatch.setenv("AUTOGLM_EXPORT_GRAPH_HEADS_PATH_EPOCHS", "60")


def _production_with_heads(world: World) -> Path:
    """1.0.1 = the tiny 1.0.0 bundle + graph heads, made the stable version."""
    src = Path(shutil.copytree(world.model.bundle, world.tmp / "prod"))
    man = Manifest.from_yaml((src / MANIFEST_FILE).read_bytes())
    (src / MANIFEST_FILE).write_text(man.model_copy(update={"version": "1.0.1"}).to_yaml(), encoding="utf-8")
    # small heads (a few items, one epoch): production only has to carry them; the job trains its
    # own with the shipped trainer
    embed = CachedEmbed(bundle_embedder(src))
    items = train_items(seed=0, kg_per_pattern=1, route_per_template=1)
    path, metrics = train_path_scorer(embed, items=items, epochs=1, describe=False, phrases=False)
    scope, threshold, _ = train_scope_head(embed, items=items, epochs=1)
    attach_to_bundle(src, [export_path_scorer(path, src, metrics), export_scope_head(scope, threshold, src)])
    world.svc.registry.register_dir(src, actor="t")
    world.svc.registry.set_alias(MODEL, "stable", "1.0.1", actor="t", reason="heads")
    for nid in world.sim.versions:
        world.sim.versions[nid] = "1.0.1"
    world.sim.heartbeats(sorted(world.sim.versions))
    return src


def _fleet_feedback(
    world: World,
    broker: MosquittoBroker,
    new_cloud: Callable[..., CloudSync],
    new_edge: Callable[..., EdgeSync],
    monkeypatch: pytest.MonkeyPatch,
) -> CloudSync:
    """The cloud's sync hub (its database where the worker looks: ``sync_db_path``) and a node
    whose shared feedback confirmed machine→maintained_by 30 times and rejected
    machine→operated_by 30 times; returns the hub once it holds both fleet sums."""
    db = world.tmp / "hub-sync.sqlite3"
    monkeypatch.setenv("AUTOGLM_CLOUD_SYNC_DB_PATH", str(db))
    hub = new_cloud(broker, sync_db_path=db).start()
    node = new_edge(broker, "node-a").start()
    assert hub.wait_connected(30) and node.wait_connected(30) and node.store is not None
    _, good = node.store.add_path_prior("machine", ("maintained_by",), confirmed=30, rejected=0, shared=True)
    _, bad = node.store.add_path_prior("machine", ("operated_by",), confirmed=0, rejected=30, shared=True)
    assert good is not None and bad is not None
    node.publish_path_priors([good, bad])
    wait_until(lambda: len(hub.repo.fleet_priors()) == 2, 30, "the fleet sums in the hub's store")
    return hub


def test_a_production_bundle_with_heads_gives_a_version_with_new_heads(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    mosquitto_broker: MosquittoBroker,  # noqa: F811  (the fixture imported above)
    make_cloud: Callable[..., CloudSync],  # noqa: F811
    make_edge: Callable[..., EdgeSync],  # noqa: F811
) -> None:
    # the job runs the shipped trainer on fewer training questions (one per pattern / template):
    # the full set is what `autoglm export --graph-heads` tests; here the wiring is the point
    small = functools.partial(train_items, kg_per_pattern=1, route_per_template=1)
    monkeypatch.setattr("cloud.training.hop_scorer.train_items", small)
    hub = _fleet_feedback(world, mosquitto_broker, make_cloud, make_edge, monkeypatch)
    prod = _production_with_heads(world)
    worker = world.worker()
    label_all_wrong(world, worker)
    job, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    out = world.run_job(worker, job.id)
    assert out.state is JobState.SUCCEEDED and out.outcome is JobOutcome.PROMOTED, (out.error, out.logs)
    heads = out.metrics["guard"]["graph_heads"]  # recorded beside the guard report
    assert heads["roles"] == ["hop_scorer", "scope_head"] and heads["seconds"] > 0

    v = world.svc.registry.get_version(MODEL, out.version or "")
    # the fleet's feedback reached this training run, and the lineage says so
    fleet = v.lineage["fleet_priors"]
    assert fleet["paths"] == 2 and fleet["digest"] == priors_digest(hub.repo.fleet_priors())
    assert (fleet["confirmed"], fleet["rejected"]) == (30, 30)
    assert fleet["confirmed_paths"] == 1 and fleet["weighted_questions"] >= 1
    assert fleet["rejected_paths"] == 1 and fleet["margin_questions"] >= 1
    assert heads["hop_scorer"]["fleet_priors"] == fleet
    assert any(fleet["digest"] in line for line in out.logs), out.logs
    assert v.kind == "adapter_update" and v.parent == f"{MODEL}@1.0.1"
    dest = world.tmp / "materialised"
    for f in v.files:
        (dest / f.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world.svc.store.open_path(f.sha256), dest / f.path)
    bundle = open_bundle(dest, parent=prod)  # verifies the update's file table, heads included
    m, pm = bundle.manifest, open_bundle(prod).manifest
    for role in ("hop_scorer", "scope_head"):
        assert not m.graphs[role].from_parent and m.graphs[role].file in m.files
        assert m.graphs[role].sha256 != pm.graphs[role].sha256  # trained on the new embeddings
    assert m.graphs["encoder"].from_parent

    # the edge's scorer loads from the update (its embeddings: the parent's graph + the update's
    # adapters, what the edge computes for this version)
    scorer = learned_scorer_from_bundle(dest, embed=bundle_embedder(dest, parent=prod))
    assert type(scorer).__name__ == "OnnxPathScorer"
    g = default_graph()
    ans = PathReasoner(g, scorer=scorer).answer("Who maintains PR-111?", use_cache=False)
    assert ans.path and g.follow("machine:PR-111", ans.path) == ans.answers


def test_with_loop_graph_heads_off_the_update_lists_the_parents_heads(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOGLM_CLOUD_LOOP_GRAPH_HEADS", "false")
    prod = _production_with_heads(world)
    worker = world.worker()
    label_all_wrong(world, worker)
    job, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    out = world.run_job(worker, job.id)
    assert out.state is JobState.SUCCEEDED, (out.error, out.logs)
    assert "graph_heads" not in out.metrics["guard"]
    v = world.svc.registry.get_version(MODEL, out.version or "")
    assert "hop_scorer.json" not in {f.path for f in v.files}  # the parent's heads, by reference only
    assert open_bundle(prod).manifest.graphs["hop_scorer"].sha256 in {f.sha256 for f in v.files}
