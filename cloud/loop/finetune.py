"""The loop's fine-tune: warm-start from the production checkpoint, train the adapters + router
head on the base data mixed with the labelled hard examples, evaluate before and after.

Uses the trainer's public pieces (``cloud.training``: ``train_step``, ``predict_logits``,
``encode_split``, ``fit_temperature``, ``load_run_data``); the run is seeded and deterministic
like the trainer's. The *frozen evaluation set* is the parent run's held-out test split (split
by template, never trained on); the *hard-example set* is the labelled dataset itself (the
examples are also trained on: its before/after measures whether the fix took, not
generalisation -- docs/arch/loop.md).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cloud.data import Example, default_splits, detect_lang
from cloud.loop.settings import LoopSettings
from cloud.model.checkpoint import checkpoint_tokenizer, load_checkpoint, save_checkpoint
from cloud.training.batches import EncodedSplit, encode_split
from cloud.training.calibration import fit_temperature
from cloud.training.config import TrainConfig
from cloud.training.data_source import load_run_data
from cloud.training.maml import kd_loss
from cloud.training.new_route import NEW_ROUTE_KEY, refit_route_gate, stored_gate_support
from cloud.training.route_gate import INERT_BIAS
from cloud.training.trainer import (
    RouterLogits,
    default_threads,
    make_deterministic,
    predict_logits,
    train_step,
)
from contracts.errors import BadRequest
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.loop.finetune")

Progress = Callable[[float, str], None]  # (0..1 of the fine-tune, message); may raise to cancel


@dataclass
class FinetuneResult:
    checkpoint_dir: Path
    routes: list[str]
    before: dict[str, float]
    after: dict[str, float]
    frozen_n: int
    hard_n: int
    wall_s: float
    steps: int
    eval_texts: list[str] = field(default_factory=list)  # the frozen set (the export guard runs on it)
    eval_labels: list[str] = field(default_factory=list)


def _base_data(meta_training: dict[str, Any], routes: list[str], out_dir: Path) -> dict[str, list[Example]]:
    cfg_dict = meta_training.get("config")
    if isinstance(cfg_dict, dict):
        try:
            cfg = TrainConfig.model_validate({**cfg_dict, "out_dir": out_dir})
            return load_run_data(cfg).splits
        except Exception as exc:  # the parent's data is gone (user JSONL moved): fall back, say so
            log.warning("parent run's data unavailable (%s); using the bundled generator", exc)
    splits = default_splits(0)
    return {k: [e for e in v if e.route in routes] for k, v in splits.items()}


def _accuracy(model: Any, set_name: str, split: EncodedSplit, device: torch.device) -> float:
    if len(split) == 0:
        return 0.0
    logits = predict_logits(model, set_name, split, device)
    return float((logits.argmax(-1).numpy() == split.labels).mean())


def distill_term(teacher: torch.Tensor, st: LoopSettings) -> Callable[[torch.Tensor], torch.Tensor]:
    """The extra loss of a fine-tune step (``train_step(extra_loss=…)``): ``loop_distill_weight ·
    T² · KL(teacher ‖ model)`` on the batch's first ``len(teacher)`` rows (the base examples)."""
    n = teacher.shape[0]

    def term(logits: torch.Tensor) -> torch.Tensor:
        if not n:
            return logits.sum() * 0.0
        return st.loop_distill_weight * kd_loss(logits[:n], teacher, st.loop_distill_temperature)

    return term


def keep_inert(model: Any, set_name: str) -> None:
    """The gated route's router-head output back to inert (weight 0, bias ``INERT_BIAS``): the
    fine-tune's weight decay and softmax gradients nudge it; the gate alone routes to it."""
    out = model.adapter_set(set_name).heads.router.out
    with torch.no_grad():
        out.weight[-1].zero_()
        out.bias[-1] = INERT_BIAS


