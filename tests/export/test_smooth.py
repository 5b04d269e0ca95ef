"""Activation smoothing is an exact fp32 rewrite and leaves the adapter initializers bindable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from cloud.model.checkpoint import load_checkpoint
from contracts.tokenizer import TextTokenizer
from export.onnx_graph import check_adapter_initializers, export_adapter_set_graph
from export.optimize import nodes_consuming, optimize_fp32
from export.pipeline import SAMPLE_TEXTS
from export.quantize import quantizable_nodes
from export.smooth import smooth_graph


def test_smoothing_is_exact(tiny_ckpt: Path, tmp_path: Path) -> None:
    model, meta = load_checkpoint(tiny_ckpt)
    layout = export_adapter_set_graph(model, "default", tmp_path / "raw.onnx")
    optimize_fp32(tmp_path / "raw.onnx", tmp_path / "fp32.onnx", num_heads=2, hidden_size=32)
    adapter_nodes = nodes_consuming(tmp_path / "fp32.onnx", set(layout.transposed))
    targets = [n for n in quantizable_nodes(tmp_path / "fp32.onnx") if n not in adapter_nodes]
    tok = TextTokenizer(Path(meta.base_path) / "tokenizer.json")
    ids, mask = tok(SAMPLE_TEXTS)
    info = smooth_graph(
        tmp_path / "fp32.onnx",
        tmp_path / "sm.onnx",
        nodes=targets,
        calib_feeds=[{"input_ids": ids, "attention_mask": mask}],
        alpha=0.75,
    )
    assert info["nodes"] == len(targets) > 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    a = ort.InferenceSession(str(tmp_path / "fp32.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    b = ort.InferenceSession(str(tmp_path / "sm.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.abs(a[0] - b[0]).max() < 1e-5 and np.abs(a[1] - b[1]).max() < 1e-4
    shapes = {k: tuple(v.shape) for k, v in layout.graph_tensors(model, "default").items()}
    check_adapter_initializers(tmp_path / "sm.onnx", shapes, "smoothing")
