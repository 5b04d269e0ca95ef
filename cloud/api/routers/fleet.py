"""Nodes: registration with the bootstrap token, listing, labels, drain, commands, reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from cloud.api.auth import (
    Principal,
    bearer_token,
    require_admin,
    require_node_self,
    require_reader,
    require_registrar,
)
from cloud.api.container import CloudServices
from cloud.api.deps import services
from cloud.fleet.schemas import (
    NODE_ID_PATTERN,
    CommandOut,
    DrainRequest,
    EnrolmentCreate,
    EnrolmentOut,
    LabelPatch,
    NodeOut,
    NodeRegister,
    NodeRegistered,
    TrafficSplit,
)
from cloud.fleet.service import parse_selector
from cloud.rollout.service import version_command
from contracts.commands import Command, CommandAck
from contracts.errors import BadRequest, Forbidden
from contracts.heartbeat import Heartbeat

router = APIRouter(prefix="/api/v1/nodes", tags=["fleet"])
Svc = Annotated[CloudServices, Depends(services)]
Admin = Annotated[Principal, Depends(require_admin)]
Reader = Annotated[Principal, Depends(require_reader)]


class DesiredVersion(BaseModel):
    model: str
    version: str


class CommandSent(BaseModel):
    command_id: str


def _self(request: Request, node_id: str) -> Principal:
    return require_node_self(request, node_id)


NodeSelf = Annotated[Principal, Depends(_self)]


@router.post("/register", response_model=NodeRegistered, status_code=201)
def register(
    body: NodeRegister, request: Request, svc: Svc, who: Annotated[Principal, Depends(require_registrar)]
) -> NodeRegistered:
    """Register a node and return its own token. The bootstrap token registers new node ids
    only (409 for an id that already holds a credential); a one-time enrolment token registers
    the node id it was created for; an admin may (re-)register any id."""
    if who.kind == "enrolment":
        if who.name != body.node_id or not svc.fleet.consume_enrolment(
            body.node_id, bearer_token(request) or ""
        ):
            raise Forbidden(f"this enrolment token is for node {who.name!r}, not {body.node_id!r}")
        token = svc.fleet.register(body.node_id, body.labels, via="enrolment")
    elif who.kind == "admin":
        token = svc.fleet.register(body.node_id, body.labels, via="admin")
    else:
        token = svc.fleet.register(body.node_id, body.labels, via="bootstrap", allow_existing=False)
    return NodeRegistered(node_id=body.node_id, token=token)


@router.post("/{node_id}/enrolment", response_model=EnrolmentOut, status_code=201)
def create_enrolment(
    node_id: Annotated[str, Path(min_length=1, max_length=128, pattern=NODE_ID_PATTERN)],
    body: EnrolmentCreate,
    svc: Svc,
    who: Admin,
) -> EnrolmentOut:
    """A one-time token that (re-)registers ``node_id`` once (shown once, stored hashed). Give it
    to the node as its bootstrap token (``AUTOGLM_EDGE_CONTROL_BOOTSTRAP_TOKEN``)."""
    token, expires = svc.fleet.create_enrolment(node_id, ttl_s=body.ttl_s, actor=who.actor)
    return EnrolmentOut(node_id=node_id, token=token, expires_at=datetime.fromtimestamp(expires, UTC))


@router.post("/{node_id}/token", response_model=NodeRegistered, status_code=201)
def rotate_token(node_id: str, svc: Svc, who: NodeSelf) -> NodeRegistered:
    """A new token for the node (the old one stops working); the node itself or an admin."""
    svc.fleet.get(node_id)  # 404 for an unknown node
    token = svc.fleet.register(node_id, {}, via="rotation" if who.kind == "node" else "admin")
    return NodeRegistered(node_id=node_id, token=token)


@router.get("", response_model=list[NodeOut])
def list_nodes(
    svc: Svc, _: Reader, selector: str | None = None, online: bool | None = None, drained: bool | None = None
) -> list[NodeOut]:
    return svc.fleet.list_nodes(parse_selector(selector), online=online, drained=drained)


@router.get("/{node_id}", response_model=NodeOut)
def get_node(node_id: str, svc: Svc, _: Reader) -> NodeOut:
    return svc.fleet.get(node_id)


@router.patch("/{node_id}/labels", response_model=NodeOut)
def patch_labels(node_id: str, body: LabelPatch, svc: Svc, _: Admin) -> NodeOut:
    return svc.fleet.set_labels(node_id, body.set, body.remove)


@router.post("/{node_id}/drain", response_model=NodeOut)
def drain(node_id: str, body: DrainRequest, svc: Svc, _: Admin) -> NodeOut:
    return svc.fleet.set_drained(node_id, body.drained)


@router.delete("/{node_id}", status_code=204)
def delete_node(node_id: str, svc: Svc, _: Admin) -> None:
    svc.fleet.delete(node_id)


@router.post("/{node_id}/desired-version", response_model=CommandSent, status_code=202)
def set_desired(node_id: str, body: DesiredVersion, svc: Svc, _: Admin) -> CommandSent:
    v = svc.registry.get_version(body.model, body.version)
    cid = svc.fleet.send_command(node_id, version_command(v.model, v.version, v.manifest_sha256))
    return CommandSent(command_id=cid)


@router.post("/{node_id}/traffic-split", response_model=CommandSent, status_code=202)
def traffic_split(node_id: str, body: TrafficSplit, svc: Svc, _: Admin) -> CommandSent:
    """Second gray mode: the node keeps both versions loaded and splits requests by weight."""
    if body.stable_version == body.canary_version:
        raise BadRequest("stable and canary versions must differ")
    versions = {}
    for ver in (body.stable_version, body.canary_version):
        v = svc.registry.get_version(body.model, ver)
        versions[v.version] = v.manifest_sha256
    weights = {
        body.stable_version: round(1.0 - body.canary_weight, 6),
        body.canary_version: body.canary_weight,
    }
    command = Command.set_traffic_split(body.model, weights, versions)
    return CommandSent(command_id=svc.fleet.send_command(node_id, command))


@router.get("/{node_id}/commands", response_model=list[CommandOut])
def list_commands(node_id: str, svc: Svc, _: Reader) -> list[CommandOut]:
    svc.fleet.get(node_id)  # 404 for an unknown (or deleted) node
    return svc.fleet.commands(node_id)


@router.post("/{node_id}/heartbeat", status_code=204)
def heartbeat(node_id: str, body: Heartbeat, svc: Svc, _: NodeSelf) -> None:
    """HTTP fallback for a node whose MQTT link is down (same payload as the MQTT heartbeat)."""
    if body.node_id != node_id:
        raise BadRequest(f"heartbeat for {body.node_id!r} posted to node {node_id!r}")
    svc.fleet.on_heartbeat(node_id, body.model_dump())


@router.post("/{node_id}/acks", status_code=204)
def ack(node_id: str, body: CommandAck, svc: Svc, _: NodeSelf) -> None:
    svc.fleet.on_ack(node_id, body)
