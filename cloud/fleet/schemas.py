"""Wire shapes of the fleet API (commands and acks themselves are ``contracts.commands``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, Field, StrictBool

from contracts.commands import CommandStatus

NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"


class NodeRegister(BaseModel):
    node_id: str = Field(min_length=1, max_length=128, pattern=NODE_ID_PATTERN)
    labels: dict[str, str] = Field(default_factory=dict, description="site, group, hardware (gpu) ...")


class NodeRegistered(BaseModel):
    node_id: str
    token: str = Field(description="The node's own bearer credential (shown once).")


class EnrolmentCreate(BaseModel):
    ttl_s: float = Field(default=24 * 3600.0, gt=0, le=30 * 24 * 3600.0, description="Lifetime of the token")


class EnrolmentOut(BaseModel):
    node_id: str
    token: str = Field(description="One-time enrolment token for this node id (shown once).")
    expires_at: datetime


class NodeOut(BaseModel):
    node_id: str
    labels: dict[str, str]
    online: bool
    drained: bool
    current_version: str
    desired_version: str
    last_seen: datetime | None
    metrics: dict[str, Any]
    last_error: str
    registered_via: str


class LabelPatch(BaseModel):
    set: dict[str, str] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class DrainRequest(BaseModel):
    drained: StrictBool = True
    reason: str = ""


class TrafficSplit(BaseModel):
    """The second gray mode: one node keeps two versions loaded and splits requests by weight."""

    model: str
    stable_version: str
    canary_version: str
    canary_weight: float = Field(ge=0.0, le=1.0, description="Share of requests served by the canary")


class CommandOut(BaseModel):
    id: str
    node_id: str
    kind: str = Field(description="A CommandKind value")
    payload: dict[str, Any]
    status: CommandStatus
    detail: str
    sent_at: datetime
    acked_at: datetime | None


class NodeSample(NamedTuple):
    """One heartbeat's traffic summary, kept in memory for rollout analysis.

    A tuple of plain values, not a pydantic model: the fleet keeps 512 per node (256,000 for 500
    nodes), and tuples of atomic values are not tracked by Python's cyclic GC — as models they
    made each full collection pause the controller for about a second (benchmarks/bench_console.py).
    """

    ts: float
    version: str
    requests: int
    error_rate: float
    p99_ms: float
    fallback_rate: float
