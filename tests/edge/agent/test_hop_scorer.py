"""The learned heads end to end on a really exported (tiny) bundle: train the hop scorer and the
scope head on the training families with the bundle's own ONNX encoder, export them to ONNX,
attach them to the bundle (manifest hashes verified on open), load them on the edge with ONNX
Runtime (parity with torch), and let the path search and the agent use them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cloud.data.paraphrase import train_items
from cloud.training.hop_scorer import (
    CachedEmbed,
    attach_to_bundle,
    bundle_embedder,
    export_hop_scorer,
    export_scope_head,
    train_hop_scorer,
    train_scope_head,
)
from contracts.bundle import open_bundle
from edge.agent.hop_scorer import OnnxHopScorer, OnnxScopeHead
from edge.agent.routing import Encoded, KeywordRouter
from skillpack.kg.graph import default_graph
from skillpack.kg.hop_features import RELATION_NAMES, STOP_INDEX, char_grams
from skillpack.kg.linking import EntityLinker
from skillpack.kg.reasoner import STOP, HopState, PathReasoner

from .helpers import ask, make_agent, step


class BundleRouteEncoder:
    """The bundle's real ONNX encoder for the embedding; the keyword rules for the route,
    reported as a model decision so the agent consults the scope head (the tiny bundle's
    router head is random)."""

    def __init__(self, bundle_dir: Path) -> None:
        self.embed = bundle_embedder(bundle_dir)
        self.router = KeywordRouter(EntityLinker(default_graph()))

    async def encode(self, texts: list[str], *, priority: int = 0) -> list[Encoded]:
        emb = self.embed(texts)
        out = []
        for t, e in zip(texts, emb, strict=True):
            route, p = self.router.route(t)
            out.append(Encoded(e, route, max(p, 0.9), {route: max(p, 0.9)}, "tiny", "model"))
        return out


def test_train_export_attach_and_use(tmp_path: Path, bundles) -> None:  # type: ignore[no-untyped-def]
    bundle_dir = Path(shutil.copytree(bundles.v1, tmp_path / "bundle"))
    embed = CachedEmbed(bundle_embedder(bundle_dir))
    items = train_items(seed=0, kg_per_pattern=4, route_per_template=2)
    model, metrics = train_hop_scorer(
        embed, items=items, epochs=30, fusion=True, adaptive=True, answer_type=True
    )
    assert metrics["train_states"] > metrics["train_questions"] > 0
    assert metrics["fusion"] and metrics["adaptive"]
    assert (
        metrics["train_state_accuracy"] > 0.8
    )  # the character granularity separates the states of the tiny model
    scope, threshold, scope_metrics = train_scope_head(embed, items=items, epochs=10)
    assert 0.5 <= threshold < 1.0 and scope_metrics["unsure_items"] > 0
    heads = [
        export_hop_scorer(model, tmp_path / "out", metrics),
        export_scope_head(scope, threshold, tmp_path / "out"),
    ]
    attach_to_bundle(bundle_dir, heads)
    bundle = open_bundle(bundle_dir)  # verifies every listed file's sha256
    assert {"hop_scorer", "scope_head"} <= set(bundle.manifest.graphs)
    names = bundle.manifest.graphs["hop_scorer"].signature.input_names()
    assert "char_grams" in names and "cue_scores" not in names  # no cue words in the learned scorer

    # ONNX Runtime on the edge computes what torch computed
    scorer = OnnxHopScorer.from_bundle(bundle_dir)
    q = "Who maintains machine?"
    e = torch.from_numpy(np.asarray(embed([q]), dtype=np.float32))
    c = torch.from_numpy(char_grams(q)[None, :])
    with torch.no_grad():
        ref = model(e, c, torch.tensor([0]), torch.tensor([STOP_INDEX]), torch.tensor([2]))[0].numpy()
    got = scorer.session.run(
        ["relation_logits"],
        {
            "question_embedding": e.numpy(),
            "char_grams": c.numpy(),
            "hop": np.array([0]),
            "prev_relation": np.array([STOP_INDEX]),
            "entity_type": np.array([2]),
        },
    )[0][0]
    assert np.allclose(ref, got, atol=1e-4)
    gate = OnnxScopeHead.from_bundle(bundle_dir)
    with torch.no_grad():
        p_ref = float(torch.sigmoid(scope(e, c))[0])
    assert abs(gate.p_unsure(e.numpy()[0], q) - p_ref) < 1e-4 and gate.threshold == threshold

    start = HopState("Who maintains PR-111?", (14, 20), "machine", "machine", ())
    cands = sorted(default_graph().relations_from("machine:PR-111"))
    p0 = scorer(start, cands)
    assert p0.shape == (len(cands) + 1,) and abs(p0.sum() - 1) < 1e-6 and p0[-1] < 1e-6  # no STOP at hop 0
    p1 = scorer(
        HopState("Who maintains PR-111?", (14, 20), "machine", "person", ("maintained_by",)), ["has_role"]
    )
    assert abs(p1.sum() - 1) < 1e-6

    g = default_graph()
    ans = PathReasoner(g, scorer=scorer).answer(
        "Who is the supervisor of the technician who maintains PR-111?", use_cache=False
    )
    assert ans.path and set(RELATION_NAMES) >= set(ans.path) and 0 < ans.path_probability <= 1
    assert g.follow("machine:PR-111", ans.path) == ans.answers
    assert all(STOP in s.candidates and np.isclose(sum(s.candidates.values()), 1.0) for s in ans.steps)

    # the agent picks the bundle's heads up ("auto") and records which scorer decided
    agent = make_agent(tmp_path, bundle_dir=bundle_dir)
    r = ask(agent, "Who is the supervisor of the technician who maintains PR-111?")
    assert step(r, "kg_answer")["scorer"] == "OnnxHopScorer"
    lexical = make_agent(tmp_path, "lex", bundle_dir=bundle_dir, agent_kg_scorer="lexical")
    assert type(lexical.reasoner.scorer).__name__ == "LexicalHopScorer"


def test_scope_head_abstains_and_the_hard_example_records_it(tmp_path: Path, bundles) -> None:  # type: ignore[no-untyped-def]
    bundle_dir = Path(shutil.copytree(bundles.v1, tmp_path / "bundle"))
    embed = CachedEmbed(bundle_embedder(bundle_dir))
    scope, _, _ = train_scope_head(
        embed, items=train_items(seed=0, kg_per_pattern=2, route_per_template=1), epochs=5
    )
    onnx_path, meta_path = export_scope_head(scope, 0.5, tmp_path / "out")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    queued: list[dict[str, object]] = []

    def agent_with(threshold: float, name: str):  # type: ignore[no-untyped-def]
        gate = OnnxScopeHead(onnx_path, {**meta, "threshold": threshold})
        agent = make_agent(
            tmp_path, name, encoder=BundleRouteEncoder(bundle_dir), hard_examples=queued.append
        )
        agent.scope = gate
        return agent

    # threshold 0: every request is above it — the router abstains, the example is queued with
    # the abstention, and with the cloud out of reach the answer says it is unsure (not a tool answer)
    always = agent_with(0.0, "always")
    r = ask(always, "purple spreadsheet swims loudly")
    assert (
        always.metrics.registry.get_sample_value("autoglm_edge_agent_abstentions_total", {"node": "always"})
        == 1
    )
    route = step(r, "route")
    assert route["abstained"] and route["hard_example"] and 0.0 <= route["p_unsure"] <= 1.0
    assert (
        queued and queued[-1]["abstained"] is True and abs(queued[-1]["p_unsure"] - route["p_unsure"]) < 1e-3
    )  # type: ignore[operator]
    assert r.source.value == "offline" and r.data.get("unsure") is True
    # threshold above every probability: no abstention, the confident route answers locally
    n = len(queued)
    r = ask(agent_with(1.01, "never"), "what is 3 plus 4")
    assert not step(r, "route")["abstained"] and r.source.value == "local_tool" and len(queued) == n


def test_path_scorer_and_scope_gate_end_to_end(tmp_path: Path, bundles) -> None:  # type: ignore[no-untyped-def]
    from cloud.training.hop_scorer import (
        export_path_scorer,
        export_scope_gate,
        train_path_scorer,
        train_scope_gate,
        window_tensors,
    )
    from edge.agent.hop_scorer import OnnxPathScorer, learned_scorer_from_bundle
    from skillpack.kg.hop_features import all_schema_paths, question_windows

    bundle_dir = Path(shutil.copytree(bundles.v1, tmp_path / "bundle"))
    embed = CachedEmbed(bundle_embedder(bundle_dir))
    items = train_items(seed=0, kg_per_pattern=4, route_per_template=2)
    model, metrics = train_path_scorer(embed, items=items, epochs=20, phrases=True)
    assert metrics["train_questions"] > 0 and metrics["phrases"]
    keyword = KeywordRouter(EntityLinker(default_graph()))
    gate_model, threshold, gmetrics = train_scope_gate(embed, lambda t: keyword.route(t)[1], items=items)
    assert 0.5 <= threshold < 1.0 and gmetrics["bank"] > 0
    heads = [
        export_path_scorer(model, tmp_path / "out", metrics, length_bias=1.0),
        export_scope_gate(gate_model, threshold, tmp_path / "out", gmetrics),
    ]
    attach_to_bundle(bundle_dir, heads)
    bundle = open_bundle(bundle_dir)
    assert "window_embeddings" in bundle.manifest.graphs["hop_scorer"].signature.input_names()

    scorer = learned_scorer_from_bundle(bundle_dir)
    assert isinstance(scorer, OnnxPathScorer) and scorer.length_bias == 1.0
    # ONNX Runtime computes what torch computed
    q = "Who is the boss of the person who maintains machine?"
    e = torch.from_numpy(np.asarray(embed([q]), dtype=np.float32))
    win, wmask = window_tensors([q], embed)
    with torch.no_grad():
        ref = model(e, torch.tensor([2]), win, wmask)[0].numpy()
    got = scorer.logits(q, "machine")
    assert np.allclose(ref, got, atol=1e-3)
    assert len(question_windows(q)) >= 2
    # per-hop probabilities are the path distribution's marginals: they sum to 1, and STOP at
    # hop 0 (the empty path, "describe") is a real candidate
    cands = sorted(default_graph().relations_from("machine:PR-111"))
    p0 = scorer(HopState("Who maintains PR-111?", (14, 20), "machine", "machine", ()), cands)
    assert p0.shape == (len(cands) + 1,) and abs(p0.sum() - 1) < 1e-6 and p0[-1] > 0
    probs = scorer.path_probabilities("Who maintains machine?", "machine")
    assert (
        set(probs) == {p for t, p in all_schema_paths() if t == "machine"}
        and abs(sum(probs.values()) - 1) < 1e-6
    )
    g = default_graph()
    ans = PathReasoner(g, scorer=scorer).answer(
        "Who is the supervisor of the technician who maintains PR-111?", use_cache=False
    )
    assert g.follow("machine:PR-111", ans.path) == ans.answers and 0 < ans.path_probability <= 1

    # the agent takes both from the bundle; the gate reads the keyword router's confidence
    agent = make_agent(tmp_path, bundle_dir=bundle_dir)
    assert type(agent.reasoner.scorer).__name__ == "OnnxPathScorer" and agent.scope is not None
    e0 = np.asarray(embed(["asdkj qwpeo zmxn"]), dtype=np.float32)[0]
    with torch.no_grad():
        p_ref = float(
            torch.sigmoid(
                gate_model(
                    torch.from_numpy(e0[None, :]), torch.tensor([keyword.route("asdkj qwpeo zmxn")[1]])
                )
            )[0]
        )
    assert abs(agent.scope.p_unsure(e0, "asdkj qwpeo zmxn") - p_ref) < 1e-4


def test_a_bundle_whose_head_metadata_is_missing_falls_back_to_the_lexical_scorer(
    tmp_path: Path, bundles
) -> None:  # type: ignore[no-untyped-def]
    import pytest
    import yaml

    from contracts.errors import BundleError
    from contracts.manifest import MANIFEST_FILE

    # an adapter-only update lists its parent's graphs (from_parent) but not the heads' JSON files
    bundle_dir = Path(shutil.copytree(bundles.v1, tmp_path / "bundle"))
    embed = CachedEmbed(bundle_embedder(bundle_dir))
    model, metrics = train_hop_scorer(
        embed, items=train_items(seed=0, kg_per_pattern=1, route_per_template=1), epochs=1
    )
    attach_to_bundle(bundle_dir, [export_hop_scorer(model, tmp_path / "out", metrics)])
    doc = yaml.safe_load((bundle_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    del doc["files"]["hop_scorer.json"]
    (bundle_dir / MANIFEST_FILE).write_text(
        yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    (bundle_dir / "hop_scorer.json").unlink()
    agent = make_agent(tmp_path, bundle_dir=bundle_dir)  # auto: falls back, says so in the log
    assert type(agent.reasoner.scorer).__name__ == "LexicalHopScorer"
    with pytest.raises(BundleError):
        make_agent(tmp_path, "strict", bundle_dir=bundle_dir, agent_kg_scorer="learned")


@pytest.mark.parametrize("mode", ["gated", "cjk"])
def test_path_scorer_with_character_granularity(tmp_path: Path, bundles, mode: str) -> None:  # type: ignore[no-untyped-def]
    """``chars``: the graph reads the hashed characters of the masked question as a third input;
    the manifest signature lists it, the edge computes it as the trainer did (``cjk``: Chinese
    characters only), ONNX Runtime matches torch, and the characters do change the logits (a
    Chinese question whose characters the encoder hashes)."""
    from cloud.training.hop_scorer import export_path_scorer, train_path_scorer
    from edge.agent.hop_scorer import OnnxPathScorer, learned_scorer_from_bundle
    from skillpack.kg.hop_features import CHAR_DIM

    bundle_dir = Path(shutil.copytree(bundles.v1, tmp_path / "bundle"))
    embed = CachedEmbed(bundle_embedder(bundle_dir))
    items = train_items(seed=0, kg_per_pattern=4, route_per_template=2)
    model, metrics = train_path_scorer(embed, items=items, epochs=10, phrases=False, chars=mode)
    assert metrics["chars"] == mode and model.char_dim == CHAR_DIM
    attach_to_bundle(bundle_dir, [export_path_scorer(model, tmp_path / "out", metrics)])
    names = open_bundle(bundle_dir).manifest.graphs["hop_scorer"].signature.input_names()
    assert names == ["question_embedding", "start_type", "char_grams"]
    scorer = learned_scorer_from_bundle(bundle_dir)
    assert isinstance(scorer, OnnxPathScorer) and scorer.char_dim == CHAR_DIM
    assert scorer.char_words == (mode == "gated")
    q = "谁负责保养machine？"
    e = torch.from_numpy(np.asarray(embed([q]), dtype=np.float32))
    c = torch.from_numpy(char_grams(q, words=mode == "gated")[None])
    with torch.no_grad():
        ref = model(e, torch.tensor([2]), char_grams=c)[0].numpy()
        other = model(e, torch.tensor([2]), char_grams=torch.zeros_like(c))[0].numpy()
    assert np.allclose(ref, scorer.logits(q, "machine"), atol=1e-3)
    assert not np.allclose(ref, other, atol=1e-3)
    with pytest.raises(ValueError, match="char_grams"):
        model(e, torch.tensor([2]))
