"""Built-in tools for the default routes, wrapping the shared skill pack.

Each builder returns ``None`` when its skill-pack module is not installed, so the service starts
with whatever is available (``GET /api/v1/tools`` lists what is).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from cloud.tools.registry import Tool, ToolRegistry
from contracts.routes import Route


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def calculator_tool() -> Tool | None:
    if not _has("skillpack.calculator"):
        return None
    from skillpack import calculator

    def run(expression: str) -> Any:
        return calculator.evaluate(expression)

    return Tool(
        name="calculator",
        description="Safe arithmetic (no Python eval): + - * / ^ %, parentheses, sqrt, avg, min, max.",
        parameters={
            "type": "object",
            "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 500}},
            "required": ["expression"],
            "additionalProperties": False,
        },
        func=run,
        timeout_s=2.0,
        route=Route.CALCULATOR.value,
        from_text=calculator.solve,
    )


def unit_convert_tool() -> Tool | None:
    if not _has("skillpack.units"):
        return None
    from skillpack import units

    def run(value: float, from_unit: str, to_unit: str) -> Any:
        return units.convert(value, from_unit, to_unit)

    return Tool(
        name="unit_convert",
        description="Convert a quantity between units (length, mass, temperature, pressure, ...).",
        parameters={
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "from_unit": {"type": "string", "minLength": 1},
                "to_unit": {"type": "string", "minLength": 1},
            },
            "required": ["value", "from_unit", "to_unit"],
            "additionalProperties": False,
        },
        func=run,
        timeout_s=2.0,
        route=Route.UNIT_CONVERT.value,
        from_text=units.solve,
    )


BUILDERS: list[Callable[[], Tool | None]] = [calculator_tool, unit_convert_tool]


def register_builtins(registry: ToolRegistry) -> list[str]:
    names = []
    for build in BUILDERS:
        tool = build()
        if tool is not None:
            registry.register(tool, replace=True)
            names.append(tool.name)
    return names
