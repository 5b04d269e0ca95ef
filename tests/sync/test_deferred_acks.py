"""Deferred command acks through a real Mosquitto: a handler returns ``COMMAND_PENDING`` and acks
later from another thread with ``EdgeSync.ack_command``. Meanwhile paho's network thread keeps
working (heartbeats, memory acks), the cloud's resends of the pending command are recognised by
id (no second run, no ack before the outcome), and an ack made while the broker is away is
delivered after the reconnect."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY

from cloud.sync.hub import CloudSync
from contracts.commands import Command, CommandAck
from edge.sync.agent import COMMAND_PENDING, EdgeSync
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import wait_until


def _duplicates() -> float:
    return REGISTRY.get_sample_value("autoglm_edge_sync_commands_total", {"outcome": "duplicate"}) or 0.0


def test_pending_command_acked_later_from_another_thread(
    mosquitto_broker: MosquittoBroker,
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> None:
    hub = make_cloud(mosquitto_broker, sync_command_retry_s=0.3).start()
    acks: list[tuple[str, CommandAck]] = []
    beats: list[str] = []
    hub.on_command_ack(lambda n, ack: acks.append((n, ack)))
    hub.on_heartbeat(lambda n, p: beats.append(n))
    edge = make_edge(mosquitto_broker, "node-a", mqtt_heartbeat_interval_s=0.1)
    runs: list[str] = []
    release = threading.Event()

    def slow_apply(cid: str) -> None:
        release.wait(30)
        edge.ack_command(cid, {"version": "2.0.0"})

    def handler(cmd: Command) -> Any:
        runs.append(cmd.command_id)
        threading.Thread(target=slow_apply, args=(cmd.command_id,), daemon=True).start()
        return COMMAND_PENDING

    edge.on_command(handler)
    edge.start()
    assert edge.wait_connected(30) and hub.wait_connected(30)
    dup0 = _duplicates()
    cid = hub.send_command("node-a", {"type": "set_desired_version", "version": "2.0.0"})
    wait_until(lambda: runs == [cid], what="handler started")
    assert edge.pending_commands == [cid]

    # While the apply runs: heartbeats flow, memory is acked, resends are recognised by id.
    n_beats = len(beats)
    wait_until(lambda: len(beats) >= n_beats + 3, what="heartbeats during the apply")
    assert edge.store is not None
    edge.publish_memory([edge.store.put("during-apply", "published while a command is pending")])
    wait_until(lambda: edge.outbox.pending_records() == 0, what="memory acked during the apply")
    wait_until(lambda: _duplicates() >= dup0 + 2, what="two cloud resends seen as duplicates")
    assert runs == [cid] and acks == [] and hub.wait_command_ack(cid, 0.01) is None

    release.set()
    ack = hub.wait_command_ack(cid, 20)
    assert ack is not None and ack.ok is True and ack.result == {"version": "2.0.0"}
    assert edge.pending_commands == []
    # A later resend gets the stored ack, the handler is not run again; a second ack is refused.
    hub.send_command("node-a", {"command_id": cid, "type": "set_desired_version", "version": "2.0.0"})
    wait_until(lambda: _duplicates() >= dup0 + 3, what="resend after the ack")
    assert runs == [cid]
    assert edge.ack_command(cid, {"version": "9.9.9"}) is False
    assert [a.command_id for _, a in acks] == [cid]


def test_deferred_error_ack_and_ack_while_disconnected(
    mosquitto_broker: MosquittoBroker,
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> None:
    hub = make_cloud(mosquitto_broker).start()
    edge = make_edge(mosquitto_broker, "node-b", store=False)
    got: list[str] = []

    def handler(cmd: Command) -> Any:
        got.append(cmd.command_id)
        return COMMAND_PENDING

    edge.on_command(handler)
    edge.start()
    assert edge.wait_connected(30) and hub.wait_connected(30)
    bad = hub.send_command("node-b", {"type": "set_desired_version", "version": "3.0.0"})
    wait_until(lambda: got == [bad], what="command delivered")
    assert edge.ack_command(bad, error=RuntimeError("cannot load 3.0.0"))
    failed = hub.wait_command_ack(bad, 20)
    assert failed is not None and failed.ok is False and failed.error == "RuntimeError: cannot load 3.0.0"

    later = hub.send_command("node-b", {"type": "set_desired_version", "version": "3.1.0"})
    wait_until(lambda: later in got, what="second command delivered")
    hub.stop()
    mosquitto_broker.stop()
    wait_until(lambda: not edge._conn.connected, what="edge sees the broker gone")
    assert edge.ack_command(later, {"version": "3.1.0"})  # stored, published on reconnect
    mosquitto_broker.start()
    hub2 = make_cloud(mosquitto_broker).start()
    ack = hub2.wait_command_ack(later, 30)
    assert ack is not None and ack.ok is True and ack.result == {"version": "3.1.0"}
    assert got == [bad, later]
