"""The HTTP API on a real uvicorn server: auth on every state-changing route, uploads,
edge downloads (ETag, If-None-Match, Range), health and metrics."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
from fastapi.routing import APIRoute

from contracts.bundle import pack_bundle
from contracts.defaults import CLOUD_LIVE_PATH, CLOUD_READY_PATH, METRICS_PATH
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import ADMIN, BOOTSTRAP, LiveServer

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
# Routes a non-admin credential may use; every other state-changing route must be admin-only.
# (path template -> the credential kind that must still be refused with 403)
NON_ADMIN_ROUTES = {
    "/api/v1/nodes/register": "node",  # bootstrap token registers; a node token may not
    "/api/v1/nodes/{node_id}/heartbeat": "other-node",  # a node reports only for itself
    "/api/v1/nodes/{node_id}/acks": "other-node",
    "/api/v1/tools/route": "bootstrap",  # admins and nodes call tools; the bootstrap token may not
    "/api/v1/tools/{name}/call": "bootstrap",
}


def _register_node(live: LiveServer, node_id: str, labels: dict[str, str] | None = None) -> str:
    with live.client(BOOTSTRAP) as c:
        r = c.post("/api/v1/nodes/register", json={"node_id": node_id, "labels": labels or {}})
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


def _all_routes(routes: list[object]) -> list[tuple[str, set[str]]]:
    """(path, methods) of every route, also inside included routers (FastAPI >= 0.16x nests them)."""
    out: list[tuple[str, set[str]]] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append((r.path, set(r.methods)))
        elif hasattr(r, "original_router"):
            prefix = getattr(getattr(r, "include_context", None), "prefix", "") or ""
            out += [(prefix + p, m) for p, m in _all_routes(r.original_router.routes)]
        elif hasattr(r, "routes"):
            out += _all_routes(r.routes)
    return out


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: "1" if m.group(1) == "rollout_id" else "victim", path)


def test_every_state_changing_route_needs_the_right_token(live: LiveServer) -> None:
    node_token = _register_node(live, "n-auth")
    # The web console (/ui) signs in with a session cookie and checks CSRF, origin and role on every
    # form: tested in tests/cloud/ui. Everything else takes bearer tokens.
    routes = [
        (p, m & STATE_CHANGING)
        for p, m in _all_routes(live.app.routes)
        if m & STATE_CHANGING and not p.startswith("/ui/")
    ]
    # Cross-check with the OpenAPI description so no route can hide from the enumeration.
    documented = {
        (path, method.upper())
        for path, ops in live.app.openapi()["paths"].items()
        for method in ops
        if method.upper() in STATE_CHANGING
    }
    assert documented <= {(p, m) for p, ms in routes for m in ms}
    assert len(routes) >= 15
    seen = set()
    for path, methods in routes:
        for method in sorted(methods):
            url = _fill(path)
            seen.add(path)
            r = httpx.request(method, live.url + url, json={})
            assert r.status_code == 401, f"{method} {path} without a token: {r.status_code}"
            assert r.headers.get("www-authenticate") == "Bearer"
            r = httpx.request(method, live.url + url, json={}, headers={"Authorization": "Bearer nope"})
            assert r.status_code == 401, f"{method} {path} with an unknown token: {r.status_code}"
            refused = NON_ADMIN_ROUTES.get(path, "node")
            token = {"node": node_token, "other-node": node_token, "bootstrap": BOOTSTRAP}[refused]
            r = httpx.request(method, live.url + url, json={}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 403, f"{method} {path} with a {refused} token: {r.status_code} {r.text}"
    assert set(NON_ADMIN_ROUTES) <= seen


def test_reads_need_a_token_but_health_and_metrics_are_open(live: LiveServer) -> None:
    assert httpx.get(live.url + "/api/v1/models").status_code == 401
    with live.client(BOOTSTRAP) as c:
        assert c.get("/api/v1/models").status_code == 403
    assert httpx.get(live.url + CLOUD_LIVE_PATH).json() == {"status": "ok"}
    ready = httpx.get(live.url + CLOUD_READY_PATH)
    assert ready.status_code == 200 and ready.json()["checks"]["database"] is True
    httpx.get(live.url + "/api/v1/models", headers={"Authorization": f"Bearer {ADMIN}"})
    metrics = httpx.get(live.url + METRICS_PATH).text
    assert 'autoglm_cloud_http_requests_total{method="GET",route="/api/v1/models",status="200"}' in metrics
    assert "/openapi.json" in httpx.get(live.url + "/docs").text
    spec = httpx.get(live.url + "/openapi.json").json()
    assert "/api/v1/rollouts/{rollout_id}/promote" in spec["paths"]


def test_upload_register_and_edge_download(live: LiveServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", version="1.0.0")
    archive = pack_bundle(bundle, tmp_path / "b.tar.gz")
    with live.client() as admin:
        r = admin.post("/api/v1/bundles?tags=team=edge", content=archive.read_bytes())
        assert r.status_code == 201, r.text
        assert r.json()["version"] == "1.0.0" and r.json()["created_by"] == "admin:alice"
        assert admin.post("/api/v1/bundles", content=archive.read_bytes()).status_code == 409
        r = admin.put("/api/v1/models/tiny/aliases/stable", json={"version": "1.0.0", "reason": "first"})
        assert r.status_code == 200 and r.json()["actor"] == "admin:alice"

    token = _register_node(live, "n-dl")
    with live.client(token) as edge:
        man = edge.get("/api/v1/models/tiny/versions/stable/manifest")
        assert man.status_code == 200
        sha = hashlib.sha256(man.content).hexdigest()
        assert man.headers["etag"] == f'"{sha}"'
        assert man.content == (bundle / "manifest.yaml").read_bytes()
        assert (
            edge.get(
                "/api/v1/models/tiny/versions/1.0.0/manifest", headers={"If-None-Match": f'"{sha}"'}
            ).status_code
            == 304
        )

        url = "/api/v1/models/tiny/versions/1.0.0/files/encoder.onnx"
        full = (bundle / "encoder.onnx").read_bytes()
        first = edge.get(url, headers={"Range": "bytes=0-9999"})
        assert first.status_code == 206
        assert first.headers["content-range"] == f"bytes 0-9999/{len(full)}"
        rest = edge.get(url, headers={"Range": "bytes=10000-", "If-Range": first.headers["etag"]})
        assert rest.status_code == 206
        assert first.content + rest.content == full  # resumed download is byte-exact
        tail = edge.get(url, headers={"Range": "bytes=-100"})
        assert tail.content == full[-100:]
        assert edge.get(url, headers={"Range": f"bytes={len(full)}-"}).status_code == 416
        whole = edge.get(url)
        assert whole.headers["etag"] == f'"{hashlib.sha256(full).hexdigest()}"' and whole.content == full
        blob = edge.get(f"/api/v1/blobs/{hashlib.sha256(full).hexdigest()}")
        assert blob.content == full
        assert edge.get("/api/v1/models/tiny/versions/1.0.0/files/nope.bin").status_code == 404
        # A node may read but not manage.
        assert (
            edge.put(
                "/api/v1/models/tiny/aliases/stable", json={"version": "1.0.0", "reason": "x"}
            ).status_code
            == 403
        )
    assert httpx.get(live.url + "/api/v1/models/tiny/versions/1.0.0/manifest").status_code == 401


def test_tampered_upload_rejected_with_reason_and_no_trace(live: LiveServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", version="2.0.0")
    archive = pack_bundle(bundle, tmp_path / "b.tar")
    data = bytearray(archive.read_bytes())
    idx = data.find(b"adapter 2.0.0")
    data[idx] ^= 0xFF  # flip one byte inside the adapter file
    with live.client() as admin:
        r = admin.post("/api/v1/bundles", content=bytes(data))
        assert r.status_code == 422
        assert r.json()["code"] == "bad_bundle" and "sha256 mismatch" in r.json()["error"]
        assert admin.get("/api/v1/models").json() == []
        r = admin.post("/api/v1/bundles", content=b"not a tar archive at all")
        assert (
            r.status_code == 400 and "tar" in r.json()["error"]
        )  # unreadable archive: a bad request (issue 14 D4)
        assert admin.post("/api/v1/bundles", content=b"").status_code == 400
    store = live.svc.store
    assert store.list_digests() == [] and not [p for p in store.root.rglob("*") if p.is_file()]


def test_register_from_path_and_fleet_endpoints(live: LiveServer, tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", version="1.0.0")
    token = _register_node(live, "n1", {"site": "a", "gpu": "none"})
    _register_node(live, "n2", {"site": "b"})
    with live.client() as admin:
        r = admin.post(
            "/api/v1/bundles/from-path", json={"path": str(bundle), "lineage": {"dataset_sha256": "ab"}}
        )
        assert r.status_code == 201 and r.json()["lineage"]["dataset_sha256"] == "ab"
        assert (
            admin.post("/api/v1/bundles/from-path", json={"path": str(tmp_path / "missing")}).status_code
            == 400
        )
        nodes = admin.get("/api/v1/nodes", params={"selector": "site=a"}).json()
        assert [n["node_id"] for n in nodes] == ["n1"]
        r = admin.patch("/api/v1/nodes/n1/labels", json={"set": {"group": "line-1"}, "remove": ["gpu"]})
        assert r.json()["labels"] == {"site": "a", "group": "line-1"}
        assert admin.post("/api/v1/nodes/n2/drain", json={"drained": True}).json()["drained"] is True
        assert [n["node_id"] for n in admin.get("/api/v1/nodes", params={"drained": "false"}).json()] == [
            "n1"
        ]
        r = admin.post("/api/v1/nodes/n1/desired-version", json={"model": "tiny", "version": "1.0.0"})
        assert r.status_code == 202
        cid = r.json()["command_id"]
        assert admin.get("/api/v1/nodes/n1").json()["desired_version"] == "1.0.0"
    sent = live.svc.fleet.channel.sent  # type: ignore[union-attr]
    assert sent[-1][1] == "n1" and sent[-1][2]["type"] == "set_desired_version"
    assert sent[-1][2]["manifest_url"] == "/api/v1/models/tiny/versions/1.0.0/manifest"
    live.svc.registry.register_dir(make_bundle(tmp_path / "b2", version="1.1.0", encoder_seed=1), actor="t")
    with live.client() as admin:
        split = {"model": "tiny", "stable_version": "1.0.0", "canary_version": "1.1.0", "canary_weight": 0.2}
        assert admin.post("/api/v1/nodes/n1/traffic-split", json=split).status_code == 202
        assert (
            admin.post("/api/v1/nodes/n1/traffic-split", json={**split, "canary_weight": 1.5}).status_code
            == 400
        )
        assert (
            admin.post(
                "/api/v1/nodes/n1/traffic-split", json={**split, "canary_version": "9.9.9"}
            ).status_code
            == 404
        )
    cmd = sent[-1][2]
    assert cmd["type"] == "set_traffic_split" and cmd["weights"] == {"1.0.0": 0.8, "1.1.0": 0.2}
    assert set(cmd["manifests"]) == {"1.0.0", "1.1.0"}
    with live.client(token) as edge:
        assert (
            edge.post(
                "/api/v1/nodes/n1/heartbeat", json={"node_id": "n1", "ts_ms": 1, "model_version": "1.0.0"}
            ).status_code
            == 204
        )
        assert edge.post("/api/v1/nodes/n1/heartbeat", json={"node_id": "n2", "ts_ms": 1}).status_code == 400
        assert (
            edge.post(
                "/api/v1/nodes/n1/heartbeat", json={"node_id": "n1", "ts_ms": 1, "requests": -3}
            ).status_code
            == 400
        )
        assert (
            edge.post(
                "/api/v1/nodes/n1/acks", json={"command_id": cid, "ok": True, "version": "1.0.0"}
            ).status_code
            == 204
        )
        node = edge.get("/api/v1/nodes/n1").json()
        assert node["online"] is True and node["current_version"] == "1.0.0"
        statuses = {c["id"]: (c["kind"], c["status"]) for c in edge.get("/api/v1/nodes/n1/commands").json()}
        assert statuses[cid] == ("set_desired_version", "acked")
        assert sorted(statuses.values()) == [("set_desired_version", "acked"), ("set_traffic_split", "sent")]
