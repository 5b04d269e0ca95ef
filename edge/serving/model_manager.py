"""Model slots, hot swap and the weighted traffic split.

``load`` verifies and loads a bundle (or another adapter set of one) in a worker thread while
the current model keeps serving, warms it, then switches ``active`` in one assignment on the
event loop. The previous slot goes to ``DRAINING`` (``_retire``): requests it admitted finish on
it, and it is released when its in-flight count reaches zero (or after ``drain_timeout_s``). A
bundle that fails verification or loading never becomes active; the failure is recorded with
its reason and raised as :class:`BundleError`.

Traffic split (the second gray mode): one extra loaded, warmed slot (``secondary``, from
``load_secondary``) and ``set_split`` weights. While a split is set, a call that names no
version goes to the active model or to the secondary one at random by weight; a call naming a
version gets that version. The batcher keeps texts of different slots in separate forward
passes, the result cache keys on the version and metrics carry the version label, so nothing
else changes. A hot swap (``load``) ends the split.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import AutoGLMError, BadRequest, BundleError, Conflict, NotFound, Unavailable
from contracts.logging import get_logger
from edge.serving.loaded_model import LoadedModel, SlotState

log = get_logger("autoglm.edge.model_manager")

ModelLoader = Callable[[Path, "str | None"], LoadedModel]
SwapListener = Callable[["LoadedModel | None", LoadedModel], None]


@dataclass
class LoadRecord:
    source: str
    adapter_set: str | None
    state: SlotState
    started_at: float
    finished_at: float | None = None
    error: str | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "adapter_set": self.adapter_set,
            "state": self.state.value,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "model": self.model,
        }


class ModelManager:
    def __init__(
        self,
        loader: ModelLoader,
        *,
        warmup_batches: int = 2,
        max_batch_size: int = 32,
        drain_timeout_s: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._loader = loader
        self.warmup_batches = warmup_batches
        self.max_batch_size = max_batch_size
        self.drain_timeout_s = drain_timeout_s
        self.active: LoadedModel | None = None
        self.draining: list[LoadedModel] = []
        self.last_load: LoadRecord | None = None
        self._loading = False
        self._listeners: list[SwapListener] = []
        self._result_listeners: list[Callable[[str], None]] = []
        self._drain_tasks: set[asyncio.Task[None]] = set()
        self.secondary: LoadedModel | None = None  # the traffic split's second slot
        self.weights: dict[str, float] = {}  # version -> share of unpinned requests
        self._rng = rng or random.Random()

    def on_swap(self, listener: SwapListener) -> None:
        self._listeners.append(listener)

    def on_load_result(self, listener: Callable[[str], None]) -> None:
        """Called with ``"success"`` or ``"failed"`` after every load attempt."""
        self._result_listeners.append(listener)

    def _report(self, result: str) -> None:
        for listener in self._result_listeners:
            listener(result)

    @property
    def loading(self) -> bool:
        return self._loading

    # --- lookup ---------------------------------------------------------------------------------
    def resolve(self, name: str | None = None, version: str | None = None) -> LoadedModel:
        sec = self.secondary
        if sec is not None and self.active is not None:
            if version and version == sec.version and (name is None or name == sec.name):
                return sec
            unpinned = not version and (name is None or name == self.active.name)
            if unpinned and self._rng.random() < self.weights.get(sec.version, 0.0):
                return sec
        model = self.active
        if model is None:
            last = self.last_load
            if self._loading and last is not None:
                raise Unavailable(f"no model is ready yet ({last.state.value} {last.source})")
            why = f" (last load failed: {last.error})" if last and last.error else ""
            raise Unavailable(f"no model is ready{why}")
        if name is not None and name != model.name:
            raise NotFound(f"unknown model {name!r}; this node serves {model.name!r}")
        if version is not None and version != "" and version != model.version:
            raise NotFound(
                f"model {model.name!r} has no version {version!r}; serving version {model.version!r}"
            )
        return model

    # --- loading and swapping -------------------------------------------------------------------
    def _load_and_warm(self, source: Path, adapter_set: str | None, record: LoadRecord) -> LoadedModel:
        record.state = SlotState.LOADING
        model = self._loader(source, adapter_set)
        try:
            record.state = model.state = SlotState.WARMING
            record.model = model.label
            model.warm_up(self.warmup_batches, self.max_batch_size)
        except BaseException:
            model.close()
            raise
        return model

    async def load(
        self, source: Path, adapter_set: str | None = None, *, expected_name: str | None = None
    ) -> LoadedModel:
        """Load, warm and activate; the current model serves until the switch."""
        return await self.start_load(source, adapter_set, expected_name=expected_name)

    def start_load(
        self, source: Path, adapter_set: str | None = None, *, expected_name: str | None = None
    ) -> asyncio.Task[LoadedModel]:
        """Begin a load now (state visible at once) and return its task; raises Conflict if one runs."""
        if self._loading:
            raise Conflict("a model load is already in progress")
        self._loading = True
        record = LoadRecord(str(source), adapter_set, SlotState.LOADING, time.time())
        self.last_load = record
        return asyncio.get_running_loop().create_task(
            self._load(record, Path(source), adapter_set, expected_name)
        )

    async def _load(
        self, record: LoadRecord, source: Path, adapter_set: str | None, expected_name: str | None
    ) -> LoadedModel:
        try:
            try:
                model = await asyncio.to_thread(self._load_and_warm, source, adapter_set, record)
            except AutoGLMError as exc:
                raise self._failed(record, exc.message, exc) from exc
            except Exception as exc:
                raise self._failed(record, f"loading {source} failed: {exc}", exc) from exc
            if expected_name is not None and model.name != expected_name:
                model.close()
                raise self._failed(
                    record, f"bundle {source} holds model {model.name!r}, not {expected_name!r}", None
                )
            self._activate(model)
            record.state = SlotState.READY
            record.finished_at = time.time()
            self._report("success")
            return model
        finally:
            self._loading = False

    def _failed(self, record: LoadRecord, message: str, exc: Exception | None) -> AutoGLMError:
        record.state = SlotState.FAILED
        record.error = message
        self._report("failed")
        record.finished_at = time.time()
        current = self.active.label if self.active else "nothing"
        log.warning("model load failed, still serving %s: %s", current, message)
        if isinstance(exc, AutoGLMError) and not isinstance(exc, BundleError) and exc.status < 500:
            return exc
        return BundleError(message)

    def _activate(self, model: LoadedModel) -> None:
        sec = self.secondary
        if sec is not None:  # a swap ends the split; the extra slot drains
            self.secondary, self.weights = None, {}
            if sec is not model:
                self._retire(sec)
        old = self.active
        model.state = SlotState.READY
        self.active = model  # the switch: one assignment on the event loop thread
        for listener in self._listeners:
            listener(old, model)
        log.info("serving %s (was %s)", model.label, old.label if old else "nothing")
        if old is not None:
            self._retire(old)

    def _retire(self, model: LoadedModel) -> None:
        """Stop routing to ``model``; it is closed once its admitted requests finished."""
        model.state = SlotState.DRAINING
        self.draining.append(model)
        task = asyncio.get_running_loop().create_task(self._drain(model))
        self._drain_tasks.add(task)
        task.add_done_callback(self._drain_tasks.discard)

    # --- traffic split --------------------------------------------------------------------------
    async def load_secondary(self, source: Path, adapter_set: str | None = None) -> LoadedModel:
        """Load and warm a second slot (not routed to until ``set_split``)."""
        record = LoadRecord(str(source), adapter_set, SlotState.LOADING, time.time())
        model = await asyncio.to_thread(self._load_and_warm, Path(source), adapter_set, record)
        model.state = SlotState.READY
        return model

    def set_split(self, secondary: LoadedModel, weights: dict[str, float]) -> None:
        active = self.active
        if active is None:
            raise BadRequest("no model is active; a traffic split needs two loaded versions")
        if secondary.name != active.name:
            raise BadRequest(f"split between different models ({active.name!r}, {secondary.name!r})")
        if set(weights) != {active.version, secondary.version}:
            raise BadRequest(f"split weights {sorted(weights)} do not name the loaded versions")
        old = self.secondary
        total = sum(weights.values())
        self.weights = {v: w / total for v, w in weights.items()}
        self.secondary = secondary
        if old is not None and old is not secondary:
            self._retire(old)

    def clear_split(self) -> None:
        old, self.secondary, self.weights = self.secondary, None, {}
        if old is not None:
            self._retire(old)

    def promote_secondary(self) -> None:
        """Make the extra slot the active one (the old active drains)."""
        sec = self.secondary
        if sec is None:
            raise NotFound("no second version is loaded")
        self.secondary, self.weights = None, {}
        self._activate(sec)

    async def _drain(self, old: LoadedModel) -> None:
        finished = await asyncio.to_thread(old.wait_idle, self.drain_timeout_s)
        if not finished:
            log.warning(
                "%s still had %d requests after %.0fs; releasing it",
                old.label,
                old.inflight,
                self.drain_timeout_s,
            )
        old.close()
        if old in self.draining:
            self.draining.remove(old)

    async def close(self) -> None:
        if self.secondary is not None:
            self.secondary.close()
            self.secondary = None
        for task in list(self._drain_tasks):
            task.cancel()
        for m in [*self.draining, *([self.active] if self.active else [])]:
            m.close()
        self.draining.clear()
        self.active = None

    def status(self) -> dict[str, Any]:
        a = self.active
        return {
            "active": None
            if a is None
            else {
                "name": a.name,
                "version": a.version,
                "adapter_set": a.adapter_set,
                "state": a.state.value,
                "source": str(a.source) if a.source else None,
                "providers": a.providers,
                "inflight": a.inflight,
            },
            "draining": [
                {"name": m.name, "version": m.version, "inflight": m.inflight} for m in self.draining
            ],
            "loading": self._loading,
            "last_load": self.last_load.to_dict() if self.last_load else None,
            "split": None
            if self.secondary is None
            else {
                "secondary": {"name": self.secondary.name, "version": self.secondary.version},
                "weights": self.weights,
            },
        }
