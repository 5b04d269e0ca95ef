"""Tool service over HTTP: call by name, route-and-call from raw text, 4xx on bad parameters,
504 on timeout, plugins from Python entry points."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from cloud.tools.builtins import register_builtins
from cloud.tools.registry import Tool, ToolRegistry
from contracts.errors import BadRequest
from tests.cloud.controller.conftest import LiveServer, make_settings

RELEASE = threading.Event()


def _slow(seconds: float) -> dict[str, float]:
    RELEASE.wait(seconds)
    return {"slept": seconds}


def _echo(text: str, times: int = 1) -> dict[str, str]:
    return {"echo": " ".join([text] * times)}


@pytest.fixture
def tool_server(tmp_path: Path) -> Iterator[LiveServer]:
    reg = ToolRegistry()
    register_builtins(reg)
    reg.register(
        Tool(
            name="slow",
            description="sleeps",
            func=_slow,
            timeout_s=0.3,
            parameters={
                "type": "object",
                "properties": {"seconds": {"type": "number"}},
                "required": ["seconds"],
            },
        )
    )
    reg.register(
        Tool(
            name="echo",
            description="echoes",
            func=_echo,
            parameters={
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "times": {"type": "integer", "minimum": 1, "maximum": 3},
                },
                "required": ["text"],
                "additionalProperties": False,
            },
        )
    )
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel(), tool_registry=reg)
    RELEASE.clear()
    with LiveServer(svc) as server:
        yield server
    RELEASE.set()
    svc.close()


def test_call_by_name_and_schema_errors(tool_server: LiveServer) -> None:
    with tool_server.client() as c:
        listed = {t["name"]: t for t in c.get("/api/v1/tools").json()}
        assert {"calculator", "unit_convert", "echo", "slow"} <= set(listed)
        assert listed["calculator"]["parameters"]["required"] == ["expression"]
        assert listed["slow"]["timeout_s"] == 0.3
        r = c.post("/api/v1/tools/echo/call", json={"params": {"text": "hi", "times": 2}})
        assert r.status_code == 200 and r.json() == {"tool": "echo", "result": {"echo": "hi hi"}}
        r = c.post("/api/v1/tools/calculator/call", json={"params": {"expression": "2 * (3 + 4)"}})
        assert r.json()["result"]["value"] == 14
        r = c.post("/api/v1/tools/echo/call", json={"params": {"text": "hi", "times": 9}})
        assert r.status_code == 422 and "times" in r.json()["error"]
        r = c.post("/api/v1/tools/echo/call", json={"params": {"txt": "hi"}})
        assert r.status_code == 422 and "'text' is a required property" in r.json()["error"]
        assert c.post("/api/v1/tools/nope/call", json={"params": {}}).status_code == 404
        r = c.post("/api/v1/tools/calculator/call", json={"params": {"expression": "__import__('os')"}})
        assert r.status_code == 400  # the calculator never evaluates Python
        r = c.post(
            "/api/v1/tools/unit_convert/call",
            json={"params": {"value": 1, "from_unit": "kg", "to_unit": "m"}},
        )
        assert r.status_code == 400


def test_timeout_is_504_and_does_not_block_other_calls(tool_server: LiveServer) -> None:
    with tool_server.client() as c:
        r = c.post("/api/v1/tools/slow/call", json={"params": {"seconds": 30}})
        assert r.status_code == 504 and r.json()["code"] == "timeout"
        assert "did not finish within 0.3 s" in r.json()["error"]
        assert c.post("/api/v1/tools/echo/call", json={"params": {"text": "still here"}}).status_code == 200


def test_route_and_call_from_raw_text(tool_server: LiveServer) -> None:
    with tool_server.client() as c:
        r = c.post("/api/v1/tools/route", json={"text": "convert 5 km to miles"})
        assert r.status_code == 200 and r.json()["tool"] == "unit_convert"
        assert abs(r.json()["result"]["result"] - 3.10686) < 1e-3
        r = c.post("/api/v1/tools/route", json={"text": "what is 12 times 3 plus 4"})
        assert r.json()["tool"] == "calculator" and r.json()["result"]["value"] == 40
        # The edge's own route prediction is honoured.
        r = c.post("/api/v1/tools/route", json={"text": "how much is 2+2", "route": "calculator"})
        assert r.json()["result"]["value"] == 4
        assert c.post("/api/v1/tools/route", json={"text": "x", "route": "no_such_route"}).status_code == 404
        r = c.post("/api/v1/tools/route", json={"text": "hi, thanks!"})
        assert r.status_code == 422 and "no tool can answer" in r.json()["error"]


@pytest.mark.skipif(
    not __import__("importlib").util.find_spec("skillpack.climate"), reason="skillpack.climate missing"
)
def test_builtin_climate_doc_search_kg(tool_server: LiveServer) -> None:
    with tool_server.client() as c:
        names = {t["name"] for t in c.get("/api/v1/tools").json()}
        if "climate" in names:
            r = c.post("/api/v1/tools/route", json={"text": "average temperature in Tokyo in August"})
            assert r.status_code == 200 and r.json()["tool"] == "climate", r.text
            assert r.json()["result"]["source"]
        if "doc_search" in names:
            r = c.post(
                "/api/v1/tools/doc_search/call",
                json={"params": {"query": "lockout tagout procedure", "k": 2}},
            )
            assert r.status_code == 200 and 1 <= len(r.json()["result"]["hits"]) <= 2


def test_plugins_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "autoglm_test_plugin.py").write_text(
        "from cloud.tools.registry import Tool\n"
        "def make():\n"
        "    return [Tool(name='shout', description='upper-case', func=lambda text: text.upper(),\n"
        "                 parameters={'type': 'object', 'properties': {'text': {'type': 'string'}}})]\n"
        "broken = 42\n"
    )
    dist = tmp_path / "autoglm_test_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: autoglm-test-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[autoglm.tools]\nshout = autoglm_test_plugin:make\nbroken = autoglm_test_plugin:broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = ToolRegistry()
    loaded = reg.load_entry_points()
    assert loaded == ["shout"]  # the broken plugin is skipped, not fatal
    assert reg.get("shout").func(text="hi") == "HI"
    sys.modules.pop("autoglm_test_plugin", None)


def test_tool_definitions_are_checked() -> None:
    with pytest.raises(BadRequest):
        Tool(name="bad name!", description="", parameters={"type": "object"}, func=_echo)
    with pytest.raises(Exception, match="is not valid"):
        Tool(name="bad_schema", description="", parameters={"type": "nonsense"}, func=_echo)


def test_doc_search_with_encoder_embeddings(tmp_path: Path) -> None:
    pytest.importorskip("skillpack.docsearch")
    from cloud.model.base import make_tiny_base
    from cloud.tools.builtins import doc_search_tool
    from cloud.tools.embedding import BaseEncoderEmbedder

    embed = BaseEncoderEmbedder(make_tiny_base(tmp_path / "base", seed=0))
    vectors = embed(["conveyor jam", "safety gloves"])
    assert vectors.shape[0] == 2 and abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4  # unit length
    tool = doc_search_tool(embed)
    assert tool is not None and "embeddings" in tool.description
    hits = tool.func(query="conveyor jam alarm", k=3)["hits"]
    assert 1 <= len(hits) <= 3 and all(h["id"] for h in hits)


def test_edge_cloud_client_against_the_tool_service(tool_server: LiveServer) -> None:
    """The edge's fallback client (edge.agent.cloud_client) speaks this API with a node token."""
    import asyncio

    import httpx

    client_mod = pytest.importorskip("edge.agent.cloud_client")
    from tests.cloud.controller.conftest import BOOTSTRAP

    token = httpx.post(
        f"{tool_server.url}/api/v1/nodes/register",
        json={"node_id": "edge-tools"},
        headers={"Authorization": f"Bearer {BOOTSTRAP}"},
    ).json()["token"]

    async def go() -> tuple[object, object]:
        client = client_mod.CloudClient(tool_server.url, token, timeout_s=5.0, total_budget_s=10.0)
        try:
            routed = await client.route_and_call("convert 5 km to miles")
            called = await client.call("calculator", {"expression": "6 * 7"})
            return routed, called
        finally:
            await client.aclose()

    routed, called = asyncio.run(go())
    assert routed.tool == "unit_convert" and abs(routed.result["result"] - 3.10686) < 1e-3  # type: ignore[attr-defined]
    assert called.result["value"] == 42  # type: ignore[attr-defined]
