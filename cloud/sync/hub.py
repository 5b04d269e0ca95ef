"""CloudSync: the cloud's side of edge <-> cloud sync.

One MQTT connection subscribed to ``{p}/up/+/#`` feeds a queue; one worker thread decodes and
validates each message (rejects are counted by reason and logged, never raised), checks that the
envelope's node is the topic's node, and applies the node's ordered stream (memory, session
state, hard examples, events; sequence numbers 1, 2, ...) strictly in order: a message ahead of
a gap waits in a small reorder buffer, one behind the cursor (or already applied) is a duplicate
and is only re-acked. Each message is applied and remembered in one SQLite transaction
(:class:`SyncRepository`), then acked on ``{p}/down/{node}/ack`` — so it is applied exactly once
however often the node resends it.

Knowledge that changed the merged state is rebroadcast (fleet / the sender's group / none);
``broadcast_memory`` sends cloud-authored knowledge; a resync request is answered with the
shared knowledge merged after the node's cursor (everything, for a snapshot) in chunks.
Graph-path feedback priors (a node's own counts, checked: its own, bounded, schema paths) are
summed over the fleet by the repository; the sums they change go to the fleet
(``{p}/fleet/priors``) and, after a resync request, the sums stamped after the node's cursor go to
that node (``{p}/down/{node}/priors``) — ``sync_fleet_priors``.

Commands: the hub is their transport. It records a command in the command ledger (the fleet
service's table in the cloud database, :class:`cloud.fleet.ledger.CommandLedger`; a hub running
alone keeps the same table in a file next to its own) unless it is there already, publishes it,
resends what the ledger holds as unacked (periodically, and when a node comes online), and
applies each node ack to the ledger once (a repeated ack is dropped there).

Hooks for the controller: ``on_heartbeat(node_id, payload)``, ``on_status(node_id, NodeStatus)``
(the record as the node sent it, group included), ``on_command_ack(node_id, CommandAck)`` (after
the ledger took it), ``on_memory_merged(node_id, records)``,
``on_hard_examples(node_id, records)`` (the learning loop's queue, ``cloud.loop.queue``).
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cloud.fleet.ledger import CommandLedger
from cloud.sync import metrics
from cloud.sync.reorder import ReorderBuffer
from cloud.sync.repository import SyncRepository
from cloud.sync.settings import CloudSyncSettings
from cloud.sync.validation import validate_body
from contracts.commands import AckKind, AckStatus, Command, CommandAck, CommandStatus
from contracts.envelope import (
    DEFAULT_MAX_JSON_DEPTH,
    ContentType,
    Envelope,
    EnvelopeRejected,
    EnvelopeTooLarge,
    Framer,
    RejectReason,
    decode,
    new_message_id,
    shorten,
)
from contracts.heartbeat import STATUS_ONLINE, Heartbeat, NodeStatus
from contracts.logging import get_logger
from contracts.memory import ANONYMOUS_SOURCE_PREFIX, FleetPathPrior, KnowledgeRecord
from contracts.mqtt_client import ConnectionState, MqttConnection, MqttOptions
from contracts.topics import CLOUD_SENDER, DownKind, Topics, UpKind, check_segment

log = get_logger("autoglm.cloud.sync")


def fleet_share_refusal(rec: KnowledgeRecord, sender: str) -> str | None:
    """Why a shared record that ``sender`` (the broker-authenticated node) sent may not go to other
    nodes, or None when it may: it must be the sender's own write (the HLC of the write names it)
    and not one made without the edge admin token (``source`` ``http:anonymous@…``)."""
    if rec.source.startswith(ANONYMOUS_SOURCE_PREFIX):
        return "anonymous"
    if rec.origin != sender:
        return "foreign_origin"
    return None


_TOPIC_CT = {
    UpKind.MEMORY.value: ContentType.MEMORY,
    UpKind.SESSION.value: ContentType.SESSION,
    UpKind.HARD_EXAMPLES.value: ContentType.HARD_EXAMPLE,
    UpKind.EVENTS.value: ContentType.EVENT,
    UpKind.PRIORS.value: ContentType.PATH_PRIOR,
    UpKind.HEARTBEAT.value: ContentType.HEARTBEAT,
    UpKind.STATUS.value: ContentType.STATUS,
    UpKind.ACK.value: ContentType.ACK,
    UpKind.RESYNC.value: ContentType.RESYNC_REQUEST,
}
ORDERED = frozenset(
    {
        ContentType.MEMORY,
        ContentType.SESSION,
        ContentType.HARD_EXAMPLE,
        ContentType.EVENT,
        ContentType.PATH_PRIOR,
    }
)
ACKS_PER_FRAME = 2000

HeartbeatHook = Callable[[str, dict[str, Any]], None]
StatusHook = Callable[[str, NodeStatus], None]
CommandAckHook = Callable[[str, CommandAck], None]
MemoryHook = Callable[[str, list[KnowledgeRecord]], None]
HardExampleHook = Callable[[str, list[dict[str, Any]]], None]


def _fan_out(what: str, hooks: list[Callable[..., None]], *args: Any) -> None:
    """Call every hook; one that fails is logged and does not stop the others (or the hub)."""
    for hook in list(hooks):
        try:
            hook(*args)
        except Exception:
            log.exception("%s hook failed", what)


class CloudSync:
    def __init__(
        self,
        settings: CloudSyncSettings | None = None,
        db_path: Path | str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        repository: SyncRepository | None = None,
        ledger: CommandLedger | None = None,
    ) -> None:
        self.settings = s = settings or CloudSyncSettings()
        self._own_repo = repository is None
        self.repo = repository or SyncRepository(db_path or s.sync_db_path)
        self._own_ledger = ledger is None
        self.ledger = ledger or CommandLedger.standalone(self.repo.path.with_suffix(".commands.sqlite3"))
        moved = self.repo.take_legacy_commands(self.ledger.import_legacy)
        if moved:
            log.info("moved %d commands from the hub's old table into the command ledger", moved)
        self.clock = self.repo.clock
        self.framer = Framer(
            CLOUD_SENDER, self.clock, compress=s.sync_compress, max_bytes=s.sync_max_message_bytes
        )
        self.topics = Topics(s.sync_topic_prefix)
        self._queue: queue.Queue[tuple[str, bytes, bool] | None] = queue.Queue()
        self._expected: dict[str, int] = {}
        self._buffers: dict[str, ReorderBuffer] = {}
        self.rejected: Counter[str] = Counter()
        self.applied_records: Counter[str] = Counter()
        self.duplicates = 0
        self._heartbeat_hooks: list[HeartbeatHook] = []
        self._status_hooks: list[StatusHook] = []
        self._command_ack_hooks: list[CommandAckHook] = []
        self._memory_hooks: list[MemoryHook] = []
        self._hard_example_hooks: list[HardExampleHook] = []
        self._broadcast_acks: dict[str, set[str]] = defaultdict(set)
        self._ack_cv = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._online: set[str] = set()  # from the nodes' retained status (transport state)
        self._groups: dict[str, str] = {}  # node -> group, for group rebroadcasts
        self._conn = MqttConnection(
            MqttOptions(
                host=host or s.sync_mqtt_host,
                port=port or s.sync_mqtt_port,
                client_id=s.sync_mqtt_client_id,
                mqtt5=s.sync_mqtt_v5,
                username=s.sync_mqtt_username,
                password=s.sync_mqtt_password,
                tls=s.sync_mqtt_tls,
                tls_ca_file=str(s.sync_mqtt_tls_ca_file) if s.sync_mqtt_tls_ca_file else None,
                subscriptions=tuple(self.topics.cloud_subscriptions()),
            ),
            on_message=lambda t, p, r: self._queue.put((t, p, r)),
            on_connected=self._on_connected,
            name="cloud-sync",
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> CloudSync:
        self._stop.clear()
        self._conn.start()
        for target, name in ((self._work_loop, "worker"), (self._retry_loop, "retry")):
            t = threading.Thread(target=target, name=f"cloud-sync-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, *, close_repo: bool = True) -> None:
        """Stop threads and disconnect; ``close_repo=False`` keeps the sync store for a later ``start``."""
        self._stop.set()
        self._queue.put(None)
        for t in self._threads:
            t.join(10)
        self._threads.clear()
        self._conn.stop()
        if self._own_repo and close_repo:
            self.repo.close()
        if self._own_ledger and close_repo:
            self.ledger.db.dispose()

    @property
    def state(self) -> ConnectionState:
        return self._conn.state

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._conn.wait_connected(timeout)

    def online_nodes(self) -> list[str]:
        """Nodes whose last status said online (the broker re-delivers retained ones on connect)."""
        return sorted(self._online)

    def node_group(self, node_id: str) -> str | None:
        return self._groups.get(node_id)

    def idle(self) -> bool:
        """No received message waits to be processed (for tests and graceful shutdown)."""
        return self._queue.unfinished_tasks == 0

    # -- hooks ---------------------------------------------------------------------------------
    def on_heartbeat(self, hook: HeartbeatHook) -> None:
        self._heartbeat_hooks.append(hook)

    def on_status(self, hook: StatusHook) -> None:
        self._status_hooks.append(hook)

    def on_command_ack(self, hook: CommandAckHook) -> None:
        self._command_ack_hooks.append(hook)

    def on_memory_merged(self, hook: MemoryHook) -> None:
        self._memory_hooks.append(hook)

    def on_hard_examples(self, hook: HardExampleHook) -> None:
        """``hook(node_id, records)`` after a node's hard examples were applied (once per message)."""
        self._hard_example_hooks.append(hook)

    def rejected_counts(self) -> dict[str, int]:
        return dict(self.rejected)

    # -- downlink ------------------------------------------------------------------------------
    def send_command(self, node_id: str, command: Command | dict[str, Any]) -> str:
        """Persist and send a command; returns its id (``command.command_id`` when given).
        Resent until the node acks it (the node runs it once and re-acks duplicates)."""
        check_segment(node_id)
        cmd = command if isinstance(command, Command) else Command.model_validate(command)
        cmd = cmd.with_id(cmd.command_id or uuid.uuid4().hex)
        self.ledger.add([(node_id, cmd)], CommandStatus.SENT)  # kept when the fleet recorded it
        self._publish_command(node_id, cmd)
        metrics.COMMANDS.labels(outcome=CommandStatus.SENT.value).inc()
        return cmd.command_id

    def _publish_command(self, node_id: str, cmd: Command) -> None:
        frame = self.framer.records(ContentType.COMMAND, [cmd.to_record()])
        self._conn.publish(self.topics.commands(node_id), frame, qos=1)

    def _resend(self, node_id: str | None = None) -> None:
        """Publish the ledger's unacked commands (of one node, or of the online ones)."""
        for node, cmd in self.ledger.unacked(node_id):
            if node_id is not None or node in self._online:
                self._publish_command(node, cmd)

    def wait_command_ack(self, command_id: str, timeout: float) -> CommandAck | None:
        """Block until the node acked ``command_id`` (returns the ack) or ``timeout``."""
        with self._ack_cv:
            self._ack_cv.wait_for(lambda: self.ledger.ack(command_id) is not None, timeout)
        return self.ledger.ack(command_id)

    def broadcast_memory(
        self, records: Iterable[KnowledgeRecord], group: str | None = None, *, node: str | None = None
    ) -> list[str]:
        """Merge cloud-authored knowledge and send it to the fleet, one node group or one node
        (``node`` wins over ``group``). Returns the message ids (see :meth:`broadcast_acked_by`)."""
        recs = list(records)
        self.repo.merge_knowledge(recs, CLOUD_SENDER)
        scope = "node" if node else "group" if group else "fleet"
        return self._send_memory(recs, group=None if node else group, node=node, scope=scope)

    def broadcast_acked_by(self, message_id: str) -> set[str]:
        with self._ack_cv:
            return set(self._broadcast_acks.get(message_id, set()))

    def _send_memory(
        self,
        recs: list[KnowledgeRecord],
        *,
        group: str | None = None,
        node: str | None = None,
        scope: str = "fleet",
    ) -> list[str]:
        if node is not None:
            topic = self.topics.memory_down(node)
        elif group is not None:
            topic = self.topics.group(group, DownKind.MEMORY)
        else:
            topic = self.topics.fleet(DownKind.MEMORY)
        ids = []
        step = self.settings.sync_batch_max_records
        for i in range(0, len(recs), step):
            mid = new_message_id()
            frame = self.framer.records(
                ContentType.MEMORY, [r.model_dump() for r in recs[i : i + step]], message_id=mid
            )
            self._conn.publish(topic, frame, qos=1)
            ids.append(mid)
        metrics.BROADCAST_RECORDS.labels(scope=scope).inc(len(recs))
        return ids

    def _send_fleet_priors(self, priors: list[FleetPathPrior], node: str | None = None) -> None:
        """Fleet path priors to every node (or to one, after its resync request)."""
        topic = (
            self.topics.fleet(DownKind.PRIORS) if node is None else self.topics.down(node, DownKind.PRIORS)
        )
        step = self.settings.sync_batch_max_records
        for i in range(0, len(priors), step):
            frame = self.framer.records(
                ContentType.FLEET_PRIOR, [p.model_dump() for p in priors[i : i + step]]
            )
            self._conn.publish(topic, frame, qos=1)

    def _send_resync(self, node_id: str, since: str | None) -> None:
        if self.settings.sync_fleet_priors:  # before the knowledge: a finished resync has both
            priors = self.repo.fleet_priors_since(since)
            if priors:
                self._send_fleet_priors(priors, node_id)
        cursor = since
        part = 0
        rid = uuid.uuid4().hex
        limit = self.settings.sync_batch_max_records
        while True:
            rows = self.repo.knowledge_since(cursor, node_id, limit)
            final = len(rows) < limit
            if rows:
                cursor = rows[-1][0]
            meta = {"resync": rid, "part": part, "final": final, "cursor": cursor, "snapshot": since is None}
            # the same provenance rule as the live rebroadcast: another node's anonymous or
            # foreign-origin writes are not handed out (the node's own and the cloud's are)
            recs = [
                r.model_dump()
                for _, r, sender in rows
                if sender in (node_id, CLOUD_SENDER) or fleet_share_refusal(r, sender) is None
            ]
            frame = self.framer.records(ContentType.RESYNC_RESPONSE, recs, meta=meta)
            self._conn.publish(self.topics.resync_response(node_id), frame, qos=1)
            part += 1
            if final:
                break
        log.info("resync for %s since %s: %d part(s)", node_id, since, part)

    # -- receiving -----------------------------------------------------------------------------
    def _on_connected(self, session_present: bool) -> None:
        self._resend()

    def _retry_loop(self) -> None:
        while not self._stop.wait(self.settings.sync_command_retry_s):
            if not self._conn.connected:
                continue
            for node, cmd in self.ledger.unacked():
                self._publish_command(node, cmd)

    def _work_loop(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while len(batch) < 256:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            acks: dict[str, list[dict[str, Any]]] = defaultdict(list)
            stop = False
            for entry in batch:
                if entry is None:
                    stop = True
                    continue
                try:
                    self._process(*entry, acks=acks)
                except Exception:
                    log.exception("sync worker failed on %s", entry[0])
            try:
                self._send_acks(acks)
            except Exception:
                log.exception("sending acks failed")
            for _ in batch:
                self._queue.task_done()
            if stop:
                return

    def _send_acks(self, acks: dict[str, list[dict[str, Any]]]) -> None:
        for node, recs in acks.items():
            for i in range(0, len(recs), ACKS_PER_FRAME):
                self._publish_acks(node, recs[i : i + ACKS_PER_FRAME])

    def _publish_acks(self, node: str, recs: list[dict[str, Any]]) -> None:
        """One ack frame, halved until it fits ``sync_max_message_bytes`` (reasons are short, so
        only a small configured maximum needs it)."""
        try:
            frame = self.framer.records(ContentType.ACK, recs)
        except EnvelopeTooLarge:
            if len(recs) == 1:
                log.error("ack of %s for %s does not fit one message; not sent", recs[0].get("id"), node)
                return
            half = len(recs) // 2
            self._publish_acks(node, recs[:half])
            self._publish_acks(node, recs[half:])
            return
        self._conn.publish(self.topics.down_ack(node), frame)

    def _reject(self, reason: RejectReason, topic: str, detail: str) -> None:
        self.rejected[reason.value] += 1
        metrics.REJECTED.labels(reason=reason.value).inc()
        log.warning(
            "rejected sync message on %s: %s",
            shorten(topic, 200),
            shorten(detail),
            extra={"reason": reason.value},
        )

    def _process(
        self, topic: str, payload: bytes, retained: bool, *, acks: dict[str, list[dict[str, Any]]]
    ) -> None:
        parsed = self.topics.parse(topic)
        if parsed is None or parsed.direction != "up" or parsed.kind not in _TOPIC_CT:
            self._reject(RejectReason.UNKNOWN_CONTENT_TYPE, topic, "not a known sync topic")
            return
        topic_ct, s = _TOPIC_CT[parsed.kind], self.settings
        try:
            # Ordered bodies are validated when their turn comes (knowledge straight from JSON
            # into models, duplicates not at all); everything else is parsed here. Sizes, record
            # count, JSON values and depth are all checked before parsing.
            env = decode(
                payload,
                max_bytes=s.sync_max_message_bytes,
                max_decompressed_bytes=s.sync_max_decompressed_bytes,
                max_records=s.sync_max_message_records,
                max_json_values=s.sync_max_json_values,
                parse_records=topic_ct not in ORDERED,
            )
        except EnvelopeRejected as err:
            self._reject(err.reason, topic, str(err))
            head = err.header
            if (
                head is not None
                and topic_ct in ORDERED
                and head.content_type is topic_ct
                and head.seq >= 1
                and head.node_id == parsed.target
                and head.node_id != CLOUD_SENDER
            ):
                # A sound header with a refused body: acked "rejected" in sequence order (the
                # node parks it as a dead letter), so that the node's stream does not stall.
                self._ordered(head, acks)
            return
        if env.node_id != parsed.target or env.node_id == CLOUD_SENDER:
            self._reject(
                RejectReason.WRONG_SENDER,
                topic,
                f"envelope node {env.node_id!r} on {parsed.target!r}'s topic",
            )
            return
        if env.content_type is not _TOPIC_CT[parsed.kind]:
            self._reject(
                RejectReason.MALFORMED, topic, f"content type {env.content_type} on a {parsed.kind} topic"
            )
            return
        node = env.node_id
        ct = env.content_type
        if ct in ORDERED:
            if env.seq < 1:
                self._reject(RejectReason.MALFORMED, topic, "ordered message without a sequence number")
                return
            self._ordered(env, acks)
        elif ct is ContentType.HEARTBEAT:
            self._heartbeat(node, env, topic)
        elif ct is ContentType.STATUS:
            self._status(node, env, topic)
        elif ct is ContentType.ACK:
            self._acks_from_node(node, env)
        elif ct is ContentType.RESYNC_REQUEST:
            since = env.records[0].get("since") if env.records else None
            self._send_resync(node, since if isinstance(since, str) and since else None)

    def _buffer(self, node: str) -> ReorderBuffer:
        buf = self._buffers.get(node)
        if buf is None:
            s = self.settings
            buf = self._buffers[node] = ReorderBuffer(
                s.sync_reorder_buffer_messages, s.sync_reorder_buffer_bytes
            )
        return buf

    def _ordered(self, env: Envelope, acks: dict[str, list[dict[str, Any]]]) -> None:
        node = env.node_id
        expected = self._expected.get(node) or self.repo.next_seq(node)
        low = env.meta.get("low")
        if isinstance(low, int) and not isinstance(low, bool) and low > expected:
            # Everything below `low` was acked by us before (e.g. this database is newer).
            self.repo.skip_to(node, low)
            expected = low
            self._buffer(node).drop_below(low)
        if env.seq < expected:
            self.duplicates += 1
            metrics.DUPLICATES.inc()
            acks[node].append({"id": env.message_id, "status": AckStatus.DUPLICATE.value})
            self._expected[node] = expected
            return
        buf = self._buffer(node)
        if env.seq > expected:
            held, evicted = buf.hold(env)
            if held:
                metrics.REORDERED.inc()
            if evicted or not held:
                metrics.REORDER_DROPPED.inc(evicted + (not held))
                log.warning(
                    "reorder buffer of %s is full (%d messages, %d bytes): dropped %d message(s) ahead of "
                    "seq %d; the node resends them",
                    node,
                    len(buf),
                    buf.bytes,
                    evicted + (not held),
                    expected,
                )
        else:
            self._apply(env, acks)
            expected += 1
        while expected in buf:
            self._apply(buf.pop(expected), acks)
            expected += 1
        self._expected[node] = expected

    def _validate(self, env: Envelope) -> list[Any]:
        return validate_body(
            env, max_records=self.settings.sync_max_message_records, max_depth=DEFAULT_MAX_JSON_DEPTH
        )

    def _apply(self, env: Envelope, acks: dict[str, list[dict[str, Any]]]) -> None:
        node = env.node_id
        records: list[Any] = []
        reason = env.rejected or None  # refused (and counted) on receipt: acked now, in sequence order
        if reason is None:
            try:
                records = self._validate(env)
            except EnvelopeRejected as err:
                self._reject(err.reason, f"{node}#{env.seq}", str(err))
                reason = str(err)
        result = self.repo.apply_message(
            node_id=node,
            seq=env.seq,
            msg_id=env.message_id,
            kind=env.content_type,
            records=records,
            rejected_reason=reason,
        )
        entry: dict[str, Any] = {"id": env.message_id, "status": result.status.value}
        if reason:
            entry["reason"] = reason
        acks[node].append(entry)
        if result.status is AckStatus.DUPLICATE:
            self.duplicates += 1
            metrics.DUPLICATES.inc()
            return
        if result.fleet_priors:
            send = self.settings.sync_fleet_priors
            metrics.FLEET_PRIOR_UPDATES.labels(sent=str(send).lower()).inc(len(result.fleet_priors))
            if send:
                self._send_fleet_priors(result.fleet_priors)
        if result.records:
            self.applied_records[env.content_type.value] += result.records
            metrics.APPLIED_RECORDS.labels(kind=env.content_type.value).inc(result.records)
            if env.content_type is ContentType.HARD_EXAMPLE:
                _fan_out("hard examples", self._hard_example_hooks, node, records)
        if result.changed:
            _fan_out("memory", self._memory_hooks, node, result.changed)
            shared = [r for r in result.changed if r.shared and self._fleet_may_have(r, node)]
            scope = self.settings.sync_rebroadcast
            if shared and scope != "none":
                group = self._groups.get(node) if scope == "group" else None
                self._send_memory(shared, group=group, scope="group" if group else "fleet")

    @staticmethod
    def _fleet_may_have(rec: KnowledgeRecord, node: str) -> bool:
        """Provenance check before a node's shared record goes to the fleet (:func:`fleet_share_refusal`);
        refused records stay in the cloud (and go back to their own node on resync); counted."""
        reason = fleet_share_refusal(rec, node)
        if reason is None:
            return True
        metrics.NOT_REBROADCAST.labels(reason=reason).inc()
        log.warning(
            "shared record not rebroadcast", extra={"node": node, "key": rec.key[:80], "reason": reason}
        )
        return False

    def _heartbeat(self, node: str, env: Envelope, topic: str) -> None:
        for rec in env.records:
            try:
                hb = Heartbeat.model_validate(rec)
            except ValueError as err:
                self._reject(RejectReason.INVALID_RECORD, topic, f"heartbeat: {err}")
                continue
            if hb.node_id != node:
                self._reject(RejectReason.WRONG_SENDER, topic, f"heartbeat for {hb.node_id!r}")
                continue
            payload = hb.model_dump()
            _fan_out("heartbeat", self._heartbeat_hooks, node, payload)

    def _status(self, node: str, env: Envelope, topic: str) -> None:
        for rec in env.records:
            try:
                st = NodeStatus.model_validate(rec)
            except ValueError as err:
                self._reject(RejectReason.INVALID_RECORD, topic, f"status: {err}")
                continue
            online = st.status == STATUS_ONLINE
            if st.group:
                self._groups[node] = st.group
            (self._online.add if online else self._online.discard)(node)
            metrics.NODES_ONLINE.set(len(self._online))
            _fan_out("status", self._status_hooks, node, st)
            if online:
                self._resend(node)

    def _acks_from_node(self, node: str, env: Envelope) -> None:
        for rec in env.records:
            rid = rec.get("id")
            if not isinstance(rid, str):
                continue
            if rec.get("kind") == AckKind.COMMAND:
                try:
                    ack = CommandAck.model_validate(rec)
                except ValueError as err:
                    self._reject(RejectReason.INVALID_RECORD, f"{node}/ack", f"command ack: {err}")
                    continue
                if self.ledger.record_ack(node, ack) is not None:
                    metrics.COMMANDS.labels(outcome=ack.status.value).inc()
                    _fan_out("command ack", self._command_ack_hooks, node, ack)
            else:
                with self._ack_cv:
                    self._broadcast_acks[rid].add(node)
        with self._ack_cv:
            self._ack_cv.notify_all()
