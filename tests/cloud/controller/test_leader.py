"""Leader election between controller replicas sharing one database (SQLite file and, when
reachable, PostgreSQL): exactly one leader, takeover when the lease expires or is released,
followers serve the API but leave rollouts and command sending to the leader.

The clock is injected (``FakeClock``): lease expiry is decided by advancing it, never by sleeping."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from cloud.api.container import CloudServices
from cloud.db.engine import Database
from cloud.leader import LeaderLease
from tests.cloud.conftest import DbTarget
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import LiveServer, make_settings
from tests.cloud.controller.fleetsim import FakeClock, InstantFleet

TTL = 15.0
NODES = [f"n{i}" for i in range(4)]


@dataclass
class Pair:
    a: CloudServices
    b: CloudServices
    sim_a: InstantFleet
    sim_b: InstantFleet
    clock: FakeClock


def _build(tmp_path: Path, target: DbTarget, clock: FakeClock, sim: InstantFleet) -> CloudServices:
    settings = make_settings(tmp_path, target.url, leader_lease_ttl_s=TTL)
    svc = CloudServices.build(settings, channel=sim, clock=clock, db_schema=target.schema)
    sim.fleet = svc.fleet
    return svc


@pytest.fixture
def pair(tmp_path: Path, db_target: DbTarget) -> Iterator[Pair]:
    """Two controller replicas on one database; nodes and versions exist before both start."""
    clock = FakeClock()
    sim_a, sim_b = InstantFleet(), InstantFleet()
    a = _build(tmp_path, db_target, clock, sim_a)
    for i, v in enumerate(["1.0.0", "1.1.0"]):
        a.registry.register_dir(make_bundle(tmp_path / v, version=v, encoder_seed=i), actor="t")
    a.registry.set_alias("tiny", "stable", "1.0.0", actor="t", reason="initial")
    for nid in NODES:
        a.fleet.register(nid, {"site": "a"})
        sim_a.versions[nid] = sim_b.versions[nid] = "1.0.0"
    b = _build(tmp_path, db_target, clock, sim_b)
    yield Pair(a, b, sim_a, sim_b, clock)
    b.close()
    a.close()


def test_exactly_one_leader_and_takeover_on_expiry(pair: Pair) -> None:
    a, b, clock = pair.a, pair.b, pair.clock
    assert a.leader.holder != b.leader.holder
    assert a.elect() is True
    assert b.elect() is False
    assert a.leader.current_holder() == b.leader.current_holder() == a.leader.holder
    # Renewal within the TTL keeps the leader; the follower keeps losing.
    clock.advance(TTL / 3)
    assert a.elect() is True and b.elect() is False
    # The leader stops renewing (crashed, partitioned): when its lease runs out it stops acting
    # by its own clock, and the follower takes over.
    clock.advance(TTL + 0.1)
    assert a.leader.is_leader is False
    assert a.lead_rollouts() is False and a.lead_sweep() is False
    assert b.elect() is True
    assert a.elect() is False  # the old leader comes back as a follower
    assert b.leader.current_holder() == b.leader.holder


def test_released_lease_is_taken_over_without_waiting(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert a.elect() is True
    assert b.elect() is False
    a.leader.release()  # clean shutdown
    assert a.leader.is_leader is False
    assert b.elect() is True
    assert a.elect() is False


def test_leader_gauge_and_readyz(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert a.elect() is True
    assert REGISTRY.get_sample_value("autoglm_cloud_leader") == 1.0
    assert b.elect() is False
    assert REGISTRY.get_sample_value("autoglm_cloud_leader") == 0.0  # one gauge per process: b set it last
    with LiveServer(a) as la, LiveServer(b) as lb:
        ra = la.client(None).get("/readyz").json()
        rb = lb.client(None).get("/readyz").json()
    assert ra["status"] == rb["status"] == "ready"  # followers serve the API, so they are ready too
    assert ra["leader"] is True and rb["leader"] is False
    assert ra["holder"] == a.leader.holder and rb["holder"] == b.leader.holder


def test_rollout_created_on_follower_is_driven_by_leader(pair: Pair) -> None:
    a, b, sim_a, sim_b, clock = pair.a, pair.b, pair.sim_a, pair.sim_b, pair.clock
    assert a.elect() is True and b.elect() is False
    spec = {"model": "tiny", "version": "1.1.0", "selector": {"site": "a"}, "steps": [50, 100], "pause_s": 1}
    with LiveServer(b) as follower:
        r = follower.client().post("/api/v1/rollouts", json=spec)
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert r.json()["state"] == "progressing"
        # A manual command through the follower is queued in the database, not sent by it.
        cmd = follower.client().post(
            "/api/v1/nodes/n3/desired-version", json={"model": "tiny", "version": "1.0.0"}
        )
        assert cmd.status_code == 202, cmd.text
        queued_id = cmd.json()["command_id"]
    assert sim_b.sent == []  # the follower neither drove the rollout nor talked to nodes
    assert b.lead_rollouts() is False and sim_b.sent == []
    assert [c.status for c in b.fleet.commands("n3") if c.id == queued_id] == ["queued"]

    assert a.lead_rollouts() is True
    sent_ids = [c["command_id"] for _, c in sim_a.sent]
    assert queued_id in sent_ids  # the leader picked up the follower's queued command
    assert [c.status for c in a.fleet.commands("n3") if c.id == queued_id] == ["sent"]
    first = [n for n, c in sim_a.sent if c.get("version") == "1.1.0"]
    assert len(first) == 2  # step 1: 50 % of 4 nodes
    state = ""
    for _ in range(30):
        sim_a.deliver()
        clock.advance(0.5)
        sim_a.heartbeats(NODES)
        assert a.elect() is True
        a.lead_rollouts()
        state = a.rollouts.get(rid).state
        if state == "succeeded":
            break
    assert state == "succeeded"
    assert all(sim_a.versions[n] == "1.1.0" for n in NODES)
    assert sim_b.sent == []
    assert b.rollouts.get(rid).state == "succeeded"  # the follower reads the leader's result


def test_concurrent_first_acquire_has_one_winner(tmp_path: Path, db_target: DbTarget) -> None:
    """Replicas racing for a lease that does not exist yet: the primary key lets one insert win."""
    clock = FakeClock()
    db = Database(
        db_target.url if db_target.schema else f"sqlite:///{tmp_path / 'race.db'}", schema=db_target.schema
    )
    db.migrate()
    leases = [
        LeaderLease(Database(db.url, schema=db_target.schema), ttl_s=TTL, clock=clock) for _ in range(6)
    ]
    barrier = threading.Barrier(len(leases))
    results: dict[str, bool] = {}

    def run(lease: LeaderLease) -> None:
        barrier.wait()
        results[lease.holder] = lease.tick()

    threads = [threading.Thread(target=run, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert len(results) == len(leases)
        winners = [h for h, won in results.items() if won]
        assert len(winners) == 1
        assert leases[0].current_holder() == winners[0]
    finally:
        for lease in leases:
            lease.db.dispose()
        db.dispose()


def test_lease_ttl_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TTL"):
        LeaderLease(Database(f"sqlite:///{tmp_path / 'x.db'}"), ttl_s=0)


def test_fleet_changes_on_one_replica_reach_the_other(pair: Pair) -> None:
    """Registrations, labels and drains written by a follower reach the leader's fleet view, and
    the leader's heartbeat flush does not overwrite them with its older copy."""
    a, b, sim_a = pair.a, pair.b, pair.sim_a
    assert a.elect() is True and b.elect() is False
    token = b.fleet.register("new1", {"site": "a"})
    b.fleet.set_labels("n0", {"tier": "gold"}, ["site"])
    b.fleet.set_drained("n1", True)
    sim_a.heartbeats(NODES)  # the leader's copies of n0/n1 are now dirty with old labels
    a.sync_fleet()  # flush (live columns only), then refresh
    assert a.fleet.authenticate(token) == "new1"
    assert a.fleet.get("n0").labels == {"tier": "gold"}
    assert a.fleet.get("n1").drained is True
    assert a.fleet.get("n0").online is True  # the leader's own heartbeat state stays
    assert "n0" not in a.fleet.node_ids({"site": "a"}) and "n1" not in a.fleet.node_ids({"site": "a"})
    b.fleet.refresh()
    assert b.fleet.get("n0").labels == {"tier": "gold"}  # not clobbered by the leader's flush
    b.fleet.delete("new1")
    a.fleet.refresh()
    assert a.fleet.authenticate(token) is None
