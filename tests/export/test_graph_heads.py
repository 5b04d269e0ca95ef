"""`autoglm export --graph-heads` through the real CLI: the learned graph heads (path scorer +
scope gate) are trained on the freshly exported encoder and attached before signing, so the
signed bundle verifies with the heads in its file table; the edge agent loads the learned
scorer from it; a failing trainer stops the export with one line and leaves no bundle; with
``--fleet-priors-db`` the path scorer trains with the fleet's path feedback sums."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoglm.cli import app
from contracts.bundle import open_bundle
from export.errors import ExportError
from export.pipeline import export_checkpoint

runner = CliRunner()


@pytest.fixture(autouse=True)
def _small_path_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the wiring, not the scorer's accuracy: the path scorer trains at the
    size it shipped with before re-split 3 (24 questions per pattern, 60 epochs) instead of the
    shipped 192 x 150, which benchmarks/reasoning_families.py measures."""
    monkeypatch.setenv("AUTOGLM_EXPORT_GRAPH_HEADS_PATH_QUESTIONS", "24")
    monkeypatch.setenv("AUTOGLM_EXPORT_GRAPH_HEADS_PATH_EPOCHS", "60")


def _run(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    return result.exit_code, " ".join(result.output.split())


def test_export_with_graph_heads_is_signed_over_the_heads_and_loads_on_the_edge(
    tmp_path: Path, tiny_ckpt: Path
) -> None:
    from tests.edge.agent.helpers import ask, make_agent, step

    code, out = _run("bundle", "keygen", "--out", tmp_path / "keys")
    assert code == 0, out
    key, pub = tmp_path / "keys/bundle_signing.key", tmp_path / "keys/bundle_signing.pub"
    code, out = _run(
        "export", tiny_ckpt, "--out", tmp_path / "b", "--sign-key", key, "--graph-heads", "--seed", "3", "-q"
    )
    assert code == 0, out
    assert "graph heads (hop_scorer, scope_head; seed 3" in out and "false abstention" in out
    code, out = _run("bundle", "verify", tmp_path / "b", "--public-key", pub)
    assert code == 0, out
    bundle = open_bundle(tmp_path / "b", pub.read_bytes(), verify=True)
    assert bundle.signature_verified and bundle.files_verified
    m = bundle.manifest
    assert {"hop_scorer", "scope_head"} <= set(m.graphs)
    assert {"hop_scorer.onnx", "hop_scorer.json", "scope_head.onnx", "scope_head.json"} <= set(m.files)
    assert not m.graphs["hop_scorer"].from_parent
    heads = m.metrics.export["graph_heads"]
    assert heads["seed"] == 3 and heads["roles"] == ["hop_scorer", "scope_head"] and heads["seconds"] > 0
    assert 0 <= heads["scope_head"]["oof_false_abstention"] <= 1

    # the edge agent takes the learned scorer and the gate from the signed bundle
    agent = make_agent(tmp_path, bundle_dir=tmp_path / "b", agent_kg_scorer="learned", agent_cloud_retries=0)
    assert type(agent.reasoner.scorer).__name__ == "OnnxPathScorer" and agent.scope is not None
    r = ask(agent, "Who is the supervisor of the technician who maintains PR-111?")
    assert step(r, "kg_answer")["scorer"] == "OnnxPathScorer"


def test_a_failing_head_trainer_stops_the_export(tmp_path: Path, tiny_ckpt: Path) -> None:
    def broken(bundle_dir: Path, parent: Path | None) -> dict[str, object]:
        raise RuntimeError("no training data")

    with pytest.raises(ExportError, match=r"^graph heads: training failed: RuntimeError: no training data$"):
        export_checkpoint(tiny_ckpt, tmp_path / "b", graph_heads=broken)
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.partial").exists()


def test_graph_heads_time_limit(tmp_path: Path, tiny_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_EXPORT_GRAPH_HEADS_MAX_S", "0.001")
    code, out = _run("export", tiny_ckpt, "--out", tmp_path / "b", "--graph-heads", "-q")
    assert code == 2 and "graph heads: training failed: HeadTrainingTimeout" in out, out
    assert "past its limit" in out and not (tmp_path / "b").exists()


def test_export_reads_the_fleets_path_priors_from_the_hub_database(
    tmp_path: Path, tiny_ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--fleet-priors-db``: the path scorer trains with the fleet sums stored in the sync hub's
    file (written through its repository, as the hub does); the manifest records their count and
    digest. Fewer training questions (one per pattern): the wiring is the point."""
    import functools

    from cloud.data.paraphrase import train_items
    from cloud.sync.repository import SyncRepository
    from cloud.training.path_priors import priors_digest
    from contracts.envelope import ContentType
    from contracts.hlc import HybridClock
    from contracts.memory import PathPriorRecord

    monkeypatch.setattr(
        "cloud.training.hop_scorer.train_items",
        functools.partial(train_items, kg_per_pattern=1, route_per_template=1),
    )
    monkeypatch.setenv("AUTOGLM_EXPORT_GRAPH_HEADS_PATH_QUESTIONS", "1")
    db = tmp_path / "sync.sqlite3"
    code, out = _run("export", tiny_ckpt, "--out", tmp_path / "x", "--graph-heads", "--fleet-priors-db", db)
    assert code == 2 and "no sync hub database" in out and not db.exists(), out
    code, out = _run("export", tiny_ckpt, "--out", tmp_path / "x", "--fleet-priors-db", db)
    assert code == 2 and "--fleet-priors-db needs --graph-heads" in out, out

    repo = SyncRepository(db)
    clock = HybridClock("node-a")
    records = [
        PathPriorRecord(
            node="node-a",
            start_type="machine",
            relations=path,
            confirmed=c,
            rejected=r,
            updated=clock.now().pack(),
        )
        for path, c, r in ((("maintained_by",), 12, 0), (("operated_by",), 0, 7))
    ]
    repo.apply_message(node_id="node-a", seq=1, msg_id="m1", kind=ContentType.PATH_PRIOR, records=records)
    digest = priors_digest(repo.fleet_priors())
    repo.close()

    code, out = _run("export", tiny_ckpt, "--out", tmp_path / "b", "--graph-heads", "--fleet-priors-db", db)
    assert code == 0, out
    assert f"fleet path priors: 2 paths read (digest {digest})" in out
    fleet = open_bundle(tmp_path / "b").manifest.metrics.export["graph_heads"]["hop_scorer"]["fleet_priors"]
    assert fleet["digest"] == digest and fleet["weighted_questions"] >= 1 and fleet["margin_questions"] >= 1

    # the training module's own CLI reads the same file (its /1 scope head: one epoch here)
    from cloud.training.hop_scorer import main, train_scope_head

    monkeypatch.setattr(
        "cloud.training.hop_scorer.train_scope_head", functools.partial(train_scope_head, epochs=1)
    )
    # the module's CLI trains at the shipped size (no export settings): the same small size here
    monkeypatch.setattr("cloud.training.hop_scorer.PATH_TRAIN_PER_PATTERN", 1)
    monkeypatch.setattr("cloud.training.hop_scorer.PATH_TRAIN_EPOCHS", 60)

    assert (
        main(
            ["--bundle", str(tmp_path / "b"), "--out", str(tmp_path / "heads"), "--fleet-priors-db", str(db)]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["hop_scorer"]["fleet_priors"] == fleet
