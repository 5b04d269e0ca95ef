"""A BERT-family encoder in plain PyTorch.

Parameter names match Hugging Face's ``BertModel`` exactly (``embeddings.word_embeddings.weight``,
``encoder.layer.3.attention.self.query.weight`` …), so any local BERT checkpoint loads by name;
``tests/cloud/model/test_encoder.py`` checks the outputs against ``transformers.BertModel``.
We keep our own implementation so the exported ONNX graph is small, stable across transformers
releases, and has a fixed place for the adapters (see :mod:`cloud.model.adapters`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    pad_token_id: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        act = data.get("hidden_act", "gelu")
        if act not in ("gelu", "gelu_new", "gelu_python"):
            raise ValueError(f"unsupported hidden_act {act!r} (BERT-family encoders with gelu only)")
        return cls(**known)

    @classmethod
    def from_dir(cls, path: Path) -> BertConfig:
        cfg_file = Path(path) / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{cfg_file} not found: not a Hugging Face model directory")
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
        if data.get("model_type", "bert") not in ("bert",):
            raise ValueError(f"{cfg_file}: model_type {data.get('model_type')!r} is not BERT-family")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_type": "bert", "hidden_act": "gelu", "architectures": ["BertModel"]}


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of ``hidden`` ``[B, L, H]`` over the positions ``attention_mask`` keeps."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        positions = torch.arange(seq_len, device=input_ids.device).unsqueeze(0)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        # token_type_ids are always 0 for single-sentence inputs.
        x = x + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + additive_mask
        probs = self.dropout(F.softmax(scores, dim=-1))
        ctx = torch.matmul(probs, v).transpose(1, 2)
        b, s = ctx.shape[0], ctx.shape[1]
        return ctx.reshape(b, s, self.num_heads * self.head_dim)


class SelfOutput(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = SelfOutput(cfg)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, additive_mask), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Output(nn.Module):
    """FFN output. The adapter sits here: after dense+dropout, before residual + LayerNorm."""

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(
        self, h: torch.Tensor, residual: torch.Tensor, adapter: nn.Module | None = None
    ) -> torch.Tensor:
        h = self.dropout(self.dense(h))
        if adapter is not None:
            h = adapter(h)
        return self.LayerNorm(h + residual)


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = Output(cfg)

    def forward(
        self, x: torch.Tensor, additive_mask: torch.Tensor, adapter: nn.Module | None = None
    ) -> torch.Tensor:
        a = self.attention(x, additive_mask)
        return self.output(self.intermediate(a), a, adapter)


class EncoderStack(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))


class BertEncoder(nn.Module):
    """BERT encoder returning the last hidden state ``[batch, seq, hidden]``.

    ``adapters`` (optional) is a sequence with one module per layer, applied at the FFN output.
    """

    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.encoder = EncoderStack(cfg)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        adapters: nn.ModuleList | None = None,
    ) -> torch.Tensor:
        x = self.embeddings(input_ids)
        mask = attention_mask.to(x.dtype)
        additive = (1.0 - mask)[:, None, None, :] * -10000.0
        for i, layer in enumerate(self.encoder.layer):
            x = layer(x, additive, adapters[i] if adapters is not None else None)
        return x

    @classmethod
    def from_pretrained(cls, path: str | Path) -> BertEncoder:
        """Load a local HF BERT directory (``config.json`` + ``model.safetensors`` or
        ``pytorch_model.bin``)."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg = BertConfig.from_dir(path)
        model = cls(cfg)
        st = path / "model.safetensors"
        if st.is_file():
            state = load_file(str(st))
        elif (path / "pytorch_model.bin").is_file():
            state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        else:
            raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin")
        state = {k.removeprefix("bert."): v for k, v in state.items()}
        wanted = model.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise ValueError(f"{path}: checkpoint lacks {len(missing)} encoder weights, e.g. {missing[:3]}")
        model.load_state_dict({k: state[k] for k in wanted}, strict=True)
        return model
