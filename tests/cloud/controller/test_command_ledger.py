"""The one command ledger: the hub's old SQLite tables move into it on upgrade (nothing lost),
the Alembic migration keeps existing command rows, and over a real Mosquitto a command goes
fleet → ledger → hub → node → ack → ledger once, with the node's status (group) passed through."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from cloud.api.container import CloudServices
from cloud.db.engine import Database
from cloud.db.migrate import alembic_config
from cloud.fleet.ledger import CommandLedger
from cloud.sync.hub import CloudSync
from cloud.sync.settings import CloudSyncSettings
from contracts.commands import Command, CommandKind, CommandStatus
from edge.sync.agent import EdgeSync
from edge.sync.settings import SyncSettings
from tests.cloud.controller.conftest import make_settings
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary
from tests.support.wait import wait_for

OLD_HUB_SCHEMA = """
CREATE TABLE nodes (node_id TEXT PRIMARY KEY, next_seq INTEGER NOT NULL DEFAULT 1, group_name TEXT,
                    online INTEGER NOT NULL DEFAULT 0, last_seen_ms INTEGER NOT NULL DEFAULT 0);
CREATE TABLE commands (command_id TEXT PRIMARY KEY, node_id TEXT NOT NULL, body TEXT NOT NULL,
                       created_ms INTEGER NOT NULL, sent_ms INTEGER, acked_ms INTEGER, ack TEXT);
"""


def _old_hub_file(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(OLD_HUB_SCHEMA)
    db.execute("INSERT INTO nodes VALUES ('node-a', 7, 'line-1', 1, 0), ('node-b', 3, NULL, 0, 0)")
    body = {"type": "set_desired_version", "model": "tiny", "version": "1.1.0"}
    db.execute(
        "INSERT INTO commands VALUES ('c-open', 'node-a', ?, 1700000000000, 1700000000100, NULL, NULL)",
        (json.dumps(body),),
    )
    ack = {"kind": "command", "id": "c-done", "ok": True, "result": {"version": "1.0.0", "detail": "applied"}}
    db.execute(
        "INSERT INTO commands VALUES ('c-done', 'node-b', ?, 1700000000000, 1700000000100, 1700000001000, ?)",
        (json.dumps({**body, "version": "1.0.0"}), json.dumps(ack)),
    )
    db.commit()
    db.close()


def test_hub_upgrade_moves_old_commands_and_cursors_into_the_ledger(tmp_path: Path) -> None:
    hub_file = tmp_path / "sync.sqlite3"
    _old_hub_file(hub_file)
    db = Database(f"sqlite:///{tmp_path / 'cloud.sqlite3'}")
    db.migrate()
    ledger = CommandLedger(db)
    hub = CloudSync(CloudSyncSettings(sync_mqtt_port=1), hub_file, ledger=ledger)
    try:
        assert hub.repo.next_seq("node-a") == 7 and hub.repo.next_seq("node-b") == 3  # stream cursors kept
        [(node, open_cmd)] = ledger.unacked()
        assert node == "node-a" and open_cmd.command_id == "c-open" and open_cmd.version == "1.1.0"
        assert open_cmd.kind is CommandKind.SET_DESIRED_VERSION
        done = ledger.ack("c-done")
        assert done is not None and done.ok and done.version == "1.0.0" and done.detail == "applied"
        assert {c.id: c.status for c in ledger.list()} == {
            "c-open": CommandStatus.SENT,
            "c-done": CommandStatus.ACKED,
        }
    finally:
        hub.stop()
    raw = sqlite3.connect(hub_file)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    raw.close()
    assert "commands" not in tables and "nodes" not in tables and "streams" in tables
    again = CloudSync(CloudSyncSettings(sync_mqtt_port=1), hub_file, ledger=ledger)  # a second start: no-op
    try:
        assert len(ledger.list()) == 2 and again.repo.next_seq("node-a") == 7
    finally:
        again.stop()
        db.dispose()


def test_ledger_migration_keeps_existing_command_rows(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'cloud.sqlite3'}")
    try:
        cfg = alembic_config(db.engine)
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003_node_enrolments")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO commands (id, node_id, kind, payload, rollout_id, status, detail, sent_at) "
                    "VALUES ('old-1', 'n1', 'set_desired_version', "
                    '\'{"type": "set_desired_version", "version": "2.0"}\', '
                    "4, 'sent', '', '2026-12-01 10:00:00')"
                )
            )
        db.migrate()
        ledger = CommandLedger(db)
        [(node, cmd)] = ledger.unacked("n1")
        assert node == "n1" and cmd.command_id == "old-1" and cmd.version == "2.0"
        entry = ledger.entry("old-1")
        assert entry is not None and entry.rollout_id == 4 and entry.status is CommandStatus.SENT
    finally:
        db.dispose()


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto binary not installed")
def test_command_round_trip_through_one_ledger_and_status_passes_through(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker").start()
    svc = CloudServices.build(
        make_settings(tmp_path, mqtt_enabled=True, mqtt_host=broker.host, mqtt_port=broker.port)
    )
    sync = svc.extra["sync"]
    sync.start()  # type: ignore[attr-defined]
    edge = EdgeSync(
        SyncSettings(
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            mqtt_node_group="line-9",
            mqtt_outbox_path=tmp_path / "edge.outbox.sqlite3",
        ),
        node_id="edge-g",
    )
    seen: list[Command] = []
    edge.on_command(lambda c: seen.append(c) or {"version": c.version, "detail": "applied"})
    edge.start()
    try:
        assert sync.sync.ledger is svc.fleet.ledger  # type: ignore[attr-defined]
        # The node's retained status carries its group; the fleet labels the node with it.
        node = wait_for(
            lambda: next((n for n in svc.fleet.list_nodes(online=True) if n.node_id == "edge-g"), None),
            what="node online in the fleet",
        )
        assert wait_for(lambda: svc.fleet.get("edge-g").labels.get("group") == "line-9", what="group label")
        assert node.online
        cid = svc.fleet.send_command("edge-g", Command.set_desired_version("tiny", "1.2.0", "ab" * 32))
        wait_for(
            lambda: [c.status for c in svc.fleet.commands("edge-g")] == [CommandStatus.ACKED], what="acked"
        )
        ack = svc.fleet.ledger.ack(cid)
        assert ack is not None and ack.ok and ack.version == "1.2.0"
        assert [c.command_id for c in seen] == [cid] and seen[0].kind is CommandKind.SET_DESIRED_VERSION
        wait_for(
            lambda: svc.fleet.get("edge-g").current_version == "1.2.0", what="the ack's version in the fleet"
        )
        assert svc.fleet.ledger.unacked() == []  # nothing left to resend
    finally:
        edge.stop()
        svc.close()
        broker.stop()
