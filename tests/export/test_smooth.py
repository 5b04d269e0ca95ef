"""Activation smoothing is an exact fp32 rewrite and leaves the adapter initializers bindable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from cloud.data.generator import examples_for_template
from cloud.data.new_route import NEW_ROUTE, support_set
from cloud.model.checkpoint import load_checkpoint
from cloud.training.new_route import NewRouteConfig, train_new_route
from cloud.training.route_gate import GateConfig
from contracts.routes import DEFAULT_ROUTES
from contracts.tokenizer import TextTokenizer
from export.onnx_graph import check_adapter_initializers, export_adapter_set_graph
from export.optimize import nodes_consuming, optimize_fp32
from export.pipeline import SAMPLE_TEXTS
from export.quantize import quantizable_nodes
from export.smooth import smooth_graph
from tests.export.helpers import make_checkpoint


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


def test_smoothing_is_exact_when_two_passes_share_the_weights(tmp_path: Path) -> None:
    """A ``cat`` gate runs the encoder twice in one graph (with and without adapters): the passes'
    MatMuls share weight initializers, which get one scale for all their sharers (scaling the shared
    weight once per node broke the int8 export of such a graph: route agreement 0.18)."""
    ckpt = make_checkpoint(tmp_path / "c", routes=list(DEFAULT_ROUTES))
    replay = [e for r in DEFAULT_ROUTES for e in examples_for_template(f"en.{r}.00", 6)]
    res = train_new_route(
        ckpt,
        NEW_ROUTE,
        support_set(8),
        tmp_path / "gated",
        config=NewRouteConfig(method="gate", gate=GateConfig(kind="lr", feature="cat")),
        replay=replay,
    )
    model, meta = load_checkpoint(res.checkpoint_dir)
    assert model.route_gates
    layout = export_adapter_set_graph(model, "default", tmp_path / "raw.onnx")
    optimize_fp32(tmp_path / "raw.onnx", tmp_path / "fp32.onnx", num_heads=2, hidden_size=32)
    adapter_nodes = nodes_consuming(tmp_path / "fp32.onnx", set(layout.transposed))
    targets = [n for n in quantizable_nodes(tmp_path / "fp32.onnx") if n not in adapter_nodes]
    tok = TextTokenizer(Path(meta.base_path) / "tokenizer.json")
    ids, mask = tok(SAMPLE_TEXTS + [e.text for e in replay[:24]])
    feeds = {"input_ids": ids, "attention_mask": mask}
    info = smooth_graph(
        tmp_path / "fp32.onnx", tmp_path / "sm.onnx", nodes=targets, calib_feeds=[feeds], alpha=0.75
    )
    assert info["shared_weights"] > 0
    a = ort.InferenceSession(str(tmp_path / "fp32.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    b = ort.InferenceSession(str(tmp_path / "sm.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert np.abs(a[0] - b[0]).max() < 1e-5 and np.abs(a[1] - b[1]).max() < 1e-3
    assert (a[1].argmax(-1) == b[1].argmax(-1)).all()
