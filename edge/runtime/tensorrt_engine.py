"""Native TensorRT engine runtime, used only where the bundle carries an engine for this GPU.

An engine runs only on the GPU architecture (compute capability) and TensorRT version it was
built with, so :func:`matching_engine` picks the manifest entry for this device and returns
``None`` anywhere else (no GPU, no ``tensorrt``, another architecture): the caller then uses
ONNX Runtime. ``tensorrt`` and ``cuda-python`` are imported lazily; this module imports fine on
machines without them (the CPU tests only check the selection logic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import BundleError
from contracts.logging import get_logger
from contracts.manifest import TensorRTEngine

log = get_logger("autoglm.edge.runtime.tensorrt")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    arch: str  # compute capability "major.minor"
    trt_version: str


def detect_gpu(device_id: int = 0) -> tuple[GpuInfo | None, str]:
    """This machine's GPU and TensorRT version, or ``(None, why not)``."""
    try:
        import tensorrt as trt
    except ImportError:
        return None, "the tensorrt package is not installed"
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError:
            return None, "cuda-python is not installed (needed to drive TensorRT without torch)"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count <= device_id:
        return None, f"no CUDA device {device_id} (cudaGetDeviceCount: {err}, {count})"
    err, props = cudart.cudaGetDeviceProperties(device_id)
    if int(err) != 0:
        return None, f"cudaGetDeviceProperties failed: {err}"
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name.strip("\x00"), f"{props.major}.{props.minor}", str(trt.__version__)), ""


def matching_engine(
    engines: list[TensorRTEngine], gpu: GpuInfo | None, precision: str | None = None
) -> TensorRTEngine | None:
    """The engine built for this GPU architecture and TensorRT version (preferring ``precision``)."""
    if gpu is None:
        return None
    fits = [e for e in engines if e.gpu_arch == gpu.arch and e.trt_version == gpu.trt_version]
    if precision is not None:
        fits.sort(key=lambda e: e.precision != precision)
    return fits[0] if fits else None


def refit_engine(trt: Any, engine: Any, tensors: dict[str, np.ndarray], label: str) -> float:
    """Refit ``engine``'s weights named like the adapter initializers with ``tensors``
    (``trt.Refitter`` → ``set_named_weights`` → ``refit_cuda_engine``); the seconds it took.
    ``BundleError`` when a tensor is not a refittable weight of the engine or TensorRT refuses."""
    import time

    t0 = time.perf_counter()
    refitter = trt.Refitter(engine, trt.Logger(trt.Logger.WARNING))
    names = set(refitter.get_all_weights())
    missing = sorted(set(tensors) - names)
    if missing:
        raise BundleError(f"TensorRT engine {label}: no refittable weight(s) {missing[:3]}")
    keep = []  # TensorRT reads the host arrays during refit_cuda_engine
    for name, arr in tensors.items():
        host = np.ascontiguousarray(arr, dtype=np.float32)
        keep.append(host)
        if not refitter.set_named_weights(name, trt.Weights(host)):
            raise BundleError(f"TensorRT engine {label}: refit refused weight {name!r} {list(host.shape)}")
    if not refitter.refit_cuda_engine():
        raise BundleError(f"TensorRT engine {label}: refit with the adapter set failed")
    return time.perf_counter() - t0


class TensorRTEngineRuntime:
    """``(input_ids, attention_mask) -> (embedding, route_logits)`` on a deserialized engine.

    Host → device copies, ``execute_async_v3`` on one stream, device → host copies. Buffers are
    (re)allocated when a larger shape arrives. Shapes must fit the engine's optimisation profile.
    """

    def __init__(
        self, engine_path: Path, spec: TensorRTEngine, device_id: int = 0
    ) -> None:  # pragma: no cover - GPU
        import tensorrt as trt

        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # type: ignore[no-redef]
        self._trt = trt
        self._cudart = cudart
        self.spec = spec
        self._check(cudart.cudaSetDevice(device_id))
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if engine is None:
            raise BundleError(
                f"{engine_path}: TensorRT could not deserialize the engine (built for another GPU/version?)"
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        self.stream = self._check(cudart.cudaStreamCreate())[0]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device ptr, bytes)

    def _check(self, result: Any) -> Any:  # pragma: no cover - GPU
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return result[1:] if isinstance(result, tuple) else ()

    def _buffer(self, name: str, nbytes: int) -> int:  # pragma: no cover - GPU
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._check(self._cudart.cudaFree(ptr))
            ptr = self._check(self._cudart.cudaMalloc(nbytes))[0]
            self._buffers[name] = (ptr, nbytes)
        return int(ptr)

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - GPU
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        feeds = dict(zip(self.inputs, (input_ids, attention_mask), strict=True))
        for name, arr in feeds.items():
            host = np.ascontiguousarray(arr, dtype=np.int64)
            ptr = self._buffer(name, host.nbytes)
            self.context.set_input_shape(name, host.shape)
            self._check(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, h2d, self.stream))
            self.context.set_tensor_address(name, ptr)
        results: list[tuple[np.ndarray, int]] = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = np.empty(shape, dtype=np.float32)
            ptr = self._buffer(name, out.nbytes)
            self.context.set_tensor_address(name, ptr)
            results.append((out, ptr))
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execution failed")
        for out, ptr in results:
            self._check(cudart.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, d2h, self.stream))
        self._check(cudart.cudaStreamSynchronize(self.stream))
        by_name = {n: r[0] for n, r in zip(self.outputs, results, strict=True)}
        emb = by_name.get("embedding", results[0][0])
        logits = by_name.get("route_logits", results[1][0])
        return emb, logits

    def refit(self, tensors: dict[str, np.ndarray]) -> float:  # pragma: no cover - GPU
        """Replace the engine's adapter weights with ``tensors`` (an adapter set in graph layout):
        engines are built refittable, so serving another set — or an adapter-only update — is a
        refit of a few MB, not an engine rebuild. Returns the seconds it took; ``BundleError`` when
        a tensor is not a weight of the engine or TensorRT refuses."""
        return refit_engine(self._trt, self.engine, tensors, self.spec.file)

    def serialize(self) -> bytes:  # pragma: no cover - GPU
        """The engine as it is now (after a refit: with the new weights), for the engine cache."""
        return bytes(self.engine.serialize())

    def close(self) -> None:  # pragma: no cover - GPU
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
