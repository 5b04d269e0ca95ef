"""Training and export of the edge reasoner's learned heads (``cloud.model.hop_scorer``): the
hop scorer and the scope (abstention) head.

Data: the *training* families and entities of ``cloud.data.paraphrase`` (evaluation families
and entities are never seen). Every graph question gives one example per search state along its
gold path — (masked question, hop, previous relation, current entity type) → the next gold
relation, or STOP after the last hop. The loss is InfoNCE over the relations that really leave
the current entities plus STOP (the hard negatives the search will offer), i.e. a cross-entropy
masked to the candidates. Question and relation-description embeddings come from the bundle's
own encoder (ONNX Runtime, adapters bound) — the same numbers the edge computes. The encoder
itself stays frozen (no co-training here: see docs/arch/agent.md).

The scope head learns "unsure" from nonsense / out-of-scope training families plus generated
noise (random letters, word salad) against every in-scope training question; its abstention
threshold is calibrated on *out-of-fold* predictions (two folds split by family), at the
highest "unsure" probability that keeps false abstention on in-scope questions ≤ 1 %.

    python -m cloud.training.hop_scorer --bundle DIR [--attach] [--sign-key KEY] [--seed N]

writes ``hop_scorer.onnx`` + ``hop_scorer.json`` and ``scope_head.onnx`` + ``scope_head.json``
and, with ``--attach``, lists them in the bundle's manifest as graph roles ``hop_scorer`` and
``scope_head`` (re-sign the bundle after attaching). ``train_and_attach`` is what
``autoglm export --graph-heads`` and the learning loop run (through ``autoglm.graph_heads``):
the shipped heads, attached before the export signs the manifest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cloud.data.paraphrase import UNSURE, ParaItem, train_items
from cloud.model.hop_scorer import HopScorer, PathScorer, ScopeGate, ScopeGate3, ScopeHead
from cloud.training.path_priors import training_plan, weighted_loss
from contracts.logging import get_logger
from contracts.memory import FleetPathPrior
from skillpack.kg.graph import KnowledgeGraph, default_graph
from skillpack.kg.hop_features import (
    CHAR_DIM,
    MAX_HOPS,
    MAX_WINDOWS,
    PATH_NP_EN,
    PATH_NP_ZH,
    RELATION_NAMES,
    STOP_INDEX,
    TYPE_NAMES,
    all_schema_paths,
    char_grams,
    masked_question,
    path_texts,
    question_windows,
    relation_descriptions,
    relation_key_phrases,
)
from skillpack.kg.schema import RELATIONS
from skillpack.text import to_ascii

log = get_logger("autoglm.cloud.training.hop_scorer")
Embed = Callable[[list[str]], np.ndarray]
META_FILE = "hop_scorer.json"
ONNX_FILE = "hop_scorer.onnx"
SCOPE_META_FILE = "scope_head.json"
SCOPE_ONNX_FILE = "scope_head.onnx"
HOP_SCHEMA = "autoglm.hop_scorer/2"
SCOPE_SCHEMA = "autoglm.scope_head/1"
SCOPE_GATE_SCHEMA = "autoglm.scope_head/2"


class CachedEmbed:
    """An embed function with a per-text cache (several heads and seeds embed the same texts)."""

    def __init__(self, embed: Embed) -> None:
        self.embed = embed
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for i in range(0, len(todo), 64):
            chunk = todo[i : i + 64]
            for t, e in zip(chunk, np.asarray(self.embed(chunk), dtype=np.float32), strict=True):
                self.cache[t] = e
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)


@dataclass
class HopBatch:
    emb: torch.Tensor
    chars: torch.Tensor
    hop: torch.Tensor
    prev: torch.Tensor
    etype: torch.Tensor
    mask: torch.Tensor  # [N, R+1] True where the output is a valid candidate
    target: torch.Tensor
    answer_type: torch.Tensor  # [N] type of the question's gold answer

    def __len__(self) -> int:
        return int(self.target.shape[0])


def candidate_mask(graph: KnowledgeGraph, frontier: list[str], hop: int) -> np.ndarray:
    mask = np.zeros(len(RELATION_NAMES) + 1, dtype=bool)
    for e in frontier:
        for r in graph.relations_from(e):
            mask[RELATION_NAMES.index(r)] = True
    mask[STOP_INDEX] = hop > 0
    return mask


def mention_span(text: str, mention: str) -> tuple[int, int]:
    norm = to_ascii(text)
    i = norm.lower().find(to_ascii(mention).lower())
    if i < 0:
        raise ValueError(f"mention {mention!r} not in {text!r}")
    return i, i + len(mention)


_TOKEN = re.compile(r"[A-Za-z']+|[\u3400-\u9fff]|[^\sA-Za-z\u3400-\u9fff]+")


def word_dropout(text: str, keep: str, rng: random.Random, p: float = 0.15) -> str:
    """``text`` with each word (English) or character (Chinese) dropped with probability ``p``,
    never the type word ``keep`` that stands for the entity."""
    tokens = _TOKEN.findall(text)
    kept = [t for t in tokens if t == keep or rng.random() >= p]
    out = ""
    for t in kept:
        cjk = "\u3400" <= t[0] <= "\u9fff"
        out += t if (cjk or not out or "\u3400" <= out[-1] <= "\u9fff") else " " + t
    return out


def question_states(
    graph: KnowledgeGraph, items: list[ParaItem], augment: int = 0
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Masked question texts and one row per search state ``(text index, hop, previous
    relation, entity type, candidate mask, target)``; ``augment`` extra copies of each question
    with word dropout (the same states), so the head leans on no single word of a family."""
    rng = random.Random("augment")
    texts: list[str] = []
    rows: list[tuple[Any, ...]] = []
    for q in items:
        norm = to_ascii(q.text)
        span = mention_span(q.text, q.mention)
        start_type = graph.entities[q.start].type
        masked = masked_question(norm, span, start_type)
        for copy in range(augment + 1):
            texts.append(masked if copy == 0 else word_dropout(masked, start_type, rng))
            _question_rows(graph, q, len(texts) - 1, rows)
    return texts, rows


def build_examples(graph: KnowledgeGraph, items: list[ParaItem], embed: Embed, augment: int = 0) -> HopBatch:
    texts, rows = question_states(graph, items, augment)
    emb = np.asarray(embed(texts), dtype=np.float32)
    chars = np.stack([char_grams(t) for t in texts])
    idx = [r[0] for r in rows]
    return HopBatch(
        emb=torch.from_numpy(emb[idx]),
        chars=torch.from_numpy(chars[idx]),
        hop=torch.tensor([r[1] for r in rows]),
        prev=torch.tensor([r[2] for r in rows]),
        etype=torch.tensor([r[3] for r in rows]),
        mask=torch.from_numpy(np.stack([r[4] for r in rows])),
        target=torch.tensor([r[5] for r in rows]),
        answer_type=torch.tensor([r[6] for r in rows]),
    )


def _question_rows(graph: KnowledgeGraph, q: ParaItem, text_index: int, rows: list[tuple[Any, ...]]) -> None:
    frontier = [q.start]
    for hop in range(len(q.path) + 1):
        target = RELATION_NAMES.index(q.path[hop]) if hop < len(q.path) else STOP_INDEX
        prev = RELATION_NAMES.index(q.path[hop - 1]) if hop else STOP_INDEX
        cur_type = graph.entities[frontier[0]].type
        rows.append(
            (
                text_index,
                hop,
                prev,
                TYPE_NAMES.index(cur_type),
                candidate_mask(graph, frontier, hop),
                target,
                TYPE_NAMES.index(graph.entities[q.answer].type),
            )
        )
        if hop < len(q.path):
            frontier = graph.follow(frontier[0], [q.path[hop]])


def relation_table(embed: Embed) -> torch.Tensor:
    return torch.from_numpy(np.asarray(embed(relation_descriptions()), dtype=np.float32))


