"""A gated route's claim rule at inference: the data a gate is (centre, vector(s), bias,
threshold, what it reads) and the router logits it produces.

Fitted by :mod:`cloud.training.route_gate` (docs/arch/model-training.md, "Gated route"); stored in
the checkpoint under ``training.new_route.gate``; applied by :class:`cloud.model.autoglm_model.AutoGLMModel`
(so the exported ONNX graph routes with it) through :func:`gated_logits`: the gated route's logit is
``max(other logits) + κ · (score − threshold)``, so the argmax is the new route exactly when the gate
claims the request (``score > threshold``) and the parent's otherwise; κ (:data:`LOGIT_SCALE`, per
kind: the lr score is a logit, the proto / knn scores are cosines) sets how sure the claim looks.

An ``lr`` gate may also read the parent's own confidence, its largest softmax probability over the
old routes (``confidence_weight`` ≠ 0: the score adds ``confidence_weight · p_max``; a request the
parent routes with assurance is harder to claim; docs/EVALUATION.md, "Sixth selection round"),
and the request's word pieces (``token_weights`` non-empty: the score adds ``Σ_id w_id · c_id / |c|``
over the counts ``c`` of its tokenizer ids, ``token_special`` left out; "Eighth selection round").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from cloud.model.encoder import mean_pool
from contracts.routes import GateFeature

__all__ = [
    "BASE_VIEWS",
    "GATE_FEATURES",
    "GATE_KINDS",
    "LOGIT_SCALE",
    "RouteGate",
    "TokenBatch",
    "base_side",
    "centred",
    "feature_parts",
    "gate_input",
    "gated_logits",
    "parent_confidence",
    "token_bag",
]

GATE_KINDS = ("proto", "knn", "lr")
GATE_FEATURES = tuple(f.value for f in GateFeature)
LOGIT_SCALE = {"lr": 10.0, "proto": 100.0, "knn": 100.0}


@dataclass(frozen=True)
class TokenBatch:
    """A padded batch as the graph gets it (``input_ids``, ``attention_mask`` ``[B, L]``) and the
    encoder's vocabulary size (the word-piece table's length)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    vocab_size: int


