"""SQLite store-and-forward outbox: records wait here until the cloud acknowledges them.

Two stages, one file::

    pending(id, kind, body, size)          records accepted from the node, not yet in a message
    messages(seq, msg_id, kind, frame ...) sealed sync messages (a frame each), in flight

``seal`` moves a batch of pending records of one kind into one message with the next per-node
sequence number, in one transaction. A message (and so its records) is deleted only by
``ack`` — after the cloud has applied it — so a crash of the broker, the network or this
process loses nothing: on restart the same messages (same id, same seq, same bytes) are sent
again and the cloud's de-duplication drops the copies it already applied.

Disk budget (``max_bytes`` of record bytes, pending + in flight). Telemetry (``event``) is
shed oldest-first when over budget and counted in ``dropped``; memory, session state and hard
examples are never shed: ``put`` raises :class:`OutboxFull` (an ``Overloaded`` domain error)
and counts it in ``refused``, so the caller knows at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contracts.envelope import ContentType, new_message_id
from contracts.errors import Overloaded
from contracts.hlc import wall_clock_ms as _now_ms
from contracts.logging import get_logger
from contracts.sqlite_tx import transaction

log = get_logger("autoglm.edge.sync.outbox")

DURABLE_KINDS = frozenset(
    {ContentType.MEMORY, ContentType.SESSION, ContentType.HARD_EXAMPLE, ContentType.PATH_PRIOR}
)
TELEMETRY_KINDS = frozenset({ContentType.EVENT})
OUTBOX_KINDS = DURABLE_KINDS | TELEMETRY_KINDS

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY,  -- rowid: max+1, and the max row is always sealed last
    kind TEXT NOT NULL,
    body BLOB NOT NULL,   -- one record, or several comma-joined (a chunk of one put)
    n INTEGER NOT NULL DEFAULT 1,
    size INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    frame BLOB NOT NULL,
    n_records INTEGER NOT NULL,
    raw_bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letters (
    msg_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    frame BLOB NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_down (
    msg_id TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    ack BLOB
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

SEEN_KEEP = 20_000  # downlink message ids remembered for de-duplication


class OutboxFull(Overloaded):
    """Durable records do not fit the outbox disk budget."""


@dataclass(frozen=True, slots=True)
class OutMessage:
    seq: int
    msg_id: str
    kind: ContentType
    frame: bytes
    n_records: int


# (seq, msg_id, kind, chunk bodies (comma-joined records), record count, low_water) -> frame bytes
FrameBuilder = Callable[[int, str, ContentType, list[bytes], int, int], bytes]


class Outbox:
    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        chunk_records: int = 1,
        chunk_bytes: int = 192 * 1024,
    ) -> None:
        """``chunk_records``/``chunk_bytes``: records of one ``put`` are stored as rows of up to
        that many records/bytes (one SQLite row per chunk, not per record: much cheaper)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(pending)")}
        if "n" not in cols:  # an outbox written before chunked rows
            self._db.execute("ALTER TABLE pending ADD COLUMN n INTEGER NOT NULL DEFAULT 1")
        self.chunk_records = max(1, chunk_records)
        self.chunk_bytes = max(1, chunk_bytes)
        self.dropped: Counter[str] = Counter()  # telemetry records shed over budget
        self.refused: Counter[str] = Counter()  # durable records refused over budget
        self._used = self._scan_used()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- bookkeeping ---------------------------------------------------------------------------
    def _scan_used(self) -> int:
        a = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM pending").fetchone()[0]
        b = self._db.execute("SELECT COALESCE(SUM(raw_bytes), 0) FROM messages").fetchone()[0]
        return int(a) + int(b)

    @property
    def used_bytes(self) -> int:
        return self._used

    def get_state(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", (key, value))

    def pending_records(self) -> int:
        with self._lock:
            a = self._db.execute("SELECT COALESCE(SUM(n), 0) FROM pending").fetchone()[0]
            b = self._db.execute("SELECT COALESCE(SUM(n_records), 0) FROM messages").fetchone()[0]
        return int(a) + int(b)

    def inflight_messages(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    def unsealed_records(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(n), 0) FROM pending").fetchone()[0])

    # -- producer side -------------------------------------------------------------------------
    def put(self, kind: ContentType, bodies: list[bytes]) -> int:
        """Store serialised records of one kind; returns how many were stored."""
        if kind not in OUTBOX_KINDS:
            raise ValueError(f"{kind} does not go through the outbox")
        if not bodies:
            return 0
        size = sum(len(b) for b in bodies)
        now = _now_ms()
        with self._lock:
            over = self._used + size - self.max_bytes
            if over > 0:
                if kind in DURABLE_KINDS:
                    self._shed_telemetry(over)
                    over = self._used + size - self.max_bytes
                    if over > 0:
                        self.refused[kind.value] += len(bodies)
                        raise OutboxFull(
                            f"sync outbox is over its disk budget "
                            f"({self._used} + {size} > {self.max_bytes} bytes): "
                            f"{len(bodies)} {kind.value} record(s) refused; "
                            "the cloud has been unreachable too long "
                            "or mqtt_outbox_max_bytes is too small",
                            retry_after_s=5.0,
                        )
                else:
                    self._shed_telemetry(over)
                    if self._used + size > self.max_bytes:
                        self.dropped[kind.value] += len(bodies)
                        log.warning("outbox full: dropped %d new %s record(s)", len(bodies), kind.value)
                        return 0
            with transaction(self._db):
                self._db.executemany(
                    "INSERT INTO pending(kind, body, n, size, created_ms) VALUES (?, ?, ?, ?, ?)",
                    [(kind.value, body, n, len(body), now) for body, n in self._chunks(bodies)],
                )
            self._used += size
        return len(bodies)

    def _chunks(self, bodies: list[bytes]) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        part: list[bytes] = []
        size = 0
        for b in bodies:
            if part and (len(part) >= self.chunk_records or size + len(b) + 1 > self.chunk_bytes):
                out.append((b",".join(part), len(part)))
                part, size = [], 0
            part.append(b)
            size += len(b) + 1
        if part:
            out.append((b",".join(part), len(part)))
        return out

    def _shed_telemetry(self, need: int) -> None:
        """Delete the oldest unsealed telemetry records until ``need`` bytes are free."""
        kinds = [k.value for k in TELEMETRY_KINDS]
        marks = ",".join("?" * len(kinds))
        freed, ids, counts = 0, [], Counter[str]()
        for rid, kind, size, n in self._db.execute(
            f"SELECT id, kind, size, n FROM pending WHERE kind IN ({marks}) ORDER BY id", kinds
        ):
            if freed >= need:
                break
            ids.append((rid,))
            freed += size
            counts[kind] += n
        if ids:
            self._db.executemany("DELETE FROM pending WHERE id = ?", ids)
            self._used -= freed
            self.dropped.update(counts)
            log.warning("outbox over budget: dropped %d oldest telemetry record(s)", len(ids))

    # -- sender side ---------------------------------------------------------------------------
    def seal(self, builder: FrameBuilder, *, max_records: int, max_bytes: int) -> OutMessage | None:
        """Move the oldest pending records of one kind into a new message (one transaction)."""
        with self._lock:
            first = self._db.execute("SELECT kind FROM pending ORDER BY id LIMIT 1").fetchone()
            if first is None:
                return None
            kind = ContentType(first[0])
            take: list[tuple[int, bytes, int, int]] = []
            total = count = 0
            # Sizes first (cheap), bodies only for the rows taken: rows can be whole chunks.
            for rid, size, n in self._db.execute(
                "SELECT id, size, n FROM pending WHERE kind = ? ORDER BY id LIMIT ?", (first[0], max_records)
            ):
                if take and (total + size > max_bytes or count + n > max_records):
                    break
                take.append((rid, b"", size, n))  # whole rows; at least one
                total += size
                count += n
            lo, hi = take[0][0], take[-1][0]
            bodies = [
                r[0]
                for r in self._db.execute(
                    "SELECT body FROM pending WHERE kind = ? AND id BETWEEN ? AND ? ORDER BY id",
                    (first[0], lo, hi),
                )
            ]
            seq = int(self.get_state("next_seq", "1") or 1)
            low = self._low_water_locked(seq)
            msg_id = new_message_id()
            frame = builder(seq, msg_id, kind, bodies, count, low)
            with transaction(self._db):
                self._db.execute(
                    "INSERT INTO messages(seq, msg_id, kind, frame, n_records, raw_bytes, created_ms) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (seq, msg_id, kind.value, frame, count, total, _now_ms()),
                )
                # The taken rows are exactly this kind's oldest ones, up to the last id taken.
                self._db.execute("DELETE FROM pending WHERE kind = ? AND id <= ?", (kind.value, take[-1][0]))
                self._db.execute(
                    "INSERT OR REPLACE INTO state(key, value) VALUES ('next_seq', ?)", (str(seq + 1),)
                )
            return OutMessage(seq, msg_id, kind, frame, count)

    def _low_water_locked(self, next_seq: int) -> int:
        row = self._db.execute("SELECT MIN(seq) FROM messages").fetchone()
        return int(row[0]) if row and row[0] is not None else next_seq

    def due(self, *, ack_timeout_s: float, limit: int) -> list[OutMessage]:
        """Messages never sent (since the last reconnect) or unacked for ``ack_timeout_s``."""
        cutoff = _now_ms() - int(ack_timeout_s * 1000)
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, msg_id, kind, frame, n_records FROM messages "
                "WHERE sent_ms IS NULL OR sent_ms < ? ORDER BY seq LIMIT ?",
                (cutoff, limit),
            ).fetchall()
        return [OutMessage(r[0], r[1], ContentType(r[2]), r[3], r[4]) for r in rows]

    def mark_sent(self, seqs: list[int]) -> None:
        now = _now_ms()
        with self._lock:
            self._db.executemany(
                "UPDATE messages SET sent_ms = ?, attempts = attempts + 1 WHERE seq = ?",
                [(now, s) for s in seqs],
            )

    def mark_all_unsent(self) -> None:
        """After a reconnect: everything in flight is sent again (the cloud de-duplicates)."""
        with self._lock:
            self._db.execute("UPDATE messages SET sent_ms = NULL")

    def ack(self, msg_ids: list[str]) -> int:
        """The cloud applied these messages: forget them. Returns the records released."""
        if not msg_ids:
            return 0
        with self._lock:
            released = freed = 0
            with transaction(self._db):
                for mid in msg_ids:
                    row = self._db.execute(
                        "SELECT n_records, raw_bytes FROM messages WHERE msg_id = ?", (mid,)
                    ).fetchone()
                    if row is None:
                        continue  # a duplicate ack
                    self._db.execute("DELETE FROM messages WHERE msg_id = ?", (mid,))
                    released += row[0]
                    freed += row[1]
            self._used -= freed
        return released

    def dead_letter(self, msg_id: str, reason: str) -> int:
        """The cloud refused a message for good: park it (kept for inspection), release it."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, kind, frame, n_records, raw_bytes FROM messages WHERE msg_id = ?", (msg_id,)
            ).fetchone()
            if row is None:
                return 0
            with transaction(self._db):
                self._db.execute(
                    "INSERT OR REPLACE INTO dead_letters(msg_id, seq, kind, reason, frame, at_ms) "
                    "VALUES (?,?,?,?,?,?)",
                    (msg_id, row[0], row[1], reason, row[2], _now_ms()),
                )
                self._db.execute("DELETE FROM messages WHERE msg_id = ?", (msg_id,))
            self._used -= row[4]
            return int(row[3])

    def dead_letters(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [tuple(r) for r in self._db.execute("SELECT msg_id, kind, reason FROM dead_letters")]

    # -- downlink de-duplication -----------------------------------------------------------------
    def seen(self, msg_id: str) -> tuple[bool, bytes | None]:
        with self._lock:
            row = self._db.execute("SELECT ack FROM seen_down WHERE msg_id = ?", (msg_id,)).fetchone()
        return (row is not None, row[0] if row else None)

    def remember(self, msg_id: str, ack: bytes | None = None) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO seen_down(msg_id, at_ms, ack) VALUES (?, ?, ?)",
                (msg_id, _now_ms(), ack),
            )
            if self._db.execute("SELECT COUNT(*) FROM seen_down").fetchone()[0] > SEEN_KEEP * 1.2:
                self._db.execute(
                    "DELETE FROM seen_down WHERE msg_id IN "
                    "(SELECT msg_id FROM seen_down ORDER BY at_ms LIMIT ?)",
                    (SEEN_KEEP // 5,),
                )
