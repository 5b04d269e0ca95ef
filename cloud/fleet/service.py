"""Fleet service: nodes, their credentials, live state from heartbeats / status, commands.

Live state (online, last heartbeat, reported version and metrics) changes with every heartbeat,
so it is kept in memory and written to the database in batches (``flush``); registrations,
labels, drain flags and desired versions are written through at once. Several controller
replicas may share the database: the leader (``cloud.leader``) talks to nodes, followers
pick up what it wrote (``refresh``) and queue their commands for it (docs/arch/cloud.md).
Commands and their acks are kept in the command ledger (``cloud.fleet.ledger``), which the
MQTT sync hub shares.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from cloud.db.engine import Database
from cloud.db.models import Node, NodeEnrolment, utcnow
from cloud.fleet.channel import CommandChannel
from cloud.fleet.ledger import CommandLedger, LedgerEntry
from cloud.fleet.schemas import CommandOut, NodeOut, NodeSample
from contracts.commands import Command, CommandAck, CommandKind, CommandStatus
from contracts.errors import BadRequest, Conflict, NotFound
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.fleet")

HEARTBEATS = Counter("autoglm_cloud_heartbeats_total", "Heartbeats ingested from edge nodes")
# a heartbeat older than the newest taken by at most this much is a late one; older still, the
# node's clock went back (reset, re-imaged device) and it is taken as the new reference
STALE_HEARTBEAT_WINDOW_MS = 120_000
HEARTBEATS_STALE = Counter(
    "autoglm_cloud_heartbeats_stale_total",
    "Heartbeats built before the node's newest one seen (their model version is not taken)",
)
NODES = Gauge("autoglm_cloud_nodes", "Known nodes by state", ["state"])
COMMANDS = Counter("autoglm_cloud_commands_total", "Commands sent to nodes", ["kind", "outcome"])

SAMPLES_PER_NODE = 512
AckListener = Callable[[str, CommandAck, LedgerEntry | None], None]  # entry None: unknown / repeated


META_COLUMNS = frozenset({"labels", "token_hash", "registered_via", "drained"})


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class LiveNode:
    node_id: str
    labels: dict[str, str]
    token_hash: str = ""
    registered_via: str = "bootstrap"
    current_version: str = ""
    desired_version: str = ""
    online: bool = False
    drained: bool = False
    last_seen: float | None = None  # epoch seconds
    metrics: dict[str, Any] = field(default_factory=dict)
    last_error: str = ""
    last_heartbeat_ts_ms: int = 0  # the node's clock: the newest heartbeat taken (0: none, or untimed)
    # Plain tuples (NodeSample's fields): exact tuples of atomic values are untracked by the cyclic GC,
    # so 512 samples x 500 nodes cost no GC pauses (as objects they stalled each full collection ~1 s).
    samples: deque[tuple[float, str, int, float, float, float]] = field(
        default_factory=lambda: deque(maxlen=SAMPLES_PER_NODE)
    )
    dirty: bool = False
    meta_dirty: bool = False  # labels / token / drain changed here and not yet written

    def out(self) -> NodeOut:
        return NodeOut(
            node_id=self.node_id,
            labels=dict(self.labels),
            online=self.online,
            drained=self.drained,
            current_version=self.current_version,
            desired_version=self.desired_version,
            last_seen=datetime.fromtimestamp(self.last_seen, UTC) if self.last_seen else None,
            metrics=dict(self.metrics),
            last_error=self.last_error,
            registered_via=self.registered_via,
        )


def matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def parse_selector(text: str | None) -> dict[str, str]:
    """``site=a,group=b`` -> {"site": "a", "group": "b"}."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise BadRequest(f"label selector {part!r} must be key=value")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


