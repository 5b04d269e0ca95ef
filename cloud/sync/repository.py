"""Persistence of the cloud sync hub's data plane, behind one small class (SQLite via ``sqlite3``).

What lives here is transport and dedup state plus the merged memory: each node's stream cursor
(``streams``), the message ids applied, knowledge, shared sessions, hard examples, events, and
the graph-path feedback priors: each node's own counts (``path_priors``, newest ``updated`` wins
per node and path) and their sums over the fleet (``fleet_priors``, stamped with the cloud's HLC
when a node's counts change them — what the fleet is sent).
Nodes and commands are not here: the fleet service owns them in the cloud database (the
command ledger, ``cloud.fleet.ledger``). A hub file from before that split is upgraded on open
(``nodes`` → ``streams``; the old ``commands`` rows are handed to the ledger by the hub, see
:meth:`SyncRepository.take_legacy_commands`).

Every node message is applied in ONE transaction together with its message id and the node's
next expected sequence number, so a crash between "applied" and "remembered as applied" cannot
happen: a message is applied exactly once.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from contracts.commands import AckStatus
from contracts.envelope import ContentType
from contracts.hlc import HLC, HybridClock
from contracts.hlc import wall_clock_ms as _now_ms
from contracts.memory import MAX_FLEET_PRIOR_COUNT, FleetPathPrior, KnowledgeRecord, PathPriorRecord, lww_wins
from contracts.sqlite_tx import transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    node_id TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS applied (
    msg_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS applied_node ON applied(node_id, seq);
CREATE TABLE IF NOT EXISTS knowledge (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    embedding TEXT,
    source TEXT NOT NULL,
    confidence REAL NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    shared INTEGER NOT NULL,
    from_node TEXT NOT NULL,
    merged TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS knowledge_merged ON knowledge(merged);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    updated TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hard_examples (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    hlc TEXT NOT NULL,
    body TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS path_priors (
    node_id TEXT NOT NULL,
    start_type TEXT NOT NULL,
    path TEXT NOT NULL,
    confirmed INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY (node_id, start_type, path)
);
CREATE TABLE IF NOT EXISTS fleet_priors (
    start_type TEXT NOT NULL,
    path TEXT NOT NULL,
    confirmed INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    nodes INTEGER NOT NULL,
    merged TEXT NOT NULL,
    PRIMARY KEY (start_type, path)
);
CREATE INDEX IF NOT EXISTS fleet_priors_merged ON fleet_priors(merged);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
"""
_KCOLS = "key, text, embedding, source, confidence, created, updated, deleted, shared, from_node, merged"
APPLIED_KEEP_PER_NODE = 100_000  # message ids remembered per node (older ones are below next_seq anyway)
PATH_SEP = "/"  # between the relations of a stored path (relation names never hold it)


def _krow(rec: KnowledgeRecord, from_node: str, merged: str) -> tuple[object, ...]:
    emb = json.dumps(rec.embedding) if rec.embedding is not None else None
    return (
        rec.key,
        rec.text,
        emb,
        rec.source,
        rec.confidence,
        rec.created,
        rec.updated,
        int(rec.deleted),
        int(rec.shared),
        from_node,
        merged,
    )


def _krecord(row: tuple[Any, ...]) -> KnowledgeRecord:
    return KnowledgeRecord(
        key=row[0],
        text=row[1],
        embedding=json.loads(row[2]) if row[2] is not None else None,
        source=row[3],
        confidence=row[4],
        created=row[5],
        updated=row[6],
        deleted=bool(row[7]),
        shared=bool(row[8]),
    )


@dataclass(frozen=True)
class ApplyResult:
    status: AckStatus
    changed: list[KnowledgeRecord]
    records: int
    fleet_priors: list[FleetPathPrior] = field(default_factory=list)  # sums this message changed


