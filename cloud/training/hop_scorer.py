"""Training and export of the hop-scorer head (``cloud.model.hop_scorer``).

Data: the train split of ``skillpack.kg.questions`` (eval phrasings are never seen). Every
question gives one example per search state along its gold path — (masked question embedding,
hop, previous relation, current entity type) → the next gold relation, or STOP after the last
hop — with a mask of the relations that really leave the current entities, so the head learns
to choose among the candidates the search will offer. The question embeddings come from the
bundle's own encoder (ONNX Runtime, adapters bound) — the same numbers the edge computes.

    python -m cloud.training.hop_scorer --bundle DIR [--attach] [--sign-key KEY]

writes ``hop_scorer.onnx`` + ``hop_scorer.json`` and, with ``--attach``, adds them to the
bundle's manifest as graph role ``hop_scorer`` (re-sign the bundle after attaching).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cloud.model.hop_scorer import HopScorer
from contracts.logging import get_logger
from skillpack.kg.graph import KnowledgeGraph, default_graph
from skillpack.kg.hop_features import MAX_HOPS, RELATION_NAMES, STOP_INDEX, TYPE_NAMES, masked_question
from skillpack.kg.questions import Question, generate_questions
from skillpack.kg.reasoner import HopState, LexicalHopScorer
from skillpack.text import to_ascii

log = get_logger("autoglm.cloud.training.hop_scorer")
Embed = Callable[[list[str]], np.ndarray]
META_FILE = "hop_scorer.json"
ONNX_FILE = "hop_scorer.onnx"


@dataclass
class HopBatch:
    emb: torch.Tensor
    hop: torch.Tensor
    prev: torch.Tensor
    etype: torch.Tensor
    cues: torch.Tensor  # [N, R+1] lexical cue scores
    mask: torch.Tensor  # [N, R+1] True where the output is a valid candidate
    target: torch.Tensor


def candidate_mask(graph: KnowledgeGraph, frontier: list[str], hop: int) -> np.ndarray:
    mask = np.zeros(len(RELATION_NAMES) + 1, dtype=bool)
    for e in frontier:
        for r in graph.relations_from(e):
            mask[RELATION_NAMES.index(r)] = True
    mask[STOP_INDEX] = hop > 0
    return mask


def build_examples(graph: KnowledgeGraph, questions: list[Question], embed: Embed) -> HopBatch:
    lexical = LexicalHopScorer()
    all_relations = list(RELATION_NAMES)
    texts, rows = [], []
    for q in questions:
        norm = to_ascii(q.text)
        i = norm.find(q.mention)
        span = (i, i + len(q.mention))
        start_type = graph.entities[q.start].type
        texts.append(masked_question(norm, span, start_type))
        frontier = [q.start]
        for hop in range(len(q.path) + 1):
            target = RELATION_NAMES.index(q.path[hop]) if hop < len(q.path) else STOP_INDEX
            prev = RELATION_NAMES.index(q.path[hop - 1]) if hop else STOP_INDEX
            cur_type = graph.entities[frontier[0]].type
            cues = lexical(HopState(norm, span, start_type, cur_type, tuple(q.path[:hop])), all_relations)
            rows.append((len(texts) - 1, hop, prev, TYPE_NAMES.index(cur_type), cues,
                         candidate_mask(graph, frontier, hop), target))
            if hop < len(q.path):
                frontier = graph.follow(frontier[0], [q.path[hop]])
    emb = np.asarray(embed(texts), dtype=np.float32)
    return HopBatch(
        emb=torch.from_numpy(emb[[r[0] for r in rows]]),
        hop=torch.tensor([r[1] for r in rows]), prev=torch.tensor([r[2] for r in rows]),
        etype=torch.tensor([r[3] for r in rows]),
        cues=torch.from_numpy(np.stack([r[4] for r in rows]).astype(np.float32)),
        mask=torch.from_numpy(np.stack([r[5] for r in rows])),
        target=torch.tensor([r[6] for r in rows]),
    )


def train_hop_scorer(embed: Embed, *, graph: KnowledgeGraph | None = None, per_pattern: int = 16, epochs: int = 60,
                     lr: float = 3e-3, seed: int = 0, hidden: int = 128) -> tuple[HopScorer, dict[str, Any]]:
    """Train on the train split; returns the head and its training metrics."""
    torch.manual_seed(seed)
    graph = graph or default_graph()
    t0 = time.perf_counter()
    train_q = generate_questions(graph, "train", per_pattern=per_pattern, seed=seed)
    data = build_examples(graph, train_q, embed)
    model = HopScorer(int(data.emb.shape[1]), hidden=hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    n = data.target.shape[0]
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, 256):
            idx = perm[i : i + 256]
            logits = model(data.emb[idx], data.hop[idx], data.prev[idx], data.etype[idx], data.cues[idx])
            logits = logits.masked_fill(~data.mask[idx], -1e4)
            loss = loss_fn(logits, data.target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(data.emb, data.hop, data.prev, data.etype, data.cues).masked_fill(~data.mask, -1e4)
        acc = float((logits.argmax(-1) == data.target).float().mean())
        final_loss = float(loss_fn(logits, data.target))
    metrics = {"train_questions": len(train_q), "train_states": n, "train_state_accuracy": round(acc, 4),
               "train_loss": round(final_loss, 4), "seconds": round(time.perf_counter() - t0, 2),
               "embed_dim": int(data.emb.shape[1])}
    return model, metrics


def export_hop_scorer(model: HopScorer, out_dir: Path, metrics: dict[str, Any] | None = None) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    d = model.embed_dim
    args = (torch.zeros(2, d), torch.zeros(2, dtype=torch.long), torch.full((2,), STOP_INDEX, dtype=torch.long),
            torch.zeros(2, dtype=torch.long), torch.zeros(2, STOP_INDEX + 1))
    onnx_path = out_dir / ONNX_FILE
    torch.onnx.export(
        model, args, str(onnx_path), input_names=["question_embedding", "hop", "prev_relation", "entity_type", "cue_scores"],
        output_names=["relation_logits"], opset_version=17, dynamo=False,
        dynamic_axes={k: {0: "batch"} for k in ("question_embedding", "hop", "prev_relation", "entity_type", "cue_scores",
                                                 "relation_logits")},
    )
    meta = {"schema": "autoglm.hop_scorer/1", "relations": list(RELATION_NAMES), "stop_index": STOP_INDEX,
            "entity_types": list(TYPE_NAMES), "embed_dim": d, "max_hops": MAX_HOPS,
            "question_text": "skillpack.kg.hop_features.masked_question", "metrics": metrics or {}}
    meta_path = out_dir / META_FILE
    meta_path.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return onnx_path, meta_path


def attach_to_bundle(bundle_dir: Path, onnx_path: Path, meta_path: Path, signing_key: Path | None = None) -> None:
    """Copy the head into the bundle and list it in the manifest as graph role ``hop_scorer``."""
    import shutil

    from contracts.bundle import sha256_file, sign_bundle
    from contracts.manifest import (
        MANIFEST_FILE,
        SIGNATURE_FILE,
        FileEntry,
        GraphEntry,
        Manifest,
        Signature,
        TensorSpec,
    )

    bundle_dir = Path(bundle_dir)
    manifest = Manifest.from_yaml((bundle_dir / MANIFEST_FILE).read_bytes())
    for src in (onnx_path, meta_path):
        dst = bundle_dir / src.name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    files = dict(manifest.files)
    for name in (ONNX_FILE, META_FILE):
        p = bundle_dir / name
        files[name] = FileEntry(sha256=sha256_file(p), size=p.stat().st_size)
    graphs = dict(manifest.graphs)
    graphs["hop_scorer"] = GraphEntry(
        file=ONNX_FILE, sha256=files[ONNX_FILE].sha256, precision="fp32",
        signature=Signature(
            inputs=[TensorSpec(name="question_embedding", dtype="float32", shape=["batch", int(meta["embed_dim"])]),
                    TensorSpec(name="hop", dtype="int64", shape=["batch"]),
                    TensorSpec(name="prev_relation", dtype="int64", shape=["batch"]),
                    TensorSpec(name="entity_type", dtype="int64", shape=["batch"]),
                    TensorSpec(name="cue_scores", dtype="float32", shape=["batch", len(meta["relations"]) + 1])],
            outputs=[TensorSpec(name="relation_logits", dtype="float32", shape=["batch", len(meta["relations"]) + 1])]),
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
def bundle_embedder(bundle_dir: Path, adapter_set: str | None = None) -> Embed:
    """Sentence embeddings from a bundle's encoder graph with its adapters bound (ONNX Runtime),
    tokenised as the manifest says: the numbers the edge computes."""
    import onnxruntime as ort
    from safetensors.numpy import load_file

    from contracts.adapter_codec import decode_tensors
    from contracts.bundle import open_bundle
    from contracts.tokenizer import TextTokenizer, TokenizerSettings

    bundle = open_bundle(bundle_dir)
    m = bundle.manifest
    set_name = adapter_set or m.default_adapter_set
    entry = m.adapter_sets[set_name]
    tensors = decode_tensors(load_file(str(bundle.adapter_file(set_name))), entry.encoding, sorted(entry.tensors))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    bound = [ort.OrtValue.ortvalue_from_numpy(a) for a in tensors.values()]
    for name, value in zip(tensors, bound, strict=True):
        so.add_initializer(name, value)
    session = ort.InferenceSession(str(bundle.graph_file("encoder")), sess_options=so, providers=["CPUExecutionProvider"])
    spec = m.tokenizer
    tok = TextTokenizer(bundle.tokenizer_file(), TokenizerSettings(max_length=spec.max_length, lowercase=spec.lowercase,
                                                                    oov_char_fallback=spec.oov_char_fallback))
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train the hop-scorer head and export it as ONNX.")
    ap.add_argument("--bundle", type=Path, required=True, help="bundle whose encoder embeds the questions")
    ap.add_argument("--out", type=Path, help="output directory (default: the bundle directory)")
    ap.add_argument("--attach", action="store_true", help="add the head to the bundle's manifest (graph role hop_scorer)")
    ap.add_argument("--sign-key", type=Path, help="re-sign the bundle after attaching")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--per-pattern", type=int, default=16)
    args = ap.parse_args(argv)
    random.seed(0)
    embed = bundle_embedder(args.bundle)
    model, metrics = train_hop_scorer(embed, epochs=args.epochs, per_pattern=args.per_pattern)
    onnx_path, meta_path = export_hop_scorer(model, args.out or args.bundle, metrics)
    if args.attach:
        attach_to_bundle(args.bundle, onnx_path, meta_path, args.sign_key)
    print(json.dumps({"onnx": str(onnx_path), "meta": str(meta_path), **metrics}))
    return 0 if not math.isnan(metrics["train_loss"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
