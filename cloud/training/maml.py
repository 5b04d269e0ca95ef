"""Fast adaptation to a new route: first-order MAML over leave-one-route-out tasks.

**Fast weights.** A new route is learnt by the *top* of the model only: the last layer's
bottleneck adapter and the router head (``dense`` + ``out``, grown by one output). Everything
below — the frozen encoder and the adapters of the lower layers — is unchanged, so each text is
encoded once (:func:`top_features`: the last layer's FFN output before its adapter and the
attention output it is added to) and every adaptation step, every meta-training task and every
evaluation afterwards runs on those cached features. On 2 CPU cores a step costs milliseconds.

**Initialisation of the new output.** ``plain``: a freshly initialised row (what growing a
``nn.Linear`` by one output gives). ``proto``: the row points at the mean of the support
examples' head features, ``w = s * mean / |mean|``, bias ``b`` (Proto-MAML, Triantafillou et al.
2020); ``s`` and ``b`` are the mean norm and bias of the existing rows unless meta-learnt.

**Meta-training** (:func:`meta_train`, first-order MAML). One task: pick a route ``r`` of the
base checkpoint, drop its output row, split its training phrasings *by family* (generator
template or paraphrase family) into a support half and a query half, adapt from ``k`` support
examples (``k`` drawn from 4 / 8 / 16) with replay of the other routes exactly as a real new
route is adapted (:func:`adapt`), then take the gradient of the loss on the query families of
``r`` and on other routes' examples at the adapted weights and apply it to the shared
initialisation (top adapter, head, other rows) and to ``s``, ``b``. The result is an ordinary
checkpoint (the base's lower adapters, the meta-learnt top adapter and head) with
``training.maml`` holding ``s``, ``b`` and the run's settings: the trainer and
:func:`cloud.training.new_route.train_new_route` warm-start from it.

The new route itself (``shift_schedule``) is never a meta-training task; the base checkpoint's
test templates and the frozen evaluation sets are never used here.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from cloud.data import Example
from cloud.model.adapters import AdapterSet, BottleneckAdapter, RouterHead
from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.checkpoint import CheckpointMeta, checkpoint_tokenizer, load_checkpoint, save_checkpoint
from cloud.model.encoder import mean_pool
from contracts.errors import BadRequest
from contracts.logging import get_logger
from contracts.tokenizer import TextTokenizer

log = get_logger("autoglm.cloud.training.maml")

MAML_KEY = "maml"  # checkpoint training.<key>: the meta-learnt new-row initialisation


# --------------------------------------------------------------------------------------------
# cached features below the fast weights


@dataclass
class TopFeatures:
    """Per example: the last layer's FFN output before its adapter and the attention output
    (the residual), both ``[tokens, hidden]`` float16; plus each example's route and group."""

    ffn: list[torch.Tensor]
    resid: list[torch.Tensor]
    routes: list[str]
    groups: list[str]  # generator template id / paraphrase family id
    langs: list[str]
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ffn)

    def subset(self, idx: Sequence[int]) -> TopFeatures:
        return TopFeatures(
            [self.ffn[i] for i in idx],
            [self.resid[i] for i in idx],
            [self.routes[i] for i in idx],
            [self.groups[i] for i in idx],
            [self.langs[i] for i in idx],
            [self.texts[i] for i in idx] if self.texts else [],
        )

    def relabel(self, route: str) -> TopFeatures:
        return TopFeatures(self.ffn, self.resid, [route] * len(self), self.groups, self.langs, self.texts)

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ffn, resid, mask)``: float32 ``[n, tokens, hidden]`` padded, mask ``[n, tokens]``."""
        ffn = pad_sequence([self.ffn[i] for i in idx], batch_first=True).float()
        resid = pad_sequence([self.resid[i] for i in idx], batch_first=True).float()
        lens = torch.tensor([self.ffn[i].shape[0] for i in idx])
        mask = (torch.arange(ffn.shape[1])[None, :] < lens[:, None]).to(torch.int64)
        return ffn, resid, mask

    @staticmethod
    def concat(parts: Sequence[TopFeatures]) -> TopFeatures:
        return TopFeatures(
            [t for p in parts for t in p.ffn],
            [t for p in parts for t in p.resid],
            [r for p in parts for r in p.routes],
            [g for p in parts for g in p.groups],
            [lang for p in parts for lang in p.langs],
            [t for p in parts for t in p.texts],
        )


@torch.inference_mode()
def top_features(
    model: AutoGLMModel,
    adapter_set: str,
    tokenizer: TextTokenizer,
    examples: Sequence[Example],
    batch_size: int = 64,
) -> TopFeatures:
    """Encode ``examples`` up to the last layer's adapter (the part that never changes)."""
    was_training = model.training
    model.eval()
    enc = model.encoder
    adapters = model.adapter_set(adapter_set).adapters
    layers: list[Any] = list(enc.encoder.layer)
    ids_all = tokenizer.encode_ids([ex.text for ex in examples])
    order = np.argsort([len(x) for x in ids_all], kind="stable")
    ffn: list[torch.Tensor | None] = [None] * len(examples)
    resid: list[torch.Tensor | None] = [None] * len(examples)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids_np, mask_np = TextTokenizer.pad([ids_all[i] for i in idx])
        ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)
        x = enc.embeddings(ids)
        additive = (1.0 - mask.to(x.dtype))[:, None, None, :] * -10000.0
        for i, layer in enumerate(layers[:-1]):
            x = layer(x, additive, adapters[i])
        last = layers[-1]
        a = last.attention(x, additive)
        h = last.output.dropout(last.output.dense(last.intermediate(a)))
        for j, ex_i in enumerate(idx):
            n = int(mask[j].sum())
            ffn[ex_i] = h[j, :n].to(torch.float16).clone()
            resid[ex_i] = a[j, :n].to(torch.float16).clone()
    model.train(was_training)
    return TopFeatures(
        [t for t in ffn if t is not None],
        [t for t in resid if t is not None],
        [ex.route for ex in examples],
        [ex.template_id for ex in examples],
        [ex.lang for ex in examples],
        [ex.text for ex in examples],
    )


