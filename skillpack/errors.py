"""Errors raised by the skills. All derive from ``contracts.errors`` domain errors, so every
protocol adapter (edge HTTP, cloud tool service, CLI) maps them to a status in one place."""

from __future__ import annotations

from contracts.errors import BadRequest, Forbidden, NotFound


class SkillError(BadRequest):
    """A skill could not act on the request (bad or missing arguments). HTTP 400."""

    code = "skill_error"


class NoExpressionFound(SkillError):
    """The text holds no arithmetic the calculator can read."""

    code = "no_expression"


class UnsafeExpression(SkillError):
    """The expression contains something other than numbers, operators and whitelisted functions."""

    code = "unsafe_expression"


class CalculationError(SkillError):
    """The expression is well formed but cannot be evaluated (division by zero, overflow)."""

    code = "calculation_error"


class UnitError(SkillError):
    """Unknown unit, missing value, or units of different dimensions."""

    code = "unit_error"


class UnknownCity(NotFound):
    """The city is not in the shipped climate normals."""

    code = "unknown_city"


class UnknownEntity(NotFound):
    """No knowledge-graph entity matches the name."""

    code = "unknown_entity"


class UnknownDevice(NotFound):
    """No device on this node matches the name."""

    code = "unknown_device"


class ControlRefused(Forbidden):
    """A device command was refused (not allow-listed, not confirmed, bad value). HTTP 403;
    ``reason`` is a short machine-readable cause (``not_confirmed``, ``not_allowed`` …)."""

    code = "control_refused"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
