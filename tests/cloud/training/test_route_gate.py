"""cloud.training.route_gate: the threshold claims at most the calibrated share, each gate kind
claims a new cluster and not the replay, a gate survives its checkpoint round trip, the bias of a
grown output is lowered to the same rate, and ``train_new_route(method="gate")`` writes a
checkpoint one route longer that routes every request exactly as its parent (on a tiny encoder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.nn import functional as F

from cloud.data import Example
from cloud.data.generator import examples_for_template
from cloud.data.new_route import NEW_ROUTE, support_set
from cloud.loop.finetune import finetune
from cloud.loop.settings import LoopSettings
from cloud.model.checkpoint import CheckpointError, checkpoint_tokenizer, load_checkpoint
from cloud.model.route_gate import TokenBatch, gated_logits
from cloud.training.maml import AdaptConfig, FastHead, grow, top_features
from cloud.training.new_route import NewRouteConfig, refit_route_gate, train_new_route
from cloud.training.route_gate import (
    BASE_VIEWS,
    GATE_KEY,
    INERT_BIAS,
    GateConfig,
    RouteGate,
    base_embeddings,
    centred,
    claim_threshold,
    embeddings,
    feature_parts,
    fit_gate,
    gate_input,
    lower_new_bias,
    parent_confidence,
    token_bag,
    with_altered_copies,
)
from contracts.bundle import open_bundle
from contracts.errors import BadRequest
from contracts.routes import DEFAULT_ROUTES
from edge.runtime.bundle_session import BundleSession
from export.errors import ExportError
from export.pipeline import export_adapter_update, export_checkpoint
from tests.export.helpers import make_checkpoint

# what a grown gate reads: (feature, the parent's confidence, word pieces)
GATE_VIEWS = pytest.mark.parametrize(
    ("feature", "confidence", "tokens"),
    [
        ("embedding", False, False),
        ("cat", False, False),
        ("cat", True, False),
        ("cat", False, True),
        ("cat_max", False, False),
        ("cat_pieces", False, False),
    ],
)
REPLAY = [
    e for r in DEFAULT_ROUTES for lang in ("en", "zh") for e in examples_for_template(f"{lang}.{r}.00", 6)
]


@pytest.fixture(scope="module")
def ckpt(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("gate"), routes=list(DEFAULT_ROUTES), base_dir=tiny_base)


def _clusters(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit vectors: 900 replay around several old directions, 16 support + 40 held-out new ones
    around a new direction, all sharing a common offset (what centring removes)."""
    dirs = torch.Generator().manual_seed(0)  # the same routes for every seed; ``seed``: other draws
    g = torch.Generator().manual_seed(100 + seed)
    dim = 32
    common = torch.zeros(dim)
    common[0] = 3.0
    olds = torch.randn(6, dim, generator=dirs)
    new_dir = torch.randn(dim, generator=dirs)
    replay = common + olds[torch.arange(900) % 6] + 0.6 * torch.randn(900, dim, generator=g)
    new = common + new_dir + 0.6 * torch.randn(56, dim, generator=g)
    return F.normalize(replay, dim=-1), F.normalize(new[:16], dim=-1), F.normalize(new[16:], dim=-1)


def test_claim_threshold_claims_at_most_the_share() -> None:
    scores = torch.arange(900, dtype=torch.float32)
    tau, m = claim_threshold(scores, 0.002)
    assert m == 1 and int((scores > tau).sum()) == 1 and tau == 898.0
    tau0, m0 = claim_threshold(scores, 0.0)
    assert m0 == 0 and int((scores > tau0).sum()) == 0
    assert int((torch.ones(50) > claim_threshold(torch.ones(50), 0.1)[0]).sum()) == 0  # ties: none
    with pytest.raises(ValueError):
        claim_threshold(torch.empty(0), 0.01)
    with pytest.raises(ValueError):
        claim_threshold(scores, 1.0)


