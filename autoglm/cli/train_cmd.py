"""`autoglm train`: train adapters + the router head on the frozen base encoder.

Works the same under ``torchrun --nproc_per_node N -m autoglm train …`` (DDP; rank 0 writes
and reports).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from autoglm.cli.common import console, fail


def train(
    base: Annotated[
        Path | None,
        typer.Option(
            help="Base encoder directory (Hugging Face layout). Default: the bundled all-MiniLM-L6-v2."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Checkpoint directory to write "
            "(default: .autoglm/checkpoint, or $AUTOGLM_DATA_DIR/checkpoint)."
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option(min=1, help="Maximum number of epochs (early stopping may end sooner).")
    ] = 6,
    batch_size: Annotated[int, typer.Option(min=1, help="Global batch size, split across DDP ranks.")] = 32,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (AdamW with linear warm-up and decay).")
    ] = 2e-3,
    bottleneck: Annotated[int, typer.Option(min=1, help="Adapter bottleneck width.")] = 64,
    adapter_set: Annotated[str, typer.Option(help="Name of the adapter set to train.")] = "default",
    seed: Annotated[
        int,
        typer.Option(help="Seed for data, initialisation, shuffling and dropout (same seed, same result)."),
    ] = 0,
    max_length: Annotated[int, typer.Option(min=8, help="Maximum tokens per text.")] = 64,
    patience: Annotated[
        int,
        typer.Option(
            min=1, help="Early stopping: stop after this many epochs without validation improvement."
        ),
    ] = 2,
    data_train: Annotated[
        Path | None,
        typer.Option(
            help='Your training data, JSONL lines {"text": …, "route": …}; '
            "its routes become the label set. Default: the bundled EN/ZH generator."
        ),
    ] = None,
    data_val: Annotated[
        Path | None, typer.Option(help="Your validation data (JSONL). Default: 10% held out of --data-train.")
    ] = None,
    data_test: Annotated[
        Path | None, typer.Option(help="Your test data (JSONL). Default: the validation data.")
    ] = None,
    train_per_template: Annotated[
        int, typer.Option(min=1, help="Generator: training examples per template.")
    ] = 30,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run in --out (same options).")
    ] = False,
    tiny: Annotated[
        bool, typer.Option("--tiny", help="Smoke test: a tiny random encoder and little data.")
    ] = False,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads per process (default: CPU cores / processes).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the metrics as JSON instead of tables.")
    ] = False,
) -> None:
    """Train adapters and the router head (only they train; the base stays frozen), evaluate every
    epoch on validation, early-stop, calibrate the softmax temperature, report test accuracy
    (English and Chinese separately) and save a checkpoint."""
    from pydantic import ValidationError

    from autoglm.cli.train_report import render_evaluation, render_history
    from cloud.training import TrainConfig
    from cloud.training import train as run_training

    kwargs: dict[str, object] = {
        "base_path": base,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "bottleneck": bottleneck,
        "adapter_set": adapter_set,
        "seed": seed,
        "max_length": max_length,
        "patience": patience,
        "data_train": data_train,
        "data_val": data_val,
        "data_test": data_test,
        "train_per_template": train_per_template,
        "resume": resume,
        "tiny": tiny,
        "num_threads": threads,
    }
    if out is not None:
        kwargs["out_dir"] = out
    try:
        cfg = TrainConfig(**kwargs)  # type: ignore[arg-type]
    except ValidationError as exc:
        fail(f"invalid options: {exc}", 2)
    if base is not None and not base.is_dir():
        fail(f"--base {base}: no such directory", 2)
    main = os.environ.get("RANK", "0") == "0"
    result = run_training(cfg, progress=progress and main and not as_json)
    if not main:
        return
    if as_json:
        print(json.dumps({"checkpoint": str(result.checkpoint_dir), "metrics": result.metrics}, default=str))
        return
    render_history(console, result.history)
    render_evaluation(console, result.metrics, result.routes)
    console.print(f"wall time {result.wall_s:.0f}s · best epoch {result.best_epoch} of {result.epochs_run}")
    console.print(f"checkpoint: [bold]{result.checkpoint_dir.resolve()}[/]")


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""
    app.command(
        "train", help="Train adapters + router head on the frozen base encoder (also under torchrun for DDP)."
    )(train)
