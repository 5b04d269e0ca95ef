"""A relation-typed graph encoder over the plant graph's entities (R-GCN), for co-training.

``cloud.training.cotrain --entity-gnn`` reads it: every entity of the graph starts from the
encoder's embedding of ``"<type>: <name>"`` (``entity_texts``), then ``EntityGraphEncoder`` runs
two rounds of message passing

    h' = σ(W0 h + Σ_r Σ_{j ∈ N_r(i)} (1/|N_r(i)|) W_r h_j)

over every triple of the graph, each relation and its inverse a type of its own (``N_r(i)`` of
``r`` = the tails of ``i``'s ``r`` triples; of ``r⁻¹`` = their heads), ``W_r`` a mix of a few
shared bases (basis decomposition). The hop head then reads the mean embedding of the search
state's frontier entities (``state_frontiers``). The graph's structure is what the edge has, so
messages pass over all entities (evaluation ones too); only training questions are trained on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cloud.data.paraphrase import ParaItem
from skillpack.kg.graph import KnowledgeGraph
from skillpack.kg.hop_features import RELATION_NAMES


def entity_texts(graph: KnowledgeGraph) -> tuple[list[str], list[str]]:
    """Entity ids (graph order) and the text each one's initial feature is embedded from."""
    ids = list(graph.entities)
    return ids, [f"{graph.entities[e].type}: {graph.entities[e].name}" for e in ids]


def typed_adjacency(graph: KnowledgeGraph, ids: list[str]) -> torch.Tensor:
    """``[2R, N, N]`` mean-aggregation matrices: row ``i`` of type ``r`` averages over
    ``N_r(i)``; types ``0..R-1`` follow a relation head → tail (``i`` reads its tails), types
    ``R..2R-1`` are the inverses (a tail reads its heads). Rows without neighbours are zero."""
    pos = {e: k for k, e in enumerate(ids)}
    n_rel = len(RELATION_NAMES)
    a = torch.zeros(2 * n_rel, len(ids), len(ids))
    for h, r, t in graph.triples:
        k = RELATION_NAMES.index(r)
        a[k, pos[h], pos[t]] = 1.0
        a[n_rel + k, pos[t], pos[h]] = 1.0
    deg = a.sum(dim=2, keepdim=True)
    return a / deg.clamp(min=1.0)


class RelationalLayer(nn.Module):
    """One R-GCN round with basis-decomposed relation weights ``W_r = Σ_b a_rb V_b``. The sum is
    taken bases-first, ``Σ_b (Σ_r a_rb m_r) V_b`` with ``m_r`` the per-type neighbour means —
    the same value, without one ``d × d`` product per type."""

    def __init__(self, dim: int, n_types: int, n_bases: int) -> None:
        super().__init__()
        self.self_loop = nn.Linear(dim, dim)
        self.bases = nn.Parameter(torch.randn(n_bases, dim, dim) / dim**0.5)
        self.coeff = nn.Parameter(torch.randn(n_types, n_bases) / n_bases**0.5)

    def forward(
        self, h: torch.Tensor, edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        row, col, val = edges  # row = type * N + i, col = j, val = 1/|N_r(i)|
        n, n_types = h.shape[0], self.coeff.shape[0]
        neigh = torch.zeros(n_types * n, h.shape[1], dtype=h.dtype).index_add_(0, row, h[col] * val[:, None])
        mixed = torch.einsum("rb,rid->bid", self.coeff, neigh.view(n_types, n, -1))
        out: torch.Tensor = self.self_loop(h) + torch.einsum("bid,bde->ie", mixed, self.bases)
        return out


class EntityGraphEncoder(nn.Module):
    """Input projection + ``layers`` relational rounds (ReLU between rounds, none after the last)
    over the ``[types, N, N]`` aggregation matrices of ``typed_adjacency``."""

    row: torch.Tensor
    col: torch.Tensor
    val: torch.Tensor

    def __init__(
        self, in_dim: int, adj: torch.Tensor, dim: int = 128, layers: int = 2, n_bases: int = 4
    ) -> None:
        super().__init__()
        t, i, j = adj.nonzero(as_tuple=True)
        self.register_buffer("row", t * adj.shape[1] + i)
        self.register_buffer("col", j)
        self.register_buffer("val", adj[t, i, j])
        self.n_types, self.n_entities = int(adj.shape[0]), int(adj.shape[1])
        self.proj = nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList(RelationalLayer(dim, self.n_types, n_bases) for _ in range(layers))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        edges = (self.row, self.col, self.val)
        h = self.proj(x)
        for k, layer in enumerate(self.layers):
            h = layer(h, edges)
            if k < len(self.layers) - 1:
                h = F.relu(h)
        return h


def state_frontiers(graph: KnowledgeGraph, items: list[ParaItem]) -> list[list[str]]:
    """The frontier entities of every search state, in ``question_states``' row order (no
    augmentation): the start entity at hop 0, then the entities reached along the gold path."""
    out: list[list[str]] = []
    for q in items:
        frontier = [q.start]
        for hop in range(len(q.path) + 1):
            out.append(list(frontier))
            if hop < len(q.path):
                frontier = graph.follow(frontier[0], [q.path[hop]])
    return out


def frontier_pool(frontiers: list[list[str]], pos: dict[str, int], n: int) -> torch.Tensor:
    """``[rows, N]`` matrix whose product with the entity embeddings is each row's frontier mean."""
    m = torch.zeros(len(frontiers), n)
    for i, f in enumerate(frontiers):
        for e in f:
            m[i, pos[e]] = 1.0 / len(f)
    return m


def describe(enc: EntityGraphEncoder) -> dict[str, Any]:
    return {
        "entities": enc.n_entities,
        "types": enc.n_types,
        "edges": int(enc.row.numel()),
        "dim": enc.dim,
        "layers": len(enc.layers),
        "params": sum(p.numel() for p in enc.parameters()),
    }
