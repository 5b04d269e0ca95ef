"""Hot swap over the repository API: under load with zero errors, in-flight work stays on its
version, failed loads leave the current model serving, the cache is invalidated."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import httpx
import numpy as np

from tests.edge.conftest import ADMIN_HEADERS, MODEL, Bundles, Reference, Served
from tests.support.wait import wait_for

LOAD = f"/v2/models/{MODEL}/infer"


def body(texts: list[str]) -> dict[str, object]:
    return {
        "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}],
        "outputs": [{"name": "embedding"}],
    }


def embedding_of(doc: dict) -> np.ndarray:
    return np.array(doc["outputs"][0]["data"], dtype=np.float32)


def test_swap_under_load_drops_nothing(
    served: Served, bundles: Bundles, reference_v1: Reference, reference_v2: Reference
) -> None:
    refs = {"1.0.0": reference_v1, "2.0.0": reference_v2}
    stop = asyncio.Event()
    seen: list[tuple[str, str, int, dict | str]] = []
    swap_done_at: list[float] = []

    async def client(cid: int, c: httpx.AsyncClient) -> None:
        i = 0
        while not stop.is_set():
            text = f"client {cid} message {i} " + "x " * (i % 7)
            sent = time.monotonic()
            r = await c.post(LOAD, json=body([text]))
            seen.append((text, str(sent), r.status_code, r.json() if r.status_code == 200 else r.text))
            i += 1

    async def run() -> None:
        async with httpx.AsyncClient(
            base_url=served.url, timeout=30, limits=httpx.Limits(max_connections=16), headers=ADMIN_HEADERS
        ) as c:
            clients = [asyncio.create_task(client(k, c)) for k in range(12)]
            while len(seen) < 24:  # traffic flows before the swap
                await asyncio.sleep(0.01)
            r = await c.post(
                f"/v2/repository/models/{MODEL}/load", json={"parameters": {"bundle": str(bundles.v2)}}
            )
            assert r.status_code == 200, r.text
            assert r.json()["version"] == "2.0.0"
            swap_done_at.append(time.monotonic())
            while sum(1 for _, sent, _, _ in seen if float(sent) > swap_done_at[0]) < 24:  # and after it
                await asyncio.sleep(0.01)
            stop.set()
            await asyncio.gather(*clients)

    asyncio.run(run())
    statuses = Counter(s for _, _, s, _ in seen)
    assert statuses == {200: len(seen)}, statuses
    versions = Counter()
    for text, sent, _, doc in seen:
        assert isinstance(doc, dict)
        v = doc["model_version"]
        versions[v] += 1
        np.testing.assert_allclose(embedding_of(doc), refs[v](text)[0], atol=1e-5)
        if float(sent) > swap_done_at[0]:
            assert v == "2.0.0", "a request sent after the swap returned was served by the old version"
    assert versions["1.0.0"] > 0 and versions["2.0.0"] > 0, versions


def test_in_flight_and_queued_requests_finish_on_their_version(
    served: Served, bundles: Bundles, reference_v1: Reference, reference_v2: Reference
) -> None:
    gate = served.loader.gate("1.0.0")
    entered = served.loader.entered_event("1.0.0")
    gate.clear()
    entered.clear()
    results: dict[str, httpx.Response] = {}

    def post(name: str, text: str) -> None:
        results[name] = httpx.post(served.url + LOAD, json=body([text]), timeout=30)

    a = threading.Thread(target=post, args=("a", "in flight when swapped"))
    a.start()
    assert entered.wait(10), "first request never reached the engine"
    b = threading.Thread(target=post, args=("b", "queued when swapped"))
    b.start()
    wait_for(lambda: served.service.batcher.depth >= 1, timeout=10.0, what="b queued")
    assert served.service.batcher.depth == 1
    try:
        r = httpx.post(
            f"{served.url}/v2/repository/models/{MODEL}/load",
            json={"parameters": {"bundle": str(bundles.v2)}},
            timeout=60,
            headers=ADMIN_HEADERS,
        )
        assert r.status_code == 200, r.text
        status = httpx.get(served.url + "/v2/edge/status").json()
        assert status["active"]["version"] == "2.0.0"
        assert status["draining"] and status["draining"][0]["version"] == "1.0.0"
        assert status["draining"][0]["inflight"] == 2
        # A request admitted after the swap is bound to 2.0.0 (it runs once the engine is free).
        c = threading.Thread(target=post, args=("c", "after the swap"))
        c.start()
        wait_for(lambda: served.service.batcher.depth == 2, timeout=10.0, what="c admitted behind b")
    finally:
        gate.set()
    for t in (a, b, c):
        t.join(30)
    for name, text in (("a", "in flight when swapped"), ("b", "queued when swapped")):
        doc = results[name].json()
        assert results[name].status_code == 200 and doc["model_version"] == "1.0.0"
        np.testing.assert_allclose(embedding_of(doc), reference_v1(text)[0], atol=1e-5)
    doc = results["c"].json()
    assert doc["model_version"] == "2.0.0"
    np.testing.assert_allclose(embedding_of(doc), reference_v2("after the swap")[0], atol=1e-5)
    wait_for(
        lambda: httpx.get(served.url + "/v2/edge/status").json()["draining"] == [],
        timeout=10.0,
        what="the old version released",
    )


def test_failed_load_keeps_current_model_and_reports_why(served: Served, tampered_bundle: object) -> None:
    with httpx.Client(base_url=served.url, timeout=60, headers=ADMIN_HEADERS) as c:
        r = c.post(
            f"/v2/repository/models/{MODEL}/load", json={"parameters": {"bundle": str(tampered_bundle)}}
        )
        assert r.status_code == 422
        assert "sha256 mismatch" in r.json()["error"]
        ok = c.post(LOAD, json=body(["still serving"]))
        assert ok.status_code == 200 and ok.json()["model_version"] == "1.0.0"
        status = c.get("/v2/edge/status").json()
        assert status["last_load"]["state"] == "failed" and "sha256" in status["last_load"]["error"]
        index = c.post("/v2/repository/index").json()
        assert index[0] == {"name": MODEL, "version": "1.0.0", "state": "READY", "reason": ""}
        assert any(row["state"] == "UNAVAILABLE" and "sha256" in row["reason"] for row in index)
        r = c.post(f"/v2/repository/models/{MODEL}/load", json={"parameters": {"bundle": "/no/such/bundle"}})
        assert r.status_code == 422 and "no such bundle directory" in r.json()["error"]
        r = c.post(
            f"/v2/repository/models/{MODEL}/load",
            json={"parameters": {"bundle": str(tampered_bundle).replace("tampered", "x"), "adapter_set": 3}},
        )
        assert r.status_code == 400
        r = c.post(
            "/v2/repository/models/other-name/load",
            json={"parameters": {"bundle": str(served.settings.bundle_dir)}},
        )
        assert r.status_code == 422 and "not 'other-name'" in r.json()["error"]
        assert c.post(LOAD, json=body(["still serving"])).json()["model_version"] == "1.0.0"
        metrics = c.get("/metrics").text
    assert 'autoglm_edge_model_swaps_total{result="failed"} 3.0' in metrics
    assert 'autoglm_edge_model_swaps_total{result="success"} 1.0' in metrics


def test_cache_is_invalidated_on_swap_and_adapter_set_change(
    served: Served, bundles: Bundles, reference_v2: Reference
) -> None:
    text = ["cache across swaps"]
    with httpx.Client(base_url=served.url, timeout=60, headers=ADMIN_HEADERS) as c:
        assert c.post(LOAD, json=body(text)).json()["parameters"]["cached"] == 0
        v1 = c.post(LOAD, json=body(text)).json()
        assert v1["parameters"]["cached"] == 1
        r = c.post(
            f"/v2/repository/models/{MODEL}/load",
            json={"parameters": {"bundle": str(bundles.v1), "adapter_set": "other"}},
        )
        assert r.status_code == 200 and r.json()["adapter_set"] == "other"
        other = c.post(LOAD, json=body(text)).json()
        assert other["parameters"] == {"cached": 0, "adapter_set": "other"}
        assert not np.allclose(embedding_of(other), embedding_of(v1), atol=1e-4)
        assert (
            c.post(
                f"/v2/repository/models/{MODEL}/load", json={"parameters": {"bundle": str(bundles.v2)}}
            ).status_code
            == 200
        )
        v2 = c.post(LOAD, json=body(text)).json()
        assert v2["model_version"] == "2.0.0" and v2["parameters"]["cached"] == 0
        np.testing.assert_allclose(embedding_of(v2), reference_v2(text[0])[0], atol=1e-5)
        assert c.post(LOAD, json=body(text)).json()["parameters"]["cached"] == 1
        metrics = c.get("/metrics").text
    assert (
        'autoglm_edge_model_loaded_info{adapter_set="default",model="autoglm-router",'
        'node="edge-local",version="2.0.0"} 1.0' in metrics
    )
    assert (
        'autoglm_edge_model_loaded_info{adapter_set="default",model="autoglm-router",'
        'node="edge-local",version="1.0.0"} 0.0' in metrics
    )


def test_repository_api_needs_token_when_configured(start_server: object, bundles: Bundles) -> None:
    s = start_server(bundle_dir=bundles.v1, http_admin_token="s3cret")  # type: ignore[operator]
    with httpx.Client(base_url=s.url, timeout=60) as c:
        r = c.post(f"/v2/repository/models/{MODEL}/load", json={"parameters": {"bundle": str(bundles.v2)}})
        assert r.status_code == 401 and "Bearer" in r.json()["error"]
        r = c.post(
            f"/v2/repository/models/{MODEL}/load",
            json={"parameters": {"bundle": str(bundles.v2)}},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert r.status_code == 200 and r.json()["version"] == "2.0.0"


def test_adapter_only_update_binds_onto_the_served_bundle(served: Served, bundles: Bundles) -> None:
    ref = Reference(bundles.update, parent=bundles.v1)
    with httpx.Client(base_url=served.url, timeout=60, headers=ADMIN_HEADERS) as c:
        r = c.post(
            f"/v2/repository/models/{MODEL}/load", json={"parameters": {"bundle": str(bundles.update)}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["version"] == "1.1.0"
        doc = c.post(LOAD, json=body(["adapter update"])).json()
    assert doc["model_version"] == "1.1.0"
    np.testing.assert_allclose(embedding_of(doc), ref("adapter update")[0], atol=1e-5)


def test_adapter_only_update_needs_its_parent_served(start_server: object, bundles: Bundles) -> None:
    s = start_server(bundle_dir=bundles.v2)  # type: ignore[operator]
    with httpx.Client(base_url=s.url, timeout=60, headers=ADMIN_HEADERS) as c:
        r = c.post(
            f"/v2/repository/models/{MODEL}/load", json={"parameters": {"bundle": str(bundles.update)}}
        )
        assert r.status_code == 422 and "parent" in r.json()["error"], r.text
        assert c.post(LOAD, json=body(["x"])).json()["model_version"] == "2.0.0"
