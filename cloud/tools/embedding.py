"""Text embeddings for the cloud's doc_search: the base encoder (PyTorch), mean pooled.

Loaded lazily on first use, so a controller that never searches documents never loads torch.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np


class BaseEncoderEmbedder:
    def __init__(self, base_dir: Path | None = None, max_length: int = 128) -> None:
        self.base_dir = base_dir
        self.max_length = max_length
        self._lock = threading.Lock()
        self._model: Any = None
        self._tok: Any = None

    def _load(self) -> None:
        from cloud.model.base import default_base_path
        from cloud.model.encoder import BertEncoder
        from contracts.tokenizer import TextTokenizer

        base = self.base_dir or default_base_path()
        self._tok = TextTokenizer(base / "tokenizer.json")
        model = BertEncoder.from_pretrained(base)
        model.eval()
        self._model = model

    def __call__(self, texts: list[str]) -> np.ndarray:
        import torch

        from cloud.model.encoder import mean_pool

        with self._lock:
            if self._model is None:
                self._load()
        ids, mask = self._tok(texts)
        with torch.inference_mode():
            t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
            hidden = self._model(t_ids, t_mask, None)
            pooled = mean_pool(hidden, t_mask)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return np.asarray(pooled.numpy(), dtype=np.float32)
