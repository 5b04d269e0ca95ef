"""Grafana dashboards: well-formed, shipped by the monitoring component, and every metric their
PromQL uses exists on a RUNNING cloud controller's and edge node's ``/metrics``.

Real parts: Mosquitto on a free port, the cloud controller (uvicorn, SQLite, MQTT hub, loops),
one ``EdgeNode`` (OIP v2 server on real ONNX Runtime with an exported tiny bundle, MQTT sync,
control plane, the reasoning agent). A metric counts as present when its family is exposed
(labelled metrics without samples still show their ``# TYPE``), so names are checked without
waiting for every code path to have run.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.edge.conftest import (
    Bundles,
    bundles,  # noqa: F401  (fixture)
    settings_for,
    wait_ready,
)
from tests.manifests.kube import KUBEEDGE, find, overlay
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary

DASHBOARDS = KUBEEDGE / "components" / "monitoring" / "dashboards"
FILES = sorted(DASHBOARDS.glob("*.json"))
METRIC = re.compile(r"\b((?:autoglm|process|python)_[a-z0-9_]+)\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "untyped": ("",),
}


def _targets(dash: dict) -> Iterator[tuple[str, str]]:
    for p in dash["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t["expr"]


def _used_metrics() -> dict[str, set[str]]:
    """metric name -> dashboards using it (template variable queries included)."""
    used: dict[str, set[str]] = {}
    for f in FILES:
        dash = json.loads(f.read_text())
        exprs = [e for _, e in _targets(dash)]
        exprs += [v["definition"] for v in dash["templating"]["list"] if v.get("type") == "query"]
        for expr in exprs:
            for name in METRIC.findall(expr):
                used.setdefault(name, set()).add(f.name)
    return used


def exposed(text: str) -> set[str]:
    """Every series name a Prometheus exposition offers (families expanded by their type)."""
    names: set[str] = set()
    for fam in text_string_to_metric_families(text):
        names.add(fam.name)
        names.update(fam.name + s for s in SUFFIXES.get(fam.type, ("",)))
        names.update(s.name for s in fam.samples)
    return names


def test_dashboards_are_well_formed() -> None:
    assert {f.stem for f in FILES} == {"edge-serving", "sync-outbox", "fleet-rollouts", "cloud-api"}
    uids = set()
    for f in FILES:
        dash = json.loads(f.read_text())
        assert dash["title"].startswith("AutoGLM Edge / ") and dash["uid"] not in uids
        uids.add(dash["uid"])
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{f.name}: duplicate panel ids"
        assert any(
            v["name"] == "datasource" and v["type"] == "datasource" for v in dash["templating"]["list"]
        )
        for title, expr in _targets(dash):
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), (f.name, title)
            assert METRIC.search(expr), f"{f.name}: panel {title!r} queries no metric of ours"
        for p in dash["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (f.name, p["title"])


def test_monitoring_component_ships_the_dashboards() -> None:
    cm = find(overlay("prod"), "ConfigMap", "autoglm-grafana-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert set(cm["data"]) == {f.name for f in FILES}
    for f in FILES:
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text())


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto binary not installed")
def test_every_dashboard_metric_exists_on_a_running_cloud_and_edge(
    tmp_path: Path,
    bundles: Bundles,  # noqa: F811
) -> None:
    from cloud.api.container import CloudServices
    from edge.agent.settings import AgentSettings
    from edge.control.settings import ControlSettings
    from edge.http.server import free_port
    from edge.node import EdgeNode
    from edge.sync.settings import SyncSettings
    from tests.cloud.controller.conftest import BOOTSTRAP, LiveServer, make_settings

    broker = MosquittoBroker(tmp_path / "broker").start()
    try:
        settings = make_settings(
            tmp_path,
            mqtt_enabled=True,
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            rollout_tick_s=0.2,
            fleet_flush_interval_s=0.5,
        )
        svc = CloudServices.build(settings)
        with LiveServer(svc, run_loops=True) as server:
            home = tmp_path / "node"
            serve = settings_for(
                home, node_id="edge-dash", http_host="127.0.0.1", http_port=free_port(), bundle_dir=bundles.v1
            )
            sync = SyncSettings(
                mqtt_host=broker.host,
                mqtt_port=broker.port,
                mqtt_outbox_path=home / "outbox.sqlite3",
                mqtt_heartbeat_interval_s=0.25,
            )
            control = ControlSettings(control_cloud_url=server.url, control_bootstrap_token=BOOTSTRAP)
            agent = AgentSettings(agent_memory_db=home / "memory.sqlite3")
            node = EdgeNode.build(serve, sync, control, with_agent=True, agent_settings=agent).start()
            try:
                wait_ready(node.url)
                httpx.post(f"{node.url}/v1/ask", json={"text": "what is 12 * 7"}, timeout=30)
                deadline = time.monotonic() + 30  # the node registers and its first heartbeat arrives
                while svc.fleet.heartbeats_ingested == 0 and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert svc.fleet.heartbeats_ingested > 0, "no heartbeat reached the cloud"
                cloud = exposed(httpx.get(f"{server.url}/metrics", timeout=10).text)
                edge = exposed(httpx.get(f"{node.url}/metrics", timeout=10).text)
            finally:
                node.stop()
        svc.close()
    finally:
        broker.stop()
    assert "process_resident_memory_bytes" in edge and "autoglm_edge_sync_outbox_records" in edge
    assert not any(n.startswith("autoglm_cloud_") for n in edge)
    missing = {}
    for name, where in sorted(_used_metrics().items()):
        if name.startswith("autoglm_cloud_"):
            ok = name in cloud
        elif name.startswith("autoglm_edge_"):
            ok = name in edge
        else:  # process_* / python_*: both sides expose them
            ok = name in cloud and name in edge
        if not ok:
            missing[name] = sorted(where)
    assert not missing, f"dashboard metrics not exposed by the running applications: {missing}"
