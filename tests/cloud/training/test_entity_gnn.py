"""The entity graph encoder of co-training: relation-typed aggregation that keeps each relation's
direction, an R-GCN round equal to its written formula, frontiers in the search states' order."""

from __future__ import annotations

import torch

from cloud.data.paraphrase import train_items
from cloud.training.entity_gnn import (
    EntityGraphEncoder,
    RelationalLayer,
    entity_texts,
    frontier_pool,
    state_frontiers,
    typed_adjacency,
)
from cloud.training.hop_scorer import question_states
from skillpack.kg.graph import Entity, KnowledgeGraph, default_graph
from skillpack.kg.hop_features import RELATION_NAMES, TYPE_NAMES


def _tiny_graph() -> KnowledgeGraph:
    ents = [
        Entity("machine:a", "machine", "Press A", "压机A", ()),
        Entity("machine:b", "machine", "Press B", "压机B", ()),
        Entity("person:p", "person", "Pat", "帕特", ()),
        Entity("line:l", "line", "Line 1", "一线", ()),
    ]
    triples = [
        ("machine:a", "maintained_by", "person:p"),
        ("machine:b", "maintained_by", "person:p"),
        ("machine:a", "located_on_line", "line:l"),
    ]
    return KnowledgeGraph(ents, triples)


def test_each_relation_and_its_inverse_is_a_type_with_its_direction() -> None:
    g = _tiny_graph()
    ids, texts = entity_texts(g)
    assert texts[ids.index("person:p")] == "person: Pat"
    a = typed_adjacency(g, ids)
    n_rel = len(RELATION_NAMES)
    m = RELATION_NAMES.index("maintained_by")
    a_, b_, p_, l_ = (ids.index(e) for e in ("machine:a", "machine:b", "person:p", "line:l"))
    assert a.shape == (2 * n_rel, 4, 4)
    assert a[m, a_, p_] == 1.0 and a[m, p_, a_] == 0.0  # a machine reads its maintainer, not back
    assert a[n_rel + m, p_, a_] == 0.5 and a[n_rel + m, p_, b_] == 0.5  # the inverse: mean over 2
    assert a[n_rel + m, a_, p_] == 0.0
    assert a[:, :, l_].sum() == 1.0 and a[RELATION_NAMES.index("located_on_line"), a_, l_] == 1.0
    assert float(a.sum()) == 5.0  # 3 rows of forward types + person (sums to 1) + line (1)


def test_relational_round_equals_its_formula_and_ignores_non_neighbours() -> None:
    torch.manual_seed(0)
    g = _tiny_graph()
    ids, _ = entity_texts(g)
    adj = typed_adjacency(g, ids)
    enc = EntityGraphEncoder(8, adj, dim=6, layers=1, n_bases=3)
    layer = enc.layers[0]
    assert isinstance(layer, RelationalLayer)
    h = torch.randn(4, 6)
    out = layer(h, (enc.row, enc.col, enc.val))
    w = torch.einsum("rb,bde->rde", layer.coeff, layer.bases)
    ref = layer.self_loop(h) + sum(adj[r] @ h @ w[r] for r in range(adj.shape[0]))
    assert torch.allclose(out, ref, atol=1e-5)
    # the line has no edge to machine:b: changing it leaves machine:b alone, moves machine:a
    h2 = h.clone()
    h2[ids.index("line:l")] += 1.0
    out2 = layer(h2, (enc.row, enc.col, enc.val))
    assert torch.equal(out2[ids.index("machine:b")], out[ids.index("machine:b")])
    assert not torch.allclose(out2[ids.index("machine:a")], out[ids.index("machine:a")])
    # silencing located_on_line (not its inverse) cuts the line off from machine:a
    with torch.no_grad():
        layer.coeff[RELATION_NAMES.index("located_on_line")] = 0.0
    out3, out4 = layer(h, (enc.row, enc.col, enc.val)), layer(h2, (enc.row, enc.col, enc.val))
    assert torch.allclose(out3[ids.index("machine:a")], out4[ids.index("machine:a")])


def test_two_rounds_reach_two_hops_and_gradients_reach_every_weight() -> None:
    torch.manual_seed(0)
    g = _tiny_graph()
    ids, _ = entity_texts(g)
    enc = EntityGraphEncoder(5, typed_adjacency(g, ids), dim=4, layers=2, n_bases=2)
    x = torch.randn(4, 5)
    x2 = x.clone()
    x2[ids.index("line:l")] += 1.0  # line → machine:a → person:p (via maintained_by⁻¹): two hops
    assert not torch.allclose(enc(x)[ids.index("person:p")], enc(x2)[ids.index("person:p")])
    enc(x).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_frontiers_follow_the_search_states_row_by_row() -> None:
    g = default_graph()
    kg = [it for it in train_items(seed=0, kg_per_pattern=2) if it.kind == "kg"][:40]
    _, rows = question_states(g, kg)
    frontiers = state_frontiers(g, kg)
    assert len(frontiers) == len(rows) and any(r[1] > 0 for r in rows)
    for f, r in zip(frontiers, rows, strict=True):
        assert f and TYPE_NAMES.index(g.entities[f[0]].type) == r[3]
    ids, _ = entity_texts(g)
    pool = frontier_pool(frontiers, {e: k for k, e in enumerate(ids)}, len(ids))
    assert torch.allclose(pool.sum(1), torch.ones(len(frontiers)))
