"""A compromised node attacks the cloud sync hub with hostile MQTT frames (issue 14, D9).

Real Mosquitto with the shipped ACL and a password file; the hub runs in its own process so that
its RSS is a clean number; its Prometheus endpoint is read over HTTP. The attacker is node-x, an
authenticated node publishing only on its own topics (all the ACL lets it do): decompression bombs,
deep nesting, huge record counts, bad encodings, malformed headers and sequence gaps that try to
fill the reorder buffer. Each frame must be rejected and counted, ordered ones acked ``rejected``
with a short reason, the hub's RSS must grow by at most 64 MiB, sync.db and the log must stay
small, and a real edge node's good traffic must keep applying afterwards.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.envelope import decode
from contracts.hlc import HybridClock
from contracts.memory import KnowledgeRecord
from edge.memory.store import MemoryStore
from edge.sync.agent import EdgeSync
from tests.security.mqtt_support import (
    SHIPPED_ACL,
    Client,
    HubProcess,
    PeakSampler,
    header,
    lz4_body,
    raw_frame,
)
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import edge_settings, wait_until

PASSWORDS = {"autoglm-cloud": "cloud-pw", "node-a": "a-pw", "node-x": "x-pw"}
UP = "autoglm/up/node-x/"
REJECTED = "autoglm_cloud_sync_rejected_messages_total"
RSS_BUDGET = 64 * 1024 * 1024
GAP_BODY_CHARS = 900_000
GAP_SEQS = range(20, 300)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path, acl=SHIPPED_ACL.read_text(), passwords=PASSWORDS).start()
    yield b
    b.stop()


@pytest.fixture
def hub(tmp_path: Path, broker: MosquittoBroker) -> Iterator[HubProcess]:
    h = HubProcess(tmp_path, broker, sync_mqtt_username="autoglm-cloud", sync_mqtt_password="cloud-pw")
    yield h
    h.stop()


@pytest.fixture
def edge(tmp_path: Path, broker: MosquittoBroker) -> Iterator[EdgeSync]:
    """A real edge node (node-a) whose good traffic must keep applying."""
    e = EdgeSync(
        edge_settings(broker, mqtt_username="node-a", mqtt_password="a-pw"),
        tmp_path / "outbox.sqlite3",
        "node-a",
        store=MemoryStore(tmp_path / "memory.sqlite3", "node-a"),
    ).start()
    yield e
    e.stop()


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _valid_record(key: str) -> dict:
    h = HybridClock("node-x").now().pack()
    return KnowledgeRecord(key=key, text="fill", created=h, updated=h).model_dump()


def _ordered_bombs() -> list[tuple[int, str, bytes, str]]:
    """(seq, what, frame, expected reject reason) for node-x's ordered stream, seq 1..9."""
    ones = b"[" + b",".join([b"1"] * (2 * 1024 * 1024)) + b"]"  # 4 MiB of [1,1,...] (the D9 frame)
    objs = b"[" + b",".join([b"{}"] * 333_000) + b"]"  # ~1 MB of empty objects
    invalid = json.dumps([{"key": "", "text": 7}] * 2000).encode()  # 2000 records, every one invalid
    deep = b"[" * 50_000 + b"]" * 50_000
    session = (
        b'[{"session_id":"s","updated_ms":1,"updated":"0000000000001-000000-node-x","data":'
        + _nested(5000)
        + b"}]"
    )
    events = b'[{"name":"e","data":' + _nested(40) + b"}]"
    bad_lz4 = bytearray(lz4_body(json.dumps([_valid_record("lz4")]).encode()))
    bad_lz4[8:] = b"\xff" * (len(bad_lz4) - 8)
    return [
        (1, "4 MiB [1,1,...] bomb", raw_frame(header("node-x", 1), lz4_body(ones)), "oversized"),
        (2, "1 MB of {} (too many JSON values)", raw_frame(header("node-x", 2), lz4_body(objs)), "oversized"),
        (
            3,
            "2000 invalid records",
            raw_frame(header("node-x", 3, n=2000), lz4_body(invalid)),
            "invalid_record",
        ),
        (4, "array nested 50,000 deep", raw_frame(header("node-x", 4), lz4_body(deep)), "malformed"),
        (
            5,
            "session data nested 5,000 deep",
            raw_frame(header("node-x", 5, "session"), lz4_body(session)),
            "malformed",
        ),
        (
            6,
            "one million records declared",
            raw_frame(header("node-x", 6, n=1_000_000), lz4_body(objs)),
            "oversized",
        ),
        (7, "corrupt LZ4 block", raw_frame(header("node-x", 7), bytes(bad_lz4)), "bad_encoding"),
        (
            8,
            "LZ4 size prefix of 100 MiB",
            raw_frame(header("node-x", 8), (100 << 20).to_bytes(4, "little") + b"x"),
            "oversized",
        ),
        (
            9,
            "event data nested 40 deep",
            raw_frame(header("node-x", 9, "event"), lz4_body(events)),
            "malformed",
        ),
    ]


