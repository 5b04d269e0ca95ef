"""Bounds on what one message may cost (issue 14, D9), without a broker: the reorder buffer's
slot and byte budgets, the short validation summary, the JSON value count, and that the largest
bodies a real edge produces still pass the cloud's default limits (no false rejects)."""

from __future__ import annotations

import json

import pytest

from cloud.sync.reorder import ENTRY_OVERHEAD, ReorderBuffer
from cloud.sync.settings import CloudSyncSettings
from cloud.sync.validation import MAX_ERRORS, validate_body
from contracts.envelope import (
    MAX_REASON_CHARS,
    ContentType,
    Encoding,
    Envelope,
    EnvelopeRejected,
    RejectReason,
    check_json_values,
    decode,
    join_record_bodies,
    pack,
)
from contracts.hlc import HybridClock
from contracts.memory import MAX_EMBEDDING_DIM, MAX_TEXT_CHARS, KnowledgeRecord
from edge.sync.settings import SyncSettings


def _env(seq: int, body_bytes: int) -> Envelope:
    return Envelope(
        message_id=f"m{seq}",
        node_id="node-a",
        seq=seq,
        hlc="0000000000001-000000-node-a",
        content_type=ContentType.MEMORY,
        records=[],
        body=b"x" * body_bytes,
        n_records=1,
    )


def test_reorder_buffer_keeps_its_byte_budget_and_evicts_the_farthest_for_a_nearer_message() -> None:
    entry = 1000 + ENTRY_OVERHEAD
    buf = ReorderBuffer(max_messages=100, max_bytes=3 * entry)
    assert [buf.hold(_env(s, 1000)) for s in (10, 20, 30)] == [(True, 0)] * 3
    assert buf.bytes == 3 * entry
    assert buf.hold(_env(40, 1000)) == (False, 0)  # farther than everything held: refused
    assert buf.hold(_env(5, 1000)) == (True, 1)  # nearer: the farthest (30) goes
    assert 30 not in buf and 5 in buf and buf.bytes == 3 * entry
    assert buf.hold(_env(6, 2500)) == (True, 2)  # needs two slots' bytes: 20 and 10 go
    assert sorted(s for s in (5, 6, 10, 20) if s in buf) == [5, 6]
    assert buf.hold(_env(7, 4 * entry)) == (False, 0)  # larger than the whole budget
    assert buf.hold(_env(5, 10)) == (True, 0)  # a resend of a held seq: the held one stays
    buf.drop_below(6)
    assert len(buf) == 1 and buf.bytes == 2500 + ENTRY_OVERHEAD
    assert buf.pop(6).seq == 6 and buf.bytes == 0


def test_reorder_buffer_keeps_its_slot_budget() -> None:
    buf = ReorderBuffer(max_messages=2, max_bytes=1 << 30)
    buf.hold(_env(3, 1))
    buf.hold(_env(4, 1))
    assert buf.hold(_env(5, 1)) == (False, 0)
    assert buf.hold(_env(2, 1)) == (True, 1) and 4 not in buf


def test_a_body_with_thousands_of_errors_is_summarised_in_a_short_reason() -> None:
    body = json.dumps([{"key": "", "text": 7}] * 2000).encode()
    env = Envelope(
        message_id="m",
        node_id="node-a",
        seq=1,
        hlc="0000000000001-000000-node-a",
        content_type=ContentType.MEMORY,
        records=[],
        body=body,
        n_records=2000,
    )
    with pytest.raises(EnvelopeRejected) as info:
        validate_body(env, max_records=2000, max_depth=32)
    reason = str(info.value)
    assert info.value.reason is RejectReason.INVALID_RECORD
    assert len(reason) <= MAX_REASON_CHARS and reason.count("; ") <= MAX_ERRORS - 1 and "more)" in reason
    too_many = Envelope(
        message_id="m",
        node_id="node-a",
        seq=1,
        hlc="0000000000001-000000-node-a",
        content_type=ContentType.MEMORY,
        records=[],
        body=body,
        n_records=1,
    )
    with pytest.raises(EnvelopeRejected, match="at most 10 items"):
        validate_body(too_many, max_records=10, max_depth=32)


def test_json_values_are_counted_outside_strings_only() -> None:
    commas = json.dumps([{"key": "k", "text": ",[{" * 60_000 + '\\",'}]).encode()  # ~180k commas in a string
    check_json_values(commas, 1024)
    with pytest.raises(EnvelopeRejected) as info:
        check_json_values(b"[" + b",".join([b"{}"] * 2000) + b"]", 1024)
    assert info.value.reason is RejectReason.OVERSIZED
    check_json_values(b"[" + b",".join([b"1"] * 1000) + b"]", 1024)  # short: not even scanned


@pytest.mark.parametrize("shape", ["embeddings", "one_long_text"])
def test_the_largest_bodies_an_edge_sends_pass_the_clouds_default_limits(shape: str) -> None:
    edge, cloud = SyncSettings(), CloudSyncSettings()
    clock = HybridClock("node-a")
    parts: list[bytes] = []
    total = 0
    while True:
        h = clock.now().pack()
        if shape == "embeddings":  # zeros: the most JSON values per byte a record can have
            rec = KnowledgeRecord(
                key=f"k{len(parts)}", created=h, updated=h, embedding=[0.0] * MAX_EMBEDDING_DIM
            )
        else:  # 64K characters of 3-byte UTF-8, the largest single record
            rec = KnowledgeRecord(key="long", created=h, updated=h, text="知" * MAX_TEXT_CHARS)
        part = rec.model_dump_json().encode()
        if parts and (
            total + len(part) > edge.mqtt_batch_max_bytes or len(parts) >= edge.mqtt_batch_max_records
        ):
            break
        parts.append(part)
        total += len(part)
        if shape == "one_long_text":
            break
    body = join_record_bodies(parts)
    frame = pack(
        message_id="m",
        node_id="node-a",
        seq=1,
        hlc=clock.now().pack(),
        content_type=ContentType.MEMORY,
        body=body,
        n_records=len(parts),
        encoding=Encoding.LZ4,
        max_bytes=edge.mqtt_max_message_bytes,
    )
    env = decode(
        frame,
        max_bytes=cloud.sync_max_message_bytes,
        max_decompressed_bytes=cloud.sync_max_decompressed_bytes,
        max_records=cloud.sync_max_message_records,
        max_json_values=cloud.sync_max_json_values,
        parse_records=False,
    )
    models = validate_body(env, max_records=cloud.sync_max_message_records, max_depth=32)
    assert len(models) == len(parts)
