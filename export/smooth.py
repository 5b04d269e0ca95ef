"""SmoothQuant-style activation smoothing for dynamic int8 (an exact fp32 rewrite).

Dynamic quantization gives each activation tensor one uint8 scale; a few outlier channels then
leave little resolution for the rest. For a MatMul ``x @ W`` (or a fused ``Attention``) this
inserts ``x * (1/s)`` and scales the weight rows by ``s`` — the same product — with
``s_k = max|x_k|^alpha / max|W_k|^(1-alpha)`` from calibration activations, moving the outliers
into the (per-channel quantized) weights. The ``Mul`` is an elementwise op, cheap next to the
MatMul. Adapter and head nodes are never touched (their initializers stay bindable).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper


def _activation_maxima(
    proto: onnx.ModelProto, names: list[str], feeds: Iterable[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    have = {o.name for o in probe.graph.output}
    for n in names:
        if n not in have:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(
        probe.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"]
    )
    maxima: dict[str, np.ndarray] = {}
    for feed in feeds:
        outs = sess.run(names, feed)
        for n, arr in zip(names, outs, strict=True):
            m = np.abs(arr.reshape(-1, arr.shape[-1])).max(axis=0)
            maxima[n] = m if n not in maxima else np.maximum(maxima[n], m)
    return maxima


def smooth_graph(
    src: Path, dst: Path, *, nodes: list[str], calib_feeds: list[dict[str, np.ndarray]], alpha: float = 0.5
) -> dict[str, Any]:
    """Write the smoothed graph to ``dst``; returns per-node scale statistics."""
    proto = onnx.load(str(src))
    inits = {i.name: i for i in proto.graph.initializer}
    targets = []
    for node in proto.graph.node:
        if node.name in nodes and len(node.input) > 1 and node.input[1] in inits:
            targets.append(node)
    acts = sorted({n.input[0] for n in targets})
    maxima = _activation_maxima(proto, acts, calib_feeds)
    # Nodes that share one weight initializer (the encoder run twice in one graph, as a gated route
    # with a ``base`` / ``cat`` gate does) get one scale from the maximum of all their inputs: the
    # weight is scaled once and every sharer divides its own input by the same ``s``. Scaling it once
    # per node would leave each node's weight scaled by the other's ``s`` too.
    groups: dict[str, list[onnx.NodeProto]] = {}
    for node in targets:
        groups.setdefault(node.input[1], []).append(node)
    stats: dict[str, Any] = {}
    inv_scale: dict[int, str] = {}
    for w_name, sharers in groups.items():
        w_init = inits[w_name]
        w = numpy_helper.to_array(w_init).astype(np.float32)
        a = np.max(np.stack([maxima[n.input[0]] for n in sharers]), axis=0).astype(np.float32)
        wmax = np.abs(w).max(axis=1)
        sc = np.power(np.maximum(a, 1e-5), alpha) / np.power(np.maximum(wmax, 1e-5), 1.0 - alpha)
        sc = np.where(np.isfinite(sc) & (sc > 0), sc, 1.0).astype(np.float32)
        w_init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w * sc[:, None]), w_init.name))
        scale_name = f"{sharers[0].name}_smooth_inv_scale"
        proto.graph.initializer.append(numpy_helper.from_array((1.0 / sc).astype(np.float32), scale_name))
        for node in sharers:
            inv_scale[id(node)] = scale_name
            stats[node.name] = {
                "act_max": float(a.max()),
                "act_max_over_median": float(a.max() / max(float(np.median(a)), 1e-6)),
                "shared_by": len(sharers),
            }
    new_nodes: list[onnx.NodeProto] = []
    for node in proto.graph.node:
        if id(node) in inv_scale:
            smoothed = f"{node.input[0]}_smoothed_for_{node.name}"
            new_nodes.append(
                onnx.helper.make_node(
                    "Mul", [node.input[0], inv_scale[id(node)]], [smoothed], name=f"{node.name}_smooth"
                )
            )
            node.input[0] = smoothed
        new_nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(new_nodes)
    onnx.save(proto, str(dst))
    return {
        "alpha": alpha,
        "nodes": len(targets),
        "outlier_ratio_max": max((v["act_max_over_median"] for v in stats.values()), default=0.0),
        "shared_weights": sum(1 for g in groups.values() if len(g) > 1),
    }