def _header_bombs() -> list[tuple[str, str, bytes, str]]:
    """(topic kind, what, frame, reason): frames whose header cannot be trusted (never acked)."""
    ok = header("node-x", 0, "heartbeat")
    deep_meta = (
        json.dumps({**ok, "meta": 0}, separators=(",", ":"))
        .encode()
        .replace(b'"meta":0', b'"meta":' + _nested(2000))
    )
    ones = b"[" + b",".join([b"1"] * (2 * 1024 * 1024)) + b"]"
    return [
        ("heartbeat", "bad magic", b"XXXX" + raw_frame(ok, b"[]")[4:], "malformed"),
        (
            "heartbeat",
            "header length beyond the frame",
            raw_frame(ok, b"")[:5] + (10**6).to_bytes(4, "big"),
            "malformed",
        ),
        ("heartbeat", "header not JSON", raw_frame(b'{"id": "x", ', b"[]"), "malformed"),
        ("heartbeat", "header not an object", raw_frame(b"[1, 2, 3]", b"[]"), "malformed"),
        ("heartbeat", "header without fields", raw_frame({"id": "x"}, b"[]"), "malformed"),
        ("heartbeat", "header not UTF-8", raw_frame(b'{"id": "\xff\xfe"}', b"[]"), "malformed"),
        ("heartbeat", "header meta nested 2,000 deep", raw_frame(deep_meta, b"[]"), "malformed"),
        ("heartbeat", "4 MiB heartbeat bomb", raw_frame(ok, lz4_body(ones)), "oversized"),
    ]


def _gap_frame(seq: int) -> bytes:
    body = json.dumps([{"key": f"gap-{seq}", "text": "g" * GAP_BODY_CHARS}]).encode()  # no HLC: invalid
    return raw_frame(header("node-x", seq), lz4_body(body))


def _good_traffic(edge: EdgeSync, prefix: str, n: int) -> None:
    assert edge.store is not None
    edge.publish_memory([edge.store.put(f"{prefix}-{i}", f"good record {i}") for i in range(n)])
    wait_until(lambda: edge.outbox.pending_records() == 0, 60, f"{prefix} acked by the cloud")


def _cloud_has(hub: HubProcess, key: str) -> bool:
    with sqlite3.connect(f"file:{hub.db_path}?mode=ro", uri=True) as db:
        return db.execute("SELECT 1 FROM knowledge WHERE key = ?", (key,)).fetchone() is not None


