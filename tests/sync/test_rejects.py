"""Bad messages are rejected, counted by reason and logged; the consumer keeps going."""

from __future__ import annotations

import struct
from collections.abc import Callable

from cloud.sync.hub import CloudSync
from contracts.envelope import ContentType
from contracts.hlc import HybridClock
from contracts.memory import KnowledgeRecord
from edge.sync.agent import EdgeSync
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import RawClient, cloud_rejected, node_frame, wait_until


def _record(node: str, key: str) -> dict:
    h = HybridClock(node).now().pack()
    return KnowledgeRecord(key=key, text="t", created=h, updated=h).model_dump()


def test_malformed_oversized_unknown_version_wrong_sender_are_rejected_and_counted(
    mosquitto_broker: MosquittoBroker,
    make_cloud: Callable[..., CloudSync],
    make_edge: Callable[..., EdgeSync],
) -> None:
    hub = make_cloud(mosquitto_broker, sync_max_message_bytes=8192, sync_rebroadcast="none").start()
    assert hub.wait_connected(30)
    before = {
        r: cloud_rejected(r)
        for r in (
            "malformed",
            "oversized",
            "unknown_schema_version",
            "wrong_sender",
            "invalid_record",
            "unknown_content_type",
        )
    }
    raw = RawClient(mosquitto_broker, "intruder")
    up = "autoglm/up/node-x/memory"
    good = node_frame("node-x", 1, [_record("node-x", "ok-1")])
    raw.publish(up, b"\x00garbage that is not a frame")  # malformed
    raw.publish(up, b'{"json": "but not a frame"}')  # malformed
    raw.publish(up, good[:4] + bytes([2]) + good[5:])  # unknown schema version
    raw.publish(up, b"AGLM" + struct.pack(">BI", 1, 2) + b"{}" + b"x" * 9000)  # oversized (> 8192)
    # node-y's frame on node-x's topic
    raw.publish(up, node_frame("node-y", 1, [_record("node-y", "spoof")]))
    raw.publish(
        "autoglm/up/cloud/memory", node_frame("cloud", 1, [_record("cloud", "spoof2")])
    )  # reserved sender
    raw.publish("autoglm/up/node-x/nonsense", good)  # unknown topic kind
    raw.publish(up, node_frame("node-x", 1, [{"key": "no-hlc"}], mid="bad-rec"))  # invalid record (seq 1)
    # still applied afterwards
    raw.publish(up, node_frame("node-x", 2, [_record("node-x", "ok-2")], mid="m2"))
    wait_until(lambda: hub.repo.knowledge("ok-2") is not None, what="valid message after the bad ones")
    wait_until(hub.idle, what="worker idle")
    assert hub.rejected_counts() == {
        "malformed": 2,
        "unknown_schema_version": 1,
        "oversized": 1,
        "wrong_sender": 2,
        "unknown_content_type": 1,
        "invalid_record": 1,
    }
    for reason, n in hub.rejected_counts().items():
        assert cloud_rejected(reason) - before[reason] == n
    assert hub.repo.knowledge("spoof") is None and hub.repo.knowledge("spoof2") is None
    assert hub.repo.next_seq("node-x") == 3  # the invalid message was dead-lettered, not a gap
    raw.close()


def test_invalid_records_are_dead_lettered_on_the_edge(
    mosquitto_broker: MosquittoBroker,
    make_cloud: Callable[..., CloudSync],
    make_edge: Callable[..., EdgeSync],
) -> None:
    hub = make_cloud(mosquitto_broker, sync_rebroadcast="none").start()
    edge = make_edge(mosquitto_broker, "node-a", store=False).start()
    assert hub.wait_connected(30) and edge.wait_connected(30)
    # A session-state record the cloud cannot validate (bypassing the edge's own checks).
    edge.uplink.put(ContentType.SESSION, [b'{"session_id": "s1"}'])
    wait_until(lambda: edge.outbox.dead_letters(), what="dead letter")
    ((_, kind, reason),) = edge.outbox.dead_letters()
    assert kind == "session" and reason.startswith("invalid_record")
    assert edge.outbox.pending_records() == 0
    # The stream continues behind it.
    h = edge.clock.now().pack()
    edge.publish_memory([KnowledgeRecord(key="after", text="t", created=h, updated=h)])
    wait_until(lambda: hub.repo.knowledge("after") is not None, what="later record applied")


def test_edge_rejects_downlink_not_from_the_cloud(
    mosquitto_broker: MosquittoBroker, make_edge: Callable[..., EdgeSync]
) -> None:
    edge = make_edge(mosquitto_broker, "node-a").start()
    ran: list[dict] = []
    edge.on_command(lambda c: ran.append(c) or {})
    assert edge.wait_connected(30)
    raw = RawClient(mosquitto_broker, "intruder")
    raw.publish(
        "autoglm/down/node-a/commands",
        node_frame("node-b", 0, [{"command_id": "c1", "command": {"x": 1}}], ct=ContentType.COMMAND),
    )
    raw.publish("autoglm/down/node-a/commands", b"junk")
    wait_until(lambda: sum(edge.rejected.values()) == 2, what="two downlink rejects")
    assert edge.rejected == {"wrong_sender": 1, "malformed": 1} and ran == []
    raw.close()
