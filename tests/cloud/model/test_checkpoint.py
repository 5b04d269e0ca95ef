"""Checkpoint round trip and its failure messages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from cloud.model import AutoGLMModel
from cloud.model.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_meta, save_checkpoint
from contracts.routes import DEFAULT_ROUTES
from contracts.tokenizer import TextTokenizer


def _trained_like(base: Path) -> AutoGLMModel:
    torch.manual_seed(3)
    model = AutoGLMModel.from_pretrained(base)
    aset = model.add_adapter_set("default", list(DEFAULT_ROUTES), bottleneck=8)
    model.add_adapter_set("second", ["x", "y"], bottleneck=4)
    with torch.no_grad():
        for p in aset.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_round_trip_restores_outputs_and_metadata(tiny_base: Path, tmp_path: Path) -> None:
    model = _trained_like(tiny_base)
    ckpt = save_checkpoint(
        model,
        tmp_path / "ckpt",
        base_path=tiny_base,
        training={"config": {"epochs": 1}},
        metrics={"accuracy": 0.5},
        temperatures={"default": 1.7},
    )
    loaded, meta = load_checkpoint(ckpt)
    assert meta.adapter_sets["default"].routes == list(DEFAULT_ROUTES)
    assert meta.adapter_sets["default"].temperature == pytest.approx(1.7)
    assert meta.adapter_sets["second"].temperature == 1.0
    assert meta.adapter_sets["second"].bottleneck == 4
    assert meta.metrics == {"accuracy": 0.5}
    assert meta.training["config"] == {"epochs": 1}
    ids, mask = TextTokenizer(tiny_base)(["start press P-12", "把烤箱OV-3关掉"])
    x, m = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.inference_mode():
        a, b = model(x, m, "default"), loaded(x, m, "default")
    assert torch.equal(a.route_logits, b.route_logits)
    assert torch.equal(a.embedding, b.embedding)
    assert all(not p.requires_grad for p in loaded.encoder.parameters())


def test_base_with_other_weights_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    ckpt = save_checkpoint(_trained_like(tiny_base), tmp_path / "ckpt", base_path=tiny_base)
    other = tmp_path / "other-base"
    shutil.copytree(tiny_base, other)
    (other / "model.safetensors").write_bytes((tiny_base / "model.safetensors").read_bytes() + b" ")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(ckpt, base_path=other)


def test_missing_or_broken_checkpoint_is_named(tmp_path: Path, tiny_base: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint_meta(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        read_checkpoint_meta(tmp_path / "empty")
    ckpt = save_checkpoint(_trained_like(tiny_base), tmp_path / "ckpt", base_path=tiny_base)
    (ckpt / "adapters.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"missing adapters\.safetensors"):
        load_checkpoint(ckpt)


def test_every_reader_tokenizes_as_the_checkpoint_recorded(tiny_base: Path, tmp_path: Path) -> None:
    """Training, the loop's triage and fine-tune, co-training and export all build their tokenizer
    with ``checkpoint_tokenizer``: a checkpoint recorded without lower-casing and without the OOV
    character fallback must not be read with the defaults (the loop's triage used to lower-case)."""
    from cloud.loop.triage import ModelTriage
    from cloud.model.checkpoint import checkpoint_tokenizer
    from contracts.tokenizer import TokenizerSettings

    recorded = {"max_length": 24, "lowercase": False, "oov_char_fallback": False}
    ckpt = save_checkpoint(
        _trained_like(tiny_base), tmp_path / "ckpt", base_path=tiny_base, tokenizer=recorded
    )
    meta = read_checkpoint_meta(ckpt)
    want = TokenizerSettings(max_length=24, lowercase=False, oov_char_fallback=False)
    assert meta.tokenizer_settings() == want
    tok = checkpoint_tokenizer(meta)
    assert tok.settings == want
    assert ModelTriage(ckpt).tokenizer.settings == want
    text = "START PRESS P-12 " * 10
    assert tok.encode_ids([text])[0] != TextTokenizer(tiny_base).encode_ids([text])[0]
    assert len(tok.encode_ids([text])[0]) == 24

    older = save_checkpoint(
        _trained_like(tiny_base), tmp_path / "old", base_path=tiny_base, tokenizer={"max_length": 32}
    )
    assert read_checkpoint_meta(older).tokenizer_settings() == TokenizerSettings(max_length=32)
