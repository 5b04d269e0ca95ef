"""Native TensorRT engines on the node: a cache keyed by what an engine holds, refit instead of rebuild.

An engine is valid only for one encoder graph, one set of adapter weights, one precision, one GPU
(name + compute capability) and one TensorRT version. :class:`EngineKey` is that tuple; the cache
stores a serialized engine per key under ``<model_cache_dir>/trt-native/<family>/<adapter>.plan``,
where the *family* is everything but the adapter set — engines of one family differ only in
weights TensorRT can refit (the exporter builds them refittable).

:func:`native_engine` gets the engine for a key, cheapest first:

1. **cache**: the key's own plan (a restart, or a set served before) — deserialize only;
2. **refit**: the newest plan of the same family (the engine the node served before an
   adapter-only update, or another set of the same bundle) deserialized and refitted with the set's
   weights (``trt.Refitter``; a few MB of weights instead of an engine build), then serialized into
   the cache under the new key — skipped when the bundle's own engine holds exactly this set;
3. **bundle** (no plan of the family yet, or the bundle's engine holds this set) or **rebuild**
   (the refit failed — logged with the reason): a fresh engine from the plan the bundle ships for
   this GPU (for an adapter-only update: its parent's), refitted when the set is not the one it was
   built with, and cached. The node has no TensorRT *build* of its own: the bundle's encoder graph
   is fused with ONNX Runtime contrib operators that TensorRT's ONNX parser does not take, and
   engines are built by the exporter from the unfused graph (``export.tensorrt_build``); a full
   build is what a refit avoids (``scripts/gpu_check.py`` times both).

When all of that fails the caller serves the model on the ONNX Runtime providers instead
(``edge.serving.bundle_loader``). No GPU here: ``tests/edge/test_trt_cache.py`` drives this code with
a fake ``tensorrt`` / ``cuda`` module and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from contracts.errors import BundleError
from contracts.logging import get_logger

log = get_logger("autoglm.edge.runtime.trt_cache")

CACHE_DIR = "trt-native"


def adapter_set_hash(tensors: dict[str, np.ndarray]) -> str:
    """sha256 over the set's tensors as the engine holds them (float32, sorted by name, with shapes):
    equal weights give equal keys whatever file or encoding they came from."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype=np.float32)
        h.update(name.encode() + b"\0" + json.dumps(list(arr.shape)).encode() + b"\0")
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """What one native engine is valid for."""

    graph_sha256: str  # the encoder graph (manifest graphs.encoder.sha256; an update's is its parent's)
    adapter_sha256: str  # adapter_set_hash of the weights in the engine
    precision: str
    gpu_name: str
    gpu_arch: str  # compute capability
    trt_version: str

    @property
    def family(self) -> str:
        """Everything but the adapter set: engines of one family refit into each other."""
        doc = {k: v for k, v in asdict(self).items() if k != "adapter_sha256"}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]

    @property
    def file_name(self) -> str:
        return f"{self.adapter_sha256[:32]}.plan"


class EngineCache:
    """Serialized engines by :class:`EngineKey` (written atomically, the key beside each plan)."""

    def __init__(self, model_cache_dir: Path) -> None:
        self.root = Path(model_cache_dir) / CACHE_DIR

    def path(self, key: EngineKey) -> Path:
        return self.root / key.family / key.file_name

    def get(self, key: EngineKey) -> Path | None:
        p = self.path(key)
        return p if p.is_file() else None

    def siblings(self, key: EngineKey) -> list[Path]:
        """Plans of the same family with other adapter sets, most recently used first."""
        d = self.root / key.family
        if not d.is_dir():
            return []
        plans = [p for p in d.glob("*.plan") if p.name != key.file_name]
        return sorted(plans, key=lambda p: p.stat().st_mtime, reverse=True)

    def put(self, key: EngineKey, data: bytes) -> Path:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        p.with_suffix(".json").write_text(json.dumps(asdict(key), indent=1), encoding="utf-8")
        return p

    def touch(self, path: Path) -> None:
        """Mark a plan used (the newest sibling is the refit source of the next update)."""
        with contextlib.suppress(OSError):
            os.utime(path)

    def drop(self, path: Path) -> None:
        for p in (path, path.with_suffix(".json")):
            with contextlib.suppress(OSError):
                p.unlink()


