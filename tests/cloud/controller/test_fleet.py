"""Fleet state: heartbeats, offline sweep, MQTT-only nodes, persistence across restarts."""

from __future__ import annotations

from pathlib import Path

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from cloud.fleet.service import parse_selector
from tests.cloud.controller.conftest import make_settings
from tests.cloud.controller.fleetsim import FakeClock


def test_heartbeats_sweep_and_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = make_settings(tmp_path, heartbeat_timeout_s=10.0)
    svc = CloudServices.build(settings, channel=RecordingChannel(), clock=clock)
    token = svc.fleet.register("a", {"site": "x", "gpu": "orin"})
    svc.fleet.on_heartbeat(
        "a", {"node_id": "a", "model_version": "1.0.0", "requests": 3, "latency_p99_ms": 7.5}
    )
    svc.fleet.on_status("ghost", True, {"group": "line-2"})  # never registered: appears via MQTT
    assert svc.fleet.get("ghost").registered_via == "mqtt" and svc.fleet.get("ghost").labels == {
        "group": "line-2"
    }
    assert svc.fleet.get("a").online and svc.fleet.get("a").current_version == "1.0.0"
    assert [n.node_id for n in svc.fleet.list_nodes(parse_selector("gpu=orin"))] == ["a"]
    clock.advance(5)
    assert svc.fleet.sweep() == []
    clock.advance(6)
    assert sorted(svc.fleet.sweep()) == ["a", "ghost"]  # 11 s without a heartbeat
    assert not svc.fleet.get("a").online
    samples = svc.fleet.samples(["a"], since=0)
    assert [(s.version, s.requests, s.p99_ms) for s in samples] == [("1.0.0", 3, 7.5)]
    assert svc.fleet.flush() == 2
    svc.close()

    again = CloudServices.build(settings, channel=RecordingChannel(), clock=clock)
    try:
        a = again.fleet.get("a")
        assert (a.labels, a.current_version, a.registered_via) == (
            {"site": "x", "gpu": "orin"},
            "1.0.0",
            "bootstrap",
        )
        assert again.fleet.authenticate(token) == "a"  # credentials survive a restart (stored hashed)
        assert again.fleet.get("ghost").registered_via == "mqtt"
        new_token = again.fleet.register("a", {})
        assert again.fleet.authenticate(token) is None and again.fleet.authenticate(new_token) == "a"
    finally:
        again.close()


def test_a_late_heartbeat_does_not_rewind_the_node_version(tmp_path: Path) -> None:
    """A heartbeat built before the newest one taken (delivered late) keeps its traffic sample but
    not its model version; a clock that went back by more than the window is taken as is."""
    from cloud.fleet.service import STALE_HEARTBEAT_WINDOW_MS

    clock = FakeClock()
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel(), clock=clock)
    try:
        svc.fleet.register("a", {})

        def beat(ts_ms: int, version: str, requests: int = 1) -> None:
            svc.fleet.on_heartbeat(
                "a", {"node_id": "a", "ts_ms": ts_ms, "model_version": version, "requests": requests}
            )

        beat(1_000_000, "1.1.0")
        beat(1_005_000, "4.0.0", 7)
        beat(1_002_000, "1.1.0", 2)  # built before the 4.0.0 one, processed after it
        assert svc.fleet.get("a").current_version == "4.0.0"
        assert [s.requests for s in svc.fleet.samples(["a"], since=0)] == [1, 7, 2]  # traffic kept
        beat(1_010_000, "1.1.0")  # a newer one moves it
        assert svc.fleet.get("a").current_version == "1.1.0"
        beat(1_010_000 - STALE_HEARTBEAT_WINDOW_MS - 1, "1.2.0")  # the node's clock went back
        assert svc.fleet.get("a").current_version == "1.2.0"
        beat(0, "1.3.0")  # untimed heartbeats are taken in arrival order
        assert svc.fleet.get("a").current_version == "1.3.0"
    finally:
        svc.close()
