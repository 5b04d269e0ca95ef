"""Scope gate /3 feature selection on the *training* families only (docs/EVALUATION.md, "Scope gate
/3: feature selection"): 33 candidates (the /2 base {top1, keyword} + every subset of five feature
groups, logistic; all groups with a tiny MLP), out of fold over seeds × two-fold family splits;
the written rule picks one. Never reads the frozen evaluation file.

    python benchmarks/scope_gate_selection.py --bundle DIR [--seeds 0,1,2] [--splits 5]

Record: ``benchmarks/results/dev/scope_gate-*.json`` (the table and the selected candidate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.reasoning_ablation import BundleEncoder  # noqa: E402
from cloud.data.paraphrase import train_items  # noqa: E402
from cloud.training.hop_scorer import encoder_vocabulary, select_scope_features  # noqa: E402


def run(bundle: Path, seeds: tuple[int, ...], splits: int) -> dict[str, Any]:
    from edge.agent.routing import KeywordRouter
    from skillpack.kg.graph import default_graph
    from skillpack.kg.linking import EntityLinker

    enc = BundleEncoder(bundle, ROOT / ".autoglm" / "bench")
    keyword = KeywordRouter(EntityLinker(default_graph()))
    items = train_items(seed=0, kg_per_pattern=24)
    t0 = time.perf_counter()
    out = select_scope_features(
        enc,
        lambda t: keyword.route(t)[1],
        encoder_vocabulary(bundle),
        items=items,
        seeds=seeds,
        splits=splits,
    )
    enc.save()
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["bundle"] = str(bundle)
    out["train_items"] = len(items)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rec = run(args.bundle, tuple(int(s) for s in args.seeds.split(",")), args.splits)
    table = rec["candidates"]
    for name in sorted(table, key=lambda n: -table[n]["score"]["mean"]):
        r = table[name]
        print(
            f"{name:28s} {len(r['features'])} feats  OOF nonsense-family abstention "
            f"{r['score']['mean'] * 100:5.1f} ± {r['score']['sd'] * 100:4.1f}  "
            f"false {r['false_abstention']['mean'] * 100:4.2f}  all unsure "
            f"{r['unsure_abstention']['mean'] * 100:5.1f}",
            flush=True,
        )
    print("selected:", rec["selected"], flush=True)
    if not args.no_record:
        from autoglm.bench.records import write_record

        write_record("scope_gate", rec, out_dir=ROOT / "benchmarks" / "results" / "dev")
    print(json.dumps({"selected": rec["selected"], "seconds": rec["seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