class Runtime(Protocol):
    """What :func:`native_engine` needs of an engine runtime (``TensorRTEngineRuntime``)."""

    def refit(self, tensors: dict[str, np.ndarray]) -> float: ...

    def serialize(self) -> bytes: ...

    def close(self) -> None: ...


@dataclass
class NativeEngine:
    runtime: Any
    source: (
        str  # "cache" | "refit" | "bundle" (first engine of its family) | "rebuild" (after a failed refit)
    )
    path: Path
    refit_s: float | None = None
    rebuild_s: float | None = None

    def info(self) -> dict[str, str]:
        """For ``LoadedModel.extra`` (model metadata)."""
        out = {"trt_engine_source": self.source, "trt_engine": str(self.path)}
        if self.refit_s is not None:
            out["trt_refit_s"] = f"{self.refit_s:.3f}"
        if self.rebuild_s is not None:
            out["trt_rebuild_s"] = f"{self.rebuild_s:.3f}"
        return out


def _close(runtime: Any) -> None:
    with contextlib.suppress(Exception):
        runtime.close()


def native_engine(
    cache: EngineCache,
    key: EngineKey,
    tensors: dict[str, np.ndarray],
    open_runtime: Callable[[Path], Runtime],
    shipped: tuple[Path, str] | None,
    label: str = "",
) -> NativeEngine:
    """The engine for ``key`` (module docstring: cache → refit → rebuild). ``tensors``: the adapter
    set's weights (``adapter_set_hash(tensors) == key.adapter_sha256``); ``shipped``: the bundle's
    engine for this GPU and the adapter hash it was built with; ``BundleError`` when nothing works."""
    own = cache.get(key)
    if own is not None:
        try:
            cached = open_runtime(own)
        except Exception as exc:  # a truncated / foreign plan: drop it and derive a new one
            log.warning("cached TensorRT engine %s cannot be loaded (%s); removing it", own, exc)
            cache.drop(own)
        else:
            cache.touch(own)
            return NativeEngine(cached, "cache", own)
    # the bundle's own engine already holds exactly this set: nothing to refit
    siblings = [] if shipped is not None and shipped[1] == key.adapter_sha256 else cache.siblings(key)
    why = "no cached engine of this graph, precision, GPU and TensorRT version"
    first = "bundle"  # no cached engine of the family: the bundle's plan is the start, not a fallback
    if siblings:
        source = siblings[0]
        runtime: Runtime | None = None
        try:
            runtime = open_runtime(source)
            refit_s = runtime.refit(tensors)
            path = cache.put(key, runtime.serialize())
            log.info(
                "TensorRT engine %s: refitted %s with the adapter set in %.3f s", label, source.name, refit_s
            )
            return NativeEngine(runtime, "refit", path, refit_s=refit_s)
        except Exception as exc:
            if runtime is not None:
                _close(runtime)
            why = f"refit of the cached engine {source} failed: {exc}"
            first = "rebuild"
            log.warning("TensorRT engine %s: %s; rebuilding from the bundle's engine", label, why)
    if shipped is None:
        raise BundleError(f"TensorRT engine {label}: {why}, and the bundle ships no engine for this GPU")
    plan, plan_adapter = shipped
    t0 = time.perf_counter()
    fresh: Runtime | None = None
    try:
        fresh = open_runtime(plan)
        fresh_refit_s = fresh.refit(tensors) if plan_adapter != key.adapter_sha256 else None
        path = cache.put(key, fresh.serialize())
    except Exception as exc:
        if fresh is not None:
            _close(fresh)
        raise BundleError(
            f"TensorRT engine {label}: rebuild from {plan} failed: {exc} (before: {why})"
        ) from exc
    rebuild_s = time.perf_counter() - t0
    log.info("TensorRT engine %s: %s from %s in %.3f s (%s)", label, first, plan.name, rebuild_s, why)
    return NativeEngine(fresh, first, path, refit_s=fresh_refit_s, rebuild_s=rebuild_s)
