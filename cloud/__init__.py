"""Cloud side: trainer, model registry, fleet, rollouts, tool service (PyTorch lives here)."""
