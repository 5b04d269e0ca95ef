"""`autoglm edge …`: the edge node's commands (a typer sub-app other edge areas add to).

Wings are imported inside command bodies only (``tests/test_layering.py``).
"""

from __future__ import annotations

from pathlib import Path

import typer

edge_app = typer.Typer(
    name="edge",
    help="Edge node: serve a bundle over the Open Inference Protocol, sync with the cloud, run the agent.",
    no_args_is_help=True,
)


@edge_app.command("serve")
def serve(
    bundle: Path | None = typer.Option(None, "--bundle", "-b", help="Bundle directory to serve (AUTOGLM_EDGE_BUNDLE_DIR)."),
    host: str | None = typer.Option(None, "--host", help="Listen address (AUTOGLM_EDGE_HTTP_HOST)."),
    port: int | None = typer.Option(None, "--port", "-p", help="Listen port (AUTOGLM_EDGE_HTTP_PORT)."),
    adapter_set: str | None = typer.Option(None, "--adapter-set", help="Adapter set of the bundle to serve."),
    log_level: str = typer.Option("INFO", "--log-level", help="Log level of the autoglm loggers."),
) -> None:
    """Serve a bundle: OIP v2 REST (KServe/Triton clients work), dynamic batching, result cache, /metrics."""
    from contracts.logging import configure_logging
    from edge.http.server import serve as run_server
    from edge.settings import ServeSettings

    overrides: dict[str, object] = {}
    if bundle is not None:
        if not bundle.is_dir():
            from autoglm.cli.common import fail

            fail(f"{bundle}: no such bundle directory")
        overrides["bundle_dir"] = bundle
    if host is not None:
        overrides["http_host"] = host
    if port is not None:
        overrides["http_port"] = port
    if adapter_set is not None:
        overrides["serve_adapter_set"] = adapter_set
    configure_logging(log_level)
    settings = ServeSettings(**overrides)  # type: ignore[arg-type]
    if settings.bundle_dir is None:
        from autoglm.cli.common import fail

        fail("no bundle: pass --bundle DIR or set AUTOGLM_EDGE_BUNDLE_DIR")
    run_server(settings)


def register(app: typer.Typer) -> None:
    """Attach ``autoglm edge`` to the root app."""
    app.add_typer(edge_app, name="edge")
