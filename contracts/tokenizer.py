"""Tokenisation shared by trainer and edge: the ``tokenizers`` library on a ``tokenizer.json``.

Both sides must produce identical ids for the same text, so both use this wrapper (the edge
has no ``transformers``). Returns int64 numpy arrays padded to the batch's longest sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class TokenizerSettings:
    max_length: int = 128
    lowercase: bool = True


class TextTokenizer:
    def __init__(self, tokenizer_json: Path, settings: TokenizerSettings | None = None) -> None:
        path = Path(tokenizer_json)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer.json not found")
        self.settings = settings or TokenizerSettings()
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=self.settings.max_length)
        self.pad_id = 0

    def encode_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text (with [CLS]/[SEP], truncated), unpadded."""
        return [e.ids for e in self._tok.encode_batch(list(texts))]

    @staticmethod
    def pad(ids: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Pad to the longest sequence: ``(input_ids, attention_mask)`` both int64 ``[n, L]``."""
        n = len(ids)
        length = max((len(x) for x in ids), default=1)
        input_ids = np.full((n, length), pad_id, dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return input_ids, mask

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.pad(self.encode_ids(texts), self.pad_id)
