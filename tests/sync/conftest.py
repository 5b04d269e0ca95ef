"""Fixtures of the sync tests: a real Mosquitto per test, edge/cloud factories, waiting helpers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.sync.hub import CloudSync
from cloud.sync.settings import CloudSyncSettings
from edge.memory.store import MemoryStore
from edge.sync.agent import EdgeSync
from edge.sync.settings import SyncSettings
from tests.support.mosquitto import MosquittoBroker, mosquitto_broker  # noqa: F401  (fixture)


def wait_until(pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``pred`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def edge_settings(broker: MosquittoBroker, **kw: Any) -> SyncSettings:
    base: dict[str, Any] = dict(
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_reconnect_min_s=0.05,
        mqtt_reconnect_max_s=0.5,
        mqtt_ack_timeout_s=3.0,
        mqtt_heartbeat_interval_s=3600,
    )
    base.update(kw)
    return SyncSettings(**base)


def cloud_settings(broker: MosquittoBroker, tmp_path: Path, **kw: Any) -> CloudSyncSettings:
    base: dict[str, Any] = dict(
        sync_mqtt_host=broker.host,
        sync_mqtt_port=broker.port,
        sync_db_path=tmp_path / "cloud-sync.sqlite3",
        sync_mqtt_client_id=f"cloud-{tmp_path.name}",
        sync_command_retry_s=1.0,
    )
    base.update(kw)
    return CloudSyncSettings(**base)


@pytest.fixture
def make_edge(tmp_path: Path) -> Iterator[Callable[..., EdgeSync]]:
    made: list[EdgeSync] = []

    def factory(broker: MosquittoBroker, node_id: str = "node-a", *, store: bool = True, outbox: Path | None = None,
                **kw: Any) -> EdgeSync:
        st = MemoryStore(tmp_path / f"{node_id}-memory.sqlite3", node_id) if store else None
        edge = EdgeSync(edge_settings(broker, **kw), outbox or tmp_path / f"{node_id}-outbox.sqlite3", node_id,
                        store=st)
        made.append(edge)
        return edge

    yield factory
    for e in made:
        with contextlib.suppress(Exception):
            e.stop()


@pytest.fixture
def make_cloud(tmp_path: Path) -> Iterator[Callable[..., CloudSync]]:
    made: list[CloudSync] = []

    def factory(broker: MosquittoBroker, **kw: Any) -> CloudSync:
        hub = CloudSync(cloud_settings(broker, tmp_path, **kw))
        made.append(hub)
        return hub

    yield factory
    for h in made:
        with contextlib.suppress(Exception):
            h.stop()
