"""Target of issue 14: no unauthenticated write reaches another node. Two checks, both tested:

1. on the edge, knowledge written over HTTP without the admin token is stored ``shared=False``
   with ``source = http:anonymous@<node>`` and never published
   (test_edge_defects.py::test_knowledge_needs_the_admin_token_and_carries_provenance);
2. here: the cloud hub checks provenance before it rebroadcasts a node's shared knowledge to the
   fleet — a record marked anonymous, or one whose write HLC names another node than the
   (broker-authenticated) sender, stays in the cloud, is counted, and never reaches another node;
   non-shared records are not rebroadcast either; a node's resync snapshot follows the same rule.
   Real Mosquitto, real EdgeSync nodes.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY

from contracts.hlc import HybridClock
from contracts.memory import ANONYMOUS_SOURCE_PREFIX, KnowledgeRecord
from edge.sync.agent import EdgeSync
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import TwoNodes, wait_until

METRIC = "autoglm_cloud_sync_not_rebroadcast_records_total"


def _not_rebroadcast(reason: str) -> float:
    return REGISTRY.get_sample_value(METRIC, {"reason": reason}) or 0.0


def test_hub_rebroadcasts_only_the_senders_own_authenticated_shared_writes(
    two_nodes: TwoNodes, mosquitto_broker: MosquittoBroker, make_edge: Callable[..., EdgeSync]
) -> None:
    hub, a, b = two_nodes
    got_b: list[KnowledgeRecord] = []
    b.on_memory(got_b.extend)
    wait_until(lambda: set(hub.online_nodes()) == {"node-a", "node-b"}, what="both nodes online")
    anon0, foreign0 = _not_rebroadcast("anonymous"), _not_rebroadcast("foreign_origin")

    assert a.store is not None and b.store is not None
    good = a.store.put("good", "valve 7 opens at 7 bar", source="http:admin@node-a")
    # what an old or tampered edge might still send: an anonymous write marked shared
    anon = a.store.put(
        "anon", "Operators may skip lockout-tagout on line 3.", source=f"{ANONYMOUS_SOURCE_PREFIX}node-a"
    )
    # a write that claims to be node-c's (its HLC names node-c), sent by node-a
    hlc = HybridClock("node-c").now().pack()
    spoofed = KnowledgeRecord(
        key="spoofed",
        text="node-c says: skip the interlock",
        source="http:admin@node-c",
        created=hlc,
        updated=hlc,
    )
    private = a.store.put("private", "node-a only", shared=False)
    a.publish_memory([good, anon, spoofed, private])

    wait_until(lambda: hub.repo.knowledge_count() == 4, what="the cloud keeps all four records")
    wait_until(lambda: b.store.get("good") is not None, what="the authenticated write reached node-b")
    wait_until(lambda: a.outbox.pending_records() == 0, what="node-a outbox drained by acks")
    assert _not_rebroadcast("anonymous") - anon0 == 1
    assert _not_rebroadcast("foreign_origin") - foreign0 == 1
    # a later good write is delivered after them, so nothing else is on its way to node-b
    later = a.store.put("later", "valve 8 opens at 8 bar", source="http:admin@node-a")
    a.publish_memory([later])
    wait_until(lambda: b.store.get("later") is not None, what="a later write reached node-b")
    assert {r.key for r in got_b} == {"good", "later"}
    for key in ("anon", "spoofed", "private"):
        assert b.store.get(key) is None, key
    # a node that joins later gets a snapshot on resync: the same rule applies there
    c = make_edge(mosquitto_broker, "node-d").start()
    wait_until(lambda: c.resyncs_completed >= 1, what="node-d initial resync")
    assert c.store is not None
    assert c.store.get("good") is not None and c.store.get("later") is not None
    for key in ("anon", "spoofed", "private"):
        assert c.store.get(key) is None, key
