"""`autoglm bundle` commands (filled in by the issue that owns them)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this side's commands to the root app."""
