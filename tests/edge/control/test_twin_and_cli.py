"""KubeEdge twin deltas take the command path (real Mosquitto standing in for the EventBus),
and ``autoglm edge run`` starts a whole node as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edge.control.settings import ControlSettings
from edge.http.server import free_port
from edge.node import EdgeNode
from edge.sync.settings import SyncSettings
from edge.sync.twin import twin_delta_topic, twin_update_topic
from tests.edge.conftest import MODEL, Bundles, settings_for, wait_ready
from tests.edge.control.helpers import Cloud
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary
from tests.sync.conftest import RawClient, wait_until


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto binary not installed")
def test_twin_desired_version_is_applied(cloud: Cloud, bundles: Bundles, tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker").start()
    watcher = RawClient(broker, "eventbus-watch")
    watcher.subscribe(twin_update_topic("factory", "press-7"))
    serve = settings_for(
        tmp_path, node_id="edge-twin", http_host="127.0.0.1", http_port=free_port(), bundle_dir=bundles.v1
    )
    sync = SyncSettings(
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_outbox_path=tmp_path / "outbox.sqlite3",
        mqtt_heartbeat_interval_s=0.2,
        mqtt_kubeedge_enabled=True,
        mqtt_kubeedge_host=broker.host,
        mqtt_kubeedge_port=broker.port,
        mqtt_kubeedge_namespace="factory",
        mqtt_kubeedge_device="press-7",
    )
    control = ControlSettings(control_cloud_url=cloud.url, control_node_token=cloud.node_token("edge-twin"))
    node = EdgeNode.build(serve, sync, control).start()
    try:
        wait_ready(node.url)
        assert node.sync is not None and node.sync.twin is not None and node.sync.twin.wait_connected(30)
        delta = {"event_id": "e1", "timestamp": 1, "twin": {}, "delta": {"desired_model_version": "1.1.0"}}
        watcher.publish(twin_delta_topic("factory", "press-7"), json.dumps(delta).encode())

        def serving() -> str:
            return str(httpx.get(f"{node.url}/v2/models/{MODEL}").json()["versions"][0])

        wait_until(lambda: serving() == "1.1.0", 30, "the twin's desired version to serve")
        assert node.control.applied[-1] == {
            "model": MODEL,
            "version": "1.1.0",
            "ok": True,
            "detail": "applied",
        }

        def reported() -> bool:  # the twin's actual value follows
            return any(
                json.loads(p)["twin"].get("model_version", {}).get("actual", {}).get("value") == "1.1.0"
                for _, p in list(watcher.messages)
            )

        wait_until(reported, 10, "twin actual model_version 1.1.0")
    finally:
        node.stop()
        watcher.close()
        broker.stop()


def test_cli_edge_run_serves_a_bundle(bundles: Bundles, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "AUTOGLM_EDGE_PROVIDERS": '["cpu"]', "AUTOGLM_EDGE_ORT_INTRA_OP_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoglm",
            "edge",
            "run",
            "--bundle",
            str(bundles.v1),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-sync",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--node-id",
            "edge-cli",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + "/v2/health/live").status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                return False

        wait_until(up, 60, "autoglm edge run to listen")
        wait_ready(url)
        assert httpx.get(f"{url}/v2/models/{MODEL}").json()["versions"] == ["1.0.0"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_node_with_agent_answers_and_reports_agent_heartbeat_fields(bundles: Bundles, tmp_path: Path) -> None:
    from edge.agent.settings import AgentSettings

    serve = settings_for(
        tmp_path, node_id="edge-agent", http_host="127.0.0.1", http_port=free_port(), bundle_dir=bundles.v1
    )
    agent = AgentSettings(agent_memory_db=tmp_path / "memory.sqlite3", agent_cloud_url="http://127.0.0.1:9")
    node = EdgeNode.build(
        serve, control=ControlSettings(), with_sync=False, with_agent=True, agent_settings=agent
    ).start()
    try:
        wait_ready(node.url)
        r = httpx.post(f"{node.url}/v1/ask", json={"text": "what is 12 * 7"}, timeout=30)
        assert r.status_code == 200, r.text
        assert "1.0.0" in r.json()["model_version"]
        doc = node.heartbeat()
        assert doc["model_version"] == "1.0.0" and doc["requests"] >= 1
        assert doc["agent_requests"] == 1 and "fallback_rate" in doc
    finally:
        node.stop()
