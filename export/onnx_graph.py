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
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from export.errors import ExportError

if TYPE_CHECKING:  # the PyTorch model is imported by the functions that export it
    from cloud.model.autoglm_model import AutoGLMModel

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


def export_adapter_set_graph(
    model: AutoGLMModel, set_name: str, out_path: Path, opset: int = 17
) -> AdapterLayout:
    """Write ``out_path`` (fp32 ONNX, pooling + L2 norm in-graph, dynamic batch and sequence)."""
    model.eval()
    aset = model.adapter_set(set_name)
    real = {k: v.detach().clone() for k, v in aset.state_dict().items()}
    gen = torch.Generator().manual_seed(20240611)
    fingerprints = {k: (torch.randn(v.shape, generator=gen) * 0.05).to(v.dtype) for k, v in real.items()}
    from cloud.model.autoglm_model import ExportWrapper

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
    gemm_to_matmul(proto, layout)
    canonicalise_attention_mask(proto)
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
    proto = (
        path_or_proto
        if isinstance(path_or_proto, onnx.ModelProto)
        else onnx.load(str(path_or_proto), load_external_data=False)
    )
    return {i.name for i in proto.graph.initializer}


def check_adapter_initializers(path: Path, tensors: dict[str, tuple[int, ...]], stage: str) -> None:
    """After each rewrite (optimizer, quantizer, fp16) every adapter tensor must still be a float32
    initializer."""
    proto = onnx.load(str(path), load_external_data=False)
    have = {i.name: i for i in proto.graph.initializer}
    for name, shape in tensors.items():
        init = have.get(name)
        if init is None:
            raise ExportError(
                f"{stage}: adapter tensor {name!r} is no longer a graph initializer (it could not be bound)"
            )
        if init.data_type != onnx.TensorProto.FLOAT or tuple(init.dims) != tuple(shape):
            raise ExportError(
                f"{stage}: adapter tensor {name!r} became "
                f"{onnx.TensorProto.DataType.Name(init.data_type)}{list(init.dims)}"
            )


def canonicalise_attention_mask(proto: onnx.ModelProto) -> bool:
    """Reorder the additive-mask subgraph into the order ONNX Runtime's attention fusion matches.

    Our encoder computes ``(1 - float(mask))[:, None, None, :] * -10000`` (Cast, Sub, Unsqueeze,
    Unsqueeze, Mul); the fusion looks for Unsqueeze, Unsqueeze, Cast, Sub, Mul — the same values
    (the ops commute). Returns whether the pattern was found and rewritten.
    """
    nodes = list(proto.graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def only(tensor: str, op: str) -> onnx.NodeProto | None:
        found = consumers.get(tensor, [])
        return found[0] if len(found) == 1 and found[0].op_type == op else None

    for cast in (n for n in nodes if n.op_type == "Cast" and n.input[0] == INPUT_NAMES[1]):
        subs = [
            c
            for c in consumers.get(cast.output[0], [])
            if c.op_type == "Sub" and c.input[1] == cast.output[0]
        ]
        for sub in subs:
            u1 = only(sub.output[0], "Unsqueeze")
            u2 = only(u1.output[0], "Unsqueeze") if u1 is not None else None
            users = consumers.get(u2.output[0], []) if u2 is not None else []
            if u1 is None or u2 is None or not users or any(u.op_type != "Mul" for u in users):
                continue
            # mask -> Unsqueeze -> Unsqueeze -> Cast(new) -> Sub -> Mul
            new_cast = onnx.helper.make_node(
                "Cast",
                [u2.output[0]],
                [u2.output[0] + "_float"],
                name=(cast.name or "mask") + "_reordered",
                to=onnx.TensorProto.FLOAT,
            )
            u1.input[0] = INPUT_NAMES[1]
            sub.input[1] = new_cast.output[0]
            for mul in users:
                for i, name in enumerate(mul.input):
                    if name == u2.output[0]:
                        mul.input[i] = sub.output[0]
            order = [n for n in nodes if n is not sub]
            at = next(i for i, n in enumerate(order) if n is u2) + 1
            order[at:at] = [new_cast, sub]
            if len(consumers.get(cast.output[0], [])) == 1:
                order = [n for n in order if n is not cast]
            del proto.graph.node[:]
            proto.graph.node.extend(order)
            stale = {sub.output[0], u1.output[0], u2.output[0]}
            keep = [v for v in proto.graph.value_info if v.name not in stale]
            del proto.graph.value_info[:]
            proto.graph.value_info.extend(keep)
            return True
    return False


def gemm_to_matmul(proto: onnx.ModelProto, layout: dict[str, bool]) -> int:
    """Rewrite ``Gemm(x, W, b, transB=1)`` on adapter/head weights as ``MatMul(x, W^T) + b``.

    The quantizer and fp16 converter rewrite Gemm nodes themselves (renaming and transposing
    the weight, which would break binding); as MatMul + Add every bindable tensor keeps its name
    in all precisions. ``layout`` is updated for the weights now stored transposed.
    """
    inits = {i.name: i for i in proto.graph.initializer}
    out_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in proto.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight = node.input[1] if node.op_type == "Gemm" and len(node.input) >= 2 else ""
        if (
            weight in layout
            and attrs.get("transA", 0) == 0
            and attrs.get("alpha", 1.0) == 1.0
            and attrs.get("beta", 1.0) == 1.0
        ):
            if attrs.get("transB", 0):
                arr = numpy_helper.to_array(inits[weight])
                inits[weight].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr.T), weight))
                layout[weight] = not layout[weight]
            mm_out = node.output[0] + "_mm" if len(node.input) > 2 else node.output[0]
            out_nodes.append(
                onnx.helper.make_node("MatMul", [node.input[0], weight], [mm_out], name=node.name + "_MatMul")
            )
            if len(node.input) > 2:
                out_nodes.append(
                    onnx.helper.make_node(
                        "Add", [mm_out, node.input[2]], [node.output[0]], name=node.name + "_Add"
                    )
                )
            count += 1
        else:
            out_nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(out_nodes)
    return count


