"""The shipped ACL (config/mosquitto/acl) with a mosquitto_passwd password file: a node writes
only its own uplink topics and reads only its own downlink + broadcasts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.sync.hub import CloudSync
from edge.sync.agent import EdgeSync
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import RawClient, wait_until

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"autoglm-cloud": "cloud-secret", "node-a": "a-secret", "node-b": "b-secret"}


@pytest.fixture
def secured(tmp_path: Path) -> MosquittoBroker:
    broker = MosquittoBroker(tmp_path, acl=(ROOT / "config/mosquitto/acl").read_text(), passwords=PASSWORDS)
    broker.start()
    yield broker
    broker.stop()


def test_node_cannot_publish_or_subscribe_on_another_nodes_topics(secured: MosquittoBroker) -> None:
    cloud = RawClient(secured, "cloud-watch", "autoglm-cloud", "cloud-secret")
    assert not cloud.connect_rc.is_failure
    cloud.subscribe("autoglm/up/#")
    node_a = RawClient(secured, "autoglm-edge-node-a", "node-a", "a-secret")
    # Forbidden first, then allowed, on one connection: Mosquitto handles them in order, so once
    # the allowed one has reached the cloud the forbidden one would have arrived before it.
    for topic in (
        "autoglm/up/node-b/memory",
        "autoglm/up/node-b/status",
        "autoglm/down/node-b/commands",
        "autoglm/fleet/memory",
        "autoglm/groups/g1/commands",
    ):
        node_a.publish(topic, b"forged")
    node_a.publish("autoglm/up/node-a/memory", b"mine")
    wait_until(lambda: cloud.messages, what="node-a's own message at the cloud")
    assert cloud.messages == [("autoglm/up/node-a/memory", b"mine")]

    # node-a cannot read node-b's commands either, but gets its own and the fleet's.
    # (Mosquitto 2.0 grants the SUBSCRIBE but checks the read ACL on every delivery.)
    node_a.subscribe("autoglm/down/node-b/#")
    node_a.subscribe("autoglm/down/node-a/#")
    node_a.subscribe("autoglm/fleet/#")
    cloud.publish("autoglm/down/node-b/commands", b"for b")
    cloud.publish("autoglm/down/node-a/commands", b"for a")
    cloud.publish("autoglm/fleet/memory", b"for all")
    wait_until(lambda: len(node_a.messages) == 2, what="node-a's downlink")
    assert sorted(node_a.messages) == [
        ("autoglm/down/node-a/commands", b"for a"),
        ("autoglm/fleet/memory", b"for all"),
    ]
    node_a.close()
    cloud.close()


def test_wrong_or_missing_credentials_are_refused(secured: MosquittoBroker) -> None:
    bad = RawClient(secured, "x1", "node-a", "wrong")
    assert bad.connect_rc.is_failure
    bad.close()
    anon = RawClient(secured, "x2")
    assert anon.connect_rc.is_failure
    anon.close()


def test_real_sync_works_under_the_acl(
    secured: MosquittoBroker, make_edge: Callable[..., EdgeSync], make_cloud: Callable[..., CloudSync]
) -> None:
    hub = make_cloud(secured, sync_mqtt_username="autoglm-cloud", sync_mqtt_password="cloud-secret").start()
    edge = make_edge(secured, "node-a", mqtt_username="node-a", mqtt_password="a-secret").start()
    assert hub.wait_connected(30) and edge.wait_connected(30)
    edge.on_command(lambda c: {"ok": True})
    assert edge.store is not None
    edge.publish_memory([edge.store.put("k", "v")])
    wait_until(lambda: edge.outbox.pending_records() == 0, what="acked under ACL")
    cid = hub.send_command("node-a", {"type": "ping"})
    assert hub.wait_command_ack(cid, 20) is not None
    edge.stop(graceful=False)
    wait_until(lambda: hub.online_nodes() == [], what="Last Will allowed by the ACL")
