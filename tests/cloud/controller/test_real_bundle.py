"""A really exported bundle (tiny random encoder, real ONNX) and an adapter-only update go
through the registry over HTTP; an edge downloads the update with its node token (the shared
encoder file included), verifies it and runs it in ONNX Runtime."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
import torch

from contracts.bundle import open_bundle, pack_bundle
from tests.cloud.controller.conftest import BOOTSTRAP, LiveServer

ROUTES = ["calculator", "climate", "chitchat", "doc_search"]


def _checkpoint(root: Path, base: Path, seed: int) -> Path:
    from cloud.model.autoglm_model import AutoGLMModel
    from cloud.model.checkpoint import save_checkpoint

    model = AutoGLMModel.from_pretrained(base)
    model.add_adapter_set("default", ROUTES)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_sets.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return save_checkpoint(model, root, base_path=base)


def test_real_bundle_and_adapter_update_round_trip(live: LiveServer, tmp_path: Path) -> None:
    pipeline = pytest.importorskip("export.pipeline")
    from cloud.model.base import make_tiny_base
    from edge.runtime.bundle_session import smoke_test

    base = make_tiny_base(tmp_path / "base", seed=0)
    full = pipeline.export_checkpoint(
        _checkpoint(tmp_path / "c1", base, 1), tmp_path / "v1", name="router", version="1.0.0"
    )
    update = pipeline.export_adapter_update(
        _checkpoint(tmp_path / "c2", base, 2), tmp_path / "v1a", parent_bundle=full, version="1.0.1"
    )
    with live.client() as admin:
        for b in (full, update):
            r = admin.post(
                "/api/v1/bundles", content=pack_bundle(b, tmp_path / f"{b.name}.tar.gz").read_bytes()
            )
            assert r.status_code == 201, r.text
        v = admin.get("/api/v1/models/router/versions/1.0.1").json()
    assert v["kind"] == "adapter_update" and v["parent"] == "router@1.0.0"
    inherited = [f for f in v["files"] if f["inherited"]]
    assert inherited and all(f["path"].endswith((".onnx", ".json")) for f in inherited)

    token = httpx.post(
        f"{live.url}/api/v1/nodes/register",
        json={"node_id": "edge-real"},
        headers={"Authorization": f"Bearer {BOOTSTRAP}"},
    ).json()["token"]
    with live.client(token) as edge:
        for version in ("1.0.0", "1.0.1"):
            files = edge.get(f"/api/v1/models/router/versions/{version}").json()["files"]
            for f in files:
                r = edge.get(f"/api/v1/models/router/versions/{version}/files/{f['path']}")
                assert r.status_code == 200 and r.headers["etag"] == f'"{f["sha256"]}"'
                assert hashlib.sha256(r.content).hexdigest() == f["sha256"]
                (tmp_path / version / f["path"]).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / version / f["path"]).write_bytes(r.content)
        parent_files = {
            f["path"]: f["sha256"] for f in edge.get("/api/v1/models/router/versions/1.0.0").json()["files"]
        }
    for f in inherited:  # the update shares the parent's stored files (content addressing)
        assert parent_files[f["path"]] == f["sha256"]
    # What the edge received verifies (schema + hashes) and runs: the update's adapters bound
    # into the parent's encoder graph in ONNX Runtime.
    bundle = open_bundle(tmp_path / "1.0.1", verify=True, parent=tmp_path / "1.0.0")
    result = smoke_test(bundle, "default")
    assert result["routes"]
