"""The training loop: adapters + router head on a frozen base, single process or DDP.

Per epoch: seeded shuffle -> global batches -> each rank takes its equal share (DDP averages
the gradients with AllReduce) -> evaluate on validation (every rank, identically, so early
stopping needs no communication) -> keep the best weights -> save the resumable state.
At the end: restore the best weights, fit the softmax temperature on validation, evaluate the
test split (overall, per route, per language) and save the checkpoint.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.base import base_sha256, default_base_path, make_tiny_base
from cloud.model.checkpoint import save_checkpoint
from cloud.training.batches import EncodedSplit, encode_split, epoch_batches, num_batches
from cloud.training.calibration import fit_temperature, nll
from cloud.training.config import TrainConfig, TrainResult
from cloud.training.curves import CURVES_FILE, write_training_curves
from cloud.training.data_source import load_run_data
from cloud.training.distributed import DistContext, barrier, cleanup, init_distributed, shard, wrap_ddp
from cloud.training.metrics import evaluate_predictions
from cloud.training.progress import LogReporter, Reporter, RichReporter
from cloud.training.state import load_state, restore_rng, rng_state, save_state
from contracts.errors import BadRequest
from contracts.logging import get_logger
from contracts.tokenizer import TextTokenizer, TokenizerSettings

log = get_logger("autoglm.cloud.training")


class RouterLogits(nn.Module):
    """``(input_ids, attention_mask) -> route_logits`` of one adapter set (the module DDP wraps)."""

    def __init__(self, model: AutoGLMModel, adapter_set: str) -> None:
        super().__init__()
        self.model = model
        self.adapter_set = adapter_set

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask, self.adapter_set).route_logits


def train_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    max_grad_norm: float = 1.0,
    extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    """One optimiser step on this rank's share of a global batch; returns the local loss.
    ``extra_loss(logits)``: a term added to the cross-entropy (the loop's distillation)."""
    optimizer.zero_grad(set_to_none=True)
    logits = module(input_ids, attention_mask)
    loss = F.cross_entropy(logits, labels)
    if extra_loss is not None:
        loss = loss + extra_loss(logits)
    loss.backward()  # under DDP: gradients AllReduce-averaged across ranks here
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return float(loss.detach())


@torch.inference_mode()
def predict_logits(
    model: AutoGLMModel, adapter_set: str, split: EncodedSplit, device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    was_training = model.training
    model.eval()
    order = np.argsort([len(x) for x in split.ids], kind="stable")  # similar lengths -> less padding
    out = torch.empty((len(split), len(model.adapter_set(adapter_set).routes)))
    for start in range(0, len(split), batch_size):
        idx = order[start : start + batch_size]
        ids, mask, _ = split.batch(idx, device)
        out[torch.from_numpy(idx)] = model(ids, mask, adapter_set).route_logits.float().cpu()
    model.train(was_training)
    return out


def lr_lambda(total_steps: int, warmup_steps: int) -> Any:
    def f(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return f


def default_threads(world_size: int, *, adapt_to_load: bool = False) -> int:
    """CPU cores per process (``cores // world_size``).

    The thread count changes the order of floating-point sums inside torch's CPU kernels, so it
    is part of what makes a run reproducible: by default it depends only on the machine, never on
    its current load. ``adapt_to_load`` (benchmarks only) drops to one thread when the load
    average is above the core count: OpenMP threads of one process then wait on each other while
    descheduled (measured here: two threads burned ~3x the CPU of one per training step).
    """
    cores = os.cpu_count() or 1
    if adapt_to_load:
        try:
            if os.getloadavg()[0] > cores:
                return 1
        except OSError:  # pragma: no cover - platform without getloadavg
            pass
    return max(1, cores // world_size)


def make_deterministic(seed: int, threads: int) -> None:
    """Same seed, same machine, same thread count -> bit-identical weights.

    Seeds torch's global generator (initialisation, dropout), fixes the intra-op thread count and
    asks torch for deterministic kernels (an op without one warns instead of failing: on the CPU
    every op the trainer uses has one). Data order is seeded separately (``batches.py``).
    """
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)


def resolve_base(cfg: TrainConfig, ctx: DistContext) -> Path:
    if cfg.base_path is not None:
        return Path(cfg.base_path)
    if not cfg.tiny:
        return default_base_path()
    tiny_dir = Path(cfg.out_dir) / "tiny-base"
    if ctx.is_main and not (tiny_dir / "model.safetensors").is_file():
        make_tiny_base(tiny_dir, seed=cfg.seed)
    barrier(ctx)
    return tiny_dir


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Train (or resume) one run; under ``torchrun`` every rank calls this and rank 0 writes."""
    ctx = init_distributed()
    try:
        return _train(config, ctx, progress)
    finally:
        cleanup(ctx)


def _train(cfg: TrainConfig, ctx: DistContext, progress: bool) -> TrainResult:
    t_start = time.perf_counter()
    threads = cfg.num_threads or default_threads(ctx.world_size)
    make_deterministic(cfg.seed, threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = resolve_base(cfg, ctx)
    data = load_run_data(cfg)
    routes = data.routes
    tokenizer = TextTokenizer(base, TokenizerSettings(max_length=cfg.max_length))
    enc = {name: encode_split(examples, tokenizer, routes) for name, examples in data.splits.items()}

    torch.manual_seed(cfg.seed)
    model = AutoGLMModel.from_pretrained(base)
    aset = model.add_adapter_set(cfg.adapter_set, routes, cfg.bottleneck)
    model.to(ctx.device)
    module = wrap_ddp(RouterLogits(model, cfg.adapter_set), ctx)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_train = len(enc["train"])
    train_lengths = [len(x) for x in enc["train"].ids]
    steps_per_epoch = num_batches(n_train, cfg.batch_size, min_size=ctx.world_size)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total_steps, int(total_steps * cfg.warmup_ratio))
    )

    start_epoch, bad_epochs = 0, 0
    best: dict[str, Any] = {"accuracy": -1.0, "loss": math.inf, "epoch": 0, "state": None}
    history: list[dict[str, Any]] = []
    if cfg.resume:
        st = load_state(out_dir)
        if st is None:
            raise BadRequest(f"{out_dir}: nothing to resume (no train_state.pt); run without --resume")
        if st["config_sha256"] != cfg.identity_sha256():
            raise BadRequest(
                f"{out_dir}: the interrupted run had another configuration; resume with the same options"
            )
        aset.load_state_dict(st["adapter_set"])
        optimizer.load_state_dict(st["optimizer"])
        scheduler.load_state_dict(st["scheduler"])
        start_epoch, bad_epochs, best, history = st["epoch"], st["bad_epochs"], st["best"], st["history"]
        restore_rng(st["rng"])
        log.info("resuming", extra={"epoch": start_epoch, "out_dir": str(out_dir)})

    reporter: Reporter = RichReporter() if (progress and ctx.is_main) else LogReporter()
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if bad_epochs >= cfg.patience:
                break
            if cfg.stop_after_epochs is not None and epoch >= cfg.stop_after_epochs:
                return TrainResult(
                    out_dir,
                    {},
                    history,
                    epoch,
                    best["epoch"],
                    finished=False,
                    wall_s=time.perf_counter() - t_start,
                    routes=routes,
                )
            t0 = time.perf_counter()
            model.train()
            reporter.start_epoch(epoch + 1, cfg.epochs, steps_per_epoch)
            losses = []
            for gbatch in epoch_batches(
                n_train, cfg.batch_size, cfg.seed, epoch, ctx.world_size, train_lengths
            ):
                ids, mask, labels = enc["train"].batch(shard(gbatch, ctx), ctx.device)
                loss = train_step(module, optimizer, ids, mask, labels)
                scheduler.step()
                losses.append(loss)
                reporter.step(loss, len(gbatch))
            train_s = time.perf_counter() - t0
            val_logits = predict_logits(model, cfg.adapter_set, enc["val"], ctx.device)
            val_labels = torch.from_numpy(enc["val"].labels)
            val_acc = float((val_logits.argmax(-1) == val_labels).float().mean())
            val_loss = nll(val_logits, val_labels)
            report = evaluate_predictions(
                val_labels.numpy(), val_logits.argmax(-1).numpy(), enc["val"].langs, routes
            )
            improved = val_acc > best["accuracy"] or (val_acc == best["accuracy"] and val_loss < best["loss"])
            if improved:
                best = {
                    "accuracy": val_acc,
                    "loss": val_loss,
                    "epoch": epoch + 1,
                    "state": copy.deepcopy(aset.state_dict()),
                }
                bad_epochs = 0
            else:
                bad_epochs += 1
            row = {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)) if losses else 0.0,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "val_macro_f1": report["macro_f1"],
                **{f"val_accuracy_{lang}": v["accuracy"] for lang, v in report["by_lang"].items()},
                "seconds": time.perf_counter() - t0,
                "train_samples_per_s": n_train / max(train_s, 1e-9),
                "best": improved,
            }
            history.append(row)
            reporter.end_epoch(row)
            if ctx.is_main:
                save_state(
                    out_dir,
                    {
                        "config_sha256": cfg.identity_sha256(),
                        "epoch": epoch + 1,
                        "bad_epochs": bad_epochs,
                        "best": best,
                        "history": history,
                        "adapter_set": aset.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rng_state(),
                        "finished": False,
                    },
                )
    finally:
        reporter.close()

    if best["state"] is not None:
        aset.load_state_dict(best["state"])
    val_logits = predict_logits(model, cfg.adapter_set, enc["val"], ctx.device)
    val_labels = torch.from_numpy(enc["val"].labels)
    temperature = fit_temperature(val_logits, val_labels)
    test_logits = predict_logits(model, cfg.adapter_set, enc["test"], ctx.device)
    test_labels = enc["test"].labels
    test = evaluate_predictions(test_labels, test_logits.argmax(-1).numpy(), enc["test"].langs, routes)
    val = evaluate_predictions(val_labels.numpy(), val_logits.argmax(-1).numpy(), enc["val"].langs, routes)
    wall_s = time.perf_counter() - t_start
    metrics: dict[str, Any] = {
        "split": "test",
        "accuracy": test["accuracy"],
        "macro_f1": test["macro_f1"],
        **{f"accuracy_{lang}": v["accuracy"] for lang, v in test["by_lang"].items()},
        "temperature": temperature,
        "val_nll": nll(val_logits, val_labels),
        "val_nll_calibrated": nll(val_logits, val_labels, temperature),
        "test": test,
        "val": {k: val[k] for k in ("n", "accuracy", "macro_f1", "by_lang")},
    }
    training = {
        "config": cfg.identity(),
        "config_sha256": cfg.identity_sha256(),
        "data_source": data.source,
        "dataset_sha256": data.hashes,
        "dataset_sizes": {k: len(v) for k, v in data.splits.items()},
        "epochs_run": len(history),
        "best_epoch": best["epoch"],
        "history": [{k: v for k, v in row.items() if k != "best"} for row in history],
        "world_size": ctx.world_size,
        "threads_per_rank": threads,
        "deterministic": True,
        "wall_s": round(wall_s, 2),
        "seconds_per_epoch": round(float(np.mean([r["seconds"] for r in history])), 2) if history else 0.0,
        "finished": True,
    }
    if ctx.is_main:
        save_checkpoint(
            model,
            out_dir,
            base_path=base,
            base_hash=base_sha256(base),
            tokenizer={"max_length": cfg.max_length, "lowercase": True, "oov_char_fallback": True},
            training=training,
            metrics=metrics,
            temperatures={cfg.adapter_set: temperature},
        )
        write_training_curves(training["history"], out_dir / CURVES_FILE, best_epoch=best["epoch"])
        st = load_state(out_dir)
        if st is not None:
            st["finished"] = True
            save_state(out_dir, st)
    barrier(ctx)
    return TrainResult(out_dir, metrics, history, len(history), best["epoch"], True, wall_s, routes)