def test_hostile_frames_are_rejected_counted_acked_and_memory_stays_bounded(
    broker: MosquittoBroker, hub: HubProcess, edge: EdgeSync
) -> None:
    assert edge.wait_connected(15)
    _good_traffic(edge, "warm", 200)
    attacker = Client(broker, "attacker", "node-x", "x-pw")
    attacker.subscribe("autoglm/down/node-x/ack")
    attacker.publish(UP + "heartbeat", b"warm-up garbage")  # the reject path, once, before the baseline
    wait_until(lambda: hub.metric(REJECTED, reason="malformed") == 1 and hub.idle(), 30, "warm-up reject")

    before = hub.samples()
    base_rss, base_db = hub.rss(), hub.db_bytes()
    sampler = PeakSampler(hub.ps)
    ordered = _ordered_bombs()
    for seq, _, frame, _ in ordered:
        kind = {5: "session", 9: "events"}.get(seq, "memory")
        attacker.publish(UP + kind, frame)
    headers = _header_bombs()
    for kind, _, frame, _ in headers:
        attacker.publish(UP + kind, frame)
    for seq in GAP_SEQS:  # far ahead of the cursor (10): they can only wait in the reorder buffer
        attacker.publish(UP + "memory", _gap_frame(seq))
    fill = {seq: f"fill-{seq}" for seq in range(10, 20)}
    for seq, key in fill.items():  # close the gap: the buffered ones apply (and are rejected) now
        attacker.publish(
            UP + "memory",
            raw_frame(header("node-x", seq), lz4_body(json.dumps([_valid_record(key)]).encode())),
        )
    attacker.publish(UP + "sentinel", b"processed after everything above")
    sentinel = before.get((REJECTED, (("reason", "unknown_content_type"),)), 0.0) + 1
    wait_until(
        lambda: (
            not hub.alive()
            or (hub.metric(REJECTED, reason="unknown_content_type") >= sentinel and hub.idle())
        ),
        300,
        "the hub to process the attack",
    )
    peak = sampler.stop()
    assert hub.alive(), "the hub process died under the attack"
    after_rss, after_db = hub.rss(), hub.db_bytes()
    after = hub.samples()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    buffered = delta("autoglm_cloud_sync_reordered_messages_total")
    dropped = delta("autoglm_cloud_sync_reorder_dropped_messages_total")
    print(
        json.dumps(
            {
                "bench": "mqtt_bomb_suite",
                "rss_before_mb": round(base_rss / 2**20, 1),
                "rss_after_mb": round(after_rss / 2**20, 1),
                "rss_peak_mb": round(peak / 2**20, 1),
                "rss_growth_mb": round((after_rss - base_rss) / 2**20, 1),
                "db_growth_mb": round((after_db - base_db) / 2**20, 2),
                "reorder_held": buffered,
                "reorder_dropped": dropped,
            }
        )
    )
    # The reorder buffer held at most its byte budget (16 MiB default) and dropped (counted) the rest.
    assert 0 < buffered * GAP_BODY_CHARS <= 16 * 2**20 + GAP_BODY_CHARS
    assert buffered + dropped == len(GAP_SEQS)
    expected: dict[str, float] = {}
    for *_, reason in ordered + headers:
        expected[reason] = expected.get(reason, 0) + 1
    expected["invalid_record"] += buffered
    expected["unknown_content_type"] = 1
    got = {r: delta(REJECTED, reason=r) for r in expected}
    assert got == expected

    # Ordered frames are acked "rejected" with a short reason (their stream does not stall); acks are small.
    wait_until(lambda: len(attacker.got("autoglm/down/node-x/ack")) > 0, 30, "acks to node-x")
    acks: dict[str, dict] = {}
    for payload in attacker.got("autoglm/down/node-x/ack"):
        assert len(payload) <= 64 * 1024
        for rec in decode(payload).records:
            acks[rec["id"]] = rec
    by_seq = {int(mid.split(".")[2]): rec for mid, rec in acks.items() if mid.startswith("node-x.")}
    for seq, what, _, reason in ordered:
        assert by_seq[seq]["status"] == "rejected", what
        assert by_seq[seq]["reason"].startswith(reason), (what, by_seq[seq]["reason"])
        assert len(by_seq[seq]["reason"]) <= 300, what
    assert all(by_seq[seq]["status"] == "applied" for seq in fill)
    assert all(_cloud_has(hub, key) for key in fill.values())

    # Bounded: memory, the database, the log.
    assert after_rss - base_rss <= RSS_BUDGET, f"hub RSS grew by {(after_rss - base_rss) / 2**20:.0f} MiB"
    assert after_db - base_db <= 4 * 2**20, f"sync.db grew by {(after_db - base_db) / 2**20:.1f} MiB"
    log_lines = hub.log_path.read_text(errors="replace").splitlines()
    assert max(len(line) for line in log_lines) <= 2000
    assert hub.log_path.stat().st_size <= 2 * 2**20

    # Good traffic keeps applying.
    _good_traffic(edge, "after", 200)
    assert _cloud_has(hub, "after-199")
    attacker.close()
