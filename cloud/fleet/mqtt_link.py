"""Connects the fleet service to the MQTT sync hub (``cloud.sync.hub.CloudSync``).

Heartbeats and online/offline status (including the Last Will the broker publishes for a node
that vanished; the node's ``NodeStatus`` passes through whole, its group included) feed
:class:`FleetService`. The hub shares the fleet's command ledger: commands go out through
``CloudSync.send_command``, which resends them until the node acks; each ack is applied to the
ledger once by the hub and then handed to the fleet as a :class:`contracts.commands.CommandAck`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.commands import Command, CommandAck
from contracts.heartbeat import STATUS_ONLINE
from contracts.logging import get_logger

if TYPE_CHECKING:
    from cloud.fleet.service import FleetService
    from cloud.sync.hub import CloudSync

log = get_logger("autoglm.cloud.fleet")


class MqttFleetLink:
    """A :class:`~cloud.fleet.channel.CommandChannel` over MQTT plus the sync hooks."""

    def __init__(self, sync: CloudSync) -> None:
        self.sync = sync
        self._fleet: FleetService | None = None
        self._started = False

    def attach(self, fleet: FleetService) -> None:
        self._fleet = fleet
        fleet.channel = self
        self.sync.on_heartbeat(fleet.on_heartbeat)
        self.sync.on_status(
            lambda node, st: fleet.on_status(node, st.status == STATUS_ONLINE, st.model_dump())
        )
        self.sync.on_command_ack(self._on_ack)

    def _on_ack(self, node_id: str, ack: CommandAck) -> None:
        if self._fleet is not None:
            self._fleet.on_ack(node_id, ack, recorded=True)

    def send(self, node_id: str, command: Command) -> str:
        return self.sync.send_command(node_id, command)

    @property
    def connected(self) -> bool:
        return bool(self.sync.wait_connected(0))

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.sync.start()
        if not self.sync.wait_connected(10):
            log.warning("MQTT broker not reachable yet; the link keeps retrying")

    @property
    def started(self) -> bool:
        return self._started

    def stop(self, *, final: bool = True) -> None:
        """Disconnect; ``final=False`` (lost the leader lease) keeps the hub restartable."""
        if self._started:
            self._started = False
            self.sync.stop(close_repo=final)