@pytest.mark.parametrize("kind", ["proto", "knn", "lr"])
def test_each_gate_claims_the_new_cluster_and_at_most_the_share_of_replay(kind: str) -> None:
    replay, support, held = _clusters()
    gate = fit_gate(NEW_ROUTE, support, replay, GateConfig(kind=kind, claim_rate=0.01), seed=0)
    assert gate.calibration_claimed <= 9 and gate.calibration_size == 900
    assert float(gate.claims(held).float().mean()) >= 0.9
    fresh, _, _ = _clusters(seed=1)  # other draws of the old routes: not calibrated on
    assert float(gate.claims(fresh).float().mean()) <= 0.05
    if kind != "lr":  # the lr gate's threshold is out-of-fold: its own replay is fitted
        assert int(gate.claims(replay).sum()) == gate.calibration_claimed
    back = RouteGate.from_dict(gate.to_dict())
    assert torch.allclose(back.scores(held), gate.scores(held), atol=1e-5)
    parent = ["calculator"] * len(held)
    assert gate.routed(held, parent) == [NEW_ROUTE if c else "calculator" for c in gate.claims(held).tolist()]


def test_a_wrong_kind_is_refused() -> None:
    replay, support, _ = _clusters()
    with pytest.raises(ValueError, match="gate kind"):
        fit_gate(NEW_ROUTE, support, replay, GateConfig(kind="svm"))
    with pytest.raises(ValueError, match="gate kind"):
        RouteGate.from_dict({**fit_gate(NEW_ROUTE, support, replay, GateConfig()).to_dict(), "kind": "x"})


def test_a_gate_that_reads_the_parents_confidence_claims_what_the_parent_hesitates_on() -> None:
    """Some old-route requests look like the new intent (50 of the replay sit on its direction) but
    the parent routes them with assurance, while it hesitates on the new intent: the embedding alone
    cannot claim the new cluster without those, the gate that reads ``p_max`` can."""
    replay, support, held = _clusters()
    g = torch.Generator().manual_seed(7)
    replay = replay.clone()
    _, look_alike, more = _clusters(seed=2)  # drawn as the new intent is
    replay[:50] = torch.cat([look_alike, more])[:50]
    conf_replay = 0.9 + 0.09 * torch.rand(900, generator=g)
    conf_support, conf_held = 0.3 + 0.2 * torch.rand(16, generator=g), 0.3 + 0.2 * torch.rand(40, generator=g)
    plain = fit_gate(NEW_ROUTE, support, replay, GateConfig(kind="lr", claim_rate=0.01), seed=0)
    cfg = GateConfig(kind="lr", claim_rate=0.01, confidence=True)
    gate = fit_gate(NEW_ROUTE, support, replay, cfg, seed=0, confidence=(conf_support, conf_replay))
    assert gate.confidence_weight < 0 and plain.confidence_weight == 0.0
    assert gate.calibration_claimed <= 9
    assert float(plain.claims(held).float().mean()) <= 0.4
    assert float(gate.claims(held, conf_held).float().mean()) >= 0.9
    assert int(gate.claims(replay[:50], conf_replay[:50]).sum()) <= 9  # no more than the calibrated share
    back = RouteGate.from_dict(gate.to_dict())
    assert back.confidence_weight == gate.confidence_weight
    assert torch.allclose(back.scores(held, conf_held), gate.scores(held, conf_held), atol=1e-5)
    with pytest.raises(ValueError, match="reads the parent's confidence"):
        gate.scores(held)
    with pytest.raises(ValueError, match="needs it"):
        fit_gate(NEW_ROUTE, support, replay, cfg)
    with pytest.raises(ValueError, match="only an lr gate"):
        fit_gate(NEW_ROUTE, support, replay, GateConfig(kind="proto", confidence=True))
    with pytest.raises(ValueError, match="only an lr gate"):
        RouteGate.from_dict({**gate.to_dict(), "kind": "proto"})
    with pytest.raises(ValueError, match="one confidence per"):
        fit_gate(NEW_ROUTE, support, replay, cfg, confidence=(conf_support[:3], conf_replay))
    assert "confidence_weight" not in plain.to_dict()  # earlier gates' records are unchanged


