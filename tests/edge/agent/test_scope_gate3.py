"""Scope gate /3 (``autoglm.scope_head/3``) on a really exported (tiny) bundle: its text features,
the selection protocol's candidates and rule, training + export + attach, the edge's
``OnnxScopeHead`` computing the same probability as the torch model from (embedding, text), and
/2 heads still loading beside it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cloud.data.paraphrase import train_items
from cloud.training.hop_scorer import (
    SCOPE_BASE,
    SCOPE_GATE3_SCHEMA,
    CachedEmbed,
    attach_to_bundle,
    bundle_embedder,
    encoder_vocabulary,
    export_scope_gate,
    export_scope_gate3,
    scope_candidates,
    select_scope_features,
    select_scope_rule,
    train_scope_gate,
    train_scope_gate3,
)
from contracts.bundle import open_bundle
from edge.agent.hop_scorer import OnnxScopeHead
from edge.agent.routing import KeywordRouter
from skillpack.kg.graph import default_graph
from skillpack.kg.linking import EntityLinker
from skillpack.kg.scope_features import TEXT_FEATURES, TextFeatures, Vocabulary

TEXTS = [
    "Who maintains PR-111?",
    "谁负责维护PR-111？",
    "asdkj qwpeo zmxn",
    "book me a flight to Mars",
    "what is 3 plus 4",
    "紫色的数学在游泳",
]
ALL = ("top1", "top5", "centroid", "keyword", "link", "code", "en_vocab", "cjk_vocab", "length")


def test_text_features_follow_their_definitions() -> None:
    vocab = Vocabulary.from_tokens(["who", "maintains", "the", "##s", "机", "[UNK]", "a1"])
    assert vocab.words == {"who", "maintains", "the"} and vocab.cjk == {"机"}
    assert Vocabulary.from_meta(vocab.to_meta()) == vocab
    feats = TextFeatures(TEXT_FEATURES, keyword=lambda t: 0.25, vocabulary=vocab)
    kw, link, code, en, cjk, length = feats("Who maintains PR-111 quickly? 机器")
    assert kw == pytest.approx(0.25) and link == 1.0 and code == 1.0
    assert en == pytest.approx(2 / 4)  # who, maintains of who / maintains / pr / quickly
    assert cjk == pytest.approx(1 / 2) and length == pytest.approx(math.log1p(6), rel=1e-6)
    kw, link, code, en, cjk, _ = feats("zz999 qqq")  # code-like but unknown to the graph; no CJK
    assert (link, code, en, cjk) == (0.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        TextFeatures(["nope"], vocabulary=vocab)


def test_candidates_and_the_written_rule() -> None:
    cands = scope_candidates()
    assert len(cands) == 33 and cands[0] == ("base", SCOPE_BASE, "logistic")
    assert cands[-1][2] == "mlp" and set(cands[-1][1]) == set(ALL)
    assert len({c[0] for c in cands}) == 33

    def row(score: float, n: int, false: float = 0.008, model: str = "logistic") -> dict[str, object]:
        return {
            "score": {"mean": score},
            "false_abstention": {"mean": false},
            "features": ["f"] * n,
            "model": model,
        }

    # the best, a cheaper one within 1 pt (wins), one over the false-abstention bound (ignored)
    table = {"big": row(0.90, 6), "small": row(0.893, 3), "tiny": row(0.85, 2), "bad": row(0.99, 2, 0.02)}
    assert select_scope_rule(table) == "small"
    assert select_scope_rule({"big": row(0.90, 6), "small": row(0.88, 3)}) == "big"
    assert select_scope_rule({"m": row(0.9, 4, model="mlp"), "l": row(0.9, 4)}) == "l"


@pytest.mark.parametrize("model", ["logistic", "mlp"])
def test_gate3_trains_exports_loads_with_parity_beside_a_gate2(
    tmp_path: Path,
    bundles,  # type: ignore[no-untyped-def]
    model: str,
) -> None:
    bundle_dir = Path(shutil.copytree(bundles.v1, tmp_path / "bundle"))
    embed = CachedEmbed(bundle_embedder(bundle_dir))
    items = train_items(seed=0, kg_per_pattern=2, route_per_template=1)
    keyword = KeywordRouter(EntityLinker(default_graph()))
    kw = lambda t: keyword.route(t)[1]  # noqa: E731
    vocab = encoder_vocabulary(bundle_dir)
    gate, threshold, metrics = train_scope_gate3(embed, kw, vocab, features=ALL, model=model, items=items)
    assert 0.5 <= threshold <= 0.999 and metrics["bank"] > 0 and metrics["features"] == list(ALL)
    assert gate.embedding_features == ["top1", "top5", "centroid"] and len(gate.text_features) == 6
    onnx_path, meta_path = export_scope_gate3(gate, threshold, vocab, tmp_path / "out", metrics)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    assert meta["schema"] == SCOPE_GATE3_SCHEMA and meta["text_features"] == list(TEXT_FEATURES)
    attach_to_bundle(bundle_dir, [(onnx_path, meta_path)])
    bundle = open_bundle(bundle_dir)
    assert bundle.manifest.graphs["scope_head"].signature.input_names() == [
        "question_embedding",
        "text_features",
    ]

    head = OnnxScopeHead.from_bundle(bundle_dir, keyword=kw)
    assert head.schema == SCOPE_GATE3_SCHEMA and head.threshold == pytest.approx(threshold)
    cloud_feats = TextFeatures(list(TEXT_FEATURES), keyword=kw, vocabulary=vocab)
    emb = np.asarray(embed(TEXTS), dtype=np.float32)
    with torch.no_grad():
        ref = torch.sigmoid(gate(torch.from_numpy(emb), torch.from_numpy(cloud_feats.many(TEXTS)))).numpy()
    got = np.array([head.p_unsure(e, t) for e, t in zip(emb, TEXTS, strict=True)])
    assert np.allclose(got, ref, atol=1e-4)
    # without a keyword callable the head builds the edge's keyword router itself: same numbers
    own = OnnxScopeHead(onnx_path, meta)
    assert np.allclose([own.p_unsure(e, t) for e, t in zip(emb, TEXTS, strict=True)], got, atol=1e-6)

    # a /2 gate still loads and scores from (embedding, text)
    g2, thr2, m2 = train_scope_gate(embed, kw, items=items)
    o2, j2 = export_scope_gate(g2, thr2, tmp_path / "gate2", m2)
    head2 = OnnxScopeHead(o2, json.loads(j2.read_text(encoding="utf-8")), keyword=kw)
    with torch.no_grad():
        ref2 = torch.sigmoid(g2(torch.from_numpy(emb[:1]), torch.tensor([kw(TEXTS[0])])))[0]
    assert head2.schema == "autoglm.scope_head/2"
    assert head2.p_unsure(emb[0], TEXTS[0]) == pytest.approx(float(ref2), abs=1e-4)


def test_selection_protocol_runs_on_training_families_only(bundles) -> None:  # type: ignore[no-untyped-def]
    embed = CachedEmbed(bundle_embedder(bundles.v1))
    items = train_items(seed=0, kg_per_pattern=2, route_per_template=1)
    assert {it.split for it in items} == {"train"}
    keyword = KeywordRouter(EntityLinker(default_graph()))
    cands = [c for c in scope_candidates() if c[0] in ("base", "base+L", "base+T5+C+L+V+N+mlp")]
    out = select_scope_features(
        embed,
        lambda t: keyword.route(t)[1],
        encoder_vocabulary(bundles.v1),
        items=items,
        seeds=(0,),
        splits=2,
        candidates=cands,
    )
    assert set(out["candidates"]) == {c[0] for c in cands} and out["selected"] in out["candidates"]
    for row in out["candidates"].values():
        assert row["runs"] == 2 and 0.0 <= row["score"]["mean"] <= 1.0
        assert row["false_abstention"]["mean"] <= 0.05


def test_gate3_classifier_is_fit_on_out_of_fold_bank_features(
    bundles,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No in-scope training request sees itself in the bank the classifier's features come from
    (with the full bank every one has top1 = 1, a gap no new request has: the first frozen run's
    bug, 27.7 % false abstention)."""
    import cloud.training.hop_scorer as hs

    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_fit = hs.fit_scope_classifier

    def spy(x: np.ndarray, y: np.ndarray, model: str, seed: int = 0) -> hs.ScopeClassifier:
        seen.append((np.asarray(x).copy(), np.asarray(y).copy()))
        return real_fit(x, y, model, seed)

    monkeypatch.setattr(hs, "fit_scope_classifier", spy)
    embed = CachedEmbed(bundle_embedder(bundles.v1))
    items = train_items(seed=0, kg_per_pattern=2, route_per_template=1)
    keyword = KeywordRouter(EntityLinker(default_graph()))
    vocab = encoder_vocabulary(bundles.v1)
    hs.train_scope_gate3(
        embed, lambda t: keyword.route(t)[1], vocab, features=("top1", "keyword"), items=items
    )
    final_x, final_y = seen[-1]
    assert len(final_y) == len(items) + len(hs.noise_items(0))
    assert float((final_x[final_y == 0, 0] > 0.9999).mean()) < 0.5
