"""`/readyz` reports the MQTT link: not ready while the controller runs the sync and the broker is gone."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from cloud.api.container import CloudServices
from tests.cloud.controller.conftest import LiveServer, make_settings
from tests.support.mosquitto import MosquittoBroker


def _ready(url: str, want: int, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}/readyz", timeout=5)
        if r.status_code == want:
            return dict(r.json())
        assert time.monotonic() < deadline, f"/readyz stayed {r.status_code}: {r.text}"
        time.sleep(0.1)


def test_readyz_follows_the_broker_link(tmp_path: Path) -> None:
    with MosquittoBroker(tmp_path) as broker:
        settings = make_settings(tmp_path, mqtt_enabled=True, mqtt_host=broker.host, mqtt_port=broker.port)
        svc = CloudServices.build(settings)
        try:
            with LiveServer(svc) as server:  # run_loops=False: the link starts at once
                body = _ready(server.url, 200)
                assert body["checks"] == {"database": True, "mqtt_connected": True}
                broker.stop()
                body = _ready(server.url, 503)
                assert body["status"] == "not ready" and body["checks"]["mqtt_connected"] is False  # type: ignore[index]
                broker.start()
                _ready(server.url, 200)  # the link reconnects by itself
        finally:
            svc.close()
