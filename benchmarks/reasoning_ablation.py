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
from typing import Any, Literal

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cloud.data.paraphrase import UNSURE, ParaItem, load_frozen_eval, train_items  # noqa: E402
from contracts.errors import AutoGLMError  # noqa: E402
from skillpack.kg.graph import default_graph  # noqa: E402
from skillpack.kg.reasoner import PathReasoner  # noqa: E402

# per-hop heads (cloud.training.hop_scorer.train_hop_scorer) and whole-path heads (train_path_scorer);
# the first two rows of the first ablation ("learned" without the adaptive graph, "+ fusion") are in
# record reasoning-20261204T223751Z and are not rerun here
VARIANTS: dict[str, dict[str, Any]] = {
    "learned+adaptive": {"kind": "hop", "fusion": False, "adaptive": True},
    "path": {"kind": "path", "phrases": False},
    "path+phrases": {"kind": "path", "phrases": True},
}
# the length prior is chosen per variant on the validation families from these grids: the per-hop
# head's STOP bias, the path head's bias per relation of a path
PRIOR_GRID = {"hop": [0.0, -0.5, -1.0, -1.5, -2.0, -3.0], "path": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}
NOT_BUILT = [
    "co-training is a separate step (python -m cloud.training.cotrain on the checkpoint, then export): "
    "run this ablation on the co-trained bundle for the '+ co-training' row; a graph encoder over "
    "entities, path priors synced over MQTT and a session granularity are not built"
]


def train_variant(
    enc: Any,
    items: list[ParaItem],
    seed: int,
    epochs: int,
    flags: dict[str, Any],
    out: Path,
    prior: float = 0.0,
) -> Any:
    """Train one variant, export it (with its length prior) and load it as the edge loads it."""
    from cloud.training.hop_scorer import (
        export_hop_scorer,
        export_path_scorer,
        train_hop_scorer,
        train_path_scorer,
    )
    from edge.agent.hop_scorer import OnnxHopScorer, OnnxPathScorer

    flags = dict(flags)
    if flags.pop("kind") == "path":
        path_model, metrics = train_path_scorer(enc, items=items, seed=seed, epochs=PATH_EPOCHS, **flags)
        onnx_path, meta_path = export_path_scorer(path_model, out, metrics, length_bias=prior)
        return OnnxPathScorer(onnx_path, json.loads(meta_path.read_text(encoding="utf-8")), enc)
    hop_model, metrics = train_hop_scorer(enc, items=items, seed=seed, epochs=epochs, **flags)
    onnx_path, meta_path = export_hop_scorer(hop_model, out, metrics, stop_bias=prior)
    return OnnxHopScorer(onnx_path, json.loads(meta_path.read_text(encoding="utf-8")), enc)


def set_prior(scorer: Any, prior: float) -> None:
    if hasattr(scorer, "length_bias"):
        scorer.length_bias = prior
        scorer._cache.clear()
    else:
        scorer.stop_bias = prior


PATH_EPOCHS = 150


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
            np.savez(
                self.path,
                texts=json.dumps(texts),
                emb=np.stack([self.emb[t] for t in texts]),
                logits=np.stack([self.logits[t] for t in texts]),
            )
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


def validation_families(resplit: int | None = None) -> set[str]:
    """Model selection never looks at the evaluation set: the last *training* family (as of
    re-split ``resplit``, default the shipped ``RESPLIT``) of every relation / implicit path that
    has two or more becomes a validation family. (A family written for a later round is not in
    this round's training data, so it cannot be this round's validation family.)"""
    from cloud.data.paraphrase_families import IMPLICIT_FAMILIES, NP_FAMILIES, Q_FAMILIES, RESPLIT

    at = RESPLIT if resplit is None else resplit
    out: set[str] = set()
    for group in (NP_FAMILIES, Q_FAMILIES, IMPLICIT_FAMILIES):
        for fams in group.values():
            train = [f.id for f in fams if f.split_at(at) == "train"]
            if len(train) >= 2:
                out.add(train[-1])
    return out


