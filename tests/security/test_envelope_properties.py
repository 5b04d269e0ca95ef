"""Property tests of the sync envelope decoder (issue 14, D9): whatever bytes arrive, ``decode``
either returns an envelope or raises :class:`EnvelopeRejected` with a short message (a counted
rejection), never anything else (RecursionError, MemoryError, UnicodeError, KeyError ...).
Fixed seed (derandomize) and bounded examples, so CI runs are reproducible."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from contracts.envelope import (
    DEFAULT_MAX_JSON_DEPTH,
    ContentType,
    Encoding,
    Envelope,
    EnvelopeRejected,
    RejectReason,
    decode,
    encode,
)
from tests.security.mqtt_support import header, lz4_body, raw_frame

PROPERTY = settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_REASON = 300

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=24,
)
header_keys = st.sampled_from(["id", "node", "seq", "hlc", "ct", "enc", "n", "meta"]) | st.text(max_size=4)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _only_rejects(data: bytes, **kw: Any) -> Envelope | None:
    """The envelope with parsed records, or None when rejected (also checks the unparsed mode)."""
    result = None
    for parse_records in (False, True):
        try:
            result = decode(data, parse_records=parse_records, **kw)
        except EnvelopeRejected as err:
            assert isinstance(err.reason, RejectReason)
            assert len(str(err)) <= MAX_REASON
            result = None
    return result


@PROPERTY
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _only_rejects(data)


@PROPERTY
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_behind_a_valid_prefix(data: bytes) -> None:
    _only_rejects(b"AGLM\x01" + len(data).to_bytes(4, "big") + data)


@PROPERTY
@given(st.dictionaries(header_keys, json_values, max_size=9), st.binary(max_size=512), st.booleans())
def test_arbitrary_headers_and_bodies(head: dict[str, Any], body: bytes, compress: bool) -> None:
    _only_rejects(raw_frame(head, lz4_body(body) if compress else body))


@PROPERTY
@given(st.lists(json_values, max_size=8), st.sampled_from(list(ContentType)), st.booleans())
def test_arbitrary_json_bodies_under_a_valid_header(
    records: list[Any], ct: ContentType, compress: bool
) -> None:
    body = json.dumps(records).encode()
    frame = raw_frame(
        header("node-a", 1, ct.value, n=len(records), enc="lz4" if compress else "none"),
        lz4_body(body) if compress else body,
    )
    env = _only_rejects(frame)
    if env is not None:
        assert env.records == records and all(isinstance(r, dict) for r in records)


@PROPERTY
@given(
    st.integers(1, 5000), st.sampled_from([b"[", b'{"a":']), st.sampled_from(["meta", "body"]), st.booleans()
)
def test_any_nesting_depth_is_parsed_or_rejected(
    depth: int, opener: bytes, where: str, compress: bool
) -> None:
    closer = b"]" if opener == b"[" else b"}"
    nested = opener * depth + b"0" + closer * depth
    if where == "meta":
        head = (
            json.dumps(
                {**header("node-a", 1, n=0, enc="lz4" if compress else "none"), "meta": 0},
                separators=(",", ":"),
            )
            .encode()
            .replace(b'"meta":0', b'"meta":{"x":' + nested + b"}")
        )
        frame = raw_frame(head, lz4_body(b"[]") if compress else b"[]")
        levels = depth + 2  # the header object and meta are two levels
    else:
        body = b'[{"x":' + nested + b"}]"
        frame = raw_frame(
            header("node-a", 1, enc="lz4" if compress else "none"), lz4_body(body) if compress else body
        )
        levels = depth + 2
    if len(frame) > 256 * 1024:
        return
    env = _only_rejects(frame)
    assert (env is not None) == (levels <= DEFAULT_MAX_JSON_DEPTH), (depth, where)


@PROPERTY
@given(st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=4), max_size=20))
def test_frames_we_build_decode_to_the_same_records(records: list[dict[str, Any]]) -> None:
    assume(_depth(records) <= DEFAULT_MAX_JSON_DEPTH)
    env = Envelope(
        message_id="m1",
        node_id="node-a",
        seq=3,
        hlc="0000000000001-000000-node-a",
        content_type=ContentType.EVENT,
        records=records,
        encoding=Encoding.LZ4,
    )
    assert decode(encode(env)).records == records


@pytest.mark.parametrize("depth", [DEFAULT_MAX_JSON_DEPTH + 1, 1_000, 100_000])
def test_deep_nesting_is_a_malformed_rejection(depth: int) -> None:
    body = b"[" * depth + b"]" * depth
    with pytest.raises(EnvelopeRejected) as info:
        decode(raw_frame(header("node-a", 1, "event"), lz4_body(body)))
    assert info.value.reason in (RejectReason.MALFORMED, RejectReason.OVERSIZED)
