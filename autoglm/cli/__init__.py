"""``autoglm``: sub-commands grouped by side.

Each side's commands live in their own module and register themselves on the root app. No
module here imports torch, onnx or a wing at import time; commands import inside their body.
Errors are one line on stderr (``autoglm.cli.common.run_cli``): exit 2 for usage, 1 for failures.
"""

from __future__ import annotations

import typer

from autoglm.cli import (
    ask_cmd,
    bench_cmd,
    bundle_cmd,
    cloud_cmd,
    config_cmd,
    demo_cmd,
    edge_cmd,
    edge_node_cmd,
    export_cmd,
    route_cmd,
    train_cmd,
)
from autoglm.cli.common import run_cli

app = typer.Typer(
    name="autoglm",
    help="Open-AutoGLM Edge: train adapters, export bundles, run the cloud controller and edge agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("open-autoglm-edge")
        except PackageNotFoundError:
            v = "0+source"
        typer.echo(f"autoglm {v}")
        raise typer.Exit()


@app.callback()
def root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Open-AutoGLM Edge: train adapters, export bundles, run the cloud controller and edge agents."""


for module in (
    train_cmd,
    route_cmd,
    export_cmd,
    bundle_cmd,
    cloud_cmd,
    edge_cmd,
    demo_cmd,
    bench_cmd,
    ask_cmd,
    edge_node_cmd,
    config_cmd,
):
    module.register(app)


def main() -> None:
    run_cli(app)
