"""Wire shapes of the learning loop (cloud HTTP ``/api/v1/hard-examples`` and ``/api/v1/jobs``).

A *hard example* is one queue item: near-duplicate inputs the edges were unsure of, merged by
embedding, with counts per node and per route the edge guessed, a suggested label and the
operator's decision. A *job* is one run of the loop's pipeline (train -> evaluate -> export with
the guard -> register -> canary -> promote/abort). States and policy: docs/arch/loop.md.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

ROUTE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class HardExampleStatus(StrEnum):
    NEW = "new"  # waiting for a person (or the auto-approve policy)
    LABELLED = "labelled"  # has a route label; goes into the next dataset
    REJECTED = "rejected"  # not used for training (noise, out of scope)


class SuggestionSource(StrEnum):
    MODEL = "model"  # the full-precision model's top route
    CLOUD_TOOL = "cloud_tool"  # the route of the cloud tool that answered the edge
    AGREEMENT = "agreement"  # both said the same route
    USER = "user"  # a user rejected the edge's answer and named the right route (POST /v1/feedback)
    NONE = "none"  # no suggestion (not triaged yet)


class HardExampleReason(StrEnum):
    """Why an edge queued a hard example (the record's ``reason``; counted per queue item)."""

    LOW_CONFIDENCE = "low_confidence"  # the router's confidence was under agent_confidence_threshold
    ABSTAINED = "abstained"  # the scope gate said the question is outside what the model knows
    USER_REJECTED = "user_rejected"  # a user marked the answer wrong (POST /v1/feedback correct=false)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class JobStage(StrEnum):
    """Where a running job is; a restarted worker resumes from ``registered`` on, fails before it."""

    WAITING = "waiting"
    PREPARING = "preparing"
    TRAINING = "training"
    EVALUATING = "evaluating"
    EXPORTING = "exporting"
    REGISTERING = "registering"
    REGISTERED = "registered"
    CANARY = "canary"
    DONE = "done"


class JobOutcome(StrEnum):
    PROMOTED = "promoted"  # the canary passed and the version became stable
    ABORTED = "aborted"  # the canary failed (or stayed inconclusive) and was rolled back
    REJECTED_BY_POLICY = "rejected_by_policy"  # offline gates failed: nothing registered
    GUARD_FAILED = "guard_failed"  # the export guard refused the bundle: nothing registered
    ERROR = "error"
    CANCELLED = "cancelled"


class HardExampleOut(BaseModel):
    id: int
    text: str
    status: HardExampleStatus
    count: int = Field(description="Sightings merged into this item (near-duplicates included)")
    nodes: dict[str, int] = Field(description="Sightings per node")
    edge_routes: dict[str, int] = Field(description="Sightings per route the edge guessed")
    variants: list[str] = Field(default_factory=list, description="Up to a few merged phrasings")
    suggested_route: str | None
    suggested_confidence: float | None
    suggestion_source: SuggestionSource
    model_route: str | None = Field(description="The full-precision model's top route")
    model_confidence: float | None
    cloud_route: str | None = Field(description="The route of the cloud tool that answered the edge")
    user_routes: dict[str, int] = Field(
        default_factory=dict,
        description="Routes users named when they rejected an answer (sightings per route)",
    )
    reasons: dict[str, int] = Field(
        default_factory=dict, description="Sightings per reason the edge queued them (HardExampleReason)"
    )
    label: str | None
    labelled_by: str
    reason: str
    first_seen: datetime
    last_seen: datetime


class HardExampleList(BaseModel):
    items: list[HardExampleOut]
    total: int
    untriaged: int = Field(description="Sightings received but not yet merged into the queue (worker)")


class HardExampleLabel(BaseModel):
    route: str | None = Field(
        default=None, pattern=ROUTE_PATTERN, description="The route; empty: approve the suggestion"
    )
    reason: str = Field(default="", max_length=500)


class HardExampleReject(BaseModel):
    reason: str = Field(default="", max_length=500)


class DatasetOut(BaseModel):
    sha256: str = Field(description="Content address of the dataset (sha256 of its canonical JSONL)")
    version: int
    size: int = Field(description="Labelled examples in it")
    routes: dict[str, int]
    created_at: datetime


class JobCreate(BaseModel):
    model: str = Field(default="autoglm-router", min_length=1, max_length=128)
    reason: str = Field(default="", max_length=500)


class JobOut(BaseModel):
    id: int
    model: str
    state: JobState
    stage: JobStage
    outcome: JobOutcome | None
    progress: float = Field(description="0..1 over the whole pipeline")
    parent_version: str | None
    version: str | None = Field(description="The version this job registered (if it got that far)")
    rollout_id: int | None
    dataset_sha256: str | None
    error: str
    metrics: dict[str, Any]
    created_by: str
    reason: str
    cancel_requested: bool
    attempts: int
    worker: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    logs: list[str] = Field(default_factory=list)


class JobAction(BaseModel):
    reason: str = Field(default="", max_length=500)
