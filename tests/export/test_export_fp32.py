"""fp32 export: ONNX vs PyTorch parity, manifest content, the edge session over the bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cloud.model.checkpoint import load_checkpoint
from contracts.bundle import open_bundle
from contracts.tokenizer import TextTokenizer
from edge.runtime.bundle_session import BundleSession
from export.pipeline import SAMPLE_TEXTS

TEXTS = [*SAMPLE_TEXTS, "short", "一个很长的中文句子，用来测试填充和截断是否正确处理了注意力掩码的边界情况"]


def _torch(ckpt: Path, set_name: str, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        out = model(torch.from_numpy(ids), torch.from_numpy(mask), set_name)
    return out.embedding.numpy(), out.route_logits.numpy()


@pytest.mark.parametrize("set_name", ["default", "other"])
def test_onnx_matches_pytorch(tiny_ckpt: Path, fp32_bundle: Path, set_name: str) -> None:
    bundle = open_bundle(fp32_bundle)
    sess = BundleSession(bundle, adapter_set=set_name)
    tok = TextTokenizer(bundle.tokenizer_file())
    ids, mask = tok(TEXTS)
    assert (mask == 0).any(), "the batch must contain padding to exercise the in-graph mean pooling"
    emb, logits = sess.run(ids, mask)
    ref_emb, ref_logits = _torch(tiny_ckpt, set_name, ids, mask)
    assert emb.shape == (len(TEXTS), 32) and logits.shape == (len(TEXTS), 4)
    assert np.abs(emb - ref_emb).max() <= 1e-4
    assert np.array_equal(logits.argmax(1), ref_logits.argmax(1))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # L2 norm is in the graph


def test_dynamic_batch_and_sequence(fp32_bundle: Path) -> None:
    sess = BundleSession(open_bundle(fp32_bundle))
    for batch, seq in [(1, 1), (3, 17), (32, 5)]:
        ids = np.random.default_rng(batch).integers(1000, 3000, (batch, seq), dtype=np.int64)
        emb, logits = sess.run(ids, np.ones_like(ids))
        assert emb.shape == (batch, 32) and logits.shape == (batch, 4)


def test_padding_does_not_change_a_row(fp32_bundle: Path) -> None:
    """Mean pooling honours the mask: a text padded in a batch equals the text alone."""
    bundle = open_bundle(fp32_bundle)
    sess, tok = BundleSession(bundle), TextTokenizer(bundle.tokenizer_file())
    alone = sess.run(*tok(["hi"]))[0][0]
    padded = sess.run(*tok(["hi", "a considerably longer sentence with many more tokens in it"]))[0][0]
    assert np.abs(alone - padded).max() < 1e-5


def test_manifest_fields(fp32_bundle: Path, tiny_ckpt: Path) -> None:
    m = open_bundle(fp32_bundle).manifest
    assert m.version == "1.2.3" and m.precision == "fp32" and m.kind == "full"
    assert m.routes == ["calculator", "climate", "chitchat", "doc_search"]
    assert set(m.adapter_sets) == {"default", "other"} and m.default_adapter_set == "default"
    assert m.adapter_sets["default"].temperature == pytest.approx(1.3)
    assert m.graphs["encoder"].signature.input_names() == ["input_ids", "attention_mask"]
    assert m.graphs["encoder"].signature.outputs[0].shape == ["batch", 32]
    assert m.tokenizer.max_length == 128 and m.tokenizer.lowercase
    assert m.metrics.training == {"val_accuracy": 0.5}
    par = m.metrics.parity["fp32_vs_pytorch"]["other"]
    assert par["embedding_max_abs_diff"] <= 1e-4 and par["route_agreement"] == 1.0
    assert len(m.provenance.checkpoint_sha256) == 64
    assert "SkipLayerNormalization" in m.metrics.export["fusions"]
    # every adapter tensor is a named float initializer of the graph
    graph = onnx.load(str(fp32_bundle / m.graphs["encoder"].file))
    inits = {i.name: i for i in graph.graph.initializer}
    for name, spec in m.adapter_sets["default"].tensors.items():
        assert list(inits[name].dims) == spec.shape and inits[name].data_type == onnx.TensorProto.FLOAT


def test_session_properties(fp32_bundle: Path) -> None:
    sess = BundleSession(open_bundle(fp32_bundle), adapter_set="other", providers=["CPUExecutionProvider"])
    assert sess.adapter_set == "other" and sess.version == "1.2.3"
    assert sess.routes == ["calculator", "climate", "chitchat", "doc_search"] and sess.temperature == 1.0
    assert sess.providers == ["CPUExecutionProvider"]
