"""Bearer-token auth: admin tokens manage everything; node tokens act for their own node.

Admin tokens come from settings, optionally named (``alice:TOKEN``) so audit records say who.
Node tokens are issued at registration and stored hashed. The shared bootstrap token registers
new node ids only; an admin, a one-time enrolment token an admin created for that id, or the
node's own token (rotation) may replace an existing node's credential. A missing or unknown
token answers 401; a valid token of the wrong kind answers 403.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from contracts.errors import ConfigError, Forbidden, Unauthorized

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Principal:
    kind: Literal["admin", "node", "bootstrap", "enrolment"]
    name: str

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"


ADMIN_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.@-]{0,63}$")


class AdminTokenError(ConfigError):
    """The configured admin tokens are unusable (blank, whitespace, duplicate, bad name)."""


def parse_admin_tokens(tokens: Iterable[str]) -> dict[str, str]:
    """token -> name. Entries are ``name:token`` or a bare ``token``.

    ``:`` is the only separator and only the first one counts, so a token may hold any other
    character (base64 ``=`` padding, ``+``, ``/``); a bare token without ``:`` gets the name
    ``admin-<sha256[:8]>``. An entry with a ``:`` must start with a valid name
    (:data:`ADMIN_NAME_PATTERN`). Blank tokens, tokens with whitespace or control characters,
    and one token configured twice raise :class:`AdminTokenError` (the server refuses to start)."""
    out: dict[str, str] = {}
    for entry in tokens:
        if ":" in entry:
            name, token = entry.split(":", 1)
            if not ADMIN_NAME_PATTERN.match(name):
                raise AdminTokenError(
                    f"admin token entry {_redact(entry)!r}: the part before ':' must be a name "
                    f"matching {ADMIN_NAME_PATTERN.pattern} (format name:token)"
                )
        else:
            name, token = f"admin-{hashlib.sha256(entry.encode()).hexdigest()[:8]}", entry
        if not token.strip():
            raise AdminTokenError(f"admin token {name!r} is empty; set a non-blank token or remove the entry")
        if any(c.isspace() or not c.isprintable() for c in token):
            raise AdminTokenError(f"admin token {name!r} contains whitespace or control characters")
        if token in out:
            raise AdminTokenError(f"admin tokens {out[token]!r} and {name!r} are the same token")
        out[token] = name
    return out


def _redact(entry: str) -> str:
    """An entry for an error message: the name part and at most 2 characters of the secret."""
    head, _, _ = entry.partition(":")
    return f"{head[:64]}:…" if ":" in entry else f"{entry[:2]}…"


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
    enrolled = state.services.fleet.enrolment_node(token)
    if enrolled is not None:
        return Principal("enrolment", enrolled)
    raise Unauthorized("invalid bearer token", headers=_CHALLENGE)


def require_admin(request: Request) -> Principal:
    p = identify(request)
    if p.kind != "admin":
        raise Forbidden(f"{p.kind} credentials cannot do this; an admin token is required")
    return p


def require_reader(request: Request) -> Principal:
    """Admins and nodes may read the registry, the fleet and download files."""
    p = identify(request)
    if p.kind in ("bootstrap", "enrolment"):
        raise Forbidden(f"the {p.kind} token can only register nodes")
    return p


def require_registrar(request: Request) -> Principal:
    """Who may call ``POST /nodes/register``: the bootstrap token (new node ids only), a
    one-time enrolment token (its own node id only) or an admin. A node rotates its own token
    with ``POST /nodes/{id}/token`` instead."""
    p = identify(request)
    if p.kind == "node":
        raise Forbidden(
            "a node credential cannot register nodes; use the bootstrap or an enrolment token "
            "(a node rotates its own token with POST /api/v1/nodes/{node_id}/token)"
        )
    return p


def require_node_self(request: Request, node_id: str) -> Principal:
    """The node itself (or an admin) may report for ``node_id``."""
    p = identify(request)
    if p.kind == "admin" or (p.kind == "node" and p.name == node_id):
        return p
    if p.kind in ("bootstrap", "enrolment"):
        raise Forbidden(f"the {p.kind} token can only register nodes")
    raise Forbidden(f"credentials of {p.name} cannot act for node {node_id}")
