"""Base graph + bound adapter file == a full export of that adapter set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
