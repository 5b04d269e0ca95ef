"""The agent on an edge node reuses the node's cloud URL and credential (no separate agent settings)."""

from __future__ import annotations

from pathlib import Path

import httpx

from edge.agent.settings import AgentSettings
from edge.control.settings import ControlSettings
from edge.http.server import free_port
from edge.node import EdgeNode
from tests.cloud.controller.conftest import BOOTSTRAP
from tests.edge.conftest import Bundles, settings_for, wait_ready
from tests.edge.control.helpers import Cloud


def test_agent_uses_the_nodes_cloud_url_and_registered_token(
    cloud: Cloud, bundles: Bundles, tmp_path: Path
) -> None:
    serve = settings_for(
        tmp_path,
        node_id="edge-agent-reuse",
        http_host="127.0.0.1",
        http_port=free_port(),
        bundle_dir=bundles.v1,
    )
    control = ControlSettings(control_cloud_url=cloud.url, control_bootstrap_token=BOOTSTRAP)
    agent = AgentSettings(agent_memory_db=tmp_path / "memory.sqlite3")  # no agent_cloud_url / token
    node = EdgeNode.build(
        serve, control=control, with_sync=False, with_agent=True, agent_settings=agent
    ).start()
    try:
        wait_ready(node.url)
        client = node.agent.cloud
        assert client.base_url == cloud.url and client.has_token
        header = client._client.headers["Authorization"]  # the node's own token, from its registration
        r = httpx.get(f"{cloud.url}/api/v1/tools", headers={"Authorization": header})
        assert r.status_code == 200, r.text  # the cloud accepts it for tool calls
    finally:
        node.stop()


def test_the_agents_own_settings_override_the_nodes(cloud: Cloud, bundles: Bundles, tmp_path: Path) -> None:
    serve = settings_for(
        tmp_path,
        node_id="edge-agent-own",
        http_host="127.0.0.1",
        http_port=free_port(),
        bundle_dir=bundles.v1,
    )
    control = ControlSettings(
        control_cloud_url=cloud.url, control_node_token=cloud.node_token("edge-agent-own")
    )
    agent = AgentSettings(
        agent_memory_db=tmp_path / "memory.sqlite3",
        agent_cloud_url="http://127.0.0.1:9",
        agent_cloud_token="agent-token",
    )
    node = EdgeNode.build(
        serve, control=control, with_sync=False, with_agent=True, agent_settings=agent
    ).start()
    try:
        wait_ready(node.url)
        assert node.agent.cloud.base_url == "http://127.0.0.1:9"
        assert node.agent.cloud._client.headers["Authorization"] == "Bearer agent-token"
    finally:
        node.stop()
