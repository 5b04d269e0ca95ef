"""Export errors (domain errors: the CLI prints the message and exits non-zero)."""

from __future__ import annotations

from typing import Any

from contracts.errors import AutoGLMError


class ExportError(AutoGLMError):
    """The checkpoint cannot be exported as asked; the message names the problem."""

    status = 422
    code = "export_failed"


class GuardFailed(ExportError):
    """The int8 graph does not meet the accuracy guard. ``report`` holds the numbers."""

    code = "int8_guard_failed"

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report
