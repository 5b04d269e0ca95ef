"""Request/response shapes of ``POST /v1/ask`` and the step records inside an answer."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, StrictBool, model_validator

from contracts.routes import ROUTE_NAME_PATTERN


class Source(StrEnum):
    LOCAL_TOOL = "local_tool"
    MEMORY = "memory"
    SEMANTIC_CACHE = "semantic_cache"
    KNOWLEDGE_GRAPH = "knowledge_graph"
    CLOUD_TOOL = "cloud_tool"  # a confident route whose tool runs in the cloud
    CLOUD_FALLBACK = "cloud_fallback"  # a hard example answered by the cloud's route-and-call
    OFFLINE = "offline"  # the cloud was needed but unreachable: a degraded local answer


class AskRequest(BaseModel):
    text: str = Field(min_length=1, max_length=4000, description="The question or command")
    session_id: str | None = Field(
        default=None, max_length=128, description="Conversation id (short-term memory)"
    )
    priority: int = Field(
        default=0, ge=0, le=15, description="0 = normal; higher is served first by the batcher"
    )
    confirm: StrictBool = Field(
        default=False, description="Explicit confirmation for device_control (JSON true only)"
    )


class AskResponse(BaseModel):
    answer: str
    route: str
    confidence: float
    source: Source
    steps: list[dict[str, Any]]
    model_version: str
    latency_ms: float
    session_id: str | None = None
    data: dict[str, Any] = Field(
        default_factory=dict, description="Structured result of the tool / graph path"
    )


class KnowledgeRequest(BaseModel):
    key: str = Field(
        min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$", description="Stable id of the entry"
    )
    text: str = Field(min_length=1, max_length=4000, description="The knowledge itself")


class FeedbackRequest(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    correct: StrictBool = Field(description="Whether the answer given to `text` was right")
    path: list[str] | None = Field(
        default=None, description="Graph path to confirm (default: the path last used for `text`)"
    )
    start_type: str | None = Field(default=None)
    route: str | None = Field(
        default=None,
        pattern=ROUTE_NAME_PATTERN,
        description="With `correct: false`: the route the question should have taken (one of the "
        "bundle's routes or a route of the policy table); queued for the cloud as the hard example's "
        "suggested label (source `user`). Needs the edge admin token.",
    )

    @model_validator(mode="after")
    def _route_only_when_wrong(self) -> FeedbackRequest:
        if self.route is not None and self.correct:
            raise ValueError("route names the right route of a wrong answer: send it with correct=false")
        return self


class Steps:
    """Collects step records with their time offset (ms since the request started)."""

    def __init__(self, t0: float) -> None:
        import time

        self._t0 = t0
        self._time = time.perf_counter
        self.items: list[dict[str, Any]] = []

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        rec = {"kind": kind, "t_ms": round((self._time() - self._t0) * 1000.0, 3), **fields}
        self.items.append(rec)
        return rec