class FleetService:
    def __init__(
        self,
        db: Database,
        channel: CommandChannel | None = None,
        *,
        heartbeat_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.channel = channel
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.clock = clock
        self._lock = threading.RLock()
        self._db_lock = threading.Lock()
        self._nodes: dict[str, LiveNode] = {}
        self._by_token: dict[str, str] = {}
        self._ack_listeners: list[AckListener] = []
        self.ledger = CommandLedger(db)
        self.heartbeats_ingested = 0
        # Whether this replica may talk to nodes now (the leader); otherwise commands are only
        # stored as ``queued`` and the leader sends them (``send_queued``). Set by the container.
        self.may_send: Callable[[], bool] = lambda: True
        self._load()

    # -- persistence --------------------------------------------------------------------------

    def _load(self) -> None:
        with self.db.session() as s:
            for n in s.scalars(select(Node)):
                live = LiveNode(
                    node_id=n.id,
                    labels=dict(n.labels),
                    token_hash=n.token_hash,
                    registered_via=n.registered_via,
                    current_version=n.current_version,
                    desired_version=n.desired_version,
                    online=False,
                    drained=n.drained,
                    last_seen=n.last_seen.timestamp() if n.last_seen else None,
                    metrics=dict(n.metrics),
                    last_error=n.last_error,
                )
                self._nodes[n.id] = live
                if n.token_hash:
                    self._by_token[n.token_hash] = n.id

    def _persist(self, node_ids: Iterable[str] | None = None) -> int:
        """Write nodes (default: every dirty one) to the database.

        Writers are serialised by ``_db_lock`` and snapshot under it, so a later snapshot is
        always written after an earlier one (lock order: ``_db_lock`` then ``_lock``).
        """
        with self._db_lock:
            with self._lock:
                if node_ids is None:
                    nodes = [n for n in self._nodes.values() if n.dirty]
                else:
                    nodes = [self._nodes[n] for n in node_ids if n in self._nodes]
                snapshot = [LiveNode(**{**n.__dict__, "samples": deque(maxlen=1)}) for n in nodes]
                for n in nodes:
                    n.dirty = n.meta_dirty = False
            if snapshot:
                with self.db.session() as s:
                    self._write_rows(s, snapshot)
        return len(snapshot)

    @staticmethod
    def _row_values(live: LiveNode) -> dict[str, Any]:
        return {
            "id": live.node_id,
            "labels": dict(live.labels),
            "token_hash": live.token_hash,
            "registered_via": live.registered_via,
            "current_version": live.current_version,
            "desired_version": live.desired_version,
            "online": live.online,
            "drained": live.drained,
            "last_seen": datetime.fromtimestamp(live.last_seen, UTC) if live.last_seen else None,
            "metrics": dict(live.metrics),
            "last_error": live.last_error,
        }

    def _write_rows(self, s: Session, snapshot: list[LiveNode]) -> None:
        """Bulk insert new nodes and bulk update known ones (one statement each)."""
        values = [self._row_values(n) for n in snapshot]
        ids = [v["id"] for v in values]
        known: set[str] = set()
        for i in range(0, len(ids), 500):
            known |= set(s.scalars(select(Node.id).where(Node.id.in_(ids[i : i + 500]))))
        new = [v for v in values if v["id"] not in known]
        if new:
            s.execute(insert(Node), [{**v, "created_at": utcnow()} for v in new])
        # Labels, token and drain of a known node are written only when this replica changed
        # them, so a heartbeat flush never overwrites what another replica wrote (see refresh).
        meta = {n.node_id for n in snapshot if n.meta_dirty}
        full = [v for v in values if v["id"] in known and v["id"] in meta]
        live = [
            {k: x for k, x in v.items() if k not in META_COLUMNS}
            for v in values
            if v["id"] in known and v["id"] not in meta
        ]
        for rows in (full, live):
            if rows:
                s.execute(update(Node), rows)

    def refresh(self) -> int:
        """Pick up what other controller replicas wrote: nodes registered, relabelled, drained or
        deleted elsewhere (the database is the truth for these; heartbeat state stays this
        replica's own). Followers also take desired versions from it. Returns the node count."""
        follower = not self.may_send()
        with self._db_lock:
            with self.db.session() as s:
                rows = s.execute(
                    select(
                        Node.id,
                        Node.labels,
                        Node.token_hash,
                        Node.registered_via,
                        Node.drained,
                        Node.desired_version,
                    )
                ).all()
            with self._lock:
                seen: set[str] = set()
                for nid, labels, token_hash, via, drained, desired in rows:
                    seen.add(nid)
                    live = self._nodes.get(nid)
                    if live is None:
                        live = self._nodes[nid] = LiveNode(node_id=nid, labels=dict(labels))
                    elif live.meta_dirty:
                        continue  # our own change is newer and about to be written
                    live.labels, live.drained, live.registered_via = dict(labels), drained, via
                    if live.token_hash != token_hash:
                        self._by_token.pop(live.token_hash, None)
                        live.token_hash = token_hash
                    if token_hash:
                        self._by_token[token_hash] = nid
                    if follower:
                        live.desired_version = desired
                for nid in [n for n, live in self._nodes.items() if n not in seen and not live.meta_dirty]:
                    gone = self._nodes.pop(nid)
                    self._by_token.pop(gone.token_hash, None)
                return len(self._nodes)

    def flush(self) -> int:
        """Write heartbeat-driven changes to the database; returns how many nodes were written."""
        written = self._persist()
        self._update_gauges()
        return written

    def _update_gauges(self) -> None:
        with self._lock:
            online = sum(1 for n in self._nodes.values() if n.online)
            total = len(self._nodes)
        NODES.labels(state="online").set(online)
        NODES.labels(state="offline").set(total - online)

    # -- registration and credentials ---------------------------------------------------------

    def is_registered(self, node_id: str) -> bool:
        """Whether ``node_id`` holds a credential (here or, written by another replica, in the
        database). A node that only appeared over MQTT holds none and may still register."""
        with self._lock:
            live = self._nodes.get(node_id)
            if live is not None and live.token_hash:
                return True
        with self.db.session() as s:
            row = s.get(Node, node_id)
            return bool(row is not None and row.token_hash)

    def register(
        self, node_id: str, labels: dict[str, str], *, via: str = "bootstrap", allow_existing: bool = True
    ) -> str:
        """Register (or re-register) a node; returns its new bearer token (old ones stop working).

        ``allow_existing=False`` (the shared bootstrap token) refuses a node id that already holds
        a credential with 409: only an admin, an enrolment token for that id or the node's own
        token may replace it."""
        if not allow_existing and self.is_registered(node_id):
            raise Conflict(
                f"node {node_id!r} is already registered; re-registering it needs an admin token, "
                "a one-time enrolment token for it, or the node's own token"
            )
        token = secrets.token_urlsafe(32)
        th = hash_token(token)
        with self._lock:
            live = self._nodes.get(node_id)
            if live is None:
                live = LiveNode(node_id=node_id, labels=dict(labels))
                self._nodes[node_id] = live
            else:
                if not allow_existing and live.token_hash:
                    raise Conflict(f"node {node_id!r} is already registered")
                live.labels.update(labels)
                if live.token_hash:
                    self._by_token.pop(live.token_hash, None)
            live.token_hash = th
            live.registered_via = via
            live.meta_dirty = True
            self._by_token[th] = node_id
        self._persist([node_id])
        log.info("node registered", extra={"node_id": node_id, "via": via})
        return token

    # -- one-time enrolment tokens (created by an admin for one node id) ------------------------

    def create_enrolment(self, node_id: str, *, ttl_s: float, actor: str) -> tuple[str, float]:
        """A one-time token that registers (or re-registers) ``node_id`` once, until it expires.
        Replaces an earlier unused one. Returns (token, expires_at epoch seconds)."""
        token = "enrol-" + secrets.token_urlsafe(32)
        expires = self.clock() + ttl_s
        with self._db_lock, self.db.session() as s:
            row = s.get(NodeEnrolment, node_id)
            if row is None:
                s.add(
                    NodeEnrolment(
                        node_id=node_id, token_hash=hash_token(token), expires_at=expires, created_by=actor
                    )
                )
            else:
                row.token_hash, row.expires_at, row.created_by = hash_token(token), expires, actor
                row.created_at = utcnow()
        log.info("enrolment token created", extra={"node_id": node_id, "actor": actor})
        return token, expires

    def enrolment_node(self, token: str) -> str | None:
        """The node id an unexpired enrolment token is for (None: not an enrolment token)."""
        if not token.startswith("enrol-"):
            return None
        with self.db.session() as s:
            row = s.scalars(
                select(NodeEnrolment).where(NodeEnrolment.token_hash == hash_token(token))
            ).first()
            if row is None or row.expires_at < self.clock():
                return None
            return row.node_id

    def consume_enrolment(self, node_id: str, token: str) -> bool:
        """Use the token up (atomically: of two concurrent uses only one succeeds)."""
        with self._db_lock, self.db.session() as s:
            gone = s.execute(
                delete(NodeEnrolment)
                .where(
                    NodeEnrolment.node_id == node_id,
                    NodeEnrolment.token_hash == hash_token(token),
                    NodeEnrolment.expires_at >= self.clock(),
                )
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
        return bool(gone == 1)

    def authenticate(self, token: str) -> str | None:
        with self._lock:
            return self._by_token.get(hash_token(token))

    # -- observations from the sync layer -----------------------------------------------------

    def _ensure(self, node_id: str) -> LiveNode:
        live = self._nodes.get(node_id)
        if live is None:  # appeared through MQTT without registering over HTTP
            live = LiveNode(node_id=node_id, labels={}, registered_via="mqtt", dirty=True, meta_dirty=True)
            self._nodes[node_id] = live
            log.info("node appeared over MQTT", extra={"node_id": node_id})
        return live

    def on_status(self, node_id: str, online: bool, info: dict[str, Any] | None = None) -> None:
        with self._lock:
            live = self._ensure(node_id)
            live.online = online
            if online:
                live.last_seen = self.clock()
            group = (info or {}).get("group")
            if group and "group" not in live.labels:
                live.labels["group"] = str(group)
                live.meta_dirty = True
            live.dirty = True

    def on_heartbeat(self, node_id: str, payload: dict[str, Any]) -> None:
        HEARTBEATS.inc()
        self.heartbeats_ingested += 1
        now = self.clock()
        version = str(payload.get("model_version") or "")
        sample = NodeSample(
            ts=now,
            version=version,
            requests=int(payload.get("requests", 0) or 0),
            error_rate=float(payload.get("error_rate", 0.0) or 0.0),
            p99_ms=float(payload.get("latency_p99_ms", 0.0) or 0.0),
            fallback_rate=float(payload.get("fallback_rate", 0.0) or 0.0),
        )
        try:
            ts_ms = int(payload.get("ts_ms") or 0)
        except (TypeError, ValueError):
            ts_ms = 0
        with self._lock:
            live = self._ensure(node_id)
            live.online = True
            live.last_seen = now
            # a heartbeat built before the newest one taken (delivered late, or replayed) keeps its
            # traffic sample but must not rewind the node's version or metrics
            behind = live.last_heartbeat_ts_ms - ts_ms
            if ts_ms > 0 and 0 < behind <= STALE_HEARTBEAT_WINDOW_MS:
                HEARTBEATS_STALE.inc()
            else:
                live.last_heartbeat_ts_ms = ts_ms
                if version:
                    live.current_version = version
                live.metrics = {k: v for k, v in payload.items() if k not in ("node_id",)}
            live.samples.append(tuple(sample))  # type: ignore[arg-type]
            live.dirty = True

    def sweep(self) -> list[str]:
        """Mark nodes without a heartbeat for ``heartbeat_timeout_s`` offline; returns them."""
        now = self.clock()
        gone = []
        with self._lock:
            for live in self._nodes.values():
                if (
                    live.online
                    and live.last_seen is not None
                    and now - live.last_seen > self.heartbeat_timeout_s
                ):
                    live.online = False
                    live.dirty = True
                    gone.append(live.node_id)
        return gone

    # -- queries and management ---------------------------------------------------------------

    def get(self, node_id: str) -> NodeOut:
        with self._lock:
            live = self._nodes.get(node_id)
            if live is None:
                raise NotFound(f"node {node_id!r} is not known")
            return live.out()

    def list_nodes(
        self,
        selector: dict[str, str] | None = None,
        *,
        online: bool | None = None,
        drained: bool | None = None,
    ) -> list[NodeOut]:
        with self._lock:
            out = [
                n.out()
                for n in self._nodes.values()
                if matches(n.labels, selector or {})
                and (online is None or n.online == online)
                and (drained is None or n.drained == drained)
            ]
        return sorted(out, key=lambda n: n.node_id)

    def node_ids(self, selector: dict[str, str], *, include_drained: bool = False) -> list[str]:
        with self._lock:
            return sorted(
                n.node_id
                for n in self._nodes.values()
                if matches(n.labels, selector) and (include_drained or not n.drained)
            )

    def set_labels(self, node_id: str, set_: dict[str, str], remove: Iterable[str]) -> NodeOut:
        with self._lock:
            live = self._nodes.get(node_id)
            if live is None:
                raise NotFound(f"node {node_id!r} is not known")
            live.labels.update(set_)
            for k in remove:
                live.labels.pop(k, None)
            live.meta_dirty = True
        self._persist([node_id])
        return self.get(node_id)

    def set_drained(self, node_id: str, drained: bool) -> NodeOut:
        with self._lock:
            live = self._nodes.get(node_id)
            if live is None:
                raise NotFound(f"node {node_id!r} is not known")
            live.drained = drained
            live.meta_dirty = True
        self._persist([node_id])
        return self.get(node_id)

    def delete(self, node_id: str) -> None:
        with self._lock:
            live = self._nodes.pop(node_id, None)
            if live is None:
                raise NotFound(f"node {node_id!r} is not known")
            self._by_token.pop(live.token_hash, None)
        with self._db_lock, self.db.session() as s:
            row = s.get(Node, node_id)
            if row is not None:
                s.delete(row)

    def live_view(self, node_id: str) -> tuple[str, str, bool, str] | None:
        """(current_version, desired_version, online, last_error) without copying samples."""
        with self._lock:
            n = self._nodes.get(node_id)
            return (n.current_version, n.desired_version, n.online, n.last_error) if n else None

    def samples(self, node_ids: Iterable[str], since: float) -> list[NodeSample]:
        with self._lock:
            out: list[NodeSample] = []
            for nid in node_ids:
                n = self._nodes.get(nid)
                if n is not None:
                    out.extend(NodeSample._make(s) for s in n.samples if s[0] >= since)
            return out

    # -- commands -----------------------------------------------------------------------------

    def add_ack_listener(self, listener: AckListener) -> None:
        self._ack_listeners.append(listener)

    def send_command(self, node_id: str, command: Command, *, rollout_id: int | None = None) -> str:
        return self.send_commands([(node_id, command)], rollout_id=rollout_id)[0]

    def send_commands(self, items: list[tuple[str, Command]], *, rollout_id: int | None = None) -> list[str]:
        """Send commands to nodes: desired versions are written, the commands recorded in the
        ledger (``sent``, or ``queued`` on a follower replica), then the channel delivers.
        Returns the command ids in order."""
        if self.channel is None:
            raise BadRequest("no command channel is configured (MQTT disabled)")
        send_now = self.may_send()
        prepared: list[tuple[str, Command]] = []
        with self._lock:
            for node_id, _ in items:
                if node_id not in self._nodes:
                    raise NotFound(f"node {node_id!r} is not known")
            for node_id, command in items:
                cmd = command.with_id(command.command_id or uuid.uuid4().hex)
                if cmd.kind is CommandKind.SET_DESIRED_VERSION:
                    self._nodes[node_id].desired_version = str(cmd.version)
                prepared.append((node_id, cmd))
        self._persist([n for n, c in prepared if c.kind is CommandKind.SET_DESIRED_VERSION])
        status = CommandStatus.SENT if send_now else CommandStatus.QUEUED
        self.ledger.add(prepared, status, rollout_id=rollout_id)
        for node_id, cmd in prepared:
            if send_now:  # a follower leaves them queued: the leader picks them up (send_queued)
                self.channel.send(node_id, cmd)
            COMMANDS.labels(kind=cmd.type, outcome=status.value).inc()
        return [c.command_id for _, c in prepared]

    def send_queued(self, limit: int = 500) -> int:
        """Send the commands other replicas queued (the leader calls this); returns how many.
        The ledger claims each one first, so it is sent once even if two replicas briefly
        both believe they lead."""
        if self.channel is None:
            return 0
        claimed = self.ledger.claim_queued(limit)
        for node_id, cmd in claimed:
            with self._lock:
                live = self._nodes.get(node_id)
                if live is not None and cmd.kind is CommandKind.SET_DESIRED_VERSION:
                    live.desired_version = str(cmd.version or "")
            self.channel.send(node_id, cmd)
            COMMANDS.labels(kind=cmd.type, outcome=CommandStatus.SENT.value).inc()
        return len(claimed)

    def on_ack(self, node_id: str, ack: CommandAck, *, recorded: bool = False) -> None:
        """A node's ack (HTTP fallback, or from the hub with ``recorded=True`` when it already
        applied the ack to the ledger). The ledger moves the command on once; the node's
        reported version and error are taken either way; listeners learn the rollout."""
        entry = self.ledger.entry(ack.command_id) if recorded else self.ledger.record_ack(node_id, ack)
        with self._lock:
            live = self._nodes.get(node_id)
            if live is not None:
                if ack.version:
                    live.current_version = ack.version
                live.last_error = "" if ack.ok else ack.detail
                live.dirty = True
        kind = entry.kind if entry is not None else "unknown"
        COMMANDS.labels(kind=kind, outcome="ok" if ack.ok else CommandStatus.FAILED.value).inc()
        if not ack.ok:
            log.warning("node could not apply command", extra={"node_id": node_id, "detail": ack.detail})
        for listener in list(self._ack_listeners):
            listener(node_id, ack, entry)

    def commands(self, node_id: str | None = None, limit: int = 100) -> list[CommandOut]:
        return self.ledger.list(node_id, limit)
