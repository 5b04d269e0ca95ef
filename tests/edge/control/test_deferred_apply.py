"""A slow apply runs in the control plane's worker, not on paho's network thread: a real node
(serving + sync + control plane) on a real Mosquitto, a real controller's registry, and a cloud
sync hub sending commands. The download is held open by a gate (an injected slow downloader),
while heartbeats keep arriving and the cloud's resends of the same command id start no second
apply; the ack arrives once, after the switch. A newer command replaces a queued older one."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from cloud.sync.hub import CloudSync
from contracts.commands import CommandAck
from edge.control.cache import ModelCache
from edge.control.downloader import RegistryDownloader
from edge.control.settings import ControlSettings
from edge.http.server import free_port
from edge.node import EdgeNode
from edge.sync.settings import SyncSettings
from tests.edge.conftest import MODEL, Bundles, settings_for, wait_ready
from tests.edge.control.helpers import Cloud
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary
from tests.sync.conftest import cloud_settings, wait_until


class GatedDownloader(RegistryDownloader):
    """The real downloader, held at the start of every fetch until the test opens the gate."""

    gate: threading.Event
    fetches: list[str]

    def fetch_version(self, model: str, version: str, *args: Any, **kw: Any) -> Path:
        self.fetches.append(version)
        assert self.gate.wait(60), "gate never opened"
        return super().fetch_version(model, version, *args, **kw)


def _command(cloud: Cloud, version: str) -> dict[str, Any]:
    base = f"/api/v1/models/{MODEL}/versions/{version}"
    return {
        "type": "set_desired_version",
        "model": MODEL,
        "version": version,
        "manifest_sha256": cloud.manifest_sha(version),
        "manifest_url": f"{base}/manifest",
    }


def _duplicates() -> float:
    return REGISTRY.get_sample_value("autoglm_edge_sync_commands_total", {"outcome": "duplicate"}) or 0.0


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto binary not installed")
def test_slow_apply_does_not_block_sync_and_duplicates_apply_once(
    cloud: Cloud, bundles: Bundles, tmp_path: Path
) -> None:
    broker = MosquittoBroker(tmp_path / "broker").start()
    hub = CloudSync(cloud_settings(broker, tmp_path, sync_command_retry_s=0.3)).start()
    acks: list[CommandAck] = []
    beats: list[dict[str, Any]] = []
    hub.on_command_ack(lambda n, ack: acks.append(ack))
    hub.on_heartbeat(lambda n, p: beats.append(p))
    serve = settings_for(
        tmp_path, node_id="edge-slow", http_host="127.0.0.1", http_port=free_port(), bundle_dir=bundles.v1
    )
    dl = GatedDownloader.connect(cloud.url, cloud.node_token("edge-slow"), ModelCache(serve.model_cache_dir))
    assert isinstance(dl, GatedDownloader)
    dl.gate, dl.fetches = threading.Event(), []
    sync = SyncSettings(
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_outbox_path=tmp_path / "outbox.sqlite3",
        mqtt_heartbeat_interval_s=0.1,
        mqtt_reconnect_min_s=0.05,
    )
    node = EdgeNode.build(serve, sync, ControlSettings(), downloader=dl).start()
    try:
        wait_ready(node.url)
        assert node.sync is not None and node.sync.wait_connected(30) and hub.wait_connected(30)
        dup0 = _duplicates()
        cid = hub.send_command("edge-slow", _command(cloud, "1.1.0"))
        wait_until(lambda: dl.fetches == ["1.1.0"], 30, "the apply to start downloading")
        assert node.sync.pending_commands == [cid]

        # Held in the download: paho's thread is free (heartbeats; cloud resends are seen and dropped).
        n = len(beats)
        wait_until(lambda: len(beats) >= n + 5, 20, "heartbeats while the apply is held")
        assert all(b["model_version"] == "1.0.0" for b in beats[n:])
        wait_until(lambda: _duplicates() >= dup0 + 2, 20, "two cloud resends seen as duplicates")
        assert acks == [] and dl.fetches == ["1.1.0"]

        # Two newer commands while 1.1.0 is held: 2.0.0 waits in the queue, 1.0.0 replaces it.
        superseded = hub.send_command("edge-slow", _command(cloud, "2.0.0"))
        last = hub.send_command("edge-slow", _command(cloud, "1.0.0"))
        gone = hub.wait_command_ack(superseded, 20)
        assert gone is not None and gone.ok is True and gone.result["superseded_by"] == last
        assert "version" not in gone.result

        dl.gate.set()
        ack = hub.wait_command_ack(cid, 60)
        assert ack is not None and ack.ok is True, ack
        assert ack.result["version"] == "1.1.0" and ack.result["detail"] == "applied"
        final = hub.wait_command_ack(last, 60)
        assert final is not None and final.ok is True and final.result["version"] == "1.0.0"
        # One apply per command id (1.1.0 also fetched its parent 1.0.0); 2.0.0 never ran.
        assert dl.fetches[0] == "1.1.0" and "2.0.0" not in dl.fetches
        assert [(a["version"], a["ok"]) for a in node.control.applied] == [("1.1.0", True), ("1.0.0", True)]
        assert sorted(a.command_id for a in acks) == sorted([cid, superseded, last])
        assert node.sync.pending_commands == []
        assert httpx.get(f"{node.url}/v2/models/{MODEL}").json()["versions"] == ["1.0.0"]
    finally:
        dl.gate.set()
        node.stop()
        hub.stop()
        broker.stop()
