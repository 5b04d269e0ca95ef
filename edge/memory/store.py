"""The node's long-term memory (knowledge cache) in SQLite, merged last-writer-wins by HLC.

Clean API for the rest of the edge (the reasoning agent adds embedding search and session
state on top of it):

* ``put(key, text, ...)`` / ``get(key)`` / ``delete(key)`` — local writes stamp a fresh HLC;
  ``delete`` writes a tombstone (so the delete wins over older writes everywhere);
* ``apply_remote(records)`` — idempotent LWW merge of records from the cloud; returns the ones
  that changed this store;
* ``since(hlc)`` — every record (tombstones included) updated after an HLC, in HLC order;
* ``snapshot()`` — every record, tombstones included;
* ``add_path_prior(...)`` / ``apply_fleet_priors(records)`` / ``path_priors()`` — the graph
  reasoner's feedback counts per (start entity type, relation sequence): this node's own (all, and
  the shared part it uploads as a :class:`~contracts.memory.PathPriorRecord`) and the fleet's sums
  (:class:`~contracts.memory.FleetPathPrior`, newest ``merged`` wins).

The clock is restored from the newest stored HLC on open, so timestamps never go backwards
across restarts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from contracts.hlc import HLC, HybridClock
from contracts.memory import MAX_NODE_PRIOR_COUNT, FleetPathPrior, KnowledgeRecord, PathPriorRecord, lww_wins
from contracts.sqlite_tx import transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS knowledge (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    embedding TEXT,
    source TEXT NOT NULL,
    confidence REAL NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    shared INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS knowledge_updated ON knowledge(updated);
CREATE TABLE IF NOT EXISTS path_priors (
    start_type TEXT NOT NULL,
    path TEXT NOT NULL,
    confirmed INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    shared_confirmed INTEGER NOT NULL DEFAULT 0,
    shared_rejected INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL DEFAULT '',
    fleet_confirmed INTEGER NOT NULL DEFAULT 0,
    fleet_rejected INTEGER NOT NULL DEFAULT 0,
    fleet_nodes INTEGER NOT NULL DEFAULT 0,
    fleet_merged TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (start_type, path)
);
"""
_PRIOR_COLS = (
    "start_type, path, confirmed, rejected, shared_confirmed, shared_rejected, "
    "fleet_confirmed, fleet_rejected"
)
PATH_SEP = "/"  # relation names never hold it
_COLS = "key, text, embedding, source, confidence, created, updated, deleted, shared"


def _row(rec: KnowledgeRecord) -> tuple[object, ...]:
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
    )


def _record(row: tuple[object, ...]) -> KnowledgeRecord:
    return KnowledgeRecord(
        key=str(row[0]),
        text=str(row[1]),
        embedding=json.loads(str(row[2])) if row[2] is not None else None,
        source=str(row[3]),
        confidence=float(row[4]),  # type: ignore[arg-type]
        created=str(row[5]),
        updated=str(row[6]),
        deleted=bool(row[7]),
        shared=bool(row[8]),
    )


@dataclass(frozen=True)
class StoredPrior:
    """One path's feedback counts as stored on this node."""

    start_type: str
    relations: tuple[str, ...]
    confirmed: int
    rejected: int
    shared_confirmed: int
    shared_rejected: int
    fleet_confirmed: int
    fleet_rejected: int


def _prior(row: tuple[object, ...]) -> StoredPrior:
    n = [int(v) for v in row[2:8]]  # type: ignore[call-overload]
    return StoredPrior(str(row[0]), tuple(str(row[1]).split(PATH_SEP)), *n)


