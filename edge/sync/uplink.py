"""UplinkSender: node → cloud records through the SQLite outbox.

``put`` stores records (chunks that always fit one message) and wakes the sender thread, which
seals them into batched, LZ4-compressed envelopes with per-node sequence numbers and publishes
them at QoS 1 within a window of unacked messages. Only the cloud's ack (``{p}/down/{node}/ack``,
handled by the downlink) releases them; unacked messages are sent again after a reconnect or
``mqtt_ack_timeout_s``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from contracts.envelope import ContentType, EnvelopeTooLarge, Framer
from contracts.errors import PayloadTooLarge
from contracts.logging import get_logger
from contracts.topics import Topics, UpKind
from edge.sync import metrics
from edge.sync.outbox import Outbox, OutMessage
from edge.sync.settings import SyncSettings

log = get_logger("autoglm.edge.sync")

UP_KIND = {
    ContentType.MEMORY: UpKind.MEMORY,
    ContentType.SESSION: UpKind.SESSION,
    ContentType.HARD_EXAMPLE: UpKind.HARD_EXAMPLES,
    ContentType.EVENT: UpKind.EVENTS,
    ContentType.PATH_PRIOR: UpKind.PRIORS,
}
Publish = Callable[[str, bytes], bool]  # QoS 1 publish on a topic; False when not sent


class UplinkSender:
    def __init__(
        self,
        settings: SyncSettings,
        outbox: Outbox,
        framer: Framer,
        topics: Topics,
        node_id: str,
        publish: Publish,
        connected: Callable[[], bool],
        stopping: threading.Event,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self._framer = framer
        self._topics = topics
        self._node_id = node_id
        self._publish = publish
        self._connected = connected
        self._stopping = stopping
        self._wake = threading.Event()
        self._metrics_seen: dict[str, int] = {}

    def put(self, kind: ContentType, bodies: list[bytes]) -> int:
        """Store record bodies for the cloud. Raises ``PayloadTooLarge`` / ``OutboxFull``."""
        limit = self.settings.mqtt_max_message_bytes - 1024
        for b in bodies:
            if len(b) > limit:
                raise PayloadTooLarge(
                    f"one {kind.value} record of {len(b)} bytes exceeds the {limit}-byte limit"
                )
        try:
            n = self.outbox.put(kind, bodies)
        except Exception:
            self.sync_metrics()
            raise
        self.sync_metrics()
        self.wake()
        return n

    def wake(self) -> None:
        self._wake.set()

    def sync_metrics(self) -> None:
        for prefix, counts, metric in (
            ("d", self.outbox.dropped, metrics.OUTBOX_DROPPED),
            ("r", self.outbox.refused, metrics.OUTBOX_REFUSED),
        ):
            for kind, count in counts.items():
                delta = count - self._metrics_seen.get(prefix + kind, 0)
                if delta:
                    metric.labels(kind=kind).inc(delta)
                    self._metrics_seen[prefix + kind] = count

    def run(self) -> None:
        """The sender thread's loop (until ``stopping``)."""
        while not self._stopping.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            if self._stopping.is_set():
                break
            if not self._connected():
                continue
            try:
                self.pump()
            except Exception:
                log.exception("sync sender failed; retrying")

    def _build(
        self, seq: int, msg_id: str, kind: ContentType, bodies: list[bytes], n_records: int, low: int
    ) -> bytes:
        return self._framer.bodies(
            kind, bodies, None, n_records, seq=seq, meta={"low": low}, message_id=msg_id
        )

    def _seal_one(self) -> OutMessage | None:
        s = self.settings
        max_bytes = s.mqtt_batch_max_bytes
        for _ in range(32):
            try:
                return self.outbox.seal(
                    self._build, max_records=s.mqtt_batch_max_records, max_bytes=max_bytes
                )
            except EnvelopeTooLarge:
                # Fewer chunks per message; one chunk alone always fits (see chunk_bytes).
                max_bytes = max(1, max_bytes // 2)
        raise EnvelopeTooLarge("cannot fit the oldest outbox chunk into one sync message")

    def pump(self) -> None:
        s = self.settings
        while self.outbox.inflight_messages() < s.mqtt_window_messages:
            if self._seal_one() is None:
                break
        due = self.outbox.due(ack_timeout_s=s.mqtt_ack_timeout_s, limit=s.mqtt_window_messages)
        sent: list[int] = []
        for msg in due:
            if not self._publish(self._topics.up(self._node_id, UP_KIND[msg.kind]), msg.frame):
                break
            sent.append(msg.seq)
            metrics.SENT_MESSAGES.labels(kind=msg.kind.value).inc()
        self.outbox.mark_sent(sent)
