"""Nothing lost, nothing applied twice: broker crash mid-stream, broker away, edge restart."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from cloud.sync.hub import CloudSync
from contracts.hlc import HybridClock
from contracts.memory import KnowledgeRecord
from edge.sync.agent import EdgeSync
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import wait_until

TEXT = "Conveyor 3 jams when the carton width exceeds 42 cm; operator should reduce belt speed. "


def _records(node: str, n: int, start: int = 0) -> list[KnowledgeRecord]:
    clock = HybridClock(node)
    out = []
    for i in range(start, start + n):
        h = clock.now().pack()
        out.append(
            KnowledgeRecord(
                key=f"{node}/k{i:05d}",
                text=TEXT * 2 + str(i),
                source=node,
                confidence=0.8,
                created=h,
                updated=h,
            )
        )
    return out


def _assert_exactly_once(hub: CloudSync, node: str, n: int) -> None:
    # Every record is in the merged store, and the applied-record counter (which counts each
    # applied message's records) equals n: no message was applied twice.
    assert hub.repo.knowledge_count() == n
    assert hub.applied_records["memory"] == n
    for key in (f"{node}/k00000", f"{node}/k{n // 2:05d}", f"{node}/k{n - 1:05d}"):
        assert hub.repo.knowledge(key) is not None


def test_broker_crash_while_streaming_10k_records_applies_each_exactly_once(
    tmp_path: Path, make_edge: Callable[..., EdgeSync], make_cloud: Callable[..., CloudSync]
) -> None:
    broker = MosquittoBroker(tmp_path).start()
    try:
        hub = make_cloud(broker, sync_rebroadcast="none").start()
        edge = make_edge(
            broker,
            "node-a",
            store=False,
            mqtt_batch_max_records=200,
            mqtt_window_messages=8,
            mqtt_ack_timeout_s=2.0,
        ).start()
        assert hub.wait_connected(30) and edge.wait_connected(30)
        records = _records("node-a", 10_000)
        crashed = threading.Event()

        def produce() -> None:
            for i in range(0, len(records), 100):
                edge.publish_memory(records[i : i + 100])
                if i == 3000:
                    crashed.wait(30)  # keep streaming after the crash, while the broker is down

        producer = threading.Thread(target=produce)
        producer.start()
        wait_until(lambda: hub.applied_records["memory"] >= 1500, what="stream under way")
        broker.kill()  # SIGKILL: in-flight QoS 1 messages and unsaved sessions are lost
        crashed.set()
        producer.join(60)
        assert not producer.is_alive()
        assert edge.outbox.pending_records() > 0  # waiting for the broker, not lost
        broker.start()  # same port
        wait_until(
            lambda: edge.outbox.pending_records() == 0, timeout=90, what="outbox drained after restart"
        )
        wait_until(hub.idle, what="cloud worker idle")
        _assert_exactly_once(hub, "node-a", 10_000)
        assert edge.connect_count >= 2 and hub.rejected_counts() == {}
    finally:
        broker.stop()


def test_records_wait_in_outbox_while_broker_is_away_and_survive_edge_restart(
    tmp_path: Path, make_edge: Callable[..., EdgeSync], make_cloud: Callable[..., CloudSync]
) -> None:
    broker = MosquittoBroker(tmp_path).start()
    try:
        hub = make_cloud(broker, sync_rebroadcast="none").start()
        assert hub.wait_connected(30)
        broker.stop()
        outbox = tmp_path / "node-a-outbox.sqlite3"
        edge = make_edge(broker, "node-a", store=False, outbox=outbox).start()
        edge.publish_memory(_records("node-a", 300))
        hid = edge.publish_hard_example({"text": "unsure input", "score": 0.3})
        assert not edge.wait_connected(0.5)
        assert edge.outbox.pending_records() == 301
        edge.stop()  # the edge process goes away with everything still queued

        restarted = make_edge(broker, "node-a", store=False, outbox=outbox)
        assert restarted.outbox.pending_records() == 301
        restarted.publish_memory(_records("node-a", 200, start=300))
        restarted.start()
        broker.start()
        wait_until(lambda: restarted.outbox.pending_records() == 0, timeout=60, what="flush on reconnect")
        wait_until(hub.idle, what="cloud worker idle")
        _assert_exactly_once(hub, "node-a", 500)
        assert [e["id"] for e in hub.repo.hard_examples("node-a")] == [hid]
    finally:
        broker.stop()


def test_cloud_restart_keeps_cursor_and_dedups_resends(
    tmp_path: Path, make_edge: Callable[..., EdgeSync], make_cloud: Callable[..., CloudSync]
) -> None:
    broker = MosquittoBroker(tmp_path).start()
    try:
        hub = make_cloud(broker, sync_rebroadcast="none").start()
        edge = make_edge(broker, "node-a", store=False).start()
        assert hub.wait_connected(30) and edge.wait_connected(30)
        edge.publish_memory(_records("node-a", 400))
        wait_until(lambda: edge.outbox.pending_records() == 0, what="first batch acked")
        hub.stop()
        edge.publish_memory(_records("node-a", 400, start=400))  # unacked while the cloud is down
        hub2 = make_cloud(broker, sync_rebroadcast="none").start()
        wait_until(lambda: edge.outbox.pending_records() == 0, timeout=60, what="second batch acked")
        wait_until(hub2.idle, what="cloud worker idle")
        assert hub2.repo.knowledge_count() == 800 and hub2.applied_records["memory"] == 400
        assert hub2.repo.next_seq("node-a") > 1
    finally:
        broker.stop()
