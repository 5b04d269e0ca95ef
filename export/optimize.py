"""Graph rewrites after export: ONNX Runtime's transformer optimizer (fp32) and fp16 conversion.

``opt_level=0`` runs only the optimizer's Python fusions (Attention, SkipLayerNormalization,
BiasGelu, …) and not ONNX Runtime's own offline graph optimisation, which would constant-fold
and rename the adapter initializers. ONNX Runtime applies its own optimisations again when a
session is created — after the adapter initializers have been bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.logging import get_logger

log = get_logger("autoglm.export.optimize")


def optimize_fp32(src: Path, dst: Path, *, num_heads: int, hidden_size: int) -> dict[str, Any]:
    """Fuse the fp32 graph; returns the fused-operator statistics (which fusions fired)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    model = optimize_model(
        str(src),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=0,
        optimization_options=options,
        use_gpu=False,
        only_onnxruntime=False,
    )
    stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    model.save_model_to_file(str(dst))
    log.info("fp32 graph optimised", extra={"fusions": stats})
    return stats


def convert_fp16(src: Path, dst: Path, keep_float32_nodes: list[str]) -> dict[str, Any]:
    """fp16 weights and compute for GPUs; inputs/outputs stay int64/float32 and ``keep_float32_nodes``
    (the adapter and head nodes) stay in float32 so their initializers can still be bound as float32."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True, node_block_list=keep_float32_nodes)
    model.save_model_to_file(str(dst))
    return {"fp16_blocked_nodes": len(keep_float32_nodes)}


def nodes_consuming(path: Path, tensor_names: set[str]) -> list[str]:
    """Names of the nodes that read any of ``tensor_names`` (the adapter / head nodes)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [n.name for n in proto.graph.node if tensor_names.intersection(n.input)]
