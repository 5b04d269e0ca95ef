"""Simulated edges for rollout tests.

``InstantFleet``: an in-process command channel whose nodes apply (or refuse) a version at once
and report traffic when asked; drives the state machine with a fake clock.
``MqttEdge``: a real ``EdgeSync`` agent over a real broker that applies version commands and
reports heartbeats whose metrics depend on the version it runs.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud.fleet.service import FleetService
from contracts.commands import Command, CommandAck, CommandKind


@dataclass
class Behaviour:
    """What a node reports while running a version."""

    requests: int = 40
    error_rate: float = 0.0
    p99_ms: float = 10.0
    fallback_rate: float = 0.0
    refuse: str = ""  # non-empty: the node cannot apply this version (reason)


@dataclass
class FakeClock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, s: float) -> None:
        self.now += s


@dataclass
class InstantFleet:
    """Channel + nodes: commands are applied synchronously and acked through the fleet service."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    fleet: FleetService | None = None
    versions: dict[str, str] = field(default_factory=dict)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    pending: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def send(self, node_id: str, command: Command) -> str:
        cid = command.command_id or uuid.uuid4().hex
        payload = command.with_id(cid).payload()
        self.sent.append((node_id, payload))
        self.pending.append((cid, node_id, payload))
        return cid

    def deliver(self) -> None:
        """Nodes handle the commands sent so far (as a real agent would, later)."""
        assert self.fleet is not None
        todo, self.pending = self.pending, []
        for cid, node_id, command in todo:
            version = str(command["version"])
            b = self.behaviours.get(version, Behaviour())
            if b.refuse:
                self.fleet.on_ack(node_id, CommandAck.failure(cid, b.refuse))
                continue
            self.versions[node_id] = version
            self.fleet.on_ack(node_id, CommandAck.success(cid, {"version": version}))

    def heartbeats(self, nodes: list[str]) -> None:
        assert self.fleet is not None
        for n in nodes:
            v = self.versions.get(n, "")
            b = self.behaviours.get(v, Behaviour())
            self.fleet.on_heartbeat(
                n,
                {
                    "node_id": n,
                    "ts_ms": 0,
                    "model_version": v,
                    "requests": b.requests,
                    "error_rate": b.error_rate,
                    "latency_p99_ms": b.p99_ms,
                    "fallback_rate": b.fallback_rate,
                },
            )


class MqttEdge:
    """One simulated edge agent: real EdgeSync, real broker; applies version commands at once."""

    def __init__(
        self,
        node_id: str,
        host: str,
        port: int,
        workdir: Path,
        behaviours: dict[str, Behaviour],
        version: str,
        heartbeat_s: float = 0.2,
    ) -> None:
        from edge.sync.agent import EdgeSync
        from edge.sync.settings import SyncSettings

        self.node_id = node_id
        self.behaviours = behaviours
        self.version = version
        self.lock = threading.Lock()
        self.applied: list[str] = []
        settings = SyncSettings(
            mqtt_host=host,
            mqtt_port=port,
            mqtt_heartbeat_interval_s=heartbeat_s,
            mqtt_outbox_path=workdir / f"{node_id}.outbox.sqlite3",
        )
        self.sync = EdgeSync(settings, node_id=node_id)
        self.sync.set_heartbeat_provider(self._heartbeat)
        self.sync.on_command(self._on_command)

    def _heartbeat(self) -> dict[str, Any]:
        with self.lock:
            v = self.version
        b = self.behaviours.get(v, Behaviour())
        return {
            "model_version": v,
            "requests": b.requests,
            "error_rate": b.error_rate,
            "latency_p99_ms": b.p99_ms,
            "fallback_rate": b.fallback_rate,
        }

    def _on_command(self, command: Command) -> dict[str, Any] | None:
        if command.kind is not CommandKind.SET_DESIRED_VERSION:
            return None
        version = str(command.version)
        b = self.behaviours.get(version, Behaviour())
        if b.refuse:
            raise RuntimeError(b.refuse)  # the agent acks ok=false with this reason
        with self.lock:
            self.version = version
            self.applied.append(version)
        return {"version": version}

    def start(self) -> MqttEdge:
        self.sync.start()
        return self

    def stop(self) -> None:
        self.sync.stop(graceful=True)
