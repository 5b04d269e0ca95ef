"""Reasoning ablation on the frozen held-out paraphrase families (``cloud/data/frozen``).

Part of ``benchmarks/quality_agent.py`` (``autoglm bench run agent -- --bundle DIR``); runs alone
too: ``python benchmarks/reasoning_ablation.py --bundle DIR [--seeds 0,1,2] [--quick]``.

For each hop scorer — lexical cue scorer (no training), learned (relation-description
embeddings), + adaptive question↔relation graph, + gated character/CJK fusion — graph hits@1
per hop and language on the frozen evaluation families and entities, through the ONNX graph the
edge runs (exported per seed, ONNX Runtime). The learned heads are trained on the *training*
families only, once per seed; numbers are mean ± spread (max − min) over the seeds. Also:
router accuracy (keyword router and the bundle's router head) on the frozen route families,
abstention on nonsense and false abstention on real questions (scope head with its threshold
calibrated out-of-fold on training families; baseline: router probability < 0.6), and
``Agent.ask`` latency for graph questions per scorer.

The evaluation files are never edited after looking at these numbers (docs/EVALUATION.md,
"Reasoning evaluation").
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cloud.data.paraphrase import UNSURE, ParaItem, load_frozen_eval, train_items  # noqa: E402
from contracts.errors import AutoGLMError  # noqa: E402
from skillpack.kg.graph import default_graph  # noqa: E402
from skillpack.kg.reasoner import PathReasoner  # noqa: E402

VARIANTS: dict[str, dict[str, bool]] = {
    "learned": {"fusion": False, "adaptive": False},
    "learned+adaptive": {"fusion": False, "adaptive": True},
    "learned+adaptive+fusion": {"fusion": True, "adaptive": True},
}
NOT_BUILT = ["co-training is a separate step (python -m cloud.training.cotrain on the checkpoint, then export): "
             "run this ablation on the co-trained bundle for the '+ co-training' row; a graph encoder over "
             "entities, path priors synced over MQTT and a session granularity are not built"]


class BundleEncoder:
    """The bundle's encoder + router head (ONNX Runtime) with a disk cache per bundle."""

    def __init__(self, bundle: Path, cache_dir: Path) -> None:
        from contracts.bundle import open_bundle
        from edge.runtime.bundle_session import BundleSession, bundle_tokenizer

        b = open_bundle(bundle)
        self.session = BundleSession(b, None)
        self.routes = list(self.session.routes)
        self.tok = bundle_tokenizer(b)
        digest = hashlib.sha256((bundle / "manifest.yaml").read_bytes()).hexdigest()[:16]
        self.path = cache_dir / f"reasoning-embeddings-{digest}.npz"
        self.emb: dict[str, np.ndarray] = {}
        self.logits: dict[str, np.ndarray] = {}
        if self.path.is_file():
            z = np.load(self.path, allow_pickle=False)
            for t, e, lg in zip(json.loads(str(z["texts"])), z["emb"], z["logits"], strict=True):
                self.emb[t], self.logits[t] = e, lg
        self.dirty = False

    def _fill(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self.emb]
        for i in range(0, len(todo), 32):
            chunk = todo[i : i + 32]
            ids, mask = self.tok([" ".join(t.split()).lower() for t in chunk])
            e, lg = self.session.run(ids, mask)
            for t, ee, ll in zip(chunk, e, lg, strict=True):
                self.emb[t], self.logits[t] = ee, ll
            self.dirty = True

    def __call__(self, texts: list[str]) -> np.ndarray:
        self._fill(texts)
        return np.stack([self.emb[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def route(self, texts: list[str]) -> list[tuple[str, float]]:
        self._fill(texts)
        out = []
        for t in texts:
            z = self.logits[t].astype(np.float64)
            p = np.exp(z - z.max())
            p /= p.sum()
            out.append((self.routes[int(p.argmax())], float(p.max())))
        return out

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            texts = list(self.emb)
            np.savez(self.path, texts=json.dumps(texts), emb=np.stack([self.emb[t] for t in texts]),
                     logits=np.stack([self.logits[t] for t in texts]))
            self.dirty = False


def graph_hits(reasoner: PathReasoner, items: list[ParaItem]) -> dict[str, float]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for q in items:
        try:
            ok = reasoner.answer(q.text, use_cache=False).answers[:1] == [q.answer]
        except AutoGLMError:
            ok = False
        for key in (f"{q.hops}hop", f"{q.hops}hop_{q.lang}", "all", f"implicit_{q.implicit}".lower()):
            hits[key].append(ok)
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(hits.items())}


def validation_families() -> set[str]:
    """Model selection never looks at the evaluation set: the last *training* family of every
    relation / implicit path that has two or more becomes a validation family."""
    from cloud.data.paraphrase_families import IMPLICIT_FAMILIES, NP_FAMILIES, Q_FAMILIES

    out: set[str] = set()
    for group in (NP_FAMILIES, Q_FAMILIES, IMPLICIT_FAMILIES):
        for fams in group.values():
            train = [f.id for f in fams if f.split == "train"]
            if len(train) >= 2:
                out.add(train[-1])
    return out


def select_variant(enc: BundleEncoder, train: list[ParaItem], epochs: int) -> dict[str, Any]:
    """Train every variant on training families minus the validation families (seed 0) and
    score hits@1 on the validation families; the best ``all`` is the selected variant."""
    from cloud.training.hop_scorer import train_hop_scorer
    from edge.agent.hop_scorer import OnnxHopScorer

    val_fams = validation_families()
    kg = [it for it in train if it.kind == "kg"]
    fit = [it for it in kg if not set(it.families) & val_fams]
    val = [it for it in kg if set(it.families) & val_fams][::2]
    out: dict[str, Any] = {"fit_items": len(fit), "validation_items": len(val), "variants": {}}
    graph = default_graph()
    with tempfile.TemporaryDirectory(prefix="reasoning-val-") as tmp:
        from cloud.training.hop_scorer import export_hop_scorer

        for name, flags in VARIANTS.items():
            model, metrics = train_hop_scorer(enc, items=fit, seed=0, epochs=epochs, **flags)
            onnx_path, meta_path = export_hop_scorer(model, Path(tmp) / name, metrics)
            scorer = OnnxHopScorer(onnx_path, json.loads(meta_path.read_text(encoding="utf-8")), enc)
            out["variants"][name] = graph_hits(PathReasoner(graph, scorer=scorer), val)
            print(f"validation hits@1, {name}:", out["variants"][name].get("all"), flush=True)
    out["selected"] = max(out["variants"], key=lambda n: out["variants"][n]["all"])
    return out


def mean_spread(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = sorted(set().union(*runs)) if runs else []
    return {k: {"mean": round(statistics.fmean(r[k] for r in runs), 4),
                "spread": round(max(r[k] for r in runs) - min(r[k] for r in runs), 4)} for k in keys}


def run_ablation(bundle: Path, seeds: list[int], quick: bool = False, epochs: int = 80) -> dict[str, Any]:
    from cloud.training.hop_scorer import export_hop_scorer, train_hop_scorer, train_scope_head
    from edge.agent.hop_scorer import OnnxHopScorer, OnnxScopeHead
    from edge.agent.routing import KeywordRouter
    from skillpack.kg.linking import EntityLinker

    graph = default_graph()
    frozen = load_frozen_eval()
    kg_eval = [it for it in frozen if it.kind == "kg"]
    if quick:
        kg_eval = kg_eval[::3]
    real = [it for it in frozen if it.kind != "nonsense"]
    nonsense = [it for it in frozen if it.kind == "nonsense"]
    enc = BundleEncoder(bundle, ROOT / ".autoglm" / "bench")
    train = train_items(seed=0, kg_per_pattern=12 if quick else 24)
    t0 = time.perf_counter()
    enc([it.text for it in frozen] + [it.text for it in train])
    enc.save()
    out: dict[str, Any] = {"bundle": str(bundle), "seeds": seeds, "eval_items": {"kg": len(kg_eval), "real": len(real),
                           "nonsense": len(nonsense)}, "train_items": len(train),
                           "embed_seconds": round(time.perf_counter() - t0, 2), "not_built": NOT_BUILT}
    out["validation"] = select_variant(enc, train, epochs)
    enc.save()
    out["graph"] = {"lexical": graph_hits(PathReasoner(graph), kg_eval)}
    print("graph hits@1, lexical:", out["graph"]["lexical"], flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="reasoning-ablation-"))
    scope_runs: list[dict[str, float]] = []
    try:
        for name, flags in VARIANTS.items():
            runs = []
            for seed in seeds:
                model, metrics = train_hop_scorer(enc, items=train, seed=seed, epochs=epochs, **flags)
                onnx_path, meta_path = export_hop_scorer(model, tmp / f"{name}-{seed}", metrics)
                scorer = OnnxHopScorer(onnx_path, json.loads(meta_path.read_text(encoding="utf-8")), enc)
                runs.append(graph_hits(PathReasoner(graph, scorer=scorer), kg_eval))
                enc.save()
            out["graph"][name] = mean_spread(runs)
            print(f"graph hits@1, {name}:", {k: v["mean"] for k, v in out["graph"][name].items()}, flush=True)
        # abstention: scope head per seed (threshold calibrated out of fold on training families)
        real_emb, ns_emb = enc([it.text for it in real]), enc([it.text for it in nonsense])
        for seed in seeds:
            head, threshold, smetrics = train_scope_head(enc, items=train, seed=seed)
            from cloud.training.hop_scorer import export_scope_head

            onnx_path, meta_path = export_scope_head(head, threshold, tmp / f"scope-{seed}", smetrics)
            gate = OnnxScopeHead(onnx_path, json.loads(meta_path.read_text(encoding="utf-8")))
            p_real = [gate.p_unsure(e, it.text) for e, it in zip(real_emb, real, strict=True)]
            p_ns = [gate.p_unsure(e, it.text) for e, it in zip(ns_emb, nonsense, strict=True)]
            scope_runs.append({"threshold": threshold,
                               "nonsense_abstention": float(np.mean([p >= threshold for p in p_ns])),
                               "false_abstention": float(np.mean([p >= threshold for p in p_real]))})
        out["abstention_scope_head"] = mean_spread(scope_runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # router accuracy on the frozen route families + graph questions; baseline abstention by probability
    keyword = KeywordRouter(EntityLinker(graph))
    routed: dict[str, dict[str, list[bool]]] = {"keyword": defaultdict(list), "bundle_head": defaultdict(list)}
    abst: dict[str, dict[str, list[bool]]] = {"keyword": defaultdict(list), "bundle_head": defaultdict(list)}
    head_routes = enc.route([it.text for it in frozen])
    for it, (h_route, h_p) in zip(frozen, head_routes, strict=True):
        k_route, k_p = keyword.route(it.text)
        for name, (r, p) in (("keyword", (k_route, k_p)), ("bundle_head", (h_route, h_p))):
            group = "nonsense" if it.route == UNSURE else "real"
            abst[name][group].append(p < 0.6)
            if it.route != UNSURE:
                routed[name][it.lang].append(r == it.route)
    out["router"] = {name: {lang: round(sum(v) / len(v), 4) for lang, v in sorted(d.items())} for name, d in routed.items()}
    out["abstention_router_probability_0.6"] = {
        name: {"nonsense_abstention": round(float(np.mean(d["nonsense"])), 4),
               "false_abstention": round(float(np.mean(d["real"])), 4)} for name, d in abst.items()}
    out["ask_latency_ms"] = ask_latency(bundle, enc, seeds[0], train, kg_eval[:24 if quick else 60], epochs,
                                        VARIANTS[out["validation"]["selected"]])
    enc.save()
    return out


def ask_latency(bundle: Path, enc: BundleEncoder, seed: int, train: list[ParaItem], items: list[ParaItem],
                epochs: int, flags: dict[str, bool]) -> dict[str, Any]:
    """``Agent.ask`` on graph questions: lexical scorer vs. the learned scorer attached to a copy of
    the bundle (hashing encoder for routing; the learned scorer embeds with its own ORT session)."""
    from cloud.training.hop_scorer import attach_to_bundle, export_hop_scorer, train_hop_scorer
    from edge.agent.factory import build_agent
    from edge.agent.settings import AgentSettings
    from edge.agent.types import AskRequest

    tmp = Path(tempfile.mkdtemp(prefix="reasoning-latency-"))
    try:
        copy = Path(shutil.copytree(bundle, tmp / "bundle"))
        model, metrics = train_hop_scorer(enc, items=train, seed=seed, epochs=epochs, **flags)
        attach_to_bundle(copy, [export_hop_scorer(model, tmp / "head", metrics)])
        out: dict[str, Any] = {}
        for name, scorer in (("lexical", "lexical"), ("learned", "learned")):
            agent = build_agent(AgentSettings(agent_memory_db=tmp / f"{name}.sqlite3", agent_kg_scorer=scorer,
                                              agent_cache_enabled=False, agent_confidence_threshold=0.0),
                                bundle_dir=copy)

            async def run(agent: Any = agent) -> list[float]:
                lat = []
                for it in items:
                    r = await agent.ask(AskRequest(text=it.text))
                    lat.append(r.latency_ms)
                return lat

            lat = asyncio.run(run())
            out[name] = {"n": len(lat), "p50_ms": round(statistics.median(lat), 3),
                         "p99_ms": round(float(np.percentile(lat, 99)), 3)}
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def headline(rec: dict[str, Any]) -> list[Any]:
    from autoglm.bench.records import HeadlineRow

    g = rec["graph"]
    best = rec["validation"]["selected"]  # chosen on validation families, never on the evaluation set
    rows = []
    for lang in ("en", "zh"):
        lex = [g["lexical"].get(f"{h}hop_{lang}", 0.0) for h in (1, 2, 3)]
        got = [g[best].get(f"{h}hop_{lang}", {}).get("mean", 0.0) for h in (1, 2, 3)]
        rows.append(HeadlineRow(
            what=f"Graph hits@1, frozen held-out paraphrase families, {lang.upper()}, 1 / 2 / 3 hops ({best}, "
                 f"mean of {len(rec['seeds'])} seeds)",
            baseline="lexical cue scorer " + " / ".join(f"{x * 100:.1f} %" for x in lex),
            result=" / ".join(f"{x * 100:.1f} %" for x in got), target="≥ 95 / 92 / 88 %",
            met=got[0] >= 0.95 and got[1] >= 0.92 and got[2] >= 0.88))
    a = rec["abstention_scope_head"]
    base = rec["abstention_router_probability_0.6"]["keyword"]
    rows.append(HeadlineRow(
        what="Abstention on held-out nonsense / false abstention on real questions (scope head)",
        baseline=f"keyword router p<0.6: {base['nonsense_abstention'] * 100:.1f} % / {base['false_abstention'] * 100:.1f} %",
        result=f"{a['nonsense_abstention']['mean'] * 100:.1f} % / {a['false_abstention']['mean'] * 100:.1f} %",
        target="≥ 90 % / ≤ 2 %",
        met=a["nonsense_abstention"]["mean"] >= 0.9 and a["false_abstention"]["mean"] <= 0.02))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # small heads; a shared 2-core machine thrashes with more threads
    rec = run_ablation(args.bundle, [int(s) for s in args.seeds.split(",")], args.quick, args.epochs)
    if not args.no_record:
        from autoglm.bench.records import write_record

        write_record("reasoning", rec, headline(rec))
    print(json.dumps(rec, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
