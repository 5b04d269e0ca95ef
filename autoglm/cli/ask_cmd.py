"""``autoglm ask`` (ask the edge agent) and ``autoglm edge agent`` (serve the inference API and
the agent together). Wings are imported inside command bodies only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from autoglm.cli.common import console, fail


def _print_answer(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(doc, ensure_ascii=False, default=str))
        return
    console.print(f"[bold]{doc['answer']}[/]")
    console.print(f"route={doc['route']} confidence={doc['confidence']:.3f} source={doc['source']} "
                  f"model={doc['model_version']} latency={doc['latency_ms']:.1f} ms")
    for s in doc["steps"]:
        fields = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("kind", "t_ms"))
        console.print(f"  [dim]{s['t_ms']:8.2f} ms[/] {s['kind']}: {fields[:220]}", highlight=False)


def ask(
    text: str = typer.Argument(..., help="The question or command."),
    url: str | None = typer.Option(None, "--url", help="Edge node URL (e.g. http://127.0.0.1:8000); omit to run the agent in-process."),
    session: str | None = typer.Option(None, "--session", "-s", help="Session id (short-term memory, 'and line 3?')."),
    confirm: bool = typer.Option(False, "--confirm", help="Confirm a device command."),
    priority: int = typer.Option(0, "--priority", help="0 = normal; higher is served first."),
    bundle: Path | None = typer.Option(None, "--bundle", "-b", help="In-process: route with this bundle (ONNX Runtime)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole response as JSON."),
) -> None:
    """Ask the edge agent: answer, route + confidence, source, the reasoning steps, latency."""
    body: dict[str, Any] = {"text": text, "session_id": session, "confirm": confirm, "priority": priority}
    if url:
        import httpx

        try:
            r = httpx.post(f"{url.rstrip('/')}/v1/ask", json=body, timeout=30)
        except httpx.HTTPError as exc:
            fail(f"edge node at {url} not reachable: {exc}")
        if r.status_code != 200:
            fail(f"{r.status_code}: {r.text[:300]}")
        _print_answer(r.json(), as_json)
        return
    import asyncio

    from edge.agent.factory import build_agent
    from edge.agent.types import AskRequest

    async def run() -> dict[str, Any]:
        service = None
        if bundle is not None:
            from edge.serving.service import InferenceService
            from edge.settings import ServeSettings

            service = InferenceService.from_settings(ServeSettings(bundle_dir=bundle))
            await service.start(str(bundle))
        try:
            agent = build_agent(service=service, bundle_dir=bundle)
            resp = await agent.ask(AskRequest(text=text, session_id=session, confirm=confirm, priority=priority))
            await agent.cloud.aclose()
            return resp.model_dump(mode="json")
        finally:
            if service is not None:
                await service.stop()

    _print_answer(asyncio.run(run()), as_json)


def agent_serve(
    bundle: Path | None = typer.Option(None, "--bundle", "-b", help="Bundle to serve (none: hashing encoder + keyword router)."),
    host: str | None = typer.Option(None, "--host", help="Listen address (AUTOGLM_EDGE_HTTP_HOST)."),
    port: int | None = typer.Option(None, "--port", "-p", help="Listen port (AUTOGLM_EDGE_HTTP_PORT)."),
    sync: bool = typer.Option(False, "--sync", help="Sync memory/cache and hard examples over MQTT (AUTOGLM_EDGE_MQTT_*)."),
    log_level: str = typer.Option("INFO", "--log-level", help="Log level of the autoglm loggers."),
) -> None:
    """Serve the OIP v2 inference API with the agent mounted (POST /v1/ask, /v1/feedback)."""
    import uvicorn

    from contracts.logging import configure_logging
    from edge.agent.factory import build_agent
    from edge.agent.http import make_router
    from edge.http.app import create_app
    from edge.http.server import uvicorn_config
    from edge.serving.service import InferenceService
    from edge.settings import ServeSettings

    configure_logging(log_level)
    overrides: dict[str, object] = {}
    if bundle is not None:
        overrides["bundle_dir"] = bundle
    if host is not None:
        overrides["http_host"] = host
    if port is not None:
        overrides["http_port"] = port
    settings = ServeSettings(**overrides)  # type: ignore[arg-type]
    service = InferenceService.from_settings(settings)
    edge_sync = None
    if sync:
        from edge.agent.settings import AgentSettings
        from edge.memory.store import MemoryStore
        from edge.sync.agent import EdgeSync

        store = MemoryStore(AgentSettings().agent_memory_db, settings.node_id)
        edge_sync = EdgeSync(node_id=settings.node_id, store=store).start()
    agent = build_agent(service=service if settings.bundle_dir else None, sync=edge_sync, node_id=settings.node_id,
                        bundle_dir=settings.bundle_dir)
    if edge_sync is not None:
        edge_sync.set_heartbeat_provider(agent.metrics.heartbeat_fields)
    app = create_app(service, settings)
    app.include_router(make_router(agent))
    try:
        uvicorn.Server(uvicorn_config(app, settings.http_host, settings.http_port)).run()
    finally:
        if edge_sync is not None:
            edge_sync.stop()


def register(app: typer.Typer) -> None:
    from autoglm.cli.edge_cmd import edge_app

    app.command("ask")(ask)
    edge_app.command("agent")(agent_serve)
