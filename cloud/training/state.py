"""Resumable training state: ``<out_dir>/train_state.pt``, written atomically after each epoch."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "train_state.pt"


def state_path(out_dir: Path) -> Path:
    return Path(out_dir) / STATE_FILE


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save_state(out_dir: Path, state: dict[str, Any]) -> Path:
    path = state_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_state(out_dir: Path) -> dict[str, Any] | None:
    path = state_path(out_dir)
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state
