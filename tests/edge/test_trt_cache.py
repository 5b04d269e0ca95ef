"""Native TensorRT engine cache + refit on adapter-only updates (issue 17 item 2).

**This test mocks the GPU**: no GPU and no TensorRT can run on this machine, so a fake ``tensorrt``
module and a fake ``cuda.bindings.runtime`` (cuda-python) are injected into ``sys.modules``. The fake
engine is a JSON document naming, for each refittable weight, the hash of the weights it holds; its
``Refitter`` replaces them the way ``trt.Refitter`` does (``get_all_weights``, ``set_named_weights``,
``refit_cuda_engine``). Everything else is real: ``TensorRTEngineRuntime`` (deserialize, refit via
``refit_engine``, serialize), the engine cache on disk, the cache → refit → rebuild decision, and the
adapter tensors of really exported bundles (an adapter-only update included). What a real GPU must
show — refit parity and the refit vs build times — is ``scripts/gpu_check.py --real``'s TensorRT steps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.bundle import Bundle, open_bundle
from contracts.errors import BundleError
from contracts.manifest import TensorRTEngine
from edge.runtime.bundle_session import load_adapter_tensors
from edge.runtime.tensorrt_engine import TensorRTEngineRuntime, detect_gpu
from edge.runtime.trt_cache import EngineCache, EngineKey, adapter_set_hash, native_engine
from tests.edge.conftest import Bundles

FAKE_TRT_VERSION = "10.99.0-fake"


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype=np.float32).tobytes()).hexdigest()[:16]


class FakeEngine:
    """A 'serialized engine' = JSON: the digest of each refittable weight, and whether refit breaks."""

    def __init__(self, weights: dict[str, str], refit_fails: bool = False) -> None:
        self.weights = dict(weights)
        self.refit_fails = refit_fails
        self.num_io_tensors = 4
        self._io = [("input_ids", 0), ("attention_mask", 0), ("embedding", 1), ("route_logits", 1)]

    @classmethod
    def plan(cls, tensors: dict[str, np.ndarray], refit_fails: bool = False) -> bytes:
        doc = {"weights": {k: _digest(v) for k, v in tensors.items()}, "refit_fails": refit_fails}
        return json.dumps(doc).encode()

    def serialize(self) -> bytes:
        return json.dumps({"weights": self.weights, "refit_fails": self.refit_fails}).encode()

    def create_execution_context(self) -> object:
        return object()

    def get_tensor_name(self, i: int) -> str:
        return self._io[i][0]

    def get_tensor_mode(self, name: str) -> int:
        return dict(self._io)[name]


def fake_tensorrt() -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = FAKE_TRT_VERSION  # type: ignore[attr-defined]

    class Logger:
        WARNING = 2

        def __init__(self, level: int = 2) -> None:
            self.level = level

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
            try:
                doc = json.loads(data)
            except ValueError:
                return None  # what TensorRT answers for a plan it cannot read
            return FakeEngine(doc["weights"], doc.get("refit_fails", False))

    class Weights:
        def __init__(self, arr: np.ndarray) -> None:
            self.arr = arr

    class Refitter:
        def __init__(self, engine: FakeEngine, logger: Logger) -> None:
            self.engine = engine
            self.pending: dict[str, str] = {}

        def get_all_weights(self) -> list[str]:
            return list(self.engine.weights)

        def set_named_weights(self, name: str, w: Weights) -> bool:
            self.pending[name] = _digest(w.arr)
            return True

        def refit_cuda_engine(self) -> bool:
            if self.engine.refit_fails:
                return False
            self.engine.weights.update(self.pending)
            return True

    trt.Logger = Logger  # type: ignore[attr-defined]
    trt.Runtime = Runtime  # type: ignore[attr-defined]
    trt.Weights = Weights  # type: ignore[attr-defined]
    trt.Refitter = Refitter  # type: ignore[attr-defined]
    trt.TensorIOMode = types.SimpleNamespace(INPUT=0, OUTPUT=1)  # type: ignore[attr-defined]
    return trt


def fake_cudart() -> types.ModuleType:
    rt = types.ModuleType("cuda.bindings.runtime")
    props = types.SimpleNamespace(name=b"Fake H100\x00", major=9, minor=0)
    rt.cudaGetDeviceCount = lambda: (0, 1)  # type: ignore[attr-defined]
    rt.cudaGetDeviceProperties = lambda i: (0, props)  # type: ignore[attr-defined]
    rt.cudaSetDevice = lambda i: (0,)  # type: ignore[attr-defined]
    rt.cudaStreamCreate = lambda: (0, 1)  # type: ignore[attr-defined]
    rt.cudaFree = lambda ptr: (0,)  # type: ignore[attr-defined]
    return rt


@pytest.fixture()
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """MOCKED GPU: fake tensorrt + cuda-python modules (no GPU can run here)."""
    rt = fake_cudart()
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = rt  # type: ignore[attr-defined]
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)


SPEC = TensorRTEngine(
    file="engines/encoder.fp16.sm90.plan",
    precision="fp16",
    gpu_name="Fake H100",
    gpu_arch="9.0",
    trt_version=FAKE_TRT_VERSION,
    min_shape=[1, 1],
    opt_shape=[8, 32],
    max_shape=[32, 128],
)


def _tensors(bundle: Bundle, set_name: str) -> dict[str, np.ndarray]:
    entry = bundle.manifest.adapter_sets[set_name]
    return load_adapter_tensors(bundle.adapter_file(set_name), entry, set_name)


def _key(bundle: Bundle, tensors: dict[str, np.ndarray], **over: str) -> EngineKey:
    fields = {
        "graph_sha256": bundle.graph("encoder").sha256,
        "adapter_sha256": adapter_set_hash(tensors),
        "precision": "fp16",
        "gpu_name": "Fake H100",
        "gpu_arch": "9.0",
        "trt_version": FAKE_TRT_VERSION,
        **over,
    }
    return EngineKey(**fields)


def _held(path: Path) -> dict[str, str]:
    weights: dict[str, str] = json.loads(path.read_bytes())["weights"]
    return weights


def _want(tensors: dict[str, np.ndarray]) -> dict[str, str]:
    return {k: _digest(v) for k, v in tensors.items()}


def test_key_separates_what_an_engine_is_valid_for(bundles: Bundles, tmp_path: Path) -> None:
    v1 = open_bundle(bundles.v1)
    default, other = _tensors(v1, "default"), _tensors(v1, "other")
    assert adapter_set_hash(default) == adapter_set_hash({k: v.copy() for k, v in reversed(default.items())})
    assert adapter_set_hash(default) != adapter_set_hash(other)
    k_default, k_other = _key(v1, default), _key(v1, other)
    assert k_default.family == k_other.family and k_default.file_name != k_other.file_name  # refit pair
    for change in ({"gpu_arch": "8.6"}, {"gpu_name": "Fake L4"}, {"trt_version": "10.0.1"}):
        assert _key(v1, default, **change).family != k_default.family  # another GPU / TensorRT: rebuild
    assert _key(v1, default, precision="int8").family != k_default.family
    assert _key(v1, default, graph_sha256="0" * 64).family != k_default.family
    cache = EngineCache(tmp_path)
    assert cache.path(k_other) == tmp_path / "trt-native" / k_other.family / k_other.file_name


def test_detect_gpu_with_the_fake_modules(fake_gpu: None) -> None:
    gpu, why = detect_gpu(0)
    assert gpu is not None and why == ""
    assert (gpu.name, gpu.arch, gpu.trt_version) == ("Fake H100", "9.0", FAKE_TRT_VERSION)


def test_cache_then_refit_on_an_adapter_only_update_then_rebuild_when_refit_fails(
    fake_gpu: None, bundles: Bundles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = open_bundle(bundles.v1)
    update = open_bundle(bundles.update, parent=v1)
    default, other = _tensors(v1, "default"), _tensors(v1, "other")
    shipped = tmp_path / "bundle-engine.plan"  # the engine the bundle ships: built with its default set
    shipped.write_bytes(FakeEngine.plan(default))
    ship = (shipped, adapter_set_hash(default))
    cache = EngineCache(tmp_path / "model-cache")
    opened: list[Path] = []

    def open_runtime(path: Path) -> Any:
        opened.append(path)
        return TensorRTEngineRuntime(path, SPEC)

    # 1. first time on this GPU, set 'other': the bundle's engine refitted with 'other', then cached
    k_other = _key(v1, other)
    got = native_engine(cache, k_other, other, open_runtime, ship, label="v1/other")
    assert got.source == "bundle" and got.refit_s is not None and opened == [shipped]
    assert _held(got.path) == _want(other) and got.path == cache.path(k_other)
    assert got.info()["trt_engine_source"] == "bundle" and "trt_refit_s" in got.info()
    # the default set needs no refit: the shipped engine already holds it
    k_default = _key(v1, default)
    got = native_engine(cache, k_default, default, open_runtime, ship)
    assert got.source == "bundle" and got.refit_s is None and _held(got.path) == _want(default)

    # 2. the same key again (a restart): deserialized from the cache, nothing refitted
    opened.clear()
    got = native_engine(cache, k_other, other, open_runtime, ship)
    assert got.source == "cache" and opened == [cache.path(k_other)] and got.refit_s is None

    # 3. an adapter-only update: its weights refitted into the engine served last, not rebuilt
    new = _tensors(update, update.manifest.default_adapter_set)
    k_new = _key(update, new)
    assert k_new.family == k_other.family  # the update reuses its parent's graph
    opened.clear()
    got = native_engine(cache, k_new, new, open_runtime, ship, label="update")
    assert got.source == "refit" and opened == [cache.path(k_other)] and got.rebuild_s is None
    assert _held(got.path) == _want(new) != _want(other)
    assert got.runtime.spec is SPEC

    # 4. the refit fails (TensorRT refuses): one log line, then a rebuild from the bundle's engine
    k_other2 = _key(v1, other, adapter_sha256="f" * 64)  # another set of the family, none cached
    cache.path(k_new).write_bytes(FakeEngine.plan(new, refit_fails=True))
    cache.touch(cache.path(k_new))  # the newest sibling: the refit source
    opened.clear()
    with caplog.at_level(logging.WARNING):
        got = native_engine(cache, k_other2, other, open_runtime, ship, label="v1/other2")
    assert got.source == "rebuild" and got.rebuild_s is not None and got.refit_s is not None
    assert opened == [cache.path(k_new), shipped]
    assert _held(got.path) == _want(other)
    assert any(
        "refit of the cached engine" in r.getMessage() and "rebuilding" in r.getMessage()
        for r in caplog.records
    )


def test_unreadable_cache_entry_is_dropped_and_nothing_left_is_an_error(
    fake_gpu: None, bundles: Bundles, tmp_path: Path
) -> None:
    v1 = open_bundle(bundles.v1)
    other = _tensors(v1, "other")
    cache = EngineCache(tmp_path)
    key = _key(v1, other)
    cache.put(key, b"not an engine")

    def open_runtime(path: Path) -> Any:
        return TensorRTEngineRuntime(path, SPEC)

    with pytest.raises(BundleError, match="ships no engine for this GPU"):
        native_engine(cache, key, other, open_runtime, None)
    assert cache.get(key) is None  # the unreadable plan was removed
    # an engine without the adapter weights (not refittable by name) cannot serve the set
    shipped = tmp_path / "other-graph.plan"
    shipped.write_bytes(json.dumps({"weights": {"something.else": "x"}}).encode())
    with pytest.raises(BundleError, match="no refittable weight"):
        native_engine(cache, key, other, open_runtime, (shipped, "0" * 64))


def test_loader_refits_the_parents_engine_for_an_adapter_only_update(
    fake_gpu: None, bundles: Bundles, tmp_path: Path
) -> None:
    """``BundleModelLoader._native`` (MOCKED GPU, as above): the update carries no engine, its parent's
    engine is refitted with the update's weights, the next load of the update comes from the cache."""
    import shutil

    from edge.runtime.tensorrt_engine import GpuInfo
    from edge.serving.bundle_loader import BundleModelLoader
    from edge.settings import ServeSettings

    parent_dir = Path(shutil.copytree(bundles.v1, tmp_path / "v1"))
    parent = open_bundle(parent_dir, verify=False)
    (parent_dir / SPEC.file).parent.mkdir(parents=True, exist_ok=True)
    (parent_dir / SPEC.file).write_bytes(FakeEngine.plan(_tensors(parent, "default")))
    update = open_bundle(bundles.update, verify=False, parent=parent)
    assert not update.manifest.tensorrt  # an update ships no engine
    loader = BundleModelLoader(
        ServeSettings(model_cache_dir=tmp_path / "cache", providers=["tensorrt", "cpu"])
    )
    gpu = GpuInfo("Fake H100", "9.0", FAKE_TRT_VERSION)
    name = update.manifest.default_adapter_set
    _, providers, close, info = loader._native(update, parent, name, SPEC, gpu)
    assert providers == ["TensorRT-native(9.0, fp16)"] and close is not None
    assert info["trt_engine_source"] == "bundle" and "trt_refit_s" in info  # parent's plan + refit
    assert _held(Path(info["trt_engine"])) == _want(_tensors(update, name))
    again = loader._native(update, parent, name, SPEC, gpu)[3]
    assert again["trt_engine_source"] == "cache" and again["trt_engine"] == info["trt_engine"]
