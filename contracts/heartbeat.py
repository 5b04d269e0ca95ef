"""Heartbeat / node status payloads (JSON records inside a sync envelope).

The edge reports these every ``mqtt_heartbeat_interval_s`` on ``{p}/up/{node}/heartbeat`` and
as a KubeEdge device twin; the cloud controller (fleet view, rollouts) reads them through
``CloudSync.on_heartbeat``. Unknown extra keys are kept (``extra="allow"``) so a newer node can
add metrics without breaking an older cloud.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="allow")

    node_id: str = Field(description="Reporting node")
    ts_ms: int = Field(description="Wall-clock ms when the heartbeat was built")
    model_version: str = Field(default="", description="Model (bundle) version being served")
    adapters: list[str] = Field(default_factory=list, description="Adapter set loaded")
    queue_depth: int = Field(default=0, ge=0, description="Requests waiting in the batcher")
    latency_p50_ms: float = Field(default=0.0, ge=0, description="Inference latency p50")
    latency_p99_ms: float = Field(default=0.0, ge=0, description="Inference latency p99")
    requests: int = Field(default=0, ge=0, description="Requests served over the window (rollout analysis)")
    error_rate: float = Field(default=0.0, ge=0, description="Errors / requests over the window")
    fallback_rate: float = Field(default=0.0, ge=0, description="Cloud fallbacks / requests")
    cache_hit_rate: float = Field(default=0.0, ge=0, description="Result-cache hit rate")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Resource use, e.g. cpu_percent, mem_mb, gpu_util"
    )
    outbox_records: int = Field(default=0, ge=0, description="Records waiting in the sync outbox")
    providers: list[str] = Field(
        default_factory=list,
        description="ONNX Runtime execution providers the served model really runs on (get_providers())",
    )
    provider_fallback: str = Field(default="", description="Requested providers that did not start")
    providers_available: list[str] = Field(
        default_factory=list,
        description="Providers this node may start: configured and in its onnxruntime build",
    )
    device: str = Field(default="", description="'cpu', or the GPU name and compute capability")
    variant: str = Field(default="", description="Precision of the served bundle (fp32 / int8 / fp16)")


class NodeStatus(BaseModel):
    """The retained status message (and the Last Will, with ``status == offline``)."""

    model_config = ConfigDict(extra="allow")

    node_id: str
    status: str = Field(description="online | offline")
    ts_ms: int = Field(default=0)
    group: str | None = Field(default=None, description="Node group for group broadcasts")
