"""A new route as a gated side scorer: the parent's weights stay untouched, a calibrated gate claims.

The parent routes a request as before unless the gate claims it for the new route; the other
routes can then only lose what the gate claims falsely, and its threshold is calibrated so that at
most a share ``claim_rate`` of the replay (examples of the parent's own routes) is claimed
(docs/EVALUATION.md, "Third selection round").

**Feature.** The parent's ``embedding`` (the L2-normalised mean-pooled last-layer state: the router
head's input, normalised, and the exported graph's first output), centred on the replay and
renormalised: ``z = (e - c) / |e - c|``. A gate is data — centre, vector(s), bias, threshold — so
it can be applied to the embedding an edge already computes.

**Features** (``GateConfig.feature``): ``embedding`` (above); ``base``: the same computed by the
base encoder with no adapter (the bundled sentence encoder's own embedding, never narrowed to the
parent's routes; a second encoder pass per request); ``cat``: both, each centred and normalised on
its own, concatenated and divided by sqrt(2) (docs/EVALUATION.md, "Fourth selection round");
``cat_max`` / ``cat_pieces``: ``cat`` and a third part from the same base pass, the element-wise
maximum of its token states or the mean of the tokens' input embeddings (:func:`base_side`;
"Eleventh selection round").
With ``GateConfig.confidence`` an ``lr`` gate also reads the parent's largest old-route softmax
probability as one more input column (docs/EVALUATION.md, "Sixth selection round").
With ``GateConfig.replay_variants`` the replay the gate is fitted and calibrated on also holds that
many altered copies of every example (:func:`with_altered_copies`; "Seventh selection round"), and
with ``GateConfig.support_variants`` the support as well ("Thirteenth selection round").

**Kinds.** ``proto``: cosine of ``z`` with the normalised mean of the support ``z``; ``knn``: the
largest cosine with any support example; ``lr``: a class-balanced L2-regularised logistic
regression (support vs replay), its threshold from out-of-fold replay scores (2 folds).

**Calibration.** With ``n`` calibration scores, ``m = floor(claim_rate * n)``; the threshold is the
(m+1)-th largest score and the gate claims iff its score is *above* it, so at most ``m``
calibration examples are claimed. :func:`lower_new_bias` applies the same rule to a grown router
head's new output (``proto_margin``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from cloud.data import Example
from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.route_gate import (  # the gate's data and inference (re-exported here)
    BASE_VIEWS,
    GATE_FEATURES,
    GATE_KINDS,
    RouteGate,
    base_side,
    centred,
    feature_parts,
    gate_input,
    parent_confidence,
    token_bag,
)
from cloud.training.augment import augment_support
from cloud.training.maml import FastHead, TopFeatures, grow
from contracts.routes import GateFeature
from contracts.tokenizer import TextTokenizer

__all__ = [
    "GATE_FEATURES",
    "GATE_KEY",
    "GATE_KINDS",
    "INERT_BIAS",
    "GateConfig",
    "RouteGate",
    "base_embeddings",
    "centred",
    "claim_threshold",
    "embeddings",
    "feature_parts",
    "fit_gate",
    "fit_logistic",
    "gate_input",
    "inert_grown",
    "lower_new_bias",
    "parent_confidence",
    "token_bag",
    "with_altered_copies",
]

GATE_KEY = "gate"  # checkpoint training.new_route.<key>: the gate's data
INERT_BIAS = -30.0  # bias of a gated route's router-head output (weight 0): never the argmax


@dataclass(frozen=True)
class GateConfig:
    kind: str = "proto"  # "proto" | "knn" | "lr"
    claim_rate: float = 0.002  # share of the calibration examples the gate may claim (q)
    l2: float = 1e-3  # ``lr``: weight of |w|^2
    lbfgs_iters: int = 100  # ``lr``: L-BFGS iterations
    folds: int = 2  # ``lr``: folds of the replay for the out-of-fold calibration scores
    feature: str = "embedding"  # a GateFeature: what the gate reads (module doc)
    confidence: bool = False  # ``lr``: also read the parent's largest old-route probability
    replay_variants: int = 0  # altered copies of every replay example added to negatives and calibration
    tokens: bool = False  # ``lr``: also read the request's word pieces (a bag of tokenizer ids)
    support_variants: int = 0  # altered copies of every support example added to the gate's positives


def with_altered_copies(examples: Sequence[Example], variants: int, seed: int = 0) -> list[Example]:
    """What a gate is fitted (and, for the replay, calibrated) on: ``examples`` and up to ``variants``
    seeded altered copies of each (word drop and an adjacent swap for English, character drop for
    Chinese; :mod:`cloud.training.augment`) — for the replay so that the calibration also sees
    phrasings the parent did not train on (``replay_variants``), for the support so that the gate's
    positives are not only the operator's exact sentences (``support_variants``)."""
    if variants < 0:
        raise ValueError(f"altered copies must be >= 0, not {variants}")
    return [*examples, *augment_support(examples, variants, seed)] if variants else list(examples)


