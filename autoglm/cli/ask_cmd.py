"""``autoglm ask``: ask the edge agent, in-process or on a running node (``--url``); ``autoglm
feedback``: tell a running node whether an answer was right (``POST /v1/feedback``). Serving the
agent is ``autoglm edge agent`` = ``autoglm edge run --agent`` (``edge_node_cmd.py``). Wings are
imported inside command bodies only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from autoglm.cli.common import FAILURE, USAGE, console, fail, print_json, usage


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


def feedback(
    text: str = typer.Argument(..., help="The question the answer was given to (as asked)."),
    url: str = typer.Option(
        ..., "--url", help="Edge node URL that answered it (e.g. http://127.0.0.1:8000)."
    ),
    wrong: bool = typer.Option(
        ..., "--wrong/--right", help="Reject the answer (queued as a hard example) or confirm it."
    ),
    route: str | None = typer.Option(
        None, "--route", help="With --wrong: the route the question should have taken (a training label)."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="AUTOGLM_EDGE_HTTP_ADMIN_TOKEN",
        help="Edge admin token: needed with --route; shares graph-path feedback with the fleet.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the whole response as JSON."),
) -> None:
    """Tell a running edge node whether its answer to TEXT was right (POST /v1/feedback): --wrong
    queues it as a hard example for the cloud's learning loop, --route names the right route."""
    if not text.strip():
        usage("TEXT: the question is empty")
    if not url.startswith(("http://", "https://")):
        usage(f"--url {url!r}: not an http(s) URL")
    if route is not None and not wrong:
        usage("--route names the right route of a wrong answer: use it with --wrong")
    import httpx

    body: dict[str, Any] = {"text": text, "correct": not wrong, "route": route}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.post(f"{url.rstrip('/')}/v1/feedback", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        fail(f"edge node at {url} not reachable: {exc}")
    if r.status_code != 200:
        try:
            msg = str(r.json().get("error") or r.text)
        except ValueError:
            msg = r.text
        fail(f"{r.status_code}: {msg[:300]}", USAGE if r.status_code in (400, 422) else FAILURE)
    doc = r.json()
    if as_json:
        print_json(doc)
        return
    hx = doc.get("hard_example")
    if hx is not None:
        console.print(
            f"hard example queued (id {hx['id']}, answered {hx['route'] or '?'} at {hx['confidence']:.3f})"
            if hx.get("queued")
            else f"no hard example queued: {hx.get('reason', '')}",
            highlight=False,
        )
    if doc.get("path"):
        console.print(f"graph path {' → '.join(doc['path'])}: prior {doc['prior']}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("feedback")(feedback)