class SyncRepository:
    def __init__(self, path: Path | str, clock: HybridClock | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._upgrade_legacy_nodes()
        self._db.executescript(_SCHEMA)
        newest = self._db.execute("SELECT MAX(merged) FROM knowledge").fetchone()[0]
        self.clock = clock or HybridClock("cloud", last=HLC.parse(newest) if newest else None)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _has_table(self, name: str) -> bool:
        found = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return found.fetchone() is not None

    def _upgrade_legacy_nodes(self) -> None:
        """A hub file from before the ledger: keep each node's stream cursor, drop the rest."""
        if not self._has_table("nodes"):
            return
        with self._lock, transaction(self._db):
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS streams "
                "(node_id TEXT PRIMARY KEY, next_seq INTEGER NOT NULL DEFAULT 1)"
            )
            self._db.execute(
                "INSERT OR IGNORE INTO streams(node_id, next_seq) SELECT node_id, next_seq FROM nodes"
            )
            self._db.execute("DROP TABLE nodes")

    def take_legacy_commands(self, into: Callable[[list[dict[str, Any]]], object]) -> int:
        """Hand the rows of a pre-ledger ``commands`` table to ``into`` (the ledger's
        ``import_legacy``), then drop the table; returns how many rows there were."""
        with self._lock:
            if not self._has_table("commands"):
                return 0
            rows = [
                {
                    "command_id": r[0],
                    "node_id": r[1],
                    "body": json.loads(r[2]),
                    "created_ms": r[3],
                    "acked_ms": r[4],
                    "ack": json.loads(r[5]) if r[5] else None,
                }
                for r in self._db.execute(
                    "SELECT command_id, node_id, body, created_ms, acked_ms, ack "
                    "FROM commands ORDER BY created_ms"
                )
            ]
            into(rows)  # the ledger has them before they leave this file
            self._db.execute("DROP TABLE commands")
            return len(rows)

    # -- per-node ordering state --------------------------------------------------------------
    def next_seq(self, node_id: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT next_seq FROM streams WHERE node_id = ?", (node_id,)).fetchone()
        return int(row[0]) if row else 1

    def _ensure_stream(self, node_id: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO streams(node_id) VALUES (?)", (node_id,))

    def apply_message(
        self,
        *,
        node_id: str,
        seq: int,
        msg_id: str,
        kind: ContentType,
        records: list[Any],
        rejected_reason: str | None = None,
    ) -> ApplyResult:
        """Apply one node message exactly once (idempotent on ``msg_id``), advancing the cursor.

        ``records`` are validated models for memory/session, plain dicts otherwise. With
        ``rejected_reason`` the message is only recorded (dead letter) and the cursor advanced.
        """
        with self._lock:
            if self._db.execute("SELECT 1 FROM applied WHERE msg_id = ?", (msg_id,)).fetchone():
                return ApplyResult(AckStatus.DUPLICATE, [], 0)
            changed: list[KnowledgeRecord] = []
            priors: list[FleetPathPrior] = []
            now = _now_ms()
            with transaction(self._db, immediate=True):
                if rejected_reason is None and kind is ContentType.PATH_PRIOR:
                    priors = self._merge_path_priors(node_id, records)
                elif rejected_reason is None:
                    changed = self._apply_records(node_id, kind, records, now)
                outcome = (
                    f"{AckStatus.REJECTED.value}:{rejected_reason}"
                    if rejected_reason
                    else AckStatus.APPLIED.value
                )
                self._db.execute(
                    "INSERT INTO applied(msg_id, node_id, seq, status, at_ms) VALUES (?, ?, ?, ?, ?)",
                    (msg_id, node_id, seq, outcome, now),
                )
                if seq > 0:
                    self._ensure_stream(node_id)
                    self._db.execute(
                        "UPDATE streams SET next_seq = MAX(next_seq, ?) WHERE node_id = ?", (seq + 1, node_id)
                    )
            if seq > 0 and seq % 1000 == 0:
                self._prune_applied(node_id, seq)
            status = AckStatus.REJECTED if rejected_reason else AckStatus.APPLIED
            return ApplyResult(status, changed, 0 if rejected_reason else len(records), priors)

    def skip_to(self, node_id: str, seq: int) -> None:
        """The node says everything below ``seq`` was acked already (e.g. this DB is newer)."""
        with self._lock:
            self._ensure_stream(node_id)
            self._db.execute(
                "UPDATE streams SET next_seq = MAX(next_seq, ?) WHERE node_id = ?", (seq, node_id)
            )

    def _prune_applied(self, node_id: str, seq: int) -> None:
        self._db.execute(
            "DELETE FROM applied WHERE node_id = ? AND seq > 0 AND seq < ?",
            (node_id, seq - APPLIED_KEEP_PER_NODE),
        )

    def _apply_records(
        self, node_id: str, kind: ContentType, records: list[Any], now: int
    ) -> list[KnowledgeRecord]:
        if kind is ContentType.MEMORY:
            return self._merge_knowledge(records, node_id)
        if kind is ContentType.SESSION:
            self._db.executemany(
                "INSERT INTO sessions(session_id, node_id, updated, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(session_id) DO UPDATE SET node_id = excluded.node_id, "
                "updated = excluded.updated, "
                "body = excluded.body WHERE excluded.updated > sessions.updated",
                [(r.session_id, node_id, r.updated, r.model_dump_json()) for r in records],
            )
        elif kind is ContentType.HARD_EXAMPLE:
            self._db.executemany(
                "INSERT OR IGNORE INTO hard_examples(id, node_id, hlc, body, at_ms) VALUES (?, ?, ?, ?, ?)",
                [(str(r["id"]), node_id, str(r.get("hlc", "")), json.dumps(r), now) for r in records],
            )
        elif kind is ContentType.EVENT:
            self._db.executemany(
                "INSERT INTO events(node_id, name, body, at_ms) VALUES (?, ?, ?, ?)",
                [(node_id, str(r.get("name", "")), json.dumps(r), now) for r in records],
            )
        return []

    def _merge_knowledge(self, records: Iterable[KnowledgeRecord], from_node: str) -> list[KnowledgeRecord]:
        incoming: dict[str, KnowledgeRecord] = {}
        for rec in records:  # LWW inside the batch first
            if lww_wins(rec, incoming.get(rec.key)):
                incoming[rec.key] = rec
        if not incoming:
            return []
        keys = list(incoming)
        current: dict[str, KnowledgeRecord] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT {_KCOLS} FROM knowledge WHERE key IN ({marks})", chunk):
                current[row[0]] = _krecord(row)
        winners = [r for k, r in incoming.items() if lww_wins(r, current.get(k))]
        if not winners:
            return []
        with contextlib.suppress(ValueError):  # a remote clock far ahead does not drag ours
            self.clock.observe(HLC.parse(max(r.updated for r in winners)))
        stamps = self.clock.now_many(len(winners))
        rows = [_krow(rec, from_node, stamp) for rec, stamp in zip(winners, stamps, strict=True)]
        self._db.executemany(
            f"INSERT OR REPLACE INTO knowledge({_KCOLS}) VALUES ({','.join('?' * 11)})", rows
        )
        return winners

    def _merge_path_priors(self, node_id: str, records: list[PathPriorRecord]) -> list[FleetPathPrior]:
        """A node's own counts (validated: its own, schema paths, bounded), newest per path wins;
        the fleet sums of the paths that changed are recomputed and stamped."""
        touched: set[tuple[str, str]] = set()
        for rec in records:
            path = PATH_SEP.join(rec.relations)
            cur = self._db.execute(
                "INSERT INTO path_priors(node_id, start_type, path, confirmed, rejected, updated) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(node_id, start_type, path) DO UPDATE SET "
                "confirmed = excluded.confirmed, rejected = excluded.rejected, updated = excluded.updated "
                "WHERE excluded.updated > path_priors.updated",
                (node_id, rec.start_type, path, rec.confirmed, rec.rejected, rec.updated),
            )
            if cur.rowcount:
                touched.add((rec.start_type, path))
        out: list[FleetPathPrior] = []
        for (start_type, path), stamp in zip(sorted(touched), self.clock.now_many(len(touched)), strict=True):
            confirmed, rejected, nodes = self._db.execute(
                "SELECT COALESCE(SUM(confirmed), 0), COALESCE(SUM(rejected), 0), COUNT(*) FROM path_priors "
                "WHERE start_type = ? AND path = ?",
                (start_type, path),
            ).fetchone()
            fleet = FleetPathPrior(
                start_type=start_type,
                relations=tuple(path.split(PATH_SEP)),
                confirmed=min(int(confirmed), MAX_FLEET_PRIOR_COUNT),
                rejected=min(int(rejected), MAX_FLEET_PRIOR_COUNT),
                nodes=int(nodes),
                merged=stamp,
            )
            self._db.execute(
                "INSERT OR REPLACE INTO fleet_priors(start_type, path, confirmed, rejected, nodes, merged) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (start_type, path, fleet.confirmed, fleet.rejected, fleet.nodes, stamp),
            )
            out.append(fleet)
        return out

    def fleet_priors_since(self, cursor: str | None, limit: int | None = None) -> list[FleetPathPrior]:
        """The fleet's path priors stamped after ``cursor`` (all for None), oldest first."""
        q = "SELECT start_type, path, confirmed, rejected, nodes, merged FROM fleet_priors WHERE merged > ? "
        q += "ORDER BY merged" + (" LIMIT ?" if limit is not None else "")
        args: tuple[object, ...] = (cursor or "",) + ((limit,) if limit is not None else ())
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return [
            FleetPathPrior(
                start_type=r[0],
                relations=tuple(str(r[1]).split(PATH_SEP)),
                confirmed=r[2],
                rejected=r[3],
                nodes=r[4],
                merged=r[5],
            )
            for r in rows
        ]

    def fleet_priors(self) -> list[FleetPathPrior]:
        """Every path's fleet sum, ordered by (start type, path): what a training run reads."""
        return sorted(self.fleet_priors_since(None), key=lambda p: (p.start_type, p.relations))

    def path_prior(self, node_id: str, start_type: str, relations: tuple[str, ...]) -> tuple[int, int] | None:
        """One node's stored (confirmed, rejected) for a path."""
        with self._lock:
            row = self._db.execute(
                "SELECT confirmed, rejected FROM path_priors "
                "WHERE node_id = ? AND start_type = ? AND path = ?",
                (node_id, start_type, PATH_SEP.join(relations)),
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def merge_knowledge(
        self, records: list[KnowledgeRecord], from_node: str = "cloud"
    ) -> list[KnowledgeRecord]:
        """Cloud-side write (e.g. knowledge authored in the cloud); returns what changed."""
        with self._lock, transaction(self._db, immediate=True):
            return self._merge_knowledge(records, from_node)

    # -- reads -------------------------------------------------------------------------------
    def knowledge(self, key: str) -> KnowledgeRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_KCOLS} FROM knowledge WHERE key = ?", (key,)).fetchone()
        return _krecord(row) if row else None

    def knowledge_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM knowledge").fetchone()[0])

    def knowledge_since(
        self, cursor: str | None, for_node: str, limit: int
    ) -> list[tuple[str, KnowledgeRecord, str]]:
        """(merged HLC, record, node it came from) after ``cursor`` in merge order: shared ones and
        the node's own."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_KCOLS} FROM knowledge WHERE merged > ? AND (shared = 1 OR from_node = ?) "
                "ORDER BY merged LIMIT ?",
                (cursor or "", for_node, limit),
            ).fetchall()
        return [(r[10], _krecord(r), r[9]) for r in rows]

    def hard_example_count(self, node_id: str | None = None) -> int:
        q, a = "SELECT COUNT(*) FROM hard_examples", cast(tuple[str, ...], ())
        if node_id:
            q, a = q + " WHERE node_id = ?", (node_id,)
        with self._lock:
            return int(self._db.execute(q, a).fetchone()[0])

    def hard_examples(self, node_id: str | None = None) -> list[dict[str, Any]]:
        q, a = "SELECT body FROM hard_examples", cast(tuple[str, ...], ())
        if node_id:
            q, a = q + " WHERE node_id = ?", (node_id,)
        with self._lock:
            return [json.loads(r[0]) for r in self._db.execute(q + " ORDER BY at_ms", a)]

    def event_count(self, node_id: str | None = None) -> int:
        q, a = "SELECT COUNT(*) FROM events", cast(tuple[str, ...], ())
        if node_id:
            q, a = q + " WHERE node_id = ?", (node_id,)
        with self._lock:
            return int(self._db.execute(q, a).fetchone()[0])


def read_fleet_priors(path: Path | str) -> list[FleetPathPrior]:
    """The fleet's path-prior sums stored in the hub's file at ``path`` (opened through this
    repository, read, closed): what a training run outside the hub's process reads
    (``cloud.loop``, ``autoglm export --graph-heads --fleet-priors-db``). A missing file is an
    error (:class:`FileNotFoundError`): it would be created empty."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no sync hub database at {path}")
    repo = SyncRepository(path)
    try:
        return repo.fleet_priors()
    finally:
        repo.close()
