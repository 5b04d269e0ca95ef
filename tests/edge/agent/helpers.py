"""Shared helpers of the agent tests: building agents on a temp dir, a real cloud tool service
(uvicorn on a free port) from the cloud controller's own test fixtures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edge.agent.agent import Agent
from edge.agent.factory import build_agent
from edge.agent.settings import AgentSettings
from edge.agent.types import AskRequest, AskResponse


def make_agent(tmp_path: Path, name: str = "node-a", **kw: Any) -> Agent:
    settings_kw = {k: v for k, v in kw.items() if k.startswith("agent_")}
    other = {k: v for k, v in kw.items() if not k.startswith("agent_")}
    settings = AgentSettings(agent_memory_db=tmp_path / f"{name}-memory.sqlite3", **settings_kw)
    return build_agent(settings, node_id=name, **other)


def ask(agent: Agent, text: str, **kw: Any) -> AskResponse:
    return asyncio.run(agent.ask(AskRequest(text=text, **kw)))


def kinds(resp: AskResponse) -> list[str]:
    return [s["kind"] for s in resp.steps]


def step(resp: AskResponse, kind: str) -> dict[str, Any]:
    found = [s for s in resp.steps if s["kind"] == kind]
    assert found, f"no {kind} step in {kinds(resp)}"
    return found[0]
