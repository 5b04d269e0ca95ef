"""The full-precision model as the queue's judge: embeddings for the near-duplicate merge and its
calibrated top route as a suggested label (:class:`cloud.loop.queue.Triaged`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cloud.loop.queue import Triaged
from cloud.model.checkpoint import checkpoint_tokenizer, load_checkpoint
from contracts.tokenizer import TextTokenizer


class ModelTriage:
    def __init__(self, checkpoint_dir: Path, *, batch_size: int = 64) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.model, meta = load_checkpoint(self.checkpoint_dir)
        self.set_name = next(iter(meta.adapter_sets))
        info = meta.adapter_sets[self.set_name]
        self.routes, self.temperature = list(info.routes), float(info.temperature) or 1.0
        self.tokenizer = checkpoint_tokenizer(meta)
        self.batch_size = batch_size

    @torch.inference_mode()
    def __call__(self, texts: list[str]) -> list[Triaged]:
        out: list[Triaged] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            ids, mask = TextTokenizer.pad(self.tokenizer.encode_ids(chunk))
            res = self.model(torch.from_numpy(ids), torch.from_numpy(mask), self.set_name)
            probs = torch.softmax(res.route_logits / self.temperature, dim=-1).numpy()
            emb = res.embedding.numpy().astype(np.float32)
            for i in range(len(chunk)):
                k = int(probs[i].argmax())
                out.append(Triaged(emb[i], self.routes[k], float(probs[i, k])))
        return out
