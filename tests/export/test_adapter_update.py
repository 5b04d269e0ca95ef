"""Adapter-only update bundles: tiny, reuse the parent's graph by sha256, same outputs as PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cloud.model.checkpoint import load_checkpoint
from contracts.bundle import open_bundle
from contracts.errors import BundleError
from edge.runtime.bundle_session import BundleSession, bundle_tokenizer
from export.errors import ExportError
from export.pipeline import SAMPLE_TEXTS, bundle_size, export_adapter_update
from tests.export.helpers import make_checkpoint


@pytest.fixture(scope="module")
def retrained(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same base, the 'default' set retrained (new weights)."""
    return make_checkpoint(
        tmp_path_factory.mktemp("retrained"), sets={"default": 7}, base_dir=tiny_ckpt.parent / "base"
    )


def _torch(ckpt: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    model, _ = load_checkpoint(ckpt)
    with torch.no_grad():
        return model(torch.from_numpy(ids), torch.from_numpy(mask), "default").embedding.numpy()


def test_update_reuses_parent_graph(retrained: Path, fp32_bundle: Path, tmp_path: Path) -> None:
    out = export_adapter_update(retrained, tmp_path / "u", parent_bundle=fp32_bundle, version="1.2.4")
    parent = open_bundle(fp32_bundle)
    upd = open_bundle(out, parent=fp32_bundle)
    m = upd.manifest
    assert m.kind == "adapter_update" and m.version == "1.2.4"
    assert m.parent is not None and m.parent.manifest_sha256 == parent.manifest_sha256
    assert (
        m.graphs["encoder"].from_parent
        and m.graphs["encoder"].sha256 == parent.manifest.graphs["encoder"].sha256
    )
    assert set(m.files) == {"adapters/default.safetensors"}
    assert not (out / "encoder.fp32.onnx").exists() and not (out / "tokenizer.json").exists()
    ratio = bundle_size(out) / bundle_size(fp32_bundle)
    assert ratio < 0.02, ratio
    ids, mask = bundle_tokenizer(upd)(SAMPLE_TEXTS)
    emb, _ = BundleSession(upd).run(ids, mask)
    assert np.abs(emb - _torch(retrained, ids, mask)).max() <= 1e-4
    old, _ = BundleSession(parent).run(ids, mask)
    assert np.abs(old - emb).max() > 1e-2
    par = m.metrics.parity["fp32_graph_bound_vs_pytorch"]["default"]
    assert par["embedding_max_abs_diff"] <= 1e-4


def test_update_without_parent_cannot_load(retrained: Path, fp32_bundle: Path, tmp_path: Path) -> None:
    out = export_adapter_update(retrained, tmp_path / "u", parent_bundle=fp32_bundle, version="1.2.5")
    alone = open_bundle(out)  # the update's own files verify
    with pytest.raises(BundleError, match="lives in parent bundle"):
        BundleSession(alone)


def test_int8_encoded_update(retrained: Path, fp32_bundle: Path, tmp_path: Path) -> None:
    f32 = export_adapter_update(retrained, tmp_path / "f", parent_bundle=fp32_bundle, version="1.3.0")
    i8 = export_adapter_update(
        retrained, tmp_path / "i", parent_bundle=fp32_bundle, version="1.3.0", encoding="int8"
    )
    assert bundle_size(i8 / "adapters") < 0.4 * bundle_size(f32 / "adapters")
    upd = open_bundle(i8, parent=fp32_bundle)
    assert upd.manifest.adapter_sets["default"].encoding == "int8"
    ids, mask = bundle_tokenizer(upd)(SAMPLE_TEXTS)
    emb, _ = BundleSession(upd).run(ids, mask)
    ref = _torch(retrained, ids, mask)
    assert (emb * ref).sum(1).min() > 0.999


def test_update_from_other_base_refused(fp32_bundle: Path, tmp_path: Path) -> None:
    foreign = make_checkpoint(tmp_path / "foreign", base_seed=5)
    with pytest.raises(ExportError, match="trained on base"):
        export_adapter_update(foreign, tmp_path / "u", parent_bundle=fp32_bundle, version="2.0.0")
    assert not (tmp_path / "u").exists()
