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

The result is a checkpoint like any other: export it (``autoglm export``), then train the
shipped hop scorer / scope head on its embeddings (``python -m cloud.training.hop_scorer``).

    python -m cloud.training.cotrain --checkpoint IN --out OUT [--epochs 2] [--seed 0]
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
from cloud.model.autoglm_model import AutoGLMModel, mean_pool
from cloud.model.checkpoint import checkpoint_tokenizer, load_checkpoint, save_checkpoint
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
    def __init__(self, hidden_size: int, hidden: int = 128) -> None:
        super().__init__()
        self.prev = nn.Embedding(len(RELATION_NAMES) + 1, 32)
        self.hop = nn.Embedding(MAX_HOPS + 1, 16)
        self.etype = nn.Embedding(len(TYPE_NAMES), 16)
        self.state = nn.Sequential(nn.Linear(hidden_size + 64, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.msg = nn.Linear(hidden_size, hidden_size, bias=False)
        self.key = nn.Linear(hidden_size, hidden)
        self.register_buffer("adj", relation_adjacency())
        self.hidden = hidden

    def forward(
        self, q: torch.Tensor, hop: torch.Tensor, prev: torch.Tensor, etype: torch.Tensor, desc: torch.Tensor
    ) -> torch.Tensor:
        keys = self.key(desc + self.adj @ self.msg(desc))  # one message-passing round over the relation graph
        h = self.state(torch.cat([q, self.prev(prev), self.hop(hop), self.etype(etype)], dim=-1))
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
    texts, rows = question_states(default_graph(), kg)
    from cloud.data.generator import default_splits

    route_ex = [(it.text, it.route) for it in items if it.route in routes]
    router_train = default_splits()["train"]
    route_ex += [(e.text, e.route) for e in rng.sample(router_train, min(router_sample, len(router_train)))]
    desc_ids = tok.encode_ids(relation_descriptions())
    text_ids = tok.encode_ids(texts)
    route_ids = tok.encode_ids([t for t, _ in route_ex])
    route_y = torch.tensor([routes.index(r) for _, r in route_ex])
    head = CoHopHead(model.config.hidden_size)
    params = model.trainable_parameters() + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)

    def encode(ids: list[list[int]]) -> torch.Tensor:
        input_ids, mask = TextTokenizer.pad(ids)
        it, mk = torch.from_numpy(input_ids), torch.from_numpy(mask)
        return mean_pool(model.encode(it, mk), mk)

    def router_logits(pooled: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = model.adapter_set().heads["router"](pooled)
        return out

    n_steps = 0
    losses: list[float] = []
    model.train()
    for _epoch in range(epochs):
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
    metrics = {
        "steps": n_steps,
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        "epochs": epochs,
        "seed": seed,
        "hop_states": len(rows),
        "route_examples": len(route_ex),
        "seconds": round(time.perf_counter() - t0, 1),
    }
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
    args = ap.parse_args(argv)
    metrics = cotrain(args.checkpoint, args.out, epochs=args.epochs, seed=args.seed, lr=args.lr)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