class MemoryStore:
    def __init__(self, path: Path | str, node_id: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.node_id = node_id
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        newest = self._db.execute("SELECT MAX(updated) FROM knowledge").fetchone()[0]
        self.clock = HybridClock(node_id, last=HLC.parse(newest) if newest else None)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _get_any(self, key: str) -> KnowledgeRecord | None:
        row = self._db.execute(f"SELECT {_COLS} FROM knowledge WHERE key = ?", (key,)).fetchone()
        return _record(row) if row else None

    def get(self, key: str, *, include_deleted: bool = False) -> KnowledgeRecord | None:
        with self._lock:
            rec = self._get_any(key)
        if rec is None or (rec.deleted and not include_deleted):
            return None
        return rec

    def put(
        self,
        key: str,
        text: str,
        *,
        embedding: list[float] | None = None,
        source: str = "",
        confidence: float = 1.0,
        shared: bool = True,
    ) -> KnowledgeRecord:
        """Local write; returns the stored record (publish it with ``EdgeSync.publish_memory``)."""
        with self._lock:
            now = self.clock.now().pack()
            old = self._get_any(key)
            rec = KnowledgeRecord(
                key=key,
                text=text,
                embedding=embedding,
                source=source or self.node_id,
                confidence=confidence,
                created=old.created if old and not old.deleted else now,
                updated=now,
                shared=shared,
            )
            self._write([rec])
            return rec

    def delete(self, key: str) -> KnowledgeRecord | None:
        """Tombstone ``key``; returns the tombstone (None when the key never existed)."""
        with self._lock:
            old = self._get_any(key)
            if old is None:
                return None
            tomb = old.model_copy(
                update={"text": "", "embedding": None, "deleted": True, "updated": self.clock.now().pack()}
            )
            self._write([tomb])
            return tomb

    def set_local_embedding(self, key: str, updated: str, embedding: list[float]) -> bool:
        """Attach an embedding computed on this node to the stored version ``updated`` of ``key``
        (knowledge that arrived without one). Derived data, not a write: the HLC stays, so nothing is
        published and a newer version from elsewhere still wins. False when that version is gone."""
        with self._lock:
            rec = self._get_any(key)
            if rec is None or rec.deleted or rec.updated != updated or rec.embedding:
                return False
            self._write([rec.model_copy(update={"embedding": embedding})])
            return True

    def apply_remote(self, records: Iterable[KnowledgeRecord]) -> list[KnowledgeRecord]:
        """LWW-merge records from elsewhere; idempotent. Returns those that changed the store."""
        changed: list[KnowledgeRecord] = []
        with self._lock:
            for rec in records:
                try:
                    self.clock.observe(HLC.parse(rec.updated))
                except ValueError:
                    continue  # too far in the future: refuse rather than drag our clock along
                if lww_wins(rec, self._get_any(rec.key)):
                    changed.append(rec)
            if changed:
                self._write(changed)
        return changed

    def _write(self, records: list[KnowledgeRecord]) -> None:
        with transaction(self._db):
            self._db.executemany(
                f"INSERT OR REPLACE INTO knowledge({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(r) for r in records],
            )

    def since(self, hlc: str | None, *, limit: int | None = None) -> list[KnowledgeRecord]:
        """Records (tombstones included) with ``updated > hlc``, oldest first."""
        q = f"SELECT {_COLS} FROM knowledge WHERE updated > ? ORDER BY updated"
        args: tuple[object, ...] = (hlc or "",)
        if limit is not None:
            q += " LIMIT ?"
            args += (limit,)
        with self._lock:
            return [_record(r) for r in self._db.execute(q, args).fetchall()]

    def snapshot(self) -> list[KnowledgeRecord]:
        return self.since(None)

    def newest_hlc(self) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(updated) FROM knowledge").fetchone()
        return row[0] if row and row[0] else None

    def count(self, *, include_deleted: bool = False) -> int:
        q = "SELECT COUNT(*) FROM knowledge" + ("" if include_deleted else " WHERE deleted = 0")
        with self._lock:
            return int(self._db.execute(q).fetchone()[0])

    # -- graph-path feedback priors ----------------------------------------------------------------
    def add_path_prior(
        self, start_type: str, relations: tuple[str, ...], *, confirmed: int, rejected: int, shared: bool
    ) -> tuple[StoredPrior, PathPriorRecord | None]:
        """Add this node's feedback on a path (counts saturate at ``MAX_NODE_PRIOR_COUNT``); returns
        the stored counts and, for ``shared`` feedback, the record to upload (the shared counts, a
        fresh HLC). The caller checked the path against the schema."""
        path = PATH_SEP.join(relations)
        sc, sr = (confirmed, rejected) if shared else (0, 0)
        cap = MAX_NODE_PRIOR_COUNT
        with self._lock, transaction(self._db):
            now = self.clock.now().pack() if shared else ""
            self._db.execute(
                "INSERT INTO path_priors(start_type, path) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (start_type, path),
            )
            self._db.execute(
                "UPDATE path_priors SET confirmed = MIN(?, confirmed + ?), "
                "rejected = MIN(?, rejected + ?), shared_confirmed = MIN(?, shared_confirmed + ?), "
                "shared_rejected = MIN(?, shared_rejected + ?), "
                "updated = CASE WHEN ? = '' THEN updated ELSE ? END WHERE start_type = ? AND path = ?",
                (cap, confirmed, cap, rejected, cap, sc, cap, sr, now, now, start_type, path),
            )
            row = self._db.execute(
                f"SELECT {_PRIOR_COLS} FROM path_priors WHERE start_type = ? AND path = ?", (start_type, path)
            ).fetchone()
        stored = _prior(row)
        if not shared:
            return stored, None
        return stored, PathPriorRecord(
            node=self.node_id,
            start_type=start_type,
            relations=relations,
            confirmed=stored.shared_confirmed,
            rejected=stored.shared_rejected,
            updated=now,
        )

    def apply_fleet_priors(self, records: Iterable[FleetPathPrior]) -> list[FleetPathPrior]:
        """Store the fleet's sums (newest ``merged`` wins, idempotent); returns those that changed."""
        changed: list[FleetPathPrior] = []
        with self._lock, transaction(self._db):
            for rec in records:
                path = PATH_SEP.join(rec.relations)
                cur = self._db.execute(
                    "UPDATE path_priors SET fleet_confirmed = ?, fleet_rejected = ?, fleet_nodes = ?, "
                    "fleet_merged = ? WHERE start_type = ? AND path = ? AND fleet_merged < ?",
                    (rec.confirmed, rec.rejected, rec.nodes, rec.merged, rec.start_type, path, rec.merged),
                )
                if cur.rowcount == 0:
                    cur = self._db.execute(
                        "INSERT INTO path_priors(start_type, path, fleet_confirmed, fleet_rejected, "
                        "fleet_nodes, fleet_merged) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (rec.start_type, path, rec.confirmed, rec.rejected, rec.nodes, rec.merged),
                    )
                if cur.rowcount:
                    changed.append(rec)
        return changed

    def path_priors(self) -> list[StoredPrior]:
        """Every path's counts (this node's and the fleet's)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_PRIOR_COLS} FROM path_priors ORDER BY start_type, path"
            ).fetchall()
        return [_prior(r) for r in rows]

    def path_prior_records(self) -> list[PathPriorRecord]:
        """This node's shared counts as upload records (e.g. to send them again)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT start_type, path, shared_confirmed, shared_rejected, updated FROM path_priors "
                "WHERE updated != ''"
            ).fetchall()
        return [
            PathPriorRecord(
                node=self.node_id,
                start_type=r[0],
                relations=tuple(str(r[1]).split(PATH_SEP)),
                confirmed=r[2],
                rejected=r[3],
                updated=r[4],
            )
            for r in rows
        ]