def train_hop_scorer(
    embed: Embed,
    *,
    graph: KnowledgeGraph | None = None,
    items: list[ParaItem] | None = None,
    epochs: int = 80,
    lr: float = 3e-3,
    seed: int = 0,
    hidden: int = 128,
    fusion: bool = False,
    adaptive: bool = True,
    augment: int = 0,
    answer_type: bool = False,
) -> tuple[HopScorer, dict[str, Any]]:
    """Train on the training families; returns the head and its training metrics."""
    torch.manual_seed(seed)
    graph = graph or default_graph()
    t0 = time.perf_counter()
    items = [it for it in (items if items is not None else train_items(seed=seed)) if it.kind == "kg"]
    data = build_examples(graph, items, embed, augment=augment)  # the same augmented texts for every seed
    model = HopScorer(
        relation_table(embed), hidden=hidden, fusion=fusion, adaptive=adaptive, answer_type=answer_type
    )
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    n = len(data)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, 128):
            idx = perm[i : i + 128]
            logits = model(data.emb[idx], data.chars[idx], data.hop[idx], data.prev[idx], data.etype[idx])
            loss = loss_fn(logits.masked_fill(~data.mask[idx], -1e4), data.target[idx])
            if answer_type:
                loss = loss + loss_fn(
                    model.answer_type_logits(data.emb[idx], data.chars[idx]), data.answer_type[idx]
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(data.emb, data.chars, data.hop, data.prev, data.etype).masked_fill(~data.mask, -1e4)
        acc = float((logits.argmax(-1) == data.target).float().mean())
        final_loss = float(loss_fn(logits, data.target))
    metrics = {
        "train_questions": len(items),
        "train_states": n,
        "train_state_accuracy": round(acc, 4),
        "train_loss": round(final_loss, 4),
        "seconds": round(time.perf_counter() - t0, 2),
        "embed_dim": int(data.emb.shape[1]),
        "fusion": fusion,
        "adaptive": adaptive,
        "augment": augment,
        "answer_type": answer_type,
        "seed": seed,
        "epochs": epochs,
    }
    return model, metrics


# ----------------------------------------------------------------------------- path scorer (/3)
PATH_SCHEMA = "autoglm.hop_scorer/3"
# training-only requests to describe an entity (the empty path); no evaluation family asks for one
DESCRIBE_TRAIN = {
    "en": [
        "tell me about {x}",
        "what is {x}?",
        "show me {x}",
        "{x} details please",
        "give me an overview of {x}",
        "what do we have on {x}?",
    ],
    "zh": ["介绍一下{x}", "{x}是什么？", "说说{x}", "{x}的详细情况", "查一下{x}的资料", "{x}有哪些信息？"],
}


def describe_items(graph: KnowledgeGraph, seed: int, per_template: int = 6) -> list[ParaItem]:
    """Requests to describe a training entity (gold path: the empty one)."""
    from cloud.data.paraphrase import _surface, entity_split

    rng = random.Random(f"describe:{seed}")
    starts = sorted(
        e.id for e in graph.entities.values() if entity_split(e.id) == "train" and graph.relations_from(e.id)
    )
    out = []
    for lang, templates in DESCRIBE_TRAIN.items():
        for t_idx, tmpl in enumerate(templates):
            for k in range(per_template):
                e = graph.entities[rng.choice(starts)]
                mention = _surface(e, lang, rng)
                text = tmpl.format(x=mention)
                out.append(
                    ParaItem(
                        f"train-describe-{lang}-{t_idx}-{k}",
                        "kg",
                        lang,
                        "train",
                        text[0].upper() + text[1:],
                        "kg_query",
                        (f"describe.{t_idx}",),
                        e.id,
                        mention,
                        (),
                        e.id,
                    )
                )
    return out


def path_prototype_texts(
    start_type: str, path: tuple[str, ...], exclude: set[str], seed: int = 0, per_lang: int = 4
) -> list[str]:
    """The path composed from *training* noun-phrase / question families (never evaluation ones,
    nor ``exclude``): the start entity as its type word, like the masked questions."""
    from cloud.data.paraphrase_families import NP_FAMILIES, Q_FAMILIES

    rng = random.Random(f"proto:{seed}:{start_type}:{'/'.join(path)}")
    if not path:
        return [t.format(x=start_type) for lang in ("en", "zh") for t in DESCRIBE_TRAIN[lang][:per_lang]]
    out = []
    for lang in ("en", "zh"):
        for k in range(per_lang):
            text = start_type
            for j, r in enumerate(path):
                last_q = j == len(path) - 1 and k % 2 == 1
                fams = [
                    f
                    for f in (Q_FAMILIES if last_q else NP_FAMILIES).get(r, [])
                    if f.split == "train" and f.id not in exclude
                ]
                if not fams:
                    fams = [f for f in NP_FAMILIES.get(r, []) if f.split == "train" and f.id not in exclude]
                if not fams:  # a relation no family speaks of: its schema noun phrase
                    text = (PATH_NP_EN if lang == "en" else PATH_NP_ZH)[r].format(x=text)
                    continue
                fam = rng.choice(fams)
                text = rng.choice(fam.en if lang == "en" else fam.zh).format(x=text)
            out.append(text)
    return out


def path_tables(
    embed: Embed, prototypes: bool = False, exclude: set[str] | None = None
) -> dict[str, torch.Tensor]:
    """The path scorer's constant tables: verbalisation embeddings, relations per position,
    lengths and the start-type mask, in ``all_schema_paths`` order; with ``prototypes`` also the
    mean embedding of each path composed from the training families."""
    paths = all_schema_paths()
    texts = [path_texts(t, p) for t, p in paths]
    emb = np.asarray(embed([t for pair in texts for t in pair]), dtype=np.float32).reshape(len(paths), 2, -1)
    rel = torch.full((len(paths), MAX_HOPS), STOP_INDEX, dtype=torch.long)
    mask = torch.full((len(TYPE_NAMES), len(paths)), -1e4)
    for i, (t, p) in enumerate(paths):
        for j, r in enumerate(p):
            rel[i, j] = RELATION_NAMES.index(r)
        mask[TYPE_NAMES.index(t), i] = 0.0
    out = {
        "path_en": torch.from_numpy(emb[:, 0]),
        "path_zh": torch.from_numpy(emb[:, 1]),
        "path_rel": rel,
        "path_len": torch.tensor([len(p) for _, p in paths]),
        "type_mask": mask,
    }
    if prototypes:
        protos = [path_prototype_texts(t, p, exclude or set()) for t, p in paths]
        pe = np.asarray(embed([x for group in protos for x in group]), dtype=np.float32)
        pe /= np.maximum(np.linalg.norm(pe, axis=1, keepdims=True), 1e-9)
        sizes = np.cumsum([0] + [len(g) for g in protos])
        bounds = itertools.pairwise(sizes)
        out["path_proto"] = torch.from_numpy(np.stack([pe[a:b].mean(0) for a, b in bounds]))
    return out


def window_tensors(texts: list[str], embed: Embed) -> tuple[torch.Tensor, torch.Tensor]:
    """Window embeddings [N, MAX_WINDOWS, D] and their mask [N, MAX_WINDOWS] of masked questions."""
    wins = [question_windows(t) for t in texts]
    flat = np.asarray(embed([w for ws in wins for w in ws]), dtype=np.float32)
    out = np.zeros((len(texts), MAX_WINDOWS, flat.shape[1]), dtype=np.float32)
    mask = np.zeros((len(texts), MAX_WINDOWS), dtype=np.float32)
    k = 0
    for i, ws in enumerate(wins):
        out[i, : len(ws)] = flat[k : k + len(ws)]
        mask[i, : len(ws)] = 1.0
        k += len(ws)
    return torch.from_numpy(out), torch.from_numpy(mask)


def path_examples(
    graph: KnowledgeGraph, items: list[ParaItem], embed: Embed
) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(masked questions, their embeddings, start types, gold path index, mask of the paths that
    leave the start entity in the graph)."""
    paths = all_schema_paths()
    index = {tp: i for i, tp in enumerate(paths)}
    texts, types, gold, masks = [], [], [], []
    reach: dict[str, np.ndarray] = {}
    for q in items:
        st = graph.entities[q.start].type
        texts.append(masked_question(to_ascii(q.text), mention_span(q.text, q.mention), st))
        types.append(TYPE_NAMES.index(st))
        gold.append(index[(st, tuple(q.path))])
        if q.start not in reach:
            reach[q.start] = np.array(
                [t == st and (not p or bool(graph.follow(q.start, p))) for t, p in paths]
            )
        masks.append(reach[q.start])
    emb = torch.from_numpy(np.asarray(embed(texts), dtype=np.float32))
    return texts, emb, torch.tensor(types), torch.tensor(gold), torch.from_numpy(np.stack(masks))


def verbalised_examples() -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each non-empty schema path's EN / ZH verbalisation asked as a question ("who is …?" for a
    person, "what is …?" otherwise), labelled with that path; candidates: the start type's paths."""
    paths = all_schema_paths()
    texts, types, gold, masks = [], [], [], []
    for i, (t, p) in enumerate(paths):
        if not p:
            continue
        person = RELATIONS[p[-1]].tail == "person"
        en, zh = path_texts(t, p)
        for text in (f"{'Who' if person else 'What'} is {en}?", f"{zh}是{'谁' if person else '什么'}？"):
            texts.append(text)
            types.append(TYPE_NAMES.index(t))
            gold.append(i)
            masks.append(np.array([tt == t for tt, _ in paths]))
    return texts, torch.tensor(types), torch.tensor(gold), torch.from_numpy(np.stack(masks))


def train_path_scorer(
    embed: Embed,
    *,
    graph: KnowledgeGraph | None = None,
    items: list[ParaItem] | None = None,
    seed: int = 0,
    epochs: int = 60,
    lr: float = 2e-3,
    hidden: int = 128,
    zero_shot_only: bool = False,
    describe: bool = True,
    weight_decay: float = 1e-2,
    prototypes: bool = False,
    exclude_families: set[str] | None = None,
    phrases: bool = True,
    verbal_examples: bool = False,
    priors: list[FleetPathPrior] | None = None,
    chars: str = "",
) -> tuple[PathScorer, dict[str, Any]]:
    """Train the path scorer on the training families (+ training-only describe requests).
    ``chars``: the character granularity, "" (off) or a ``PathScorer`` ``char_mode``.
    ``priors``: the fleet's path feedback sums (``cloud.training.path_priors``: questions of
    confirmed paths weighted up, rejected paths a margin where they compete; bounded); ``None``
    or priors that touch no training question train exactly as without."""
    torch.manual_seed(seed)
    graph = graph or default_graph()
    t0 = time.perf_counter()
    items = [it for it in (items if items is not None else train_items(seed=seed)) if it.kind == "kg"]
    if describe:
        items = items + describe_items(graph, seed)
    texts, emb, types, gold, mask = path_examples(graph, items, embed)
    if verbal_examples:  # every schema path's own verbalisation as a question (a mechanical extra phrasing)
        v_texts, v_types, v_gold, v_mask = verbalised_examples()
        texts = texts + v_texts
        emb = torch.cat([emb, torch.from_numpy(np.asarray(embed(v_texts), dtype=np.float32))])
        types, gold, mask = torch.cat([types, v_types]), torch.cat([gold, v_gold]), torch.cat([mask, v_mask])
    plan, prior_metrics = (
        (None, None) if priors is None else training_plan(priors, all_schema_paths(), gold, mask)
    )
    keys = torch.from_numpy(np.asarray(embed(relation_key_phrases()), dtype=np.float32)) if phrases else None
    win, wmask = window_tensors(texts, embed) if phrases else (None, None)
    cg = torch.from_numpy(np.stack([char_grams(x, words=chars != "cjk") for x in texts])) if chars else None
    t = path_tables(embed, prototypes, exclude_families)
    model = PathScorer(
        t["path_en"],
        t["path_zh"],
        t["path_rel"],
        t["path_len"],
        t["type_mask"],
        t.get("path_proto"),
        hidden=hidden,
        zero_shot_only=zero_shot_only,
        relation_keys=keys,
        char_dim=CHAR_DIM if chars else 0,
        char_mode=chars or "gated",
    )

    def extra(idx: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if win is not None and wmask is not None:
            out |= {"window_embeddings": win[idx], "window_mask": wmask[idx]}
        if cg is not None:
            out["char_grams"] = cg[idx]
        return out

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = len(gold)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, 64):
            idx = perm[i : i + 64]
            logits = model(emb[idx], types[idx], **extra(idx))
            if plan is not None:  # rejected paths compete with a margin (logit-adjusted loss)
                logits = logits + plan.margins[idx]
            logits = logits.masked_fill(~mask[idx], -1e4)
            if plan is None:
                loss = loss_fn(logits, gold[idx])
            else:
                loss = weighted_loss(logits, gold[idx], plan.weights[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(emb, types, **extra(slice(None))).masked_fill(~mask, -1e4)
        acc = float((logits.argmax(-1) == gold).float().mean())
        final_loss = float(loss_fn(logits, gold))
    metrics = {
        "train_questions": n,
        "train_path_accuracy": round(acc, 4),
        "train_loss": round(final_loss, 4),
        "seconds": round(time.perf_counter() - t0, 2),
        "embed_dim": int(emb.shape[1]),
        "seed": seed,
        "epochs": epochs,
        "zero_shot_only": zero_shot_only,
        "describe": describe,
        "prototypes": prototypes,
        "phrases": phrases,
        "chars": chars,
        "verbal_examples": verbal_examples,
        "scorer": "path",
    }
    if prior_metrics is not None:
        metrics["fleet_priors"] = prior_metrics
    return model, metrics


def _export_head(
    model: nn.Module,
    args: tuple[torch.Tensor, ...],
    onnx_path: Path,
    input_names: list[str],
    output_name: str,
    meta_path: Path,
    meta: dict[str, Any],
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> tuple[Path, Path]:
    """One learned head as ONNX (opset 17, TorchScript exporter, batch axis dynamic unless
    ``dynamic_axes`` says more) plus its JSON metadata beside it."""
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    axes = dynamic_axes or {k: {0: "batch"} for k in (*input_names, output_name)}
    torch.onnx.export(
        model,
        args,
        str(onnx_path),
        input_names=input_names,
        output_names=[output_name],
        opset_version=17,
        dynamo=False,
        dynamic_axes=axes,
    )
    meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
    return onnx_path, meta_path


class _NamedInputs(nn.Module):
    """A head whose optional inputs are keyword arguments, traced with its graph inputs in
    ``names`` order (the first two positional)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(xs[0], xs[1], **dict(zip(self.names[2:], xs[2:], strict=True)))
        return out


def export_path_scorer(
    model: PathScorer, out_dir: Path, metrics: dict[str, Any] | None = None, length_bias: float = 0.0
) -> tuple[Path, Path]:
    args: tuple[torch.Tensor, ...] = (torch.zeros(2, model.embed_dim), torch.zeros(2, dtype=torch.long))
    names = ["question_embedding", "start_type"]
    axes: dict[str, dict[int, str]] = {k: {0: "batch"} for k in (*names, "path_logits")}
    if model.use_phrases:
        args = (*args, torch.zeros(2, MAX_WINDOWS, model.embed_dim), torch.ones(2, MAX_WINDOWS))
        names += ["window_embeddings", "window_mask"]
        axes.update(
            {"window_embeddings": {0: "batch", 1: "windows"}, "window_mask": {0: "batch", 1: "windows"}}
        )
    if model.char_dim:
        args = (*args, torch.zeros(2, model.char_dim))
        names.append("char_grams")
        axes["char_grams"] = {0: "batch"}
    meta = {
        "schema": PATH_SCHEMA,
        "role": "hop_scorer",
        "relations": list(RELATION_NAMES),
        "entity_types": list(TYPE_NAMES),
        "embed_dim": model.embed_dim,
        "char_dim": model.char_dim,
        "max_hops": MAX_HOPS,
        "paths": [[t, *p] for t, p in all_schema_paths()],
        "path_texts": [path_texts(t, p) for t, p in all_schema_paths()],
        "phrases": model.use_phrases,
        "length_bias": length_bias,
        "windows": "skillpack.kg.hop_features.question_windows" if model.use_phrases else None,
        "char_grams": "skillpack.kg.hop_features.char_grams" if model.char_dim else None,
        "char_words": model.char_mode != "cjk",  # English word 3-grams in char_grams
        "question_text": "skillpack.kg.hop_features.masked_question",
        "metrics": metrics or {},
    }
    return _export_head(
        _NamedInputs(model, names),
        args,
        out_dir / ONNX_FILE,
        names,
        "path_logits",
        out_dir / META_FILE,
        meta,
        axes,
    )


# ----------------------------------------------------------------------------- scope head
_NOISE_WORDS = [
    "river",
    "piano",
    "yellow",
    "seven",
    "jacket",
    "whisper",
    "mountain",
    "orange",
    "silent",
    "window",
    "candle",
    "tiger",
    "velvet",
    "garden",
    "thunder",
    "marble",
    "pencil",
    "ocean",
    "ladder",
    "cloud",
    "mirror",
    "dancing",
    "frozen",
    "honey",
    "galaxy",
    "button",
    "lemon",
]
_NOISE_ZH = "山水花鸟风月星云猫狗鱼虫桃李书画琴棋茶酒雨雪梦歌舞糖果"


def noise_items(seed: int, n: int = 96) -> list[ParaItem]:
    """Generated meaningless requests (random letters, word salad; EN and ZH) for the scope head."""
    rng = random.Random(f"noise:{seed}")
    out = []
    for k in range(n):
        kind = k % 4
        if kind == 0:
            text = " ".join(
                "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 7)))
                for _ in range(rng.randint(1, 4))
            )
            lang = "en"
        elif kind == 1:
            text, lang = " ".join(rng.sample(_NOISE_WORDS, rng.randint(3, 6))), "en"
        else:
            text, lang = "".join(rng.choice(_NOISE_ZH) for _ in range(rng.randint(3, 9))), "zh"
        out.append(ParaItem(f"noise-{seed}-{k}", "nonsense", lang, "train", text, UNSURE, (f"noise.{kind}",)))
    return out


def _scope_tensors(items: list[ParaItem], embed: Embed) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    texts = [it.text for it in items]
    emb = torch.from_numpy(np.asarray(embed(texts), dtype=np.float32))
    chars = torch.from_numpy(np.stack([char_grams(to_ascii(t)) for t in texts]))
    y = torch.tensor([1.0 if it.route == UNSURE else 0.0 for it in items])
    return emb, chars, y


def _fit_scope(emb: torch.Tensor, chars: torch.Tensor, y: torch.Tensor, seed: int, epochs: int) -> ScopeHead:
    torch.manual_seed(seed)
    model = ScopeHead(int(emb.shape[1]))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    pos = float(y.sum())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(max((len(y) - pos) / max(pos, 1.0), 1.0)))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 128):
            idx = perm[i : i + 128]
            loss = loss_fn(model(emb[idx], chars[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def train_scope_head(
    embed: Embed,
    *,
    items: list[ParaItem] | None = None,
    seed: int = 0,
    epochs: int = 30,
    max_false_abstention: float = 0.01,
) -> tuple[ScopeHead, float, dict[str, Any]]:
    """The head, its calibrated abstention threshold (probability of "unsure") and metrics."""
    t0 = time.perf_counter()
    items = (items if items is not None else train_items(seed=seed)) + noise_items(seed)
    emb, chars, y = _scope_tensors(items, embed)
    fold = torch.tensor([zlib.crc32(it.families[0].encode("utf-8")) % 2 for it in items])
    oof = torch.zeros(len(items))
    for k in (0, 1):
        m = _fit_scope(emb[fold != k], chars[fold != k], y[fold != k], seed, epochs)
        with torch.no_grad():
            oof[fold == k] = torch.sigmoid(m(emb[fold == k], chars[fold == k]))
    inscope = np.sort(oof[y == 0].numpy())
    k = min(len(inscope) - 1, math.ceil(len(inscope) * (1.0 - max_false_abstention)))
    threshold = float(min(max(inscope[k], 0.5), 0.999))
    model = _fit_scope(emb, chars, y, seed, epochs)
    oof_abstain = float((oof[y == 1] >= threshold).float().mean())
    metrics = {
        "items": len(items),
        "unsure_items": int(y.sum()),
        "threshold": round(threshold, 4),
        "oof_nonsense_abstention": round(oof_abstain, 4),
        "oof_false_abstention": round(float((oof[y == 0] >= threshold).float().mean()), 4),
        "seconds": round(time.perf_counter() - t0, 2),
        "seed": seed,
    }
    return model, threshold, metrics


def _logistic(x: torch.Tensor, y: torch.Tensor, steps: int = 500) -> torch.Tensor:
    """Weights [bias, w...] of a class-balanced logistic regression (LBFGS, tiny L2)."""
    w = torch.zeros(x.shape[1] + 1, requires_grad=True)
    xb = torch.cat([torch.ones(len(x), 1), x], dim=1)
    pos = float(y.sum())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(max((len(y) - pos) / max(pos, 1.0), 1.0)))
    opt = torch.optim.LBFGS([w], max_iter=steps)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(xb @ w, y) + 1e-3 * (w[1:] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def train_scope_gate(
    embed: Embed,
    keyword_confidence: Callable[[str], float],
    *,
    items: list[ParaItem] | None = None,
    seed: int = 0,
    max_false_abstention: float = 0.01,
) -> tuple[ScopeGate, float, dict[str, Any]]:
    """The kNN + keyword-router gate, its abstention threshold and metrics. The features of a
    training request are computed against the bank of the *other* fold (two folds split by
    family), so the weights and the threshold see requests of families the bank does not hold —
    as every evaluation request is."""
    t0 = time.perf_counter()
    items = (items if items is not None else train_items(seed=seed)) + noise_items(seed)
    emb = torch.from_numpy(np.asarray(embed([it.text for it in items]), dtype=np.float32))
    emb = nn.functional.normalize(emb, dim=-1)
    y = torch.tensor([1.0 if it.route == UNSURE else 0.0 for it in items])
    kw = torch.tensor([keyword_confidence(it.text) for it in items], dtype=torch.float32)
    fold = torch.tensor([zlib.crc32(it.families[0].encode("utf-8")) % 2 for it in items])
    sim = torch.zeros(len(items))
    for k in (0, 1):
        bank = emb[(fold != k) & (y == 0)]
        sim[fold == k] = (emb[fold == k] @ bank.T).amax(-1)
    feats = torch.stack([sim, kw], dim=1)
    oof = torch.zeros(len(items))
    for k in (0, 1):  # out-of-fold probabilities for the threshold
        w = _logistic(feats[fold != k], y[fold != k])
        oof[fold == k] = torch.sigmoid(w[0] + feats[fold == k] @ w[1:])
    inscope = np.sort(oof[y == 0].numpy())
    k_idx = min(len(inscope) - 1, math.ceil(len(inscope) * (1.0 - max_false_abstention)))
    threshold = float(min(max(inscope[k_idx], 0.5), 0.999))
    model = ScopeGate(emb[y == 0], _logistic(feats, y))
    metrics = {
        "items": len(items),
        "unsure_items": int(y.sum()),
        "bank": int((y == 0).sum()),
        "threshold": round(threshold, 4),
        "weights": [round(float(v), 4) for v in model.w.detach()],
        "oof_nonsense_abstention": round(float((oof[y == 1] >= threshold).float().mean()), 4),
        "oof_false_abstention": round(float((oof[y == 0] >= threshold).float().mean()), 4),
        "seconds": round(time.perf_counter() - t0, 2),
        "seed": seed,
    }
    return model, threshold, metrics


def export_scope_gate(
    model: ScopeGate, threshold: float, out_dir: Path, metrics: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    meta = {
        "schema": SCOPE_GATE_SCHEMA,
        "role": "scope_head",
        "embed_dim": model.embed_dim,
        "threshold": threshold,
        "question_text": "the raw question (the router's embedding)",
        "keyword_confidence": "edge.agent.routing.KeywordRouter.route(text)[1]",
        "metrics": metrics or {},
    }
    args = (torch.zeros(2, model.embed_dim), torch.zeros(2))
    names = ["question_embedding", "keyword_confidence"]
    return _export_head(
        model, args, out_dir / SCOPE_ONNX_FILE, names, "unsure_logit", out_dir / SCOPE_META_FILE, meta
    )


# ----------------------------------------------------------------------------- scope gate (/3)
SCOPE_GATE3_SCHEMA = "autoglm.scope_head/3"
SCOPE_BASE = ("top1", "keyword")  # the /2 gate's two signals
# the optional feature groups of the /3 selection (docs/EVALUATION.md, "Scope gate /3")
SCOPE_GROUPS: dict[str, tuple[str, ...]] = {
    "T5": ("top5",),
    "C": ("centroid",),
    "L": ("link", "code"),
    "V": ("en_vocab", "cjk_vocab"),
    "N": ("length",),
}
SCOPE_MODELS = ("logistic", "mlp")


def scope_candidates() -> list[tuple[str, tuple[str, ...], str]]:
    """The 33 candidates of the /3 selection: (name, features, model) — the base plus every subset
    of the groups (logistic regression), and all groups with the tiny MLP."""
    out = []
    groups = list(SCOPE_GROUPS)
    for r in range(len(groups) + 1):
        for combo in itertools.combinations(groups, r):
            feats = SCOPE_BASE + tuple(f for g in combo for f in SCOPE_GROUPS[g])
            out.append(("+".join(("base", *combo)), ordered_features(feats), "logistic"))
    everything = SCOPE_BASE + tuple(f for g in groups for f in SCOPE_GROUPS[g])
    out.append(("+".join(("base", *groups, "mlp")), ordered_features(everything), "mlp"))
    return out


def ordered_features(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Embedding features first, then text features, each in its canonical order (the order of the
    graph's feature vector)."""
    from skillpack.kg.scope_features import EMBEDDING_FEATURES, TEXT_FEATURES

    unknown = set(names) - set(EMBEDDING_FEATURES) - set(TEXT_FEATURES)
    if unknown:
        raise ValueError(f"unknown scope-gate features {sorted(unknown)}")
    return tuple(f for f in (*EMBEDDING_FEATURES, *TEXT_FEATURES) if f in names)


def encoder_vocabulary(bundle_dir: Path, parent: Path | None = None) -> Any:
    """The :class:`skillpack.kg.scope_features.Vocabulary` of a bundle's tokenizer (its WordPiece
    vocabulary's whole English words and CJK ideographs)."""
    from contracts.bundle import open_bundle
    from skillpack.kg.scope_features import Vocabulary

    bundle = open_bundle(bundle_dir, parent=parent)
    tok = json.loads(Path(bundle.tokenizer_file()).read_text(encoding="utf-8"))
    return Vocabulary.from_tokens(dict(tok["model"]["vocab"]))


@dataclass
class ScopeData:
    """The scope gate's training requests: normalised embeddings, labels (1 = unsure), family,
    route, whether the request is from a training nonsense family (scored by the selection), and
    every text feature (``skillpack.kg.scope_features.TEXT_FEATURES`` order)."""

    items: list[ParaItem]
    emb: np.ndarray
    y: np.ndarray
    nonsense_family: np.ndarray
    text: np.ndarray

    def fold(self, split: int = 0) -> np.ndarray:
        """Two folds by family: split 0 is the /2 gate's (``crc32(family) % 2``)."""
        keys = [it.families[0] if split == 0 else f"{split}:{it.families[0]}" for it in self.items]
        return np.array([zlib.crc32(k.encode("utf-8")) % 2 for k in keys])


def scope_data(
    items: list[ParaItem], embed: Embed, keyword_confidence: Callable[[str], float], vocabulary: Any
) -> ScopeData:
    from skillpack.kg.scope_features import TEXT_FEATURES, TextFeatures

    texts = [it.text for it in items]
    emb = np.asarray(embed(texts), dtype=np.float32)
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    feats = TextFeatures(TEXT_FEATURES, keyword=keyword_confidence, vocabulary=vocabulary)
    return ScopeData(
        items,
        emb,
        np.array([1.0 if it.route == UNSURE else 0.0 for it in items], dtype=np.float32),
        np.array([it.kind == "nonsense" and it.families[0].startswith("ns.") for it in items]),
        feats.many(texts),
    )


def _embedding_features(q: np.ndarray, bank: np.ndarray, bank_routes: list[str]) -> np.ndarray:
    """[top1, top5, centroid] of normalised ``q`` against a normalised bank (numpy; the graph's
    ``bank_features``)."""
    sims = q @ bank.T
    k = min(5, bank.shape[0])
    top5 = -np.sort(-sims, axis=1)[:, :k].mean(1)
    cents = centroids_of(bank, bank_routes)[0]
    return np.stack([sims.max(1), top5, (q @ cents.T).max(1)], axis=1).astype(np.float32)


def centroids_of(bank: np.ndarray, routes: list[str]) -> tuple[np.ndarray, list[str]]:
    """L2-normalised mean of the (normalised) bank embeddings of each route, routes sorted."""
    names = sorted(set(routes))
    r = np.array(routes)
    cents = np.stack([bank[r == name].mean(0) for name in names])
    return cents / np.maximum(np.linalg.norm(cents, axis=1, keepdims=True), 1e-12), names


def oof_scope_features(data: ScopeData, fold: np.ndarray) -> np.ndarray:
    """Every feature (embedding features then text features) of each request, the embedding ones
    against the in-scope requests of the *other* fold. [N, 3 + len(TEXT_FEATURES)]"""
    out = np.zeros((len(data.items), 3), dtype=np.float32)
    routes = [it.route for it in data.items]
    for k in (0, 1):
        bank_mask = (fold != k) & (data.y == 0)
        out[fold == k] = _embedding_features(
            data.emb[fold == k], data.emb[bank_mask], [r for r, m in zip(routes, bank_mask, strict=True) if m]
        )
    return np.concatenate([out, data.text], axis=1)


def _columns(names: tuple[str, ...]) -> list[int]:
    from skillpack.kg.scope_features import EMBEDDING_FEATURES, TEXT_FEATURES

    allf = (*EMBEDDING_FEATURES, *TEXT_FEATURES)
    return [allf.index(n) for n in names]


@dataclass
class ScopeClassifier:
    """A fitted /3 classifier on standardised features."""

    mean: torch.Tensor
    sd: torch.Tensor
    weights: torch.Tensor | None = None
    mlp: nn.Module | None = None

    def logits(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        z = (torch.as_tensor(x, dtype=torch.float32) - self.mean) / self.sd
        with torch.no_grad():
            if self.weights is not None:
                out: torch.Tensor = self.weights[0] + z @ self.weights[1:]
                return out
            assert self.mlp is not None
            mlp_out: torch.Tensor = self.mlp(z)[:, 0]
            return mlp_out


def fit_scope_classifier(x: np.ndarray, y: np.ndarray, model: str, seed: int = 0) -> ScopeClassifier:
    """Class-balanced logistic regression (L2 1e-3, LBFGS) or tiny MLP (8 tanh units, Adam lr
    1e-2, weight decay 1e-3, 300 full-batch steps) on features standardised with their mean / sd."""
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.float32)
    mean = xt.mean(0)
    sd = xt.std(0)
    sd = torch.where(sd > 1e-6, sd, torch.ones_like(sd))
    z = (xt - mean) / sd
    if model == "logistic":
        return ScopeClassifier(mean, sd, weights=_logistic(z, yt))
    if model != "mlp":
        raise ValueError(f"unknown scope-gate model {model!r}")
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(z.shape[1], 8), nn.Tanh(), nn.Linear(8, 1))
    pos = float(yt.sum())
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(max((len(yt) - pos) / max(pos, 1.0), 1.0)))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn(mlp(z)[:, 0], yt)
        loss.backward()
        opt.step()
    mlp.eval()
    return ScopeClassifier(mean, sd, mlp=mlp)


def abstention_threshold(oof: np.ndarray, y: np.ndarray, max_false_abstention: float = 0.01) -> float:
    """The /2 rule: the out-of-fold "unsure" probability that keeps ≤ ``max_false_abstention`` of
    in-scope requests at or above it, floor 0.5, cap 0.999."""
    inscope = np.sort(oof[y == 0])
    k = min(len(inscope) - 1, math.ceil(len(inscope) * (1.0 - max_false_abstention)))
    return float(min(max(inscope[k], 0.5), 0.999))


def oof_scope_run(
    data: ScopeData,
    features: tuple[str, ...],
    model: str,
    split: int = 0,
    seed: int = 0,
    max_false_abstention: float = 0.01,
    all_features: np.ndarray | None = None,
) -> dict[str, Any]:
    """One out-of-fold run: probabilities, the threshold and the abstention it gives
    (``all_features``: ``oof_scope_features`` of this split, when the caller has them)."""
    fold = data.fold(split)
    x_all = oof_scope_features(data, fold) if all_features is None else all_features
    x = x_all[:, _columns(features)]
    oof = np.zeros(len(data.items))
    for k in (0, 1):
        clf = fit_scope_classifier(x[fold != k], data.y[fold != k], model, seed)
        oof[fold == k] = torch.sigmoid(clf.logits(x[fold == k])).numpy()
    thr = abstention_threshold(oof, data.y, max_false_abstention)
    return {
        "threshold": thr,
        "oof": oof,
        "nonsense_family_abstention": float((oof[data.nonsense_family] >= thr).mean()),
        "unsure_abstention": float((oof[data.y == 1] >= thr).mean()),
        "false_abstention": float((oof[data.y == 0] >= thr).mean()),
    }


def select_scope_rule(table: dict[str, dict[str, Any]], tie_pt: float = 1.0) -> str:
    """The written rule: among candidates with mean OOF false abstention ≤ 1 %, the highest mean
    score; one within ``tie_pt`` points of it with fewer features wins instead (fewest features,
    then the higher score, logistic before MLP)."""
    ok = {n: r for n, r in table.items() if r["false_abstention"]["mean"] <= 0.01}
    if not ok:
        raise ValueError("no scope-gate candidate keeps out-of-fold false abstention ≤ 1 %")
    best = max(r["score"]["mean"] for r in ok.values())
    near = [n for n, r in ok.items() if r["score"]["mean"] >= best - tie_pt / 100.0]
    return min(
        near,
        key=lambda n: (len(ok[n]["features"]), -ok[n]["score"]["mean"], ok[n]["model"] != "logistic"),
    )


def select_scope_features(
    embed: Embed,
    keyword_confidence: Callable[[str], float],
    vocabulary: Any,
    *,
    items: list[ParaItem] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    splits: int = 5,
    candidates: list[tuple[str, tuple[str, ...], str]] | None = None,
) -> dict[str, Any]:
    """The /3 selection protocol (docs/EVALUATION.md): every candidate over seeds × family splits,
    out of fold on training requests only; returns the table and the selected candidate."""
    base = items if items is not None else train_items(seed=0, kg_per_pattern=24)
    table: dict[str, dict[str, Any]] = {}
    cands = candidates or scope_candidates()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in cands}
    for seed in seeds:
        data = scope_data(base + noise_items(seed), embed, keyword_confidence, vocabulary)
        for split in range(splits):
            x_all = oof_scope_features(data, data.fold(split))
            for name, feats, model in cands:
                r = oof_scope_run(data, feats, model, split, seed, all_features=x_all)
                runs[name].append({k: v for k, v in r.items() if k != "oof"} | {"seed": seed, "split": split})
    for name, feats, model in cands:
        rs = runs[name]

        def stat(key: str, rs: list[dict[str, Any]] = rs) -> dict[str, float]:
            v = [r[key] for r in rs]
            return {
                "mean": round(float(np.mean(v)), 4),
                "sd": round(float(np.std(v, ddof=1)), 4) if len(v) > 1 else 0.0,
                "min": round(float(np.min(v)), 4),
                "max": round(float(np.max(v)), 4),
            }

        table[name] = {
            "features": list(feats),
            "model": model,
            "score": stat("nonsense_family_abstention"),
            "unsure_abstention": stat("unsure_abstention"),
            "false_abstention": stat("false_abstention"),
            "threshold": stat("threshold"),
            "runs": len(rs),
        }
    return {"candidates": table, "selected": select_scope_rule(table), "seeds": list(seeds), "splits": splits}


# the /3 selection's winner by the written rule (docs/EVALUATION.md; record
# benchmarks/results/dev/scope_gate-20261206T020148Z.json: all nine features, tiny MLP, 97.1 ± 1.0 %
# out-of-fold nonsense-family abstention at 0.95 % false abstention; best logistic set 95.4 %,
# the /2 base 93.2 %)
SCOPE_GATE3_FEATURES: tuple[str, ...] = (
    "top1",
    "top5",
    "centroid",
    "keyword",
    "link",
    "code",
    "en_vocab",
    "cjk_vocab",
    "length",
)
SCOPE_GATE3_MODEL = "mlp"
# the gate train_heads ships with a keyword router (``autoglm export --graph-heads``, the loop):
# /3, since it won the selection on training families
SHIPPED_SCOPE_GATE = 3


def train_scope_gate3(
    embed: Embed,
    keyword_confidence: Callable[[str], float],
    vocabulary: Any,
    *,
    features: tuple[str, ...] | None = None,
    model: str | None = None,
    items: list[ParaItem] | None = None,
    seed: int = 0,
    max_false_abstention: float = 0.01,
) -> tuple[ScopeGate3, float, dict[str, Any]]:
    """The /3 gate: the classifier fit on every training request's out-of-fold features (split 0,
    as /2), the graph's bank and route centroids all in-scope requests; its threshold from split
    0's out-of-fold probabilities (the /2 rule) and metrics."""
    from skillpack.kg.scope_features import EMBEDDING_FEATURES

    t0 = time.perf_counter()
    feats = ordered_features(features or SCOPE_GATE3_FEATURES)
    model = model or SCOPE_GATE3_MODEL
    items = (items if items is not None else train_items(seed=seed)) + noise_items(seed)
    data = scope_data(items, embed, keyword_confidence, vocabulary)
    # as /2: the classifier is fit on every request's *out-of-fold* features (split 0: its bank
    # and centroids hold only the other fold's in-scope requests, as an unseen request's bank
    # holds none of its family); features against the full bank would give every in-scope
    # training request top1 = 1 (itself) and teach the classifier a gap no new request has
    x_oof = oof_scope_features(data, data.fold(0))
    oof = oof_scope_run(data, feats, model, 0, seed, max_false_abstention, all_features=x_oof)
    threshold = float(oof["threshold"])
    inscope = data.y == 0
    bank = data.emb[inscope]
    routes = [it.route for it, m in zip(items, inscope, strict=True) if m]
    clf = fit_scope_classifier(x_oof[:, _columns(feats)], data.y, model, seed)
    cents, cent_routes = centroids_of(bank, routes)
    gate = ScopeGate3(
        torch.from_numpy(bank),
        torch.from_numpy(cents),
        [f for f in feats if f in EMBEDDING_FEATURES],
        [f for f in feats if f not in EMBEDDING_FEATURES],
        clf.mean,
        clf.sd,
        weights=clf.weights,
        mlp=clf.mlp,
    )
    gate.eval()
    metrics = {
        "items": len(items),
        "unsure_items": int(data.y.sum()),
        "bank": int(inscope.sum()),
        "centroid_routes": cent_routes,
        "features": list(feats),
        "model": model,
        "threshold": round(threshold, 4),
        "weights": [round(float(v), 4) for v in clf.weights] if clf.weights is not None else None,
        "oof_nonsense_family_abstention": round(oof["nonsense_family_abstention"], 4),
        "oof_nonsense_abstention": round(oof["unsure_abstention"], 4),
        "oof_false_abstention": round(oof["false_abstention"], 4),
        "seconds": round(time.perf_counter() - t0, 2),
        "seed": seed,
    }
    return gate, threshold, metrics


def export_scope_gate3(
    model: ScopeGate3,
    threshold: float,
    vocabulary: Any,
    out_dir: Path,
    metrics: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    meta = {
        "schema": SCOPE_GATE3_SCHEMA,
        "role": "scope_head",
        "embed_dim": model.embed_dim,
        "threshold": threshold,
        "question_text": "the raw question (the router's embedding)",
        "embedding_features": model.embedding_features,
        "text_features": model.text_features,
        "text_feature_code": "skillpack.kg.scope_features.TextFeatures",
        "keyword_confidence": "edge.agent.routing.KeywordRouter.route(text)[1]",
        "vocabulary": vocabulary.to_meta(),
        "metrics": metrics or {},
    }
    args = (torch.zeros(2, model.embed_dim), torch.zeros(2, len(model.text_features)))
    names = ["question_embedding", "text_features"]
    return _export_head(
        model, args, out_dir / SCOPE_ONNX_FILE, names, "unsure_logit", out_dir / SCOPE_META_FILE, meta
    )


# ----------------------------------------------------------------------------- export
def export_hop_scorer(
    model: HopScorer, out_dir: Path, metrics: dict[str, Any] | None = None, stop_bias: float = 0.0
) -> tuple[Path, Path]:
    d, c = model.embed_dim, model.char_dim
    args = (
        torch.zeros(2, d),
        torch.zeros(2, c),
        torch.zeros(2, dtype=torch.long),
        torch.full((2,), STOP_INDEX, dtype=torch.long),
        torch.zeros(2, dtype=torch.long),
    )
    names = ["question_embedding", "char_grams", "hop", "prev_relation", "entity_type"]
    meta = {
        "schema": HOP_SCHEMA,
        "role": "hop_scorer",
        "relations": list(RELATION_NAMES),
        "stop_index": STOP_INDEX,
        "entity_types": list(TYPE_NAMES),
        "embed_dim": d,
        "char_dim": c,
        "max_hops": MAX_HOPS,
        "relation_descriptions": relation_descriptions(),
        "question_text": "skillpack.kg.hop_features.masked_question",
        "stop_bias": stop_bias,
        "metrics": metrics or {},
    }
    return _export_head(model, args, out_dir / ONNX_FILE, names, "relation_logits", out_dir / META_FILE, meta)


def export_scope_head(
    model: ScopeHead, threshold: float, out_dir: Path, metrics: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    meta = {
        "schema": SCOPE_SCHEMA,
        "role": "scope_head",
        "embed_dim": model.embed_dim,
        "char_dim": model.char_dim,
        "threshold": threshold,
        "question_text": "the raw question (the router's embedding)",
        "metrics": metrics or {},
    }
    args = (torch.zeros(2, model.embed_dim), torch.zeros(2, model.char_dim))
    names = ["question_embedding", "char_grams"]
    return _export_head(
        model, args, out_dir / SCOPE_ONNX_FILE, names, "unsure_logit", out_dir / SCOPE_META_FILE, meta
    )


def _signature(meta: dict[str, Any]) -> Any:
    from contracts.manifest import Signature, TensorSpec

    d, c = int(meta["embed_dim"]), int(meta.get("char_dim", 0))
    if meta.get("schema") == PATH_SCHEMA:
        windows = (
            [
                TensorSpec(name="window_embeddings", dtype="float32", shape=["batch", "windows", d]),
                TensorSpec(name="window_mask", dtype="float32", shape=["batch", "windows"]),
            ]
            if meta.get("phrases")
            else []
        )
        chars = [TensorSpec(name="char_grams", dtype="float32", shape=["batch", c])] if c else []
        return Signature(
            inputs=[
                TensorSpec(name="question_embedding", dtype="float32", shape=["batch", d]),
                TensorSpec(name="start_type", dtype="int64", shape=["batch"]),
                *windows,
                *chars,
            ],
            outputs=[TensorSpec(name="path_logits", dtype="float32", shape=["batch", len(meta["paths"])])],
        )
    if meta.get("schema") == SCOPE_GATE3_SCHEMA:
        return Signature(
            inputs=[
                TensorSpec(name="question_embedding", dtype="float32", shape=["batch", d]),
                TensorSpec(
                    name="text_features", dtype="float32", shape=["batch", len(meta["text_features"])]
                ),
            ],
            outputs=[TensorSpec(name="unsure_logit", dtype="float32", shape=["batch"])],
        )
    if meta.get("schema") == SCOPE_GATE_SCHEMA:
        return Signature(
            inputs=[
                TensorSpec(name="question_embedding", dtype="float32", shape=["batch", d]),
                TensorSpec(name="keyword_confidence", dtype="float32", shape=["batch"]),
            ],
            outputs=[TensorSpec(name="unsure_logit", dtype="float32", shape=["batch"])],
        )
    if meta["role"] == "scope_head":
        return Signature(
            inputs=[
                TensorSpec(name="question_embedding", dtype="float32", shape=["batch", d]),
                TensorSpec(name="char_grams", dtype="float32", shape=["batch", c]),
            ],
            outputs=[TensorSpec(name="unsure_logit", dtype="float32", shape=["batch"])],
        )
    n = len(meta["relations"]) + 1
    return Signature(
        inputs=[
            TensorSpec(name="question_embedding", dtype="float32", shape=["batch", d]),
            TensorSpec(name="char_grams", dtype="float32", shape=["batch", c]),
            TensorSpec(name="hop", dtype="int64", shape=["batch"]),
            TensorSpec(name="prev_relation", dtype="int64", shape=["batch"]),
            TensorSpec(name="entity_type", dtype="int64", shape=["batch"]),
        ],
        outputs=[TensorSpec(name="relation_logits", dtype="float32", shape=["batch", n])],
    )


def attach_to_bundle(
    bundle_dir: Path, heads: list[tuple[Path, Path]], signing_key: Path | None = None
) -> None:
    """Copy heads ``(onnx, meta)`` into the bundle and list each in the manifest under its role
    (``meta["role"]``: ``hop_scorer`` | ``scope_head``)."""
    import shutil

    from contracts.bundle import sha256_file, sign_bundle
    from contracts.manifest import MANIFEST_FILE, SIGNATURE_FILE, FileEntry, GraphEntry, Manifest

    bundle_dir = Path(bundle_dir)
    manifest = Manifest.from_yaml((bundle_dir / MANIFEST_FILE).read_bytes())
    files, graphs = dict(manifest.files), dict(manifest.graphs)
    for onnx_path, meta_path in heads:
        for src in (onnx_path, meta_path):
            dst = bundle_dir / src.name
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
            files[src.name] = FileEntry(sha256=sha256_file(dst), size=dst.stat().st_size)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        graphs[meta["role"]] = GraphEntry(
            file=onnx_path.name,
            sha256=files[onnx_path.name].sha256,
            precision="fp32",
            signature=_signature(meta),
        )
    updated = manifest.model_copy(update={"files": files, "graphs": graphs})
    (bundle_dir / MANIFEST_FILE).write_text(updated.to_yaml(), encoding="utf-8")
    sig = bundle_dir / SIGNATURE_FILE
    if signing_key is not None:
        sign_bundle(bundle_dir, signing_key)
    elif sig.exists():
        sig.unlink()  # the old signature covers the old manifest; say so instead of shipping a broken one
        log.warning("%s: removed the stale manifest signature; re-sign the bundle", bundle_dir)


# ----------------------------------------------------------------------------- bundle encoder (ORT)
def bundle_embedder(bundle_dir: Path, adapter_set: str | None = None, parent: Path | None = None) -> Embed:
    """Sentence embeddings from a bundle's encoder graph with its adapters bound (ONNX Runtime),
    tokenised as the manifest says: the numbers the edge computes. ``parent``: the full bundle an
    adapter update takes its graph and tokenizer from."""
    import onnxruntime as ort
    from safetensors.numpy import load_file

    from contracts.adapter_codec import decode_tensors
    from contracts.bundle import open_bundle
    from contracts.tokenizer import tokenizer_for

    bundle = open_bundle(bundle_dir, parent=parent)
    m = bundle.manifest
    set_name = adapter_set or m.default_adapter_set
    entry = m.adapter_sets[set_name]
    tensors = decode_tensors(
        load_file(str(bundle.adapter_file(set_name))), entry.encoding, sorted(entry.tensors)
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    bound = [ort.OrtValue.ortvalue_from_numpy(a) for a in tensors.values()]
    for name, value in zip(tensors, bound, strict=True):
        so.add_initializer(name, value)
    session = ort.InferenceSession(
        str(bundle.graph_file("encoder")), sess_options=so, providers=["CPUExecutionProvider"]
    )
    tok = tokenizer_for(bundle.tokenizer_file(), m.tokenizer)
    names = [i.name for i in session.get_inputs()]

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 64):
            ids, mask = tok([" ".join(t.split()).lower() for t in texts[i : i + 64]])
            emb = session.run(None, {names[0]: ids, names[1]: mask})[0]
            out.append(np.asarray(emb, dtype=np.float32))
        embed.bound = bound  # type: ignore[attr-defined]  # keep the initializers alive
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    return embed


# defaults of the shipped heads, chosen on the validation families by benchmarks/reasoning_ablation.py
# (record benchmarks/results/reasoning-*.json, "validation": variant and length prior)
DEFAULT_SCORER = "path"
DEFAULT_LENGTH_PRIOR = {"path": 3.0, "hop": -2.0}
# the shipped path scorer's training size: questions per pattern and language, and epochs — chosen
# on the validation families after re-split 3 (benchmarks/reasoning_families.py --select, record
# benchmarks/results/dev/reasoning_families_select-20261206T225501Z: 24 x 60 gave 76.2 %, 192 x 150
# 91.9 %, 192 x 300 91.5 %); the scope heads keep ``train_items``' default size
PATH_TRAIN_PER_PATTERN = 192
PATH_TRAIN_EPOCHS = 150


def train_heads(
    bundle_dir: Path,
    *,
    seed: int = 0,
    scorer: str = DEFAULT_SCORER,
    prior: float | None = None,
    phrases: bool = False,
    keyword_confidence: Callable[[str], float] | None = None,
    epochs: int = 80,
    fusion: bool = False,
    adaptive: bool = True,
    out: Path | None = None,
    parent: Path | None = None,
    max_s: float | None = None,
    scope_gate: int | None = None,
    priors: list[FleetPathPrior] | None = None,
    path_per_pattern: int | None = None,
    path_epochs: int | None = None,
) -> tuple[list[tuple[Path, Path]], dict[str, Any]]:
    """Train the graph scorer and the abstention head on the bundle's own encoder and export
    them (ONNX + JSON) into ``out`` (default: the bundle directory). The abstention head is a
    gate when ``keyword_confidence`` is given (the edge keyword router's confidence — the cloud
    wing cannot import it, the caller passes it: ``autoglm``, the benchmarks): ``scope_gate`` 3
    (the selected feature gate) or 2 (kNN + keyword), default ``SHIPPED_SCOPE_GATE``; else the
    MLP scope head (/1). ``parent``: the full bundle of an adapter update.
    ``max_s``: raise :class:`HeadTrainingTimeout` once training has run that long (checked after
    every embedding chunk and between the two heads). ``priors``: the fleet's path feedback
    sums for the path scorer (``train_path_scorer``); the per-hop scorer does not read them.
    ``path_per_pattern`` / ``path_epochs``: the path scorer's training size (default the shipped
    :data:`PATH_TRAIN_PER_PATTERN` x :data:`PATH_TRAIN_EPOCHS`)."""
    if priors and scorer != "path":
        raise ValueError("fleet path priors are read by the path scorer only (scorer='path')")
    started = time.monotonic()
    embed = CachedEmbed(_deadline_embed(bundle_embedder(bundle_dir, parent=parent), started, max_s))
    items = train_items(seed=seed)
    out = out or bundle_dir
    prior = DEFAULT_LENGTH_PRIOR[scorer] if prior is None else prior
    heads: list[tuple[Path, Path]] = []
    if scorer == "path":
        path_model, metrics = train_path_scorer(
            embed,
            items=train_items(seed=seed, kg_per_pattern=path_per_pattern or PATH_TRAIN_PER_PATTERN),
            seed=seed,
            epochs=path_epochs or PATH_TRAIN_EPOCHS,
            phrases=phrases,
            priors=priors,
        )
        heads.append(export_path_scorer(path_model, out, metrics, length_bias=prior))
    else:
        hop_model, metrics = train_hop_scorer(
            embed, items=items, epochs=epochs, seed=seed, fusion=fusion, adaptive=adaptive
        )
        heads.append(export_hop_scorer(hop_model, out, metrics, stop_bias=prior))
    _check_deadline(started, max_s)
    version = SHIPPED_SCOPE_GATE if scope_gate is None else scope_gate
    if keyword_confidence is not None and version == 3:
        vocabulary = encoder_vocabulary(bundle_dir, parent)
        gate3, threshold, scope_metrics = train_scope_gate3(
            embed, keyword_confidence, vocabulary, items=items, seed=seed
        )
        heads.append(export_scope_gate3(gate3, threshold, vocabulary, out, scope_metrics))
    elif keyword_confidence is not None:
        gate, threshold, scope_metrics = train_scope_gate(embed, keyword_confidence, items=items, seed=seed)
        heads.append(export_scope_gate(gate, threshold, out, scope_metrics))
    else:
        head, threshold, scope_metrics = train_scope_head(embed, items=items, seed=seed)
        heads.append(export_scope_head(head, threshold, out, scope_metrics))
    return heads, {"hop_scorer": metrics, "scope_head": scope_metrics}


class HeadTrainingTimeout(RuntimeError):
    """Head training ran past its time limit (``train_heads(max_s=...)``)."""


def _check_deadline(started: float, max_s: float | None) -> None:
    if max_s is not None and time.monotonic() - started > max_s:
        raise HeadTrainingTimeout(f"graph-head training ran past its limit of {max_s:.0f} s")


def _deadline_embed(embed: Embed, started: float, max_s: float | None) -> Embed:
    def timed(texts: list[str]) -> np.ndarray:
        _check_deadline(started, max_s)
        return embed(texts)

    return timed


def train_and_attach(
    bundle_dir: Path,
    *,
    parent: Path | None = None,
    seed: int = 0,
    keyword_confidence: Callable[[str], float] | None = None,
    max_s: float | None = None,
    priors: list[FleetPathPrior] | None = None,
    path_per_pattern: int | None = None,
    path_epochs: int | None = None,
) -> dict[str, Any]:
    """Train the shipped heads (default scorer and length prior) on ``bundle_dir``'s encoder —
    for an adapter update (``parent`` given), the parent's graph with the update's adapters —
    write them into the bundle and list them in its manifest (unsigned: the caller signs after).
    ``priors``: the fleet's path feedback sums (recorded in ``hop_scorer.fleet_priors``).
    Returns the trainers' metrics plus the wall time; what ``export --graph-heads`` and the
    learning loop record."""
    t0 = time.perf_counter()
    random.seed(seed)
    heads, metrics = train_heads(
        bundle_dir,
        seed=seed,
        keyword_confidence=keyword_confidence,
        parent=parent,
        max_s=max_s,
        priors=priors,
        path_per_pattern=path_per_pattern,
        path_epochs=path_epochs,
    )
    if math.isnan(float(metrics["hop_scorer"]["train_loss"])):
        raise ValueError("graph-head training diverged (hop scorer loss is NaN)")
    attach_to_bundle(bundle_dir, heads)
    roles = [json.loads(meta.read_text(encoding="utf-8"))["role"] for _, meta in heads]
    return {**metrics, "roles": roles, "seed": seed, "seconds": round(time.perf_counter() - t0, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Train the graph scorer and the abstention head and export them as ONNX."
    )
    ap.add_argument("--bundle", type=Path, required=True, help="bundle whose encoder embeds the questions")
    ap.add_argument("--out", type=Path, help="output directory (default: the bundle directory)")
    ap.add_argument(
        "--attach",
        action="store_true",
        help="list the heads in the bundle's manifest (hop_scorer, scope_head)",
    )
    ap.add_argument("--sign-key", type=Path, help="re-sign the bundle after attaching")
    ap.add_argument(
        "--scorer",
        choices=["path", "hop"],
        default=DEFAULT_SCORER,
        help="whole-path scorer (schema /3) or per-hop scorer (/2)",
    )
    ap.add_argument(
        "--length-prior",
        type=float,
        help="path: bias per relation; hop: STOP bias (default: the validation choice)",
    )
    ap.add_argument(
        "--phrases", action="store_true", help="path scorer reads question windows (phrase granularity)"
    )
    ap.add_argument("--epochs", type=int, default=80, help="per-hop scorer epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--fusion",
        action="store_true",
        help="per-hop scorer: gated fusion with the character granularity "
        "(off: it did not help on the validation families, docs/arch/agent.md)",
    )
    ap.add_argument(
        "--no-adaptive", action="store_true", help="per-hop scorer: no adaptive question-relation graph"
    )
    ap.add_argument(
        "--fleet-priors-db",
        type=Path,
        help="path scorer: train with the fleet's path feedback sums read from the cloud sync hub's "
        "SQLite file (sync_db_path)",
    )
    args = ap.parse_args(argv)
    random.seed(args.seed)
    priors = None
    if args.fleet_priors_db is not None:
        from cloud.sync.repository import read_fleet_priors

        priors = read_fleet_priors(args.fleet_priors_db)
    heads, metrics = train_heads(
        args.bundle,
        seed=args.seed,
        scorer=args.scorer,
        prior=args.length_prior,
        phrases=args.phrases,
        epochs=args.epochs,
        fusion=args.fusion,
        adaptive=not args.no_adaptive,
        out=args.out,
        priors=priors,
    )
    if args.attach:
        attach_to_bundle(args.bundle, heads, args.sign_key)
    print(json.dumps({"heads": [str(h[0]) for h in heads], **metrics}))
    return 0 if not math.isnan(metrics["hop_scorer"]["train_loss"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
