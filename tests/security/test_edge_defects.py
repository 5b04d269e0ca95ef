"""Edge HTTP defects of issue 14 (D6, D7, insecure defaults and the smaller ones) on real uvicorn
servers serving a really exported tiny bundle with ONNX Runtime (the edge tests' fixtures)."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from contracts.errors import BadRequest
from edge.agent.factory import build_agent
from edge.agent.http import make_router
from edge.agent.settings import AgentSettings
from edge.http.app import create_app
from edge.http.infer_endpoint import InferEndpoint
from edge.http.oip_codec import _flatten_strings
from edge.http.server import BackgroundServer
from edge.serving.service import InferenceService
from tests.edge.conftest import ADMIN_HEADERS, MODEL, Bundles, ServerFactory, settings_for, wait_ready

INFER = f"/v2/models/{MODEL}/infer"
LOAD = f"/v2/repository/models/{MODEL}/load"


def infer_body(data: object, shape: list[int], **params: object) -> dict[str, object]:
    doc: dict[str, object] = {"inputs": [{"name": "text", "shape": shape, "datatype": "BYTES", "data": data}]}
    if params:
        doc["parameters"] = params
    return doc


def _wait(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def _raw_request(url: str, path: str, declared: int, first: bytes) -> socket.socket:
    """A POST that declares ``declared`` bytes but sends only ``first`` (the rest never comes)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    ).encode()
    sock.sendall(head + first)
    return sock


