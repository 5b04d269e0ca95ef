"""``autoglm ask`` in-process (hashing encoder, no cloud) prints the answer with its steps;
``autoglm edge agent`` is ``autoglm edge run --agent`` (the whole EdgeNode with the agent)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from autoglm.cli import app
from cloud.sync.hub import CloudSync
from edge.http.server import free_port
from tests.edge.conftest import MODEL, Bundles, settings_for
from tests.support.mosquitto import MosquittoBroker, mosquitto_binary
from tests.sync.conftest import cloud_settings, wait_until


def test_autoglm_ask_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["ask", "convert 37 °C to Fahrenheit", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["source"] == "local_tool" and doc["answer"] == "37 °C = 98.6 °F"
    assert doc["steps"][0]["kind"] == "route"
    assert (tmp_path / "edge" / "memory.sqlite3").is_file()


def test_autoglm_ask_unreachable_edge_fails_cleanly() -> None:
    result = CliRunner().invoke(app, ["ask", "hi", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "not reachable" in result.output  # 1: a failure, not a usage error


def test_edge_agent_is_an_alias_of_edge_run_with_the_agent() -> None:
    from autoglm.cli import edge_node_cmd
    from autoglm.cli.edge_cmd import edge_app

    names = [c.name for c in edge_app.registered_commands]
    assert names.count("agent") == 1  # one definition: the EdgeNode alias, not a second wiring
    assert "run" in names
    out = CliRunner().invoke(app, ["edge", "agent", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for opt in ("--bundle", "--node-id", "--cloud-url", "--cache-dir", "--no-sync", "--port"):
        assert opt in out.output
    assert edge_node_cmd.agent.__doc__ and "edge run --agent" in edge_node_cmd.agent.__doc__


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto binary not installed")
def test_cli_edge_agent_node_answers_acks_commands_and_reports_serving_fields(
    bundles: Bundles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``autoglm edge agent`` as a subprocess is the whole node: /v1/ask (asked through
    ``autoglm ask --url``), serving + agent heartbeat fields, and cloud commands acked."""
    broker = MosquittoBroker(tmp_path / "broker").start()
    hub = CloudSync(cloud_settings(broker, tmp_path)).start()
    beats: list[dict[str, Any]] = []
    hub.on_heartbeat(lambda n, p: beats.append(p))
    port = free_port()
    env = {
        **os.environ,
        "AUTOGLM_EDGE_PROVIDERS": '["cpu"]',
        "AUTOGLM_EDGE_ORT_INTRA_OP_THREADS": "1",
        "AUTOGLM_DATA_DIR": str(tmp_path / "data"),
        "AUTOGLM_EDGE_MQTT_HOST": broker.host,
        "AUTOGLM_EDGE_MQTT_PORT": str(broker.port),
        "AUTOGLM_EDGE_MQTT_HEARTBEAT_INTERVAL_S": "0.2",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoglm",
            "edge",
            "agent",
            "--bundle",
            str(bundles.v1),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--node-id",
            "edge-cli-agent",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/v2/health/ready").status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                return False

        wait_until(up, 90, "autoglm edge agent to serve its bundle")
        monkeypatch.setenv("AUTOGLM_DATA_DIR", str(tmp_path / "client"))
        res = CliRunner().invoke(app, ["ask", "convert 37 °C to Fahrenheit", "--url", url, "--json"])
        assert res.exit_code == 0, res.output
        doc = json.loads(res.output)
        assert doc["answer"] == "37 °C = 98.6 °F" and "1.0.0" in doc["model_version"]

        wait_until(
            lambda: any(b.get("agent_requests", 0) >= 1 for b in beats), 30, "a heartbeat with the ask"
        )
        hb = next(b for b in beats if b.get("agent_requests", 0) >= 1)
        assert hb["model_version"] == "1.0.0" and hb["model_name"] == MODEL
        assert "fallback_rate" in hb and "latency_p99_ms" in hb
        # "requests" counts the serving requests of one heartbeat window (a delta), "agent_requests" is a
        # running total: the ask's encoder call may fall in an earlier window than the first beat that
        # shows the ask, so the windows are summed (the fresh-clone run at 4544e30 saw 0 in that beat)
        wait_until(
            lambda: sum(int(b.get("requests", 0)) for b in list(beats)) >= 1,
            30,
            "the ask's serving request counted in a heartbeat window",
        )

        cid = hub.send_command(
            "edge-cli-agent", {"type": "set_desired_version", "model": MODEL, "version": "1.0.0"}
        )
        ack = hub.wait_command_ack(cid, 30)
        assert ack is not None and ack.ok is True, ack
        assert ack.result["version"] == "1.0.0" and ack.result["detail"] == "already serving"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        hub.stop()
        broker.stop()


def test_node_with_the_agent_and_no_model_routes_by_keywords(tmp_path: Path) -> None:
    """No bundle and no cloud (``autoglm edge agent`` with nothing to serve): the node still
    answers /v1/ask with the hashing encoder + keyword router."""
    from edge.agent.settings import AgentSettings
    from edge.control.settings import ControlSettings
    from edge.node import EdgeNode

    serve = settings_for(tmp_path, node_id="edge-kw", http_host="127.0.0.1", http_port=free_port())
    agent = AgentSettings(agent_memory_db=tmp_path / "memory.sqlite3")
    node = EdgeNode.build(
        serve, control=ControlSettings(), with_sync=False, with_agent=True, agent_settings=agent
    ).start()
    try:
        r = httpx.post(f"{node.url}/v1/ask", json={"text": "what is 12 * 7"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "local_tool" and "84" in r.json()["answer"]
        assert node.heartbeat()["agent_requests"] == 1
    finally:
        node.stop()
