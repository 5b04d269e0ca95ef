"""Temperature scaling: one scalar ``T`` so that ``softmax(logits / T)`` minimises validation NLL."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(F.cross_entropy(logits / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """Fit ``T`` (optimised as ``log T`` with L-BFGS), clamped to [0.05, 20]."""
    logits = logits.detach().double()
    labels = labels.detach().long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp().clamp(0.05, 20.0))
    # L-BFGS may fail on degenerate inputs (all correct with huge margins): never make NLL worse.
    return t if nll(logits, labels, t) <= nll(logits, labels, 1.0) else 1.0
