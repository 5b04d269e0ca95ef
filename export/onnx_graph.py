"""PyTorch -> ONNX for one adapter set, with the adapter tensors as *named* graph initializers.

The exporter names, folds (``Linear`` weights become transposed ``onnx::MatMul_123``
constants) and de-duplicates initializers (all zero-initialised adapter weights collapse into
one). To find every adapter tensor reliably, the export runs with each adapter parameter
replaced by a unique random *fingerprint*; each graph initializer whose bytes equal a
fingerprint (or its transpose) is renamed to the parameter's stable name (``adapters.0.down.weight``,
``heads.router.out.bias`` — see :mod:`cloud.model.adapters`) and filled with the real values in
the graph's layout. :class:`AdapterLayout` records which tensors the graph holds transposed, so
the adapter files of *other* sets are written in the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from cloud.model.autoglm_model import AutoGLMModel, ExportWrapper
from export.errors import ExportError

INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAMES = ["embedding", "route_logits"]
DYNAMIC_AXES = {
    "input_ids": {0: "batch", 1: "sequence"},
    "attention_mask": {0: "batch", 1: "sequence"},
    "embedding": {0: "batch"},
    "route_logits": {0: "batch"},
}


@dataclass(frozen=True)
class AdapterLayout:
    """Stable adapter tensor name -> whether the graph holds it transposed."""

    transposed: dict[str, bool]

    def graph_tensors(self, model: AutoGLMModel, set_name: str) -> dict[str, np.ndarray]:
        """The set's tensors as the graph consumes them (float32, contiguous)."""
        state = model.adapter_set(set_name).state_dict()
        if set(state) != set(self.transposed):
            raise ExportError(
                f"adapter set {set_name!r} has tensors {sorted(set(state) ^ set(self.transposed))[:3]} "
                "that the exported graph does not (different number of layers?)"
            )
        out = {}
        for name, t in state.items():
            arr = t.detach().cpu().to(torch.float32).numpy()
            out[name] = np.ascontiguousarray(arr.T if self.transposed[name] else arr)
        return out


def _dummy_inputs(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000 if vocab > 2000 else 1, vocab, (2, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def export_adapter_set_graph(model: AutoGLMModel, set_name: str, out_path: Path, opset: int = 17) -> AdapterLayout:
    """Write ``out_path`` (fp32 ONNX, pooling + L2 norm in-graph, dynamic batch and sequence)."""
    model.eval()
    aset = model.adapter_set(set_name)
    real = {k: v.detach().clone() for k, v in aset.state_dict().items()}
    gen = torch.Generator().manual_seed(20240611)
    fingerprints = {k: (torch.randn(v.shape, generator=gen) * 0.05).to(v.dtype) for k, v in real.items()}
    wrapper = ExportWrapper(model, set_name).eval()
    ids, mask = _dummy_inputs(model.config.vocab_size)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        aset.load_state_dict(fingerprints)
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                (ids, mask),
                str(out_path),
                input_names=INPUT_NAMES,
                output_names=OUTPUT_NAMES,
                dynamic_axes=DYNAMIC_AXES,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        aset.load_state_dict(real)
    proto = onnx.load(str(out_path))
    layout = _name_adapter_initializers(proto, fingerprints, real)
    onnx.save(proto, str(out_path))
    return AdapterLayout(layout)


def _name_adapter_initializers(
    proto: onnx.ModelProto, fingerprints: dict[str, torch.Tensor], real: dict[str, torch.Tensor]
) -> dict[str, bool]:
    lookup: dict[bytes, tuple[str, bool]] = {}
    for name, fp in fingerprints.items():
        arr = fp.to(torch.float32).numpy()
        lookup[np.ascontiguousarray(arr).tobytes()] = (name, False)
        if arr.ndim == 2:
            lookup[np.ascontiguousarray(arr.T).tobytes()] = (name, True)
    graph = proto.graph
    renames: dict[str, str] = {}
    layout: dict[str, bool] = {}
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        hit = lookup.get(np.ascontiguousarray(arr).tobytes())
        if hit is None:
            continue
        name, transposed = hit
        if name in layout:
            raise ExportError(f"adapter tensor {name!r} appears twice in the exported graph")
        value = real[name].to(torch.float32).numpy()
        value = np.ascontiguousarray(value.T if transposed else value)
        renames[init.name] = name
        init.CopyFrom(numpy_helper.from_array(value, name))
        layout[name] = transposed
    missing = sorted(set(fingerprints) - set(layout))
    if missing:
        raise ExportError(f"adapter tensors not found as graph initializers after export: {missing[:5]}")
    for node in graph.node:
        for i, inp in enumerate(node.input):
            if inp in renames:
                node.input[i] = renames[inp]
    return layout


def initializer_names(path_or_proto: Path | onnx.ModelProto) -> set[str]:
    proto = path_or_proto if isinstance(path_or_proto, onnx.ModelProto) else onnx.load(str(path_or_proto), load_external_data=False)
    return {i.name for i in proto.graph.initializer}


def check_adapter_initializers(path: Path, tensors: dict[str, tuple[int, ...]], stage: str) -> None:
    """After each rewrite (optimizer, quantizer, fp16) every adapter tensor must still be a float32 initializer."""
    proto = onnx.load(str(path), load_external_data=False)
    have = {i.name: i for i in proto.graph.initializer}
    for name, shape in tensors.items():
        init = have.get(name)
        if init is None:
            raise ExportError(f"{stage}: adapter tensor {name!r} is no longer a graph initializer (it could not be bound)")
        if init.data_type != onnx.TensorProto.FLOAT or tuple(init.dims) != tuple(shape):
            raise ExportError(
                f"{stage}: adapter tensor {name!r} became {onnx.TensorProto.DataType.Name(init.data_type)}{list(init.dims)}"
            )
