"""CommandInbox: the node's side of cloud commands (``{p}/down/{node}/commands``).

Each command id runs once: the handlers' answer is acked as a :class:`CommandAck`, the ack is
stored with the id (outbox ``seen``) before it is published, and a duplicate (the cloud resends
until acked) gets the stored ack again. A handler that returns ``COMMAND_PENDING`` acks later,
from any thread, with :meth:`CommandInbox.ack_command`; duplicates of a pending command are
dropped by id (pending ids are in memory on purpose: after a restart the cloud's resend runs the
command again). An ack made while the broker is away is published on the next connect.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from contracts.commands import Command, CommandAck
from contracts.envelope import ContentType, Envelope, EnvelopeRejected, Framer, RejectReason
from contracts.logging import get_logger
from edge.sync import metrics
from edge.sync.outbox import Outbox

log = get_logger("autoglm.edge.sync")


class _Pending:
    """The marker a command handler returns when it acks later with ``ack_command``."""

    _instance: _Pending | None = None

    def __new__(cls) -> _Pending:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "COMMAND_PENDING"


COMMAND_PENDING = _Pending()
CommandHandler = Callable[[Command], "Mapping[str, Any] | _Pending | None"]
Publish = Callable[[bytes], bool]  # publish one ack frame on the node's ack topic (QoS 1)


class CommandInbox:
    def __init__(
        self, outbox: Outbox, framer: Framer, publish_ack: Publish, stopping: threading.Event
    ) -> None:
        self._outbox = outbox
        self._framer = framer
        self._publish_ack = publish_ack
        self._stopping = stopping
        self._handlers: list[CommandHandler] = []
        self._pending: dict[str, float] = {}  # id -> monotonic start, answered COMMAND_PENDING
        self._lock = threading.Lock()
        self._unsent: dict[str, bytes] = {}  # acks made while disconnected

    def on_command(self, handler: CommandHandler) -> None:
        self._handlers.append(handler)

    def handle(self, env: Envelope) -> None:
        """Run the commands of one downlink envelope (raises EnvelopeRejected for a bad record)."""
        for rec in env.records:
            try:
                command = Command.from_record(rec)
            except ValueError as err:
                raise EnvelopeRejected(RejectReason.INVALID_RECORD, f"command: {err}") from None
            cid = command.command_id
            if not self._handlers:
                log.warning(
                    "command %s received before any on_command handler; left for the cloud's retry", cid
                )
                continue
            with self._lock:
                pending = cid in self._pending
                seen, stored_ack = (False, None) if pending else self._outbox.seen("cmd:" + cid)
            if pending or seen:
                metrics.COMMANDS.labels(outcome="duplicate").inc()
                if stored_ack:
                    self._publish_ack(stored_ack)
                continue
            with self._lock:
                self._pending[cid] = time.monotonic()
            try:
                answers = [h(command) for h in self._handlers]
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
        self,
        command_id: str,
        result: Mapping[str, Any] | None = None,
        *,
        error: BaseException | str | None = None,
    ) -> bool:
        """Ack a command: ok with ``result``, or not ok when ``error`` is given. Thread-safe.
        Returns False (and sends nothing) when the command was acked already or the sync stopped."""
        ack = (
            CommandAck.failure(command_id, error)
            if error is not None
            else CommandAck.success(command_id, dict(result or {}))
        )
        if self._stopping.is_set():
            log.warning(
                "command %s acked after the sync stopped; the cloud's resend will run it again", command_id
            )
            return False
        with self._lock:
            seen, stored = self._outbox.seen("cmd:" + command_id)
            if seen and stored:
                self._pending.pop(command_id, None)
                log.warning("command %s is acked already; second ack ignored", command_id)
                return False
            frame = self._framer.records(ContentType.ACK, [ack.to_record()])
            self._outbox.remember("cmd:" + command_id, frame)
            self._pending.pop(command_id, None)
            if not self._publish_ack(frame):
                self._unsent[command_id] = frame
        metrics.COMMANDS.labels(outcome="ok" if ack.ok else "error").inc()
        return True

    @property
    def pending(self) -> list[str]:
        """Ids of commands a handler is still working on (answered ``COMMAND_PENDING``)."""
        with self._lock:
            return list(self._pending)

    def flush_unsent(self) -> None:
        """On (re)connect: publish the acks made while the broker was away."""
        with self._lock:
            for cid, frame in list(self._unsent.items()):
                if not self._publish_ack(frame):
                    break
                del self._unsent[cid]
