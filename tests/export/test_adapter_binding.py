"""Base graph + bound adapter file == a full export of that adapter set, on every provider present.

The graph's adapter initializers are external data bound with ``add_external_initializers``
(issue 17: ``add_initializer`` is ignored by the CUDA provider). CI has only the CPU provider; the
CUDA / TensorRT cases run where onnxruntime offers them (``scripts/gpu_check.py`` runs them on a GPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.checkpoint import load_checkpoint, save_checkpoint
from contracts.bundle import open_bundle
from contracts.errors import BundleError
from contracts.tokenizer import TextTokenizer
from edge.runtime.bundle_session import BundleSession
from export.pipeline import SAMPLE_TEXTS, export_checkpoint


@pytest.fixture(scope="module")
def other_only_bundle(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full export whose graph carries the 'other' set's weights (its only set)."""
    model, meta = load_checkpoint(tiny_ckpt)
    solo = AutoGLMModel.from_pretrained(meta.base_path)
    solo.add_adapter_set("other", meta.adapter_sets["other"].routes)
    solo.adapter_set("other").load_state_dict(model.adapter_set("other").state_dict())
    root = tmp_path_factory.mktemp("solo")
    ckpt = save_checkpoint(solo, root / "ckpt", base_path=Path(meta.base_path))
    return export_checkpoint(ckpt, root / "bundle")


def test_bound_equals_full_export(fp32_bundle: Path, other_only_bundle: Path) -> None:
    base = open_bundle(fp32_bundle)
    tok = TextTokenizer(base.tokenizer_file())
    ids, mask = tok(SAMPLE_TEXTS)
    bound = BundleSession(base, adapter_set="other").run(ids, mask)
    full = BundleSession(open_bundle(other_only_bundle)).run(ids, mask)
    default = BundleSession(base, adapter_set="default").run(ids, mask)
    np.testing.assert_allclose(bound[0], full[0], atol=1e-5)
    np.testing.assert_allclose(bound[1], full[1], atol=1e-5)
    # and the binding really changed something: the default set gives other outputs
    assert np.abs(default[0] - bound[0]).max() > 1e-2


PROVIDERS = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bound_set_parity_on_each_provider(
    provider: str, fp32_bundle: Path, other_only_bundle: Path, tiny_ckpt: Path
) -> None:
    if provider not in ort.get_available_providers():
        pytest.skip(f"{provider} is not in this onnxruntime build (GPU machines: scripts/gpu_check.py)")
    base = open_bundle(fp32_bundle)
    ids, mask = TextTokenizer(base.tokenizer_file())(SAMPLE_TEXTS)
    session = BundleSession(base, adapter_set="other", providers=[provider], strict_providers=True)
    assert session.providers[0] == provider and session.binding == "external"
    bound = session.run(ids, mask)
    baked = BundleSession(open_bundle(other_only_bundle)).run(ids, mask)  # 'other' baked into its graph, CPU
    model, _ = load_checkpoint(tiny_ckpt)
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), torch.from_numpy(mask), "other")
    tol = 1e-5 if provider == "CPUExecutionProvider" else 1e-3
    assert np.abs(bound[0] - baked[0]).max() <= tol
    assert np.abs(bound[0] - ref.embedding.numpy()).max() <= max(tol, 1e-4)
    assert np.abs(bound[1] - ref.route_logits.numpy()).max() <= max(tol, 1e-4)
    default = BundleSession(base, adapter_set="default", providers=[provider]).run(ids, mask)
    assert np.abs(default[0] - bound[0]).max() > 1e-2


