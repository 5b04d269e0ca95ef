"""Tool service: list, call by name, route-and-call from raw text (edges' fallback)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from cloud.api.auth import Principal, require_reader
from cloud.api.container import CloudServices
from cloud.api.deps import services

router = APIRouter(prefix="/api/v1/tools", tags=["tools"])
Svc = Annotated[CloudServices, Depends(services)]
Caller = Annotated[Principal, Depends(require_reader)]


class ToolCall(BaseModel):
    params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters, checked against the tool's schema"
    )


class RouteCall(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    route: str | None = Field(default=None, description="Route the edge already predicted (optional)")


@router.get("")
def list_tools(svc: Svc, _: Caller) -> list[dict[str, Any]]:
    return svc.tools.describe()


@router.post("/route")
async def route_and_call(body: RouteCall, svc: Svc, _: Caller) -> dict[str, Any]:
    return await svc.tools.route_and_call(body.text, body.route)


@router.post("/{name}/call")
async def call_tool(name: str, body: ToolCall, svc: Svc, _: Caller) -> dict[str, Any]:
    return await svc.tools.call(name, body.params)
