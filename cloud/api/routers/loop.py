"""The learning loop: the hard-example queue (list, label / approve, reject, datasets) and
training jobs (create, list, status with logs, cancel). Readers see; admins act."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from cloud.api.auth import Principal, require_admin, require_reader
from cloud.api.container import CloudServices
from cloud.api.deps import services
from contracts.loop import (
    DatasetOut,
    HardExampleLabel,
    HardExampleList,
    HardExampleOut,
    HardExampleReject,
    HardExampleStatus,
    JobAction,
    JobCreate,
    JobOut,
    JobState,
)

hard_examples = APIRouter(prefix="/api/v1/hard-examples", tags=["learning loop"])
jobs = APIRouter(prefix="/api/v1/jobs", tags=["learning loop"])
Svc = Annotated[CloudServices, Depends(services)]
Admin = Annotated[Principal, Depends(require_admin)]
Reader = Annotated[Principal, Depends(require_reader)]
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Hard-example id")]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Job id")]


@hard_examples.get("", response_model=HardExampleList)
def list_items(
    svc: Svc,
    _: Reader,
    status: HardExampleStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> HardExampleList:
    return svc.loop.queue.items(status, limit=limit, offset=offset)


@hard_examples.get("/datasets", response_model=list[DatasetOut])
def datasets(svc: Svc, _: Reader) -> list[DatasetOut]:
    return svc.loop.queue.datasets()


@hard_examples.post("/datasets", response_model=DatasetOut, status_code=201)
def snapshot(svc: Svc, _: Admin) -> DatasetOut:
    """Freeze the labelled examples into a content-addressed dataset (the same content: the same one)."""
    return svc.loop.queue.snapshot()


@hard_examples.get("/{item_id}", response_model=HardExampleOut)
def get_item(item_id: ItemId, svc: Svc, _: Reader) -> HardExampleOut:
    return svc.loop.queue.get(item_id)


@hard_examples.post("/{item_id}/label", response_model=HardExampleOut)
def label(item_id: ItemId, body: HardExampleLabel, svc: Svc, who: Admin) -> HardExampleOut:
    """Approve the suggested route (no ``route``) or relabel; 400 for a route nothing serves."""
    return svc.loop.queue.label(item_id, body.route, actor=who.actor, reason=body.reason)


@hard_examples.post("/{item_id}/reject", response_model=HardExampleOut)
def reject(item_id: ItemId, body: HardExampleReject, svc: Svc, who: Admin) -> HardExampleOut:
    return svc.loop.queue.reject(item_id, actor=who.actor, reason=body.reason)


@jobs.post("", response_model=JobOut, status_code=201)
def create_job(body: JobCreate, svc: Svc, who: Admin) -> JobOut:
    """Queue a loop job (a job of that model still queued is returned instead: it trains on every
    label present when it starts)."""
    svc.registry.get_model(body.model)  # 404 for an unknown model
    job, _ = svc.loop.jobs.create(body.model, actor=who.actor, reason=body.reason)
    return job


@jobs.get("", response_model=list[JobOut])
def list_jobs(
    svc: Svc, _: Reader, state: JobState | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[JobOut]:
    return svc.loop.jobs.all(state=state, limit=limit)


@jobs.get("/{job_id}", response_model=JobOut)
def get_job(job_id: JobId, svc: Svc, _: Reader) -> JobOut:
    return svc.loop.jobs.get(job_id)


@jobs.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: JobId, body: JobAction, svc: Svc, who: Admin) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its next step (its canary is aborted)."""
    return svc.loop.jobs.cancel(job_id, actor=who.actor, reason=body.reason)
