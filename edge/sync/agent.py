"""EdgeSync: the node's side of edge <-> cloud sync.

Up (node -> cloud): ``publish_memory`` / ``publish_session`` / ``publish_hard_example`` /
``publish_event`` put records into the SQLite outbox and return at once; a sender thread seals
them into batched, LZ4-compressed envelopes (per-node sequence numbers) and publishes them at
QoS 1 within a window of unacked messages. Only the cloud's ack (``{p}/down/{node}/ack``)
removes them; unacked messages are sent again after a reconnect or ``mqtt_ack_timeout_s``.

Down (cloud -> node): commands (de-duplicated by id, handler's answer sent back as an ack, the
same answer re-sent for a duplicate; a handler that returns ``COMMAND_PENDING`` acks later, from
any thread, with ``ack_command`` -- duplicates of a pending command are dropped by id; commands
and acks are ``contracts.commands`` models), memory deltas / broadcasts / resync responses (applied to
the attached :class:`MemoryStore` idempotently, then given to ``on_memory`` handlers, acked).

Also: retained status ``online`` on connect and a Last Will ``offline``; periodic heartbeats
from ``set_heartbeat_provider``; optional KubeEdge device twin reporting and delta following.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from contracts.commands import AckKind, AckStatus, Command, CommandAck
from contracts.envelope import (
    ContentType,
    Encoding,
    Envelope,
    EnvelopeRejected,
    EnvelopeTooLarge,
    RejectReason,
    decode,
    join_record_bodies,
    new_message_id,
    pack,
    records_body,
)
from contracts.errors import BadRequest, PayloadTooLarge
from contracts.heartbeat import STATUS_OFFLINE, STATUS_ONLINE, Heartbeat, NodeStatus
from contracts.hlc import HLC, HybridClock
from contracts.logging import get_logger
from contracts.memory import KnowledgeRecord, SessionState
from contracts.mqtt_client import ConnectionState, MqttConnection, MqttOptions, Will
from contracts.topics import CLOUD_SENDER, DownKind, Topics, UpKind, check_segment
from edge.memory.store import MemoryStore
from edge.sync import metrics
from edge.sync.client import edge_mqtt_options
from edge.sync.embedded_broker import EmbeddedBroker, broker_reachable
from edge.sync.outbox import Outbox, OutMessage
from edge.sync.settings import SyncSettings
from edge.sync.twin import TwinReporter

log = get_logger("autoglm.edge.sync")



class _Pending:
    """The marker a command handler returns when it acks later with ``EdgeSync.ack_command``."""

    _instance: _Pending | None = None

    def __new__(cls) -> _Pending:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "COMMAND_PENDING"


COMMAND_PENDING = _Pending()
CommandHandler = Callable[[Command], "Mapping[str, Any] | _Pending | None"]
MemoryHandler = Callable[[list[KnowledgeRecord]], None]
HeartbeatProvider = Callable[[], Mapping[str, Any]]

_UP_KIND = {
    ContentType.MEMORY: UpKind.MEMORY,
    ContentType.SESSION: UpKind.SESSION,
    ContentType.HARD_EXAMPLE: UpKind.HARD_EXAMPLES,
    ContentType.EVENT: UpKind.EVENTS,
}
WATERMARK_KEY = "resync_cursor"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


class EdgeSync:
    def __init__(
        self,
        settings: SyncSettings | None = None,
        outbox_path: Path | str | None = None,
        node_id: str = "edge-local",
        *,
        store: MemoryStore | None = None,
    ) -> None:
        self.settings = s = settings or SyncSettings()
        check_segment(node_id)
        if node_id == CLOUD_SENDER:
            raise BadRequest(f"node id {CLOUD_SENDER!r} is reserved for the cloud")
        self.node_id = node_id
        self.topics = Topics(s.mqtt_topic_prefix)
        # Records of one publish_* call are stored in chunks that always fit one message.
        self.outbox = Outbox(
            outbox_path or s.mqtt_outbox_path,
            max_bytes=s.mqtt_outbox_max_bytes,
            chunk_records=s.mqtt_batch_max_records,
            chunk_bytes=min(s.mqtt_batch_max_bytes, int(s.mqtt_max_message_bytes * 0.9) - 4096),
        )
        self.store = store
        self.clock = store.clock if store is not None else HybridClock(node_id)
        self._command_handlers: list[CommandHandler] = []
        # Commands a handler answered with COMMAND_PENDING, not acked yet (id -> monotonic start).
        # In memory on purpose: after a process restart the cloud's resend runs the command again.
        self._pending_commands: dict[str, float] = {}
        self._command_lock = threading.Lock()
        self._unsent_acks: dict[str, bytes] = {}  # deferred acks published while disconnected
        self._memory_handlers: list[MemoryHandler] = []
        self._heartbeat_provider: HeartbeatProvider | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._resync_wanted = threading.Event()
        self._resync_since: str | None = None
        self.rejected: dict[str, int] = {}
        self.resyncs_completed = 0
        self._dropped_seen: dict[str, int] = {}
        self._embedded: EmbeddedBroker | None = None
        self._conn = self._make_connection(self._options())
        self.twin: TwinReporter | None = None
        if s.mqtt_kubeedge_enabled:
            self.twin = TwinReporter(
                MqttOptions(
                    host=s.mqtt_kubeedge_host,
                    port=s.mqtt_kubeedge_port,
                    client_id=f"autoglm-twin-{node_id}",
                    mqtt5=False,  # KubeEdge's EventBus speaks MQTT 3.1.1
                    reconnect_min_s=s.mqtt_reconnect_min_s,
                    reconnect_max_s=s.mqtt_reconnect_max_s,
                ),
                s.mqtt_kubeedge_namespace,
                s.mqtt_kubeedge_device or node_id,
            )

    def _make_connection(self, options: MqttOptions) -> MqttConnection:
        return MqttConnection(
            options,
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_disconnected=lambda: metrics.CONNECTED.set(0),
            name=f"edge-sync-{self.node_id}",
        )

    def _status_frame(self, status: str) -> bytes:
        rec = NodeStatus(node_id=self.node_id, status=status, ts_ms=_now_ms(), group=self.settings.mqtt_node_group)
        return self._frame(ContentType.STATUS, [rec.model_dump()])

    def _options(self) -> MqttOptions:
        return edge_mqtt_options(
            self.settings,
            self.node_id,
            will=Will(self.topics.status(self.node_id), self._status_frame(STATUS_OFFLINE), qos=1, retain=True),
            subscriptions=self.topics.node_subscriptions(self.node_id, self.settings.mqtt_node_group),
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> EdgeSync:
        self._stopping.clear()
        s = self.settings
        if s.mqtt_embedded_broker and self._embedded is None and not broker_reachable(s.mqtt_host, s.mqtt_port):
            # DEV ONLY (zero-setup demo): no broker configured/reachable -> run one in-process.
            self._embedded = EmbeddedBroker(s.mqtt_host, s.mqtt_port).start()
            self._conn = self._make_connection(dataclasses.replace(self._options(), mqtt5=False))
        self._conn.start()
        if self.twin is not None:
            self.twin.start()
        for target, name in ((self._send_loop, "sender"), (self._heartbeat_loop, "heartbeat")):
            t = threading.Thread(target=target, name=f"edge-sync-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, *, graceful: bool = True) -> None:
        """Stop threads and disconnect (publishing ``offline`` first when ``graceful``)."""
        if graceful and self._conn.connected:
            self._conn.publish(self.topics.status(self.node_id), self._status_frame(STATUS_OFFLINE), retain=True)
        self._stopping.set()
        self._wake.set()
        for t in self._threads:
            t.join(5)
        self._threads.clear()
        self._conn.stop(graceful=graceful)
        if self.twin is not None:
            self.twin.stop()
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
        self.outbox.close()
        metrics.CONNECTED.set(0)

    @property
    def state(self) -> ConnectionState:
        return self._conn.state

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._conn.wait_connected(timeout)

    @property
    def connect_count(self) -> int:
        """Successful connects so far (1 + reconnects)."""
        return self._conn.connects

    # -- registration --------------------------------------------------------------------------
    def set_heartbeat_provider(self, provider: HeartbeatProvider) -> None:
        self._heartbeat_provider = provider

    def on_command(self, handler: CommandHandler) -> None:
        self._command_handlers.append(handler)

    def on_memory(self, handler: MemoryHandler) -> None:
        self._memory_handlers.append(handler)

    def on_twin_delta(self, handler: Callable[[dict[str, str]], None]) -> None:
        """Desired values set through KubeEdge (e.g. ``desired_model_version``); needs
        ``mqtt_kubeedge_enabled``."""
        if self.twin is None:
            raise BadRequest("KubeEdge twin reporting is off (set AUTOGLM_EDGE_MQTT_KUBEEDGE_ENABLED=true)")
        self.twin.on_delta(handler)

    # -- producer API --------------------------------------------------------------------------
    def publish_memory(self, records: Iterable[KnowledgeRecord | Mapping[str, Any]]) -> int:
        """Queue knowledge records for the cloud. Raises ``OutboxFull`` / ``BadRequest``."""
        bodies = []
        for rec in records:
            try:
                model = rec if isinstance(rec, KnowledgeRecord) else KnowledgeRecord.model_validate(rec)
            except ValueError as err:
                raise BadRequest(f"invalid memory record: {err}") from None
            bodies.append(model.model_dump_json().encode("utf-8"))
        return self._put(ContentType.MEMORY, bodies)

    def publish_session(self, states: Iterable[SessionState]) -> int:
        """Queue shared session state (non-shared state never leaves the node)."""
        return self._put(
            ContentType.SESSION, [st.model_dump_json().encode("utf-8") for st in states if st.shared]
        )

    def publish_hard_example(self, example: Mapping[str, Any]) -> str:
        """Queue one hard example (an input the edge was unsure of); returns its id."""
        doc = dict(example)
        doc.setdefault("id", uuid.uuid4().hex)
        doc.setdefault("node_id", self.node_id)
        doc.setdefault("hlc", self.clock.now().pack())
        self._put(ContentType.HARD_EXAMPLE, [_dump(doc)])
        return str(doc["id"])

    def publish_event(self, name: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Queue a telemetry event (may be shed oldest-first when the outbox is over budget)."""
        doc = {"name": name, "ts_ms": _now_ms(), "hlc": self.clock.now().pack(), "data": dict(data or {}), **fields}
        self._put(ContentType.EVENT, [_dump(doc)])

    def _put(self, kind: ContentType, bodies: list[bytes]) -> int:
        limit = self.settings.mqtt_max_message_bytes - 1024
        for b in bodies:
            if len(b) > limit:
                raise PayloadTooLarge(f"one {kind.value} record of {len(b)} bytes exceeds the {limit}-byte limit")
        try:
            n = self.outbox.put(kind, bodies)
        except Exception:
            self._sync_outbox_metrics()
            raise
        self._sync_outbox_metrics()
        self._wake.set()
        return n

    def _sync_outbox_metrics(self) -> None:
        for kind, count in self.outbox.dropped.items():
            delta = count - self._dropped_seen.get("d" + kind, 0)
            if delta:
                metrics.OUTBOX_DROPPED.labels(kind=kind).inc(delta)
                self._dropped_seen["d" + kind] = count
        for kind, count in self.outbox.refused.items():
            delta = count - self._dropped_seen.get("r" + kind, 0)
            if delta:
                metrics.OUTBOX_REFUSED.labels(kind=kind).inc(delta)
                self._dropped_seen["r" + kind] = count

    def request_resync(self, since: str | None = None, *, full: bool = False) -> None:
        """Ask the cloud for memory changed since ``since`` (default: our last cursor);
        ``full=True`` asks for a whole snapshot. Sent now, or on the next connect."""
        self._resync_since = None if full else (since or self.outbox.get_state(WATERMARK_KEY))
        self._resync_wanted.set()
        if self._conn.connected:
            self._send_resync_request()

    def _send_resync_request(self) -> None:
        if not self._resync_wanted.is_set():
            return
        frame = self._frame(ContentType.RESYNC_REQUEST, [{"since": self._resync_since}])
        if self._conn.publish(self.topics.resync_request(self.node_id), frame, qos=1):
            self._resync_wanted.clear()

    # -- framing -------------------------------------------------------------------------------
    def _frame(self, ct: ContentType, records: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> bytes:
        return pack(
            message_id=new_message_id(),
            node_id=self.node_id,
            seq=0,
            hlc=self.clock.now().pack(),
            content_type=ct,
            body=records_body(records),
            n_records=len(records),
            encoding=Encoding.LZ4 if self.settings.mqtt_compress else Encoding.NONE,
            meta=meta,
            max_bytes=self.settings.mqtt_max_message_bytes,
        )

    def _build_outbox_frame(
        self, seq: int, msg_id: str, kind: ContentType, bodies: list[bytes], n_records: int, low: int
    ) -> bytes:
        return pack(
            message_id=msg_id,
            node_id=self.node_id,
            seq=seq,
            hlc=self.clock.now().pack(),
            content_type=kind,
            body=join_record_bodies(bodies),
            n_records=n_records,
            encoding=Encoding.LZ4 if self.settings.mqtt_compress else Encoding.NONE,
            meta={"low": low},
            max_bytes=self.settings.mqtt_max_message_bytes,
        )

    # -- sender --------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            if self._stopping.is_set():
                break
            if not self._conn.connected:
                continue
            try:
                self._pump()
            except Exception:
                log.exception("sync sender failed; retrying")

    def _seal_one(self) -> OutMessage | None:
        s = self.settings
        max_bytes = s.mqtt_batch_max_bytes
        for _ in range(32):
            try:
                return self.outbox.seal(
                    self._build_outbox_frame, max_records=s.mqtt_batch_max_records, max_bytes=max_bytes
                )
            except EnvelopeTooLarge:
                # Fewer chunks per message; one chunk alone always fits (see chunk_bytes).
                max_bytes = max(1, max_bytes // 2)
        raise EnvelopeTooLarge("cannot fit the oldest outbox chunk into one sync message")

    def _pump(self) -> None:
        s = self.settings
        while self.outbox.inflight_messages() < s.mqtt_window_messages:
            if self._seal_one() is None:
                break
        due = self.outbox.due(ack_timeout_s=s.mqtt_ack_timeout_s, limit=s.mqtt_window_messages)
        sent: list[int] = []
        for msg in due:
            if not self._conn.publish(self.topics.up(self.node_id, _UP_KIND[msg.kind]), msg.frame, qos=1):
                break
            sent.append(msg.seq)
            metrics.SENT_MESSAGES.labels(kind=msg.kind.value).inc()
        self.outbox.mark_sent(sent)

    # -- heartbeat -----------------------------------------------------------------------------
    def heartbeat(self) -> Heartbeat:
        base: dict[str, Any] = dict(self._heartbeat_provider() if self._heartbeat_provider else {})
        base.update(node_id=self.node_id, ts_ms=_now_ms(), outbox_records=self.outbox.pending_records())
        return Heartbeat.model_validate(base)

    def send_heartbeat(self) -> bool:
        try:
            hb = self.heartbeat()
        except Exception:
            log.exception("heartbeat provider failed")
            return False
        metrics.OUTBOX_RECORDS.set(hb.outbox_records)
        metrics.OUTBOX_BYTES.set(self.outbox.used_bytes)
        ok = self._conn.publish(
            self.topics.heartbeat(self.node_id), self._frame(ContentType.HEARTBEAT, [hb.model_dump()]), qos=0
        )
        if self.twin is not None:
            self.twin.report(hb.model_dump(exclude={"node_id"}))
        return ok

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.settings.mqtt_heartbeat_interval_s):
            self.send_heartbeat()

    # -- receiving -----------------------------------------------------------------------------
    def _on_connected(self, session_present: bool) -> None:
        metrics.CONNECTED.set(1)
        self._conn.publish(self.topics.status(self.node_id), self._status_frame(STATUS_ONLINE), retain=True)
        self.outbox.mark_all_unsent()
        if not session_present and self.store is not None and not self._resync_wanted.is_set():
            # The broker forgot us (first start, or session expired): catch up on memory.
            self._resync_since = self.outbox.get_state(WATERMARK_KEY)
            self._resync_wanted.set()
        self._send_resync_request()
        self._flush_unsent_acks()
        self._wake.set()

    def _reject(self, reason: RejectReason, topic: str, detail: str) -> None:
        self.rejected[reason.value] = self.rejected.get(reason.value, 0) + 1
        metrics.REJECTED.labels(reason=reason.value).inc()
        log.warning("rejected downlink message on %s: %s", topic, detail)

    def _on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = self.topics.parse(topic)
        if parsed is None:
            return
        try:
            env = decode(payload, max_bytes=self.settings.mqtt_max_message_bytes)
        except EnvelopeRejected as err:
            self._reject(err.reason, topic, str(err))
            return
        if env.node_id != CLOUD_SENDER:
            self._reject(RejectReason.WRONG_SENDER, topic, f"sender {env.node_id!r} is not the cloud")
            return
        try:
            if parsed.kind == DownKind.ACK and parsed.direction == "down":
                self._handle_acks(env)
            elif parsed.kind == DownKind.COMMANDS:
                self._handle_commands(env)
            elif parsed.kind in (DownKind.MEMORY, DownKind.RESYNC):
                self._handle_memory(env)
        except EnvelopeRejected as err:
            self._reject(err.reason, topic, str(err))

    def _handle_acks(self, env: Envelope) -> None:
        applied: list[str] = []
        for rec in env.records:
            mid, status = rec.get("id"), rec.get("status")
            if not isinstance(mid, str):
                continue
            if status == AckStatus.REJECTED:
                reason = str(rec.get("reason", "unknown"))
                self.outbox.dead_letter(mid, reason)
                metrics.DEAD_LETTERS.labels(reason=reason.split(":")[0]).inc()
                log.error("cloud refused sync message %s for good: %s (parked in dead_letters)", mid, reason)
            else:
                applied.append(mid)
        released = self.outbox.ack(applied)
        if released:
            metrics.ACKED_RECORDS.inc(released)
        self._wake.set()

    def _ack_up(self, records: list[dict[str, Any]]) -> bytes:
        frame = self._frame(ContentType.ACK, records)
        self._conn.publish(self.topics.up_ack(self.node_id), frame, qos=1)
        return frame

    def _handle_commands(self, env: Envelope) -> None:
        for rec in env.records:
            try:
                command = Command.from_record(rec)
            except ValueError as err:
                raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"command: {err}") from None
            cid = command.command_id
            if not self._command_handlers:
                log.warning("command %s received before any on_command handler; left for the cloud's retry", cid)
                continue
            with self._command_lock:
                pending = cid in self._pending_commands
                seen, stored_ack = (False, None) if pending else self.outbox.seen("cmd:" + cid)
            if pending or seen:
                metrics.COMMANDS.labels(outcome="duplicate").inc()
                if stored_ack:
                    self._conn.publish(self.topics.up_ack(self.node_id), stored_ack, qos=1)
                continue
            with self._command_lock:
                self._pending_commands[cid] = time.monotonic()
            try:
                answers = [h(command) for h in self._command_handlers]
            except Exception as err:
                log.exception("command %s failed", cid)
                self.ack_command(cid, error=err)
                continue
            if any(a is COMMAND_PENDING for a in answers):
                continue  # a handler acks later with ack_command (it may already have)
            answer = next((a for a in answers if a is not None), {})
            assert not isinstance(answer, _Pending)
            self.ack_command(cid, answer)

    def ack_command(
        self, command_id: str, result: Mapping[str, Any] | None = None, *, error: BaseException | str | None = None
    ) -> bool:
        """Ack a command with a :class:`CommandAck`: ok with ``result``, or not ok when ``error``
        is given. Thread-safe; for handlers that returned ``COMMAND_PENDING``.

        The ack is stored with the command id before it is published, exactly like an
        immediate ack: a resend of the command gets the stored ack again, and an ack made while
        the broker is away is published on the next connect. Returns False (and sends nothing)
        when the command was acked already."""
        ack = (
            CommandAck.failure(command_id, error) if error is not None
            else CommandAck.success(command_id, dict(result or {}))
        )
        if self._stopping.is_set():
            log.warning("command %s acked after the sync stopped; the cloud's resend will run it again", command_id)
            return False
        with self._command_lock:
            seen, stored = self.outbox.seen("cmd:" + command_id)
            if seen and stored:
                self._pending_commands.pop(command_id, None)
                log.warning("command %s is acked already; second ack ignored", command_id)
                return False
            frame = self._frame(ContentType.ACK, [ack.to_record()])
            self.outbox.remember("cmd:" + command_id, frame)
            self._pending_commands.pop(command_id, None)
            sent = self._conn.publish(self.topics.up_ack(self.node_id), frame, qos=1)
            if not sent:
                self._unsent_acks[command_id] = frame
        metrics.COMMANDS.labels(outcome="ok" if ack.ok else "error").inc()
        return True

    @property
    def pending_commands(self) -> list[str]:
        """Ids of commands a handler is still working on (answered ``COMMAND_PENDING``)."""
        with self._command_lock:
            return list(self._pending_commands)

    def _flush_unsent_acks(self) -> None:
        with self._command_lock:
            for cid, frame in list(self._unsent_acks.items()):
                if not self._conn.publish(self.topics.up_ack(self.node_id), frame, qos=1):
                    break
                del self._unsent_acks[cid]

    def _handle_memory(self, env: Envelope) -> None:
        seen, _ = self.outbox.seen(env.message_id)
        if not seen:
            try:
                records = [KnowledgeRecord.model_validate(r) for r in env.records]
            except ValueError as err:
                raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"memory record: {err}") from None
            if self.store is not None:
                self.store.apply_remote(records)
            else:
                for rec in records:
                    with contextlib.suppress(ValueError):
                        self.clock.observe(HLC.parse(rec.updated))
            for handler in list(self._memory_handlers):
                try:
                    handler(records)
                except Exception:
                    log.exception("memory handler failed")
            if env.content_type is ContentType.RESYNC_RESPONSE and env.meta.get("final"):
                cursor = env.meta.get("cursor")
                if isinstance(cursor, str) and cursor:
                    self.outbox.set_state(WATERMARK_KEY, cursor)
                self.resyncs_completed += 1
            self.outbox.remember(env.message_id)
        self._ack_up([{"kind": AckKind.MESSAGE.value, "id": env.message_id}])