def _safetensors_offsets(path: Path) -> tuple[int, dict[str, Any]]:
    """(start of the data section, header) of a safetensors file."""
    import json
    import struct

    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    return 8 + n, header


def externalize_adapters(graph_path: Path, adapter_file: Path, names: set[str]) -> int:
    """Turn the adapter initializers of ``graph_path`` into ONNX *external data* that points into
    ``adapter_file`` (the default set's float32 safetensors file, same directory tree as the graph).

    ONNX Runtime lets a session replace external initializers with
    ``SessionOptions.add_external_initializers`` on every execution provider, while inline ones
    replaced with ``add_initializer`` are ignored by CUDA / TensorRT (issue 17). The data is not
    duplicated: the external reference is the tensor's byte range inside the safetensors file.
    Every referenced range must hold exactly the initializer's current bytes, or this raises.
    Returns the number of initializers moved.
    """
    start, header = _safetensors_offsets(adapter_file)
    location = adapter_file.relative_to(graph_path.parent).as_posix()
    proto = onnx.load(str(graph_path))
    moved = 0
    for init in proto.graph.initializer:
        if init.name not in names:
            continue
        info = header.get(init.name)
        if (
            not isinstance(info, dict)
            or info.get("dtype") != "F32"
            or list(info.get("shape", [])) != list(init.dims)
        ):
            raise ExportError(
                f"adapter file {adapter_file.name} has no float32 tensor {init.name!r} "
                f"shaped {list(init.dims)}"
            )
        begin, end = (int(x) for x in info["data_offsets"])
        current = np.ascontiguousarray(numpy_helper.to_array(init), dtype="<f4").tobytes()
        with adapter_file.open("rb") as fh:
            fh.seek(start + begin)
            stored = fh.read(end - begin)
        if stored != current:
            raise ExportError(f"graph initializer {init.name!r} differs from the default set's adapter file")
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (
            ("location", location),
            ("offset", str(start + begin)),
            ("length", str(end - begin)),
        ):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
        moved += 1
    missing = names - {
        i.name for i in proto.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL
    }
    if missing:
        raise ExportError(f"adapter tensors not found as graph initializers: {sorted(missing)[:5]}")
    onnx.save(proto, str(graph_path))
    return moved
