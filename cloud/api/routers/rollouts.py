"""Rollouts: create, list, status, pause, resume, promote, abort."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from cloud.api.auth import Principal, require_admin, require_reader
from cloud.api.container import CloudServices
from cloud.api.deps import services
from cloud.rollout.schemas import RolloutAction, RolloutCreate, RolloutOut

router = APIRouter(prefix="/api/v1/rollouts", tags=["rollouts"])
Svc = Annotated[CloudServices, Depends(services)]
Admin = Annotated[Principal, Depends(require_admin)]
Reader = Annotated[Principal, Depends(require_reader)]
# Rollout ids are database integers (32-bit on PostgreSQL): larger ones cannot exist (400).
RolloutId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Rollout id")]


@router.post("", response_model=RolloutOut, status_code=201)
def create(body: RolloutCreate, svc: Svc, who: Admin) -> RolloutOut:
    return svc.rollouts.create(body, actor=who.actor)


@router.get("", response_model=list[RolloutOut])
def list_rollouts(svc: Svc, _: Reader, active: bool = False) -> list[RolloutOut]:
    return svc.rollouts.list_rollouts(active_only=active)


@router.get("/{rollout_id}", response_model=RolloutOut)
def status(rollout_id: RolloutId, svc: Svc, _: Reader) -> RolloutOut:
    return svc.rollouts.get(rollout_id)


@router.post("/{rollout_id}/pause", response_model=RolloutOut)
def pause(rollout_id: RolloutId, body: RolloutAction, svc: Svc, who: Admin) -> RolloutOut:
    return svc.rollouts.pause(rollout_id, actor=who.actor, reason=body.reason)


@router.post("/{rollout_id}/resume", response_model=RolloutOut)
def resume(rollout_id: RolloutId, body: RolloutAction, svc: Svc, who: Admin) -> RolloutOut:
    return svc.rollouts.resume(rollout_id, actor=who.actor, reason=body.reason)


@router.post("/{rollout_id}/promote", response_model=RolloutOut)
def promote(
    rollout_id: RolloutId, body: RolloutAction, svc: Svc, who: Admin, full: bool = False
) -> RolloutOut:
    """Next step after analysing the current one now; ``?full=true`` skips every remaining step (Argo)."""
    return svc.rollouts.promote(rollout_id, actor=who.actor, reason=body.reason, full=full)


@router.post("/{rollout_id}/abort", response_model=RolloutOut)
def abort(rollout_id: RolloutId, body: RolloutAction, svc: Svc, who: Admin) -> RolloutOut:
    return svc.rollouts.abort(rollout_id, actor=who.actor, reason=body.reason)
