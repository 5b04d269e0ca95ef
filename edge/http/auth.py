"""Who may use the edge's admin routes (model repository index/load/unload, ``POST /v1/knowledge``).

Secure by default: with ``http_admin_token`` set, those routes need ``Authorization: Bearer
<token>`` (exact, constant-time match; 401 otherwise). With no token they answer 403 — unless
``http_insecure_dev`` is set, a development switch that serves them to anyone. Inference,
``/v1/ask``, health and metrics stay open (they change nothing that leaves the node).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from contracts.errors import Forbidden, Unauthorized
from contracts.logging import get_logger

log = get_logger("autoglm.edge.http")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Writer:
    """Who made an admin request: ``admin`` (token checked) or ``anonymous`` (insecure dev mode)."""

    name: str
    authenticated: bool


class EdgeAdminAuth:
    def __init__(self, token: str, insecure_dev: bool = False) -> None:
        self.token = token.strip()
        self.insecure_dev = insecure_dev
        if not self.token and insecure_dev:
            log.warning(
                "AUTOGLM_EDGE_HTTP_INSECURE_DEV: admin routes are served without a token (development only)"
            )
        elif not self.token:
            log.warning(
                "no AUTOGLM_EDGE_HTTP_ADMIN_TOKEN: the model repository and knowledge routes answer 403"
            )

    def __call__(self, request: Request) -> Writer:
        """FastAPI dependency: the writer, or 401 / 403."""
        if not self.token:
            if self.insecure_dev:
                return Writer("anonymous", authenticated=False)
            raise Forbidden(
                "this admin route is disabled: set AUTOGLM_EDGE_HTTP_ADMIN_TOKEN "
                "(or AUTOGLM_EDGE_HTTP_INSECURE_DEV=true for development)"
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("this admin route needs 'Authorization: Bearer <token>'", headers=_CHALLENGE)
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise Unauthorized("invalid bearer token", headers=_CHALLENGE)
        return Writer("admin", authenticated=True)


def optional_admin_auth(request: Request) -> Writer:
    """For open routes whose effect may leave the node only when the admin token is given
    (``POST /v1/feedback``): no ``Authorization`` header → ``anonymous``; a header must carry the
    valid token (401 otherwise)."""
    auth: EdgeAdminAuth = request.app.state.admin_auth
    if not request.headers.get("authorization") or not auth.token:
        return Writer("anonymous", authenticated=False)
    return auth(request)


def admin_auth(request: Request) -> Writer:
    """The app's :class:`EdgeAdminAuth` (set by ``create_app``) as a dependency for other routers."""
    auth: EdgeAdminAuth = request.app.state.admin_auth
    return auth(request)
