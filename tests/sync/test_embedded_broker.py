"""The embedded development broker (amqtt, MQTT 3.1.1) carries a sync round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.sync.hub import CloudSync
from cloud.sync.settings import CloudSyncSettings
from edge.sync.agent import EdgeSync
from edge.sync.embedded_broker import EmbeddedBroker, broker_reachable
from tests.support.mosquitto import free_port
from tests.sync.conftest import wait_until

pytest.importorskip("amqtt")


class _Addr:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


def test_round_trip_through_embedded_dev_broker(tmp_path: Path, make_edge: Callable[..., EdgeSync]) -> None:
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port).start()
    hub = None
    try:
        assert broker_reachable("127.0.0.1", port)
        hub = CloudSync(
            CloudSyncSettings(
                sync_mqtt_host="127.0.0.1",
                sync_mqtt_port=port,
                sync_mqtt_v5=False,
                sync_db_path=tmp_path / "c.db",
                sync_rebroadcast="none",
            )
        ).start()
        edge = make_edge(_Addr("127.0.0.1", port), "node-a", mqtt_v5=False).start()
        # amqtt once (in a loaded CI run) took the hub's connection and never acknowledged it;
        # the connection now drops an unacknowledged attempt after 10 s and retries.
        assert hub.wait_connected(30), f"hub: {hub._conn.state}, ack timeouts {hub._conn.ack_timeouts}"
        assert edge.wait_connected(30)
        assert edge.store is not None
        edge.publish_memory([edge.store.put(f"k{i}", "v") for i in range(20)])
        wait_until(lambda: edge.outbox.pending_records() == 0, what="acked via embedded broker")
        assert hub.repo.knowledge_count() == 20
    finally:
        if hub is not None:
            hub.stop()
        broker.stop()


def test_edge_starts_embedded_broker_when_none_is_reachable(
    tmp_path: Path, make_edge: Callable[..., EdgeSync]
) -> None:
    port = free_port()
    edge = make_edge(_Addr("127.0.0.1", port), "node-a", mqtt_embedded_broker=True).start()
    assert edge.wait_connected(15) and broker_reachable("127.0.0.1", port)
    edge.stop()
    assert not broker_reachable("127.0.0.1", port)
