"""Downlink: cloud → node messages, and the node's memory catch-up (resync).

Every downlink envelope is decoded with the size limits, must come from the cloud, and is then
dispatched: acks of our uplink messages release (or dead-letter) outbox records; commands go to
the :class:`~edge.sync.commands.CommandInbox`; memory deltas, broadcasts and resync responses are
applied to the attached :class:`MemoryStore` idempotently (by message id), given to the
``on_memory`` handlers and acked; fleet path priors likewise (each checked against the graph
schema: a message with a path the schema does not have is rejected whole). Rejects are counted by
reason, never raised.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from contracts.commands import AckKind, AckStatus
from contracts.envelope import ContentType, Envelope, EnvelopeRejected, Framer, RejectReason, decode
from contracts.hlc import HLC, HybridClock
from contracts.logging import get_logger
from contracts.memory import MAX_PATH_HOPS, FleetPathPrior, KnowledgeRecord
from contracts.topics import CLOUD_SENDER, DownKind, Topics
from edge.memory.store import MemoryStore
from edge.sync import metrics
from edge.sync.commands import CommandInbox
from edge.sync.outbox import Outbox
from edge.sync.uplink import UplinkSender
from skillpack.kg.schema import path_refusal

log = get_logger("autoglm.edge.sync")

WATERMARK_KEY = "resync_cursor"
MemoryHandler = Callable[[list[KnowledgeRecord]], None]
PriorHandler = Callable[[list[FleetPathPrior]], None]
Publish = Callable[[str, bytes], bool]  # QoS 1 publish; False when not sent
M = TypeVar("M", bound=BaseModel)  # a contracts record model
R = TypeVar("R")


class Downlink:
    def __init__(
        self,
        *,
        node_id: str,
        topics: Topics,
        framer: Framer,
        outbox: Outbox,
        uplink: UplinkSender,
        inbox: CommandInbox,
        store: MemoryStore | None,
        clock: HybridClock,
        max_message_bytes: int,
        publish: Publish,
        connected: Callable[[], bool],
    ) -> None:
        self._node_id = node_id
        self._topics = topics
        self._framer = framer
        self._outbox = outbox
        self._uplink = uplink
        self._inbox = inbox
        self._store = store
        self._clock = clock
        self._max_bytes = max_message_bytes
        self._publish = publish
        self._connected = connected
        self._memory_handlers: list[MemoryHandler] = []
        self._prior_handlers: list[PriorHandler] = []
        self._resync_wanted = threading.Event()
        self._resync_since: str | None = None
        self.rejected: dict[str, int] = {}
        self.resyncs_completed = 0

    def on_memory(self, handler: MemoryHandler) -> None:
        self._memory_handlers.append(handler)

    def on_fleet_priors(self, handler: PriorHandler) -> None:
        self._prior_handlers.append(handler)

    # -- resync ----------------------------------------------------------------------------------
    def request_resync(self, since: str | None = None, *, full: bool = False) -> None:
        """Ask the cloud for memory changed since ``since`` (default: our last cursor);
        ``full=True`` asks for a whole snapshot. Sent now, or on the next connect."""
        self._resync_since = None if full else (since or self._outbox.get_state(WATERMARK_KEY))
        self._resync_wanted.set()
        if self._connected():
            self.send_resync_request()

    def on_connected(self, session_present: bool) -> None:
        if not session_present and self._store is not None and not self._resync_wanted.is_set():
            # The broker forgot us (first start, or session expired): catch up on memory.
            self._resync_since = self._outbox.get_state(WATERMARK_KEY)
            self._resync_wanted.set()
        self.send_resync_request()

    def send_resync_request(self) -> None:
        if not self._resync_wanted.is_set():
            return
        frame = self._framer.records(ContentType.RESYNC_REQUEST, [{"since": self._resync_since}])
        if self._publish(self._topics.resync_request(self._node_id), frame):
            self._resync_wanted.clear()

    # -- receiving -------------------------------------------------------------------------------
    def _reject(self, reason: RejectReason, topic: str, detail: str) -> None:
        self.rejected[reason.value] = self.rejected.get(reason.value, 0) + 1
        metrics.REJECTED.labels(reason=reason.value).inc()
        log.warning("rejected downlink message on %s: %s", topic, detail)

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = self._topics.parse(topic)
        if parsed is None:
            return
        try:
            env = decode(payload, max_bytes=self._max_bytes)
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
                self._inbox.handle(env)
            elif parsed.kind in (DownKind.MEMORY, DownKind.RESYNC):
                self._handle_once(env, self._apply_memory)
            elif parsed.kind == DownKind.PRIORS and env.content_type is ContentType.FLEET_PRIOR:
                self._handle_once(env, self._apply_priors)
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
                self._outbox.dead_letter(mid, reason)
                metrics.DEAD_LETTERS.labels(reason=reason.split(":")[0]).inc()
                log.error("cloud refused sync message %s for good: %s (parked in dead_letters)", mid, reason)
            else:
                applied.append(mid)
        released = self._outbox.ack(applied)
        if released:
            metrics.ACKED_RECORDS.inc(released)
        self._uplink.wake()

    def _handle_once(self, env: Envelope, apply: Callable[[Envelope], None]) -> None:
        """``apply`` a message not seen before (by message id) and remember it; ack it either way,
        so a redelivery is acked again but not applied twice. A message ``apply`` rejects
        (:class:`EnvelopeRejected`) is neither remembered nor acked."""
        seen, _ = self._outbox.seen(env.message_id)
        if not seen:
            apply(env)
            self._outbox.remember(env.message_id)
        self._ack_message(env)

    def _ack_message(self, env: Envelope) -> None:
        frame = self._framer.records(ContentType.ACK, [{"kind": AckKind.MESSAGE.value, "id": env.message_id}])
        self._publish(self._topics.up_ack(self._node_id), frame)

    @staticmethod
    def _validated(env: Envelope, model: type[M], what: str) -> list[M]:
        """The message's records as ``model``; one that does not validate rejects the whole message
        (INVALID_RECORD, detail ``"<what>: <error>"``)."""
        try:
            return [model.model_validate(r) for r in env.records]
        except ValueError as err:
            raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"{what}: {err}") from None

    @staticmethod
    def _notify(handlers: list[Callable[[list[R]], None]], records: list[R], failed: str) -> None:
        """Give ``records`` to each handler; one that raises is logged (``failed``) and skipped."""
        for handler in list(handlers):
            try:
                handler(records)
            except Exception:
                log.exception(failed)

    def _apply_priors(self, env: Envelope) -> None:
        records = self._validated(env, FleetPathPrior, "fleet prior")
        for rec in records:
            refusal = path_refusal(rec.start_type, rec.relations, MAX_PATH_HOPS)
            if refusal is not None:
                raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"fleet prior: {refusal}")
        changed = self._store.apply_fleet_priors(records) if self._store is not None else records
        self._notify(self._prior_handlers, changed, "fleet prior handler failed")

    def _apply_memory(self, env: Envelope) -> None:
        records = self._validated(env, KnowledgeRecord, "memory record")
        if self._store is not None:
            self._store.apply_remote(records)
        else:
            for rec in records:
                with contextlib.suppress(ValueError):
                    self._clock.observe(HLC.parse(rec.updated))
        self._notify(self._memory_handlers, records, "memory handler failed")
        if env.content_type is ContentType.RESYNC_RESPONSE and env.meta.get("final"):
            cursor = env.meta.get("cursor")
            if isinstance(cursor, str) and cursor:
                self._outbox.set_state(WATERMARK_KEY, cursor)
            self.resyncs_completed += 1
