"""Tool registry: named tools with a JSON-Schema for their parameters, a description, a timeout.

Tools come from three places: the built-ins (``cloud.tools.builtins``), plugins advertised as
Python entry points in the group ``autoglm.tools`` (each entry point loads a :class:`Tool`, a
list of them, or a zero-argument callable returning either), and ``register`` calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from jsonschema import Draft202012Validator

from contracts.errors import BadRequest, Conflict, NotFound
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.tools")

ENTRY_POINT_GROUP = "autoglm.tools"
ToolFunc = Callable[..., Any]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    func: ToolFunc = field(repr=False)
    timeout_s: float | None = None
    route: str | None = None  # the route label this tool serves (route-and-call)
    from_text: Callable[[str], Any] | None = field(default=None, repr=False)  # raw text -> result

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise BadRequest(f"tool name {self.name!r} must be letters, digits, '_' or '-'")
        Draft202012Validator.check_schema(self.parameters)
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise BadRequest(f"tool {self.name}: timeout must be positive")

    def describe(self, default_timeout_s: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "timeout_s": self.timeout_s or default_timeout_s,
            "route": self.route,
            "accepts_text": self.from_text is not None,
        }


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        self._lock = threading.Lock()

    def register(self, tool: Tool, *, replace: bool = False) -> None:
        with self._lock:
            if tool.name in self._tools and not replace:
                raise Conflict(f"tool {tool.name!r} is already registered")
            self._tools[tool.name] = tool
            self._validators[tool.name] = Draft202012Validator(tool.parameters)

    def get(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise NotFound(f"no tool named {name!r} (have: {', '.join(sorted(self._tools)) or 'none'})")
        return tool

    def validator(self, name: str) -> Draft202012Validator:
        self.get(name)
        return self._validators[name]

    def all(self) -> list[Tool]:
        return [self._tools[k] for k in sorted(self._tools)]

    def by_route(self, route: str) -> Tool | None:
        for tool in self._tools.values():
            if tool.route == route:
                return tool
        return None

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Register every tool advertised in ``group``; a broken plugin is logged and skipped."""
        loaded: list[str] = []
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
                if callable(obj) and not isinstance(obj, Tool):
                    obj = obj()
                tools = obj if isinstance(obj, list | tuple) else [obj]
                for tool in tools:
                    if not isinstance(tool, Tool):
                        raise TypeError(f"entry point {ep.name} gave {type(tool).__name__}, not a Tool")
                    self.register(tool, replace=True)
                    loaded.append(tool.name)
            except Exception as exc:
                log.error("tool plugin failed to load", extra={"entry_point": ep.name, "error": str(exc)})
        return loaded
