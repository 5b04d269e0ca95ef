"""Execution-provider selection, session options, and the TensorRT engine choice.

The GPU paths themselves (TensorRT EP, CUDA EP, native TensorRT engines) need a GPU; here we
check the selection logic with the availability lists a GPU build would report, and skip the
real GPU run with a reason when no GPU is present.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from contracts.manifest import TensorRTEngine
from edge.runtime.providers import make_session_options, select_providers
from edge.runtime.tensorrt_engine import GpuInfo, detect_gpu, matching_engine
from edge.settings import ServeSettings

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_gpu_build_prefers_tensorrt_then_cuda_then_cpu(tmp_path: Path) -> None:
    s = ServeSettings(model_cache_dir=tmp_path, trt_int8=True, cuda_device_id=1)
    choice = select_providers(s, available=GPU_BUILD)
    assert choice.providers == GPU_BUILD
    trt = choice.provider_options[0]
    assert trt["trt_fp16_enable"] is True and trt["trt_int8_enable"] is True and trt["device_id"] == 1
    assert trt["trt_engine_cache_enable"] is True and trt["trt_engine_cache_path"].startswith(str(tmp_path))
    assert (tmp_path / "trt-engines").is_dir()
    assert choice.provider_options[1]["device_id"] == 1


def test_cpu_only_build_skips_gpu_providers_with_reason(tmp_path: Path) -> None:
    choice = select_providers(ServeSettings(model_cache_dir=tmp_path), available=["CPUExecutionProvider"])
    assert choice.providers == ["CPUExecutionProvider"]
    assert "not in this onnxruntime build" in choice.skipped["tensorrt"]
    assert set(choice.skipped) == {"tensorrt", "cuda"}


def test_configured_order_is_respected_and_cpu_always_last(tmp_path: Path) -> None:
    s = ServeSettings(model_cache_dir=tmp_path, providers=["cuda"])
    assert select_providers(s, available=GPU_BUILD).providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_session_options_threads_and_no_spinning() -> None:
    so = make_session_options(ServeSettings(ort_intra_op_threads=2, ort_inter_op_threads=1))
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def _engine(arch: str, trt: str, precision: str = "fp16") -> TensorRTEngine:
    return TensorRTEngine(
        file=f"engine-{arch}.plan", precision=precision, gpu_name="x", gpu_arch=arch, trt_version=trt,  # type: ignore[arg-type]
        min_shape=[1, 1], opt_shape=[8, 32], max_shape=[32, 128],
    )


def test_engine_is_used_only_for_the_gpu_it_was_built_for() -> None:
    engines = [_engine("8.6", "10.0.1"), _engine("9.0", "10.0.1", "int8"), _engine("9.0", "10.0.1")]
    h100 = GpuInfo("H100", "9.0", "10.0.1")
    assert matching_engine(engines, h100, "fp16") is engines[2]
    assert matching_engine(engines, h100, "int8") is engines[1]
    assert matching_engine(engines, GpuInfo("H100", "9.0", "10.3.0")) is None  # other TensorRT version
    assert matching_engine(engines, GpuInfo("T4", "7.5", "10.0.1")) is None
    assert matching_engine(engines, None) is None


def test_native_tensorrt_runtime_on_a_gpu() -> None:
    gpu, why = detect_gpu()
    if gpu is None:
        pytest.skip(f"native TensorRT runtime needs a GPU: {why}")
    assert gpu.arch and gpu.trt_version  # pragma: no cover - GPU machines only
