"""Tokenisation shared by trainer and edge: the ``tokenizers`` library on a ``tokenizer.json``.

Both sides must produce identical ids for the same text, so both use this wrapper (the edge
has no ``transformers``). Returns int64 numpy arrays padded to the batch's longest sequence.

Out-of-vocabulary characters (``oov_char_fallback``, on by default): English BERT vocabularies
such as all-MiniLM-L6-v2 hold only ~240 CJK characters, so most Chinese text would become a
row of identical ``[UNK]``. A ``[UNK]`` that covers exactly one character is replaced by
``table[ord(char) % len(table)]``, where ``table`` is the ids of the vocabulary's whole-word
ASCII alphabetic tokens of 4+ letters, in id order (20,362 for BERT-uncased; their pretrained
embeddings are nearly orthogonal, unlike the near-identical ``[unusedN]`` rows). Distinct
characters thus get distinct, distinguishable ids that the adapters learn to read; trainer and
edge compute the same ids because both call this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tokenizers import Tokenizer

from contracts.errors import BundleError


@dataclass(frozen=True)
class TokenizerSettings:
    max_length: int = 128
    lowercase: bool = True
    oov_char_fallback: bool = True


class TokenizerSpecLike(Protocol):
    """What a bundle manifest's ``tokenizer`` section says (``contracts.manifest.TokenizerSpec``)."""

    max_length: int
    lowercase: bool
    oov_char_fallback: bool


def tokenizer_for(path: Path, spec: TokenizerSpecLike) -> TextTokenizer:
    """The tokenizer exactly as a manifest's ``tokenizer`` section configures it (the same ids
    as at training): the one place bundles, exports and hop-scorer training build it."""
    return TextTokenizer(
        path,
        TokenizerSettings(
            max_length=spec.max_length, lowercase=spec.lowercase, oov_char_fallback=spec.oov_char_fallback
        ),
    )


class TextTokenizer:
    def __init__(self, tokenizer_json: Path, settings: TokenizerSettings | None = None) -> None:
        path = Path(tokenizer_json)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer.json not found")
        self.settings = settings or TokenizerSettings()
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises a bare Exception on bad files
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise BundleError(f"{path}: not a valid tokenizer.json ({detail})") from None
        self._tok.no_padding()
        self.pad_id = 0
        self.unk_id = self._tok.token_to_id("[UNK]")
        # ids that frame every request ([CLS], [SEP]) or fill it (padding): not words of it
        framing = (self._tok.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
        self.special_ids = sorted({self.pad_id, *(i for i in framing if i is not None)})
        vocab = self._tok.get_vocab()
        table = sorted(i for t, i in vocab.items() if len(t) >= 4 and t.isascii() and t.isalpha())
        self.fallback_ids = table if self.settings.oov_char_fallback else []
        if self.fallback_ids:
            self._tok.no_truncation()  # truncate after the fallback (it keeps the token count)
        else:
            self._tok.enable_truncation(max_length=self.settings.max_length)

    def _fallback(self, text: str, ids: list[int], offsets: list[tuple[int, int]]) -> list[int]:
        n = len(self.fallback_ids)
        out = [
            self.fallback_ids[ord(text[s]) % n] if tid == self.unk_id and e - s == 1 else tid
            for tid, (s, e) in zip(ids, offsets, strict=True)
        ]
        limit = self.settings.max_length
        if len(out) > limit:
            out = [*out[: limit - 1], out[-1]]  # keep [SEP]
        return out

    def encode_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text (with [CLS]/[SEP], truncated), unpadded."""
        texts = list(texts)
        encs = self._tok.encode_batch(texts)
        if not self.fallback_ids:
            return [e.ids for e in encs]
        return [self._fallback(t, e.ids, e.offsets) for t, e in zip(texts, encs, strict=True)]

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