def finetune(
    parent_ckpt: Path,
    hard: list[tuple[str, str]],
    out_dir: Path,
    settings: LoopSettings,
    *,
    on_progress: Progress | None = None,
    extra_training: dict[str, Any] | None = None,
    baseline_ckpt: Path | None = None,
) -> FinetuneResult:
    """Fine-tune ``parent_ckpt`` on the base data + ``hard``; ``before`` is measured on
    ``baseline_ckpt`` when given (the production checkpoint, when the job grew routes into
    ``parent_ckpt`` first: the gain and the regression are against what the fleet runs)."""
    t0 = time.perf_counter()
    report = on_progress or (lambda _p, _m: None)
    st = settings
    make_deterministic(st.loop_seed, default_threads(1))
    device = torch.device("cpu")
    model, meta = load_checkpoint(parent_ckpt)
    set_name = next(iter(meta.adapter_sets))
    # a gated route (grown with ``method="gate"``): the fine-tune moves the embedding its gate was
    # calibrated on, so the gate is fitted again afterwards (its stored support + its labelled
    # hard examples); it sits out the training, and its labelled examples go to the refit
    gate = model.route_gates.get(set_name)
    if gate is not None:
        stored_gate_support(meta.training, gate.route)  # refused before any training, not after
    routes = list(meta.adapter_sets[set_name].routes)
    unknown = sorted({r for _, r in hard if r not in routes})
    if unknown:  # the pipeline grows the head first (cloud.training.new_route); this is a programming error
        raise BadRequest(f"labels {unknown} are not routes of the checkpoint ({routes})")
    splits = _base_data(meta.training, routes, out_dir / "data")
    tokenizer = checkpoint_tokenizer(meta)
    rng = random.Random(st.loop_seed)
    frozen = [e for e in splits["test"] if e.route in routes]
    if st.loop_eval_max and len(frozen) > st.loop_eval_max:
        frozen = rng.sample(frozen, st.loop_eval_max)
    base_train = [e for e in splits["train"] if e.route in routes]
    if st.loop_base_samples and len(base_train) > st.loop_base_samples:
        base_train = rng.sample(base_train, st.loop_base_samples)
    hard_ex = [Example(t, r, detect_lang(t), "hard") for t, r in hard]
    hard_train = [e for e in hard_ex if gate is None or e.route != gate.route]
    val = [e for e in splits["val"] if e.route in routes][: min(600, st.loop_eval_max or 600)]
    enc_frozen = encode_split(frozen, tokenizer, routes)
    enc_hard = encode_split(hard_ex, tokenizer, routes)
    enc_hard_train = (
        enc_hard if len(hard_train) == len(hard_ex) else encode_split(hard_train, tokenizer, routes)
    )
    enc_base = encode_split(base_train, tokenizer, routes)
    report(0.02, f"data: {len(base_train)} base + {len(hard_ex)} hard examples; frozen eval {len(frozen)}")

    judge = model
    if baseline_ckpt is not None:  # the production model the job started from, before any growth
        judge, base_meta = load_checkpoint(baseline_ckpt)
        base_routes = list(base_meta.adapter_sets[set_name].routes)
        if routes[: len(base_routes)] != base_routes:
            raise BadRequest(f"{parent_ckpt}: its routes do not extend the baseline's ({base_routes})")
    # (a baseline without a grown route never predicts its index: its examples count as wrong)
    before = {
        "frozen_accuracy": _accuracy(judge, set_name, enc_frozen, device),
        "hard_accuracy": _accuracy(judge, set_name, enc_hard, device),
    }
    del judge
    report(0.15, f"before: frozen {before['frozen_accuracy']:.4f}, hard {before['hard_accuracy']:.4f}")
    if gate is not None:
        del model.route_gates[set_name]  # trained (and distilled) on the plain head; refitted below

    aset = model.adapter_set(set_name)
    for p in aset.parameters():
        p.requires_grad_(True)
    module = RouterLogits(model, set_name)
    # the parent's logits on the base examples, once, before any step (distillation targets)
    parent_base = (
        predict_logits(model, set_name, enc_base, device)
        if st.loop_distill_weight > 0 and len(enc_base)
        else None
    )
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=st.loop_train_lr, weight_decay=0.01)
    bs = st.loop_train_batch_size
    n_hard = max(1, round(bs * st.loop_hard_share)) if len(hard_train) else 0
    n_base = bs - n_hard if len(base_train) else 0
    gen = np.random.default_rng(st.loop_seed)
    model.train()
    losses: list[float] = []
    for step in range(st.loop_train_steps):
        idx_b = gen.integers(0, len(enc_base), n_base) if n_base else np.zeros(0, dtype=np.int64)
        idx_h = gen.integers(0, len(enc_hard_train), n_hard) if n_hard else np.zeros(0, dtype=np.int64)
        parts = [sp.batch(ix, device) for sp, ix in ((enc_base, idx_b), (enc_hard_train, idx_h)) if len(ix)]
        width = max(p[0].shape[1] for p in parts)
        ids = torch.cat([torch.nn.functional.pad(p[0], (0, width - p[0].shape[1])) for p in parts])
        mask = torch.cat([torch.nn.functional.pad(p[1], (0, width - p[1].shape[1])) for p in parts])
        labels = torch.cat([p[2] for p in parts])
        # base rows come first in the batch (parts' order)
        extra = None if parent_base is None else distill_term(parent_base[torch.from_numpy(idx_b)], st)
        losses.append(train_step(module, optimizer, ids, mask, labels, extra_loss=extra))
        if step % 10 == 9 or step == st.loop_train_steps - 1:
            report(
                0.15 + 0.7 * (step + 1) / st.loop_train_steps,
                f"step {step + 1}/{st.loop_train_steps} loss {np.mean(losses[-10:]):.4f}",
            )
    model.eval()
    refit = None
    if gate is not None:
        keep_inert(model, set_name)
        report(0.9, f"refitting the gate of route {gate.route!r} on the new adapters")
        refit = refit_route_gate(
            model,
            meta.training,
            set_name,
            tokenizer,
            [e.text for e in hard_ex if e.route == gate.route],
            seed=st.loop_seed,
            fallback_replay=base_train,
            negatives=[e for e in hard_ex if e.route != gate.route] if st.loop_gate_hard_negatives else (),
        )
    temperature = float(meta.adapter_sets[set_name].temperature)
    if val:
        enc_val = encode_split(val, tokenizer, routes)
        temperature = fit_temperature(
            predict_logits(model, set_name, enc_val, device), torch.from_numpy(enc_val.labels)
        )
    after = {
        "frozen_accuracy": _accuracy(model, set_name, enc_frozen, device),
        "hard_accuracy": _accuracy(model, set_name, enc_hard, device),
    }
    report(0.97, f"after: frozen {after['frozen_accuracy']:.4f}, hard {after['hard_accuracy']:.4f}")
    wall = time.perf_counter() - t0
    temps = {n: float(i.temperature) for n, i in meta.adapter_sets.items()}
    temps[set_name] = temperature
    training = {
        **meta.training,
        **({NEW_ROUTE_KEY: refit.info} if refit is not None else {}),
        "finished": True,
        "loop": {
            "parent_checkpoint": str(parent_ckpt),
            "steps": st.loop_train_steps,
            "lr": st.loop_train_lr,
            "batch_size": bs,
            "hard_share": st.loop_hard_share,
            "distill_weight": st.loop_distill_weight,
            "distill_temperature": st.loop_distill_temperature,
            "base_samples": len(base_train),
            "hard_examples": len(hard_ex),
            "seed": st.loop_seed,
            "wall_s": round(wall, 2),
            **(
                {"gate_refit": {"route": refit.gate.route, "support": refit.support, "added": refit.added}}
                if refit is not None
                else {}
            ),
            **(extra_training or {}),
        },
    }
    metrics = {**meta.metrics, "loop_before": before, "loop_after": after, "temperature": temperature}
    save_checkpoint(
        model,
        out_dir,
        base_path=Path(meta.base_path),
        base_hash=meta.base_sha256,
        base_id=meta.base_id,
        tokenizer=meta.tokenizer,
        training=training,
        metrics=metrics,
        temperatures=temps,
    )
    return FinetuneResult(
        out_dir,
        routes,
        before,
        after,
        len(frozen),
        len(hard_ex),
        wall,
        st.loop_train_steps,
        [e.text for e in frozen],
        [e.route for e in frozen],
    )
