"""`autoglm demo`: the main job end to end. Stage 1 trains (or reuses) the adapters; later
stages (export, serve, ask) are appended after it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autoglm.cli.common import console


def demo(
    out: Annotated[
        Path | None,
        typer.Option(help="Checkpoint directory for stage 1 (default: .autoglm/demo/checkpoint)."),
    ] = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="Train again even when a finished checkpoint with the same configuration exists.",
        ),
    ] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the demo's number of epochs.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    stages: Annotated[
        str,
        typer.Option(
            help="Comma-separated stages to run: train,export,route,fleet,loop,ask "
            "(later ones need export and fleet)."
        ),
    ] = "train,export,route,fleet,loop,ask",
    allow_degraded: Annotated[
        bool, typer.Option("--allow-degraded", help="Keep an int8 bundle that fails the accuracy guard.")
    ] = False,
    reexport: Annotated[
        bool,
        typer.Option("--reexport", help="Export again even when bundles from the same checkpoint exist."),
    ] = False,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="Leave the fleet and the web console up after the last stage (Ctrl-C stops).",
        ),
    ] = False,
) -> None:
    """Run the demo: train (or reuse) adapters, export a signed int8 bundle, roll it out to two edge
    nodes, ask them."""
    from autoglm.cli.common import fail
    from autoglm.demo.errors import StageFailed
    from autoglm.demo.train_stage import default_demo_checkpoint, run_stage_train

    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    overrides = {"epochs": epochs} if epochs is not None else {}
    ckpt = out if out is not None else default_demo_checkpoint()
    if "train" in chosen:
        ckpt = run_stage_train(console, out_dir=out, retrain=retrain, progress=progress, **overrides)
    later = tuple(s for s in chosen if s != "train")
    if not later:
        return
    from autoglm.demo.runner import run_demo

    try:
        # bundles, keys and the run dir always live under .autoglm/demo (bundles are keyed by checkpoint hash)
        run_demo(
            console,
            ckpt,
            default_demo_checkpoint().parent,
            stages=later,
            allow_degraded=allow_degraded,
            reexport=reexport,
            keep_running=keep_running,
        )
    except StageFailed as exc:
        fail(str(exc), code=1)


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""
    app.command(
        "demo",
        help="Run the product end to end: train adapters, export a signed int8 bundle, "
        "roll it out to two edge nodes, ask them.",
    )(demo)
