"""The learned hop scorer end to end on a really exported (tiny) bundle: train the head on the
train-split questions with the bundle's own ONNX encoder, export it to ONNX, attach it to the
bundle as graph role ``hop_scorer`` (manifest hashes verified on open), load it on the edge and
let the path search use it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from cloud.training.hop_scorer import attach_to_bundle, bundle_embedder, export_hop_scorer, train_hop_scorer
from contracts.bundle import open_bundle
from edge.agent.hop_scorer import OnnxHopScorer
from skillpack.kg.graph import default_graph
from skillpack.kg.hop_features import RELATION_NAMES
from skillpack.kg.reasoner import STOP, HopState, PathReasoner


def test_train_export_attach_and_use(tmp_path: Path, bundles) -> None:  # type: ignore[no-untyped-def]
    bundle_dir = Path(shutil.copytree(bundles.v1, tmp_path / "bundle"))
    embed = bundle_embedder(bundle_dir)
    model, metrics = train_hop_scorer(embed, per_pattern=3, epochs=40)
    assert metrics["train_states"] > metrics["train_questions"] > 0
    assert metrics["train_state_accuracy"] > 0.9  # the cue features make the states separable
    onnx_path, meta_path = export_hop_scorer(model, tmp_path / "out", metrics)
    attach_to_bundle(bundle_dir, onnx_path, meta_path)
    bundle = open_bundle(bundle_dir)  # verifies every listed file's sha256
    assert "hop_scorer" in bundle.manifest.graphs
    assert bundle.manifest.graphs["hop_scorer"].signature.input_names()[-1] == "cue_scores"

    scorer = OnnxHopScorer.from_bundle(bundle_dir)
    start = HopState("Who maintains PR-111?", (14, 20), "machine", "machine", ())
    cands = sorted(default_graph().relations_from("machine:PR-111"))
    p0 = scorer(start, cands)
    assert p0.shape == (len(cands) + 1,) and abs(p0.sum() - 1) < 1e-6 and p0[-1] < 1e-6  # no STOP at hop 0
    p1 = scorer(HopState("Who maintains PR-111?", (14, 20), "machine", "person", ("maintained_by",)), ["has_role"])
    assert abs(p1.sum() - 1) < 1e-6

    g = default_graph()
    reasoner = PathReasoner(g, scorer=scorer)
    ans = reasoner.answer("Who is the supervisor of the technician who maintains PR-111?", use_cache=False)
    tech = g.neighbors("machine:PR-111", "maintained_by")[0]
    assert ans.answers == g.neighbors(tech, "supervised_by")
    assert all(STOP in s.candidates and np.isclose(sum(s.candidates.values()), 1.0) for s in ans.steps)
    assert scorer.calls >= 3 and set(RELATION_NAMES) >= set(ans.path)

    # the agent picks the bundle's head up ("auto") and records which scorer decided
    from edge.agent.factory import build_agent
    from edge.agent.settings import AgentSettings

    from .helpers import ask, step

    agent = build_agent(AgentSettings(agent_memory_db=tmp_path / "m.sqlite3"), bundle_dir=bundle_dir)
    r = ask(agent, "Who is the supervisor of the technician who maintains PR-111?")
    assert step(r, "kg_answer")["scorer"] == "OnnxHopScorer" and r.data["answers"] == ans.answers
    lexical = build_agent(AgentSettings(agent_memory_db=tmp_path / "m2.sqlite3", agent_kg_scorer="lexical"),
                          bundle_dir=bundle_dir)
    assert type(lexical.reasoner.scorer).__name__ == "LexicalHopScorer"
