"""How commands reach nodes. The rollout and fleet services depend only on this protocol.

The MQTT implementation wraps ``cloud.sync.hub.CloudSync``; tests use :class:`RecordingChannel`
or an in-process fleet.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Protocol

from contracts.commands import Command


class CommandChannel(Protocol):
    def send(self, node_id: str, command: Command) -> str:
        """Deliver ``command`` to ``node_id``; return its command id. Must not block long."""
        ...


class RecordingChannel:
    """Keeps what was sent (for tests and dry runs)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def send(self, node_id: str, command: Command) -> str:
        cid = command.command_id or uuid.uuid4().hex
        with self._lock:
            self.sent.append((cid, node_id, command.with_id(cid).payload()))
        return cid
