"""One loaded model version: engine + tokenizer + labels, with its slot state and in-flight count.

``forward`` is what the batcher runs in its worker thread: tokenise the whole batch in one
call, split it into groups of similar token length (so one long text does not pad thirty-one
short ones),
run the engine per bucket and scatter the rows back into input order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.runtime.engine import Engine
from edge.serving.text_batching import length_groups


class SlotState(StrEnum):
    """Life cycle of a model slot in the :class:`~edge.serving.model_manager.ModelManager`."""

    LOADING = "loading"  # verifying the bundle, creating the session
    WARMING = "warming"  # warm-up forward passes
    READY = "ready"  # the active model: new requests go here
    DRAINING = "draining"  # replaced; finishing requests admitted before the swap
    RETIRED = "retired"  # released
    FAILED = "failed"  # verification or loading failed; never served


class TokenizerLike(Protocol):
    def encode_ids(self, texts: list[str]) -> list[list[int]]: ...

    @staticmethod
    def pad(ids: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class LoadedModel:
    name: str
    version: str
    adapter_set: str
    routes: list[str]
    temperature: float
    engine: Engine
    tokenizer: TokenizerLike
    lowercase: bool = True
    bucket_overhead_tokens: int = 32
    embedding_dim: int = 0
    source: Path | None = None
    parent: Path | None = None  # the full bundle an adapter-only update was opened with
    providers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # manifest facts for metadata
    close_fn: Callable[[], None] | None = None
    state: SlotState = SlotState.LOADING
    loaded_at: float = field(default_factory=time.time)
    _inflight: int = 0
    _idle: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.name, self.version, self.adapter_set)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}/{self.adapter_set}"

    # --- in-flight accounting (a draining model is released when this reaches zero) -----------
    # acquire/release run on the event loop thread only; the drain thread only waits on _idle.
    def acquire(self) -> None:
        self._inflight += 1
        if self._inflight == 1:
            self._idle.clear()

    def release(self) -> None:
        self._inflight -= 1
        if self._inflight <= 0:
            self._inflight = 0
            self._idle.set()

    @property
    def inflight(self) -> int:
        return self._inflight

    def wait_idle(self, timeout: float) -> bool:
        return self._idle.wait(timeout)

    def close(self) -> None:
        self.state = SlotState.RETIRED
        if self.close_fn is not None:
            self.close_fn()
            self.close_fn = None

    # --- compute ----------------------------------------------------------------------------------
    def forward(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(embedding [n, H] float32, route_logits [n, R] float32)`` in input order."""
        ids = self.tokenizer.encode_ids(texts)
        groups = length_groups([len(x) for x in ids], self.bucket_overhead_tokens)
        if len(groups) == 1:
            emb, logits = self.engine(*self.tokenizer.pad(ids))
            return np.asarray(emb, dtype=np.float32), np.asarray(logits, dtype=np.float32)
        emb_out: np.ndarray | None = None
        logit_out: np.ndarray | None = None
        for idx in groups:
            e, lg = self.engine(*self.tokenizer.pad([ids[i] for i in idx]))
            if emb_out is None or logit_out is None:
                emb_out = np.empty((len(ids), e.shape[1]), dtype=np.float32)
                logit_out = np.empty((len(ids), lg.shape[1]), dtype=np.float32)
            emb_out[idx] = e
            logit_out[idx] = lg
        assert emb_out is not None and logit_out is not None
        return emb_out, logit_out

    def warm_up(self, batches: int, max_batch: int) -> None:
        """Run the engine on a few shapes so first requests do not pay for allocation."""
        samples = ["warm up", "a slightly longer warm-up sentence for the encoder to run on"]
        for i in range(batches):
            n = 1 if i == 0 else min(max_batch, 8)
            self.forward([samples[j % 2] for j in range(n)])
