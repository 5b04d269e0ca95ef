"""``InferenceService``: the one facade HTTP handlers, the reasoning agent and the control
plane call; nobody reaches past it into the :class:`ModelManager`.

Models: ``resolve(name, version)`` picks the slot that serves a request (404 / 503; during a
traffic split an unpinned request gets either version by weight), ``active``, ``status()``,
``load`` / ``start_load`` (hot swap), ``load_secondary`` / ``set_split`` / ``clear_split``.

``await service.infer(texts, model=resolved, priority=, deadline_s=)`` returns one
:class:`InferenceResult` per text: the L2-normalised embedding, route logits, the chosen route
(index and label), probabilities calibrated with the bundle's temperature, the route labels of
the model that computed it, its name, version and adapter set, and whether it came from the
result cache. The caller resolves the model once (``model=None``: resolve an unpinned one now)
and everything after uses that slot.

Flow: normalise texts → cache look-up → queue the misses in the dynamic batcher (429 when full)
→ await → fill the cache. The model slot is held (in-flight count) until the call returns, so a
swap never pulls a model from under a request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import AutoGLMError, BadRequest, GatewayTimeout
from contracts.logging import get_logger
from edge.serving.batcher import DynamicBatcher
from edge.serving.loaded_model import LoadedModel
from edge.serving.metrics import ServingMetrics
from edge.serving.model_manager import LoadRecord, ModelManager
from edge.serving.result_cache import ResultCache
from edge.serving.text_batching import normalise_text
from edge.settings import ServeSettings

log = get_logger("autoglm.edge.service")

MAX_TEXT_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class InferenceResult:
    embedding: np.ndarray  # float32 [hidden], L2-normalised
    route_logits: np.ndarray  # float32 [routes]
    route_index: int
    route: str
    probabilities: np.ndarray  # float32 [routes], softmax(logits / temperature)
    routes: tuple[str, ...]  # the computing model's route labels (order of the logits)
    model_name: str
    model_version: str
    adapter_set: str
    cached: bool

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.route_index])


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float32) / np.float32(max(temperature, 1e-6))
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out.astype(np.float32, copy=False)


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, AutoGLMError):
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"


class InferenceService:
    def __init__(
        self,
        manager: ModelManager,
        batcher: DynamicBatcher,
        cache: ResultCache,
        metrics: ServingMetrics,
        *,
        default_deadline_s: float | None = None,
    ) -> None:
        self._manager = manager
        self.batcher = batcher
        self.cache = cache
        self.metrics = metrics
        self.default_deadline_s = default_deadline_s
        self._metric_children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        manager.on_swap(self._on_swap)
        manager.on_load_result(lambda result: metrics.swaps.labels(result).inc())

    @classmethod
    def from_settings(
        cls,
        settings: ServeSettings,
        loader: object | None = None,
        *,
        loader_factory: Callable[[Callable[[], Path | None]], Any] | None = None,
    ) -> InferenceService:
        """Wire the parts from settings. ``loader`` defaults to the ONNX Runtime bundle loader;
        ``loader_factory(served_bundle)`` builds one that needs the served bundle (an adapter-only
        update's parent)."""
        from edge.serving.bundle_loader import BundleModelLoader

        metrics = ServingMetrics(settings.node_id)

        def served_bundle() -> Path | None:  # an adapter-only update's parent
            active = manager.active
            return active.source if active is not None else None

        if callable(loader):
            chosen: Any = loader
        elif loader_factory is not None:
            chosen = loader_factory(served_bundle)
        else:
            chosen = BundleModelLoader(settings, parent_of=served_bundle)
        manager = ModelManager(
            chosen,
            warmup_batches=settings.serve_warmup_batches,
            max_batch_size=settings.serve_max_batch_size,
            drain_timeout_s=settings.serve_drain_timeout_s,
        )
        batcher = DynamicBatcher(
            max_batch_size=settings.serve_max_batch_size,
            max_queue_delay_s=settings.serve_max_queue_delay_ms / 1000.0,
            arrival_gap_s=settings.serve_arrival_gap_ms / 1000.0,
            capacity=settings.serve_queue_capacity,
            priority_levels=settings.serve_priority_levels,
            metrics=metrics,
        )
        default_deadline = settings.serve_default_deadline_ms
        return cls(
            manager,
            batcher,
            ResultCache(settings.cache_max_bytes),
            metrics,
            default_deadline_s=default_deadline / 1000.0 if default_deadline else None,
        )

    # --- life cycle -----------------------------------------------------------------------------
    async def start(self, bundle: str | None = None, adapter_set: str | None = None) -> None:
        self.batcher.start()
        if bundle:
            await self._manager.load(Path(bundle), adapter_set)

    async def stop(self) -> None:
        await self.batcher.stop()
        await self._manager.close()

    @property
    def ready(self) -> bool:
        return self._manager.active is not None

    # --- models ---------------------------------------------------------------------------------
    def resolve(self, name: str | None = None, version: str | None = None) -> LoadedModel:
        """The slot that serves a request for ``name`` / ``version`` (404 unknown, 503 none ready)."""
        return self._manager.resolve(name, version)

    @property
    def active(self) -> LoadedModel | None:
        return self._manager.active

    @property
    def loading(self) -> bool:
        return self._manager.loading

    @property
    def last_load(self) -> LoadRecord | None:
        return self._manager.last_load

    @property
    def draining(self) -> list[LoadedModel]:
        return list(self._manager.draining)

    @property
    def split_weights(self) -> dict[str, float]:
        """Version -> share while a traffic split is set, else empty."""
        return dict(self._manager.weights)

    def status(self) -> dict[str, Any]:
        return self._manager.status()

    async def load(
        self, source: Path, adapter_set: str | None = None, *, expected_name: str | None = None
    ) -> LoadedModel:
        """Hot swap: load, warm and activate (the current model serves until the switch)."""
        return await self._manager.load(source, adapter_set, expected_name=expected_name)

    def start_load(self, source: Path, adapter_set: str | None = None) -> asyncio.Task[LoadedModel]:
        return self._manager.start_load(source, adapter_set)

    async def load_secondary(self, source: Path) -> LoadedModel:
        return await self._manager.load_secondary(source)

    def set_split(self, secondary: LoadedModel, weights: dict[str, float]) -> None:
        self._manager.set_split(secondary, weights)

    def clear_split(self) -> None:
        self._manager.clear_split()

    def on_swap(self, listener: Callable[[LoadedModel | None, LoadedModel], None]) -> None:
        """``listener(old, new)`` after every switch of the served model, on the event loop
        (``ModelManager.on_swap``; it must not block)."""
        self._manager.on_swap(listener)

    def _on_swap(self, old: LoadedModel | None, new: LoadedModel) -> None:
        self.cache.clear()
        self.metrics.cache_bytes.set(0)
        self.metrics.set_active(new.name, new.version, new.adapter_set, old.key if old else None)

    # --- inference ------------------------------------------------------------------------------
    async def infer(
        self,
        texts: list[str],
        *,
        model: LoadedModel | None = None,
        priority: int = 0,
        deadline_s: float | None = None,
    ) -> list[InferenceResult]:
        """One result per text, in order, all computed by ``model`` (from :meth:`resolve`; None:
        resolve an unpinned request now). ``deadline_s``: seconds from now (504 when exceeded).

        Await it on the event loop the service was started on (the HTTP server's; an in-process
        agent shares it). Cancelling the call drops its texts that have not started.
        """
        started = time.perf_counter()
        m = model if model is not None else self._manager.resolve()
        m.acquire()
        try:
            deadline = deadline_s if deadline_s is not None else self.default_deadline_s
            results = await self._infer(m, texts, priority, deadline)
        except BaseException as exc:
            self.metrics.requests.labels(m.name, m.version, _outcome(exc)).inc()
            raise
        finally:
            m.release()
        success, request_time, _ = self._children(m)
        success.inc()
        request_time.observe(time.perf_counter() - started)
        return results

    def _children(self, m: LoadedModel) -> tuple[Any, Any, Any]:
        """Prometheus children of the hot-path series for this model (labels() is not free)."""
        children = self._metric_children.get(m.key)
        if children is None:
            labels = (m.name, m.version)
            children = (
                self.metrics.requests.labels(*labels, "success"),
                self.metrics.request_time.labels(*labels),
                self.metrics.texts.labels(*labels),
            )
            self._metric_children[m.key] = children
        return children

    def _validate(self, texts: list[str]) -> None:
        if not isinstance(texts, list | tuple) or not texts:
            raise BadRequest("texts must be a non-empty list of strings")
        if len(texts) > self.batcher.capacity:
            raise BadRequest(f"{len(texts)} texts in one request; at most {self.batcher.capacity}")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BadRequest(f"text {i} is {type(t).__name__}, not a string")
            if len(t) > MAX_TEXT_CHARS:
                raise BadRequest(f"text {i} has {len(t)} characters; at most {MAX_TEXT_CHARS}")

    async def _infer(
        self, m: LoadedModel, texts: list[str], priority: int, deadline_s: float | None
    ) -> list[InferenceResult]:
        self._validate(texts)
        norm = [normalise_text(t, m.lowercase) for t in texts]
        rows: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(norm)
        cached = [False] * len(norm)
        cache = self.cache
        todo: dict[str, list[int]] = {}
        for i, t in enumerate(norm):
            hit = cache.get((m.name, m.version, m.adapter_set, t)) if cache.enabled else None
            if hit is not None:
                rows[i] = hit
                cached[i] = True
            else:
                todo.setdefault(t, []).append(i)
        n_hits = len(norm) - sum(len(v) for v in todo.values())
        if cache.enabled:
            if n_hits:
                self.metrics.cache_hits.labels(m.name, m.version).inc(n_hits)
            if len(norm) - n_hits:
                self.metrics.cache_misses.labels(m.name, m.version).inc(len(norm) - n_hits)
        if todo:
            pending = list(todo)
            deadline = time.monotonic() + deadline_s if deadline_s is not None else None
            futures = self.batcher.submit(m, pending, priority=priority, deadline=deadline)
            try:
                if deadline_s is None and len(futures) == 1:
                    computed = [await futures[0]]
                elif deadline_s is None:
                    computed = await asyncio.gather(*futures)
                else:
                    computed = await asyncio.wait_for(asyncio.gather(*futures), max(deadline_s, 0.0) + 1.0)
            except TimeoutError as exc:
                raise GatewayTimeout(f"no result within the deadline of {deadline_s:.3f}s") from exc
            except BaseException:
                for f in futures:  # cancelled or failed: drop the rest from the queue too
                    f.cancel()
                raise
            store = cache.enabled and self._manager.active is m
            for text, row in zip(pending, computed, strict=True):
                for i in todo[text]:
                    rows[i] = row
                if store:
                    cache.put((m.name, m.version, m.adapter_set, text), row[0], row[1])
            if store:
                self.metrics.cache_bytes.set(cache.used_bytes)
                self.metrics.cache_compression_ratio.set(cache.stats.compression_ratio)
        self._children(m)[2].inc(len(norm))
        return self._results(m, rows, cached)

    @staticmethod
    def _results(
        m: LoadedModel, rows: list[tuple[np.ndarray, np.ndarray] | None], cached: list[bool]
    ) -> list[InferenceResult]:
        routes = tuple(m.routes)
        if len(rows) == 1 and rows[0] is not None:
            logits = rows[0][1].reshape(1, -1)
        else:
            logits = np.stack([r[1] for r in rows if r is not None])
        probs = calibrated_probabilities(logits, m.temperature)
        idx = logits.argmax(axis=-1)
        out = []
        for i, r in enumerate(rows):
            assert r is not None
            k = int(idx[i])
            out.append(
                InferenceResult(
                    embedding=r[0],
                    route_logits=logits[i],
                    route_index=k,
                    route=m.routes[k] if k < len(m.routes) else str(k),
                    probabilities=probs[i],
                    routes=routes,
                    model_name=m.name,
                    model_version=m.version,
                    adapter_set=m.adapter_set,
                    cached=cached[i],
                )
            )
        return out
