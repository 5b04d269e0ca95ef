"""Liveness, readiness and Prometheus metrics (open: they change nothing)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cloud.api.container import CloudServices
from cloud.api.deps import services
from contracts.defaults import CLOUD_LIVE_PATH, CLOUD_READY_PATH, METRICS_PATH

router = APIRouter(tags=["health"])
Svc = Annotated[CloudServices, Depends(services)]


@router.get(CLOUD_LIVE_PATH)
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(CLOUD_READY_PATH)
def ready(svc: Svc) -> JSONResponse:
    """Ready when the database answers. The MQTT link is reported but does not gate readiness:
    without the broker the registry and downloads still work, and the link reconnects by itself.
    ``leader`` says whether this replica holds the leader lease (followers are ready too:
    they serve the API); ``holder`` is this replica's lease holder id."""
    checks: dict[str, Any] = {"database": svc.db.ping()}
    sync = svc.extra.get("sync")
    if sync is not None:
        checks["mqtt_connected"] = bool(getattr(sync, "connected", False))
    ok = bool(checks["database"])
    body = {"status": "ready" if ok else "not ready", "checks": checks,
            "leader": svc.leader.is_leader, "holder": svc.leader.holder}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get(METRICS_PATH)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
