"""Encoder + named adapter sets + heads: the model the trainer trains and the exporter exports."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from cloud.model.adapters import AdapterSet
from cloud.model.encoder import BertConfig, BertEncoder, mean_pool
from cloud.model.route_gate import BASE_VIEWS, RouteGate, TokenBatch, base_side, gated_logits


@dataclass
class ModelOutput:
    embedding: torch.Tensor  # [batch, hidden], L2-normalised mean pooling
    route_logits: torch.Tensor  # [batch, num_routes]
    pooled: torch.Tensor  # [batch, hidden], mean pooling before normalisation


class AutoGLMModel(nn.Module):
    """The frozen base encoder with any number of named :class:`AdapterSet` s.

    Only adapter and head parameters require grad (:meth:`freeze_base`). ``active`` selects the
    adapter set used by :meth:`forward` when none is given.
    """

    def __init__(self, encoder: BertEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.adapter_sets = nn.ModuleDict()
        self.active: str | None = None
        # a gated route per adapter set (its router head's last output is inert; the gate decides):
        # set by the checkpoint loader from ``training.new_route.gate``, applied by :meth:`forward`
        self.route_gates: dict[str, RouteGate] = {}
        self.freeze_base()

    @property
    def config(self) -> BertConfig:
        return self.encoder.config

    @classmethod
    def from_pretrained(cls, base_dir: str | Path) -> AutoGLMModel:
        return cls(BertEncoder.from_pretrained(base_dir))

    def freeze_base(self) -> None:
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def add_adapter_set(self, name: str, routes: list[str], bottleneck: int = 64) -> AdapterSet:
        if name in self.adapter_sets:
            raise ValueError(f"adapter set {name!r} already exists")
        cfg = self.config
        aset = AdapterSet(name, cfg.hidden_size, cfg.num_hidden_layers, routes, bottleneck)
        self.adapter_sets[name] = aset
        if self.active is None:
            self.active = name
        return aset

    def adapter_set(self, name: str | None = None) -> AdapterSet:
        key = name or self.active
        if key is None or key not in self.adapter_sets:
            raise KeyError(f"no adapter set {key!r}; have {list(self.adapter_sets)}")
        aset = self.adapter_sets[key]
        assert isinstance(aset, AdapterSet)
        return aset

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, adapter_set: str | None = None
    ) -> torch.Tensor:
        adapters = self.adapter_set(adapter_set).adapters if (adapter_set or self.active) else None
        return self.encoder(input_ids, attention_mask, adapters)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, adapter_set: str | None = None
    ) -> ModelOutput:
        aset = self.adapter_set(adapter_set)
        hidden = self.encoder(input_ids, attention_mask, aset.adapters)
        pooled = mean_pool(hidden, attention_mask)
        embedding = F.normalize(pooled, p=2, dim=-1)
        logits = aset.heads["router"](pooled)
        gate = self.route_gates.get(aset.name)
        if gate is not None:
            base = None
            if BASE_VIEWS[gate.feature]:  # the adapter-free encoder's views: a second pass
                table = self.encoder.embeddings.word_embeddings.weight
                hidden_base = self.encoder(input_ids, attention_mask, None)
                base = base_side(gate.feature, hidden_base, input_ids, attention_mask, table)
            tokens = (
                TokenBatch(input_ids, attention_mask, self.config.vocab_size) if gate.token_weights else None
            )
            logits = gated_logits(gate, logits, embedding, base, tokens)
        return ModelOutput(embedding=embedding, route_logits=logits, pooled=pooled)


class ExportWrapper(nn.Module):
    """``(input_ids, attention_mask) -> (embedding, route_logits)`` for one adapter set (ONNX export)."""

    def __init__(self, model: AutoGLMModel, adapter_set: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.adapter_set = adapter_set or model.active

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids, attention_mask, self.adapter_set)
        return out.embedding, out.route_logits
