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


# Kept in float32 in fp16 graphs: the pooling / L2-normalisation tail (sums over the sequence and
# the hidden axis) and any softmax / erf left unfused. Attention, SkipLayerNormalization and
# LayerNormalization run in fp16 with float32 accumulation inside ONNX Runtime's kernels.
FP16_FLOAT32_OPS = ("ReduceSum", "ReduceMean", "ReduceL2", "Div", "Sqrt", "Pow", "Clip", "Softmax", "Erf")


def float_island(proto: Any, seeds: set[str]) -> list[str]:
    """``seeds`` (node names) grown by every node whose float inputs all come from the island and
    whose outputs feed only the island or the graph outputs — the adapter chain
    (down MatMul → Add → Relu → up MatMul → Add) and the head (MatMul → Add → Tanh → MatMul → Add)
    become one float32 island each, so fp16 conversion adds Casts only at its borders."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in proto.graph.output}
    inits = {i.name for i in proto.graph.initializer}
    island = set(seeds)
    changed = True
    while changed:
        changed = False
        for n in proto.graph.node:
            if n.name in island or not n.name:
                continue
            ins = [i for i in n.input if i and i not in inits]
            if not ins or not all(i in producers and producers[i].name in island for i in ins):
                continue
            users = [u for o in n.output for u in consumers.get(o, [])]
            if all(u.name in island for u in users) or any(o in outputs for o in n.output) or not users:
                island.add(n.name)
                changed = True
    return [n.name for n in proto.graph.node if n.name in island]


def convert_fp16(src: Path, dst: Path, keep_float32_nodes: list[str]) -> dict[str, Any]:
    """fp16 weights and compute for GPUs, from the *fused* fp32 graph (Attention,
    SkipLayerNormalization, BiasGelu run as fp16 kernels on CUDA); inputs/outputs stay
    int64/float32 (``keep_io_types``); ``keep_float32_nodes`` (the adapter and head nodes) and
    the nodes between them stay float32, so their initializers can still be bound as float32 and
    Casts appear only at the borders; :data:`FP16_FLOAT32_OPS` stay float32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    proto = onnx.load(str(src))
    tail = {n.name for n in proto.graph.node if n.op_type in FP16_FLOAT32_OPS}
    block = float_island(proto, set(keep_float32_nodes) | tail)
    model = OnnxModel(proto)
    model.convert_float_to_float16(
        keep_io_types=True,
        node_block_list=block,
        op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(FP16_FLOAT32_OPS),
    )
    model.save_model_to_file(str(dst))
    out = onnx.load(str(dst), load_external_data=False)
    ops: dict[str, int] = {}
    for n in out.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {
        "fp16_blocked_nodes": len(block),
        "casts": ops.get("Cast", 0),
        "nodes": len(out.graph.node),
        "fused_ops": {
            k: v
            for k, v in ops.items()
            if k in ("Attention", "SkipLayerNormalization", "BiasGelu", "LayerNormalization")
        },
    }


def nodes_consuming(path: Path, tensor_names: set[str]) -> list[str]:
    """Names of the nodes that read any of ``tensor_names`` (the adapter / head nodes)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [n.name for n in proto.graph.node if tensor_names.intersection(n.input)]
