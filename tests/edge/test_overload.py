"""Bounded queue → 429 with Retry-After at once; deadlines → 504; a client that disconnects
before its batch starts costs no forward pass. The engine is held with a gate (real bundle)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import orjson

from tests.edge.conftest import MODEL, Bundles, ServerFactory
from tests.support.wait import wait_for

INFER = f"/v2/models/{MODEL}/infer"


def body(texts: list[str], **params: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]
    }
    if params:
        doc["parameters"] = params
    return doc


def test_full_queue_answers_429_with_retry_after(start_server: ServerFactory, bundles: Bundles) -> None:
    s = start_server(bundle_dir=bundles.v1, serve_queue_capacity=4, serve_max_batch_size=2)
    gate, entered = s.loader.gate("1.0.0"), s.loader.entered_event("1.0.0")
    gate.clear()
    entered.clear()
    responses: list[httpx.Response] = []

    def post(texts: list[str]) -> None:
        responses.append(httpx.post(s.url + INFER, json=body(texts), timeout=30))

    threads = [threading.Thread(target=post, args=(["first"],))]
    threads[0].start()
    assert entered.wait(10)
    threads.append(threading.Thread(target=post, args=([f"queued {i}" for i in range(4)],)))
    threads[1].start()
    assert wait_for(lambda: s.service.batcher.depth == 4)
    try:
        started = time.monotonic()
        r = httpx.post(s.url + INFER, json=body(["one too many"]), timeout=30)
        assert time.monotonic() - started < 5, "429 must come at once, not after the queue drains"
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert "queue full" in r.json()["error"]
        assert s.service.batcher.depth == 4, "a rejected request must not be queued"
    finally:
        gate.set()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in responses] == [200, 200]
    text = httpx.get(s.url + "/metrics").text
    assert (
        'autoglm_edge_requests_total{model="autoglm-router",outcome="overloaded",version="1.0.0"} 1.0' in text
    )


def test_disconnected_client_costs_no_forward_pass(start_server: ServerFactory, bundles: Bundles) -> None:
    s = start_server(bundle_dir=bundles.v1, cache_max_bytes=0)
    gate, entered = s.loader.gate("1.0.0"), s.loader.entered_event("1.0.0")
    gate.clear()
    entered.clear()
    first: list[httpx.Response] = []
    t = threading.Thread(
        target=lambda: first.append(httpx.post(s.url + INFER, json=body(["held"]), timeout=30))
    )
    t.start()
    assert entered.wait(10)
    rows_before = s.loader.rows
    # A raw client that sends a request and hangs up while it is still queued.
    payload = orjson.dumps(body(["i will hang up", "me too"]))
    host, port = s.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        (
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
    )
    assert wait_for(lambda: s.service.batcher.depth == 2)
    sock.close()
    queued = [it for q in s.service.batcher._queues for it in q]
    assert wait_for(lambda: all(it.future.cancelled() for it in queued)), "disconnect was not noticed"
    gate.set()
    t.join(30)
    assert first[0].status_code == 200
    assert wait_for(lambda: s.service.batcher.depth == 0)
    ok = httpx.post(s.url + INFER, json=body(["after"]), timeout=30)
    assert ok.status_code == 200
    # Only "held" and "after" went through the engine: the hung-up pair did not.
    assert s.loader.rows == rows_before + 2
    text = httpx.get(s.url + "/metrics").text
    assert 'autoglm_edge_dropped_texts_total{reason="cancelled"} 2.0' in text


def test_deadline_passed_in_queue_is_504_without_forward_pass(
    start_server: ServerFactory, bundles: Bundles
) -> None:
    s = start_server(bundle_dir=bundles.v1, cache_max_bytes=0)
    gate, entered = s.loader.gate("1.0.0"), s.loader.entered_event("1.0.0")
    gate.clear()
    entered.clear()
    out: dict[str, httpx.Response] = {}
    ta = threading.Thread(
        target=lambda: out.setdefault("a", httpx.post(s.url + INFER, json=body(["held"]), timeout=30))
    )
    ta.start()
    assert entered.wait(10)
    rows_before = s.loader.rows
    tb = threading.Thread(
        target=lambda: out.setdefault(
            "b", httpx.post(s.url + INFER, json=body(["late"], deadline_ms=50), timeout=30)
        )
    )
    tb.start()
    assert wait_for(lambda: s.service.batcher.depth == 1)
    time.sleep(0.2)
    gate.set()
    ta.join(30)
    tb.join(30)
    assert out["a"].status_code == 200
    assert out["b"].status_code == 504 and "deadline" in out["b"].json()["error"]
    assert s.loader.rows == rows_before + 1  # only "held"
