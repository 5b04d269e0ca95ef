"""Co-training of the encoder's adapters with the hop scorer and the router (LM + relation graph).

The frozen-encoder hop scorer (``cloud.training.hop_scorer``) can only read what the sentence
embedding already holds. Here the adapters (and the router head) of a checkpoint are trained
*jointly* with a hop-scoring head so the encoder learns relation-aware features:

- questions of the training paraphrase families are encoded with the entity masked; every search
  state gives (question, hop, previous relation, entity type) → next relation or STOP;
- the relation descriptions go through the *same* encoder in every step (differentiable keys),
  then one round of message passing over the relation schema graph (relation r → relations that
  can follow it: ``tail(r) ∈ head(r')``), ``k = d + Â d W`` — a small graph encoder over relation
  types (not over entities);
- loss = InfoNCE over the candidate relations + STOP (the hard negatives of the search) +
  router cross-entropy on route examples (training families + a sample of the router's own
  training split), so the router head stays a router.
- ``--entity-gnn`` (off by default): a graph encoder over the plant graph's *entities*
  (``cloud.training.entity_gnn``: 2 relation-typed R-GCN rounds, inverse relations as types of
  their own, basis-decomposed weights) is trained with it. Entity features are the encoder's
  embeddings of ``"<type>: <name>"``, computed without gradient at the start of every epoch
  (294 texts through the encoder in every step is too slow on a 2-core CPU), so gradients reach
  the adapters through the questions and the relation keys, not through the entity texts. The
  score of relation ``r`` in a search state gains ``⟨U z, k_r⟩/√d``, ``z`` the mean graph
  embedding of the state's frontier entities. The graph encoder is not exported: the shipped
  scorer is trained afterwards on the frozen co-trained encoder, so it changes what ships only
  through the adapters.

The result is a checkpoint like any other: export it (``autoglm export``), then train the
shipped hop scorer / scope head on its embeddings (``python -m cloud.training.hop_scorer``).

    python -m cloud.training.cotrain --checkpoint IN --out OUT [--epochs 2] [--seed 0] [--entity-gnn]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cloud.data.paraphrase import train_items
from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.checkpoint import checkpoint_tokenizer, load_checkpoint, save_checkpoint
from cloud.model.encoder import mean_pool
from cloud.training.entity_gnn import (
    EntityGraphEncoder,
    describe,
    entity_texts,
    frontier_pool,
    state_frontiers,
    typed_adjacency,
)
from cloud.training.hop_scorer import question_states
from contracts.logging import get_logger
from contracts.tokenizer import TextTokenizer
from skillpack.kg.graph import default_graph
from skillpack.kg.hop_features import MAX_HOPS, RELATION_NAMES, STOP_INDEX, TYPE_NAMES, relation_descriptions
from skillpack.kg.schema import RELATIONS

log = get_logger("autoglm.cloud.training.cotrain")


def relation_adjacency() -> torch.Tensor:
    """Row-normalised adjacency over relations + STOP: r → r' when r' can follow r."""
    n = len(RELATION_NAMES) + 1
    a = torch.eye(n)
    for i, r in enumerate(RELATION_NAMES):
        for j, r2 in enumerate(RELATION_NAMES):
            if RELATIONS[r].tail in RELATIONS[r2].head:
                a[i, j] = a[j, i] = 1.0
        a[i, STOP_INDEX] = a[STOP_INDEX, i] = 1.0
    return a / a.sum(dim=1, keepdim=True)


class CoHopHead(nn.Module):
    """Hop scorer of co-training; with ``entity_dim`` the score of relation ``r`` also gets
    ``⟨U z, k_r⟩/√hidden`` from the frontier's graph embedding ``z`` (``--entity-gnn``)."""

    def __init__(self, hidden_size: int, hidden: int = 128, entity_dim: int | None = None) -> None:
        super().__init__()
        self.prev = nn.Embedding(len(RELATION_NAMES) + 1, 32)
        self.hop = nn.Embedding(MAX_HOPS + 1, 16)
        self.etype = nn.Embedding(len(TYPE_NAMES), 16)
        self.state = nn.Sequential(nn.Linear(hidden_size + 64, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.msg = nn.Linear(hidden_size, hidden_size, bias=False)
        self.key = nn.Linear(hidden_size, hidden)
        self.register_buffer("adj", relation_adjacency())
        self.hidden = hidden
        self.entity = nn.Linear(entity_dim, hidden, bias=False) if entity_dim is not None else None

    def forward(
        self,
        q: torch.Tensor,
        hop: torch.Tensor,
        prev: torch.Tensor,
        etype: torch.Tensor,
        desc: torch.Tensor,
        ent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        keys = self.key(desc + self.adj @ self.msg(desc))  # one message-passing round over the relation graph
        h = self.state(torch.cat([q, self.prev(prev), self.hop(hop), self.etype(etype)], dim=-1))
        if self.entity is not None:
            if ent is None:
                raise ValueError("this head reads the frontier's graph embedding: pass ent")
            h = h + self.entity(ent)  # ⟨s, k_r⟩ + ⟨U z, k_r⟩
        out: torch.Tensor = h @ keys.T / math.sqrt(self.hidden)
        return out


def cotrain(
    ckpt_in: Path,
    out: Path,
    *,
    epochs: int = 2,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 1e-3,
    router_sample: int = 1500,
    hop_weight: float = 1.0,
    kg_per_pattern: int = 24,
    entity_gnn: bool = False,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    model, meta = load_checkpoint(ckpt_in)
    aset_name = model.active
    assert aset_name is not None
    routes = list(model.adapter_set().routes)
    tok = checkpoint_tokenizer(meta)
    items = train_items(seed=0, kg_per_pattern=kg_per_pattern)
    kg = [it for it in items if it.kind == "kg"]
    graph = default_graph()
    texts, rows = question_states(graph, kg)
    from cloud.data.generator import default_splits

    route_ex = [(it.text, it.route) for it in items if it.route in routes]
    router_train = default_splits()["train"]
    route_ex += [(e.text, e.route) for e in rng.sample(router_train, min(router_sample, len(router_train)))]
    desc_ids = tok.encode_ids(relation_descriptions())
    text_ids = tok.encode_ids(texts)
    route_ids = tok.encode_ids([t for t, _ in route_ex])
    route_y = torch.tensor([routes.index(r) for _, r in route_ex])
    gnn: EntityGraphEncoder | None = None
    if entity_gnn:
        ent_ids, ent_texts = entity_texts(graph)
        ent_tok = tok.encode_ids(ent_texts)
        frontiers = state_frontiers(graph, kg)
        if len(frontiers) != len(rows):
            raise RuntimeError("frontiers and search states disagree")
        pool = frontier_pool(frontiers, {e: k for k, e in enumerate(ent_ids)}, len(ent_ids))
        gnn = EntityGraphEncoder(model.config.hidden_size, typed_adjacency(graph, ent_ids))
        head = CoHopHead(model.config.hidden_size, entity_dim=gnn.dim)
        params = model.trainable_parameters() + list(head.parameters()) + list(gnn.parameters())
    else:
        head = CoHopHead(model.config.hidden_size)
        params = model.trainable_parameters() + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)

    def encode(ids: list[list[int]]) -> torch.Tensor:
        input_ids, mask = TextTokenizer.pad(ids)
        it, mk = torch.from_numpy(input_ids), torch.from_numpy(mask)
        return mean_pool(model.encode(it, mk), mk)

    def entity_features() -> torch.Tensor:
        """The entities' initial features from the current adapters (eval mode, no gradient)."""
        model.eval()
        with torch.no_grad():
            feats = torch.cat([encode(ent_tok[k : k + 64]) for k in range(0, len(ent_tok), 64)])
        model.train()
        return F.normalize(feats, dim=-1)

    def router_logits(pooled: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model.adapter_set().heads["router"](pooled)
        return out

    n_steps = 0
    losses: list[float] = []
    model.train()
    for _epoch in range(epochs):
        feats = entity_features() if gnn is not None else None
        order = list(range(len(rows)))
        rng.shuffle(order)
        r_order = list(range(len(route_ex)))
        rng.shuffle(r_order)
        n_batches = math.ceil(len(order) / batch_size)
        r_bs = max(1, math.ceil(len(r_order) / n_batches))
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            sel = [rows[i] for i in idx]
            uniq = sorted({r[0] for r in sel})
            pos = {t: k for k, t in enumerate(uniq)}
            q = F.normalize(encode([text_ids[t] for t in uniq]), dim=-1)
            desc = F.normalize(encode(desc_ids), dim=-1)
            logits = head(
                q[[pos[r[0]] for r in sel]],
                torch.tensor([r[1] for r in sel]),
                torch.tensor([r[2] for r in sel]),
                torch.tensor([r[3] for r in sel]),
                desc,
                pool[idx] @ gnn(feats) if gnn is not None and feats is not None else None,
            )
            mask = torch.from_numpy(np.stack([r[4] for r in sel]).astype(bool))
            hop_loss = F.cross_entropy(logits.masked_fill(~mask, -1e4), torch.tensor([r[5] for r in sel]))
            ridx = r_order[b * r_bs : (b + 1) * r_bs]
            route_loss = (
                F.cross_entropy(router_logits(encode([route_ids[i] for i in ridx])), route_y[ridx])
                if ridx
                else torch.zeros(())
            )
            loss = hop_weight * hop_loss + route_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            n_steps += 1
            losses.append(float(loss.detach()))
            if n_steps % 20 == 0:
                log.info(
                    "cotrain step %d/%d loss %.4f", n_steps, epochs * n_batches, float(np.mean(losses[-20:]))
                )
                print(
                    f"cotrain step {n_steps}/{epochs * n_batches} loss {np.mean(losses[-20:]):.4f} "
                    f"{time.perf_counter() - t0:.0f}s",
                    flush=True,
                )
    model.eval()
    metrics: dict[str, Any] = {
        "steps": n_steps,
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        "epochs": epochs,
        "seed": seed,
        "hop_states": len(rows),
        "route_examples": len(route_ex),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if gnn is not None:
        metrics["entity_gnn"] = describe(gnn)
    _save(model, meta, out, metrics)
    return metrics


def _save(model: AutoGLMModel, meta: Any, out: Path, metrics: dict[str, Any]) -> None:
    save_checkpoint(
        model,
        out,
        base_path=Path(meta.base_path),
        base_hash=meta.base_sha256,
        base_id=meta.base_id,
        tokenizer=meta.tokenizer,
        training={**meta.training, "cotrain": metrics},
        metrics=meta.metrics,
        temperatures={n: i.temperature for n, i in meta.adapter_sets.items()},
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Co-train a checkpoint's adapters with the hop scorer and the router."
    )
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--entity-gnn",
        action="store_true",
        help="Also train a relation-typed graph encoder over the plant graph's entities (off by default).",
    )
    args = ap.parse_args(argv)
    metrics = cotrain(
        args.checkpoint, args.out, epochs=args.epochs, seed=args.seed, lr=args.lr, entity_gnn=args.entity_gnn
    )
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
