"""Envelope, topics, HLC and LWW merge: the wire contracts, without a broker."""

from __future__ import annotations

import itertools
import random
import struct

import lz4.block
import pytest

from contracts.envelope import (
    ContentType,
    Encoding,
    Envelope,
    EnvelopeRejected,
    EnvelopeTooLarge,
    RejectReason,
    decode,
    encode,
    pack,
)
from contracts.hlc import HLC, ClockDriftError, HybridClock
from contracts.memory import KnowledgeRecord, lww_wins, merge
from contracts.topics import DownKind, Topics


def _env(records: list[dict], **kw: object) -> Envelope:
    base: dict = dict(
        message_id="m1",
        node_id="node-a",
        seq=7,
        hlc=HLC(1, 0, "node-a").pack(),
        content_type=ContentType.MEMORY,
        records=records,
    )
    base.update(kw)
    return Envelope(**base)


@pytest.mark.parametrize("encoding", [Encoding.LZ4, Encoding.NONE])
def test_envelope_round_trip(encoding: Encoding) -> None:
    recs = [{"key": f"k{i}", "text": "x" * 50, "n": i} for i in range(20)]
    frame = encode(_env(recs, encoding=encoding, meta={"low": 3}))
    env = decode(frame)
    assert (env.message_id, env.node_id, env.seq, env.content_type, env.encoding) == (
        "m1",
        "node-a",
        7,
        ContentType.MEMORY,
        encoding,
    )
    assert env.records == recs and env.meta == {"low": 3} and env.wire_bytes == len(frame)


def test_lz4_compresses_repetitive_records() -> None:
    recs = [{"key": f"k{i}", "text": "the conveyor belt stopped at station 4 " * 5} for i in range(200)]
    assert len(encode(_env(recs))) * 3 < len(encode(_env(recs, encoding=Encoding.NONE)))


def test_encode_refuses_oversized_frame() -> None:
    with pytest.raises(EnvelopeTooLarge):
        encode(_env([{"t": random.randbytes(4000).hex()}], encoding=Encoding.NONE), max_bytes=4096)


def _reason(data: bytes, **kw: int) -> RejectReason:
    with pytest.raises(EnvelopeRejected) as info:
        decode(data, **kw)
    return info.value.reason


def test_decode_rejects_each_kind_of_bad_frame() -> None:
    good = encode(_env([{"a": 1}]))
    assert _reason(b"") is RejectReason.MALFORMED
    assert _reason(b"hello world, not a frame") is RejectReason.MALFORMED
    assert _reason(good, max_bytes=len(good) - 1) is RejectReason.OVERSIZED
    assert _reason(good[:4] + bytes([99]) + good[5:]) is RejectReason.UNKNOWN_SCHEMA_VERSION
    assert _reason(good[:-3]) in (RejectReason.BAD_ENCODING, RejectReason.MALFORMED)
    head = b'{"id":"m","node":"n","seq":1,"hlc":"h","ct":"nope","enc":"none","n":0}'
    assert (
        _reason(struct.pack(">4sBI", b"AGLM", 1, len(head)) + head + b"[]")
        is RejectReason.UNKNOWN_CONTENT_TYPE
    )
    head = b'{"id":"m","node":"n","seq":1,"hlc":"h","ct":"memory","enc":"zstd","n":0}'
    assert _reason(struct.pack(">4sBI", b"AGLM", 1, len(head)) + head + b"[]") is RejectReason.BAD_ENCODING
    head = b'{"id":"m","node":"n","seq":"1","hlc":"h","ct":"memory","enc":"none","n":0}'
    assert _reason(struct.pack(">4sBI", b"AGLM", 1, len(head)) + head + b"[]") is RejectReason.MALFORMED
    head = b'{"id":"m","node":"n","seq":1,"hlc":"h","ct":"memory","enc":"none","n":2}'
    assert _reason(struct.pack(">4sBI", b"AGLM", 1, len(head)) + head + b"[{}]") is RejectReason.MALFORMED


def test_decompression_bomb_is_refused_before_decompressing() -> None:
    head = b'{"id":"m","node":"n","seq":1,"hlc":"h","ct":"memory","enc":"lz4","n":1}'
    bomb = lz4.block.compress(b"[" + b" " * 5_000_000 + b"{}]", store_size=True)
    frame = struct.pack(">4sBI", b"AGLM", 1, len(head)) + head + bomb
    assert _reason(frame, max_bytes=10**7, max_decompressed_bytes=1_000_000) is RejectReason.OVERSIZED


