"""Fleet path priors: their effect on graph hits@1 (issue 13 item 2).

``python benchmarks/reasoning_priors.py --bundle DIR [--seeds 0,1,2]`` (``autoglm bench run
reasoning_priors -- --bundle DIR``). Protocol written before the first run: docs/EVALUATION.md,
"Fleet path priors: effect on graph accuracy".

The path scorer is fitted on the training families minus the validation families; a simulated fleet
of :data:`FLEET_NODES` nodes asks every kg question of the validation families (phrasings the fitted
scorer never saw) and its users confirm a correct first answer and reject a wrong one. The summed
counts per (start type, answered path) are the fleet priors. Four arms, through the ONNX scorer the
edge runs: (a) no priors, (b) the scorer refitted with the priors (``train_path_scorer(priors=)``),
(c) the priors applied at answer time by the reasoner (``PathPriors.set_fleet``), (d) both. Scored
on the frozen kg evaluation items (never fed back) and on the feedback pool itself (in-sample).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reasoning_ablation import (  # noqa: E402
    PATH_EPOCHS,
    BundleEncoder,
    graph_hits,
    validation_families,
)
from cloud.data.paraphrase import ParaItem, load_frozen_eval, train_items  # noqa: E402
from contracts.errors import AutoGLMError  # noqa: E402
from skillpack.kg.graph import KnowledgeGraph, default_graph  # noqa: E402
from skillpack.kg.reasoner import PathReasoner  # noqa: E402

FLEET_NODES = 20  # every node asks every feedback question once
ARMS = ("none", "training", "answer_time", "both")
RULE_PT = 1.0  # training priors more than this many points below "none" -> loop_fleet_priors off


def simulate_feedback(
    reasoner: PathReasoner, graph: KnowledgeGraph, pool: list[ParaItem], nodes: int
) -> tuple[dict[tuple[str, tuple[str, ...]], list[int]], dict[str, int]]:
    """Per (start type, answered path): ``[confirmed, rejected]`` summed over the fleet; and counts."""
    sums: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    stats: Counter[str] = Counter()
    for q in pool:
        try:
            ans = reasoner.answer(q.text, use_cache=False)
        except AutoGLMError:
            stats["no_answer"] += 1
            continue
        if not ans.path:
            stats["empty_path"] += 1
            continue
        key = (graph.get(ans.start.entity_id).type, tuple(ans.path))
        ok = ans.answers[:1] == [q.answer]
        stats["confirmed" if ok else "rejected"] += 1
        sums.setdefault(key, [0, 0])[0 if ok else 1] += nodes
    return sums, dict(stats)


def fleet_priors(sums: dict[tuple[str, tuple[str, ...]], list[int]]) -> list[Any]:
    from contracts.memory import FleetPathPrior

    hlc = "0000000000001-000000-bench"
    return [
        FleetPathPrior(start_type=t, relations=p, confirmed=c, rejected=r, nodes=FLEET_NODES, merged=hlc)
        for (t, p), (c, r) in sorted(sums.items())
    ]


def scorer_of(enc: Any, fit: list[ParaItem], seed: int, out: Path, priors: list[Any] | None) -> Any:
    from cloud.training.hop_scorer import export_path_scorer, train_path_scorer
    from edge.agent.hop_scorer import OnnxPathScorer

    model, metrics = train_path_scorer(enc, items=fit, seed=seed, epochs=PATH_EPOCHS, priors=priors)
    onnx_path, meta_path = export_path_scorer(model, out, metrics, length_bias=0.0)
    return OnnxPathScorer(onnx_path, json.loads(meta_path.read_text(encoding="utf-8")), enc), metrics


def reasoner_of(graph: KnowledgeGraph, scorer: Any, priors: list[Any] | None) -> PathReasoner:
    r = PathReasoner(graph, scorer=scorer)
    for p in priors or []:
        r.priors.set_fleet(p.start_type, tuple(p.relations), p.confirmed, p.rejected)
    return r


def mean_sd(xs: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(xs), 4),
        "sd": round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0,
    }


def run(bundle: Path, seeds: list[int]) -> dict[str, Any]:
    graph = default_graph()
    cache = ROOT / ".autoglm" / "bench" / "reasoning"
    enc = BundleEncoder(bundle, cache)
    val_fams = validation_families()
    frozen = [it for it in load_frozen_eval() if it.kind == "kg"]
    per_seed: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for seed in seeds:
        kg = [it for it in train_items(seed=seed) if it.kind == "kg"]
        fit = [it for it in kg if not set(it.families) & val_fams]
        pool = [it for it in kg if set(it.families) & val_fams]
        with tempfile.TemporaryDirectory(prefix="reasoning-priors-") as tmp:
            t0 = time.perf_counter()
            plain, _ = scorer_of(enc, fit, seed, Path(tmp) / "none", None)
            sums, fb = simulate_feedback(reasoner_of(graph, plain, None), graph, pool, FLEET_NODES)
            priors = fleet_priors(sums)
            trained, t_metrics = scorer_of(enc, fit, seed, Path(tmp) / "training", priors)
            arms = {
                "none": reasoner_of(graph, plain, None),
                "training": reasoner_of(graph, trained, None),
                "answer_time": reasoner_of(graph, plain, priors),
                "both": reasoner_of(graph, trained, priors),
            }
            row: dict[str, Any] = {
                "seed": seed,
                "fit_items": len(fit),
                "feedback_items": len(pool),
                "feedback": fb,
                "paths_with_feedback": len(priors),
                "paths_confirmed_net": sum(1 for p in priors if p.confirmed > p.rejected),
                "paths_rejected_net": sum(1 for p in priors if p.rejected > p.confirmed),
                "training_prior_metrics": t_metrics.get("fleet_priors"),
                "frozen": {a: graph_hits(r, frozen) for a, r in arms.items()},
                "feedback_pool": {a: graph_hits(r, pool) for a, r in arms.items()},
                "seconds": round(time.perf_counter() - t0, 1),
            }
        enc.save()
        per_seed.append(row)
        print(
            f"seed {seed}: feedback {fb}; frozen hits@1 "
            + ", ".join(f"{a} {row['frozen'][a]['all']:.3f}" for a in ARMS)
            + "; pool "
            + ", ".join(f"{a} {row['feedback_pool'][a]['all']:.3f}" for a in ARMS)
            + f" ({row['seconds']} s)",
            flush=True,
        )
    summary: dict[str, Any] = {}
    for where in ("frozen", "feedback_pool"):
        keys = sorted(per_seed[0][where]["none"])
        summary[where] = {a: {k: mean_sd([r[where][a][k] for r in per_seed]) for k in keys} for a in ARMS}
        summary[where + "_diff_pt"] = {
            a: mean_sd([100 * (r[where][a]["all"] - r[where]["none"]["all"]) for r in per_seed])
            for a in ARMS
            if a != "none"
        }
    diff = summary["frozen_diff_pt"]["training"]["mean"]
    return {
        "bundle": str(bundle),
        "seeds": seeds,
        "fleet_nodes": FLEET_NODES,
        "frozen_items": len(frozen),
        "validation_families": sorted(val_fams),
        "per_seed": per_seed,
        "summary": summary,
        "rule": {
            "threshold_pt": RULE_PT,
            "training_diff_pt": diff,
            "loop_fleet_priors_default": "off" if diff < -RULE_PT else "on",
        },
        "wall_s": round(time.perf_counter() - t_all, 1),
    }


def headline(rec: dict[str, Any]) -> list[Any]:
    from autoglm.bench.records import HeadlineRow

    s = rec["summary"]

    def pct(where: str, arm: str) -> str:
        v = s[where][arm]["all"]
        return f"{100 * v['mean']:.1f} ± {100 * v['sd']:.1f} %"

    d = s["frozen_diff_pt"]
    return [
        HeadlineRow(
            what=f"Fleet path priors (`reasoning_priors`): graph hits@1 on the frozen kg items, feedback of "
            f"{rec['fleet_nodes']} simulated nodes on the validation families, {len(rec['seeds'])} seeds",
            baseline=f"no priors {pct('frozen', 'none')}",
            result=f"training priors {pct('frozen', 'training')} ({d['training']['mean']:+.1f} pt); "
            f"answer-time {pct('frozen', 'answer_time')} ({d['answer_time']['mean']:+.1f} pt); "
            f"both {pct('frozen', 'both')} ({d['both']['mean']:+.1f} pt); on the feedback pool: "
            f"{pct('feedback_pool', 'none')} → both {pct('feedback_pool', 'both')}",
            target=f"training priors ≥ −{RULE_PT:.0f} pt (else loop_fleet_priors off)",
            met=d["training"]["mean"] >= -RULE_PT,
        )
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rec = run(args.bundle, [int(s) for s in args.seeds.split(",")])
    if not args.no_record:
        from autoglm.bench.records import write_record

        write_record("reasoning_priors", rec, headline(rec))
    print(json.dumps(rec["summary"], ensure_ascii=False))
    print(json.dumps(rec["rule"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
