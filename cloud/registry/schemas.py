"""Wire shapes of the registry (returned by the service and the HTTP API)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from contracts.manifest import PRECISION_RUNS_ON


class VersionStatus(StrEnum):
    REGISTERED = "registered"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class ModelCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class ModelOut(BaseModel):
    name: str
    description: str
    tags: dict[str, Any]
    created_at: datetime
    latest_version: str | None = None
    version_count: int = 0
    aliases: dict[str, str] = Field(default_factory=dict)


class FileOut(BaseModel):
    path: str
    sha256: str
    size: int
    inherited: bool = False


# Where a precision runs best when its manifest does not say (a version that is no variant).
DEFAULT_RUNS_ON: dict[str, list[str]] = {k: list(v) for k, v in PRECISION_RUNS_ON.items()}


class VariantOut(BaseModel):
    """One precision variant of a version (issue 17): the version itself or a ``{version}+{precision}``
    bundle exported from the same checkpoint, with its own guard numbers in its own metrics."""

    precision: str
    version: str
    manifest_sha256: str
    runs_on: list[str] = Field(description="Execution providers it runs best on (cpu / cuda / tensorrt)")


class VersionOut(BaseModel):
    model: str
    version: str
    status: VersionStatus
    kind: str
    manifest_sha256: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    tags: dict[str, Any]
    parent: str | None
    aliases: list[str] = Field(default_factory=list)
    created_by: str
    created_at: datetime
    files: list[FileOut] = Field(default_factory=list)
    precision: str = ""
    variant_of: str | None = Field(default=None, description="The version this one is a precision variant of")
    variants: list[VariantOut] = Field(
        default_factory=list,
        description="Precision variants of this version, itself first (empty for a variant)",
    )


class VersionUpdate(BaseModel):
    status: VersionStatus | None = None
    metrics: dict[str, Any] | None = None
    tags: dict[str, str] | None = None


class RegisterFromPath(BaseModel):
    path: str = Field(description="Bundle directory or tar archive on the controller's file system.")
    metrics: dict[str, Any] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class AliasSet(BaseModel):
    version: str
    reason: str = Field(min_length=1, description="Why the alias moves (kept in the audit history).")


class AliasEventOut(BaseModel):
    model: str
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    reason: str
    at: datetime
