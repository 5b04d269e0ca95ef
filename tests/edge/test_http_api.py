"""The OIP v2 REST API on a real uvicorn server serving a really exported bundle."""

from __future__ import annotations

import asyncio
import struct

import httpx
import numpy as np
import orjson
import pytest

from tests.edge.conftest import MODEL, ROUTES, Bundles, Reference, Served, ServerFactory


def infer_body(texts: list[str], **extra: object) -> dict[str, object]:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}], **extra}


def outputs_by_name(doc: dict) -> dict[str, dict]:
    return {o["name"]: o for o in doc["outputs"]}


def test_health_and_server_metadata(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").json() == {"ready": True}
        meta = c.get("/v2").json()
        assert meta["name"] == "autoglm-edge"
        assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_ready(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c:
        meta = c.get(f"/v2/models/{MODEL}").json()
        assert meta["name"] == MODEL and meta["versions"] == ["1.0.0"]
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        outs = {o["name"]: o for o in meta["outputs"]}
        assert outs["embedding"]["datatype"] == "FP32" and outs["embedding"]["shape"] == [-1, 32]
        assert outs["route_index"]["datatype"] == "INT64"
        assert meta["parameters"]["routes"] == ROUTES
        assert c.get(f"/v2/models/{MODEL}/versions/1.0.0").status_code == 200
        assert c.get(f"/v2/models/{MODEL}/ready").json()["ready"] is True
        assert c.get(f"/v2/models/{MODEL}/versions/1.0.0/ready").status_code == 200


def test_infer_json_shapes_dtypes_and_values(served: Served, reference_v1: Reference) -> None:
    texts = ["What is 12 times 7?", "weather in Paris in May", "hello there", "how do I reset the pump"]
    with httpx.Client(base_url=served.url) as c:
        r = c.post(f"/v2/models/{MODEL}/infer", json=infer_body(texts, id="req-1"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["model_name"] == MODEL and doc["model_version"] == "1.0.0" and doc["id"] == "req-1"
    outs = outputs_by_name(doc)
    assert set(outs) == {"embedding", "route_logits", "route_index", "route_probabilities", "route_label"}
    emb = outs["embedding"]
    assert emb["datatype"] == "FP32" and emb["shape"] == [4, 32] and len(emb["data"]) == 4 * 32
    assert outs["route_logits"]["shape"] == [4, len(ROUTES)]
    assert outs["route_index"]["datatype"] == "INT64" and outs["route_index"]["shape"] == [4]
    assert outs["route_label"]["datatype"] == "BYTES" and outs["route_label"]["shape"] == [4]
    E = np.array(emb["data"], dtype=np.float32).reshape(4, 32)
    L = np.array(outs["route_logits"]["data"], dtype=np.float32).reshape(4, -1)
    P = np.array(outs["route_probabilities"]["data"], dtype=np.float32).reshape(4, -1)
    for i, t in enumerate(texts):
        e_ref, l_ref = reference_v1(t)
        np.testing.assert_allclose(E[i], e_ref, atol=1e-5)
        np.testing.assert_allclose(L[i], l_ref, atol=1e-5)
        k = int(np.argmax(l_ref))
        assert outs["route_index"]["data"][i] == k
        assert outs["route_label"]["data"][i] == ROUTES[k]
        z = l_ref / reference_v1.temperature
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        np.testing.assert_allclose(P[i], p, atol=1e-5)
    assert reference_v1.temperature == pytest.approx(1.3)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-4)


def test_infer_selected_outputs_and_nested_shape(served: Served) -> None:
    body = {
        "inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["a b"], ["c d"]]}],
        "outputs": [{"name": "route_index"}],
    }
    with httpx.Client(base_url=served.url) as c:
        doc = c.post(f"/v2/models/{MODEL}/versions/1.0.0/infer", json=body).json()
    assert [o["name"] for o in doc["outputs"]] == ["route_index"]
    assert doc["outputs"][0]["shape"] == [2]


def test_binary_request_and_response(served: Served, reference_v1: Reference) -> None:
    texts = ["convert 5 miles to km", "你好，今天天气怎么样"]
    raw = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [
                {"name": "embedding", "parameters": {"binary_data": True}},
                {"name": "route_label", "parameters": {"binary_data": True}},
                {"name": "route_index", "parameters": {"binary_data": False}},
            ],
        }
    )
    with httpx.Client(base_url=served.url) as c:
        r = c.post(
            f"/v2/models/{MODEL}/infer",
            content=header + raw,
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    doc = orjson.loads(r.content[:n])
    blob = r.content[n:]
    outs = outputs_by_name(doc)
    size_emb = outs["embedding"]["parameters"]["binary_data_size"]
    assert size_emb == 2 * 32 * 4 and "data" not in outs["embedding"]
    E = np.frombuffer(blob[:size_emb], dtype="<f4").reshape(2, 32)
    labels_raw = blob[size_emb:]
    assert len(labels_raw) == outs["route_label"]["parameters"]["binary_data_size"]
    labels, pos = [], 0
    while pos < len(labels_raw):
        (k,) = struct.unpack_from("<I", labels_raw, pos)
        labels.append(labels_raw[pos + 4 : pos + 4 + k].decode())
        pos += 4 + k
    for i, t in enumerate(texts):
        e_ref, l_ref = reference_v1(t)
        np.testing.assert_allclose(E[i], e_ref, atol=1e-5)
        assert labels[i] == ROUTES[int(np.argmax(l_ref))]
    assert outs["route_index"]["data"] == [int(np.argmax(reference_v1(t)[1])) for t in texts]


@pytest.mark.parametrize(
    ("body", "headers", "needle"),
    [
        (b"not json", {}, "not valid JSON"),
        (b"[1, 2]", {}, "JSON object"),
        (orjson.dumps({"inputs": []}), {}, "non-empty list"),
        (
            orjson.dumps(
                infer_body(["a"])
                | {"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
            ),
            {},
            "unknown input 'txt'",
        ),
        (
            orjson.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}),
            {},
            "datatype BYTES",
        ),
        (
            orjson.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}),
            {},
            "needs 2 elements",
        ),
        (
            orjson.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [3]}]}),
            {},
            "must be strings",
        ),
        (
            orjson.dumps(
                {"inputs": [{"name": "text", "shape": [2, 3], "datatype": "BYTES", "data": ["a"] * 6}]}
            ),
            {},
            "[n] or [n, 1]",
        ),
        (orjson.dumps(infer_body(["a"], outputs=[{"name": "nope"}])), {}, "unknown output 'nope'"),
        (orjson.dumps(infer_body(["a"], parameters={"priority": "high"})), {}, "priority must be an integer"),
        (orjson.dumps(infer_body(["a"])), {"Inference-Header-Content-Length": "9999"}, "does not fit"),
    ],
)
def test_malformed_requests_get_400_with_message(
    served: Served, body: bytes, headers: dict[str, str], needle: str
) -> None:
    with httpx.Client(base_url=served.url) as c:
        r = c.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert r.status_code == 400, r.text
    doc = r.json()
    assert needle in doc["error"], doc


