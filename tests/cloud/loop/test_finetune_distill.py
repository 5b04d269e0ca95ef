"""The loop fine-tune's distillation term (``loop_distill_weight``): zero against the model's own
logits, positive against other ones, and a job with it on a really trained tiny checkpoint stays
closer to its parent on the base data than the same job without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cloud.data import default_splits
from cloud.loop.finetune import distill_term, finetune
from cloud.loop.settings import LoopSettings
from cloud.model.checkpoint import checkpoint_tokenizer, load_checkpoint
from cloud.training.batches import encode_split
from cloud.training.trainer import predict_logits, train_step
from tests.cloud.loop.conftest import TinyModel


class _Logits(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.lin(ids.float())


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 5, (6, 4), generator=g)
    return ids, torch.ones_like(ids), torch.tensor([0, 1, 2, 0, 1, 2])


def test_distill_term_is_zero_against_own_logits_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    m = _Logits()
    ids, mask, labels = _batch()
    with torch.no_grad():
        own = m(ids, mask)[:4].clone()
        ce = float(F.cross_entropy(m(ids, mask), labels))
    st = LoopSettings(loop_distill_weight=1.0)
    opt = torch.optim.SGD(m.parameters(), lr=0.0)  # lr 0: the step reports the loss, changes nothing
    assert train_step(m, opt, ids, mask, labels, extra_loss=distill_term(own, st)) == pytest.approx(
        ce, abs=1e-6
    )
    other = own.flip(-1) * 3
    assert train_step(m, opt, ids, mask, labels, extra_loss=distill_term(other, st)) > ce + 0.1
    assert train_step(m, opt, ids, mask, labels, extra_loss=distill_term(other[:0], st)) == pytest.approx(
        ce, abs=1e-6
    )


def _base_agreement(parent: Path, child: Path) -> float:
    """Share of the generator's validation items where ``child`` answers as ``parent`` does."""
    preds = []
    for ckpt in (parent, child):
        model, meta = load_checkpoint(ckpt)
        set_name = next(iter(meta.adapter_sets))
        routes = list(meta.adapter_sets[set_name].routes)
        tok = checkpoint_tokenizer(meta)
        val = [e for e in default_splits(0)["val"] if e.route in routes][:300]
        logits = predict_logits(model, set_name, encode_split(val, tok, routes), torch.device("cpu"))
        preds.append(logits.argmax(-1).numpy())
    return float(np.mean(preds[0] == preds[1]))


def test_distillation_keeps_the_parent_answers(tiny_model: TinyModel, tmp_path: Path) -> None:
    hard = [("crunch 48 by 12 for me", "calculator"), ("kill the lights over bay 3", "device_control")] * 4
    common = {"loop_train_steps": 40, "loop_train_lr": 2e-2, "loop_base_samples": 200, "loop_eval_max": 50}
    plain = finetune(tiny_model.checkpoint, hard, tmp_path / "plain", LoopSettings(**common))
    kd = finetune(
        tiny_model.checkpoint,
        hard,
        tmp_path / "kd",
        LoopSettings(**common, loop_distill_weight=4.0),
    )
    loop = load_checkpoint(kd.checkpoint_dir)[1].training["loop"]
    assert loop["distill_weight"] == 4.0 and loop["distill_temperature"] == 2.0
    agree_plain = _base_agreement(tiny_model.checkpoint, plain.checkpoint_dir)
    agree_kd = _base_agreement(tiny_model.checkpoint, kd.checkpoint_dir)
    assert agree_kd > agree_plain, (agree_kd, agree_plain)