def test_graph_adapters_are_external_data_into_the_default_adapter_file(fp32_bundle: Path) -> None:
    b = open_bundle(fp32_bundle)
    m = b.manifest
    assert m.graphs["encoder"].adapter_binding == "external"
    assert m.metrics.export["adapter_binding"]["initializers"] == len(m.adapter_sets["default"].tensors)
    proto = onnx.load(str(b.graph_file()), load_external_data=False)
    ext = {
        i.name: {e.key: e.value for e in i.external_data}
        for i in proto.graph.initializer
        if i.data_location == onnx.TensorProto.EXTERNAL
    }
    assert set(ext) == set(m.adapter_sets["default"].tensors)
    assert {e["location"] for e in ext.values()} == {
        "adapters/default.safetensors"
    }  # no second copy of the data
    assert not [f for f in m.files if f.endswith(".bin") or f.endswith(".data")]


def _inline_copy(bundle: Path, dst: Path) -> Path:
    """The bundle as the exporter before issue 17 wrote it: adapters inline in the graph."""
    import shutil

    shutil.copytree(bundle, dst)
    graph = dst / "encoder.fp32.onnx"
    proto = onnx.load(str(graph))  # loads the external data
    for init in proto.graph.initializer:
        init.data_location = onnx.TensorProto.DEFAULT
        del init.external_data[:]
    onnx.save(proto, str(graph))
    text = (dst / "manifest.yaml").read_text()
    assert "adapter_binding: external" in text
    (dst / "manifest.yaml").write_text(
        text.replace("adapter_binding: external", "adapter_binding: initializer")
    )
    return dst


def test_inline_bundle_binds_on_cpu_and_is_refused_on_gpu_providers(
    fp32_bundle: Path, tmp_path: Path
) -> None:
    old = open_bundle(_inline_copy(fp32_bundle, tmp_path / "old"), verify=False)
    new = open_bundle(fp32_bundle)
    ids, mask = TextTokenizer(new.tokenizer_file())(SAMPLE_TEXTS)
    cpu = BundleSession(old, adapter_set="other")
    assert cpu.binding == "initializer"
    np.testing.assert_allclose(
        cpu.run(ids, mask)[0], BundleSession(new, adapter_set="other").run(ids, mask)[0], atol=1e-6
    )
    # ORT's CUDA provider ignores add_initializer (it would silently serve the embedded default set):
    # refused before any session exists, so this needs no GPU.
    with pytest.raises(BundleError, match=r"cannot be bound on \['CUDAExecutionProvider'\].*re-export"):
        BundleSession(old, adapter_set="other", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    # the embedded set itself needs no binding and is allowed (ORT falls back to CPU here: no CUDA)
    s = BundleSession(old, adapter_set="default", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    np.testing.assert_allclose(s.run(ids, mask)[0], BundleSession(new).run(ids, mask)[0], atol=1e-6)


def test_adapter_file_with_wrong_shapes_is_refused(fp32_bundle: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.numpy import load_file, save_file

    copy = tmp_path / "b"
    shutil.copytree(fp32_bundle, copy)
    f = copy / "adapters/other.safetensors"
    tensors = load_file(str(f))
    tensors["heads.router.out.bias"] = np.zeros(7, dtype=np.float32)
    save_file(tensors, str(f))
    with pytest.raises(BundleError, match=r"heads\.router\.out\.bias"):
        BundleSession(open_bundle(copy, verify=False), adapter_set="other")


def test_unknown_adapter_set(fp32_bundle: Path) -> None:
    with pytest.raises(BundleError, match="no adapter set 'nope'"):
        BundleSession(open_bundle(fp32_bundle), adapter_set="nope")


def test_checkpoint_weights_unchanged_by_export(tiny_ckpt: Path) -> None:
    """The fingerprinting trick restores the real adapter weights."""
    model, _ = load_checkpoint(tiny_ckpt)
    before = {k: v.clone() for k, v in model.adapter_set("default").state_dict().items()}
    from export.onnx_graph import export_adapter_set_graph

    export_adapter_set_graph(model, "default", tiny_ckpt.parent / "x.onnx")
    for k, v in model.adapter_set("default").state_dict().items():
        assert torch.equal(before[k], v), k
