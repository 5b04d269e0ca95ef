"""EdgeSync: the node's side of edge <-> cloud sync, assembled from named parts.

- :class:`~edge.sync.uplink.UplinkSender` (up, node -> cloud): ``publish_memory`` /
  ``publish_session`` / ``publish_hard_example`` / ``publish_event`` / ``publish_path_priors`` put
  records into the SQLite
  outbox and return at once; the sender thread seals batched, LZ4-compressed envelopes (per-node
  sequence numbers) and publishes them at QoS 1 within a window of unacked messages. Only the
  cloud's ack removes them; unacked messages are sent again after a reconnect or
  ``mqtt_ack_timeout_s``.
- :class:`~edge.sync.downlink.Downlink` (down, cloud -> node): acks of our messages, memory
  deltas / broadcasts / resync responses (applied to the attached :class:`MemoryStore`
  idempotently, then given to ``on_memory`` handlers, acked), the fleet's path priors (stored,
  given to ``on_fleet_priors`` handlers, acked), and the resync request.
- :class:`~edge.sync.commands.CommandInbox`: commands (``contracts.commands``), each id run once,
  acked with a :class:`~contracts.commands.CommandAck` (``COMMAND_PENDING`` + ``ack_command`` for
  handlers that answer later).
- :class:`~edge.sync.twin.TwinReporter`: optional KubeEdge device twin reporting and delta
  following.
- Here: the MQTT connection, one :class:`~contracts.envelope.Framer` shared by the parts, the
  retained status ``online`` on connect with a Last Will ``offline``, periodic heartbeats from
  ``set_heartbeat_provider``, the embedded dev broker.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from contracts.envelope import ContentType, Framer
from contracts.errors import BadRequest
from contracts.heartbeat import STATUS_OFFLINE, STATUS_ONLINE, Heartbeat, NodeStatus
from contracts.hlc import HybridClock
from contracts.hlc import wall_clock_ms as now_ms
from contracts.logging import get_logger
from contracts.memory import KnowledgeRecord, PathPriorRecord, SessionState
from contracts.mqtt_client import ConnectionState, MqttConnection, MqttOptions, Will
from contracts.topics import CLOUD_SENDER, Topics, check_segment
from edge.memory.store import MemoryStore
from edge.sync import metrics
from edge.sync.client import edge_mqtt_options
from edge.sync.commands import COMMAND_PENDING, CommandHandler, CommandInbox
from edge.sync.downlink import WATERMARK_KEY, Downlink, MemoryHandler, PriorHandler
from edge.sync.embedded_broker import EmbeddedBroker, broker_reachable
from edge.sync.outbox import Outbox
from edge.sync.settings import SyncSettings
from edge.sync.twin import TwinReporter
from edge.sync.uplink import UplinkSender

log = get_logger("autoglm.edge.sync")

__all__ = [
    "COMMAND_PENDING",
    "WATERMARK_KEY",
    "CommandHandler",
    "EdgeSync",
    "HeartbeatProvider",
    "MemoryHandler",
]

HeartbeatProvider = Callable[[], Mapping[str, Any]]


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
        self.framer = Framer(
            node_id, self.clock, compress=s.mqtt_compress, max_bytes=s.mqtt_max_message_bytes
        )
        self._heartbeat_provider: HeartbeatProvider | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._embedded: EmbeddedBroker | None = None
        self.uplink = UplinkSender(
            s,
            self.outbox,
            self.framer,
            self.topics,
            node_id,
            self._publish_qos1,
            self._connected,
            self._stopping,
        )
        self.commands = CommandInbox(
            self.outbox,
            self.framer,
            lambda frame: self._publish_qos1(self.topics.up_ack(node_id), frame),
            self._stopping,
        )
        self.downlink = Downlink(
            node_id=node_id,
            topics=self.topics,
            framer=self.framer,
            outbox=self.outbox,
            uplink=self.uplink,
            inbox=self.commands,
            store=store,
            clock=self.clock,
            max_message_bytes=s.mqtt_max_message_bytes,
            publish=self._publish_qos1,
            connected=self._connected,
        )
        self._conn = self._make_connection(self._options())
        self.twin: TwinReporter | None = (
            TwinReporter.for_sync(s, node_id) if s.mqtt_kubeedge_enabled else None
        )

    def _publish_qos1(self, topic: str, payload: bytes) -> bool:
        return self._conn.publish(topic, payload, qos=1)

    def _connected(self) -> bool:
        return self._conn.connected

    def _make_connection(self, options: MqttOptions) -> MqttConnection:
        return MqttConnection(
            options,
            on_message=self.downlink.on_message,
            on_connected=self._on_connected,
            on_disconnected=lambda: metrics.CONNECTED.set(0),
            name=f"edge-sync-{self.node_id}",
        )

    def _status_frame(self, status: str) -> bytes:
        rec = NodeStatus(
            node_id=self.node_id, status=status, ts_ms=now_ms(), group=self.settings.mqtt_node_group
        )
        return self.framer.records(ContentType.STATUS, [rec.model_dump()])

    def _options(self) -> MqttOptions:
        return edge_mqtt_options(
            self.settings,
            self.node_id,
            will=Will(
                self.topics.status(self.node_id), self._status_frame(STATUS_OFFLINE), qos=1, retain=True
            ),
            subscriptions=self.topics.node_subscriptions(self.node_id, self.settings.mqtt_node_group),
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> EdgeSync:
        self._stopping.clear()
        s = self.settings
        if (
            s.mqtt_embedded_broker
            and self._embedded is None
            and not broker_reachable(s.mqtt_host, s.mqtt_port)
        ):
            # DEV ONLY (zero-setup demo): no broker configured/reachable -> run one in-process.
            self._embedded = EmbeddedBroker(s.mqtt_host, s.mqtt_port).start()
            self._conn = self._make_connection(dataclasses.replace(self._options(), mqtt5=False))
        self._conn.start()
        if self.twin is not None:
            self.twin.start()
        for target, name in ((self.uplink.run, "sender"), (self._heartbeat_loop, "heartbeat")):
            t = threading.Thread(target=target, name=f"edge-sync-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, *, graceful: bool = True) -> None:
        """Stop threads and disconnect (publishing ``offline`` first when ``graceful``)."""
        if graceful and self._conn.connected:
            self._conn.publish(
                self.topics.status(self.node_id), self._status_frame(STATUS_OFFLINE), retain=True
            )
        self._stopping.set()
        self.uplink.wake()
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

    def _on_connected(self, session_present: bool) -> None:
        metrics.CONNECTED.set(1)
        self._conn.publish(self.topics.status(self.node_id), self._status_frame(STATUS_ONLINE), retain=True)
        self.outbox.mark_all_unsent()
        self.downlink.on_connected(session_present)
        self.commands.flush_unsent()
        self.uplink.wake()

    # -- registration --------------------------------------------------------------------------
    def set_heartbeat_provider(self, provider: HeartbeatProvider) -> None:
        self._heartbeat_provider = provider

    def on_command(self, handler: CommandHandler) -> None:
        self.commands.on_command(handler)

    def on_memory(self, handler: MemoryHandler) -> None:
        self.downlink.on_memory(handler)

    def on_fleet_priors(self, handler: PriorHandler) -> None:
        """``handler(records)`` with the fleet path priors that changed the store (broadcast or resync)."""
        self.downlink.on_fleet_priors(handler)

    def on_twin_delta(self, handler: Callable[[dict[str, str]], None]) -> None:
        """Desired values set through KubeEdge (e.g. ``desired_model_version``); needs
        ``mqtt_kubeedge_enabled``."""
        if self.twin is None:
            raise BadRequest("KubeEdge twin reporting is off (set AUTOGLM_EDGE_MQTT_KUBEEDGE_ENABLED=true)")
        self.twin.on_delta(handler)

    # -- commands ------------------------------------------------------------------------------
    def ack_command(
        self,
        command_id: str,
        result: Mapping[str, Any] | None = None,
        *,
        error: BaseException | str | None = None,
    ) -> bool:
        """Ack a command later (for handlers that returned ``COMMAND_PENDING``); see
        :meth:`CommandInbox.ack_command`."""
        return self.commands.ack_command(command_id, result, error=error)

    @property
    def pending_commands(self) -> list[str]:
        """Ids of commands a handler is still working on (answered ``COMMAND_PENDING``)."""
        return self.commands.pending

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
        return self.uplink.put(ContentType.MEMORY, bodies)

    def publish_path_priors(self, records: Iterable[PathPriorRecord]) -> int:
        """Queue this node's shared feedback counts of graph paths (newest per path wins in the cloud)."""
        bodies = []
        for rec in records:
            if rec.node != self.node_id:
                raise BadRequest(f"path prior of node {rec.node!r} is not this node's ({self.node_id!r})")
            bodies.append(rec.model_dump_json().encode("utf-8"))
        return self.uplink.put(ContentType.PATH_PRIOR, bodies)

    def publish_session(self, states: Iterable[SessionState]) -> int:
        """Queue shared session state (non-shared state never leaves the node)."""
        return self.uplink.put(
            ContentType.SESSION, [st.model_dump_json().encode("utf-8") for st in states if st.shared]
        )

    def publish_hard_example(self, example: Mapping[str, Any]) -> str:
        """Queue one hard example (an input the edge was unsure of); returns its id."""
        doc = dict(example)
        doc.setdefault("id", uuid.uuid4().hex)
        doc.setdefault("node_id", self.node_id)
        doc.setdefault("hlc", self.clock.now().pack())
        self.uplink.put(ContentType.HARD_EXAMPLE, [_dump(doc)])
        return str(doc["id"])

    def publish_event(self, name: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Queue a telemetry event (may be shed oldest-first when the outbox is over budget)."""
        doc = {
            "name": name,
            "ts_ms": now_ms(),
            "hlc": self.clock.now().pack(),
            "data": dict(data or {}),
            **fields,
        }
        self.uplink.put(ContentType.EVENT, [_dump(doc)])

    # -- downlink state ------------------------------------------------------------------------
    def request_resync(self, since: str | None = None, *, full: bool = False) -> None:
        """Ask the cloud for memory changed since ``since`` (default: our last cursor);
        ``full=True`` asks for a whole snapshot. Sent now, or on the next connect."""
        self.downlink.request_resync(since, full=full)

    @property
    def rejected(self) -> dict[str, int]:
        """Downlink messages rejected so far, by reason."""
        return self.downlink.rejected

    @property
    def resyncs_completed(self) -> int:
        return self.downlink.resyncs_completed

    # -- heartbeat -----------------------------------------------------------------------------
    def heartbeat(self) -> Heartbeat:
        base: dict[str, Any] = dict(self._heartbeat_provider() if self._heartbeat_provider else {})
        base.update(node_id=self.node_id, ts_ms=now_ms(), outbox_records=self.outbox.pending_records())
        return Heartbeat.model_validate(base)

    def send_heartbeat(self) -> bool:
        try:
            hb = self.heartbeat()
        except Exception:
            log.exception("heartbeat provider failed")
            return False
        metrics.OUTBOX_RECORDS.set(hb.outbox_records)
        metrics.OUTBOX_BYTES.set(self.outbox.used_bytes)
        frame = self.framer.records(ContentType.HEARTBEAT, [hb.model_dump()])
        ok = self._conn.publish(self.topics.heartbeat(self.node_id), frame, qos=0)
        if self.twin is not None:
            self.twin.report(hb.model_dump(exclude={"node_id"}))
        return ok

    def _heartbeat_loop(self) -> None:
        while not self._stopping.wait(self.settings.mqtt_heartbeat_interval_s):
            self.send_heartbeat()
