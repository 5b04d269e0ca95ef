"""`autoglm edge …`: the edge node's commands (a typer sub-app other edge areas add to).

Wings are imported inside command bodies only (``tests/test_layering.py``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import typer

edge_app = typer.Typer(
    name="edge",
    help="Edge node: serve a bundle over the Open Inference Protocol, sync with the cloud, run the agent.",
    no_args_is_help=True,
)

PORT_HELP = "Listen port (AUTOGLM_EDGE_HTTP_PORT)."


def display_url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}:{port}"


def require_free_port(host: str, port: int, flag: str) -> None:
    """One usage line when the address cannot be bound (in use, or not an address of this host)."""
    import socket

    from autoglm.cli.common import usage

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        usage(f"{flag}: cannot listen on {host!r}: {exc.strerror}")
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            usage(f"{flag}: cannot listen on {host}:{port}: {exc.strerror or exc}")


def watch_first_load(server: Any, service: Any, settings: Any, outcome: dict[str, str]) -> None:
    """Say where the server listens once it does, then stop it if the first bundle cannot load."""
    from autoglm.cli.common import console, print_error

    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.should_exit:
        return
    console.print(
        f"listening on {display_url(settings.http_host, settings.http_port)} (bundle {settings.bundle_dir})",
        highlight=False,
    )
    while not server.should_exit:
        if service.ready:
            m = service.active
            assert m is not None
            console.print(f"serving {m.name}@{m.version} adapter set {m.adapter_set}", highlight=False)
            return
        last = service.last_load
        if last is not None and last.error:
            outcome["error"] = f"{settings.bundle_dir}: the bundle did not load: {last.error}"
            print_error(outcome["error"])
            server.should_exit = True
            return
        time.sleep(0.05)


@edge_app.command("serve")
def serve(
    bundle: Path | None = typer.Option(
        None, "--bundle", "-b", help="Bundle directory to serve (AUTOGLM_EDGE_BUNDLE_DIR)."
    ),
    host: str | None = typer.Option(None, "--host", help="Listen address (AUTOGLM_EDGE_HTTP_HOST)."),
    port: int | None = typer.Option(None, "--port", "-p", min=0, max=65535, help=PORT_HELP),
    adapter_set: str | None = typer.Option(None, "--adapter-set", help="Adapter set of the bundle to serve."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        "-w",
        min=1,
        max=64,
        help="Worker processes on the port, each with its own model "
        "(SO_REUSEPORT; AUTOGLM_EDGE_HTTP_WORKERS). >1: no hot swap over HTTP.",
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="Log level of the autoglm loggers."),
) -> None:
    """Serve a bundle: OIP v2 REST (KServe/Triton clients work), dynamic batching, result cache, /metrics.
    Exits 1 when the bundle cannot load."""
    from autoglm.cli.common import fail, usage
    from contracts.logging import configure_logging, level_name
    from contracts.manifest import MANIFEST_FILE
    from edge.settings import ServeSettings

    overrides: dict[str, object] = {}
    if bundle is not None:
        if not bundle.is_dir():
            usage(f"--bundle {bundle}: no such bundle directory")
        overrides["bundle_dir"] = bundle
    if host is not None:
        overrides["http_host"] = host
    if port is not None:
        overrides["http_port"] = port
    if adapter_set is not None:
        overrides["serve_adapter_set"] = adapter_set
    if workers is not None:
        overrides["http_workers"] = workers
    configure_logging(level_name(log_level, "--log-level"))
    settings = ServeSettings(**overrides)  # type: ignore[arg-type]
    if settings.bundle_dir is None:
        usage("no bundle: pass --bundle DIR or set AUTOGLM_EDGE_BUNDLE_DIR")
    flag = "--bundle" if bundle is not None else "AUTOGLM_EDGE_BUNDLE_DIR"
    if not Path(settings.bundle_dir).is_dir():
        usage(f"{flag} {settings.bundle_dir}: no such bundle directory")
    if not (Path(settings.bundle_dir) / MANIFEST_FILE).is_file():
        usage(f"{flag} {settings.bundle_dir}: not a bundle (no {MANIFEST_FILE})")
    require_free_port(settings.http_host, settings.http_port, "--host/--port (AUTOGLM_EDGE_HTTP_HOST/_PORT)")

    if settings.http_workers > 1:
        from autoglm.cli.common import console
        from edge.http.workers import check_workers, serve_workers

        check_workers(settings)  # ConfigError: one line, exit 2
        console.print(
            f"starting {settings.http_workers} workers on "
            f"{display_url(settings.http_host, settings.http_port)} (bundle {settings.bundle_dir})",
            highlight=False,
        )
        code = serve_workers(
            settings,
            level_name(log_level, "--log-level"),
            say=lambda line: console.print(line, highlight=False),
        )
        if code:
            raise typer.Exit(code)
        return

    import uvicorn  # after the checks: a mistake is one line before the heavy imports

    from edge.http.app import create_app
    from edge.http.server import uvicorn_config
    from edge.serving.service import InferenceService

    service = InferenceService.from_settings(settings)
    server = uvicorn.Server(
        uvicorn_config(create_app(service, settings), settings.http_host, settings.http_port)
    )
    outcome: dict[str, str] = {}
    threading.Thread(
        target=watch_first_load,
        args=(server, service, settings, outcome),
        daemon=True,
        name="edge-serve-watch",
    ).start()
    server.run()
    if outcome.get("error"):
        raise typer.Exit(1)
    if not server.started:
        fail(f"the server did not start on {settings.http_host}:{settings.http_port} (port in use?)")


def register(app: typer.Typer) -> None:
    """Attach ``autoglm edge`` to the root app."""
    app.add_typer(edge_app, name="edge")
