"""Fixtures for the edge serving tests: really exported tiny bundles and real uvicorn servers.

The bundles come from the real export pipeline (``export.pipeline.export_checkpoint``) on a
tiny random MiniLM-shaped encoder, so the server runs real ONNX Runtime sessions on real
graphs; tests may import cloud/export, edge code may not.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.base import make_tiny_base
from cloud.model.checkpoint import save_checkpoint
from contracts.bundle import open_bundle
from contracts.tokenizer import TextTokenizer, TokenizerSettings
from edge.http.app import create_app
from edge.http.server import BackgroundServer
from edge.runtime.bundle_session import BundleSession
from edge.serving.bundle_loader import BundleModelLoader
from edge.serving.loaded_model import LoadedModel
from edge.serving.service import InferenceService
from edge.settings import ServeSettings
from export.pipeline import export_adapter_update, export_checkpoint

ROUTES = ["calculator", "climate", "chitchat", "doc_search"]
# The edge's admin routes (repository load/unload, /v1/knowledge) need a token by default.
EDGE_ADMIN = "edge-test-admin-token"
ADMIN_HEADERS = {"Authorization": f"Bearer {EDGE_ADMIN}"}
MODEL = "autoglm-router"


@dataclass(frozen=True)
class Bundles:
    v1: Path  # version 1.0.0, adapter sets "default" (T=1.3) and "other"
    v2: Path  # version 2.0.0, other adapter weights (different outputs)
    update: Path  # 1.1.0: adapter-only update of v1 carrying v2's adapters
    root: Path


def _checkpoint(root: Path, base: Path, seed: int) -> Path:
    model = AutoGLMModel.from_pretrained(base)
    model.add_adapter_set("default", ROUTES)
    model.add_adapter_set("other", ROUTES)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.adapter_sets.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return save_checkpoint(model, root, base_path=base, temperatures={"default": 1.3, "other": 0.7})


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("edge-bundles")
    base = make_tiny_base(root / "base", seed=0)
    v1 = export_checkpoint(_checkpoint(root / "ckpt1", base, 1), root / "v1", name=MODEL, version="1.0.0")
    ckpt2 = _checkpoint(root / "ckpt2", base, 2)
    v2 = export_checkpoint(ckpt2, root / "v2", name=MODEL, version="2.0.0")
    update = export_adapter_update(ckpt2, root / "update", parent_bundle=v1, version="1.1.0")
    return Bundles(v1, v2, update, root)


@pytest.fixture()
def tampered_bundle(bundles: Bundles, tmp_path: Path) -> Path:
    """A copy of v2 whose graph was modified after signing the manifest's hashes."""
    dst = shutil.copytree(bundles.v2, tmp_path / "tampered")
    graph = next(dst.glob("*.onnx"))
    data = bytearray(graph.read_bytes())
    data[-10] ^= 0xFF
    graph.write_bytes(bytes(data))
    return dst


class Reference:
    """What one text gives alone: tokenizer + BundleSession at batch size 1 (no server)."""

    def __init__(self, bundle_dir: Path, adapter_set: str | None = None, parent: Path | None = None) -> None:
        b = open_bundle(bundle_dir, parent=parent)
        tok = b.manifest.tokenizer
        self.tokenizer = TextTokenizer(
            b.tokenizer_file(), TokenizerSettings(tok.max_length, tok.lowercase, tok.oov_char_fallback)
        )
        self.session = BundleSession(b, adapter_set)
        self.temperature = self.session.temperature
        self.routes = self.session.routes

    def __call__(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self.tokenizer([" ".join(text.split()).lower()])
        emb, logits = self.session.run(ids, mask)
        return emb[0], logits[0]


@pytest.fixture(scope="session")
def reference_v1(bundles: Bundles) -> Reference:
    return Reference(bundles.v1)


@pytest.fixture(scope="session")
def reference_v2(bundles: Bundles) -> Reference:
    return Reference(bundles.v2)


class GatedLoader:
    """The real bundle loader whose engines wait on a per-version gate (open unless a test closes it).

    Lets a test hold a batch inside the engine; counts forward passes and the rows they carried.
    """

    def __init__(self, settings: ServeSettings, parent_of: Callable[[], Path | None] | None = None) -> None:
        self.inner = BundleModelLoader(settings, parent_of)
        self.gates: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}
        self.calls = 0
        self.rows = 0

    def gate(self, version: str) -> threading.Event:
        return self.gates.setdefault(version, _open_event())

    def entered_event(self, version: str) -> threading.Event:
        return self.entered.setdefault(version, threading.Event())

    def __call__(self, source: Path, adapter_set: str | None = None) -> LoadedModel:
        model = self.inner(source, adapter_set)
        engine = model.engine
        gate, entered = self.gate(model.version), self.entered_event(model.version)

        def gated(ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            entered.set()
            gate.wait(30)
            self.calls += 1
            self.rows += int(ids.shape[0])
            return engine(ids, mask)

        model.engine = gated
        return model


def _open_event() -> threading.Event:
    e = threading.Event()
    e.set()
    return e


@dataclass
class Served:
    url: str
    service: InferenceService
    settings: ServeSettings
    loader: GatedLoader


ServerFactory = Callable[..., Served]


def settings_for(tmp: Path, **overrides: object) -> ServeSettings:
    base: dict[str, object] = {
        "ort_intra_op_threads": 1,
        "serve_warmup_batches": 1,
        "model_cache_dir": tmp / "model-cache",
        "providers": ["cpu"],
        "http_admin_token": EDGE_ADMIN,
    }
    base.update(overrides)
    return ServeSettings(**base)  # type: ignore[arg-type]


def wait_ready(url: str, timeout: float = 60.0) -> None:
    """The initial bundle loads in the background: wait for readiness (or its failure)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(url + "/v2/health/ready")
        if r.status_code == 200 or "yet" not in r.json().get("error", "yet"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@pytest.fixture()
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """``start_server(bundle_dir=..., **settings)`` → a real uvicorn server on a free port."""
    running: list[BackgroundServer] = []

    def factory(**overrides: object) -> Served:
        settings = settings_for(tmp_path, **overrides)
        holder: list[InferenceService] = []

        def served_bundle() -> Path | None:
            active = holder[0].active if holder else None
            return active.source if active is not None else None

        loader = GatedLoader(settings, served_bundle)
        service = InferenceService.from_settings(settings, loader=loader)
        holder.append(service)
        server = BackgroundServer(create_app(service, settings)).start()
        running.append(server)
        if settings.bundle_dir is not None:
            wait_ready(server.url)
        return Served(server.url, service, settings, loader)

    yield factory
    for s in running:
        s.stop()


@pytest.fixture()
def served(start_server: ServerFactory, bundles: Bundles) -> Served:
    return start_server(bundle_dir=bundles.v1)
