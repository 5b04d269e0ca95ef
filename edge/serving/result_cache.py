"""LRU result cache with LZ4-compressed values and a byte budget.

Key: ``(model name, model version, adapter set, normalised text)``. Value: the embedding and
route logits (float32, exact) of that text, LZ4-block compressed. Measured on all-MiniLM-L6-v2
outputs (``benchmarks/bench_serving.py``), LZ4 does not shrink float32 embeddings (ratio ≈ 0.99;
the documents' 3:1 does not hold for exact float vectors); byte-shuffling first (``shuffle=True``:
all first bytes, then all second bytes …) does not help either and costs ~10 µs, so it is off.
The budget counts compressed bytes plus a fixed per-entry overhead, so memory stays bounded.
The cache is used from the event loop only (no lock); a model swap calls :meth:`clear`.
"""

from __future__ import annotations

import struct
import sys
from collections import OrderedDict
from dataclasses import dataclass

import lz4.block
import numpy as np

CacheKey = tuple[str, str, str, str]
_HEADER = struct.Struct("<II")  # embedding length, logits length
ENTRY_OVERHEAD_BYTES = 200  # dict slot, key tuple, bytes object header (approximate)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    raw_bytes: int = 0  # uncompressed float bytes of entries currently held
    stored_bytes: int = 0  # compressed bytes of entries currently held

    @property
    def compression_ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 0.0


def _shuffle(raw: np.ndarray) -> bytes:
    return raw.view(np.uint8).reshape(-1, 4).T.tobytes()


def _unshuffle(buf: bytes, n_floats: int) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.uint8).reshape(4, n_floats).T.copy().view(np.float32).reshape(-1)


def encode_value(embedding: np.ndarray, logits: np.ndarray, shuffle: bool = False) -> bytes:
    emb = np.ascontiguousarray(embedding, dtype=np.float32).reshape(-1)
    lg = np.ascontiguousarray(logits, dtype=np.float32).reshape(-1)
    flat = np.concatenate([emb, lg])
    payload = _shuffle(flat) if shuffle else flat.tobytes()
    return _HEADER.pack(emb.size, lg.size) + lz4.block.compress(payload, store_size=True)


def decode_value(blob: bytes, shuffle: bool = False) -> tuple[np.ndarray, np.ndarray]:
    n_emb, n_lg = _HEADER.unpack_from(blob)
    raw = lz4.block.decompress(blob[_HEADER.size :])
    flat = _unshuffle(raw, n_emb + n_lg) if shuffle else np.frombuffer(raw, dtype=np.float32)
    return flat[:n_emb], flat[n_emb:]


class ResultCache:
    def __init__(self, max_bytes: int, *, shuffle: bool = False) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.shuffle = shuffle
        self._data: OrderedDict[CacheKey, bytes] = OrderedDict()
        self._bytes = 0
        self.stats = CacheStats()

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def used_bytes(self) -> int:
        return self._bytes

    @staticmethod
    def _cost(key: CacheKey, blob: bytes) -> int:
        return len(blob) + ENTRY_OVERHEAD_BYTES + sum(sys.getsizeof(k) for k in key)

    def get(self, key: CacheKey) -> tuple[np.ndarray, np.ndarray] | None:
        blob = self._data.get(key) if self.max_bytes else None
        if blob is None:
            self.stats.misses += 1
            return None
        self._data.move_to_end(key)
        self.stats.hits += 1
        return decode_value(blob, self.shuffle)

    def put(self, key: CacheKey, embedding: np.ndarray, logits: np.ndarray) -> None:
        if not self.max_bytes:
            return
        blob = encode_value(embedding, logits, self.shuffle)
        cost = self._cost(key, blob)
        if cost > self.max_bytes:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self._forget(key, old)
        self._data[key] = blob
        self._bytes += cost
        self.stats.raw_bytes += 4 * (embedding.size + logits.size)
        self.stats.stored_bytes += len(blob)
        while self._bytes > self.max_bytes and self._data:
            k, b = self._data.popitem(last=False)
            self._forget(k, b)
            self.stats.evictions += 1

    def _forget(self, key: CacheKey, blob: bytes) -> None:
        self._bytes -= self._cost(key, blob)
        n_emb, n_lg = _HEADER.unpack_from(blob)
        self.stats.raw_bytes -= 4 * (n_emb + n_lg)
        self.stats.stored_bytes -= len(blob)

    def clear(self) -> None:
        """Drop every entry (model swap). Hit/miss counters are kept."""
        self._data.clear()
        self._bytes = 0
        self.stats.raw_bytes = 0
        self.stats.stored_bytes = 0
