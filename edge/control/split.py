"""Weighted traffic split between two loaded versions on one node (the second gray mode).

:class:`SplitModelManager` is the serving ``ModelManager`` plus one extra loaded, warmed model
slot. While a split is set, an inference call that names no version goes to the active model or
to the extra one at random by weight; a call naming a version gets that version. The batcher
already keeps texts of different slots in separate forward passes, the result cache keys on the
version, and metrics carry the version label, so nothing else changes. A hot swap (``load``)
ends the split.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from contracts.errors import BadRequest, NotFound
from edge.serving.loaded_model import LoadedModel, SlotState
from edge.serving.model_manager import LoadRecord, ModelManager


class SplitModelManager(ModelManager):
    def __init__(self, *args: Any, rng: random.Random | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secondary: LoadedModel | None = None
        self.weights: dict[str, float] = {}
        self._rng = rng or random.Random()

    def resolve(self, name: str | None = None, version: str | None = None) -> LoadedModel:
        sec = self.secondary
        if sec is not None and self.active is not None:
            if version and version == sec.version and (name is None or name == sec.name):
                return sec
            if not version and (name is None or name == self.active.name):
                w_sec = self.weights.get(sec.version, 0.0)
                if self._rng.random() < w_sec:
                    return sec
        return super().resolve(name, version)

    async def load_secondary(self, source: Path, adapter_set: str | None = None) -> LoadedModel:
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

    def _retire(self, model: LoadedModel) -> None:
        model.state = SlotState.DRAINING
        self.draining.append(model)
        task = asyncio.get_running_loop().create_task(self._drain(model))
        self._drain_tasks.add(task)
        task.add_done_callback(self._drain_tasks.discard)

    def _activate(self, model: LoadedModel) -> None:
        sec = self.secondary
        if sec is not None:  # a swap ends the split; the extra slot drains
            self.secondary, self.weights = None, {}
            if sec is not model:
                self._retire(sec)
        super()._activate(model)

    def promote_secondary(self) -> None:
        """Make the extra slot the active one (the old active drains)."""
        sec = self.secondary
        if sec is None:
            raise NotFound("no second version is loaded")
        self.secondary, self.weights = None, {}
        super()._activate(sec)

    async def close(self) -> None:
        if self.secondary is not None:
            self.secondary.close()
            self.secondary = None
        await super().close()

    def status(self) -> dict[str, Any]:
        out = super().status()
        sec = self.secondary
        out["split"] = (
            None if sec is None else {"secondary": {"name": sec.name, "version": sec.version}, "weights": self.weights}
        )
        return out
