"""Tiny checkpoints for export tests: a random MiniLM-shaped encoder with random adapters."""

from __future__ import annotations

from pathlib import Path

import torch

from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.base import make_tiny_base
from cloud.model.checkpoint import save_checkpoint

ROUTES = ["calculator", "climate", "chitchat", "doc_search"]


def randomise(model: AutoGLMModel, set_name: str, seed: int, std: float = 0.05) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_set(set_name).parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def make_checkpoint(
    root: Path,
    *,
    sets: dict[str, int] | None = None,
    routes: list[str] | None = None,
    base_seed: int = 0,
    base_dir: Path | None = None,
) -> Path:
    """``sets``: adapter set name -> seed of its random weights."""
    base = base_dir or make_tiny_base(root / "base", seed=base_seed)
    model = AutoGLMModel.from_pretrained(base)
    for name, seed in (sets or {"default": 1}).items():
        model.add_adapter_set(name, routes or ROUTES)
        randomise(model, name, seed)
    return save_checkpoint(model, root / "ckpt", base_path=base, metrics={"val_accuracy": 0.5}, temperatures={"default": 1.3})