def select_variant(enc: BundleEncoder, train: list[ParaItem], epochs: int) -> dict[str, Any]:
    """Train every variant on training families minus the validation families (seed 0), choose
    its length prior on the validation families, and score hits@1 there; the best ``all`` is
    the selected variant."""
    val_fams = validation_families()
    kg = [it for it in train if it.kind == "kg"]
    fit = [it for it in kg if not set(it.families) & val_fams]
    val = [it for it in kg if set(it.families) & val_fams][::2]
    out: dict[str, Any] = {
        "fit_items": len(fit),
        "validation_items": len(val),
        "variants": {},
        "prior": {},
        "prior_curve": {},
    }
    graph = default_graph()
    with tempfile.TemporaryDirectory(prefix="reasoning-val-") as tmp:
        for name, flags in VARIANTS.items():
            scorer = train_variant(enc, fit, 0, epochs, flags, Path(tmp) / name)
            curve = {}
            for prior in PRIOR_GRID[flags["kind"]]:
                set_prior(scorer, prior)
                curve[str(prior)] = graph_hits(PathReasoner(graph, scorer=scorer), val)
            best = max(curve, key=lambda p: curve[p]["all"])
            out["prior_curve"][name] = {p: c["all"] for p, c in curve.items()}
            out["prior"][name], out["variants"][name] = float(best), curve[best]
            print(
                f"validation hits@1, {name}: {curve[best]['all']} "
                f"(prior {best}; no prior {curve['0.0']['all']})",
                flush=True,
            )
    out["selected"] = max(out["variants"], key=lambda n: out["variants"][n]["all"])
    return out


