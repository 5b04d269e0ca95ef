"""Plug-and-play bottleneck adapters.

Position: one adapter per transformer layer, at the FFN output — after ``output.dense`` and
dropout, before the residual add and ``output.LayerNorm`` (Houlsby's second / Pfeiffer's
position). ``adapter(h) = h + up(relu(down(h)))`` with ``up`` zero-initialised, so a fresh
adapter is the identity and leaves the encoder's output unchanged.

Stable parameter names inside one adapter set (the export pipeline and the edge bind by them):

- ``adapters.{i}.down.weight`` ``[bottleneck, hidden]``, ``adapters.{i}.down.bias`` ``[bottleneck]``
- ``adapters.{i}.up.weight`` ``[hidden, bottleneck]``, ``adapters.{i}.up.bias`` ``[hidden]``
- ``heads.router.dense.weight``/``.bias``, ``heads.router.out.weight``/``.bias``

In the full model they are prefixed by ``adapter_sets.{set_name}.``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

ADAPTER_SET_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden_size: int, bottleneck: int = 64) -> None:
        super().__init__()
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(torch.relu(self.down(h)))


class RouterHead(nn.Module):
    """Route classifier on the mean-pooled hidden state."""

    def __init__(self, hidden_size: int, num_routes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_routes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(torch.tanh(self.dense(pooled))))


class AdapterSet(nn.Module):
    """One named skill: adapters for every layer plus its task heads and route labels."""

    def __init__(
        self,
        name: str,
        hidden_size: int,
        num_layers: int,
        routes: list[str],
        bottleneck: int = 64,
    ) -> None:
        super().__init__()
        if not ADAPTER_SET_NAME_RE.match(name):
            raise ValueError(f"adapter set name {name!r} must match {ADAPTER_SET_NAME_RE.pattern}")
        if len(routes) < 2 or len(set(routes)) != len(routes):
            raise ValueError(f"adapter set {name!r}: need >= 2 distinct routes, got {routes}")
        self.name = name
        self.routes = list(routes)
        self.bottleneck = bottleneck
        self.adapters = nn.ModuleList(BottleneckAdapter(hidden_size, bottleneck) for _ in range(num_layers))
        self.heads = nn.ModuleDict({"router": RouterHead(hidden_size, len(routes))})
