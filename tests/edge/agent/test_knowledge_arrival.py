"""Knowledge the cloud broadcasts carries text only: a node embeds it with its own encoder before
its next memory search, over a real Mosquitto with the cloud sync hub. The embedding is local,
derived data: the stored version (HLC) stays, nothing is re-published, and a newer version from
elsewhere still replaces it (and is embedded in turn)."""

from __future__ import annotations

from pathlib import Path

from contracts.memory import KnowledgeRecord
from edge.agent.types import Source
from tests.sync.conftest import TwoNodes, wait_until

from .helpers import ask, make_agent, step

KEY = "kb:press-torque"
TEXT = "hydraulic press PR-111 bolts are torqued to 85 newton metres"


def test_broadcast_knowledge_without_embedding_is_embedded_and_answers(
    tmp_path: Path, two_nodes: TwoNodes
) -> None:
    hub, _, sync_b = two_nodes
    assert sync_b.store is not None
    b = make_agent(tmp_path, "node-b", sync=sync_b)

    now = hub.clock.now().pack()
    hub.broadcast_memory([KnowledgeRecord(key=KEY, text=TEXT, created=now, updated=now)])
    wait_until(
        lambda: sync_b.store is not None and sync_b.store.get(KEY) is not None, 30, "broadcast on node-b"
    )
    arrived = sync_b.store.get(KEY)
    assert arrived is not None and arrived.embedding is None
    assert [(k, t) for k, _, t in b.memory.unembedded()] == [(KEY, TEXT)]  # not searchable yet

    resp = ask(b, TEXT)
    assert resp.source is Source.MEMORY and resp.answer == TEXT
    assert step(resp, "memory")["hits"][0]["key"] == KEY
    stored = sync_b.store.get(KEY)
    assert stored is not None and stored.embedding is not None and stored.updated == arrived.updated
    assert b.metrics.knowledge_embedded.labels("node-b")._value.get() == 1
    assert b.memory.unembedded() == []
    assert sync_b.outbox.pending_records() == 0  # derived data: nothing published

    # a newer version from the cloud replaces the local embedding and is embedded before the next search
    newer = hub.clock.now().pack()
    text2 = "hydraulic press PR-111 bolts are torqued to 90 newton metres"
    hub.broadcast_memory([KnowledgeRecord(key=KEY, text=text2, created=now, updated=newer)])
    store = sync_b.store
    wait_until(lambda: (r := store.get(KEY)) is not None and r.text == text2, 30, "newer version")
    resp2 = ask(b, text2)
    assert resp2.source is Source.MEMORY and resp2.answer == text2
    assert b.metrics.knowledge_embedded.labels("node-b")._value.get() == 2
