"""SQLite outbox (budget, ack-only release, restart) and the edge memory store (LWW, tombstones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.envelope import ContentType, decode, join_record_bodies, pack
from contracts.hlc import HLC
from contracts.memory import KnowledgeRecord
from edge.memory.store import MemoryStore
from edge.sync.outbox import Outbox, OutboxFull


def _builder(seq: int, msg_id: str, kind: ContentType, bodies: list[bytes], n: int, low: int) -> bytes:
    return pack(
        message_id=msg_id,
        node_id="n",
        seq=seq,
        hlc=HLC(1, 0, "n").pack(),
        content_type=kind,
        body=join_record_bodies(bodies),
        n_records=n,
        meta={"low": low},
    )


def _bodies(n: int, size: int = 100, tag: str = "r") -> list[bytes]:
    return [json.dumps({"i": i, "pad": tag * size}).encode() for i in range(n)]


def test_records_leave_only_on_ack_and_survive_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.put(ContentType.MEMORY, _bodies(25))
    m1 = ob.seal(_builder, max_records=10, max_bytes=10**6)
    m2 = ob.seal(_builder, max_records=10, max_bytes=10**6)
    assert m1 is not None and m2 is not None and (m1.seq, m2.seq) == (1, 2)
    assert decode(m1.frame).meta["low"] == 1 and decode(m2.frame).meta["low"] == 1
    assert [r["i"] for r in decode(m2.frame).records] == list(range(10, 20))
    assert ob.pending_records() == 25  # sealed but unacked still counts
    assert ob.ack([m1.msg_id]) == 10 and ob.ack([m1.msg_id]) == 0  # duplicate ack is harmless
    ob.mark_sent([m2.seq])
    ob.close()

    ob = Outbox(tmp_path / "o.db")  # a restarted edge process
    assert ob.pending_records() == 15
    assert ob.due(ack_timeout_s=3600, limit=10) == []  # m2 was sent recently
    ob.mark_all_unsent()
    (again,) = ob.due(ack_timeout_s=3600, limit=10)
    assert (again.msg_id, again.frame) == (m2.msg_id, m2.frame)  # same id, same bytes
    m3 = ob.seal(_builder, max_records=10, max_bytes=10**6)
    assert m3 is not None and m3.seq == 3 and m3.n_records == 5 and decode(m3.frame).meta["low"] == 2
    ob.ack([m2.msg_id, m3.msg_id])
    assert ob.pending_records() == 0 and ob.used_bytes == 0


def test_seal_respects_byte_limit_and_kind(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.put(ContentType.EVENT, _bodies(3, 10))
    ob.put(ContentType.MEMORY, _bodies(5, 1000))
    first = ob.seal(_builder, max_records=100, max_bytes=10**6)
    assert first is not None and first.kind is ContentType.EVENT and first.n_records == 3
    second = ob.seal(_builder, max_records=100, max_bytes=2500)
    assert second is not None and second.kind is ContentType.MEMORY and second.n_records == 2


def test_budget_sheds_telemetry_oldest_first_and_refuses_durable(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_bytes=20_000)
    ob.put(ContentType.EVENT, _bodies(50, 100, "a"))  # ~5.7 kB
    ob.put(ContentType.MEMORY, _bodies(100, 100, "m"))  # ~11.4 kB
    ob.put(ContentType.EVENT, _bodies(30, 100, "b"))  # over budget: oldest "a" events go
    assert ob.dropped["event"] > 0 and ob.used_bytes <= 20_000
    msg = ob.seal(_builder, max_records=1000, max_bytes=10**6)
    assert msg is not None and msg.kind is ContentType.EVENT
    events = decode(msg.frame).records
    shed = ob.dropped["event"]
    # The oldest "a" events were shed; the rest, then all new "b" events, remain in order.
    assert [(r["pad"][0], r["i"]) for r in events] == [("a", i) for i in range(shed, 50)] + [
        ("b", i) for i in range(30)
    ]
    with pytest.raises(OutboxFull) as info:
        ob.put(ContentType.MEMORY, _bodies(200, 100, "x"))
    assert info.value.status == 429 and "refused" in str(info.value)
    assert ob.refused["memory"] == 200
    assert ob.pending_records() == (50 - shed) + 100 + 30  # nothing durable was lost


def test_dead_letter_releases_and_keeps_message(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.put(ContentType.HARD_EXAMPLE, _bodies(2))
    msg = ob.seal(_builder, max_records=10, max_bytes=10**6)
    assert msg is not None
    assert ob.dead_letter(msg.msg_id, "invalid_record: x") == 2
    assert ob.pending_records() == 0 and ob.dead_letters() == [
        (msg.msg_id, "hard_example", "invalid_record: x")
    ]


def test_memory_store_lww_tombstones_and_cursor(tmp_path: Path) -> None:
    st = MemoryStore(tmp_path / "m.db", "node-a")
    r1 = st.put("greeting", "hello", embedding=[0.1, 0.2], confidence=0.9)
    assert st.get("greeting") == r1 and r1.embedding == [0.1, 0.2]
    r2 = st.put("greeting", "hi")
    assert r2.updated > r1.updated and r2.created == r1.created
    older = KnowledgeRecord(
        key="greeting", text="stale", created=r1.created, updated=HLC(1, 0, "node-b").pack()
    )
    assert st.apply_remote([older]) == [] and st.get("greeting") == r2
    newer = KnowledgeRecord(
        key="greeting",
        text="remote",
        created=r1.created,
        updated=HLC(HLC.parse(r2.updated).wall_ms + 5, 0, "node-b").pack(),
    )
    assert st.apply_remote([newer]) == [newer]
    assert st.apply_remote([newer]) == []  # idempotent
    assert st.get("greeting") == newer
    tomb = st.delete("greeting")
    assert tomb is not None and tomb.deleted and tomb.updated > newer.updated
    assert st.get("greeting") is None and st.get("greeting", include_deleted=True) == tomb
    assert st.apply_remote([newer]) == []  # an older write cannot resurrect it
    assert [r.key for r in st.since(r1.updated)] == ["greeting"]
    assert st.since(tomb.updated) == [] and len(st.snapshot()) == 1
    st.close()
    st2 = MemoryStore(tmp_path / "m.db", "node-a")
    assert st2.clock.now() > HLC.parse(tomb.updated)  # clock restored from disk


def test_chunked_rows_keep_order_limits_and_counts(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", chunk_records=4, chunk_bytes=10_000)
    ob.put(ContentType.MEMORY, _bodies(10))  # rows of 4, 4, 2 records
    ob.put(ContentType.MEMORY, _bodies(3, tag="s"))  # one more row of 3
    assert ob.pending_records() == 13 and ob.unsealed_records() == 13
    m1 = ob.seal(_builder, max_records=9, max_bytes=10**6)  # whole rows only: 4 + 4
    m2 = ob.seal(_builder, max_records=9, max_bytes=10**6)  # 2 + 3
    assert m1 is not None and m2 is not None and (m1.n_records, m2.n_records) == (8, 5)
    assert [r["i"] for r in decode(m1.frame).records] == list(range(8))
    assert [(r["pad"][0], r["i"]) for r in decode(m2.frame).records] == [("r", 8), ("r", 9)] + [
        ("s", i) for i in range(3)
    ]
    assert ob.seal(_builder, max_records=9, max_bytes=10**6) is None
    big = Outbox(tmp_path / "b.db", chunk_records=100, chunk_bytes=400)  # bytes limit splits too
    big.put(ContentType.MEMORY, _bodies(10))  # ~120 B each -> 3 per row
    first = big.seal(_builder, max_records=1, max_bytes=1)  # at least one whole row
    assert first is not None and first.n_records == 3


def test_edge_sync_budget_errors_and_metrics(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    from contracts.errors import BadRequest, PayloadTooLarge
    from edge.sync.agent import EdgeSync
    from edge.sync.settings import SyncSettings

    def metric(name: str, kind: str) -> float:
        return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0

    dropped0 = metric("autoglm_edge_sync_outbox_dropped_records_total", "event")
    refused0 = metric("autoglm_edge_sync_outbox_refused_records_total", "memory")
    edge = EdgeSync(
        SyncSettings(mqtt_outbox_max_bytes=8192, mqtt_max_message_bytes=4096), tmp_path / "o.db", "n1"
    )
    try:  # never started: no broker needed, everything stays in the outbox
        for i in range(100):
            edge.publish_event("tick", {"i": i, "pad": "x" * 100})
        assert metric("autoglm_edge_sync_outbox_dropped_records_total", "event") - dropped0 > 0
        assert edge.outbox.used_bytes <= 8192
        h = edge.clock.now().pack()
        recs = [KnowledgeRecord(key=f"k{i}", text="y" * 200, created=h, updated=h) for i in range(60)]
        with pytest.raises(OutboxFull):
            edge.publish_memory(recs)
        assert metric("autoglm_edge_sync_outbox_refused_records_total", "memory") - refused0 == 60
        with pytest.raises(PayloadTooLarge):
            edge.publish_memory([KnowledgeRecord(key="huge", text="z" * 5000, created=h, updated=h)])
        with pytest.raises(BadRequest):
            edge.publish_memory([{"key": "bad"}])  # missing HLCs
    finally:
        edge.outbox.close()
