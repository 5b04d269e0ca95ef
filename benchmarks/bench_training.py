"""Training throughput: adapters (frozen base) vs. full fine-tuning, side by side on this CPU.

Same model, same batches, same optimiser (AdamW); rounds alternate between the two modes so
load from other processes hits both alike. Also reports the share of trainable parameters
(goal: adapters + heads < 5% of the encoder). Prints a table and one JSON record.

    python benchmarks/bench_training.py [--base DIR] [--steps 8] [--rounds 2] [--batch-size 32]
    python benchmarks/bench_training.py --seeds 0 1 2 [--epochs N] [--train-per-template N]

``--seeds`` also trains the router once per seed with the demo's recipe (``DEMO_TRAINING``; the
trainer's full pipeline, deterministic per seed) and reports the mean ± sd of the accuracy on unseen
templates (the test split); the accuracy target (>= 97 %) counts as met only if the mean meets it, and
the record says which budget ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from cloud.data import SplitSpec, default_splits
from cloud.model import AutoGLMModel
from cloud.model.base import default_base_path
from cloud.training.batches import encode_split
from cloud.training.trainer import RouterLogits, default_threads, train_step
from contracts.routes import DEFAULT_ROUTES
from contracts.tokenizer import TextTokenizer


def build(base: Path, full: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer, int]:
    torch.manual_seed(0)
    model = AutoGLMModel.from_pretrained(base)
    model.add_adapter_set("default", list(DEFAULT_ROUTES), bottleneck=64)
    if full:
        for p in model.encoder.parameters():
            p.requires_grad_(True)
    params = model.trainable_parameters()
    model.train()
    return RouterLogits(model, "default"), torch.optim.AdamW(params, lr=1e-4), sum(p.numel() for p in params)


def run(
    module: torch.nn.Module, opt: torch.optim.Optimizer, batches: list[tuple[torch.Tensor, ...]]
) -> float:
    t0 = time.perf_counter()
    n = 0
    for ids, mask, labels in batches:
        train_step(module, opt, ids, mask, labels)
        n += len(labels)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=None, help="base encoder dir (default: bundled MiniLM)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per round and mode")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (adapters, full, adapters, …)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json-out", type=Path, default=None, help="also write the JSON record here")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: as the trainer picks)")
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[],
        help="also train once per seed and report unseen-template accuracy mean ± sd (e.g. --seeds 0 1 2)",
    )
    ap.add_argument(
        "--epochs", type=int, default=None, help="epochs per seeded run (default: the demo recipe's)"
    )
    ap.add_argument(
        "--train-per-template",
        type=int,
        default=None,
        help="generator examples per template (default: the demo recipe's)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(".autoglm/bench-training"),
        help="checkpoints of the seeded runs "
        "(a finished run of the same configuration there is read back, not retrained)",
    )
    ap.add_argument(
        "--train-threads",
        type=int,
        default=None,
        help="torch threads of the seeded runs (default: cores; 1 when seeds train in parallel processes)",
    )
    ap.add_argument(
        "--train-only",
        action="store_true",
        help="only train the --seeds runs (no throughput, no "
        "record): for seeds trained in parallel processes, read back by a later full run",
    )
    args = ap.parse_args()
    if args.train_only:
        seeded_accuracy(args, args.base or default_base_path())
        return
    torch.set_num_threads(args.threads or default_threads(1, adapt_to_load=True))
    base = args.base or default_base_path()

    tok = TextTokenizer(base)
    data = encode_split(
        default_splits(0, SplitSpec(train_per_template=4, eval_per_template=1))["train"],
        tok,
        list(DEFAULT_ROUTES),
    )
    order = np.random.default_rng(0).permutation(len(data))
    bs = args.batch_size
    batches = [data.batch(order[i * bs : (i + 1) * bs], torch.device("cpu")) for i in range(args.steps)]

    adapters = build(base, full=False)
    full = build(base, full=True)
    encoder_params = sum(p.numel() for p in adapters[0].model.encoder.parameters())  # type: ignore[union-attr]
    aset = adapters[0].model.adapter_set("default")  # type: ignore[union-attr]
    adapter_only = sum(p.numel() for p in aset.adapters.parameters())
    run(adapters[0], adapters[1], batches[:1])  # warm-up both
    run(full[0], full[1], batches[:1])
    rates: dict[str, list[float]] = {"adapters": [], "full": []}
    for _ in range(args.rounds):
        rates["adapters"].append(run(adapters[0], adapters[1], batches))
        rates["full"].append(run(full[0], full[1], batches))
    a, f = float(np.median(rates["adapters"])), float(np.median(rates["full"]))
    record = {
        "bench": "training",
        "base": str(base),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "batch_size": bs,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "adapters_samples_per_s": round(a, 2),
        "full_finetune_samples_per_s": round(f, 2),
        "speedup_adapters_vs_full": round(a / f, 3),
        "encoder_params": encoder_params,
        "trainable_params_adapters_mode": adapters[2],
        "trainable_params_full_mode": full[2],
        "trainable_share_of_encoder": round(adapters[2] / encoder_params, 5),
        "adapter_only_share_of_encoder": round(adapter_only / encoder_params, 5),
        "optimizer_state_mb_adapters": round(adapters[2] * 8 / 2**20, 2),
        "optimizer_state_mb_full": round(full[2] * 8 / 2**20, 2),
        "note": "shared machine: absolute numbers are noisy; the ratio is the result",
    }
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Training throughput: adapters vs full fine-tuning (same model, same batches)")
    for col in (
        "mode",
        "samples/s (median)",
        "rounds",
        "trainable params",
        "share of encoder",
        "AdamW state",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        "adapters + heads",
        f"{a:.1f}",
        " ".join(f"{x:.1f}" for x in rates["adapters"]),
        f"{adapters[2]:,}",
        f"{adapters[2] / encoder_params:.2%}",
        f"{record['optimizer_state_mb_adapters']} MB",
    )
    table.add_row(
        "full fine-tuning",
        f"{f:.1f}",
        " ".join(f"{x:.1f}" for x in rates["full"]),
        f"{full[2]:,}",
        f"{full[2] / encoder_params:.2%}",
        f"{record['optimizer_state_mb_full']} MB",
    )
    console = Console()
    console.print(table)
    console.print(
        f"adapters are {a / f:.2f}x the speed of full fine-tuning; "
        f"trainable share {adapters[2] / encoder_params:.2%} (goal < 5%)"
    )
    print(json.dumps(record))
    if args.json_out:
        args.json_out.write_text(json.dumps(record, indent=2), encoding="utf-8")
    from autoglm.bench.records import HeadlineRow, write_record

    share = adapters[2] / encoder_params
    headline = [
        HeadlineRow(
            what="Training samples/s, adapters + heads vs full fine-tuning (same model, same batches)",
            baseline=f"full fine-tuning {f:.1f}/s",
            result=f"adapters {a:.1f}/s ({a / f:.2f}x)",
        ),
        HeadlineRow(
            what="Trainable share of the encoder (adapters + heads)",
            baseline="full fine-tuning 100 %",
            result=f"{share:.2%}",
            target="< 5 %",
            met=share < 0.05,
        ),
    ]
    if args.seeds:
        seeded = seeded_accuracy(args, base)
        record["seeded_runs"] = seeded
        acc = np.array([r["accuracy"] for r in seeded["runs"]])
        mins = np.array([r["wall_s"] for r in seeded["runs"]]) / 60
        mean, sd = float(acc.mean()), float(acc.std(ddof=1)) if len(acc) > 1 else 0.0
        console.print(
            f"unseen-template accuracy over seeds {args.seeds}: {mean:.2%} ± {sd:.2%} "
            f"(runs: {', '.join(f'{x:.2%}' for x in acc)}); training {mins.mean():.1f} min per run"
        )
        headline.append(
            HeadlineRow(
                what=f"Router accuracy, unseen templates, mean ± sd over {len(acc)} seeds (demo recipe: "
                f"{seeded['recipe']['epochs']} epochs max, {seeded['recipe']['train_per_template']} "
                "examples per template)",
                baseline="—",
                result=f"{mean:.2%} ± {sd:.2%} (min {acc.min():.2%}, max {acc.max():.2%}); "
                f"{mins.mean():.1f} min per run",
                target=">= 97 % (mean), < 15 min (time on a quiet machine only)",
                met=bool(mean >= 0.97 and mins.mean() < 15),
            )
        )
    write_record("training", record, headline)


def seeded_accuracy(args: argparse.Namespace, base: Path) -> dict[str, object]:
    """Train the router once per seed with the trainer's own pipeline; unseen-template accuracy."""
    from autoglm.demo.train_stage import DEMO_TRAINING
    from cloud.training import TrainConfig, train

    recipe = dict(DEMO_TRAINING)
    if args.epochs:
        recipe["epochs"] = args.epochs
    if args.train_per_template:
        recipe["train_per_template"] = args.train_per_template
    from cloud.model.checkpoint import CheckpointError, read_checkpoint_meta

    runs = []
    for seed in args.seeds:
        cfg = TrainConfig(
            base_path=base,
            out_dir=args.out / f"seed{seed}",
            seed=seed,
            num_threads=args.train_threads,
            **recipe,
        )
        # a finished run of the same configuration (e.g. seeds trained in parallel processes) is read back
        try:
            meta = read_checkpoint_meta(cfg.out_dir)
            done = (
                meta.training.get("finished") and meta.training.get("config_sha256") == cfg.identity_sha256()
            )
        except CheckpointError:
            done = False
        if done:
            test, tr = meta.metrics["test"], meta.training
            run = {
                "accuracy": test["accuracy"],
                "by_lang": test.get("by_lang"),
                "epochs_run": tr["epochs_run"],
                "wall_s": tr["wall_s"],
                "threads": tr.get("threads_per_rank"),
                "reused": True,
            }
        else:
            res = train(cfg, progress=False)
            test = res.metrics["test"]
            run = {
                "accuracy": test["accuracy"],
                "by_lang": test.get("by_lang"),
                "epochs_run": res.epochs_run,
                "wall_s": round(res.wall_s, 1),
                "threads": torch.get_num_threads(),
                "reused": False,
            }
        runs.append({"seed": seed, **run})
        print(json.dumps(runs[-1]), flush=True)
    return {"recipe": recipe, "runs": runs}


if __name__ == "__main__":
    main()
