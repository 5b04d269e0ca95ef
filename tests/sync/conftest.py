"""Fixtures of the sync tests: a real Mosquitto per test, edge/cloud factories, a started hub with two
nodes, waiting helpers, hand-made frames of a node and the cloud's reject counter."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from prometheus_client import REGISTRY

from cloud.sync.hub import CloudSync
from cloud.sync.settings import CloudSyncSettings
from contracts.envelope import ContentType, Encoding, Envelope, encode
from contracts.hlc import HybridClock
from edge.memory.store import MemoryStore
from edge.sync.agent import EdgeSync
from edge.sync.settings import SyncSettings
from tests.support.mosquitto import MosquittoBroker, mosquitto_broker  # noqa: F401  (fixture)
from tests.support.wait import wait_for

wait_until = wait_for  # the MQTT tests' name for tests/support/wait.wait_for


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

    def factory(
        broker: MosquittoBroker,
        node_id: str = "node-a",
        *,
        store: bool = True,
        outbox: Path | None = None,
        **kw: Any,
    ) -> EdgeSync:
        st = MemoryStore(tmp_path / f"{node_id}-memory.sqlite3", node_id) if store else None
        edge = EdgeSync(
            edge_settings(broker, **kw), outbox or tmp_path / f"{node_id}-outbox.sqlite3", node_id, store=st
        )
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


class TwoNodes(NamedTuple):
    hub: CloudSync
    a: EdgeSync  # node-a
    b: EdgeSync  # node-b


@pytest.fixture
def two_nodes(
    mosquitto_broker: MosquittoBroker,  # noqa: F811  (the fixture imported above)
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> TwoNodes:
    """A started cloud hub and two started nodes, node-a and node-b (each with a memory store), all
    connected to the test's broker."""
    hub = make_cloud(mosquitto_broker).start()
    a = make_edge(mosquitto_broker, "node-a").start()
    b = make_edge(mosquitto_broker, "node-b").start()
    assert a.wait_connected(30) and b.wait_connected(30) and hub.wait_connected(30)
    return TwoNodes(hub, a, b)


def node_frame(
    node: str, seq: int, records: list[dict], ct: ContentType = ContentType.MEMORY, mid: str = "m"
) -> bytes:
    """A hand-made LZ4 frame as ``node`` would send it (stamped with a fresh clock of ``node``)."""
    return encode(
        Envelope(
            message_id=mid,
            node_id=node,
            seq=seq,
            hlc=HybridClock(node).now().pack(),
            content_type=ct,
            records=records,
            encoding=Encoding.LZ4,
        )
    )


def cloud_rejected(reason: str) -> float:
    """The cloud hub's count of refused sync messages for ``reason`` (process-wide Prometheus)."""
    return REGISTRY.get_sample_value("autoglm_cloud_sync_rejected_messages_total", {"reason": reason}) or 0.0


class RawClient:
    """A bare paho MQTT 5 client for poking the broker (publishing hand-made frames, ACL checks)."""

    def __init__(
        self,
        broker: MosquittoBroker,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self.messages: list[tuple[str, bytes]] = []
        self.puback: dict[int, int] = {}
        self._cv = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connect_rc: Any = None
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._note(("sub", mid), rcs)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_until(lambda: self.connect_rc is not None, 10, "CONNACK")

    def _note(self, key: Any, value: Any) -> None:
        with self._cv:
            self.puback[key] = value

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connect_rc = rc

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        with self._cv:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def _on_publish(self, c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        self._note(mid, rc)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> Any:
        """Publish and wait for the PUBACK; returns its reason code."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            return None
        return wait_until(lambda: self.puback.get(info.mid), 10, f"PUBACK for {topic}")

    def subscribe(self, topic: str) -> Any:
        _, mid = self.client.subscribe(topic, qos=1)
        return wait_until(lambda: self.puback.get(("sub", mid)), 10, f"SUBACK for {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
