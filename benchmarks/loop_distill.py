"""Dev protocol for the loop fine-tune's distillation term (docs/EVALUATION.md, "Loop fine-tune:
distillation"): does ``loop_distill_weight`` keep the parent's answers on the other examples
while the job learns its hard examples?

Parent: a trained checkpoint (default the demo's). Hard examples: the demo loop's 16 questions
with the routes they mean (``autoglm.demo.loop_stage.QUESTIONS``). Measured per run: accuracy on
the whole generator validation split (seed 0) before and after, accuracy on the hard examples
after, wall time. Budgets ``demo`` (30 steps, 600 base samples) and ``shipped`` (the
LoopSettings defaults), λ in ``--weights``, ``loop_seed`` in ``--seeds``. It never reads the
frozen test split; the record goes under ``benchmarks/results/dev/``. ``--broken`` trains with a
learning rate 20× the shipped one, so the drop is visible (the benchmark can fail).

    python benchmarks/loop_distill.py [--checkpoint .autoglm/demo/checkpoint] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUDGETS: dict[str, dict[str, Any]] = {
    "demo": {"loop_train_steps": 30, "loop_base_samples": 600},
    "shipped": {},
}


def _val_accuracy(ckpt: Path, examples: list[Any]) -> float:
    import torch

    from cloud.model.checkpoint import checkpoint_tokenizer, load_checkpoint
    from cloud.training.batches import encode_split
    from cloud.training.trainer import predict_logits

    model, meta = load_checkpoint(ckpt)
    set_name = next(iter(meta.adapter_sets))
    names = list(meta.adapter_sets[set_name].routes)
    enc = encode_split(examples, checkpoint_tokenizer(meta), names)
    logits = predict_logits(model, set_name, enc, torch.device("cpu"))
    return float((logits.argmax(-1).numpy() == enc.labels).mean())


def run(args: argparse.Namespace) -> dict[str, Any]:
    from autoglm.demo.loop_stage import QUESTIONS
    from cloud.data import default_splits
    from cloud.loop.finetune import finetune
    from cloud.loop.settings import LoopSettings
    from cloud.model.checkpoint import load_checkpoint

    parent = Path(args.checkpoint)
    _, meta = load_checkpoint(parent)
    routes = list(next(iter(meta.adapter_sets.values())).routes)
    val = [e for e in default_splits(0)["val"] if e.route in routes]
    before = _val_accuracy(parent, val)
    print(f"parent: validation {before:.4f} on {len(val)} items", flush=True)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            for weight in args.weights:
                for seed in args.seeds:
                    over: dict[str, Any] = {
                        **BUDGETS[budget],
                        "loop_distill_weight": weight,
                        "loop_seed": seed,
                        # the job's own frozen before/after (1 item) is not this protocol's measure
                        "loop_eval_max": 1,
                    }
                    if args.broken:
                        over["loop_train_lr"] = LoopSettings().loop_train_lr * 20
                    st = LoopSettings(**over)
                    out = Path(tmp) / f"{budget}-{weight}-{seed}"
                    t0 = time.perf_counter()
                    res = finetune(parent, list(QUESTIONS), out, st)
                    wall = time.perf_counter() - t0
                    after = _val_accuracy(out, val)
                    row = {
                        "budget": budget,
                        "weight": weight,
                        "seed": seed,
                        "steps": st.loop_train_steps,
                        "base_samples": st.loop_base_samples,
                        "val_before": before,
                        "val_after": after,
                        "val_drop_pt": round(100 * (before - after), 3),
                        "hard_before": res.before["hard_accuracy"],
                        "hard_after": res.after["hard_accuracy"],
                        "wall_s": round(wall, 2),
                        "load1": os.getloadavg()[0],
                    }
                    runs.append(row)
                    print(row, flush=True)
    summary: dict[str, Any] = {}
    for budget in args.budgets:
        for weight in args.weights:
            rs = [r for r in runs if r["budget"] == budget and r["weight"] == weight]
            drops = [r["val_drop_pt"] for r in rs]
            hard = [100 * r["hard_after"] for r in rs]
            summary[f"{budget}/{weight}"] = {
                "val_drop_pt_mean": statistics.mean(drops),
                "val_drop_pt_sd": statistics.stdev(drops) if len(drops) > 1 else 0.0,
                "hard_after_pct_mean": statistics.mean(hard),
                "hard_after_pct_sd": statistics.stdev(hard) if len(hard) > 1 else 0.0,
                "wall_s_mean": statistics.mean(r["wall_s"] for r in rs),
            }
    selected = _rule(summary, args.budgets, args.weights)
    return {
        "parent": str(parent),
        "validation_items": len(val),
        "hard_items": len(QUESTIONS),
        "broken": args.broken,
        "runs": runs,
        "summary": summary,
        "selected_weight": selected,
    }


def _rule(summary: dict[str, Any], budgets: list[str], weights: list[float]) -> float | None:
    """docs/EVALUATION.md: λ = 1 ships if at every budget it drops validation less than λ = 0
    and keeps hard accuracy within 5 pt of it; else 0. None when the run lacks λ 0 or 1."""
    if 0.0 not in weights or 1.0 not in weights:
        return None
    for b in budgets:
        off, on = summary[f"{b}/0.0"], summary[f"{b}/1.0"]
        if not (on["val_drop_pt_mean"] < off["val_drop_pt_mean"]):
            return 0.0
        if on["hard_after_pct_mean"] < off["hard_after_pct_mean"] - 5.0:
            return 0.0
    return 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=str(ROOT / ".autoglm" / "demo" / "checkpoint"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument("--budgets", nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    ap.add_argument("--broken", action="store_true", help="learning rate x20: the drop must show")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    rec = run(args)
    for k, v in rec["summary"].items():
        print(
            f"{k:>12}: validation drop {v['val_drop_pt_mean']:.2f} ± {v['val_drop_pt_sd']:.2f} pt, "
            f"hard after {v['hard_after_pct_mean']:.1f} ± {v['hard_after_pct_sd']:.1f} %, "
            f"{v['wall_s_mean']:.1f} s"
        )
    print("selected loop_distill_weight:", rec["selected_weight"])
    if not args.no_record:
        from autoglm.bench.records import write_record

        write_record("loop_distill", rec, out_dir=ROOT / "benchmarks" / "results" / "dev")
    return 0


if __name__ == "__main__":
    sys.exit(main())
