"""Rollouts against a simulated fleet of in-process edge agents (real EdgeSync) over a real
Mosquitto, driven through the real HTTP API of a running controller: a good version is promoted
step by step, a bad one is aborted and rolled back, one without traffic pauses for a person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud.api.container import CloudServices
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import BOOTSTRAP, LiveServer, make_settings
from tests.cloud.controller.fleetsim import Behaviour, MqttEdge
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary
from tests.support.wait import wait_for

pytestmark = pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto binary not installed")

N = 8
BEHAVIOURS = {
    "1.0.0": Behaviour(p99_ms=10.0),
    "1.1.0": Behaviour(p99_ms=11.0),  # good
    "1.2.0": Behaviour(error_rate=0.4),  # bad
    "1.3.0": Behaviour(requests=0),  # loaded but gets no traffic
}


@pytest.fixture
def fleet_world(tmp_path: Path) -> Iterator[tuple[LiveServer, list[MqttEdge]]]:
    broker = MosquittoBroker(tmp_path / "broker").start()
    settings = make_settings(
        tmp_path,
        mqtt_enabled=True,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        rollout_tick_s=0.1,
        heartbeat_timeout_s=3.0,
        fleet_flush_interval_s=0.5,
    )
    svc = CloudServices.build(settings)
    for i, v in enumerate(BEHAVIOURS):
        svc.registry.register_dir(make_bundle(tmp_path / "bundles" / v, version=v, encoder_seed=i), actor="t")
    svc.registry.set_alias("tiny", "stable", "1.0.0", actor="t", reason="initial")
    edges: list[MqttEdge] = []
    with LiveServer(svc, run_loops=True) as server:
        try:
            # Half the nodes register over HTTP with labels; the rest just appear over MQTT.
            for i in range(N // 2):
                r = httpx.post(
                    f"{server.url}/api/v1/nodes/register",
                    json={"node_id": f"edge-{i}", "labels": {"site": "sz"}},
                    headers={"Authorization": f"Bearer {BOOTSTRAP}"},
                )
                assert r.status_code == 201
            for i in range(N):
                edges.append(
                    MqttEdge(
                        f"edge-{i}", broker.host, broker.port, tmp_path / "edges", BEHAVIOURS, "1.0.0"
                    ).start()
                )
            wait_for(lambda: len(svc.fleet.list_nodes(online=True)) == N, what="all edges online")
            yield server, edges
        finally:
            for e in edges:
                e.stop()
            broker.stop()
    svc.close()


def _rollout(c: httpx.Client, version: str, **kw: Any) -> int:
    body = {
        "model": "tiny",
        "version": version,
        "steps": [25, 50, 100],
        "pause_s": 0.6,
        "analysis": {"min_requests": 30},
        **kw,
    }
    r = c.post("/api/v1/rollouts", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _wait_state(c: httpx.Client, rid: int, states: set[str], timeout: float = 40.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        out = c.get(f"/api/v1/rollouts/{rid}").json()
        return out if out["state"] in states else None

    return dict(wait_for(done, timeout, f"rollout {rid} to reach {states}"))


def test_rollouts_over_real_mqtt(fleet_world: tuple[LiveServer, list[MqttEdge]]) -> None:
    server, edges = fleet_world
    svc = server.svc
    assert {n.registered_via for n in svc.fleet.list_nodes()} == {"bootstrap", "mqtt"}
    assert httpx.get(f"{server.url}/readyz").json()["checks"] == {"database": True, "mqtt_connected": True}
    with server.client() as c:
        # 1. A good version goes 25% -> 50% -> 100% and becomes stable.
        rid = _rollout(c, "1.1.0")
        out = _wait_state(c, rid, {"succeeded", "aborted", "paused"})
        assert out["state"] == "succeeded", out["events"][-1]
        assert all(e.version == "1.1.0" for e in edges)
        steps = [e["step_index"] for e in out["events"] if e["from_state"] == e["to_state"] == "progressing"]
        assert steps == [1, 2]
        assert c.get("/api/v1/models/tiny").json()["aliases"]["stable"] == "1.1.0"
        wait_for(
            lambda: all(n["current_version"] == "1.1.0" for n in c.get("/api/v1/nodes").json()),
            what="fleet view to show 1.1.0",
        )

        # 2. A bad version is aborted at its first step and its canaries roll back to 1.1.0.
        rid = _rollout(c, "1.2.0")
        out = _wait_state(c, rid, {"succeeded", "aborted", "paused"})
        assert out["state"] == "aborted" and "error rate" in out["events"][-1]["reason"]
        canaries = out["targets"]
        assert len(canaries) == 2  # 25% of 8
        touched = [e for e in edges if "1.2.0" in e.applied]
        assert sorted(e.node_id for e in touched) == sorted(canaries)
        wait_for(lambda: all(e.version == "1.1.0" for e in edges), what="rollback to 1.1.0")
        assert all(e.applied[-1] == "1.1.0" for e in touched)
        assert c.get("/api/v1/models/tiny").json()["aliases"] == {"stable": "1.1.0"}

        # 3. A version nobody sends traffic to gets no verdict: the rollout pauses for a person.
        rid = _rollout(c, "1.3.0")
        out = _wait_state(c, rid, {"succeeded", "aborted", "paused"})
        assert out["state"] == "paused" and "no verdict on no traffic" in out["events"][-1]["reason"]
        r = c.post(f"/api/v1/rollouts/{rid}/abort", json={"reason": "nobody uses it"})
        assert r.status_code == 200 and r.json()["state"] == "aborted"
        assert r.json()["events"][-1]["actor"] == "admin:alice"
        wait_for(lambda: all(e.version == "1.1.0" for e in edges), what="rollback after manual abort")

    # Acks travelled back over MQTT and were recorded per command.
    acked = [cmd for cmd in svc.fleet.commands(limit=500) if cmd.status == "acked"]
    assert len(acked) >= N + 2
    # A node that dies without a goodbye: the broker publishes its Last Will; the fleet follows.
    edges[-1].sync.stop(graceful=False)
    wait_for(lambda: not svc.fleet.get(edges[-1].node_id).online, what="Last Will marks the node offline")
    # A node that leaves cleanly says so (its offline status).
    edges[-2].stop()
    wait_for(lambda: not svc.fleet.get(edges[-2].node_id).online, what="node offline")
    assert len(svc.fleet.list_nodes(online=True)) == N - 2
