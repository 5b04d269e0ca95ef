"""Fixtures of the console tests: a real controller (uvicorn on a free port, SQLite) seeded
through its HTTP API with nodes, heartbeats, two versions and a rollout whose first step's
analysis passed; and a headless Debian Chromium driven by Selenium.

The test drives the rollout controller itself (``svc.rollouts.tick()``, the app runs no loops),
so every state the pages show is reached deterministically; nothing is mocked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import BOOTSTRAP, LiveServer, make_settings

VIEWER = "test-viewer-token"
MODEL = "tiny"
N_NODES = 20
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@dataclass
class Console:
    server: LiveServer
    svc: CloudServices
    node_tokens: dict[str, str]
    rollout_id: int
    shots: Path
    http: httpx.Client
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def heartbeat(self, node: str, **fields: object) -> None:
        body = {
            "node_id": node,
            "ts_ms": 0,
            "model_version": self.versions.get(node, "1.0.0"),
            "adapters": ["default"],
            "provider": "CPUExecutionProvider",
            "requests": 120,
            "error_rate": 0.004,
            "latency_p99_ms": 8.0,
            "fallback_rate": 0.02,
            "outbox_records": 3,
            "resources": {"cpu_percent": 12.5, "mem_mb": 310.0},
            **fields,
        }
        r = self.http.post(
            f"/api/v1/nodes/{node}/heartbeat",
            json=body,
            headers={"Authorization": f"Bearer {self.node_tokens[node]}"},
        )
        assert r.status_code == 204, r.text


def sign_in(client: httpx.Client, token: str) -> str:
    """Sign in through the form as a browser would; returns the session's CSRF token."""
    page = client.get("/ui/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert login_csrf, page.text
    r = client.post(
        "/ui/login",
        data={"token": token, "login_csrf": login_csrf.group(1), "next": "/ui/fleet"},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )
    assert r.status_code == 303, r.text
    fleet = client.get("/ui/fleet")
    csrf = re.search(r'name="csrf" value="([^"]+)"', fleet.text)
    assert csrf, fleet.text
    return csrf.group(1)


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    monkeypatch.setenv("AUTOGLM_CLOUD_CONSOLE_VIEWER_TOKENS", f'["{VIEWER}"]')
    monkeypatch.setenv("AUTOGLM_CLOUD_CONSOLE_POLL_INTERVAL_S", "0.5")
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    v1 = make_bundle(tmp_path / "b1", MODEL, "1.0.0")
    v2 = make_bundle(tmp_path / "b2", MODEL, "1.1.0", parent=v1, adapter_seed=7)
    shots = Path(os.environ.get("AUTOGLM_CONSOLE_SCREENSHOTS") or tmp_path / "shots")
    with LiveServer(svc) as server, server.client() as admin, server.client(BOOTSTRAP) as boot:
        for b, metrics in ((v1, {"accuracy": 0.962}), (v2, {"accuracy": 0.9735})):
            r = admin.post(
                "/api/v1/bundles/from-path",
                json={"path": str(b), "metrics": metrics, "lineage": {"dataset_sha256": "9f2c" * 16}},
            )
            assert r.status_code == 201, r.text
        r = admin.put(
            f"/api/v1/models/{MODEL}/aliases/stable", json={"version": "1.0.0", "reason": "first release"}
        )
        assert r.status_code == 200, r.text
        tokens = {}
        for i in range(N_NODES):
            node = f"edge-{i:02d}"
            labels = {"site": "plant-a" if i < 12 else "plant-b", "hw": "gpu" if i % 5 == 0 else "cpu"}
            r = boot.post("/api/v1/nodes/register", json={"node_id": node, "labels": labels})
            assert r.status_code == 201, r.text
            tokens[node] = r.json()["token"]
        c = Console(server, svc, tokens, 0, shots, boot)
        for node in tokens:
            c.heartbeat(node)
        r = admin.post(
            "/api/v1/rollouts",
            json={
                "model": MODEL,
                "version": "1.1.0",
                "steps": [10, 50, 100],
                "pause_s": 0,
                "apply_timeout_s": 3600,
                "analysis": {"min_requests": 50},
            },
        )
        assert r.status_code == 201, r.text
        c.rollout_id = r.json()["id"]
        canary = svc.rollouts.get(c.rollout_id).targets
        assert len(canary) == 2
        for node in canary:  # the canaries run the new version and report traffic on it
            c.versions[node] = "1.1.0"
        for rounds in range(3):
            for node in tokens:
                c.heartbeat(node, latency_p99_ms=8.0 + rounds + (1.5 if node in canary else 0.0))
            svc.rollouts.tick()
        r = admin.get(f"/api/v1/rollouts/{c.rollout_id}")
        assert r.json()["step_index"] == 1 and r.json()["state"] == "progressing", r.json()
        yield c
    svc.close()


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("Debian chromium / chromium-driver not installed (scripts/test.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1360,900",
        "--force-device-scale-factor=1",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
