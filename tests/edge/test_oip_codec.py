"""Codec details not covered through HTTP: BYTES binary framing (property-based) and edge cases."""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import BadRequest
from edge.http.oip_codec import decode_bytes_tensor, encode_bytes_tensor, parse_infer_request


@given(st.lists(st.text(max_size=40), min_size=1, max_size=20))
def test_bytes_tensor_round_trip(texts: list[str]) -> None:
    raw = encode_bytes_tensor(texts)
    assert decode_bytes_tensor(memoryview(raw), len(texts)) == texts


def test_truncated_and_trailing_binary_is_rejected() -> None:
    raw = encode_bytes_tensor(["hello", "world"])
    with pytest.raises(BadRequest, match="remain"):
        decode_bytes_tensor(memoryview(raw[:-1]), 2)
    with pytest.raises(BadRequest, match="left after"):
        decode_bytes_tensor(memoryview(raw + b"x"), 2)
    with pytest.raises(BadRequest, match="UTF-8"):
        decode_bytes_tensor(memoryview(struct.pack("<I", 2) + b"\xff\xfe"), 1)


def test_binary_output_defaults_and_overrides() -> None:
    doc = {
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
        "parameters": {"binary_data_output": True, "priority": 1, "timeout": 250000},
        "outputs": [{"name": "embedding"}, {"name": "route_index", "parameters": {"binary_data": False}}],
    }
    req = parse_infer_request(orjson.dumps(doc), None)
    assert req.outputs == {"embedding": True, "route_index": False}
    assert req.priority == 1 and req.deadline_s == pytest.approx(0.25)


def test_binary_input_needs_the_header() -> None:
    raw = encode_bytes_tensor(["a"])
    doc = {
        "inputs": [
            {"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
        ]
    }
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length"):
        parse_infer_request(orjson.dumps(doc), None)
    header = orjson.dumps(doc)
    assert parse_infer_request(header + raw, str(len(header))).texts == ["a"]
