"""The rollout state machine in-process (fake clock, instant fleet): steps, analysis verdicts,
rollback, error budget, manual actions, and that every transition is stored with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.api.container import CloudServices
from cloud.registry.schemas import VersionStatus, VersionUpdate
from cloud.rollout.schemas import AnalysisConfig, RolloutCreate
from cloud.rollout.states import TRANSITIONS, RolloutState
from contracts.errors import BadRequest, Conflict
from tests.cloud.conftest import DbTarget
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import make_settings
from tests.cloud.controller.fleetsim import Behaviour, FakeClock, InstantFleet

N = 20


@pytest.fixture
def world(tmp_path: Path, db_target: DbTarget) -> Iterator[tuple[CloudServices, InstantFleet, FakeClock]]:
    """Runs on SQLite and, when reachable, PostgreSQL (JSON columns, timestamps, transactions)."""
    clock = FakeClock()
    sim = InstantFleet()
    svc = CloudServices.build(
        make_settings(tmp_path, db_target.url), channel=sim, clock=clock, db_schema=db_target.schema
    )
    sim.fleet = svc.fleet
    for i, v in enumerate(["1.0.0", "1.1.0"]):
        svc.registry.register_dir(make_bundle(tmp_path / v, version=v, encoder_seed=i), actor="t")
    svc.registry.set_alias("tiny", "stable", "1.0.0", actor="t", reason="initial")
    for i in range(N):
        nid = f"n{i:02d}"
        svc.fleet.register(nid, {"site": "a" if i < N - 2 else "b"})
        sim.versions[nid] = "1.0.0"
    sim.heartbeats([f"n{i:02d}" for i in range(N)])
    yield svc, sim, clock
    svc.close()


def drive(svc: CloudServices, sim: InstantFleet, clock: FakeClock, rid: int, rounds: int = 60) -> str:
    """Advance the world: nodes apply commands and report traffic, time passes, the controller ticks."""
    state = ""
    for _ in range(rounds):
        sim.deliver()
        clock.advance(1.0)
        sim.heartbeats(sorted(sim.versions))
        svc.rollouts.tick()
        state = svc.rollouts.get(rid).state
        if state in ("succeeded", "aborted", "paused"):
            return state
    return state


def spec(**kw: object) -> RolloutCreate:
    base: dict[str, object] = {"model": "tiny", "version": "1.1.0", "selector": {"site": "a"}, "pause_s": 3}
    base.update(kw)
    return RolloutCreate.model_validate(base)


def test_good_version_promotes_step_by_step(world: tuple[CloudServices, InstantFleet, FakeClock]) -> None:
    svc, sim, clock = world
    r = svc.rollouts.create(spec(), actor="admin:alice")
    assert r.state == "progressing" and r.stable_version == "1.0.0"
    assert svc.registry.alias_target("tiny", "canary") == "1.1.0"
    first = [n for n, c in sim.sent if c["version"] == "1.1.0"]
    assert len(first) == 1  # 5% of 18 matching nodes, rounded up
    assert drive(svc, sim, clock, r.id) == "succeeded"
    out = svc.rollouts.get(r.id)
    matching = [f"n{i:02d}" for i in range(N - 2)]
    assert sorted(out.targets) == matching and sorted(out.applied) == matching
    assert all(sim.versions[n] == "1.1.0" for n in matching)
    assert sim.versions["n18"] == sim.versions["n19"] == "1.0.0"  # outside the selector
    # 5% -> 25% -> 50% -> 100%: 1, 5, 9, 18 nodes
    sizes = []
    seen: set[str] = set()
    for n, c in sim.sent:
        if c["version"] == "1.1.0":
            seen.add(n)
            sizes.append(len(seen))
    assert {1, 5, 9, 18} <= set(sizes)
    transitions = [(e.from_state, e.to_state, e.step_index) for e in out.events]
    assert transitions == [
        ("pending", "pending", 0),
        ("pending", "progressing", 0),
        ("progressing", "progressing", 1),
        ("progressing", "progressing", 2),
        ("progressing", "progressing", 3),
        ("progressing", "succeeded", 3),
    ]
    assert all(e.reason for e in out.events)
    assert "error rate 0.000" in out.events[2].reason
    assert svc.registry.alias_target("tiny", "stable") == "1.1.0"
    assert svc.registry.alias_target("tiny", "canary") is None
    assert svc.registry.alias_history("tiny", "stable")[-1].actor == f"rollout#{r.id}"
    assert svc.registry.get_version("tiny", "1.1.0").status == "production"


def test_bad_version_aborts_and_rolls_back(world: tuple[CloudServices, InstantFleet, FakeClock]) -> None:
    svc, sim, clock = world
    sim.behaviours["1.1.0"] = Behaviour(error_rate=0.3)
    r = svc.rollouts.create(spec(steps=[25, 100]), actor="admin:alice")
    assert drive(svc, sim, clock, r.id) == "aborted"
    out = svc.rollouts.get(r.id)
    canaries = out.targets
    assert len(canaries) == 5
    sim.deliver()  # the rollback commands reach the nodes
    assert all(sim.versions[n] == "1.0.0" for n in canaries)
    assert all(v == "1.0.0" for v in sim.versions.values())
    last = out.events[-1]
    assert last.to_state == "aborted" and "error rate 0.300 > 0.050" in last.reason
    assert sorted(last.details["rolled_back"]) == sorted(canaries)
    assert svc.registry.alias_target("tiny", "stable") == "1.0.0"


@pytest.mark.parametrize(
    ("behaviour", "needle"),
    [(Behaviour(p99_ms=40.0), "p99"), (Behaviour(fallback_rate=0.5), "fallback rate")],
)
def test_latency_and_fallback_regressions_abort(
    world: tuple[CloudServices, InstantFleet, FakeClock], behaviour: Behaviour, needle: str
) -> None:
    svc, sim, clock = world
    sim.behaviours["1.1.0"] = behaviour
    r = svc.rollouts.create(spec(steps=[25, 100]), actor="a")
    assert drive(svc, sim, clock, r.id) == "aborted"
    assert needle in svc.rollouts.get(r.id).events[-1].reason


def test_no_traffic_pauses_for_a_person(world: tuple[CloudServices, InstantFleet, FakeClock]) -> None:
    svc, sim, clock = world
    sim.behaviours["1.1.0"] = Behaviour(requests=0)
    r = svc.rollouts.create(spec(), actor="a")
    assert drive(svc, sim, clock, r.id) == "paused"
    out = svc.rollouts.get(r.id)
    assert "no verdict on no traffic" in out.events[-1].reason and out.step_index == 0
    # Traffic arrives; a person resumes; the rollout continues and finishes.
    sim.behaviours["1.1.0"] = Behaviour()
    svc.rollouts.resume(r.id, actor="admin:bob", reason="traffic is back")
    assert drive(svc, sim, clock, r.id) == "succeeded"
    ev = [e for e in svc.rollouts.get(r.id).events if e.actor == "admin:bob"]
    assert ev and ev[0].from_state == "paused" and ev[0].reason == "traffic is back"


def test_error_budget_aborts_when_nodes_cannot_apply(
    world: tuple[CloudServices, InstantFleet, FakeClock],
) -> None:
    svc, sim, clock = world
    sim.behaviours["1.1.0"] = Behaviour(refuse="GPU out of memory")
    r = svc.rollouts.create(spec(steps=[50, 100], max_failed_nodes=2), actor="a")
    assert drive(svc, sim, clock, r.id) == "aborted"
    out = svc.rollouts.get(r.id)
    assert "fleet error budget exceeded" in out.events[-1].reason
    assert set(out.failed_nodes.values()) == {"GPU out of memory"}
    assert svc.fleet.get(next(iter(out.failed_nodes))).last_error == "GPU out of memory"
    assert all(v == "1.0.0" for v in sim.versions.values())  # nobody changed version


def test_manual_pause_resume_promote_abort(world: tuple[CloudServices, InstantFleet, FakeClock]) -> None:
    svc, sim, clock = world
    r = svc.rollouts.create(spec(pause_s=1000), actor="a")
    svc.rollouts.pause(r.id, actor="admin:x", reason="looking at dashboards")
    assert svc.rollouts.get(r.id).state == "paused"
    with pytest.raises(Conflict):
        svc.rollouts.pause(r.id, actor="admin:x")  # paused -> paused is not a transition
    svc.rollouts.promote(r.id, actor="admin:x", reason="ship it", full=True)
    assert drive(svc, sim, clock, r.id) == "succeeded"
    assert all(sim.versions[f"n{i:02d}"] == "1.1.0" for i in range(N - 2))
    with pytest.raises(Conflict):
        svc.rollouts.abort(r.id, actor="admin:x")  # finished rollouts stay finished

    # A new rollout back to 1.0.0 is aborted by hand: canaries return to the stable (1.1.0).
    r2 = svc.rollouts.create(spec(version="1.0.0", steps=[50, 100], pause_s=1000), actor="a")
    drive(svc, sim, clock, r2.id, rounds=3)
    assert svc.rollouts.get(r2.id).applied
    svc.rollouts.abort(r2.id, actor="admin:x", reason="changed my mind")
    sim.deliver()
    assert all(sim.versions[f"n{i:02d}"] == "1.1.0" for i in range(N - 2))
    assert svc.rollouts.get(r2.id).events[-1].actor == "admin:x"


def test_create_validation(world: tuple[CloudServices, InstantFleet, FakeClock]) -> None:
    svc, _sim, _clock = world
    with pytest.raises(BadRequest, match="already is the stable"):
        svc.rollouts.create(spec(version="1.0.0"), actor="a")
    with pytest.raises(BadRequest, match="no nodes match"):
        svc.rollouts.create(spec(selector={"site": "zzz"}), actor="a")
    svc.registry.update_version("tiny", "1.1.0", VersionUpdate(status=VersionStatus.ARCHIVED))
    with pytest.raises(BadRequest, match="archived"):
        svc.rollouts.create(spec(), actor="a")
    svc.registry.update_version("tiny", "1.1.0", VersionUpdate(status=VersionStatus.STAGING))
    svc.rollouts.create(spec(), actor="a")
    with pytest.raises(Conflict, match="still"):
        svc.rollouts.create(spec(), actor="a")
    with pytest.raises(ValueError):
        RolloutCreate(model="tiny", version="1.1.0", steps=[50, 25, 100])
    with pytest.raises(ValueError):
        RolloutCreate(model="tiny", version="1.1.0", steps=[5, 50])


def test_transition_table_is_closed() -> None:
    assert set(TRANSITIONS) == set(RolloutState)
    for dst in TRANSITIONS.values():
        assert dst <= set(RolloutState)
    assert not TRANSITIONS[RolloutState.SUCCEEDED] and not TRANSITIONS[RolloutState.ABORTED]
    assert AnalysisConfig().min_requests > 0


def test_promote_moves_one_step_after_analysis_and_full_skips_the_rest(
    world: tuple[CloudServices, InstantFleet, FakeClock],
) -> None:
    svc, sim, clock = world
    r = svc.rollouts.create(spec(pause_s=1000), actor="a")  # a bake far longer than the test
    drive(svc, sim, clock, r.id, rounds=3)
    assert svc.rollouts.get(r.id).step_index == 0
    out = svc.rollouts.promote(r.id, actor="admin:x")  # Argo's `promote`: the next step, analysed now
    drive(svc, sim, clock, r.id, rounds=3)
    out = svc.rollouts.get(r.id)
    assert out.state == "progressing" and out.step_index == 1
    assert out.last_analysis is not None and out.last_analysis["step"] == 0
    assert any("promoted by admin:x" in e.reason for e in out.events)
    svc.rollouts.promote(r.id, actor="admin:x", full=True)  # `promote --full`: every remaining step
    assert drive(svc, sim, clock, r.id) == "succeeded"


def test_verdict_and_aliases_commit_together(
    world: tuple[CloudServices, InstantFleet, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whoever sees a rollout's verdict sees the aliases that go with it: the alias moves are in
    the verdict's transaction, so when the rollback commands leave (after that commit) the canary
    alias is already gone. (It used to be dropped after the commands were sent; an edge could roll
    back and a client read "aborted" beside ``canary: 1.1.0``.)"""
    svc, sim, clock = world
    sim.behaviours["1.1.0"] = Behaviour(error_rate=0.3)
    seen: list[tuple[str | None, str | None]] = []
    send = svc.fleet.send_commands

    def spying(items: Any, **kw: Any) -> Any:
        seen.append((svc.registry.alias_target("tiny", "canary"), svc.rollouts.get(r.id).state))
        return send(items, **kw)

    r = svc.rollouts.create(spec(steps=[25, 100]), actor="admin:alice")
    monkeypatch.setattr(svc.fleet, "send_commands", spying)
    assert drive(svc, sim, clock, r.id) == "aborted"
    assert seen and seen[-1] == (None, "aborted")  # the rollback batch
    # A good one: "succeeded" is never seen beside the old stable alias.
    sim.behaviours.clear()
    sim.deliver()
    r = svc.rollouts.create(spec(), actor="admin:alice")
    assert drive(svc, sim, clock, r.id) == "succeeded"
    events = svc.registry.alias_history("tiny", "stable")
    assert events[-1].to_version == "1.1.0" and events[-1].actor == f"rollout#{r.id}"
