"""Adapters: identity at initialisation, only adapters + heads train, parameter names, budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cloud.model import AutoGLMModel, BertConfig, BertEncoder
from cloud.model.base import default_base_path
from contracts.routes import DEFAULT_ROUTES
from contracts.tokenizer import TextTokenizer

TEXTS = ["start press P-12", "把烤箱OV-3的温度设为180度", "what's the weather in Munich tomorrow?"]


def _inputs(base: Path) -> tuple[torch.Tensor, torch.Tensor]:
    ids, mask = TextTokenizer(base)(TEXTS)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def test_fresh_adapters_leave_encoder_output_unchanged(tiny_base: Path) -> None:
    model = AutoGLMModel.from_pretrained(tiny_base).eval()
    ids, mask = _inputs(tiny_base)
    plain = model.encoder(ids, mask, None)
    model.add_adapter_set("default", list(DEFAULT_ROUTES))
    with_adapters = model.encode(ids, mask, "default")
    assert torch.equal(plain, with_adapters)


def test_adapters_are_wired_into_every_layer(tiny_base: Path) -> None:
    model = AutoGLMModel.from_pretrained(tiny_base).eval()
    aset = model.add_adapter_set("default", list(DEFAULT_ROUTES))
    ids, mask = _inputs(tiny_base)
    before = model.encode(ids, mask)
    for i, adapter in enumerate(aset.adapters):
        torch.nn.init.normal_(adapter.up.weight, std=0.1)
        after = model.encode(ids, mask)
        assert not torch.allclose(before, after), f"adapter {i} has no effect"
        before = after


def test_only_adapter_and_head_parameters_require_grad(tiny_base: Path) -> None:
    model = AutoGLMModel.from_pretrained(tiny_base)
    model.add_adapter_set("default", list(DEFAULT_ROUTES))
    model.add_adapter_set("other", ["a", "b"], bottleneck=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert trainable and all(n.startswith("adapter_sets.") for n in trainable)
    assert all(n.startswith("encoder.") for n in frozen)
    assert {n for n, _ in model.encoder.named_parameters()} == {n.removeprefix("encoder.") for n in frozen}
    assert len(model.trainable_parameters()) == len(trainable)


def test_stable_parameter_names(tiny_base: Path) -> None:
    model = AutoGLMModel.from_pretrained(tiny_base)
    aset = model.add_adapter_set("default", list(DEFAULT_ROUTES), bottleneck=16)
    names = set(aset.state_dict())
    hidden = model.config.hidden_size
    for i in range(model.config.num_hidden_layers):
        assert aset.state_dict()[f"adapters.{i}.down.weight"].shape == (16, hidden)
        assert aset.state_dict()[f"adapters.{i}.up.weight"].shape == (hidden, 16)
    assert {"heads.router.dense.weight", "heads.router.out.weight", "heads.router.out.bias"} <= names
    assert aset.state_dict()["heads.router.out.weight"].shape[0] == len(DEFAULT_ROUTES)


@pytest.mark.parametrize("name", ["Default", "", "1set", "a b"])
def test_bad_adapter_set_names_are_rejected(tiny_base: Path, name: str) -> None:
    model = AutoGLMModel.from_pretrained(tiny_base)
    with pytest.raises(ValueError, match="adapter set name"):
        model.add_adapter_set(name, ["a", "b"])


def test_duplicate_routes_and_sets_are_rejected(tiny_base: Path) -> None:
    model = AutoGLMModel.from_pretrained(tiny_base)
    with pytest.raises(ValueError, match="distinct routes"):
        model.add_adapter_set("x", ["a", "a"])
    model.add_adapter_set("x", ["a", "b"])
    with pytest.raises(ValueError, match="already exists"):
        model.add_adapter_set("x", ["a", "b"])


def test_trainable_share_on_minilm_is_under_five_percent() -> None:
    cfg = BertConfig.from_dir(default_base_path())
    model = AutoGLMModel(BertEncoder(cfg))
    model.add_adapter_set("default", list(DEFAULT_ROUTES), bottleneck=64)
    trainable = sum(p.numel() for p in model.trainable_parameters())
    encoder = sum(p.numel() for p in model.encoder.parameters())
    assert trainable / encoder < 0.05
