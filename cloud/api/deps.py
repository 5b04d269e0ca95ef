"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request

from cloud.api.container import CloudServices


def services(request: Request) -> CloudServices:
    svc: CloudServices = request.app.state.services
    return svc