def _status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_d7_deeply_nested_oip_data_is_a_400(start_server: ServerFactory, bundles: Bundles) -> None:
    s = start_server(bundle_dir=bundles.v1)
    deep = (
        b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": '
        + b"[" * 1020
        + b'"x"'
        + b"]" * 1020
        + b"}]}"
    )
    r = httpx.post(s.url + INFER, content=deep, timeout=30)
    assert r.status_code == 400 and "nested deeper" in r.json()["error"], r.text
    nested: object = ["x"]
    for _ in range(10):
        nested = [nested]
    with pytest.raises(BadRequest, match="nested deeper than 4"):
        _flatten_strings(nested, [])  # type: ignore[arg-type]
    # a little nesting as OIP clients send it still works
    r = httpx.post(s.url + INFER, json=infer_body([["a"], ["b"]], [2, 1]), timeout=30)
    assert r.status_code == 200, r.text
    # JSON nesting elsewhere in the request is limited too (before parsing)
    r = httpx.post(s.url + INFER, content=b'{"inputs": [], "parameters": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    assert r.status_code == 400 and "nested deeper" in r.json()["error"]


def test_json_depth_and_size_limits_on_the_fastapi_routes(
    start_server: ServerFactory, bundles: Bundles
) -> None:
    s = start_server(bundle_dir=bundles.v1, http_max_json_body_bytes=64 * 1024)
    deep = b'{"parameters": {"bundle": ' + b"[" * 10_000 + b"]" * 10_000 + b"}}"
    r = httpx.post(s.url + LOAD, content=deep, headers=ADMIN_HEADERS, timeout=30)
    assert r.status_code == 400 and "nested deeper than 32" in r.json()["error"]
    big = orjson.dumps({"parameters": {"bundle": "x" * 100_000}})
    r = httpx.post(s.url + LOAD, content=big, headers=ADMIN_HEADERS, timeout=30)
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"

    def chunks() -> object:  # no Content-Length: counted while reading
        for _ in range(20):
            yield b" " * 8192

    r = httpx.post(s.url + LOAD, content=chunks(), headers=ADMIN_HEADERS, timeout=30)  # type: ignore[arg-type]
    assert r.status_code == 413
    sock = _raw_request(s.url, LOAD, 10 * 1024 * 1024, b"{")  # declared too large: refused before reading
    try:
        assert _status_of(sock) == 413
    finally:
        sock.close()


def test_d6_admission_before_the_body_is_read(start_server: ServerFactory, bundles: Bundles) -> None:
    s = start_server(
        bundle_dir=bundles.v1,
        serve_queue_capacity=2,
        serve_max_batch_size=1,
        http_max_inflight_body_bytes=3 * 1024 * 1024,
    )
    # 1. the in-flight byte budget: one request holding 2 MB (its body still arriving) leaves no
    #    room for another 2 MB one, which is refused at once without its body being read
    holder = _raw_request(s.url, INFER, 2 * 1024 * 1024, b'{"inputs": [')
    try:
        assert _wait(lambda: _inflight(s) > 0)
        second = _raw_request(s.url, INFER, 2 * 1024 * 1024, b"{")
        try:
            assert _status_of(second) == 429
        finally:
            second.close()
        small = httpx.post(s.url + INFER, json=infer_body(["fits"], [1]), timeout=30)
        assert small.status_code == 200  # a small one still fits in the budget
    finally:
        holder.close()
    assert _wait(lambda: _inflight(s) == 0)
    # 2. a full queue: 429 before reading (the body is never sent)
    gate, entered = s.loader.gate("1.0.0"), s.loader.entered_event("1.0.0")
    gate.clear()
    entered.clear()
    threads = [
        threading.Thread(
            target=httpx.post,
            args=(s.url + INFER,),
            kwargs={"json": infer_body([f"t{i}"], [1]), "timeout": 30},
        )
        for i in range(3)
    ]
    try:
        for t in threads:
            t.start()
            if t is threads[0]:
                assert entered.wait(10)
        assert _wait(lambda: s.service.batcher.depth == 2)
        sock = _raw_request(s.url, INFER, 4 * 1024 * 1024, b"{")
        try:
            assert _status_of(sock) == 429
        finally:
            sock.close()
    finally:
        gate.set()
        for t in threads:
            t.join(30)


_ENDPOINTS: list[InferEndpoint] = []


def _inflight(_served: object) -> int:
    """Bytes the last started server's infer endpoint holds in flight."""
    return _ENDPOINTS[-1].inflight_bytes


@pytest.fixture(autouse=True)
def _remember_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a handle on the infer endpoints created in a test (to watch their byte budget)."""
    import edge.http.app as edge_app

    real = edge_app.InferEndpoint

    def record(*args: object, **kwargs: object) -> InferEndpoint:
        ep = real(*args, **kwargs)  # type: ignore[arg-type]
        _ENDPOINTS.append(ep)
        return ep

    monkeypatch.setattr(edge_app, "InferEndpoint", record)


def test_uvicorn_limit_concurrency_comes_from_the_settings(tmp_path: Path, bundles: Bundles) -> None:
    settings = settings_for(tmp_path, http_limit_concurrency=7)
    server = BackgroundServer(create_app(InferenceService.from_settings(settings), settings))
    assert server.server.config.limit_concurrency == 7


def test_admin_routes_need_a_token_by_default(start_server: ServerFactory, bundles: Bundles) -> None:
    s = start_server(bundle_dir=bundles.v1, http_admin_token="")
    for path in (LOAD, f"/v2/repository/models/{MODEL}/unload", "/v2/repository/index"):
        r = httpx.post(s.url + path, json={"parameters": {"bundle": str(bundles.v2)}}, timeout=30)
        assert r.status_code == 403 and "AUTOGLM_EDGE_HTTP_ADMIN_TOKEN" in r.json()["error"], (path, r.text)
    dev = start_server(bundle_dir=bundles.v1, http_admin_token="", http_insecure_dev=True)
    r = httpx.post(dev.url + "/v2/repository/index", timeout=30)
    assert r.status_code == 200
    secured = start_server(bundle_dir=bundles.v1)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        assert httpx.post(secured.url + "/v2/repository/index", headers=headers).status_code == 401
    assert httpx.post(secured.url + "/v2/repository/index", headers=ADMIN_HEADERS).status_code == 200


def test_unload_unknown_model_is_404_and_small_oip_fixes(
    start_server: ServerFactory, bundles: Bundles
) -> None:
    s = start_server(bundle_dir=bundles.v1)
    with httpx.Client(base_url=s.url, timeout=30, headers=ADMIN_HEADERS) as c:
        assert c.post("/v2/repository/models/nope/unload").status_code == 404
        assert c.post(f"/v2/repository/models/{MODEL}/unload").status_code == 409
        r = c.post(INFER, json=infer_body(["x"], [1], timeout=-5))
        assert r.status_code == 400 and "timeout" in r.json()["error"]
        assert c.post(INFER, json=infer_body(["x"], [1], timeout=0)).status_code == 200
        for bad in (b"not gzip at all", gzip.compress(b'{"inputs": []}')[:12]):
            r = c.post(INFER, content=bad, headers={"Content-Encoding": "gzip"})
            assert r.status_code == 400 and r.json()["error"].startswith("invalid gzip body"), r.text
        good = gzip.compress(orjson.dumps(infer_body(["zipped"], [1])))
        assert c.post(INFER, content=good, headers={"Content-Encoding": "gzip"}).status_code == 200


def test_knowledge_needs_the_admin_token_and_carries_provenance(tmp_path: Path, bundles: Bundles) -> None:
    published: list[object] = []

    def serve(**overrides: object) -> tuple[BackgroundServer, object]:
        settings = settings_for(tmp_path / str(len(published)), bundle_dir=bundles.v1, **overrides)
        service = InferenceService.from_settings(settings)
        app = create_app(service, settings)
        agent = build_agent(
            AgentSettings(agent_memory_db=tmp_path / f"m{len(published)}.sqlite3"),
            service=service,
            node_id="node-k",
        )
        agent.memory.publish = published.extend  # what would be synced to the fleet
        app.include_router(make_router(agent))
        server = BackgroundServer(app).start()
        wait_ready(server.url)
        return server, agent

    fact = {"key": "lockout", "text": "Operators may skip lockout-tagout on line 3."}
    server, agent = serve()
    try:
        assert httpx.post(server.url + "/v1/knowledge", json=fact, timeout=30).status_code == 401
        r = httpx.post(server.url + "/v1/knowledge", json=fact, headers=ADMIN_HEADERS, timeout=30)
        assert r.status_code == 200 and r.json()["shared"] is True
        rec = agent.memory.store.get("kb:lockout")  # type: ignore[attr-defined]
        assert rec is not None and rec.source == "http:admin@node-k" and rec.shared
        assert len(published) == 1
    finally:
        server.stop()
    server, agent = serve(http_admin_token="", http_insecure_dev=True)
    try:
        r = httpx.post(server.url + "/v1/knowledge", json={**fact, "key": "anon"}, timeout=30)
        assert r.status_code == 200 and r.json()["shared"] is False
        rec = agent.memory.store.get("kb:anon")  # type: ignore[attr-defined]
        assert rec is not None and rec.source == "http:anonymous@node-k" and not rec.shared
        assert len(published) == 1  # the unauthenticated write never leaves the node
        # strict booleans: confirm / correct accept only JSON true/false
        for value in ("true", 1, "yes"):
            r = httpx.post(
                server.url + "/v1/ask", json={"text": "stop pump PR-111", "confirm": value}, timeout=30
            )
            assert r.status_code == 400, (value, r.text)
    finally:
        server.stop()


def test_device_status_is_fresh_right_after_a_confirmed_change(tmp_path: Path) -> None:
    from tests.edge.agent.helpers import ask, kinds, make_agent

    agent = make_agent(tmp_path)
    first = ask(agent, "status of OV-122")
    assert first.route == "device_status", first
    assert ask(agent, "set OV-122 to 190 °C", confirm=True).data.get("refused") is None
    second = ask(agent, "status of OV-122")
    assert "cache" not in kinds(second) or not [s for s in second.steps if s["kind"] == "cache" and s["hit"]]
    assert second.data["setpoints"]["temperature"] == 190.0, second.data
