"""Every state-changing route of the cloud and the edge against every kind of credential: none,
an unknown one, the bootstrap token, a one-time enrolment token, a node token (for itself and
for another node) and an admin token. Routes come from the apps themselves (cross-checked with
their OpenAPI), so a new route cannot escape the matrix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from edge.http.app import create_app
from tests.cloud.controller.conftest import ADMIN, BOOTSTRAP, LiveServer, make_settings
from tests.edge.conftest import ADMIN_HEADERS, EDGE_ADMIN, Bundles, ServerFactory

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# (path template) -> credential kinds besides admin that may use it
NODE_SELF = {
    "/api/v1/nodes/{node_id}/heartbeat",
    "/api/v1/nodes/{node_id}/acks",
    "/api/v1/nodes/{node_id}/token",
}
READER_ROUTES = {"/api/v1/tools/route", "/api/v1/tools/{name}/call"}  # admins and nodes
REGISTER = "/api/v1/nodes/register"


def _routes(routes: list[object]) -> list[tuple[str, set[str]]]:
    out: list[tuple[str, set[str]]] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append((r.path, set(r.methods)))
        elif hasattr(r, "original_router"):
            prefix = getattr(getattr(r, "include_context", None), "prefix", "") or ""
            out += [(prefix + p, m) for p, m in _routes(r.original_router.routes)]
        elif hasattr(r, "routes"):
            out += _routes(r.routes)
    return out


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LiveServer]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    try:
        with LiveServer(svc) as live:
            yield live
    finally:
        svc.close()


def _post_register(live: LiveServer, token: str, node_id: str) -> httpx.Response:
    return httpx.post(
        live.url + REGISTER, json={"node_id": node_id}, headers={"Authorization": f"Bearer {token}"}
    )


def test_cloud_auth_matrix(cloud: LiveServer) -> None:
    me = _post_register(cloud, BOOTSTRAP, "node-me").json()["token"]
    enrol = httpx.post(
        cloud.url + "/api/v1/nodes/node-new/enrolment", json={}, headers={"Authorization": f"Bearer {ADMIN}"}
    ).json()["token"]
    routes = [
        (p, m & STATE_CHANGING)
        for p, m in _routes(cloud.app.routes)
        if m & STATE_CHANGING and p.startswith("/api/")
    ]
    documented = {
        (p, m.upper())
        for p, ops in cloud.app.openapi()["paths"].items()
        for m in ops
        if m.upper() in STATE_CHANGING and p.startswith("/api/")
    }
    assert documented == {(p, m) for p, ms in routes for m in ms}
    checked = 0
    for path, methods in routes:
        for method in sorted(methods):

            def call(
                token: str | None, node: str = "victim", *, path: str = path, method: str = method
            ) -> int:
                nonlocal me
                url = cloud.url + re.sub(
                    r"\{(\w+)(:path)?\}",
                    lambda m: "1" if m.group(1) == "rollout_id" else node if m.group(1) == "node_id" else "x",
                    path,
                )
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                r = httpx.request(method, url, json={}, headers=headers)
                if path.endswith("/token") and r.status_code == 201 and node == "node-me":
                    me = r.json()["token"]  # the rotation replaced our node token
                return r.status_code

            where = f"{method} {path}"
            assert call(None) == 401, where
            assert call("not-a-token") == 401, where
            if path == REGISTER:
                assert call(me) == 403, where  # a node token registers nothing (it rotates with /token)
                continue
            assert call(BOOTSTRAP) == 403, where
            assert call(enrol) == 403, where
            assert call(me, node="victim") == 403 or path in READER_ROUTES, where
            if path in NODE_SELF or path in READER_ROUTES:
                assert call(me, node="node-me") not in (401, 403), where
            else:
                assert call(me, node="node-me") == 403, where
            if not (method == "DELETE" and path == "/api/v1/nodes/{node_id}"):
                status = call(ADMIN, node="node-me")
                assert status not in (401, 403) and status < 500, (where, status)
            checked += 1
    assert checked >= 20
    # the registration rules themselves (D3)
    assert _post_register(cloud, BOOTSTRAP, "node-me").status_code == 409
    assert _post_register(cloud, enrol, "node-me").status_code == 403
    assert _post_register(cloud, enrol, "node-new").status_code == 201


def test_edge_auth_matrix(start_server: ServerFactory, bundles: Bundles) -> None:
    s = start_server(bundle_dir=bundles.v1)
    app = create_app(s.service, s.settings)  # the same routes as the running server's
    routes = [(p, m & STATE_CHANGING) for p, m in _routes(app.routes) if m & STATE_CHANGING]
    # state-changing routes that are open by design: inference (documented here, served raw)
    open_routes = {"/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"}
    assert {p for p, _ in routes} - open_routes == {p for p, _ in routes if p.startswith("/v2/repository")}
    admin_routes = {p for p, _ in routes if p.startswith("/v2/repository")}
    assert admin_routes == {
        "/v2/repository/index",
        "/v2/repository/models/{name}/load",
        "/v2/repository/models/{name}/unload",
    }
    for path in sorted(admin_routes):
        url = s.url + path.replace("{name}", "autoglm-router")
        body = {"parameters": {"bundle": str(bundles.v1)}}
        for headers, want in (
            ({}, 401),
            ({"Authorization": "Bearer nope"}, 401),
            ({"Authorization": f"Bearer {EDGE_ADMIN}x"}, 401),
            ({"Authorization": f"Basic {EDGE_ADMIN}"}, 401),
        ):
            assert httpx.post(url, json=body, headers=headers).status_code == want, (path, headers)
        status = httpx.post(url, json=body, headers=ADMIN_HEADERS, timeout=60).status_code
        assert status not in (401, 403) and status < 500, (path, status)
    # inference and health stay open
    r = httpx.post(
        s.url + "/v2/models/autoglm-router/infer",
        json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["open"]}]},
    )
    assert r.status_code == 200
