"""Execution-provider selection and ONNX Runtime session options from :class:`ServeSettings`.

Order of preference comes from ``settings.providers`` (default TensorRT → CUDA → CPU); a
provider this onnxruntime build does not offer is skipped with a log line, and the CPU
provider is always appended last so a session can always be created. The TensorRT EP gets its
precision flags and an engine cache under ``model_cache_dir``; the CPU side gets thread counts
and (by default) no spinning, so ORT's worker threads do not steal the HTTP loop's core.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from contracts.logging import get_logger
from edge.settings import ServeSettings

log = get_logger("autoglm.edge.runtime.providers")

ORT_PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


@dataclass(frozen=True)
class ProviderChoice:
    """What a session will be created with: ``providers`` + ``provider_options`` for ORT."""

    providers: list[str]
    provider_options: list[dict[str, Any]]
    skipped: dict[str, str] = field(default_factory=dict)  # wanted provider -> why it is not used

    @property
    def primary(self) -> str:
        return self.providers[0]

    def as_ort_args(self) -> dict[str, Any]:
        return {
            "providers": list(self.providers),
            "provider_options": [dict(o) for o in self.provider_options],
        }


def _trt_options(settings: ServeSettings) -> dict[str, Any]:
    cache = Path(settings.model_cache_dir) / "trt-engines"
    return {
        "device_id": settings.cuda_device_id,
        "trt_fp16_enable": settings.trt_fp16,
        "trt_int8_enable": settings.trt_int8,
        "trt_max_workspace_size": settings.trt_workspace_mb * 1024 * 1024,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
    }


def _cuda_options(settings: ServeSettings) -> dict[str, Any]:
    return {"device_id": settings.cuda_device_id, "arena_extend_strategy": "kSameAsRequested"}


def select_providers(settings: ServeSettings, available: Sequence[str] | None = None) -> ProviderChoice:
    """Providers in the configured order that this onnxruntime build offers, CPU last."""
    have = set(available if available is not None else ort.get_available_providers())
    providers: list[str] = []
    options: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name in settings.providers:
        ort_name = ORT_PROVIDER_NAMES[name]
        if ort_name in providers:
            continue
        if ort_name not in have:
            skipped[name] = f"{ort_name} is not in this onnxruntime build (have {sorted(have)})"
            continue
        providers.append(ort_name)
        if name == "tensorrt":
            options.append(_trt_options(settings))
        elif name == "cuda":
            options.append(_cuda_options(settings))
        else:
            options.append({})
    if "CPUExecutionProvider" not in providers:
        providers.append("CPUExecutionProvider")
        options.append({})
    for wanted, why in skipped.items():
        log.debug("execution provider %s skipped: %s", wanted, why)
    if "TensorrtExecutionProvider" in providers:
        Path(settings.model_cache_dir, "trt-engines").mkdir(parents=True, exist_ok=True)
    return ProviderChoice(providers, options, skipped)


def default_intra_op_threads() -> int:
    """Cores this process may use (cgroup / affinity aware where the OS says)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def make_session_options(settings: ServeSettings) -> ort.SessionOptions:
    """Thread counts, no spinning (unless asked), full graph optimisation."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = settings.ort_intra_op_threads or default_intra_op_threads()
    so.inter_op_num_threads = max(1, settings.ort_inter_op_threads)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if settings.ort_allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return so


def node_hardware(settings: ServeSettings, available: Sequence[str] | None = None) -> dict[str, Any]:
    """What this node can run on, for its heartbeat (the rollout controller picks a precision
    variant from it, issue 17): ``providers_available`` (configured providers this onnxruntime build
    offers, in preference order, CPU last) and ``device`` (``cpu``, or the GPU's name and compute
    capability when TensorRT + cuda-python can tell, else ``cuda:<id>``). The heartbeat's
    ``providers`` (what the served model's session really runs on) is the stronger fact: a CUDA
    build without the CUDA libraries lists CUDA here but falls back to the CPU there."""
    choice = select_providers(settings, available)
    device = "cpu"
    if any(p != "CPUExecutionProvider" for p in choice.providers):
        from edge.runtime.tensorrt_engine import detect_gpu

        gpu, _why = detect_gpu(settings.cuda_device_id)
        device = f"{gpu.name} (sm {gpu.arch})" if gpu is not None else f"cuda:{settings.cuda_device_id}"
    return {"providers_available": list(choice.providers), "device": device}
