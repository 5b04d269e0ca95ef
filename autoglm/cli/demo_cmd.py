"""`autoglm demo`: the main job end to end. Stage 1 trains (or reuses) the adapters; later
stages (export, serve, ask) are appended after it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autoglm.cli.common import console


def demo(
    out: Annotated[Path | None, typer.Option(help="Checkpoint directory for stage 1 (default: .autoglm/demo/checkpoint).")] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train again even when a finished checkpoint with the same configuration exists.")] = False,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the demo's number of epochs.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
) -> None:
    """Run the demo: train adapters on the bundled MiniLM and print the evaluation (EN/ZH)."""
    from autoglm.demo.train_stage import run_stage_train

    overrides = {"epochs": epochs} if epochs is not None else {}
    run_stage_train(console, out_dir=out, retrain=retrain, progress=progress, **overrides)


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""
    app.command("demo", help="Run the main job end to end: train adapters on the bundled MiniLM and evaluate (EN/ZH).")(demo)