def test_pack_uses_prebuilt_body() -> None:
    frame = pack(
        message_id="x",
        node_id="n",
        seq=1,
        hlc="h",
        content_type=ContentType.EVENT,
        body=b'[{"a":1},{"b":2}]',
        n_records=2,
    )
    assert decode(frame).records == [{"a": 1}, {"b": 2}]


def test_topics_tree_and_parse() -> None:
    t = Topics("fleet1")
    assert t.memory_up("n1") == "fleet1/up/n1/memory"
    assert t.commands("n1") == "fleet1/down/n1/commands"
    assert t.group("g", DownKind.MEMORY) == "fleet1/groups/g/memory"
    assert t.fleet(DownKind.COMMANDS) == "fleet1/fleet/commands"
    p = t.parse("fleet1/up/n1/hard-examples")
    assert p is not None and (p.direction, p.target, p.kind) == ("up", "n1", "hard-examples")
    assert t.parse("other/up/n1/memory") is None and t.parse("fleet1/up/n1") is None
    for bad in ("", "a/b", "+", "#", "$sys"):
        with pytest.raises(ValueError):
            t.heartbeat(bad)


def test_hlc_pack_order_matches_tuple_order() -> None:
    stamps = [
        HLC(w, c, n) for w, c, n in itertools.product([0, 5, 1700000000000], [0, 1, 999999], ["a", "b", "ab"])
    ]
    assert sorted(stamps) == sorted(stamps, key=lambda h: h.pack())
    for h in stamps:
        assert HLC.parse(h.pack()) == h
    for bad in ("", "1-2-3", "abc", "0000000000001-000001-"):
        with pytest.raises(ValueError):
            HLC.parse(bad)


def test_hybrid_clock_is_monotonic_and_moves_past_remote() -> None:
    wall = [1000]
    clock = HybridClock("a", wall=lambda: wall[0])
    first = clock.now()
    wall[0] = 900  # the wall clock jumps back
    second = clock.now()
    assert second > first
    remote = HLC(1500, 7, "b")
    wall[0] = 1000
    after = clock.observe(remote)
    assert after > remote and clock.now() > after
    with pytest.raises(ClockDriftError):
        clock.observe(HLC(10_000_000, 0, "c"))


def _rec(key: str, updated: HLC, text: str = "t", deleted: bool = False) -> KnowledgeRecord:
    return KnowledgeRecord(
        key=key, text=text, created=updated.pack(), updated=updated.pack(), deleted=deleted
    )


def test_lww_is_deterministic_and_order_independent() -> None:
    a = _rec("k", HLC(10, 0, "a"), "from a")
    b = _rec("k", HLC(10, 0, "b"), "from b")  # same wall time, tie broken by node id
    c = _rec("k", HLC(9, 5, "c"), "older")
    tomb = _rec("k", HLC(10, 0, "b"), "", deleted=True)  # same HLC as b: tombstone wins
    for perm in itertools.permutations([a, b, c, tomb]):
        assert merge(list(perm))["k"] == tomb
    assert lww_wins(b, a) and not lww_wins(a, b)
    assert not lww_wins(b, b)  # idempotent


def test_knowledge_record_validation() -> None:
    with pytest.raises(ValueError):
        KnowledgeRecord(key="", created="x", updated="y")
    with pytest.raises(ValueError):
        KnowledgeRecord(key="k", created=HLC(1, 0, "a").pack(), updated="not-an-hlc")
    with pytest.raises(ValueError):
        KnowledgeRecord(key="k", created=HLC(1, 0, "a").pack(), updated=HLC(1, 0, "a").pack(), confidence=2.0)


def test_now_many_is_consecutive_and_monotonic() -> None:
    wall = [5]
    clock = HybridClock("n", wall=lambda: wall[0])
    a = clock.now()
    many = clock.now_many(4)
    assert many == sorted(many) and len(set(many)) == 4 and HLC.parse(many[0]) > a
    assert clock.now() > HLC.parse(many[-1])
    wall[0] = 6
    assert HLC.parse(clock.now_many(1)[0]) == HLC(6, 0, "n")
