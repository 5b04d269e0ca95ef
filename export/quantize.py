"""int8 for CPUs: ONNX Runtime dynamic quantization, per-channel weights, adapters kept in float,
and a sensitivity search that keeps the nodes that hurt most in float.

Measured defaults (see the issue): per-tensor dynamic quantization loses too much (cosine p1
0.875 on MiniLM); per-channel is much better. On top of per-channel, :func:`search_int8`
quantizes each candidate node *alone*, ranks nodes by the cosine loss that alone causes, then
keeps the worst ones in float one by one until the goal (mean / p1 cosine) is met or
``max_float_nodes`` is reached. Adapter and head nodes are always left in float so their
initializers stay bindable.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from contracts.logging import get_logger

log = get_logger("autoglm.export.quantize")

QUANTIZABLE_OPS = ("MatMul", "Attention")
EMBEDDING_OPS = ("Gather",)  # the word-embedding table: 47 of MiniLM's 90 MB

# (path of a graph, full?) -> numbers vs fp32 on the calibration queries (cosine_mean, cosine_p1,
# route_agreement, accuracy_drop …); full=False: the smaller sensitivity subset (per-node ranking)
ScoreFn = Callable[[Path, bool], dict[str, float]]
GoalFn = Callable[[dict[str, float]], bool]


def quantize_int8(
    src: Path, dst: Path, *, keep_float: list[str], per_channel: bool = True, embeddings: bool = True
) -> None:
    """Dynamic int8 (weights int8 per channel, activations uint8 per tensor at run time);
    ``embeddings``: also store the embedding tables as int8 (dequantized on lookup)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        per_channel=per_channel,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=list(QUANTIZABLE_OPS + (EMBEDDING_OPS if embeddings else ())),
        nodes_to_exclude=list(keep_float),
        extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def quantizable_nodes(path: Path) -> list[str]:
    """MatMul nodes with a constant weight and fused Attention nodes, in graph order."""
    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    out = []
    for node in proto.graph.node:
        if node.op_type == "Attention" or (
            node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in inits
        ):
            out.append(node.name)
    return out


def node_weight_elements(path: Path) -> dict[str, int]:
    """Node name -> elements of its constant weight inputs (the float compute a node kept in float costs)."""
    proto = onnx.load(str(path), load_external_data=False)
    sizes = {i.name: int(np.prod(i.dims)) for i in proto.graph.initializer}
    return {n.name: sum(sizes.get(i, 0) for i in n.input[1:]) for n in proto.graph.node}


def weight_params(path: Path) -> int:
    proto = onnx.load(str(path), load_external_data=False)
    return int(sum(int(np.prod(numpy_helper.to_array(i).shape)) for i in proto.graph.initializer))


@dataclass
class Int8Result:
    path: Path
    kept_float: list[str]
    sensitivity: dict[str, float] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    per_channel: bool = True
    rank_per_cost: bool = False

    def summary(self) -> dict[str, Any]:
        top = sorted(self.sensitivity.items(), key=lambda kv: -kv[1])[:8]
        return {
            "method": "onnxruntime dynamic int8, "
            + ("per-channel" if self.per_channel else "per-tensor")
            + " weights",
            "kept_float_nodes": self.kept_float,
            "ranking": (
                "none needed: every node int8 met the goal"
                if not self.sensitivity
                else "cosine loss per weight element"
                if self.rank_per_cost
                else "cosine loss"
            ),
            "sensitivity_top": [{"node": n, "cosine_loss": round(v, 6)} for n, v in top],
            "trials": self.trials,
        }


def search_int8(
    fp32: Path,
    dst: Path,
    *,
    always_float: list[str],
    score: ScoreFn,
    goal: GoalFn,
    max_float_nodes: int,
    per_channel: bool = True,
    embeddings: bool = True,
    rank_per_cost: bool = False,
) -> Int8Result:
    """Quantize ``fp32`` into ``dst``, keeping the most sensitive nodes in float until ``goal``
    holds for the calibration numbers (``score(path, True)``) or ``max_float_nodes`` is reached."""
    with tempfile.TemporaryDirectory(prefix="autoglm-int8-") as tmp:
        work = Path(tmp)
        trial_path = work / "trial.onnx"
        quantize_int8(
            fp32, trial_path, keep_float=always_float, per_channel=per_channel, embeddings=embeddings
        )
        numbers = score(trial_path, True)
        result = Int8Result(dst, [], per_channel=per_channel)
        result.trials.append({"kept_float": 0, **numbers})
        best = trial_path
        if not goal(numbers) and max_float_nodes > 0:
            candidates = [n for n in quantizable_nodes(fp32) if n not in set(always_float)]
            for i, node in enumerate(candidates):
                single = work / f"single_{i}.onnx"
                others = [n for n in candidates if n != node]
                quantize_int8(
                    fp32, single, keep_float=always_float + others, per_channel=per_channel, embeddings=False
                )
                result.sensitivity[node] = max(0.0, 1.0 - score(single, False)["cosine_mean"])
                single.unlink()
            cost = node_weight_elements(fp32) if rank_per_cost else {}
            result.rank_per_cost = rank_per_cost
            ranked = sorted(candidates, key=lambda n: -result.sensitivity[n] / max(1, cost.get(n, 1)))
            for k in range(1, min(max_float_nodes, len(ranked)) + 1):
                kept = ranked[:k]
                path_k = work / f"keep_{k}.onnx"
                quantize_int8(
                    fp32,
                    path_k,
                    keep_float=always_float + kept,
                    per_channel=per_channel,
                    embeddings=embeddings,
                )
                numbers = score(path_k, True)
                result.trials.append({"kept_float": k, **numbers})
                best, result.kept_float = path_k, kept
                log.info("int8 search", extra={"kept_float": k, **numbers})
                if goal(numbers):
                    break
        dst.parent.mkdir(parents=True, exist_ok=True)
        best.replace(dst)
    return result


def quantize_static_qdq(
    src: Path, dst: Path, *, keep_float: list[str], calib_feeds: list[dict[str, np.ndarray]]
) -> None:
    """Static int8 in QDQ format: u8 activations with scales calibrated (MinMax) on ``calib_feeds``,
    s8 weights per channel, MatMul only (fused Attention stays float: its QDQ form measured slower
    than fp32). More accurate than dynamic quantization, slower on this CPU (docs/arch/bundle.md)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    class _Reader:
        def __init__(self) -> None:
            self._it = iter(list(calib_feeds))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(
        str(src),
        str(dst),
        _Reader(),  # type: ignore[arg-type]
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=list(keep_float),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"MatMulConstBOnly": True},
    )
