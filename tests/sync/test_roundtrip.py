"""Edge <-> cloud through a real Mosquitto: memory, rebroadcast, resync, commands, heartbeats,
status + Last Will, hard examples, events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cloud.sync.hub import CloudSync
from contracts.commands import Command, CommandAck
from contracts.hlc import HLC
from contracts.memory import KnowledgeRecord
from edge.sync.agent import EdgeSync
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import TwoNodes, wait_until


def test_memory_round_trip_rebroadcast_and_resync(
    two_nodes: TwoNodes, mosquitto_broker: MosquittoBroker, make_edge: Callable[..., EdgeSync]
) -> None:
    hub, a, b = two_nodes
    got_b: list[KnowledgeRecord] = []
    b.on_memory(got_b.extend)
    wait_until(lambda: set(hub.online_nodes()) == {"node-a", "node-b"}, what="both nodes online")

    assert a.store is not None and b.store is not None
    recs = [a.store.put(f"fact-{i}", f"valve {i} opens at {i} bar", source="node-a") for i in range(50)]
    private = a.store.put("private", "node-a only", shared=False)
    a.publish_memory([*recs, private])
    wait_until(lambda: hub.repo.knowledge_count() == 51, what="cloud merged 51 records")
    assert hub.repo.knowledge("fact-7") == recs[7]
    wait_until(lambda: a.outbox.pending_records() == 0, what="node-a outbox drained by acks")
    # Shared knowledge reaches node-b through the fleet rebroadcast; the private entry does not.
    wait_until(lambda: b.store.count() == 50, what="rebroadcast applied on node-b")
    assert b.store.get("fact-3") == recs[3] and b.store.get("private") is None
    assert {r.key for r in got_b} == {f"fact-{i}" for i in range(50)}

    # A delete on node-b wins everywhere (tombstone, newer HLC).
    tomb = b.store.delete("fact-3")
    assert tomb is not None
    b.publish_memory([tomb])
    wait_until(lambda: a.store.get("fact-3") is None, what="tombstone reached node-a")
    assert hub.repo.knowledge("fact-3") == tomb

    # Cloud-authored knowledge for the fleet; both nodes ack the broadcast.
    now = hub.clock.now().pack()
    ids = hub.broadcast_memory(
        [KnowledgeRecord(key="policy", text="stop line on alarm", created=now, updated=now)]
    )
    wait_until(
        lambda: all(hub.broadcast_acked_by(i) == {"node-a", "node-b"} for i in ids), what="broadcast acks"
    )
    assert a.store.get("policy") is not None and b.store.get("policy") is not None

    # A node that was away resyncs: snapshot (no cursor) then deltas since its cursor.
    c = make_edge(mosquitto_broker, "node-c").start()
    wait_until(lambda: c.resyncs_completed >= 1, what="node-c initial resync")
    assert c.store is not None
    assert c.store.count() == 50 and c.store.get("fact-3") is None and c.store.get("private") is None
    cursor = c.outbox.get_state("resync_cursor")
    assert cursor and HLC.parse(cursor).node_id == "cloud"
    a.publish_memory([a.store.put("late", "added after node-c synced")])
    wait_until(lambda: hub.repo.knowledge("late") is not None, what="late record merged")
    got_c: list[KnowledgeRecord] = []
    c.on_memory(got_c.extend)
    before = c.resyncs_completed
    c.request_resync()
    wait_until(lambda: c.resyncs_completed > before, what="delta resync")
    assert any(r.key == "late" for r in got_c)
    assert hub.rejected_counts() == {} and a.rejected == {} and b.rejected == {}


def test_commands_are_acked_once_and_resent_until_acked(
    mosquitto_broker: MosquittoBroker,
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> None:
    hub = make_cloud(mosquitto_broker).start()
    acks: list[tuple[str, CommandAck]] = []
    hub.on_command_ack(lambda n, ack: acks.append((n, ack)))
    assert hub.wait_connected(30)
    # Sent while the node is not even running: it stays pending and is resent.
    cid = hub.send_command("node-a", {"type": "set_desired_model", "version": "1.4.0"})
    edge = make_edge(mosquitto_broker, "node-a")
    runs: list[Command] = []

    def handler(cmd: Command) -> dict[str, Any]:
        runs.append(cmd)
        if cmd.type == "explode":
            raise RuntimeError("boom")
        return {"applied": cmd.version}

    edge.on_command(handler)
    edge.start()
    ack = hub.wait_command_ack(cid, 20)
    assert ack is not None and ack.ok and ack.result == {"applied": "1.4.0"}
    assert [r.payload() for r in runs] == [
        {"type": "set_desired_model", "version": "1.4.0", "command_id": cid}
    ]
    # The same command id again (a resend) is not run twice, but is acked again.
    hub.send_command("node-a", {"command_id": cid, "type": "set_desired_model", "version": "1.4.0"})
    bad = hub.send_command("node-a", {"type": "explode"})
    failed = hub.wait_command_ack(bad, 20)
    assert failed is not None and failed.ok is False and "boom" in failed.error
    assert [r.type for r in runs] == ["set_desired_model", "explode"]
    assert [(n, a.command_id) for n, a in acks] == [("node-a", cid), ("node-a", bad)]


def test_heartbeat_status_last_will_hard_examples_events(
    mosquitto_broker: MosquittoBroker,
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> None:
    hub = make_cloud(mosquitto_broker).start()
    beats: list[tuple[str, dict[str, Any]]] = []
    statuses: list[tuple[str, bool]] = []
    hub.on_heartbeat(lambda n, p: beats.append((n, p)))
    hub.on_status(lambda n, st: statuses.append((n, st.status == "online")))
    edge = make_edge(mosquitto_broker, "node-a", store=False)
    edge.set_heartbeat_provider(
        lambda: {
            "model_version": "1.2.0",
            "adapters": ["intent", "slots"],
            "queue_depth": 3,
            "latency_p50_ms": 4.5,
            "latency_p99_ms": 12.0,
            "error_rate": 0.01,
            "fallback_rate": 0.05,
            "cache_hit_rate": 0.4,
            "resources": {"cpu_percent": 37.0, "mem_mb": 812.0},
        }
    )
    edge.start()
    assert edge.wait_connected(30)
    wait_until(lambda: ("node-a", True) in statuses, what="online status")
    assert edge.send_heartbeat()
    wait_until(lambda: beats, what="heartbeat")
    node, hb = beats[0]
    assert node == "node-a" and hb["model_version"] == "1.2.0" and hb["adapters"] == ["intent", "slots"]
    assert hb["resources"]["cpu_percent"] == 37.0 and hb["latency_p99_ms"] == 12.0

    hid = edge.publish_hard_example({"text": "is the press safe?", "top_score": 0.41, "route": "intent"})
    edge.publish_event("fallback", {"reason": "low_confidence"})
    wait_until(
        lambda: hub.repo.hard_example_count("node-a") == 1 and hub.repo.event_count("node-a") == 1,
        what="hard example and event stored",
    )
    (ex,) = hub.repo.hard_examples("node-a")
    assert ex["id"] == hid and ex["text"] == "is the press safe?" and ex["node_id"] == "node-a"

    edge.stop(graceful=False)  # a crash: the broker publishes the Last Will
    wait_until(lambda: statuses[-1] == ("node-a", False), what="Last Will marks the node offline")
    assert hub.online_nodes() == []


def test_group_rebroadcast_and_shared_session_state(
    mosquitto_broker: MosquittoBroker,
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> None:
    from contracts.memory import SessionState

    hub = make_cloud(mosquitto_broker, sync_rebroadcast="group").start()
    a = make_edge(mosquitto_broker, "node-a", mqtt_node_group="line-1").start()
    b = make_edge(mosquitto_broker, "node-b", mqtt_node_group="line-1").start()
    c = make_edge(mosquitto_broker, "node-c", mqtt_node_group="line-2").start()
    got_c: list[KnowledgeRecord] = []
    c.on_memory(got_c.extend)
    for e in (a, b, c):
        assert e.wait_connected(30)
    wait_until(
        lambda: hub.node_group("node-a") == "line-1" and hub.node_group("node-c") == "line-2",
        what="groups learnt from status",
    )
    assert a.store is not None and b.store is not None and c.store is not None
    wait_until(lambda: all(e.resyncs_completed >= 1 for e in (a, b, c)), what="initial resyncs")
    a.publish_memory([a.store.put("jam-fix", "lower belt speed on line 1")])
    wait_until(lambda: b.store.get("jam-fix") is not None, what="group member got it")
    wait_until(lambda: hub.idle() and a.outbox.pending_records() == 0, what="quiet")
    # node-c is in another group: the broadcast went to groups/line-1 only.
    c_before = c.resyncs_completed
    c.request_resync()
    wait_until(lambda: c.resyncs_completed > c_before, what="node-c resync")
    # The cloud sent the group broadcast before it answered the resync, so had node-c received
    # the broadcast it would hold "jam-fix" twice; it got it once, from the resync.
    assert [r.key for r in got_c].count("jam-fix") == 1
    assert c.store.get("jam-fix") is not None

    now = a.clock.now()
    shared = SessionState(
        session_id="s-1", data={"turns": 3}, updated_ms=now.wall_ms, updated=now.pack(), shared=True
    )
    local = SessionState(session_id="s-2", data={}, updated_ms=now.wall_ms, updated=now.pack())
    assert a.publish_session([shared, local]) == 1  # non-shared state stays on the node
    wait_until(lambda: hub.applied_records["session"] == 1, what="shared session state applied")


def test_cloud_knowledge_for_one_node_reaches_only_that_node(two_nodes: TwoNodes) -> None:
    """``broadcast_memory(..., node=)`` sends on the node's own memory topic: the other node does
    not get it (live); a fleet broadcast sent after it reaches both and serves as the barrier."""
    hub, a, b = two_nodes
    assert a.store is not None and b.store is not None
    wait_until(lambda: set(hub.online_nodes()) == {"node-a", "node-b"}, what="both nodes online")
    now = hub.clock.now().pack()
    ids = hub.broadcast_memory(
        [KnowledgeRecord(key="kb:b-only", text="for b", created=now, updated=now)], node="node-b"
    )
    wait_until(lambda: b.store is not None and b.store.get("kb:b-only") is not None, what="node-b got it")
    later = hub.clock.now().pack()
    hub.broadcast_memory([KnowledgeRecord(key="kb:all", text="for all", created=later, updated=later)])
    wait_until(
        lambda: a.store is not None and a.store.get("kb:all") is not None, what="fleet record on node-a"
    )
    assert a.store.get("kb:b-only") is None
    assert hub.repo.knowledge("kb:b-only") is not None  # merged in the cloud's store all the same
    wait_until(lambda: all(hub.broadcast_acked_by(i) == {"node-b"} for i in ids), what="node-b's ack")
