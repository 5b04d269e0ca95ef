"""Learned heads of the edge reasoner, on top of the bundle encoder's sentence embeddings.

:class:`HopScorer` scores the candidate relations (and STOP) of the knowledge-graph path search.
It compares a *question state* with the encoder's embeddings of the relation descriptions
(``skillpack.kg.hop_features.relation_descriptions``, baked into the graph as a constant), so a
relation is recognised by meaning, not by cue words (there is no cue-word input):

    u      = question embedding, or — with ``fusion`` — a sigmoid-gated fusion of the utterance
             embedding and the character granularity (hashed character / CJK n-grams):
             g = σ(W_g [q; P_c c]),  u = g ⊙ q + (1 − g) ⊙ P_c c
    h      = MLP([u; prev relation; hop; current entity type])
    key_r  = P_d d_r + e_r                        (d_r: encoder embedding of relation r's description)
    logit_r = <h, key_r> / √H
    adaptive question↔relation graph (``adaptive``): A = RBF(q̂, d̂_r) = exp(−‖q̂ − d̂_r‖² / 2σ²),
             W = softplus(w_r + V h) (learned edge weights), A' = softmax_r(A ⊙ W);
             logit_r += α · log A'_r
    answer type (``answer_type``): t = softmax(W_t u) over entity types (the type the question
             asks for); logit_STOP += β · log t[current entity type], so a path may only stop
             at an entity of the asked-for type (trained with an auxiliary cross-entropy on t)

Inputs (one row per search state):
    question_embedding  float32 [B, D]   the encoder's embedding of the masked question
    char_grams          float32 [B, C]   ``hop_features.char_grams`` of the masked question
    hop                 int64   [B]
    prev_relation       int64   [B]      ``STOP_INDEX`` = none
    entity_type         int64   [B]
Output:
    relation_logits     float32 [B, R + 1]  (last column = STOP)

:class:`ScopeHead` gives the logit of "unsure" (nonsense / out of scope) from the router's
embedding of the raw question and its character granularity; the agent abstains above a
threshold calibrated on out-of-fold training families.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from skillpack.kg.hop_features import (
    CHAR_DIM,
    MAX_HOPS,
    RELATION_NAMES,
    STOP_INDEX,
    TYPE_NAMES,
    masked_question,
)

__all__ = [
    "CHAR_DIM",
    "MAX_HOPS",
    "RELATION_NAMES",
    "STOP_INDEX",
    "TYPE_NAMES",
    "GatedFusion",
    "HopScorer",
    "ScopeHead",
    "masked_question",
]


class GatedFusion(nn.Module):
    """Utterance embedding ⊕ character granularity, mixed by a sigmoid gate per dimension."""

    def __init__(self, embed_dim: int, char_dim: int) -> None:
        super().__init__()
        self.char = nn.Linear(char_dim, embed_dim)
        self.gate = nn.Linear(2 * embed_dim, embed_dim)

    def forward(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        cp = torch.tanh(self.char(c))
        g = torch.sigmoid(self.gate(torch.cat([q, cp], dim=-1)))
        out: torch.Tensor = g * q + (1.0 - g) * cp
        return out


class HopScorer(nn.Module):
    rel_desc: torch.Tensor
    stop_onehot: torch.Tensor

    def __init__(
        self,
        relation_embeddings: torch.Tensor,
        hidden: int = 128,
        dropout: float = 0.1,
        embed_dropout: float = 0.2,
        fusion: bool = False,
        adaptive: bool = False,
        char_dim: int = CHAR_DIM,
        answer_type: bool = False,
    ) -> None:
        super().__init__()
        n_out, embed_dim = relation_embeddings.shape
        if n_out != len(RELATION_NAMES) + 1:
            raise ValueError(f"need {len(RELATION_NAMES) + 1} relation/STOP embeddings, got {n_out}")
        self.embed_dim, self.hidden, self.char_dim = embed_dim, hidden, char_dim
        self.use_fusion, self.use_adaptive, self.use_answer_type = fusion, adaptive, answer_type
        d = nn.functional.normalize(relation_embeddings.float(), dim=-1)
        self.register_buffer("rel_desc", d)  # exported as a constant of the graph
        self.embed_drop = nn.Dropout(embed_dropout)
        self.fusion = GatedFusion(embed_dim, char_dim) if fusion else None
        self.prev = nn.Embedding(len(RELATION_NAMES) + 1, 32)
        self.hop = nn.Embedding(MAX_HOPS + 1, 16)
        self.etype = nn.Embedding(len(TYPE_NAMES), 16)
        self.state = nn.Sequential(
            nn.Linear(embed_dim + 64, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden)
        )
        self.key = nn.Linear(embed_dim, hidden)
        self.rel_bias = nn.Embedding(n_out, hidden)
        nn.init.normal_(self.rel_bias.weight, std=0.02)
        if answer_type:  # expected answer type from the question; STOP pays for reaching another type
            self.type_head = nn.Linear(embed_dim, len(TYPE_NAMES))
            self.type_weight = nn.Parameter(torch.tensor(1.0))
            stop = torch.zeros(n_out)
            stop[STOP_INDEX] = 1.0
            self.register_buffer("stop_onehot", stop)
        if adaptive:
            self.log_sigma = nn.Parameter(torch.zeros(()))
            self.edge_w = nn.Parameter(torch.zeros(n_out))
            self.edge_v = nn.Linear(hidden, n_out)
            self.alpha = nn.Parameter(torch.tensor(1.0))

    def forward(
        self,
        question_embedding: torch.Tensor,
        char_grams: torch.Tensor,
        hop: torch.Tensor,
        prev_relation: torch.Tensor,
        entity_type: torch.Tensor,
    ) -> torch.Tensor:
        q = self.embed_drop(question_embedding)
        u = self.fusion(q, char_grams) if self.fusion is not None else q
        h = self.state(
            torch.cat(
                [u, self.prev(prev_relation), self.hop(hop.clamp(0, MAX_HOPS)), self.etype(entity_type)],
                dim=-1,
            )
        )
        keys = self.key(self.rel_desc) + self.rel_bias.weight  # [R+1, H]
        logits = h @ keys.T / math.sqrt(self.hidden)
        if self.use_adaptive:
            qn = nn.functional.normalize(question_embedding, dim=-1)
            dist2 = (2.0 - 2.0 * qn @ self.rel_desc.T).clamp(min=0.0)  # ‖q̂ − d̂‖² of unit vectors
            a = torch.exp(-dist2 / (2.0 * torch.exp(self.log_sigma) ** 2))
            w = nn.functional.softplus(self.edge_w + self.edge_v(h))
            logits = logits + self.alpha * torch.log_softmax(a * w, dim=-1)
        if self.use_answer_type:
            compat = torch.log_softmax(self.type_head(u), dim=-1).gather(1, entity_type[:, None])[:, 0]
            logits = logits + (self.type_weight * compat)[:, None] * self.stop_onehot
        out: torch.Tensor = logits
        return out

    def answer_type_logits(self, question_embedding: torch.Tensor, char_grams: torch.Tensor) -> torch.Tensor:
        """The expected answer type (auxiliary training target)."""
        q = self.embed_drop(question_embedding)
        u = self.fusion(q, char_grams) if self.fusion is not None else q
        out: torch.Tensor = self.type_head(u)
        return out


class ScopeHead(nn.Module):
    """Logit of "unsure": the request is nonsense or outside every route."""

    def __init__(
        self, embed_dim: int, hidden: int = 64, char_dim: int = CHAR_DIM, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.embed_dim, self.char_dim = embed_dim, char_dim
        self.fusion = GatedFusion(embed_dim, char_dim)
        self.mlp = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, 1)
        )

    def forward(self, question_embedding: torch.Tensor, char_grams: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(self.fusion(question_embedding, char_grams))[:, 0]
        return out


def type_index(entity_type: str) -> int:
    return TYPE_NAMES.index(entity_type)


CHAR_MODES = ("gated", "cjk")


class PathScorer(nn.Module):
    """Scores whole relation paths (schema ``autoglm.hop_scorer/3``): one logit per path of
    ``skillpack.kg.hop_features.all_schema_paths`` (the empty path = describe the entity), masked
    to the paths that leave the question's start type.

        z_P     = <q̂, v̂_P^en>, <q̂, v̂_P^zh>     cosine with the encoder's embeddings of the path's
                                                  verbalisations (zero-shot evidence)
        k_P     = W_v v_P + Σ_i E[r_i, i] + L[|P|]  (compositional key: relation at position i)
        logit_P = τ · z_P + <W_q q, k_P> / √H     (+ −1e4 where P does not leave the start type)

    With ``char_dim`` > 0 (character granularity, an extra graph input ``char_grams`` [B, C]):
    ``char_mode`` "gated" reads ``GatedFusion(q, char_grams)`` instead of q; "cjk" (Chinese
    characters and pairs only) adds ``W_c char_grams`` to ``W_q q``.

    ``zero_shot_only`` keeps only τ · z_P (τ learned). Trained with InfoNCE over the paths that
    really leave the start entity; the edge marginalises the path distribution into per-hop
    relation / STOP probabilities for the beam search.
    """

    path_en: torch.Tensor
    path_zh: torch.Tensor
    path_rel: torch.Tensor
    path_len: torch.Tensor
    type_mask: torch.Tensor
    path_proto: torch.Tensor
    rel_keys: torch.Tensor
    path_relmat: torch.Tensor

    def __init__(
        self,
        path_en: torch.Tensor,
        path_zh: torch.Tensor,
        path_rel: torch.Tensor,
        path_len: torch.Tensor,
        type_mask: torch.Tensor,
        path_proto: torch.Tensor | None = None,
        hidden: int = 128,
        embed_dropout: float = 0.2,
        zero_shot_only: bool = False,
        relation_keys: torch.Tensor | None = None,
        char_dim: int = 0,
        char_mode: str = "gated",
    ) -> None:
        super().__init__()
        n_paths, embed_dim = path_en.shape
        self.embed_dim, self.hidden, self.n_paths, self.zero_shot_only = (
            embed_dim,
            hidden,
            n_paths,
            zero_shot_only,
        )
        self.register_buffer("path_en", nn.functional.normalize(path_en.float(), dim=-1))
        self.register_buffer("path_zh", nn.functional.normalize(path_zh.float(), dim=-1))
        self.register_buffer("path_rel", path_rel.long())  # [P, MAX_HOPS], STOP_INDEX = padding
        self.register_buffer("path_len", path_len.long())
        self.register_buffer("type_mask", type_mask.float())  # [T, P] 0 where P leaves type T, else -1e4
        proto = (
            torch.zeros_like(path_en)
            if path_proto is None
            else nn.functional.normalize(path_proto.float(), dim=-1)
        )
        self.register_buffer("path_proto", proto)  # training-family compositions of each path (zeros: unused)
        self.tau = nn.Parameter(torch.tensor([10.0, 10.0, 10.0 if path_proto is not None else 0.0]))
        # phrase granularity: relation evidence = best window of the question for the relation's key phrases
        self.use_phrases = relation_keys is not None
        if relation_keys is not None:
            n_rel = len(RELATION_NAMES)
            keys = nn.functional.normalize(relation_keys.float(), dim=-1).reshape(n_rel, -1, embed_dim)
            self.register_buffer("rel_keys", keys)  # [R, K, D]
            counts = torch.zeros(n_paths, n_rel)
            for i in range(n_paths):
                for j in range(MAX_HOPS):
                    if int(path_rel[i, j]) < n_rel:
                        counts[i, int(path_rel[i, j])] += 1.0
            self.register_buffer("path_relmat", counts.clamp(max=1.0))  # [P, R]
            self.phrase_weight = nn.Parameter(torch.tensor(5.0))
            self.phrase_bias = nn.Parameter(torch.full((n_rel,), 0.5))
        self.embed_drop = nn.Dropout(embed_dropout)
        # character granularity (``char_dim`` > 0): hashed characters / character pairs of the
        # masked question (``hop_features.char_grams``; Chinese characters the bundled MiniLM
        # vocabulary lacks). "gated": every n-gram, gated into the question vector the keys read;
        # "cjk": Chinese characters and pairs only, a residual on the question state (zero-initialised)
        if char_mode not in CHAR_MODES:
            raise ValueError(f"char_mode {char_mode!r}: one of {CHAR_MODES}")
        self.char_dim = 0 if zero_shot_only else char_dim
        self.char_mode = char_mode
        if self.char_dim and char_mode == "gated":
            self.fusion = GatedFusion(embed_dim, self.char_dim)
        elif self.char_dim:
            self.char_proj = nn.Linear(self.char_dim, hidden)
            nn.init.zeros_(self.char_proj.weight)
            nn.init.zeros_(self.char_proj.bias)
        if not zero_shot_only:
            self.q_proj = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
            self.v_proj = nn.Linear(embed_dim, hidden)
            self.rel_pos = nn.Embedding((len(RELATION_NAMES) + 1) * MAX_HOPS, hidden)
            self.len_emb = nn.Embedding(MAX_HOPS + 1, hidden)
            nn.init.normal_(self.rel_pos.weight, std=0.02)
            nn.init.normal_(self.len_emb.weight, std=0.02)

    def forward(
        self,
        question_embedding: torch.Tensor,
        start_type: torch.Tensor,
        window_embeddings: torch.Tensor | None = None,
        window_mask: torch.Tensor | None = None,
        char_grams: torch.Tensor | None = None,
    ) -> torch.Tensor:
        qn = nn.functional.normalize(question_embedding, dim=-1)
        logits = (
            self.tau[0] * (qn @ self.path_en.T)
            + self.tau[1] * (qn @ self.path_zh.T)
            + self.tau[2] * (qn @ self.path_proto.T)
        )
        if not self.zero_shot_only:
            pos = torch.arange(MAX_HOPS, device=self.path_rel.device)[None, :]
            keys = (
                self.v_proj(self.path_en + self.path_zh)
                + self.rel_pos(self.path_rel * MAX_HOPS + pos).sum(1)
                + self.len_emb(self.path_len)
            )
            u = self.embed_drop(question_embedding)
            if self.char_dim and char_grams is None:
                raise ValueError("this path scorer reads char_grams")
            if self.char_dim and self.char_mode == "gated":
                u = self.fusion(u, char_grams)
            h = self.q_proj(u)
            if self.char_dim and self.char_mode == "cjk":
                h = h + self.char_proj(char_grams)
            logits = logits + h @ keys.T / math.sqrt(self.hidden)
        if self.use_phrases and window_embeddings is not None and window_mask is not None:
            wn = nn.functional.normalize(window_embeddings, dim=-1)  # [B, W, D]
            sim = torch.einsum("bwd,rkd->bwrk", wn, self.rel_keys).amax(-1)  # [B, W, R]
            sim = sim + (window_mask[:, :, None] - 1.0) * 10.0  # padding windows never win
            evidence = self.phrase_weight * (sim.amax(1) - self.phrase_bias)  # [B, R]
            logits = logits + evidence @ self.path_relmat.T
        out: torch.Tensor = logits + self.type_mask[start_type]
        return out


class ScopeGate(nn.Module):
    """Logit of "unsure" (schema ``autoglm.scope_head/2``) from two signals that do not learn the
    training nonsense itself: how far the request is from every in-scope training request
    (the highest cosine to a bank of their embeddings, a constant of the graph) and how sure the
    keyword router is (its confidence, computed on the edge from the text):

        s = max_i <q̂, b̂_i>,   logit = w0 + w1 · s + w2 · keyword_confidence
    """

    bank: torch.Tensor

    def __init__(self, bank: torch.Tensor, weights: torch.Tensor) -> None:
        super().__init__()
        self.embed_dim = int(bank.shape[1])
        self.register_buffer("bank", nn.functional.normalize(bank.float(), dim=-1))
        self.w = nn.Parameter(weights.float().clone())  # [3]

    def max_similarity(self, question_embedding: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = (nn.functional.normalize(question_embedding, dim=-1) @ self.bank.T).amax(-1)
        return out

    def forward(self, question_embedding: torch.Tensor, keyword_confidence: torch.Tensor) -> torch.Tensor:
        s = self.max_similarity(question_embedding)
        out: torch.Tensor = self.w[0] + self.w[1] * s + self.w[2] * keyword_confidence
        return out


def bank_features(
    question_embedding: torch.Tensor,
    bank: torch.Tensor,
    centroids: torch.Tensor,
    names: list[str],
    top_k: int = 5,
) -> torch.Tensor:
    """The embedding features of the scope gate /3, ``names`` ⊂ (``top1``, ``top5``,
    ``centroid``): highest cosine to the (normalised) bank, mean of its ``top_k`` (≤ bank size)
    highest, highest cosine to the (normalised) route centroids. [B, len(names)]"""
    q = nn.functional.normalize(question_embedding, dim=-1)
    sims = q @ bank.T
    cols = []
    for name in names:
        if name == "top1":
            cols.append(sims.amax(-1))
        elif name == "top5":
            cols.append(torch.topk(sims, top_k, dim=-1).values.mean(-1))
        elif name == "centroid":
            cols.append((q @ centroids.T).amax(-1))
        else:
            raise ValueError(f"unknown embedding feature {name!r}")
    return torch.stack(cols, dim=-1)


class ScopeGate3(nn.Module):
    """Logit of "unsure" (schema ``autoglm.scope_head/3``) from a small feature vector: embedding
    features against constants of the graph (``bank_features``: the in-scope training requests'
    embeddings and their route centroids) followed by text features the edge computes
    (``skillpack.kg.scope_features``), standardised with the training mean / sd, into a logistic
    regression (``weights`` = [bias, w…]) or a tiny MLP (``mlp``)."""

    bank: torch.Tensor
    centroids: torch.Tensor
    mean: torch.Tensor
    sd: torch.Tensor

    def __init__(
        self,
        bank: torch.Tensor,
        centroids: torch.Tensor,
        embedding_features: list[str],
        text_features: list[str],
        mean: torch.Tensor,
        sd: torch.Tensor,
        weights: torch.Tensor | None = None,
        mlp: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if (weights is None) == (mlp is None):
            raise ValueError("give exactly one of weights (logistic) or mlp")
        self.embed_dim = int(bank.shape[1])
        self.top_k = min(5, int(bank.shape[0]))
        self.embedding_features = list(embedding_features)
        self.text_features = list(text_features)
        self.register_buffer("bank", nn.functional.normalize(bank.float(), dim=-1))
        self.register_buffer("centroids", nn.functional.normalize(centroids.float(), dim=-1))
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("sd", sd.float().clone())
        self.w = nn.Parameter(weights.float().clone()) if weights is not None else None
        self.mlp = mlp

    def features(self, question_embedding: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        parts = [text_features.float()]
        if self.embedding_features:
            parts.insert(
                0,
                bank_features(
                    question_embedding, self.bank, self.centroids, self.embedding_features, self.top_k
                ),
            )
        return torch.cat(parts, dim=-1)

    def forward(self, question_embedding: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        x = (self.features(question_embedding, text_features) - self.mean) / self.sd
        if self.w is not None:
            out: torch.Tensor = self.w[0] + x @ self.w[1:]
            return out
        assert self.mlp is not None
        mlp_out: torch.Tensor = self.mlp(x)[:, 0]
        return mlp_out
