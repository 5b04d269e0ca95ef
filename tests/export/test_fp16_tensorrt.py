"""fp16 graph (GPU precision; ONNX Runtime's CPU provider runs it too, so correctness is checked
here — its speed needs a GPU: scripts/gpu_check.py) and the TensorRT path.

The TensorRT engine build needs the tensorrt package and a CUDA GPU; here it is skipped with the
reason (and `scripts/gpu_check.py` exercises it on a GPU machine). What can run here does:
the export records why no engine was built.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from contracts.bundle import open_bundle
from edge.runtime.bundle_session import BundleSession, bundle_tokenizer
from export.pipeline import SAMPLE_TEXTS, export_checkpoint
from export.tensorrt_build import tensorrt_unavailable_reason

TRT_MISSING = tensorrt_unavailable_reason()


@pytest.fixture(scope="module")
def fp16_bundle(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_checkpoint(tiny_ckpt, tmp_path_factory.mktemp("f16") / "b", precision="fp16", tensorrt=True)


def test_fp16_graph(fp16_bundle: Path, fp32_bundle: Path) -> None:
    b16, b32 = open_bundle(fp16_bundle), open_bundle(fp32_bundle)
    m = b16.manifest
    assert m.precision == "fp16" and m.graphs["encoder"].file == "encoder.fp16.onnx"
    graph = onnx.load(str(fp16_bundle / "encoder.fp16.onnx"))
    inits = {i.name: i for i in graph.graph.initializer}
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in inits.values())
    for name in m.adapter_sets["default"].tensors:
        assert inits[name].data_type == onnx.TensorProto.FLOAT, name  # still bindable as float32
    # built from the fused graph (fused attention / layer norm kernels in fp16 on CUDA), float32 I/O
    ops = [n.op_type for n in graph.graph.node]
    assert {"Attention", "SkipLayerNormalization"} <= set(ops)
    assert [i.type.tensor_type.elem_type for i in graph.graph.output] == [onnx.TensorProto.FLOAT] * 2
    # no Cast storm: the adapter chain of each layer is one float32 island (a Cast in, a Cast out)
    info = m.metrics.export["fp16"]
    layers = m.base_encoder.num_layers
    assert info["casts"] == ops.count("Cast") <= 2 * layers + 10, info
    ids, mask = bundle_tokenizer(b16)(SAMPLE_TEXTS)
    for set_name in ("default", "other"):
        e16, _ = BundleSession(b16, set_name).run(ids, mask)
        e32, _ = BundleSession(b32, set_name).run(ids, mask)
        assert e16.dtype.name == "float32" and (e16 * e32).sum(1).min() > 0.999
    assert m.metrics.parity["fp16_vs_fp32"]["cosine_p1"] > 0.999


@pytest.mark.skipif(
    TRT_MISSING is None, reason="tensorrt and a GPU are present: the engine test below runs instead"
)
def test_tensorrt_skip_is_recorded(fp16_bundle: Path) -> None:
    m = open_bundle(fp16_bundle).manifest
    assert m.tensorrt == []
    assert m.metrics.export["tensorrt_skipped"] == TRT_MISSING


@pytest.mark.gpu
@pytest.mark.skipif(
    TRT_MISSING is not None, reason=f"TensorRT engines need tensorrt and a CUDA GPU: {TRT_MISSING}"
)
def test_tensorrt_engines_in_manifest(fp16_bundle: Path) -> None:  # pragma: no cover - GPU machines only
    m = open_bundle(fp16_bundle).manifest
    assert m.tensorrt and m.tensorrt[0].precision == "fp16" and m.tensorrt[0].refittable
    assert (fp16_bundle / m.tensorrt[0].file).stat().st_size > 0
