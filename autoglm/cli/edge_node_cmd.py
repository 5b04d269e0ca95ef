"""``autoglm edge run``: a whole edge node (serving + sync + control plane [+ agent]) from settings;
``autoglm edge agent`` is the same node with the agent always on.

Wings are imported inside the command body only (``tests/test_layering.py``).
"""

from __future__ import annotations

from pathlib import Path

import typer


def _serve_node(
    bundle: Path | None,
    node_id: str | None,
    host: str | None,
    port: int | None,
    cloud_url: str | None,
    cache_dir: Path | None,
    sync: bool,
    agent: bool,
    log_level: str,
) -> None:
    """The one composition root of an edge process (``EdgeNode``), run in the foreground."""
    import asyncio
    import contextlib
    import threading

    from autoglm.cli.common import USAGE, console, fail, usage
    from autoglm.cli.edge_cmd import display_url, require_free_port
    from contracts.logging import configure_logging, level_name
    from edge.control.settings import ControlSettings
    from edge.settings import ServeSettings
    from edge.sync.settings import SyncSettings

    configure_logging(level_name(log_level, "--log-level"))
    overrides: dict[str, object] = {}
    if bundle is not None:
        if not bundle.is_dir():
            usage(f"--bundle {bundle}: no such bundle directory")
        overrides["bundle_dir"] = bundle
    for key, value in (
        ("node_id", node_id),
        ("http_host", host),
        ("http_port", port),
        ("model_cache_dir", cache_dir),
    ):
        if value is not None:
            overrides[key] = value
    if cloud_url is not None and not cloud_url.startswith(("http://", "https://")):
        usage(f"--cloud-url {cloud_url!r}: not an http(s) URL")
    control = ControlSettings(**({"control_cloud_url": cloud_url} if cloud_url else {}))  # type: ignore[arg-type]
    serve = ServeSettings(**overrides)  # type: ignore[arg-type]
    sync_settings = SyncSettings() if sync else None
    agent_settings = None
    if agent:
        from edge.agent.settings import AgentSettings

        agent_settings = AgentSettings()
    require_free_port(serve.http_host, serve.http_port, "--host/--port (AUTOGLM_EDGE_HTTP_HOST/_PORT)")

    from edge.node import EdgeNode  # after the checks: a mistake is one line before the heavy imports

    node = EdgeNode.build(
        serve, sync_settings, control=control, with_sync=sync, with_agent=agent, agent_settings=agent_settings
    )
    if node.serve.bundle_dir is None and not control.control_cloud_url and not agent:
        fail("nothing to serve: pass --bundle DIR, or --cloud-url to receive versions from the cloud", USAGE)
    started = threading.Event()

    def announce() -> None:
        started.wait()
        broker = (
            f"mqtt://{sync_settings.mqtt_host}:{sync_settings.mqtt_port}"
            if sync_settings is not None
            else "none (--no-sync)"
        )
        console.print(
            f"listening on {display_url(serve.http_host, serve.http_port)}  broker {broker}  "
            f"cloud {control.control_cloud_url or 'none'}  bundle {node.serve.bundle_dir or 'none'}"
            + ("  agent on" if agent else ""),
            highlight=False,
        )

    threading.Thread(target=announce, daemon=True, name="edge-run-announce").start()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(node.run(started))


_BUNDLE_HELP = "Start-up bundle when the cache has no last-known-good one."


def run(
    bundle: Path | None = typer.Option(None, "--bundle", "-b", help=_BUNDLE_HELP),
    node_id: str | None = typer.Option(None, "--node-id", help="Node id (AUTOGLM_EDGE_NODE_ID)."),
    host: str | None = typer.Option(None, "--host", help="Listen address (AUTOGLM_EDGE_HTTP_HOST)."),
    port: int | None = typer.Option(
        None, "--port", "-p", min=0, max=65535, help="Listen port (AUTOGLM_EDGE_HTTP_PORT)."
    ),
    cloud_url: str | None = typer.Option(
        None, "--cloud-url", help="Cloud controller URL (AUTOGLM_EDGE_CONTROL_CLOUD_URL)."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Model cache dir (AUTOGLM_EDGE_MODEL_CACHE_DIR)."
    ),
    no_sync: bool = typer.Option(
        False, "--no-sync", help="Do not connect to MQTT (no commands, no heartbeats)."
    ),
    agent: bool = typer.Option(False, "--agent", help="Also mount the reasoning agent (POST /v1/ask)."),
    log_level: str = typer.Option("INFO", "--log-level", help="Log level of the autoglm loggers."),
) -> None:
    """Run an edge node: OIP v2 serving, MQTT sync, cloud commands (desired version, traffic split),
    heartbeats, last-known-good restore."""
    _serve_node(bundle, node_id, host, port, cloud_url, cache_dir, not no_sync, agent, log_level)


def agent(
    bundle: Path | None = typer.Option(
        None, "--bundle", "-b", help=_BUNDLE_HELP + " Without any: hashing encoder + keyword router."
    ),
    node_id: str | None = typer.Option(None, "--node-id", help="Node id (AUTOGLM_EDGE_NODE_ID)."),
    host: str | None = typer.Option(None, "--host", help="Listen address (AUTOGLM_EDGE_HTTP_HOST)."),
    port: int | None = typer.Option(
        None, "--port", "-p", min=0, max=65535, help="Listen port (AUTOGLM_EDGE_HTTP_PORT)."
    ),
    cloud_url: str | None = typer.Option(
        None, "--cloud-url", help="Cloud controller URL (AUTOGLM_EDGE_CONTROL_CLOUD_URL)."
    ),
    cache_dir: Path | None = typer.Option(
        None, "--cache-dir", help="Model cache dir (AUTOGLM_EDGE_MODEL_CACHE_DIR)."
    ),
    sync: bool = typer.Option(
        True,
        "--sync/--no-sync",
        help="Connect to MQTT (AUTOGLM_EDGE_MQTT_*): commands, heartbeats, memory/cache and hard examples.",
    ),
    log_level: str = typer.Option("INFO", "--log-level", help="Log level of the autoglm loggers."),
) -> None:
    """Alias of ``autoglm edge run --agent``: an edge node with the agent mounted (POST /v1/ask,
    /v1/feedback) next to OIP v2, cloud commands, heartbeats and last-known-good."""
    _serve_node(bundle, node_id, host, port, cloud_url, cache_dir, sync, True, log_level)


def register(app: typer.Typer) -> None:
    from autoglm.cli.edge_cmd import edge_app

    edge_app.command("run")(run)
    edge_app.command("agent")(agent)