def mean_spread(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = sorted(set().union(*runs)) if runs else []
    return {
        k: {
            "mean": round(statistics.fmean(r[k] for r in runs), 4),
            "sd": round(statistics.stdev([r[k] for r in runs]), 4) if len(runs) > 1 else 0.0,
            "spread": round(max(r[k] for r in runs) - min(r[k] for r in runs), 4),
        }
        for k in keys
    }


def run_ablation(
    bundle: Path, seeds: list[int], quick: bool = False, epochs: int = 80, abstention_only: bool = False
) -> dict[str, Any]:
    """The whole ablation; ``abstention_only``: the scope heads (/1, /2, /3) and the router
    baselines only (no variant selection, graph hits or latency)."""
    from cloud.training.hop_scorer import (
        SCOPE_GATE3_FEATURES,
        SCOPE_GATE3_MODEL,
        encoder_vocabulary,
        export_scope_gate,
        export_scope_gate3,
        export_scope_head,
        train_scope_gate,
        train_scope_gate3,
        train_scope_head,
    )
    from edge.agent.hop_scorer import OnnxScopeHead
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
    out: dict[str, Any] = {
        "bundle": str(bundle),
        "seeds": seeds,
        "eval_items": {"kg": len(kg_eval), "real": len(real), "nonsense": len(nonsense)},
        "train_items": len(train),
        "embed_seconds": round(time.perf_counter() - t0, 2),
        "not_built": NOT_BUILT,
    }
    if not abstention_only:
        out["validation"] = select_variant(enc, train, epochs)
        enc.save()
        out["graph"] = {"lexical": graph_hits(PathReasoner(graph), kg_eval)}
        print("graph hits@1, lexical:", out["graph"]["lexical"], flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="reasoning-ablation-"))
    scope_runs: dict[str, list[dict[str, float]]] = {"scope_head": [], "scope_gate": [], "scope_gate3": []}
    keyword = KeywordRouter(EntityLinker(graph))
    vocabulary = encoder_vocabulary(bundle)
    out["scope_gate3"] = {"features": list(SCOPE_GATE3_FEATURES), "model": SCOPE_GATE3_MODEL}
    try:
        for name, flags in ({} if abstention_only else VARIANTS).items():
            runs = []
            for seed in seeds:
                scorer = train_variant(
                    enc, train, seed, epochs, flags, tmp / f"{name}-{seed}", out["validation"]["prior"][name]
                )
                runs.append(graph_hits(PathReasoner(graph, scorer=scorer), kg_eval))
                enc.save()
            out["graph"][name] = mean_spread(runs)
            print(f"graph hits@1, {name}:", {k: v["mean"] for k, v in out["graph"][name].items()}, flush=True)
        # abstention per seed, thresholds calibrated out of fold on training families: the /1 scope
        # head (MLP on embedding + character n-grams), the /2 gate (kNN distance + keyword router)
        # and the /3 gate (the features the selection on training families chose)
        real_emb, ns_emb = enc([it.text for it in real]), enc([it.text for it in nonsense])
        scope_seconds: dict[str, list[float]] = defaultdict(list)
        for seed in seeds:
            t_head = time.perf_counter()
            head, threshold, smetrics = train_scope_head(enc, items=train, seed=seed)
            heads = [
                ("scope_head", export_scope_head(head, threshold, tmp / f"scope-{seed}", smetrics), threshold)
            ]
            scope_seconds["scope_head"].append(time.perf_counter() - t_head)
            t_head = time.perf_counter()
            g_model, g_threshold, g_metrics = train_scope_gate(
                enc, lambda t: keyword.route(t)[1], items=train, seed=seed
            )
            heads.append(
                (
                    "scope_gate",
                    export_scope_gate(g_model, g_threshold, tmp / f"gate-{seed}", g_metrics),
                    g_threshold,
                )
            )
            scope_seconds["scope_gate"].append(time.perf_counter() - t_head)
            t_head = time.perf_counter()
            g3_model, g3_threshold, g3_metrics = train_scope_gate3(
                enc, lambda t: keyword.route(t)[1], vocabulary, items=train, seed=seed
            )
            heads.append(
                (
                    "scope_gate3",
                    export_scope_gate3(g3_model, g3_threshold, vocabulary, tmp / f"gate3-{seed}", g3_metrics),
                    g3_threshold,
                )
            )
            scope_seconds["scope_gate3"].append(time.perf_counter() - t_head)
            for kind, (onnx_path, meta_path), thr in heads:
                gate = OnnxScopeHead(
                    onnx_path,
                    json.loads(meta_path.read_text(encoding="utf-8")),
                    keyword=lambda t: keyword.route(t)[1],
                )
                t_call = time.perf_counter()
                p_real = [gate.p_unsure(e, it.text) for e, it in zip(real_emb, real, strict=True)]
                p_ns = [gate.p_unsure(e, it.text) for e, it in zip(ns_emb, nonsense, strict=True)]
                per_call_ms = (time.perf_counter() - t_call) * 1e3 / (len(real) + len(nonsense))
                scope_runs[kind].append(
                    {
                        "threshold": thr,
                        "nonsense_abstention": float(np.mean([p >= thr for p in p_ns])),
                        "false_abstention": float(np.mean([p >= thr for p in p_real])),
                        "p_unsure_ms": per_call_ms,
                    }
                )
        for kind in scope_runs:
            out[f"abstention_{kind}"] = mean_spread(scope_runs[kind])
            out[f"abstention_{kind}"]["train_export_seconds"] = mean_spread(
                [{"s": v} for v in scope_seconds[kind]]
            )["s"]
        print(
            "abstention:",
            {k: out[f"abstention_{k}"] for k in scope_runs},
            flush=True,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # router accuracy on the frozen route families + graph questions; baseline abstention by probability
    routed: dict[str, dict[str, list[bool]]] = {
        "keyword": defaultdict(list),
        "bundle_head": defaultdict(list),
    }
    abst: dict[str, dict[str, list[bool]]] = {"keyword": defaultdict(list), "bundle_head": defaultdict(list)}
    head_routes = enc.route([it.text for it in frozen])
    for it, (h_route, h_p) in zip(frozen, head_routes, strict=True):
        k_route, k_p = keyword.route(it.text)
        for name, (r, p) in (("keyword", (k_route, k_p)), ("bundle_head", (h_route, h_p))):
            group = "nonsense" if it.route == UNSURE else "real"
            abst[name][group].append(p < 0.6)
            if it.route != UNSURE:
                routed[name][it.lang].append(r == it.route)
    out["router"] = {
        name: {lang: round(sum(v) / len(v), 4) for lang, v in sorted(d.items())} for name, d in routed.items()
    }
    out["abstention_router_probability_0.6"] = {
        name: {
            "nonsense_abstention": round(float(np.mean(d["nonsense"])), 4),
            "false_abstention": round(float(np.mean(d["real"])), 4),
        }
        for name, d in abst.items()
    }
    if abstention_only:
        return out
    selected = out["validation"]["selected"]
    out["ask_latency_ms"] = ask_latency(
        bundle,
        enc,
        seeds[0],
        train,
        kg_eval[: 24 if quick else 60],
        epochs,
        VARIANTS[selected],
        out["validation"]["prior"][selected],
    )
    enc.save()
    return out


def ask_latency(
    bundle: Path,
    enc: BundleEncoder,
    seed: int,
    train: list[ParaItem],
    items: list[ParaItem],
    epochs: int,
    flags: dict[str, Any],
    prior: float,
) -> dict[str, Any]:
    """``Agent.ask`` on graph questions: lexical scorer vs. the learned scorer attached to a copy of
    the bundle (hashing encoder for routing; the learned scorer embeds with its own ORT session)."""
    from cloud.training.hop_scorer import attach_to_bundle
    from edge.agent.factory import build_agent
    from edge.agent.settings import AgentSettings
    from edge.agent.types import AskRequest

    tmp = Path(tempfile.mkdtemp(prefix="reasoning-latency-"))
    try:
        copy = Path(shutil.copytree(bundle, tmp / "bundle"))
        train_variant(enc, train, seed, epochs, flags, tmp / "head", prior)
        attach_to_bundle(copy, [(tmp / "head" / "hop_scorer.onnx", tmp / "head" / "hop_scorer.json")])
        out: dict[str, Any] = {}
        choices: tuple[tuple[str, Literal["lexical", "learned"]], ...] = (
            ("lexical", "lexical"),
            ("learned", "learned"),
        )
        for name, scorer in choices:
            agent = build_agent(
                AgentSettings(
                    agent_memory_db=tmp / f"{name}.sqlite3",
                    agent_kg_scorer=scorer,
                    agent_cache_enabled=False,
                    agent_confidence_threshold=0.0,
                ),
                bundle_dir=copy,
            )

            async def run(agent: Any = agent) -> list[float]:
                lat = []
                for it in items:
                    r = await agent.ask(AskRequest(text=it.text))
                    lat.append(r.latency_ms)
                return lat

            lat = asyncio.run(run())
            out[name] = {
                "n": len(lat),
                "p50_ms": round(statistics.median(lat), 3),
                "p99_ms": round(float(np.percentile(lat, 99)), 3),
            }
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pct(v: dict[str, float] | float) -> str:
    if isinstance(v, dict):
        return f"{v['mean'] * 100:.1f} ± {v.get('sd', 0.0) * 100:.1f}"
    return f"{v * 100:.1f}"


def headline(rec: dict[str, Any]) -> list[Any]:
    from autoglm.bench.records import HeadlineRow

    g = rec.get("graph", {})
    best = rec.get("validation", {}).get("selected")  # chosen on validation families, never on evaluation
    n = len(rec["seeds"])
    rows = []
    for lang in ("en", "zh") if g else ():
        lex = " / ".join(f"{g['lexical'].get(f'{h}hop_{lang}', 0.0) * 100:.1f}" for h in (1, 2, 3))
        for name in [v for v in VARIANTS if v in g]:
            got = [g[name].get(f"{h}hop_{lang}", {"mean": 0.0, "sd": 0.0}) for h in (1, 2, 3)]
            mark = " **(selected on validation)**" if name == best else ""
            rows.append(
                HeadlineRow(
                    what=f"Graph hits@1 % (mean ± sd, {n} seeds), frozen held-out families, "
                    f"{lang.upper()}, 1 / 2 / 3 "
                    f"hops: {name}{mark}, length prior {rec['validation']['prior'][name]}"
                    + (f" ({rec['label']})" if rec.get("label") else ""),
                    baseline=f"lexical cue scorer {lex}",
                    result=" / ".join(_pct(x) for x in got),
                    target="≥ 95 / 92 / 88",
                    met=got[0]["mean"] >= 0.95 and got[1]["mean"] >= 0.92 and got[2]["mean"] >= 0.88,
                )
            )
    base = rec["abstention_router_probability_0.6"]["keyword"]
    g3 = rec.get("scope_gate3", {})
    for key, label in (
        ("abstention_scope_head", "scope head /1 (MLP on embedding + char n-grams)"),
        ("abstention_scope_gate", "scope gate /2 (kNN distance + keyword-router confidence)"),
        (
            "abstention_scope_gate3",
            f"scope gate /3 ({g3.get('model', '')}: {', '.join(g3.get('features', []))}; "
            "selected out of fold on training families)",
        ),
    ):
        if key not in rec:
            continue
        a = rec[key]
        rows.append(
            HeadlineRow(
                what="Abstention on held-out nonsense / false abstention on real questions %, "
                f"{label} (mean ± sd, {n} seeds)" + (f" ({rec['label']})" if rec.get("label") else ""),
                baseline=f"keyword router p<0.6: {base['nonsense_abstention'] * 100:.1f} / "
                f"{base['false_abstention'] * 100:.1f}",
                result=f"{_pct(a['nonsense_abstention'])} / {_pct(a['false_abstention'])}",
                target="≥ 90 / ≤ 2",
                met=a["nonsense_abstention"]["mean"] >= 0.9 and a["false_abstention"]["mean"] <= 0.02,
            )
        )
    lat = rec.get("ask_latency_ms", {})
    if "learned" in lat:
        rows.append(
            HeadlineRow(
                what=f"Agent.ask p50 / p99 ms, graph questions, {best} scorer "
                "(this CPU; hashing-encoder routing)",
                baseline=f"lexical {lat['lexical']['p50_ms']:.1f} / {lat['lexical']['p99_ms']:.1f}",
                result=f"{lat['learned']['p50_ms']:.1f} / {lat['learned']['p99_ms']:.1f}",
                target="p50 ≤ 15",
                met=lat["learned"]["p50_ms"] <= 15.0,
            )
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument(
        "--record-name",
        default="reasoning",
        help="benchmark name of the record (e.g. "
        "reasoning_cotrained for a run on a co-trained encoder, rendered in its own docs block)",
    )
    ap.add_argument("--label", default="", help="what the bundle is, written into the headline rows")
    ap.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)")
    ap.add_argument(
        "--abstention-only",
        action="store_true",
        help="only the scope heads /1, /2, /3 and the router baselines (record name: "
        "reasoning_abstention unless --record-name says otherwise)",
    )
    args = ap.parse_args()
    if args.variants:
        keep = args.variants.split(",")
        unknown = set(keep) - set(VARIANTS)
        if unknown:
            ap.error(f"unknown variants {sorted(unknown)}")
        for name in list(VARIANTS):
            if name not in keep:
                del VARIANTS[name]
    import torch

    torch.set_num_threads(1)  # small heads; a shared 2-core machine thrashes with more threads
    rec = run_ablation(
        args.bundle, [int(s) for s in args.seeds.split(",")], args.quick, args.epochs, args.abstention_only
    )
    if not args.no_record:
        from autoglm.bench.records import write_record

        rec["label"] = args.label
        name = args.record_name
        if args.abstention_only and name == "reasoning":
            name = "reasoning_abstention"
        write_record(name, rec, headline(rec))
    print(json.dumps(rec, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
