"""Fixtures of the cloud controller tests: services over the shared ``db_target`` database
(tests/cloud/conftest.py: SQLite, PostgreSQL when reachable), a real uvicorn server on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from cloud.api.app import create_app
from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from cloud.settings import CloudSettings
from tests.cloud.conftest import DbTarget

ADMIN = "test-admin-token"
BOOTSTRAP = "test-bootstrap-token"


def make_settings(tmp_path: Path, url: str = "", **kw: object) -> CloudSettings:
    fields: dict[str, object] = {
        "data_dir": tmp_path / "cloud",
        "database_url": url,
        "admin_tokens": [f"alice:{ADMIN}"],
        "bootstrap_token": BOOTSTRAP,
        "mqtt_enabled": False,
        "tool_doc_embeddings": False,
        **kw,
    }
    return CloudSettings(**fields)  # type: ignore[arg-type]


@pytest.fixture
def services(tmp_path: Path, db_target: DbTarget) -> Iterator[CloudServices]:
    svc = CloudServices.build(
        make_settings(tmp_path, db_target.url), channel=RecordingChannel(), db_schema=db_target.schema
    )
    yield svc
    svc.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, svc: CloudServices, run_loops: bool = False) -> None:
        self.svc = svc
        self.port = free_port()
        self.app = create_app(services=svc, run_loops=run_loops)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def client(self, token: str | None = ADMIN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def sqlite_services(tmp_path: Path) -> Iterator[CloudServices]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    yield svc
    svc.close()


@pytest.fixture
def live(sqlite_services: CloudServices) -> Iterator[LiveServer]:
    with LiveServer(sqlite_services) as server:
        yield server
