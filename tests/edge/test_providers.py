"""Execution-provider selection, session options, and the TensorRT engine choice.

The GPU paths themselves (TensorRT EP, CUDA EP, native TensorRT engines) need a GPU; here we
check the selection logic with the availability lists a GPU build would report, and skip the
real GPU run with a reason when no GPU is present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

import edge.runtime.providers as providers_mod
from contracts.bundle import open_bundle
from contracts.errors import BundleError
from contracts.manifest import TensorRTEngine
from edge.runtime.bundle_session import BundleSession
from edge.runtime.providers import make_session_options, select_providers
from edge.runtime.tensorrt_engine import GpuInfo, detect_gpu, matching_engine
from edge.serving.bundle_loader import BundleModelLoader
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
    assert select_providers(s, available=GPU_BUILD).providers == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_session_options_threads_and_no_spinning() -> None:
    so = make_session_options(ServeSettings(ort_intra_op_threads=2, ort_inter_op_threads=1))
    assert so.intra_op_num_threads == 2 and so.inter_op_num_threads == 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def _engine(arch: str, trt: str, precision: str = "fp16") -> TensorRTEngine:
    return TensorRTEngine(
        file=f"engine-{arch}.plan",
        precision=precision,
        gpu_name="x",
        gpu_arch=arch,
        trt_version=trt,  # type: ignore[arg-type]
        min_shape=[1, 1],
        opt_shape=[8, 32],
        max_shape=[32, 128],
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


# -- honest provider reports (issue 17) ------------------------------------------------------------
# CI has no GPU: ONNX Runtime's own fallback is real here (CUDA is not in this build, so a session
# asked for it runs on the CPU); the only thing mocked is select_providers' view of the build
# (``ort.get_available_providers``), so that the loader really asks the session for CUDA.


def test_session_reports_providers_that_ran_and_the_fallback(bundles: Any) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here: no fallback to observe")
    bundle = open_bundle(bundles.v1)
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        session = BundleSession(bundle, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert session.requested_providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert session.providers == ["CPUExecutionProvider"] and session.fallback == ["CUDAExecutionProvider"]
    with (
        pytest.warns(UserWarning),
        pytest.raises(BundleError, match=r"\['CUDAExecutionProvider'\] did not start"),
    ):
        BundleSession(
            bundle, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], strict_providers=True
        )
    assert BundleSession(bundle).fallback == []


def test_loader_says_when_a_requested_provider_fell_back(
    bundles: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here: no fallback to observe")
    # mocked: the build's claim to offer CUDA (a GPU build on a machine where the CUDA libs fail to load)
    monkeypatch.setattr(
        providers_mod.ort,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    settings = ServeSettings(
        model_cache_dir=tmp_path, providers=["tensorrt", "cuda", "cpu"], ort_intra_op_threads=1
    )
    with pytest.warns(UserWarning):
        model = BundleModelLoader(settings)(bundles.v1)
    assert model.providers == ["CPUExecutionProvider"]  # what really ran, not what was asked
    assert model.extra["providers_requested"] == "CUDAExecutionProvider,CPUExecutionProvider"
    assert model.extra["provider_fallback"] == "CUDAExecutionProvider"
    assert model.extra["providers_skipped"] == "TensorrtExecutionProvider"
    monkeypatch.undo()
    plain = BundleModelLoader(
        ServeSettings(model_cache_dir=tmp_path, providers=["cpu"], ort_intra_op_threads=1)
    )(bundles.v1)
    assert plain.extra["provider_fallback"] == "" and plain.providers == ["CPUExecutionProvider"]


def test_node_hardware_for_the_heartbeat(tmp_path: Path) -> None:
    """What a node reports so the rollout can pick its precision variant (issue 17)."""
    from edge.runtime.providers import node_hardware

    s = ServeSettings(model_cache_dir=tmp_path)
    assert node_hardware(s) == {"providers_available": ["CPUExecutionProvider"], "device": "cpu"}
    gpu = node_hardware(
        s, available=GPU_BUILD
    )  # a GPU build's list; no tensorrt package here to name the GPU
    assert gpu["providers_available"] == GPU_BUILD
    assert gpu["device"] == (f"cuda:{s.cuda_device_id}" if detect_gpu()[0] is None else gpu["device"])