def test_a_gate_that_reads_word_pieces_claims_what_the_embedding_cannot_tell() -> None:
    """The new intent and 50 of the replay share one embedding direction; only a word (id 7)
    tells them apart: the embedding alone cannot claim the new cluster without those, the gate
    that also reads the word pieces can. [CLS]/[SEP] (ids 1, 2) are not words."""
    replay, support, held = _clusters()
    replay = replay.clone()
    _, look_alike, more = _clusters(seed=2)
    replay[:50] = torch.cat([look_alike, more])[:50]
    g = np.random.default_rng(0)

    def ids(n: int, word: int | None) -> list[list[int]]:
        return [[1, *([word] if word else []), *g.integers(10, 40, size=5).tolist(), 2] for _ in range(n)]

    rep_ids, sup_ids, held_ids = ids(900, None), ids(16, 7), ids(40, 7)
    plain = fit_gate(NEW_ROUTE, support, replay, GateConfig(kind="lr", claim_rate=0.01), seed=0)
    cfg = GateConfig(kind="lr", claim_rate=0.01, tokens=True)
    gate = fit_gate(NEW_ROUTE, support, replay, cfg, seed=0, tokens=(sup_ids, rep_ids), special=(0, 1, 2))
    assert gate.token_weights[7] > 0 and not {0, 1, 2} & set(gate.token_weights)
    assert gate.token_special == (0, 1, 2)
    assert float(plain.claims(held).float().mean()) <= 0.4
    assert float(gate.claims(held, token_ids=held_ids).float().mean()) >= 0.9
    back = RouteGate.from_dict(gate.to_dict())
    assert back.token_weights == pytest.approx(gate.token_weights, abs=1e-6)
    assert torch.allclose(back.scores(held, None, held_ids), gate.scores(held, None, held_ids), atol=1e-5)
    # the graph's tensor form (padded batch, a table over the vocabulary) scores as the lists do
    padded = [[*x, *[0] * (9 - len(x))] for x in held_ids]
    batch = TokenBatch(
        torch.tensor(padded), torch.tensor([[1] * len(x) + [0] * (9 - len(x)) for x in held_ids]), 50
    )
    assert torch.allclose(gate.scores(held, None, batch), gate.scores(held, None, held_ids), atol=1e-5)
    bag = token_bag([[1, 7, 7, 9, 2], [1, 2]], [7, 9], special=(1, 2))
    assert torch.allclose(bag, torch.tensor([[2 / 5**0.5, 1 / 5**0.5], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="word pieces"):
        gate.scores(held)
    with pytest.raises(ValueError, match="needs the token ids"):
        fit_gate(NEW_ROUTE, support, replay, cfg)
    with pytest.raises(ValueError, match="one token id list"):
        fit_gate(NEW_ROUTE, support, replay, cfg, tokens=(sup_ids[:3], rep_ids))
    with pytest.raises(ValueError, match="only an lr gate"):
        RouteGate.from_dict({**gate.to_dict(), "kind": "proto"})


def test_gate_replay_adds_seeded_altered_copies_of_the_replay() -> None:
    replay = REPLAY[:40]
    assert with_altered_copies(replay, 0) == replay
    got = with_altered_copies(replay, 1, seed=3)
    assert got[:40] == replay and 0 < len(got) - 40 <= 40
    assert got == with_altered_copies(replay, 1, seed=3)  # seeded
    originals = {e.text for e in replay}
    assert all(e.text not in originals and e.route in DEFAULT_ROUTES for e in got[40:])
    with pytest.raises(ValueError, match="altered copies must be >= 0"):
        with_altered_copies(replay, -1)


def test_support_variants_add_altered_copies_to_the_positives_only(ckpt: Path, tmp_path: Path) -> None:
    """``support_variants``: the gate's positives are the support and its altered copies; the
    support accuracy it reports still counts the operator's own examples, and the loop's refit
    reads the setting back from the checkpoint."""
    sizes = {}
    for v in (0, 2):
        cfg = GateConfig(kind="lr", claim_rate=0.01, support_variants=v)
        res = train_new_route(
            ckpt,
            NEW_ROUTE,
            support_set(16),
            tmp_path / f"v{v}",
            config=NewRouteConfig(method="gate", gate=cfg, threads=1),
            replay=REPLAY,
        )
        info = load_checkpoint(res.checkpoint_dir)[1].training["new_route"]
        sizes[v] = info[GATE_KEY]["extra"]["positives"]
        assert info["gate_config"]["support_variants"] == v
        assert info["support_accuracy"] * 16 == pytest.approx(round(info["support_accuracy"] * 16))
        assert info[GATE_KEY]["calibration_size"] == len(REPLAY)  # the replay is not touched
    assert sizes[0] == 16 and 16 < sizes[2] <= 48


def test_a_refit_with_hard_negatives_is_fitted_and_calibrated_on_them(ckpt: Path, tmp_path: Path) -> None:
    """``negatives`` (the loop's labelled examples of other routes, ``loop_gate_hard_negatives``)
    join the replay the refit fits and calibrates on: at claim rate 0 none of them is claimed; a
    negative that names the gated route, or a route the model lacks, is refused."""
    cfg = GateConfig(kind="lr", claim_rate=0.0, tokens=True)
    res = train_new_route(
        ckpt,
        NEW_ROUTE,
        support_set(16),
        tmp_path / "g",
        config=NewRouteConfig(method="gate", gate=cfg, threads=1),
        replay=REPLAY,
    )
    model, meta = load_checkpoint(res.checkpoint_dir)
    tok = checkpoint_tokenizer(meta)
    # the hard negatives: other-route requests phrased like the route (the support's words)
    negatives = [
        Example(f"{e.text} calculator 12 * 7", "calculator", e.lang, "hard") for e in support_set(24)[16:]
    ]
    ids, mask = tok([e.text for e in negatives])
    routes = meta.adapter_sets["default"].routes

    def claimed() -> int:
        with torch.no_grad():
            out = model(torch.from_numpy(ids), torch.from_numpy(mask))
        return sum(routes[i] == NEW_ROUTE for i in out.route_logits.argmax(-1).tolist())

    plain = refit_route_gate(model, meta.training, "default", tok)
    assert claimed() > 0  # the gate fitted without them takes some for the route
    hard = refit_route_gate(model, meta.training, "default", tok, negatives=negatives)
    assert hard.gate.calibration_size == plain.gate.calibration_size + len(negatives)
    assert claimed() == 0
    for bad in ("shift_schedule", "no_such_route"):
        with pytest.raises(BadRequest, match="must name another of the model's routes"):
            refit_route_gate(model, meta.training, "default", tok, negatives=[Example("x y", bad, "en", "h")])


def test_gated_logits_feed_the_gate_the_parents_confidence() -> None:
    """The graph's rule: the new route's logit is max(old) + κ (score − τ), the score computed with
    the parent's largest softmax probability over the old routes (the inert column excluded)."""
    replay, support, held = _clusters()
    g = torch.Generator().manual_seed(3)
    conf_replay, conf_support = 0.9 + 0.05 * torch.rand(900, generator=g), 0.4 * torch.ones(16)
    cfg = GateConfig(kind="lr", claim_rate=0.01, confidence=True)
    gate = fit_gate(NEW_ROUTE, support, replay, cfg, seed=0, confidence=(conf_support, conf_replay))
    old = torch.randn(len(held), 4, generator=g) * 3
    logits = torch.cat([old, torch.full((len(held), 1), INERT_BIAS)], dim=1)
    out = gated_logits(gate, logits, held, None)
    assert torch.equal(out[:, :-1], old)
    want = gate.claims(held, parent_confidence(old))
    assert torch.equal(out.argmax(1) == 4, want)
    assert torch.allclose(parent_confidence(old), F.softmax(old, dim=1).max(1).values)


def test_a_cat_gate_centres_each_part_on_its_own() -> None:
    replay, support, held = _clusters()
    noise = F.normalize(torch.randn(900 + 56, 32, generator=torch.Generator().manual_seed(5)), dim=-1)
    rep2, sup2, held2 = noise[:900], noise[900:916], noise[916:]  # a second view that says nothing
    cat = gate_input("cat", replay, rep2)
    assert cat.shape == (900, 64)
    centre = cat.mean(0)
    z = centred(cat, centre, parts=2)
    assert torch.allclose(z.norm(dim=-1), torch.ones(900), atol=1e-5)
    assert torch.allclose(z[:, :32] * 2**0.5, centred(replay, replay.mean(0)), atol=1e-5)
    cfg = GateConfig(kind="lr", claim_rate=0.01, feature="cat")
    gate = fit_gate(NEW_ROUTE, gate_input("cat", support, sup2), cat, cfg, seed=0)
    assert gate.feature == "cat" and gate.calibration_claimed <= 9
    held_cat = gate_input("cat", held, held2)
    assert float(gate.claims(held_cat).float().mean()) >= 0.9  # the informative half carries it
    back = RouteGate.from_dict(gate.to_dict())
    assert back.feature == "cat" and torch.allclose(back.scores(held_cat), gate.scores(held_cat), atol=1e-5)
    with pytest.raises(ValueError, match="2 embeddings wide"):
        fit_gate(NEW_ROUTE, support[:, :31], replay[:, :31], cfg)
    with pytest.raises(ValueError, match="needs both"):
        gate_input("cat", replay, None)
    with pytest.raises(ValueError, match="needs both"):
        gate_input("cat_max", None, torch.cat([rep2, rep2], dim=1))
    with pytest.raises(ValueError, match="gate feature"):
        gate_input("pooled", replay, None)
    with pytest.raises(ValueError, match="gate feature"):
        RouteGate.from_dict({**gate.to_dict(), "feature": "pooled"})
    old_record = {k: v for k, v in gate.to_dict().items() if k != "feature"}  # round 3's gates
    assert RouteGate.from_dict(old_record).feature == "embedding"


def test_base_embeddings_are_the_encoder_without_adapters(ckpt: Path) -> None:
    model, meta = load_checkpoint(ckpt)
    tok = checkpoint_tokenizer(meta)
    texts = [e.text for e in REPLAY[:20]]
    got = base_embeddings(model, tok, texts, batch_size=7)  # several batches, sorted by length
    for p in model.adapter_set("default").adapters.parameters():  # a trained adapter must not count
        assert p.abs().sum() > 0
    ids, mask = tok(texts)
    with torch.no_grad():
        hidden = model.encoder(torch.from_numpy(ids), torch.from_numpy(mask), None)
        m = torch.from_numpy(mask).unsqueeze(-1).float()
        ref = F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
        adapted = model(torch.from_numpy(ids), torch.from_numpy(mask)).embedding
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got, adapted, atol=1e-3)


def test_the_base_views_are_the_max_and_the_word_piece_mean_over_real_tokens(ckpt: Path) -> None:
    """``cat_max`` / ``cat_pieces`` read, besides the mean, the element-wise maximum of the base
    encoder's token states and the mean of the tokens' input embeddings — padding never counts, so
    a text's view is the same alone as in a batch of longer ones."""
    model, meta = load_checkpoint(ckpt)
    tok = checkpoint_tokenizer(meta)
    texts = ["swap my shift", "who covers the night rota at line 3 next week please"]
    table = model.encoder.embeddings.word_embeddings.weight
    for feature, view in (("cat_max", "max"), ("cat_pieces", "pieces")):
        assert BASE_VIEWS[feature] == ("mean", view) and feature_parts(feature) == 3
        got = base_embeddings(model, tok, texts, feature=feature, batch_size=2)
        h = model.config.hidden_size
        assert got.shape == (2, 2 * h)
        assert torch.allclose(got[:, :h], base_embeddings(model, tok, texts), atol=1e-5)
        ids = torch.tensor([tok.encode_ids(texts[:1])[0]])
        with torch.no_grad():
            hidden = model.encoder(ids, torch.ones_like(ids), None)[0]
        ref = hidden.max(dim=0).values if view == "max" else table[ids[0]].mean(dim=0)
        assert torch.allclose(got[0, h:], F.normalize(ref, dim=-1), atol=1e-5)  # alone = padded
    with pytest.raises(ValueError, match="reads nothing of the base encoder"):
        base_embeddings(model, tok, texts, feature="embedding")


def test_lower_new_bias_keeps_the_new_output_off_the_replay(ckpt: Path) -> None:
    model, meta = load_checkpoint(ckpt)
    tok = checkpoint_tokenizer(meta)
    fast = FastHead.from_model(model, "default")
    sup = top_features(model, "default", tok, support_set(8))
    rep = top_features(model, "default", tok, REPLAY)
    grown = grow(fast, NEW_ROUTE, init="proto", support=sup)
    with torch.no_grad():
        grown.head.out.bias[-1] += 50.0  # the new output wins everything
    assert grown.predict(rep).count(NEW_ROUTE) == len(rep)
    delta = lower_new_bias(grown, rep, 0.05)
    m = int(0.05 * len(rep))
    assert delta > 0 and grown.predict(rep).count(NEW_ROUTE) <= m
    assert lower_new_bias(grown, rep, 0.05) == 0.0  # already calibrated


@GATE_VIEWS
def test_train_new_route_gate_keeps_every_parent_weight_and_its_graph_routes_with_the_gate(
    ckpt: Path, tmp_path: Path, feature: str, confidence: bool, tokens: bool
) -> None:
    support = support_set(16)
    kind = "lr" if confidence or tokens else "proto"  # only an lr gate reads confidence / word pieces
    rate = 0.05 if kind == "lr" else 0.01  # an lr gate on the tiny encoder claims no support at 1 %
    variants = 1 if confidence else 0  # calibrated on altered replay copies too
    gate_cfg = GateConfig(
        kind=kind,
        claim_rate=rate,
        feature=feature,
        confidence=confidence,
        replay_variants=variants,
        tokens=tokens,
    )
    res = train_new_route(
        ckpt,
        NEW_ROUTE,
        support,
        tmp_path / "gated",
        tool_routes=[NEW_ROUTE],
        config=NewRouteConfig(method="gate", gate=gate_cfg, threads=1),
        replay=REPLAY,
    )
    assert res.routes == [*DEFAULT_ROUTES, NEW_ROUTE]
    model, meta = load_checkpoint(res.checkpoint_dir)
    parent, _ = load_checkpoint(ckpt)
    after = load_file(str(res.checkpoint_dir / "adapters.safetensors"))
    before = load_file(str(ckpt / "adapters.safetensors"))
    assert set(after) == set(before)
    out_w, out_b = "default.heads.router.out.weight", "default.heads.router.out.bias"
    for k, v in before.items():
        assert torch.equal(after[k][:-1], v) if k in (out_w, out_b) else torch.equal(after[k], v), k
    assert float(after[out_w][-1].abs().sum()) == 0.0 and float(after[out_b][-1]) == INERT_BIAS
    tok = checkpoint_tokenizer(meta)
    texts = [e.text for e in REPLAY + support]
    ids, mask = tok(texts)
    with torch.no_grad():
        out = model(torch.from_numpy(ids), torch.from_numpy(mask))
        ref = parent(torch.from_numpy(ids), torch.from_numpy(mask))
    assert torch.equal(out.embedding, ref.embedding) and not parent.route_gates
    info = meta.training["new_route"]
    gate = RouteGate.from_dict(info[GATE_KEY])
    assert model.route_gates["default"].to_dict() == gate.to_dict() == res.gate
    assert info["method"] == "gate" and info["adapted_layers"] == 0 and gate.kind == kind
    assert gate.feature == feature and (gate.confidence_weight != 0) == confidence
    assert info["support_accuracy"] >= 0.25  # tiny random encoder, 1 % (lr: 5 %) of 108 replay claimable
    # the stored gate applied to the full model's embedding output (``cat``: with the base
    # encoder's; with the parent's confidence when it reads it) claims like the cached features
    # it was fitted on
    base = base_embeddings(parent, tok, texts, feature=feature) if feature != "embedding" else None
    conf = parent_confidence(ref.route_logits) if confidence else None
    token_ids = tok.encode_ids(texts) if tokens else None
    assert bool(gate.token_weights) == tokens and not set(gate.token_special) ^ (
        set(tok.special_ids) if tokens else set()
    )
    claims = gate.claims(gate_input(feature, out.embedding, base), conf, token_ids)
    n_rep = len(REPLAY)
    assert float(claims[n_rep:].float().mean()) == pytest.approx(info["support_accuracy"], abs=1 / 16)
    assert int(claims[:n_rep].sum()) <= int(rate * gate.calibration_size) + 1
    assert (gate.calibration_size > n_rep) == bool(variants)
    fast = FastHead.from_model(parent, "default")
    cached = embeddings(fast, top_features(parent, "default", tok, REPLAY))
    assert torch.allclose(cached, out.embedding[:n_rep], atol=2e-2)
    # the loaded model routes with the gate: the new route exactly where it claims, else the parent's
    parent_routes = [DEFAULT_ROUTES[i] for i in ref.route_logits.argmax(-1).tolist()]
    gated = [res.routes[i] for i in out.route_logits.argmax(-1).tolist()]
    assert gated == gate.routed(gate_input(feature, out.embedding, base), parent_routes, conf, token_ids)
    assert 0 < gated.count(NEW_ROUTE) < len(gated)
    assert torch.equal(out.route_logits[:, :-1], ref.route_logits)  # the old routes' logits untouched
    # exported, the ONNX graph (ONNX Runtime, as the edge runs it) routes the same way
    bundle = export_checkpoint(res.checkpoint_dir, tmp_path / "bundle")
    opened = open_bundle(bundle)
    assert opened.manifest.routes == res.routes
    exported_gate = opened.manifest.metrics.export["route_gate"]["default"]
    assert exported_gate["feature"] == feature
    assert exported_gate.get("confidence_weight", 0.0) == gate.confidence_weight
    emb, logits = BundleSession(opened).run(ids, mask)
    assert [res.routes[i] for i in np.asarray(logits).argmax(-1).tolist()] == gated
    assert np.allclose(emb, out.embedding.numpy(), atol=1e-4)
    # an adapter-only update cannot carry the gate (it is graph, not adapter tensors), and new
    # adapters under a gated parent would move the embedding its gate was calibrated on
    with pytest.raises(ExportError, match=r"route 'shift_schedule' is gated.*full bundle"):
        export_adapter_update(res.checkpoint_dir, tmp_path / "update", parent_bundle=bundle, version="0.2.0")
    with pytest.raises(ExportError, match=r"routes with a gate calibrated on its own adapters"):
        export_adapter_update(ckpt, tmp_path / "update2", parent_bundle=bundle, version="0.2.0")
    # a gate that does not fit the encoder, or names a route that is not last, is refused on load
    broken = tmp_path / "broken"
    shutil.copytree(res.checkpoint_dir, broken)
    doc = yaml.safe_load((broken / "checkpoint.yaml").read_text(encoding="utf-8"))
    doc["training"]["new_route"]["gate"]["centre"] = [0.0] * 3
    (broken / "checkpoint.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(CheckpointError, match="does not fit the encoder"):
        load_checkpoint(broken)
    doc["training"]["new_route"]["gate"]["route"] = "calculator"
    (broken / "checkpoint.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(CheckpointError, match="last route of exactly one adapter set"):
        load_checkpoint(broken)


@GATE_VIEWS
def test_the_loops_fine_tune_refits_a_gated_route(
    ckpt: Path, tmp_path: Path, feature: str, confidence: bool, tokens: bool
) -> None:
    """The loop fine-tunes under a gate: the adapters move, the gate is fitted again on the new
    embedding (and, when it reads it, the parent's confidence over the old routes, never the inert
    row) from its stored support plus the route's labelled hard examples, and the grown output
    stays inert (only the gate routes to it)."""
    gate_cfg = GateConfig(kind="lr", claim_rate=0.01, feature=feature, confidence=confidence, tokens=tokens)
    res = train_new_route(
        ckpt,
        NEW_ROUTE,
        support_set(16),
        tmp_path / "gated",
        config=NewRouteConfig(method="gate", gate=gate_cfg, threads=1),
        replay=REPLAY,
    )
    grown = load_checkpoint(res.checkpoint_dir)[1].training["new_route"]
    assert grown["support_texts"] == [e.text for e in support_set(16)]
    assert grown["gate_config"]["feature"] == feature and grown["gate_config"]["claim_rate"] == 0.01
    assert grown["gate_config"]["confidence"] is confidence
    labelled = [e.text for e in support_set(24, seed=7)][-6:]
    hard = [("crunch 48 by 12 for me", "calculator"), ("kill the lights over bay 3", "device_control")] * 3
    hard += [(t, NEW_ROUTE) for t in labelled]
    st = LoopSettings(loop_train_steps=12, loop_train_lr=2e-2, loop_base_samples=120, loop_eval_max=60)
    ft = finetune(res.checkpoint_dir, hard, tmp_path / "ft", st)
    model, meta = load_checkpoint(ft.checkpoint_dir)
    info = meta.training["new_route"]
    old, new = RouteGate.from_dict(grown[GATE_KEY]), model.route_gates["default"]
    assert new.to_dict() == info[GATE_KEY] and (new.kind, new.feature, new.claim_rate) == (
        "lr",
        feature,
        0.01,
    )
    assert not torch.equal(new.centre, old.centre)  # calibrated on the fine-tuned embedding
    added = [t for t in dict.fromkeys(labelled) if t not in grown["support_texts"]]
    assert info["support_texts"] == grown["support_texts"] + added and info["refits"] == 1
    assert meta.training["loop"]["gate_refit"] == {
        "route": NEW_ROUTE,
        "support": 16 + len(added),
        "added": len(added),
    }
    after = load_file(str(ft.checkpoint_dir / "adapters.safetensors"))
    before = load_file(str(res.checkpoint_dir / "adapters.safetensors"))
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved  # the fine-tune did train
    out_w, out_b = "default.heads.router.out.weight", "default.heads.router.out.bias"
    assert float(after[out_w][-1].abs().sum()) == 0.0 and float(after[out_b][-1]) == INERT_BIAS
    # the loaded model routes the new route exactly where the refitted gate claims
    tok = checkpoint_tokenizer(meta)
    texts = [e.text for e in REPLAY] + info["support_texts"]
    ids, mask = tok(texts)
    with torch.no_grad():
        out = model(torch.from_numpy(ids), torch.from_numpy(mask))
    base = base_embeddings(model, tok, texts, feature=feature) if feature != "embedding" else None
    assert (new.confidence_weight != 0) == confidence
    conf = parent_confidence(out.route_logits[:, :-1]) if confidence else None
    assert bool(new.token_weights) == tokens
    claims = new.claims(
        gate_input(feature, out.embedding, base), conf, tok.encode_ids(texts) if tokens else None
    )
    routed = [ft.routes[i] for i in out.route_logits.argmax(-1).tolist()]
    assert [r == NEW_ROUTE for r in routed] == claims.tolist()
    n_rep = len(REPLAY)
    assert float(claims[n_rep:].float().mean()) == pytest.approx(info["support_accuracy"], abs=1e-6)
    assert info["support_accuracy"] > 0  # tiny random encoder: few, but some (6 % before the refit)
    assert int(claims[:n_rep].sum()) <= int(0.01 * n_rep) + 1  # the claim rate holds on the replay
    # a gated checkpoint that does not keep its examples (grown before they were stored) is
    # refused in one line, naming the way out
    bare = tmp_path / "bare"
    shutil.copytree(res.checkpoint_dir, bare)
    doc = yaml.safe_load((bare / "checkpoint.yaml").read_text(encoding="utf-8"))
    del doc["training"]["new_route"]["support_texts"]
    (bare / "checkpoint.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(BadRequest, match=r"routes 'shift_schedule' with a gate.*add-route --method gate"):
        finetune(bare, hard, tmp_path / "ft2", st)


def test_train_new_route_margin_rate_keeps_the_new_output_off_the_replay(ckpt: Path, tmp_path: Path) -> None:
    cfg = NewRouteConfig(adapt=AdaptConfig(steps=80, lr=1e-2), margin_rate=0.0, threads=1)
    res = train_new_route(ckpt, NEW_ROUTE, support_set(16), tmp_path / "m", config=cfg, replay=REPLAY)
    model, meta = load_checkpoint(res.checkpoint_dir)
    fast = FastHead.from_model(model, "default")
    rep = top_features(model, "default", checkpoint_tokenizer(meta), REPLAY)
    assert fast.predict(rep).count(NEW_ROUTE) == 0
    assert meta.training["new_route"]["margin_rate"] == 0.0 and "bias_lowered" in meta.training["new_route"]


def test_a_gate_on_routes_the_generator_does_not_know_needs_replay_to_refit(
    tiny_base: Path, tmp_path: Path
) -> None:
    """The refit calibrates on the generator's examples of the other routes, else on the job's own
    base data; a model with neither (custom routes, no run data) is refused in one line."""
    custom = ["alpha_desk", "beta_desk"]
    ckpt = make_checkpoint(tmp_path / "custom", routes=custom, base_dir=tiny_base)
    replay = [Example(f"{r} request number {i}", r, "en", "x") for r in custom for i in range(60)]
    res = train_new_route(
        ckpt,
        NEW_ROUTE,
        support_set(8),
        tmp_path / "gated",
        config=NewRouteConfig(method="gate", gate=GateConfig(kind="lr", claim_rate=0.01), threads=1),
        replay=replay,
    )
    st = LoopSettings(loop_train_steps=2, loop_base_samples=50, loop_eval_max=20)
    with pytest.raises(BadRequest, match=r"0 examples of the other routes to calibrate its gate on"):
        finetune(res.checkpoint_dir, [("alpha_desk request", "alpha_desk")] * 4, tmp_path / "ft", st)
