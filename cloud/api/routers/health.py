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
    """Ready when the database answers and, where this replica runs the MQTT sync (the leader,
    with MQTT configured), the broker link is up: a controller that cannot reach its fleet says
    so instead of taking traffic it cannot act on (the link reconnects by itself). Followers leave
    MQTT to the leader and are ready with the database alone. ``leader`` says whether this
    replica holds the leader lease; ``holder`` is this replica's lease holder id."""
    checks: dict[str, Any] = {"database": svc.db.ping()}
    mqtt_ok = True
    sync = svc.extra.get("sync")
    if sync is not None:
        connected = bool(getattr(sync, "connected", False))
        checks["mqtt_connected"] = connected
        mqtt_ok = connected or not bool(getattr(sync, "started", True))
    ok = bool(checks["database"]) and mqtt_ok
    body = {
        "status": "ready" if ok else "not ready",
        "checks": checks,
        "leader": svc.leader.is_leader,
        "holder": svc.leader.holder,
    }
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get(METRICS_PATH)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
