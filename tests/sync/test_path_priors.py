"""Graph-path feedback priors over a real Mosquitto: a node's shared counts reach the cloud, which
sums them over the fleet and sends the sums to every node (live, and with a late node's resync);
forged, oversized and unknown-relation prior records are rejected and counted like every other
refused sync message; the node's counts survive a restart of its memory store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cloud.sync.hub import CloudSync
from contracts.envelope import ContentType, Envelope, encode
from contracts.hlc import HybridClock
from contracts.memory import FleetPathPrior
from edge.memory.store import MemoryStore
from edge.sync.agent import EdgeSync
from tests.support.mosquitto import MosquittoBroker
from tests.sync.conftest import RawClient, TwoNodes, cloud_rejected, node_frame, wait_until

PATH = ("maintained_by", "supervised_by")


def _fleet(edge: EdgeSync, start_type: str = "machine", path: tuple[str, ...] = PATH) -> tuple[int, int]:
    assert edge.store is not None
    for p in edge.store.path_priors():
        if (p.start_type, p.relations) == (start_type, path):
            return p.fleet_confirmed, p.fleet_rejected
    return 0, 0


def test_a_nodes_feedback_reaches_the_fleet_through_the_cloud(
    two_nodes: TwoNodes, mosquitto_broker: MosquittoBroker, make_edge: Callable[..., EdgeSync]
) -> None:
    hub, a, b = two_nodes
    got_b: list[FleetPathPrior] = []
    b.on_fleet_priors(got_b.extend)
    assert a.store is not None and b.store is not None

    _, rec = a.store.add_path_prior("machine", PATH, confirmed=3, rejected=0, shared=True)
    assert rec is not None and rec.node == "node-a" and rec.confirmed == 3
    a.publish_path_priors([rec])
    wait_until(lambda: hub.repo.path_prior("node-a", "machine", PATH) == (3, 0), what="cloud stored node-a's")
    wait_until(lambda: _fleet(b) == (3, 0), what="fleet sum on node-b")
    assert got_b and got_b[-1].confirmed == 3 and got_b[-1].nodes == 1
    wait_until(lambda: _fleet(a) == (3, 0), what="fleet sum back on node-a")

    # node-b's own shared feedback adds to the sum; anonymous feedback never leaves the node
    _, rec_b = b.store.add_path_prior("machine", PATH, confirmed=2, rejected=1, shared=True)
    _, private = b.store.add_path_prior("machine", ("operated_by",), confirmed=5, rejected=0, shared=False)
    assert rec_b is not None and private is None
    b.publish_path_priors([rec_b])
    wait_until(lambda: _fleet(a) == (5, 1), what="sum of two nodes on node-a")
    (row,) = hub.repo.fleet_priors_since(None)
    assert (row.confirmed, row.rejected, row.nodes) == (5, 1, 2)

    # a newer count of the same node replaces its older one (the sum does not double it)
    _, rec2 = a.store.add_path_prior("machine", PATH, confirmed=1, rejected=0, shared=True)
    assert rec2 is not None and rec2.confirmed == 4
    a.publish_path_priors([rec2, rec])  # the stale record after the new one changes nothing
    wait_until(lambda: _fleet(b) == (6, 1), what="node-a's newer count")

    # a node that joins later gets the fleet's sums with its resync
    c = make_edge(mosquitto_broker, "node-c").start()
    wait_until(lambda: c.resyncs_completed >= 1, what="node-c resync")
    wait_until(lambda: _fleet(c) == (6, 1), what="fleet sums in node-c's resync")
    assert hub.rejected_counts() == {} and a.rejected == {} and b.rejected == {} and c.rejected == {}


def _prior(
    node: str, relations: list[str], confirmed: int = 1, *, hlc_node: str | None = None, **kw: object
) -> dict:
    return {
        "node": node,
        "start_type": "machine",
        "relations": relations,
        "confirmed": confirmed,
        "rejected": 0,
        "updated": HybridClock(hlc_node or node).now().pack(),
        **kw,
    }


def test_forged_oversized_and_unknown_relation_priors_are_rejected_and_counted(
    mosquitto_broker: MosquittoBroker,
    make_edge: Callable[..., EdgeSync],
    make_cloud: Callable[..., CloudSync],
) -> None:
    hub = make_cloud(mosquitto_broker).start()
    b = make_edge(mosquitto_broker, "node-b").start()
    assert hub.wait_connected(30) and b.wait_connected(30)
    before = {r: cloud_rejected(r) for r in ("wrong_sender", "invalid_record")}
    raw = RawClient(mosquitto_broker, "node-x")
    up = "autoglm/up/node-x/priors"
    bad = [
        [_prior("node-y", list(PATH))],  # node-x writes node-y's counts: forged
        [_prior("node-x", list(PATH), hlc_node="node-y")],  # its own name, another node's clock: forged
        [_prior("node-x", ["maintained_by", "supervised_by", "supervised_by", "supervised_by"])],  # 4 hops
        [_prior("node-x", list(PATH), confirmed=10**9)],  # count over the cap
        [_prior("node-x", ["teleported_by"])],  # no such relation
        [_prior("node-x", ["supervised_by"])],  # a relation that does not leave a machine
        [_prior("node-x", list(PATH), extra="field")],  # not the contract
    ]
    for seq, records in enumerate(bad, start=1):
        raw.publish(up, node_frame("node-x", seq, records, ContentType.PATH_PRIOR, mid=f"bad-{seq}"))
    good = _prior("node-x", list(PATH), confirmed=2)
    raw.publish(up, node_frame("node-x", len(bad) + 1, [good], ContentType.PATH_PRIOR, mid="good"))
    wait_until(
        lambda: hub.repo.path_prior("node-x", "machine", PATH) == (2, 0), what="the good message applied"
    )
    wait_until(hub.idle, what="worker idle")
    assert hub.rejected_counts() == {"wrong_sender": 2, "invalid_record": 5}
    assert cloud_rejected("wrong_sender") - before["wrong_sender"] == 2
    assert cloud_rejected("invalid_record") - before["invalid_record"] == 5
    assert hub.repo.path_prior("node-y", "machine", PATH) is None
    # only the good count went to the fleet
    wait_until(lambda: _fleet(b) == (2, 0), what="the good sum on node-b")

    # the downlink checks the fleet's sums too (a cloud bug or a forged broadcast would need the
    # cloud's credentials; still bounded): an unknown relation is rejected and counted on the node
    assert b.store is not None
    frame = encode(
        Envelope(
            message_id="fleet-bad",
            node_id="cloud",
            seq=0,
            hlc=HybridClock("cloud").now().pack(),
            content_type=ContentType.FLEET_PRIOR,
            records=[
                {
                    "start_type": "machine",
                    "relations": ["teleported_by"],
                    "confirmed": 5,
                    "rejected": 0,
                    "nodes": 1,
                    "merged": HybridClock("cloud").now().pack(),
                }
            ],
        )
    )
    raw.publish("autoglm/fleet/priors", frame)
    wait_until(lambda: b.rejected.get("invalid_record") == 1, what="node-b rejected the bad fleet prior")
    assert all(p.relations != ("teleported_by",) for p in b.store.path_priors())
    raw.close()


def test_local_priors_survive_a_restart(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / "memory.sqlite3", "node-a")
    store.add_path_prior("machine", PATH, confirmed=2, rejected=0, shared=True)
    store.add_path_prior("machine", PATH, confirmed=1, rejected=1, shared=False)
    newest = store.clock.now().pack()
    store.apply_fleet_priors(
        [
            FleetPathPrior(
                start_type="machine", relations=PATH, confirmed=9, rejected=0, nodes=3, merged=newest
            )
        ]
    )
    store.close()
    again = MemoryStore(tmp_path / "memory.sqlite3", "node-a")
    (p,) = again.path_priors()
    assert (p.confirmed, p.rejected, p.shared_confirmed, p.shared_rejected) == (3, 1, 2, 0)
    assert (p.fleet_confirmed, p.fleet_rejected) == (9, 0)
    (rec,) = again.path_prior_records()
    assert rec.confirmed == 2 and rec.node == "node-a"
    # an older fleet sum does not replace a newer one
    old = FleetPathPrior(
        start_type="machine",
        relations=PATH,
        confirmed=1,
        rejected=0,
        nodes=1,
        merged="0000000000001-000000-cloud",
    )
    assert again.apply_fleet_priors([old]) == []
    again.close()