@torch.no_grad()
def base_embeddings(
    model: AutoGLMModel,
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    batch_size: int = 64,
    feature: str = GateFeature.BASE,
) -> torch.Tensor:
    """The base encoder's part of a ``feature`` gate's rows (no adapter; :func:`base_side`; for
    ``base`` / ``cat`` the mean-pooled last layer, L2-normalised: the base sentence embedding)."""
    width = model.config.hidden_size * len(BASE_VIEWS[feature])
    if not width:
        raise ValueError(f"a {feature!r} gate reads nothing of the base encoder")
    was = model.training
    model.eval()
    ids_all = tokenizer.encode_ids(list(texts))
    out = torch.empty((len(ids_all), width))
    table = model.encoder.embeddings.word_embeddings.weight
    order = np.argsort([len(x) for x in ids_all], kind="stable")
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids_np, mask_np = TextTokenizer.pad([ids_all[i] for i in idx])
        ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)
        side = base_side(feature, model.encoder(ids, mask, None), ids, mask, table)
        assert side is not None
        out[torch.from_numpy(idx.copy())] = side
    model.train(was)
    return out


@torch.no_grad()
def embeddings(fast: FastHead, feats: TopFeatures, batch_size: int = 512) -> torch.Tensor:
    """The parent's ``embedding`` output (L2-normalised mean-pooled last-layer state) from cached
    top features: what the exported graph returns for the same texts."""
    was = fast.training
    fast.eval()
    out = [
        F.normalize(fast.pooled(*feats.batch(range(s, min(s + batch_size, len(feats))))), p=2, dim=-1)
        for s in range(0, len(feats), batch_size)
    ]
    fast.train(was)
    return torch.cat(out) if out else torch.empty((0, fast.head.dense.in_features))


def claim_threshold(scores: torch.Tensor, claim_rate: float) -> tuple[float, int]:
    """``(threshold, m)``: the (m+1)-th largest score, ``m = floor(claim_rate * n)``; a score above
    the threshold is claimed, so at most ``m`` of ``scores`` are."""
    n = int(scores.numel())
    if n == 0:
        raise ValueError("calibration needs at least one score")
    if not 0.0 <= claim_rate < 1.0:
        raise ValueError(f"claim_rate must be in [0, 1), not {claim_rate}")
    m = math.floor(claim_rate * n + 1e-9)
    ordered = torch.sort(scores.flatten().float(), descending=True).values
    return float(ordered[m]), m


