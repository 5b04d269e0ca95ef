"""The command ledger: every command sent to a node and its outcome, in the cloud database.

One table (``cloud.db.models.Command``), owned by the fleet service; the MQTT sync hub uses the
same ledger to resend unacked commands and to drop duplicate acks, so a command's state lives
in one place. States and transitions (``contracts.commands.CommandStatus``)::

    queued ──(leader claims, sends)──▶ sent ──(ack ok)──▶ acked
                                        └───(ack not ok)──▶ failed

``record_ack`` moves a command out of ``queued``/``sent`` at most once (a conditional update),
so an ack the node repeats, or one that arrives over MQTT and HTTP both, is applied once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from cloud.db.engine import Database
from cloud.db.models import Command as CommandRow
from cloud.db.models import utcnow
from cloud.fleet.schemas import CommandOut
from contracts.commands import UNACKED_STATUSES, Command, CommandAck, CommandStatus


@dataclass(frozen=True)
class LedgerEntry:
    command_id: str
    node_id: str
    kind: str
    rollout_id: int | None
    status: CommandStatus


def _entry(row: CommandRow) -> LedgerEntry:
    return LedgerEntry(row.id, row.node_id, row.kind, row.rollout_id, CommandStatus(row.status))


class CommandLedger:
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    def standalone(cls, path: Path | str) -> CommandLedger:
        """A ledger in its own SQLite file, for a sync hub running without the controller
        (tests, benchmarks): the same table as the cloud database, created if missing."""
        db = Database(f"sqlite:///{Path(path)}")
        CommandRow.__table__.create(db.engine, checkfirst=True)  # type: ignore[attr-defined]
        return cls(db)

    # -- writes ------------------------------------------------------------------------------
    def add(
        self, items: list[tuple[str, Command]], status: CommandStatus, *, rollout_id: int | None = None
    ) -> None:
        """Record new commands (each with its ``command_id`` set); ids already known are kept."""
        if not items:
            return
        with self.db.session() as s:
            ids = [c.command_id for _, c in items]
            known = set(s.scalars(select(CommandRow.id).where(CommandRow.id.in_(ids))))
            rows = [
                {
                    "id": c.command_id,
                    "node_id": n,
                    "kind": c.type,
                    "payload": c.payload(),
                    "rollout_id": rollout_id,
                    "status": status,
                    "detail": "",
                    "sent_at": utcnow(),
                }
                for n, c in items
                if c.command_id not in known
            ]
            if rows:
                s.execute(insert(CommandRow), rows)

    def claim_queued(self, limit: int = 500) -> list[tuple[str, Command]]:
        """Queued commands this replica now owns (``queued`` → ``sent``, each claimed with a
        conditional update, so two replicas that both think they lead never send one twice)."""
        with self.db.session() as s:
            rows = [
                (c.id, c.node_id, dict(c.payload))
                for c in s.scalars(
                    select(CommandRow)
                    .where(CommandRow.status == CommandStatus.QUEUED)
                    .order_by(CommandRow.sent_at)
                    .limit(limit)
                )
            ]
        claimed: list[tuple[str, Command]] = []
        for cid, node_id, body in rows:
            with self.db.session() as s:
                n = s.execute(
                    update(CommandRow)
                    .where(CommandRow.id == cid, CommandRow.status == CommandStatus.QUEUED)
                    .values(status=CommandStatus.SENT, sent_at=utcnow())
                    .execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
            if n == 1:
                claimed.append((node_id, Command.model_validate({**body, "command_id": cid})))
        return claimed

    def record_ack(self, node_id: str, ack: CommandAck) -> LedgerEntry | None:
        """Move the command to ``acked`` / ``failed``; None when unknown, another node's, or
        already acked (a repeated ack changes nothing)."""
        with self.db.session() as s:
            n = s.execute(
                update(CommandRow)
                .where(
                    CommandRow.id == ack.command_id,
                    CommandRow.node_id == node_id,
                    CommandRow.status.in_(list(UNACKED_STATUSES)),
                )
                .values(status=ack.status, detail=ack.detail, ack=ack.to_record(), acked_at=utcnow())
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if n != 1:
                return None
            row = s.get(CommandRow, ack.command_id)
            return _entry(row) if row is not None else None

    def import_legacy(self, rows: list[dict[str, Any]]) -> int:
        """Take over the commands of a sync hub's own SQLite table from before the ledger
        (``command_id, node_id, body, created_ms, acked_ms, ack``); returns how many were new."""
        from datetime import UTC, datetime

        added = 0
        with self.db.session() as s:
            known = set(
                s.scalars(select(CommandRow.id).where(CommandRow.id.in_([r["command_id"] for r in rows])))
            )
            for r in rows:
                if r["command_id"] in known:
                    continue
                ack = CommandAck.model_validate(r["ack"]) if r.get("ack") else None
                body = dict(r["body"])
                s.add(
                    CommandRow(
                        id=r["command_id"],
                        node_id=r["node_id"],
                        kind=str(body.get("type", "")),
                        payload={**body, "command_id": r["command_id"]},
                        rollout_id=None,
                        status=ack.status if ack is not None else CommandStatus.SENT,
                        detail=ack.detail if ack is not None else "",
                        ack=ack.to_record() if ack is not None else None,
                        sent_at=datetime.fromtimestamp(r["created_ms"] / 1000, UTC),
                        acked_at=datetime.fromtimestamp(r["acked_ms"] / 1000, UTC)
                        if r.get("acked_ms")
                        else None,
                    )
                )
                added += 1
        return added

    # -- reads -------------------------------------------------------------------------------
    def entry(self, command_id: str) -> LedgerEntry | None:
        with self.db.session() as s:
            row = s.get(CommandRow, command_id)
            return _entry(row) if row is not None else None

    def ack(self, command_id: str) -> CommandAck | None:
        """The node's ack of ``command_id`` (None while it is unacked or unknown)."""
        with self.db.session() as s:
            rec = s.scalar(select(CommandRow.ack).where(CommandRow.id == command_id))
        return CommandAck.model_validate(rec) if rec else None

    def unacked(self, node_id: str | None = None) -> list[tuple[str, Command]]:
        """Sent, not yet acked commands (oldest first): what the transport resends."""
        q = select(CommandRow).where(CommandRow.status == CommandStatus.SENT).order_by(CommandRow.sent_at)
        if node_id:
            q = q.where(CommandRow.node_id == node_id)
        with self.db.session() as s:
            return [
                (c.node_id, Command.model_validate({**c.payload, "command_id": c.id})) for c in s.scalars(q)
            ]

    def list(self, node_id: str | None = None, limit: int = 100) -> list[CommandOut]:
        q = select(CommandRow).order_by(CommandRow.sent_at.desc()).limit(limit)
        if node_id:
            q = q.where(CommandRow.node_id == node_id)
        with self.db.session() as s:
            return [
                CommandOut(
                    id=c.id,
                    node_id=c.node_id,
                    kind=c.kind,
                    payload=c.payload,
                    status=CommandStatus(c.status),
                    detail=c.detail,
                    sent_at=c.sent_at,
                    acked_at=c.acked_at,
                )
                for c in s.scalars(q)
            ]
