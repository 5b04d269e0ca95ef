"""Shared CLI plumbing: domain errors become a one-line message and a non-zero exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def run_cli(app: typer.Typer) -> None:
    from contracts.errors import AutoGLMError

    try:
        app()
    except AutoGLMError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}")
        sys.exit(2)
    except (FileNotFoundError, NotADirectoryError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