def fit_logistic(pos: torch.Tensor, neg: torch.Tensor, l2: float, iters: int) -> tuple[torch.Tensor, float]:
    """``(w, b)`` of a class-balanced logistic regression ``pos`` vs ``neg`` (the mean loss of each
    class, averaged) with ``l2 * |w|^2``; full-batch L-BFGS from zero (deterministic)."""
    w = torch.zeros(pos.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")
    pos, neg = pos.float(), neg.float()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * (F.softplus(-(pos @ w + b)).mean() + F.softplus(neg @ w + b).mean()) + l2 * (w * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return w.detach(), float(b.detach())


def fit_gate(
    route: str,
    support: torch.Tensor,
    replay: torch.Tensor,
    cfg: GateConfig,
    seed: int = 0,
    confidence: tuple[torch.Tensor | None, torch.Tensor | None] | None = None,
    tokens: tuple[Sequence[Sequence[int]] | None, Sequence[Sequence[int]] | None] | None = None,
    special: Sequence[int] = (),
) -> RouteGate:
    """A gate for ``route`` from the parent's embeddings of its ``support`` examples and of the
    ``replay`` (the parent's routes), calibrated on the replay. ``confidence``: the parent's largest
    old-route probability on the support and on the replay (:func:`parent_confidence`), needed
    when ``cfg.confidence``; ``tokens``: their tokenizer ids (``special``: the ids that are not
    words), needed when ``cfg.tokens``."""
    if cfg.tokens and cfg.kind != "lr":
        raise ValueError("only an lr gate reads word pieces")
    if cfg.tokens and (tokens is None or tokens[0] is None or tokens[1] is None):
        raise ValueError("a gate that reads word pieces needs the token ids of the support and the replay")
    if cfg.confidence and cfg.kind != "lr":
        raise ValueError("only an lr gate reads the parent's confidence")
    if cfg.confidence and (confidence is None or confidence[0] is None or confidence[1] is None):
        raise ValueError("a gate that reads the parent's confidence needs it for the support and the replay")
    if cfg.kind not in GATE_KINDS:
        raise ValueError(f"gate kind must be one of {list(GATE_KINDS)}, not {cfg.kind!r}")
    if not len(support) or not len(replay):
        raise ValueError("a gate needs support and replay examples")
    if cfg.feature not in GATE_FEATURES:
        raise ValueError(f"gate feature must be one of {list(GATE_FEATURES)}, not {cfg.feature!r}")
    parts = feature_parts(cfg.feature)
    if support.shape[1] != replay.shape[1] or support.shape[1] % parts:
        raise ValueError(f"a {cfg.feature!r} gate's rows must be {parts} embeddings wide")
    centre = replay.float().mean(0)
    zs, zr = centred(support, centre, parts), centred(replay, centre, parts)
    extra: dict[str, Any] = {"positives": len(zs)}
    conf_weight = 0.0
    token_weights: dict[int, float] = {}
    if cfg.kind == "proto":
        vectors, bias = F.normalize(zs.mean(0), p=2, dim=0)[None, :], 0.0
        cal = zr @ vectors[0]
    elif cfg.kind == "knn":
        vectors, bias = zs.clone(), 0.0
        cal = (zr @ vectors.T).max(dim=1).values
    else:
        if cfg.confidence:
            assert confidence is not None and confidence[0] is not None and confidence[1] is not None
            cs, cr = confidence[0].float().reshape(-1, 1), confidence[1].float().reshape(-1, 1)
            if len(cs) != len(zs) or len(cr) != len(zr):
                raise ValueError("one confidence per support and per replay example")
            zs, zr = torch.cat([zs, cs], dim=1), torch.cat([zr, cr], dim=1)
        vocab: list[int] = []
        if cfg.tokens:
            assert tokens is not None and tokens[0] is not None and tokens[1] is not None
            ts, tr = tokens[0], tokens[1]
            if len(ts) != len(zs) or len(tr) != len(zr):
                raise ValueError("one token id list per support and per replay example")
            skip = set(special)
            vocab = sorted({t for ids in (*ts, *tr) for t in ids if t not in skip})
            zs = torch.cat([zs, token_bag(ts, vocab, special)], dim=1)
            zr = torch.cat([zr, token_bag(tr, vocab, special)], dim=1)
        folds = max(2, cfg.folds)
        order = np.random.default_rng(seed).permutation(len(zr))
        cal = torch.empty(len(zr))
        for f in range(folds):
            held = torch.from_numpy(order[f::folds].copy())
            keep = torch.from_numpy(np.setdiff1d(order, order[f::folds]))
            w_f, b_f = fit_logistic(zs, zr[keep], cfg.l2, cfg.lbfgs_iters)
            cal[held] = zr[held] @ w_f + b_f
        w, bias = fit_logistic(zs, zr, cfg.l2, cfg.lbfgs_iters)
        extra["support_scores_min"] = float((zs @ w + bias).min())
        if vocab:
            w, w_tok = w[: -len(vocab)], w[-len(vocab) :]
            token_weights = {t: float(x) for t, x in zip(vocab, w_tok.tolist(), strict=True) if x != 0.0}
        if cfg.confidence:
            w, conf_weight = w[:-1], float(w[-1])
        vectors = w[None, :]
    threshold, m = claim_threshold(cal, cfg.claim_rate)
    gate = RouteGate(
        route=route,
        kind=cfg.kind,
        centre=centre,
        vectors=vectors,
        bias=bias,
        threshold=threshold,
        claim_rate=cfg.claim_rate,
        calibration_size=len(zr),
        calibration_claimed=int((cal > threshold).sum()),
        extra=extra,
        feature=cfg.feature,
        confidence_weight=conf_weight,
        token_weights=token_weights,
        token_special=tuple(sorted(set(special))) if token_weights else (),
    )
    assert gate.calibration_claimed <= m
    return gate


@torch.no_grad()
def lower_new_bias(fast: FastHead, replay: TopFeatures, claim_rate: float) -> float:
    """Lower the last (new) output's bias of a grown ``fast`` in place until at most
    ``floor(claim_rate * n)`` of the ``n`` replay examples have it as their argmax; returns the
    amount it was lowered by (0 when it already was)."""
    logits = fast.logits(replay)
    margin = logits[:, -1] - logits[:, :-1].max(dim=1).values
    kth, _m = claim_threshold(margin, claim_rate)
    if kth < 0:
        return 0.0
    delta = kth + 1e-4
    fast.head.out.bias[-1] -= delta
    return float(delta)


def inert_grown(fast: FastHead, route: str) -> FastHead:
    """``fast`` (the parent's weights, untouched) with ``route`` appended as an inert output
    (weight 0, bias :data:`INERT_BIAS`): the route list is one longer, the parent's routing and
    its probabilities are unchanged, and only the gate sends a request to ``route``."""
    grown = grow(fast, route, init="plain")
    with torch.no_grad():
        grown.head.out.weight[-1].zero_()
        grown.head.out.bias[-1] = INERT_BIAS
    return grown
