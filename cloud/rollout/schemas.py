"""Wire shapes of rollouts: the create request, analysis thresholds, status and events."""

from __future__ import annotations

import itertools
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator


class AnalysisConfig(BaseModel):
    enabled: bool = Field(
        default=True, description="Judge each step on edge metrics (off: pass after the pause)"
    )
    min_requests: int = Field(default=50, ge=0, description="Canary requests needed before any verdict")
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    max_p99_ratio: float = Field(default=1.5, gt=0, description="Canary p99 may be at most this x stable p99")
    p99_slack_ms: float = Field(
        default=5.0, ge=0, description="Added to the p99 bound (noise at tiny latencies)"
    )
    max_fallback_rate: float = Field(default=0.3, ge=0, le=1)


class RolloutCreate(BaseModel):
    model: str
    version: str
    selector: dict[str, str] = Field(default_factory=dict, description="Label selector of the target nodes")
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    pause_s: float = Field(default=60.0, ge=0, description="Bake time of each step before analysis")
    apply_timeout_s: float = Field(default=120.0, gt=0, description="Time a node has to run the version")
    max_failed_nodes: int = Field(default=2, ge=0, description="Fleet error budget: abort above this many")
    max_failed_ratio: float = Field(default=0.2, ge=0, le=1, description="... or above this share of targets")
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    start: bool = Field(default=True, description="Start at once (else stays pending until resumed)")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < s <= 100 for s in v) or any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError("steps must be increasing percentages in (0, 100]")
        if v[-1] != 100:
            raise ValueError("the last step must be 100")
        return v


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class AnalysisResult(BaseModel):
    verdict: Verdict
    reason: str
    canary: dict[str, float] = Field(default_factory=dict)
    stable: dict[str, float] = Field(default_factory=dict)


class RolloutEventOut(BaseModel):
    from_state: str
    to_state: str
    step_index: int
    actor: str
    reason: str
    details: dict[str, Any]
    at: datetime


class RolloutOut(BaseModel):
    id: int
    model: str
    version: str
    stable_version: str | None
    state: str
    phase: str
    step_index: int
    steps: list[float]
    selector: dict[str, str]
    config: dict[str, Any]
    targets: list[str]
    applied: list[str] = Field(default_factory=list)
    node_variants: dict[str, str] = Field(
        default_factory=dict,
        description="Node -> the precision variant (version) it is sent, when the version has variants",
    )
    failed_nodes: dict[str, Any]
    last_analysis: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    events: list[RolloutEventOut] = Field(default_factory=list)


class RolloutAction(BaseModel):
    reason: str = ""