# --------------------------------------------------------------------------------------------
# the fast weights


class FastHead(nn.Module):
    """Last layer's adapter + its (frozen) LayerNorm + the router head, on cached features."""

    def __init__(
        self, adapter: BottleneckAdapter, norm: nn.LayerNorm, head: RouterHead, routes: list[str]
    ) -> None:
        super().__init__()
        self.adapter = adapter
        self.norm = norm
        for p in self.norm.parameters():
            p.requires_grad_(False)
        self.head = head
        self.routes = list(routes)

    @classmethod
    def from_model(cls, model: AutoGLMModel, adapter_set: str) -> FastHead:
        aset = model.adapter_set(adapter_set)
        last: Any = list(model.encoder.encoder.layer)[-1]
        adapter, head = aset.adapters[-1], aset.heads["router"]
        assert isinstance(adapter, BottleneckAdapter) and isinstance(head, RouterHead)
        fast = cls(
            copy.deepcopy(adapter), copy.deepcopy(last.output.LayerNorm), copy.deepcopy(head), aset.routes
        )
        for p in fast.trainable():
            p.requires_grad_(True)
        return fast

    def trainable(self) -> list[nn.Parameter]:
        return [*self.adapter.parameters(), *self.head.parameters()]

    def pooled(self, ffn: torch.Tensor, resid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(self.norm(self.adapter(ffn) + resid), mask)

    def forward(self, ffn: torch.Tensor, resid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(ffn, resid, mask))  # type: ignore[no-any-return]

    @torch.no_grad()
    def head_features(self, feats: TopFeatures) -> torch.Tensor:
        """``tanh(dense(pooled))`` per example: what the output rows are dot products with."""
        ffn, resid, mask = feats.batch(range(len(feats)))
        return torch.tanh(self.head.dense(self.pooled(ffn, resid, mask)))

    @torch.no_grad()
    def logits(self, feats: TopFeatures, batch_size: int = 512) -> torch.Tensor:
        was = self.training
        self.eval()
        out = [
            self(*feats.batch(range(s, min(s + batch_size, len(feats)))))
            for s in range(0, len(feats), batch_size)
        ]
        self.train(was)
        return torch.cat(out) if out else torch.empty((0, len(self.routes)))

    def predict(self, feats: TopFeatures) -> list[str]:
        return [self.routes[i] for i in self.logits(feats).argmax(-1).tolist()]


def default_row_init(fast: FastHead | RouterHead) -> tuple[float, float]:
    """``(s, b)`` of the proto initialisation when none is meta-learnt: mean row norm and bias."""
    head = fast.head if isinstance(fast, FastHead) else fast
    w, b = head.out.weight.detach(), head.out.bias.detach()
    return float(w.norm(dim=1).mean()), float(b.mean())


def grow_head(
    head: RouterHead,
    routes: Sequence[str],
    route: str,
    *,
    init: str,
    head_feats: torch.Tensor | None = None,
    row_init: tuple[float, float] | None = None,
    drop: str | None = None,
    seed: int = 0,
) -> tuple[RouterHead, list[str]]:
    """A new router head with ``route`` appended as the last output (``drop``: remove that
    route's row first). ``head_feats``: the support examples' ``tanh(dense(pooled))`` (``proto``)."""
    if route in routes and route != drop:
        raise ValueError(f"route {route!r} already exists")
    keep = [i for i, r in enumerate(routes) if r != drop]
    new_routes = [routes[i] for i in keep] + [route]
    hidden = head.dense.in_features
    new = RouterHead(hidden, len(new_routes), dropout=float(head.dropout.p))
    with torch.no_grad():
        new.dense.load_state_dict(head.dense.state_dict())
        new.out.weight[:-1] = head.out.weight[keep]
        new.out.bias[:-1] = head.out.bias[keep]
        if init == "plain":
            g = torch.Generator().manual_seed(seed)
            bound = 1.0 / math.sqrt(hidden)  # nn.Linear's default initialisation of one row
            new.out.weight[-1] = (torch.rand(hidden, generator=g) * 2 - 1) * bound
            new.out.bias[-1] = (torch.rand(1, generator=g) * 2 - 1) * bound
        elif init == "proto":
            if head_feats is None or not len(head_feats):
                raise ValueError("proto initialisation needs support examples")
            s, b = row_init or default_row_init(head)
            mu = head_feats.mean(0)
            new.out.weight[-1] = s * mu / mu.norm().clamp(min=1e-6)
            new.out.bias[-1] = b
        else:
            raise ValueError(f"init must be 'plain' or 'proto', not {init!r}")
    return new, new_routes


def grow(
    fast: FastHead,
    route: str,
    *,
    init: str,
    support: TopFeatures | None = None,
    row_init: tuple[float, float] | None = None,
    drop: str | None = None,
    seed: int = 0,
) -> FastHead:
    """A copy of ``fast`` with ``route`` appended as the last output (``drop``: remove that route's
    row first, for meta-training tasks). ``init``: ``"plain"`` (fresh row) or ``"proto"``."""
    if init == "proto" and (support is None or not len(support)):
        raise ValueError("proto initialisation needs support examples")
    feats = fast.head_features(support) if init == "proto" and support is not None else None
    head, routes = grow_head(
        fast.head, fast.routes, route, init=init, head_feats=feats, row_init=row_init, drop=drop, seed=seed
    )
    new = FastHead(copy.deepcopy(fast.adapter), copy.deepcopy(fast.norm), head, routes)
    for p in new.trainable():
        p.requires_grad_(True)
    return new


@dataclass(frozen=True)
class AdaptConfig:
    """The adaptation budget (identical for every initialisation that is compared)."""

    steps: int = 40
    lr: float = 3e-3
    replay_batch: int = 64
    max_grad_norm: float = 1.0
    kd: float = 0.0  # weight of the distillation of the parent's old-route logits on replay (0: off)
    kd_temperature: float = 2.0
    anchor: float = 0.0  # weight of the L2 pull of every trained weight back to the parent's (0: off)


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(p_teacher ‖ q_student)`` per example, averaged: ``teacher`` holds the parent's
    logits over the old routes, ``student`` the adapted model's over the old routes and possibly
    more (a new route, last). ``q`` is the softmax over *all* the student's outputs restricted to
    the old ones, so mass the new output takes on an old-route example counts as a loss too.
    Zero when the student's logits are the teacher's."""
    n_old = teacher.shape[1]
    p = F.softmax(teacher / temperature, dim=-1)
    log_q = F.log_softmax(student / temperature, dim=-1)[:, :n_old]
    kl = (p * (torch.log(p.clamp(min=1e-12)) - log_q)).sum(-1)
    return temperature**2 * kl.mean()


class ParentAnchor:
    """``Σ (θ − θ_parent)²`` over the trainable weights of a grown fast model, taken when it is
    made (still the parent's); the new output (the head's last row and bias) is left free."""

    def __init__(self, module: nn.Module) -> None:
        self.ref = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}

    def __call__(self, module: nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for n, p in module.named_parameters():
            if n not in self.ref:
                continue
            cur: torch.Tensor = p
            ref = self.ref[n]
            if n in ("head.out.weight", "head.out.bias"):
                cur, ref = p[:-1], ref[:-1]
            total = total + ((cur - ref) ** 2).sum()
        return total


def _parent_terms(
    cfg: AdaptConfig | DeepAdaptConfig,
    module: nn.Module,
    replay_logits: torch.Tensor,
    teacher: torch.Tensor | None,
    rep_rows: np.ndarray,
    anchor: ParentAnchor | None,
) -> torch.Tensor:
    """The terms that keep an adapted model near its parent: ``cfg.kd`` · :func:`kd_loss` of the
    replay rows against the parent's logits on them, and ``cfg.anchor`` · :class:`ParentAnchor`."""
    total = torch.zeros(())
    if cfg.kd > 0 and teacher is not None and len(rep_rows):
        total = total + cfg.kd * kd_loss(
            replay_logits, teacher[torch.from_numpy(rep_rows)], cfg.kd_temperature
        )
    if anchor is not None:
        total = total + cfg.anchor * anchor(module)
    return total


def _labels(routes: list[str], fast: FastHead) -> torch.Tensor:
    index = {r: i for i, r in enumerate(fast.routes)}
    return torch.tensor([index[r] for r in routes], dtype=torch.int64)


def adapt(
    fast: FastHead,
    support: TopFeatures,
    replay: TopFeatures,
    cfg: AdaptConfig,
    seed: int = 0,
    teacher: torch.Tensor | None = None,
) -> FastHead:
    """Fine-tune ``fast`` in place: every step sees all support examples and a replay batch.

    ``fast`` is a grown copy of the parent (new route last). With ``cfg.kd``: the parent's
    old-route logits on ``replay`` (``teacher``, else computed here from ``fast`` before any step)
    are distilled on each replay batch (:func:`kd_loss`); with ``cfg.anchor``: :class:`ParentAnchor`."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if cfg.kd > 0 and teacher is None:
        teacher = fast.logits(replay)[:, :-1]
    anchor = ParentAnchor(fast) if cfg.anchor > 0 else None
    opt = torch.optim.Adam(fast.trainable(), lr=cfg.lr)
    fast.train()
    sup_idx = list(range(len(support)))
    both = TopFeatures.concat([support, replay])
    labels_all = _labels(both.routes, fast)
    n_rep = min(cfg.replay_batch, len(replay))
    for _ in range(cfg.steps):
        rep_rows = rng.choice(len(replay), n_rep, replace=False) if n_rep else np.zeros(0, dtype=np.int64)
        rep = (rep_rows + len(support)).tolist()
        idx = sup_idx + rep
        logits = fast(*both.batch(idx))
        loss = F.cross_entropy(logits, labels_all[idx])
        loss = loss + _parent_terms(cfg, fast, logits[len(sup_idx) :], teacher, rep_rows, anchor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(fast.trainable(), cfg.max_grad_norm)
        opt.step()
    fast.eval()
    return fast


# --------------------------------------------------------------------------------------------
# deep fast weights: the adapters of the top ``n`` layers (all of them by default) + the head


@dataclass
class LayerFeatures:
    """Per example: the hidden states entering layer ``start`` (``[tokens, hidden]`` float16)."""

    x: list[torch.Tensor]
    routes: list[str]
    start: int

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: Sequence[int]) -> LayerFeatures:
        return LayerFeatures([self.x[i] for i in idx], [self.routes[i] for i in idx], self.start)

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, mask)``: float32 ``[n, tokens, hidden]`` padded, mask ``[n, tokens]``."""
        x = pad_sequence([self.x[i] for i in idx], batch_first=True).float()
        lens = torch.tensor([self.x[i].shape[0] for i in idx])
        return x, (torch.arange(x.shape[1])[None, :] < lens[:, None]).to(torch.int64)

    @staticmethod
    def concat(parts: Sequence[LayerFeatures]) -> LayerFeatures:
        starts = {p.start for p in parts}
        if len(starts) > 1:
            raise ValueError(f"features of different layers: {sorted(starts)}")
        return LayerFeatures(
            [t for p in parts for t in p.x],
            [r for p in parts for r in p.routes],
            parts[0].start if parts else 0,
        )


def first_adapted_layer(model: AutoGLMModel, layers: int) -> int:
    """Index of the lowest layer whose adapter adapts when the top ``layers`` do (0: all)."""
    n = model.config.num_hidden_layers
    return 0 if layers <= 0 or layers >= n else n - layers


@torch.inference_mode()
def layer_features(
    model: AutoGLMModel,
    adapter_set: str,
    tokenizer: TextTokenizer,
    examples: Sequence[Example],
    start: int,
    batch_size: int = 64,
) -> LayerFeatures:
    """Encode ``examples`` up to layer ``start`` (embeddings and the layers below, with their adapters)."""
    was_training = model.training
    model.eval()
    enc = model.encoder
    adapters = model.adapter_set(adapter_set).adapters
    layers: list[Any] = list(enc.encoder.layer)
    ids_all = tokenizer.encode_ids([ex.text for ex in examples])
    order = np.argsort([len(x) for x in ids_all], kind="stable")
    out: list[torch.Tensor | None] = [None] * len(examples)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids_np, mask_np = TextTokenizer.pad([ids_all[i] for i in idx])
        ids, mask = torch.from_numpy(ids_np), torch.from_numpy(mask_np)
        x = enc.embeddings(ids)
        additive = (1.0 - mask.to(x.dtype))[:, None, None, :] * -10000.0
        for i, layer in enumerate(layers[:start]):
            x = layer(x, additive, adapters[i])
        for j, ex_i in enumerate(idx):
            out[ex_i] = x[j, : int(mask[j].sum())].to(torch.float16).clone()
    model.train(was_training)
    return LayerFeatures([t for t in out if t is not None], [ex.route for ex in examples], start)


class DeepHead(nn.Module):
    """Layers ``start``.. of the frozen encoder with their (trainable) adapters + the router head.

    The encoder layers are shared with the model and stay in eval mode (no dropout, no grad);
    the adapters are copies, so the model is unchanged until the checkpoint is written."""

    def __init__(
        self,
        layers: Sequence[nn.Module],
        adapters: Sequence[BottleneckAdapter],
        head: RouterHead,
        routes: list[str],
        start: int,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.adapters = nn.ModuleList(adapters)
        self.head = head
        self.routes = list(routes)
        self.start = start
        for p in self.layers.parameters():
            p.requires_grad_(False)
        for p in self.trainable():
            p.requires_grad_(True)

    @classmethod
    def from_model(
        cls,
        model: AutoGLMModel,
        adapter_set: str,
        start: int,
        head: RouterHead | None = None,
        routes: Sequence[str] | None = None,
    ) -> DeepHead:
        aset = model.adapter_set(adapter_set)
        layers: list[Any] = list(model.encoder.encoder.layer)
        adapters = [
            a for a in map(copy.deepcopy, list(aset.adapters)[start:]) if isinstance(a, BottleneckAdapter)
        ]
        assert len(adapters) == len(layers) - start
        rh = head if head is not None else copy.deepcopy(aset.heads["router"])
        assert isinstance(rh, RouterHead)
        return cls(layers[start:], adapters, rh, list(routes if routes is not None else aset.routes), start)

    def train(self, mode: bool = True) -> DeepHead:
        super().train(mode)
        self.layers.eval()
        return self

    def trainable(self) -> list[nn.Parameter]:
        return [*self.adapters.parameters(), *self.head.parameters()]

    def pooled(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = (1.0 - mask.to(x.dtype))[:, None, None, :] * -10000.0
        for layer, adapter in zip(self.layers, self.adapters, strict=True):
            x = layer(x, additive, adapter)
        return mean_pool(x, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(x, mask))  # type: ignore[no-any-return]

    @torch.no_grad()
    def head_features(self, feats: LayerFeatures) -> torch.Tensor:
        was = self.training
        self.eval()
        out = torch.tanh(self.head.dense(self.pooled(*feats.batch(range(len(feats))))))
        self.train(was)
        return out

    @torch.no_grad()
    def logits(self, feats: LayerFeatures, batch_size: int = 128) -> torch.Tensor:
        was = self.training
        self.eval()
        out = [
            self(*feats.batch(range(s, min(s + batch_size, len(feats)))))
            for s in range(0, len(feats), batch_size)
        ]
        self.train(was)
        return torch.cat(out) if out else torch.empty((0, len(self.routes)))

    def predict(self, feats: LayerFeatures) -> list[str]:
        return [self.routes[i] for i in self.logits(feats).argmax(-1).tolist()]

    def grown(
        self,
        route: str,
        *,
        init: str,
        support: LayerFeatures | None = None,
        row_init: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> DeepHead:
        """A copy with ``route`` appended as the last output (:func:`grow_head`)."""
        if init == "proto" and (support is None or not len(support)):
            raise ValueError("proto initialisation needs support examples")
        feats = self.head_features(support) if init == "proto" and support is not None else None
        head, routes = grow_head(
            self.head, self.routes, route, init=init, head_feats=feats, row_init=row_init, seed=seed
        )
        adapters = [a for a in map(copy.deepcopy, self.adapters) if isinstance(a, BottleneckAdapter)]
        return DeepHead(list(self.layers), adapters, head, routes, self.start)

    def adapter_states(self) -> dict[int, dict[str, torch.Tensor]]:
        return {self.start + i: a.state_dict() for i, a in enumerate(self.adapters)}


@dataclass(frozen=True)
class DeepAdaptConfig:
    """Budget of the deep adaptation (every step a forward/backward through the adapted layers)."""

    layers: int = 0  # adapt the top ``layers`` layers' adapters; 0: all layers
    steps: int = 24
    lr: float = 2e-3
    replay_batch: int = 32
    max_grad_norm: float = 1.0
    supcon: float = 0.0  # weight of a supervised-contrastive loss on the pooled states (0: off)
    temperature: float = 0.1  # of the supervised-contrastive loss
    kd: float = 0.0  # weight of the distillation of the parent's old-route logits on replay (0: off)
    kd_temperature: float = 2.0
    anchor: float = 0.0  # weight of the L2 pull of every trained weight back to the parent's (0: off)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) over L2-normalised ``z``; anchors
    without a positive in the batch are skipped."""
    z = F.normalize(z, dim=-1)
    sim = z @ z.T / temperature
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has = pos.any(1)
    if not bool(has.any()):
        return z.sum() * 0.0
    per = (log_prob * pos).sum(1)[has] / pos.sum(1)[has]
    return -per.mean()


def adapt_deep(
    deep: DeepHead,
    support: LayerFeatures,
    replay: LayerFeatures,
    cfg: DeepAdaptConfig,
    seed: int = 0,
    teacher: torch.Tensor | None = None,
) -> DeepHead:
    """Fine-tune ``deep`` in place: every step sees all support examples and a replay batch.

    ``cfg.kd`` / ``cfg.anchor`` and ``teacher``: as in :func:`adapt`."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if cfg.kd > 0 and teacher is None:
        teacher = deep.logits(replay)[:, :-1]
    anchor = ParentAnchor(deep) if cfg.anchor > 0 else None
    opt = torch.optim.Adam(deep.trainable(), lr=cfg.lr)
    deep.train()
    both = LayerFeatures.concat([support, replay])
    index = {r: i for i, r in enumerate(deep.routes)}
    labels_all = torch.tensor([index[r] for r in both.routes], dtype=torch.int64)
    n_rep = min(cfg.replay_batch, len(replay))
    sup_idx = list(range(len(support)))
    for _ in range(cfg.steps):
        rep_rows = rng.choice(len(replay), n_rep, replace=False) if n_rep else np.zeros(0, dtype=np.int64)
        rep = (rep_rows + len(support)).tolist()
        idx = sup_idx + rep
        pooled = deep.pooled(*both.batch(idx))
        logits = deep.head(pooled)
        loss = F.cross_entropy(logits, labels_all[idx])
        if cfg.supcon > 0:
            loss = loss + cfg.supcon * supcon_loss(pooled, labels_all[idx], cfg.temperature)
        loss = loss + _parent_terms(cfg, deep, logits[len(sup_idx) :], teacher, rep_rows, anchor)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(deep.trainable(), cfg.max_grad_norm)
        opt.step()
    deep.eval()
    return deep


# --------------------------------------------------------------------------------------------
# meta-training


@dataclass(frozen=True)
class MamlConfig:
    tasks: int = 240
    meta_batch: int = 4
    meta_lr: float = 2e-3
    ks: tuple[int, ...] = (4, 8, 16)
    query_new: int = 24  # query examples of the task's route (its held-back families)
    query_old: int = 96  # query examples of the other routes
    replay_size: int = 600  # replay pool of the inner loops
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    seed: int = 0


@dataclass
class MamlResult:
    checkpoint_dir: Path
    row_init: tuple[float, float]
    wall_s: float
    tasks: int
    history: list[dict[str, float]]


def _task_split(
    feats: TopFeatures, route: str, k: int, n_query: int, rng: random.Random
) -> tuple[list[int], list[int]] | None:
    """Support (``k`` from half the route's groups) and query (from the other half) indices."""
    by_group: dict[str, list[int]] = {}
    for i, (r, g) in enumerate(zip(feats.routes, feats.groups, strict=True)):
        if r == route:
            by_group.setdefault(g, []).append(i)
    groups = sorted(by_group)
    if len(groups) < 2:
        return None
    rng.shuffle(groups)
    half = max(1, len(groups) // 2)
    sup_pool = [i for g in groups[:half] for i in by_group[g]]
    qry_pool = [i for g in groups[half:] for i in by_group[g]]
    if len(sup_pool) < k or not qry_pool:
        return None
    return rng.sample(sup_pool, k), rng.sample(qry_pool, min(n_query, len(qry_pool)))


def meta_train_fast(
    fast: FastHead, feats: TopFeatures, cfg: MamlConfig, row_init: tuple[float, float] | None = None
) -> tuple[FastHead, tuple[float, float], list[dict[str, float]]]:
    """First-order MAML on cached features; returns the meta-learnt fast weights and ``(s, b)``."""
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    fast = copy.deepcopy(fast)
    s0, b0 = row_init or default_row_init(fast)
    s_param = nn.Parameter(torch.tensor(float(s0)))
    b_param = nn.Parameter(torch.tensor(float(b0)))
    params = fast.trainable()
    opt = torch.optim.Adam([*params, s_param, b_param], lr=cfg.meta_lr)
    routes = [r for r in fast.routes if r in set(feats.routes)]
    history: list[dict[str, float]] = []
    done = 0
    while done < cfg.tasks:
        opt.zero_grad(set_to_none=True)
        grads = [torch.zeros_like(p) for p in params]
        g_s, g_b, losses, used = 0.0, 0.0, [], 0
        for _ in range(cfg.meta_batch):
            route = rng.choice(routes)
            k = rng.choice(list(cfg.ks))
            split = _task_split(feats, route, k, cfg.query_new, rng)
            done += 1
            if split is None:
                continue
            sup_idx, qry_idx = split
            others = [i for i, r in enumerate(feats.routes) if r != route]
            pick = rng.sample(others, min(len(others), cfg.replay_size + cfg.query_old))
            rep_idx, old_q = pick[: cfg.replay_size], pick[cfg.replay_size :]
            support = feats.subset(sup_idx)
            row = (float(s_param.detach()), float(b_param.detach()))
            task = grow(
                fast,
                route,
                init="proto",
                support=support,
                row_init=row,
                drop=route,
                seed=rng.randrange(1 << 30),
            )
            task = adapt(task, support, feats.subset(rep_idx), cfg.adapt, seed=rng.randrange(1 << 30))
            query = feats.subset([*qry_idx, *old_q])
            task.eval()
            loss = F.cross_entropy(task(*query.batch(range(len(query)))), _labels(query.routes, task))
            t_params = task.trainable()
            t_grads = torch.autograd.grad(loss, t_params)
            names = [n for n, p in task.named_parameters() if p.requires_grad]
            named = dict(zip(names, t_grads, strict=True))
            keep = [i for i, r in enumerate(fast.routes) if r != route]
            for j, name in enumerate([n for n, p in fast.named_parameters() if p.requires_grad]):
                g = named[name]
                if name == "head.out.weight":
                    grads[j][keep] += g[:-1]
                    mu = fast.head_features(support).mean(0)
                    g_s += float((g[-1] * (mu / mu.norm().clamp(min=1e-6))).sum())
                elif name == "head.out.bias":
                    grads[j][keep] += g[:-1]
                    g_b += float(g[-1])
                else:
                    grads[j] += g
            losses.append(float(loss.detach()))
            used += 1
        if not used:
            continue
        for p, g in zip(params, grads, strict=True):
            p.grad = g / used
        s_param.grad = torch.tensor(g_s / used)
        b_param.grad = torch.tensor(g_b / used)
        opt.step()
        history.append(
            {
                "tasks": float(done),
                "query_loss": float(np.mean(losses)),
                "s": float(s_param.detach()),
                "b": float(b_param.detach()),
            }
        )
    return fast, (float(s_param.detach()), float(b_param.detach())), history


def meta_training_examples(routes: Sequence[str], seed: int = 0, per_template: int = 4) -> list[Example]:
    """Training phrasings only: the generator's training templates of ``seed`` and the training
    paraphrase families of the default routes (``groups`` = template / family ids)."""
    from cloud.data import SplitSpec, default_splits
    from cloud.data.paraphrase import route_items
    from skillpack.kg.graph import default_graph

    wanted = set(routes)
    gen = [
        e
        for e in default_splits(seed, SplitSpec(train_per_template=per_template, eval_per_template=1))[
            "train"
        ]
        if e.route in wanted
    ]
    para = [
        Example(it.text, it.route, it.lang, it.families[0])
        for it in route_items(default_graph(), "train", 3, seed)
        if it.route in wanted
    ]
    return gen + para


def write_fast_checkpoint(
    model: AutoGLMModel,
    meta: CheckpointMeta,
    adapter_set: str,
    fast: FastHead | DeepHead,
    out_dir: Path,
    *,
    training_extra: dict[str, Any],
    metrics_extra: dict[str, Any] | None = None,
    temperature: float | None = None,
) -> Path:
    """Save ``model`` with ``fast``'s adapters (the last layer's, or every layer a
    :class:`DeepHead` holds) and router head (the route list is ``fast.routes``: one longer when a
    route was added); other adapter sets are unchanged."""
    old = model.adapter_set(adapter_set)
    cfg = model.config
    new = AdapterSet(adapter_set, cfg.hidden_size, cfg.num_hidden_layers, fast.routes, old.bottleneck)
    state = {k: v for k, v in old.state_dict().items() if not k.startswith("heads.router.")}
    layer_states = (
        fast.adapter_states()
        if isinstance(fast, DeepHead)
        else {cfg.num_hidden_layers - 1: fast.adapter.state_dict()}
    )
    for i, sd in layer_states.items():
        state.update({f"adapters.{i}." + k: v for k, v in sd.items()})
    state.update({"heads.router." + k: v for k, v in fast.head.state_dict().items()})
    new.load_state_dict(state, strict=True)
    grown = AutoGLMModel(model.encoder)
    for name in model.adapter_sets:
        grown.adapter_sets[name] = new if name == adapter_set else model.adapter_sets[name]
    grown.active = model.active
    temps = {n: float(i.temperature) for n, i in meta.adapter_sets.items()}
    if temperature is not None:
        temps[adapter_set] = temperature
    training = {**meta.training, **training_extra}
    metrics = {**meta.metrics, **(metrics_extra or {})}
    return save_checkpoint(
        grown,
        Path(out_dir),
        base_path=Path(meta.base_path),
        base_hash=meta.base_sha256,
        base_id=meta.base_id,
        tokenizer=meta.tokenizer,
        training=training,
        metrics=metrics,
        temperatures=temps,
    )


def meta_train(
    base_checkpoint: Path, out_dir: Path, cfg: MamlConfig | None = None, examples: list[Example] | None = None
) -> MamlResult:
    """Meta-train the fast weights of ``base_checkpoint``; write a checkpoint to ``out_dir``."""
    cfg = cfg or MamlConfig()
    t0 = time.perf_counter()
    model, meta = load_checkpoint(Path(base_checkpoint))
    set_name = next(iter(meta.adapter_sets))
    routes = list(meta.adapter_sets[set_name].routes)
    data = examples if examples is not None else meta_training_examples(routes, cfg.seed)
    data = [e for e in data if e.route in routes]
    if len({e.route for e in data}) < 3:
        raise BadRequest("meta-training needs examples of at least 3 routes of the base checkpoint")
    feats = top_features(model, set_name, checkpoint_tokenizer(meta), data)
    fast, row_init, history = meta_train_fast(FastHead.from_model(model, set_name), feats, cfg)
    wall = time.perf_counter() - t0
    extra = {
        MAML_KEY: {
            "row_init": {"scale": row_init[0], "bias": row_init[1]},
            "parent_checkpoint": str(base_checkpoint),
            "tasks": cfg.tasks,
            "meta_batch": cfg.meta_batch,
            "meta_lr": cfg.meta_lr,
            "ks": list(cfg.ks),
            "adapt": {"steps": cfg.adapt.steps, "lr": cfg.adapt.lr, "replay_batch": cfg.adapt.replay_batch},
            "examples": len(data),
            "seed": cfg.seed,
            "wall_s": round(wall, 2),
            "final_query_loss": history[-1]["query_loss"] if history else None,
        }
    }
    write_fast_checkpoint(model, meta, set_name, fast, Path(out_dir), training_extra=extra)
    log.info("maml written", extra={"out_dir": str(out_dir), "wall_s": round(wall, 1), "tasks": cfg.tasks})
    return MamlResult(Path(out_dir), row_init, wall, cfg.tasks, history)


def row_init_of(meta: CheckpointMeta) -> tuple[float, float] | None:
    """The meta-learnt ``(s, b)`` of a MAML checkpoint, ``None`` for any other checkpoint."""
    info = meta.training.get(MAML_KEY)
    if not isinstance(info, dict) or not isinstance(info.get("row_init"), dict):
        return None
    return float(info["row_init"]["scale"]), float(info["row_init"]["bias"])
