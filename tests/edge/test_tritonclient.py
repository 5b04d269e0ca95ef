"""Triton's own HTTP client, unchanged, against the edge server: health, metadata, infer (binary and JSON)."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.edge.conftest import MODEL, ROUTES, Reference, Served


@pytest.fixture()
def client(served: Served) -> httpclient.InferenceServerClient:
    c = httpclient.InferenceServerClient(url=served.url.removeprefix("http://"))
    yield c
    c.close()


def _text_input(texts: list[str], binary: bool) -> httpclient.InferInput:
    inp = httpclient.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array(texts, dtype=np.object_), binary_data=binary)
    return inp


def test_health_and_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1.0.0")
    assert not client.is_model_ready("unknown-model")
    server = client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == ["1.0.0"]
    assert [i["name"] for i in meta["inputs"]] == ["text"]


def test_infer_default_binary_everything(
    client: httpclient.InferenceServerClient, reference_v1: Reference
) -> None:
    """tritonclient's defaults: binary input, no outputs named → all outputs in binary."""
    texts = ["turn off the conveyor", "what's 3 plus 4", "法兰克福的天气"]
    result = client.infer(MODEL, [_text_input(texts, binary=True)])
    emb = result.as_numpy("embedding")
    logits = result.as_numpy("route_logits")
    idx = result.as_numpy("route_index")
    labels = result.as_numpy("route_label")
    assert emb.dtype == np.float32 and emb.shape == (3, 32)
    assert idx.dtype == np.int64 and idx.shape == (3,)
    assert result.get_response()["model_version"] == "1.0.0"
    for i, t in enumerate(texts):
        e_ref, l_ref = reference_v1(t)
        np.testing.assert_allclose(emb[i], e_ref, atol=1e-5)
        np.testing.assert_allclose(logits[i], l_ref, atol=1e-5)
        assert idx[i] == int(np.argmax(l_ref))
        assert labels[i].decode() == ROUTES[idx[i]]


def test_infer_json_input_and_mixed_outputs(
    client: httpclient.InferenceServerClient, reference_v1: Reference
) -> None:
    texts = ["json in, mixed out"]
    outputs = [
        httpclient.InferRequestedOutput("embedding", binary_data=False),
        httpclient.InferRequestedOutput("route_probabilities", binary_data=True),
        httpclient.InferRequestedOutput("route_label", binary_data=False),
    ]
    result = client.infer(
        MODEL, [_text_input(texts, binary=False)], outputs=outputs, model_version="1.0.0", request_id="abc"
    )
    assert result.get_response()["id"] == "abc"
    np.testing.assert_allclose(result.as_numpy("embedding")[0], reference_v1(texts[0])[0], atol=1e-5)
    probs = result.as_numpy("route_probabilities")
    assert probs.shape == (1, len(ROUTES)) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.as_numpy("route_label")[0] in [r.encode() for r in ROUTES] + ROUTES  # JSON strings stay str
    assert result.as_numpy("route_index") is None  # not requested


def test_errors_surface_as_inference_server_exception(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as err:
        client.infer("nope", [_text_input(["a"], binary=True)])
    assert err.value.status() == "404" and "nope" in err.value.message()
    bad = httpclient.InferInput("wrong_name", [1], "BYTES")
    bad.set_data_from_numpy(np.array(["a"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as err:
        client.infer(MODEL, [bad])
    assert err.value.status() == "400" and "wrong_name" in err.value.message()


def test_asyncio_client_binary_infer(served: Served, reference_v1: Reference) -> None:
    import asyncio

    import tritonclient.http.aio as aioclient

    async def run() -> np.ndarray:
        c = aioclient.InferenceServerClient(url=served.url.removeprefix("http://"))
        try:
            assert await c.is_server_ready()
            inp = aioclient.InferInput("text", [2], "BYTES")
            inp.set_data_from_numpy(np.array(["first", "second"], dtype=np.object_))
            result = await c.infer(MODEL, [inp], outputs=[aioclient.InferRequestedOutput("embedding")])
            return result.as_numpy("embedding")
        finally:
            await c.close()

    emb = asyncio.run(run())
    np.testing.assert_allclose(emb[1], reference_v1("second")[0], atol=1e-5)


def test_compressed_requests(client: httpclient.InferenceServerClient, reference_v1: Reference) -> None:
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            MODEL, [_text_input(["compressed request"], binary=True)], request_compression_algorithm=algorithm
        )
        np.testing.assert_allclose(
            result.as_numpy("embedding")[0], reference_v1("compressed request")[0], atol=1e-5
        )