@pytest.mark.parametrize(
    ("declared", "payload", "needle"),
    [
        (9, b"\x05\x00\x00\x00abc", "binary_data_size 9 but 7 bytes"),
        (7, b"\x05\x00\x00\x00abc", "says 5 bytes but only 3 remain"),
        (8, b"\x01\x00\x00\x00abcd", "bytes of binary data left"),
    ],
)
def test_malformed_binary_requests_get_400(
    served: Served, declared: int, payload: bytes, needle: str
) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    )
    with httpx.Client(base_url=served.url) as c:
        r = c.post(
            f"/v2/models/{MODEL}/infer",
            content=header + payload,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert r.status_code == 400 and needle in r.json()["error"], r.text


def test_unknown_model_or_version_is_404(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c:
        for path in ("/v2/models/nope", "/v2/models/nope/ready", f"/v2/models/{MODEL}/versions/9.9.9"):
            r = c.get(path)
            assert r.status_code == 404 and "error" in r.json(), path
        r = c.post("/v2/models/nope/infer", json=infer_body(["a"]))
        assert r.status_code == 404 and "nope" in r.json()["error"]
        r = c.post(f"/v2/models/{MODEL}/versions/0.0.1/infer", json=infer_body(["a"]))
        assert r.status_code == 404 and "0.0.1" in r.json()["error"]
        assert c.get("/no/such/route").status_code == 404


def test_concurrent_requests_are_not_mixed(served: Served, reference_v1: Reference) -> None:
    """64 concurrent requests of different texts and lengths: each gets exactly its own result."""
    texts = [f"request number {i} " + "word " * (i % 23) for i in range(64)]

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served.url, limits=httpx.Limits(max_connections=64)) as c:
            return await asyncio.gather(
                *(
                    c.post(f"/v2/models/{MODEL}/infer", json=infer_body([t], outputs=[{"name": "embedding"}]))
                    for t in texts
                )
            )

    responses = asyncio.run(run())
    for t, r in zip(texts, responses, strict=True):
        assert r.status_code == 200, r.text
        got = np.array(r.json()["outputs"][0]["data"], dtype=np.float32)
        np.testing.assert_allclose(got, reference_v1(t)[0], atol=1e-5)
    batches = served.service.batcher.batches_run
    assert batches < 64 + 2, "requests should have been batched"  # warm-up runs are not counted


def test_cache_hits_and_identical_results(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c:
        first = c.post(f"/v2/models/{MODEL}/infer", json=infer_body(["Cache  me please"])).json()
        second = c.post(f"/v2/models/{MODEL}/infer", json=infer_body(["cache me please "])).json()
        metrics = c.get("/metrics").text
    assert first["parameters"]["cached"] == 0 and second["parameters"]["cached"] == 1
    assert outputs_by_name(first)["embedding"]["data"] == outputs_by_name(second)["embedding"]["data"]
    assert 'autoglm_edge_cache_hits_total{model="autoglm-router",version="1.0.0"} 1.0' in metrics


def test_metrics_exposition(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c:
        c.post(f"/v2/models/{MODEL}/infer", json=infer_body(["metrics please", "and another"]))
        c.post(f"/v2/models/{MODEL}/infer", content=b"{}")
        text = c.get("/metrics").text
    assert 'autoglm_edge_requests_total{model="autoglm-router",outcome="success",version="1.0.0"}' in text
    assert "autoglm_edge_batch_size_texts_bucket" in text
    assert "autoglm_edge_queue_time_seconds_bucket" in text
    assert "autoglm_edge_compute_time_seconds_bucket" in text
    assert "autoglm_edge_cache_misses_total" in text
    assert (
        'autoglm_edge_model_loaded_info{adapter_set="default",model="autoglm-router",'
        'node="edge-local",version="1.0.0"} 1.0' in text
    )


def test_no_model_is_503_and_not_ready(start_server: ServerFactory) -> None:
    s = start_server()  # no bundle
    with httpx.Client(base_url=s.url) as c:
        assert c.get("/v2/health/live").status_code == 200
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and "no model" in r.json()["error"]
        r = c.post(f"/v2/models/{MODEL}/infer", json=infer_body(["a"]))
        assert r.status_code == 503


def test_serve_adapter_set_from_settings(start_server: ServerFactory, bundles: Bundles) -> None:
    s = start_server(bundle_dir=bundles.v1, serve_adapter_set="other")
    ref = Reference(bundles.v1, "other")
    with httpx.Client(base_url=s.url) as c:
        doc = c.post(f"/v2/models/{MODEL}/infer", json=infer_body(["which adapter?"])).json()
    assert doc["parameters"]["adapter_set"] == "other"
    np.testing.assert_allclose(outputs_by_name(doc)["embedding"]["data"], ref("which adapter?")[0], atol=1e-5)


def test_body_limits_apply_before_and_after_decompression(
    start_server: ServerFactory, bundles: Bundles
) -> None:
    import gzip

    s = start_server(bundle_dir=bundles.v1, http_max_body_bytes=4096)
    big = orjson.dumps(infer_body(["x" * 10_000]))
    with httpx.Client(base_url=s.url) as c:
        r = c.post(f"/v2/models/{MODEL}/infer", content=big)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        packed = gzip.compress(big)
        assert len(packed) < 4096
        r = c.post(f"/v2/models/{MODEL}/infer", content=packed, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decompressed" in r.json()["error"]
        r = c.post(f"/v2/models/{MODEL}/infer", content=b"junk", headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400 and "gzip" in r.json()["error"]
        r = c.post(f"/v2/models/{MODEL}/infer", content=b"{}", headers={"Content-Encoding": "br"})
        assert r.status_code == 400 and "Content-Encoding" in r.json()["error"]
