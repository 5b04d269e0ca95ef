"""Bearer-token auth: admin tokens manage everything; node tokens act for their own node.

Admin tokens come from settings, optionally named (``alice=TOKEN``) so audit records say who.
Node tokens are issued at registration (bootstrap token) and stored hashed. A missing or
unknown token answers 401; a valid token of the wrong kind answers 403.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from contracts.errors import Forbidden, Unauthorized

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    kind: Literal["admin", "node", "bootstrap"]
    name: str

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"


def parse_admin_tokens(tokens: set[str]) -> dict[str, str]:
    """token -> name. ``name=token`` entries carry a name; bare tokens get a short hash."""
    out: dict[str, str] = {}
    for entry in tokens:
        if "=" in entry:
            name, token = entry.split("=", 1)
        else:
            name, token = f"admin-{hashlib.sha256(entry.encode()).hexdigest()[:8]}", entry
        if token:
            out[token] = name
    return out


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def identify(request: Request) -> Principal:
    """Who is calling. Raises 401 when nobody (or an unknown token)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("missing bearer token", headers=_CHALLENGE)
    state = request.app.state
    for known, name in state.admin_tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            return Principal("admin", name)
    node_id = state.services.fleet.authenticate(token)
    if node_id is not None:
        return Principal("node", node_id)
    bootstrap = state.services.settings.bootstrap_token
    if bootstrap and hmac.compare_digest(bootstrap.encode(), token.encode()):
        return Principal("bootstrap", "bootstrap")
    raise Unauthorized("invalid bearer token", headers=_CHALLENGE)


def require_admin(request: Request) -> Principal:
    p = identify(request)
    if p.kind != "admin":
        raise Forbidden(f"{p.kind} credentials cannot do this; an admin token is required")
    return p


def require_reader(request: Request) -> Principal:
    """Admins and nodes may read the registry, the fleet and download files."""
    p = identify(request)
    if p.kind == "bootstrap":
        raise Forbidden("the bootstrap token can only register nodes")
    return p


def require_bootstrap(request: Request) -> Principal:
    p = identify(request)
    if p.kind == "node":
        raise Forbidden("a node credential cannot register nodes; use the bootstrap token")
    return p


def require_node_self(request: Request, node_id: str) -> Principal:
    """The node itself (or an admin) may report for ``node_id``."""
    p = identify(request)
    if p.kind == "admin" or (p.kind == "node" and p.name == node_id):
        return p
    raise Forbidden(f"credentials of {p.name} cannot act for node {node_id}")
