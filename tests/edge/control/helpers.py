"""Helpers of the edge control-plane tests (imported by the fixtures and the e2e test)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import httpx

from cloud.api.container import CloudServices
from contracts.manifest import FileEntry, Manifest
from tests.cloud.controller.conftest import ADMIN, BOOTSTRAP, LiveServer
from tests.edge.conftest import MODEL


def make_broken_bundle(src: Path, dst: Path, version: str) -> Path:
    """A copy of ``src`` as ``version`` whose encoder graph bytes are garbage (hashes updated)."""
    shutil.copytree(src, dst)
    man = Manifest.from_yaml((dst / "manifest.yaml").read_bytes())
    graph = man.graphs["encoder"]
    garbage = b"this is not an ONNX graph " * 64
    (dst / graph.file).write_bytes(garbage)
    sha = hashlib.sha256(garbage).hexdigest()
    files = dict(man.files)
    files[graph.file] = FileEntry(sha256=sha, size=len(garbage))
    graphs = {**man.graphs, "encoder": graph.model_copy(update={"sha256": sha})}
    man = man.model_copy(update={"version": version, "files": files, "graphs": graphs})
    (dst / "manifest.yaml").write_text(man.to_yaml(), encoding="utf-8")
    (dst / "manifest.sig").unlink(missing_ok=True)
    return dst


def make_overlong_bundle(src: Path, dst: Path, version: str, max_length: int = 512) -> Path:
    """A copy of ``src`` as ``version`` whose manifest tokenizer allows more tokens than the
    encoder has positions (a mis-exported bundle): it verifies, loads and warms up (short
    texts), and fails every forward pass holding a text longer than the encoder's positions."""
    shutil.copytree(src, dst)
    man = Manifest.from_yaml((dst / "manifest.yaml").read_bytes())
    tok = man.tokenizer.model_copy(update={"max_length": max_length})
    (dst / "manifest.yaml").write_text(
        man.model_copy(update={"version": version, "tokenizer": tok}).to_yaml(), encoding="utf-8"
    )
    (dst / "manifest.sig").unlink(missing_ok=True)
    return dst


@dataclass
class Cloud:
    server: LiveServer
    svc: CloudServices

    @property
    def url(self) -> str:
        return self.server.url

    def node_token(self, node_id: str, labels: dict[str, str] | None = None) -> str:
        r = httpx.post(
            f"{self.url}/api/v1/nodes/register",
            json={"node_id": node_id, "labels": labels or {}},
            headers={"Authorization": f"Bearer {BOOTSTRAP}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    def admin(self) -> httpx.Client:
        return self.server.client(ADMIN)

    def manifest_sha(self, version: str) -> str:
        return str(self.svc.registry.get_version(MODEL, version).manifest_sha256)
