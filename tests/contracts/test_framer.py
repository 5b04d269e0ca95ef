"""contracts.envelope.Framer: the one frame builder the edge sync and the cloud hub share."""

from __future__ import annotations

import pytest

from contracts.envelope import ContentType, Encoding, EnvelopeTooLarge, Framer, decode
from contracts.hlc import HLC, HybridClock


def test_framer_stamps_sender_clock_and_encoding() -> None:
    clock = HybridClock("node-a")
    framer = Framer("node-a", clock, compress=True, max_bytes=64 * 1024)
    first = decode(
        framer.records(ContentType.STATUS, [{"node_id": "node-a", "status": "online"}], meta={"x": 1})
    )
    second = decode(framer.records(ContentType.ACK, [{"kind": "message", "id": "m1"}], message_id="fixed-id"))
    assert first.node_id == "node-a" and first.seq == 0 and first.encoding is Encoding.LZ4
    assert first.records == [{"node_id": "node-a", "status": "online"}] and first.meta == {"x": 1}
    assert second.message_id == "fixed-id" and HLC.parse(second.hlc) > HLC.parse(first.hlc)
    ordered = decode(
        framer.bodies(
            ContentType.MEMORY, [b'{"a":1}', b'{"a":2}'], None, 2, seq=7, meta={"low": 3}, message_id="m7"
        )
    )
    assert (ordered.seq, ordered.message_id, ordered.meta, ordered.records) == (
        7,
        "m7",
        {"low": 3},
        [{"a": 1}, {"a": 2}],
    )
    plain = Framer("cloud", HybridClock("cloud"), compress=False)
    assert decode(plain.records(ContentType.COMMAND, [])).encoding is Encoding.NONE


def test_framer_refuses_a_frame_over_its_limit() -> None:
    framer = Framer("node-a", HybridClock("node-a"), compress=False, max_bytes=256)
    with pytest.raises(EnvelopeTooLarge):
        framer.records(ContentType.EVENT, [{"blob": "x" * 1000}])
