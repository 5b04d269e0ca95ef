"""``autoglm ask``: ask the edge agent, in-process or on a running node (``--url``). Serving the
agent is ``autoglm edge agent`` = ``autoglm edge run --agent`` (``edge_node_cmd.py``). Wings are
imported inside command bodies only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from autoglm.cli.common import console, fail, print_json, usage


def _print_answer(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(doc)
        return
    console.print(f"[bold]{doc['answer']}[/]")
    console.print(
        f"route={doc['route']} confidence={doc['confidence']:.3f} source={doc['source']} "
        f"model={doc['model_version']} latency={doc['latency_ms']:.1f} ms"
    )
    for s in doc["steps"]:
        fields = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("kind", "t_ms"))
        console.print(f"  [dim]{s['t_ms']:8.2f} ms[/] {s['kind']}: {fields[:220]}", highlight=False)


def ask(
    text: str = typer.Argument(..., help="The question or command."),
    url: str | None = typer.Option(
        None, "--url", help="Edge node URL (e.g. http://127.0.0.1:8000); omit to run the agent in-process."
    ),
    session: str | None = typer.Option(
        None, "--session", "-s", help="Session id (short-term memory, 'and line 3?')."
    ),
    confirm: bool = typer.Option(False, "--confirm", help="Confirm a device command."),
    priority: int = typer.Option(0, "--priority", min=0, max=15, help="0 = normal; higher is served first."),
    bundle: Path | None = typer.Option(
        None, "--bundle", "-b", help="In-process: route with this bundle (ONNX Runtime)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the whole response as JSON."),
) -> None:
    """Ask the edge agent: answer, route + confidence, source, the reasoning steps, latency."""
    if not text.strip():
        usage("TEXT: the question is empty")
    if url is not None and not url.startswith(("http://", "https://")):
        usage(f"--url {url!r}: not an http(s) URL")
    if bundle is not None and not bundle.is_dir():
        usage(f"--bundle {bundle}: no such bundle directory")
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

    from edge.agent.settings import AgentSettings

    settings = AgentSettings()  # a wrong setting is one line before the heavy imports

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
            agent = build_agent(settings, service=service, bundle_dir=bundle)
            resp = await agent.ask(
                AskRequest(text=text, session_id=session, confirm=confirm, priority=priority)
            )
            await agent.cloud.aclose()
            return resp.model_dump(mode="json")
        finally:
            if service is not None:
                await service.stop()

    _print_answer(asyncio.run(run()), as_json)


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
