"""TensorRT engines from a bundle's ONNX graph (GPU only; the tensorrt Python API).

Engines: one optimisation profile (batch 1..max_batch, sequence 1..max_seq), fp16 or int8
(explicit Q/DQ: the graph is quantized with ONNX Runtime's static QDQ quantizer, symmetric, adapter
nodes left in float), built refittable so a new adapter set can be refit into the engine by
initializer name without a rebuild. An engine only runs on the GPU architecture and TensorRT
version it was built with; both go into the manifest. Where tensorrt or a GPU is missing,
:class:`TensorRTUnavailable` says so and the export records the reason instead of an engine.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contracts.logging import get_logger
from contracts.manifest import TensorRTEngine
from export.errors import ExportError

log = get_logger("autoglm.export.tensorrt")


class TensorRTUnavailable(ExportError):
    """No tensorrt module or no CUDA GPU here: engines cannot be built."""


def gpu_info() -> tuple[str, str] | None:
    """(GPU name, compute capability) of GPU 0 from nvidia-smi, or None without a GPU."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    if "," not in line:
        return None
    name, cap = (p.strip() for p in line.split(",", 1))
    return name, cap


def tensorrt_unavailable_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the tensorrt Python package is not installed (pip install 'open-autoglm-edge[gpu]')"
    if gpu_info() is None:
        return "no CUDA GPU found (nvidia-smi missing or reports none)"
    return None


def make_qdq_graph(src: Path, dst: Path, *, keep_float: list[str], calib_feeds: list[dict[str, Any]]) -> None:
    """Explicit Q/DQ int8 graph for TensorRT: symmetric int8 weights (per channel) and activations."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib_feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=keep_float,
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "DefaultTensorType": 1,
        },  # 1 = FLOAT
    )


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    precision: str,
    max_batch: int,
    max_seq: int,
    workspace_mb: int = 2048,
) -> TensorRTEngine:
    reason = tensorrt_unavailable_reason()
    if reason:
        raise TensorRTUnavailable(reason)
    import tensorrt as trt

    gpu = gpu_info()
    assert gpu is not None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    config.set_flag(trt.BuilderFlag.REFIT)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    opt = (min(8, max_batch), min(32, max_seq))
    profile = builder.create_optimization_profile()
    for name in ("input_ids", "attention_mask"):
        profile.set_shape(name, (1, 1), opt, (max_batch, max_seq))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build a {precision} engine from {onnx_path.name}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return TensorRTEngine(
        file="",  # the caller sets the bundle-relative name
        precision=precision,  # type: ignore[arg-type]
        gpu_name=gpu[0],
        gpu_arch=gpu[1],
        trt_version=str(trt.__version__),
        refittable=True,
        min_shape=[1, 1],
        opt_shape=list(opt),
        max_shape=[max_batch, max_seq],
    )


def build_engines(
    raw_graph: Path,
    bundle_root: Path,
    *,
    precisions: Sequence[str],
    max_batch: int,
    max_seq: int,
    workspace_mb: int,
    calib: tuple[Any, list[str]] | None = None,
    keep_float: list[str] | None = None,
) -> list[TensorRTEngine]:
    """Engines into ``bundle_root/engines/`` from the unfused fp32 graph (standard ONNX ops)."""
    reason = tensorrt_unavailable_reason()
    if reason:
        raise TensorRTUnavailable(reason)
    gpu = gpu_info()
    assert gpu is not None
    arch = "sm" + gpu[1].replace(".", "")
    engines = []
    for precision in precisions:
        source = raw_graph
        if precision == "int8":
            if calib is None:
                raise ExportError("int8 TensorRT engines need calibration texts")
            tokenizer, texts = calib
            feeds = []
            for i in range(0, min(len(texts), 256), 16):
                ids, mask = tokenizer(texts[i : i + 16])
                feeds.append({"input_ids": ids, "attention_mask": mask})
            source = raw_graph.with_name("encoder.qdq.onnx")
            make_qdq_graph(raw_graph, source, keep_float=keep_float or [], calib_feeds=feeds)
        rel = f"engines/encoder.{precision}.{arch}.plan"
        info = build_engine(
            source,
            bundle_root / rel,
            precision=precision,
            max_batch=max_batch,
            max_seq=max_seq,
            workspace_mb=workspace_mb,
        )
        engines.append(info.model_copy(update={"file": rel}))
        log.info("TensorRT engine built", extra={"engine": rel, "gpu": gpu[0]})
    return engines
