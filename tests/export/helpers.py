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
    return save_checkpoint(
        model, root / "ckpt", base_path=base, metrics={"val_accuracy": 0.5}, temperatures={"default": 1.3}
    )


def train_tiny(
    model: AutoGLMModel,
    set_name: str,
    texts: list[str],
    labels: list[str],
    tokenizer_dir: Path,
    steps: int = 150,
) -> None:
    """A few Adam steps on the adapters + head (cross-entropy), so the tiny model makes
    confident, label-related route decisions like a trained one."""
    from contracts.tokenizer import TextTokenizer

    tok = TextTokenizer(tokenizer_dir)
    aset = model.adapter_set(set_name)
    idx = {r: i for i, r in enumerate(aset.routes)}
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(aset.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        pick = torch.randint(0, len(texts), (32,), generator=gen).tolist()
        ids, mask = tok([texts[i] for i in pick])
        y = torch.tensor([idx[labels[i]] for i in pick])
        out = model(torch.from_numpy(ids), torch.from_numpy(mask), set_name)
        loss = torch.nn.functional.cross_entropy(out.route_logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def make_trained_checkpoint(root: Path, seed: int = 0) -> tuple[Path, list[str], list[str]]:
    """A tiny checkpoint whose head is fitted on the generator's train split (all nine routes);
    returns it with a held-out evaluation set (test split texts and labels)."""
    from cloud.data import default_splits
    from contracts.routes import DEFAULT_ROUTES

    base = make_tiny_base(root / "base", seed=seed)
    model = AutoGLMModel.from_pretrained(base)
    model.add_adapter_set("default", list(DEFAULT_ROUTES))
    randomise(model, "default", seed + 1, std=0.02)
    splits = default_splits(seed)
    train = splits["train"]
    train_tiny(model, "default", [e.text for e in train], [e.route for e in train], base)
    ckpt = save_checkpoint(model, root / "ckpt", base_path=base)
    test = splits["test"][:300]
    return ckpt, [e.text for e in test], [e.route for e in test]