@dataclass
class RouteGate:
    """The new route's claim rule on the parent's embeddings."""

    route: str
    kind: str
    centre: torch.Tensor  # [hidden]
    vectors: torch.Tensor  # proto / lr: [1, hidden]; knn: [support, hidden]
    bias: float
    threshold: float
    claim_rate: float
    calibration_size: int
    calibration_claimed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    feature: str = "embedding"
    confidence_weight: float = 0.0  # lr only: weight of the parent's largest old-route probability
    token_weights: dict[int, float] = field(default_factory=dict)  # lr only: weight per word-piece id
    token_special: tuple[int, ...] = ()  # ids that are not words of a request ([CLS], [SEP], padding)

    def __post_init__(self) -> None:  # the word-piece weights as tensors, built once (not in a trace)
        keys = sorted(self.token_weights)
        self._token_table = (
            torch.tensor(keys, dtype=torch.long),
            torch.tensor([self.token_weights[k] for k in keys], dtype=torch.float32),
        )

    def scores(
        self,
        emb: torch.Tensor,
        confidence: torch.Tensor | None = None,
        token_ids: Sequence[Sequence[int]] | TokenBatch | None = None,
    ) -> torch.Tensor:
        """The gate's score per row of ``emb`` (its feature: :func:`gate_input` of the parent's and/or
        the base encoder's L2-normalised embeddings); ``confidence``: the parent's largest old-route
        probability per row (:func:`parent_confidence`), ``token_ids``: each request's tokenizer
        ids, or the padded batch (:class:`TokenBatch`) — each required when the gate reads it."""
        z = centred(emb, self.centre, parts=feature_parts(self.feature))
        sims = z @ self.vectors.T
        if self.kind == "knn":
            return sims.max(dim=1).values
        score = sims[:, 0] + self.bias
        if self.confidence_weight:
            if confidence is None:
                raise ValueError("this gate reads the parent's confidence: pass it")
            score = score + self.confidence_weight * confidence.float()
        if self.token_weights:
            if token_ids is None:
                raise ValueError("this gate reads the request's word pieces: pass its token ids")
            if isinstance(token_ids, TokenBatch):
                score = score + self.token_scores(token_ids)
            else:
                keys, values = self._token_table
                score = score + token_bag(token_ids, keys.tolist(), self.token_special) @ values
        return score

    def token_scores(self, batch: TokenBatch) -> torch.Tensor:
        """The word-piece part of the score from padded ``input_ids`` / ``attention_mask`` with tensor
        operations only (what the exported graph computes): ``Σ_t m_t W[id_t] / sqrt(max(1, Σ_t Σ_s
        m_t m_s [id_t = id_s]))``, ``m`` = the mask without the special ids, ``W`` a table over the
        vocabulary (0 for ids the gate has no weight for)."""
        ids = batch.input_ids.long()
        keys, values = self._token_table
        size = max(batch.vocab_size, max(self.token_weights) + 1)
        table = torch.zeros(size).index_put((keys,), values)
        m = batch.attention_mask.float()
        for special in self.token_special:
            m = m * (ids != special).float()
        weighted = (table[ids.clamp(0, size - 1)] * m).sum(dim=1)
        same = (ids[:, :, None] == ids[:, None, :]).float() * m[:, :, None] * m[:, None, :]
        norm = torch.sqrt(same.sum(dim=(1, 2)).clamp(min=1.0))
        return weighted / norm

    def claims(
        self,
        emb: torch.Tensor,
        confidence: torch.Tensor | None = None,
        token_ids: Sequence[Sequence[int]] | TokenBatch | None = None,
    ) -> torch.Tensor:
        return self.scores(emb, confidence, token_ids) > self.threshold

    def routed(
        self,
        emb: torch.Tensor,
        parent_routes: Sequence[str],
        confidence: torch.Tensor | None = None,
        token_ids: Sequence[Sequence[int]] | None = None,
    ) -> list[str]:
        """The gated routing: the new route where the gate claims, else the parent's route."""
        claimed = self.claims(emb, confidence, token_ids).tolist()
        return [self.route if c else r for c, r in zip(claimed, parent_routes, strict=True)]

    def inputs(self) -> str:
        """What the gate reads, for people: ``"cat + the parent confidence + 1507 word pieces"``."""
        reads = [self.feature]
        if self.confidence_weight:
            reads.append("the parent confidence")
        if self.token_weights:
            reads.append(f"{len(self.token_weights)} word pieces")
        return " + ".join(reads)

    def to_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "kind": self.kind,
            "feature": self.feature,
            "centre": [round(float(x), 7) for x in self.centre],
            "vectors": [[round(float(x), 7) for x in row] for row in self.vectors],
            "bias": self.bias,
            "threshold": self.threshold,
            "claim_rate": self.claim_rate,
            "calibration_size": self.calibration_size,
            "calibration_claimed": self.calibration_claimed,
            **({"extra": self.extra} if self.extra else {}),
            **({"confidence_weight": self.confidence_weight} if self.confidence_weight else {}),
            **(
                {
                    "token_weights": {str(i): round(w, 7) for i, w in sorted(self.token_weights.items())},
                    "token_special": list(self.token_special),
                }
                if self.token_weights
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RouteGate:
        if d.get("kind") not in GATE_KINDS:
            raise ValueError(f"gate kind must be one of {list(GATE_KINDS)}, not {d.get('kind')!r}")
        feature = d.get("feature", "embedding")
        if feature not in GATE_FEATURES:
            raise ValueError(f"gate feature must be one of {list(GATE_FEATURES)}, not {feature!r}")
        confidence_weight = float(d.get("confidence_weight", 0.0))
        if confidence_weight and d["kind"] != "lr":
            raise ValueError("only an lr gate reads the parent's confidence")
        raw_tokens = d.get("token_weights") or {}
        if not isinstance(raw_tokens, dict) or (raw_tokens and d["kind"] != "lr"):
            raise ValueError("only an lr gate reads word pieces, as a mapping of token id to weight")
        token_weights = {int(k): float(v) for k, v in raw_tokens.items()}
        return cls(
            route=str(d["route"]),
            kind=str(d["kind"]),
            centre=torch.tensor(d["centre"], dtype=torch.float32),
            vectors=torch.tensor(d["vectors"], dtype=torch.float32),
            bias=float(d["bias"]),
            threshold=float(d["threshold"]),
            claim_rate=float(d["claim_rate"]),
            calibration_size=int(d["calibration_size"]),
            calibration_claimed=int(d.get("calibration_claimed", 0)),
            extra=dict(d.get("extra", {})),
            feature=str(feature),
            confidence_weight=confidence_weight,
            token_weights=token_weights,
            token_special=tuple(int(i) for i in d.get("token_special") or ()),
        )


BASE_VIEWS: dict[str, tuple[str, ...]] = {  # the base encoder's views a gate feature reads, in order
    GateFeature.EMBEDDING: (),
    GateFeature.BASE: ("mean",),
    GateFeature.CAT: ("mean",),
    GateFeature.CAT_MAX: ("mean", "max"),
    GateFeature.CAT_PIECES: ("mean", "pieces"),
}


def feature_parts(feature: str) -> int:
    """How many embeddings a gate feature concatenates (``cat``: 2, ``cat_max``: 3)."""
    return len(BASE_VIEWS[feature]) + (feature != GateFeature.BASE)


def base_side(
    feature: str,
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    word_table: torch.Tensor,
) -> torch.Tensor | None:
    """The base encoder's part of a ``feature`` gate's row from its last states ``hidden``
    ``[B, L, H]`` (no adapter) of a padded batch: the views of :data:`BASE_VIEWS` side by side, each
    L2-normalised — ``mean``: the mean-pooled states (the base sentence embedding), ``max``: their
    element-wise maximum over the tokens (one strong word is not averaged away), ``pieces``: the mean
    of the tokens' input embeddings (``word_table[input_ids]``: what each word piece is before any
    context, so an unseen word near a support word scores near it). None for ``embedding``."""
    views = BASE_VIEWS[feature]
    if not views:
        return None
    out = []
    for view in views:
        if view == "mean":
            v = mean_pool(hidden, attention_mask)
        elif view == "max":
            keep = attention_mask.unsqueeze(-1) > 0
            v = hidden.masked_fill(~keep, -1e4).max(dim=1).values
        else:
            v = mean_pool(word_table[input_ids.long()], attention_mask)
        out.append(F.normalize(v.float(), p=2, dim=-1))
    return torch.cat(out, dim=1)


def gate_input(feature: str, parent: torch.Tensor | None, base: torch.Tensor | None) -> torch.Tensor:
    """The rows a gate of ``feature`` reads: the parent's embeddings, the base encoder's views
    (:func:`base_side`), or both side by side (centred part by part by :func:`centred`)."""
    if feature not in GATE_FEATURES:
        raise ValueError(f"gate feature must be one of {list(GATE_FEATURES)}, not {feature!r}")
    if feature == GateFeature.BASE:
        need: tuple[torch.Tensor | None, ...] = (base,)
    else:
        need = (parent,) if feature == GateFeature.EMBEDDING else (parent, base)
    if any(x is None for x in need):
        what = "both embeddings" if len(need) == 2 else "its embeddings"
        raise ValueError(f"a {feature!r} gate needs {what}")
    return torch.cat([x.float() for x in need if x is not None], dim=1)


def centred(emb: torch.Tensor, centre: torch.Tensor, parts: int = 1) -> torch.Tensor:
    """``normalise(e - c)``; with ``parts`` > 1 the row is split in equal parts, each centred and
    normalised on its own, and the concatenation divided by sqrt(parts) (unit norm again)."""
    if parts == 1:
        return F.normalize(emb.float() - centre, p=2, dim=-1)
    chunks = zip(emb.float().chunk(parts, dim=-1), centre.chunk(parts, dim=-1), strict=True)
    return torch.cat([F.normalize(e - c, p=2, dim=-1) for e, c in chunks], dim=-1) / math.sqrt(parts)


def token_bag(
    token_ids: Sequence[Sequence[int]], vocab: Sequence[int], special: Sequence[int] = ()
) -> torch.Tensor:
    """``[n, len(vocab)]``: each request's counts of the ids in ``vocab`` divided by the L2 norm of
    all its counts (every id but ``special``; ids outside ``vocab`` count in the norm only)."""
    col = {t: j for j, t in enumerate(vocab)}
    skip = set(special)
    out = torch.zeros((len(token_ids), len(vocab)))
    for i, ids in enumerate(token_ids):
        counts: dict[int, int] = {}
        for t in ids:
            if t not in skip:
                counts[t] = counts.get(t, 0) + 1
        norm = math.sqrt(sum(c * c for c in counts.values())) or 1.0
        for t, c in counts.items():
            if t in col:
                out[i, col[t]] = c / norm
    return out


def parent_confidence(logits: torch.Tensor) -> torch.Tensor:
    """The parent's largest softmax probability per row of its router ``logits`` (old routes only)."""
    return F.softmax(logits.float(), dim=-1).max(dim=-1).values


def gated_logits(
    gate: RouteGate,
    logits: torch.Tensor,
    embedding: torch.Tensor,
    base: torch.Tensor | None,
    tokens: TokenBatch | None = None,
) -> torch.Tensor:
    """``logits`` with the last column (the gated route's inert output) replaced by the gate's logit
    ``max(other logits) + κ (score − threshold)``: argmax = the gated routing. ``tokens``: the
    request batch, needed by a gate that reads word pieces."""
    others = logits[:, :-1]
    conf = parent_confidence(others) if gate.confidence_weight else None
    score = gate.scores(gate_input(gate.feature, embedding, base), conf, tokens)
    new = others.max(dim=1).values + LOGIT_SCALE[gate.kind] * (score - gate.threshold)
    return torch.cat([others, new[:, None].to(logits.dtype)], dim=1)
