"""The edge decodes downlink messages with the same limits as the cloud (issue 14, D9): deep
nesting (beyond the depth limit, and beyond Python's recursion limit), too many records and
too many JSON values are rejected and counted, and the node keeps taking valid commands."""

from __future__ import annotations

from collections.abc import Callable

import lz4.block
from prometheus_client import REGISTRY

from contracts.envelope import ContentType, Encoding, Envelope, encode
from edge.sync.agent import EdgeSync
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import RawClient, wait_until


def _metric(reason: str) -> float:
    return REGISTRY.get_sample_value("autoglm_edge_sync_rejected_messages_total", {"reason": reason}) or 0.0


def _command_frame(body: bytes, n: int = 1) -> bytes:
    good = encode(
        Envelope(
            message_id="c",
            node_id="cloud",
            seq=0,
            hlc="0000000000001-000000-cloud",
            content_type=ContentType.COMMAND,
            records=[{}],
            encoding=Encoding.LZ4,
        )
    )
    head_len = int.from_bytes(good[5:9], "big")
    head = good[9 : 9 + head_len].replace(b'"n":1', f'"n":{n}'.encode())
    return good[:5] + len(head).to_bytes(4, "big") + head + lz4.block.compress(body, store_size=True)


def test_hostile_downlinks_are_rejected_counted_and_the_node_keeps_working(
    mosquitto_broker: MosquittoBroker, make_edge: Callable[..., EdgeSync]
) -> None:
    edge = make_edge(mosquitto_broker, "node-a").start()
    ran: list[object] = []
    edge.on_command(lambda c: ran.append(c) or {})
    assert edge.wait_connected(30)
    before = {r: _metric(r) for r in ("malformed", "oversized")}
    raw = RawClient(mosquitto_broker, "fake-cloud")
    topic = "autoglm/down/node-a/commands"
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    raw.publish(
        topic, _command_frame(b'[{"command_id":"c1","command":' + deep + b"}]")
    )  # RecursionError depth
    shallow = b'{"a":' * 40 + b"1" + b"}" * 40
    raw.publish(topic, _command_frame(b'[{"command_id":"c2","command":' + shallow + b"}]"))  # > 32 levels
    raw.publish(
        topic, _command_frame(b"[" + b",".join([b"{}"] * 150_000) + b"]", n=150_000)
    )  # > 2000 records
    raw.publish(
        topic, _command_frame(b'[{"command_id":"c3","command":{"v":[' + b",".join([b"1"] * 200_000) + b"]}}]")
    )  # > 131,072 JSON values
    raw.publish(
        topic,
        encode(
            Envelope(
                message_id="ok",
                node_id="cloud",
                seq=0,
                hlc="0000000000001-000000-cloud",
                content_type=ContentType.COMMAND,
                records=[{"command_id": "c-ok", "command": {"type": "ping"}}],
            )
        ),
    )
    wait_until(lambda: len(ran) == 1, what="the valid command after the hostile ones")
    assert "c-ok" in repr(ran[0])
    assert edge.rejected == {"malformed": 2, "oversized": 2}
    assert _metric("malformed") - before["malformed"] == 2 and _metric("oversized") - before["oversized"] == 2
    raw.close()
