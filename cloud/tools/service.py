"""Calling tools: parameter validation (4xx), a per-tool timeout (504), route-and-call from text.

Tools run in a bounded thread pool so a slow tool cannot block the event loop; on timeout the
caller gets 504 at once (the worker thread finishes in the background, Python threads cannot be
killed). Domain errors raised by a tool keep their status (e.g. skillpack's 400/404).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from cloud.tools.registry import Tool, ToolRegistry
from contracts.errors import AutoGLMError, BadRequest, GatewayTimeout, NotFound, Unprocessable
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.tools")

TOOL_CALLS = Counter("autoglm_cloud_tool_calls_total", "Tool calls", ["tool", "outcome"])
TOOL_SECONDS = Histogram("autoglm_cloud_tool_call_seconds", "Tool call duration", ["tool"])


class TextRouter(Protocol):
    """Picks the tool for a raw text request (``None``: no tool fits)."""

    def route(self, text: str, registry: ToolRegistry) -> str | None: ...


class ExtractorRouter:
    """Default router: the first tool (in ``order``) whose text extractor reads the request.

    A model-based router (the bundle's route head) can replace it through ``ToolService``.
    """

    def __init__(self, order: list[str] | None = None) -> None:
        self.order = order or ["calculator", "unit_convert", "climate", "kg_query", "doc_search"]

    def route(self, text: str, registry: ToolRegistry) -> str | None:
        names = [t.name for t in registry.all() if t.from_text is not None]
        ordered = [n for n in self.order if n in names] + [n for n in names if n not in self.order]
        for name in ordered:
            tool = registry.get(name)
            assert tool.from_text is not None
            try:
                tool.from_text(text)
            except AutoGLMError:
                continue
            except (ValueError, KeyError, LookupError):
                continue
            return name
        return None


class ToolService:
    def __init__(
        self,
        registry: ToolRegistry,
        *,
        default_timeout_s: float = 5.0,
        router: TextRouter | None = None,
        max_workers: int = 16,
    ) -> None:
        self.registry = registry
        self.default_timeout_s = default_timeout_s
        self.router: TextRouter = router or ExtractorRouter()
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tool")

    def describe(self) -> list[dict[str, Any]]:
        return [t.describe(self.default_timeout_s) for t in self.registry.all()]

    def validate(self, name: str, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise Unprocessable(f"tool {name}: parameters must be a JSON object")
        errors = sorted(self.registry.validator(name).iter_errors(params), key=lambda e: list(e.path))
        if errors:
            parts = []
            for err in errors[:5]:
                where = "/".join(str(p) for p in err.path) or "<params>"
                parts.append(f"{where}: {err.message}")
            raise Unprocessable(f"tool {name}: invalid parameters ({'; '.join(parts)})")
        return params

    async def call(self, name: str, params: Any) -> dict[str, Any]:
        tool = self.registry.get(name)
        checked = self.validate(name, params)
        result = await self._run(tool, lambda: tool.func(**checked))
        return {"tool": name, "result": result}

    async def route_and_call(self, text: str, route: str | None = None) -> dict[str, Any]:
        if not text.strip():
            raise BadRequest("text is empty")
        tool: Tool | None
        if route:
            tool = self.registry.by_route(route) or (
                self.registry.get(route) if route in self._names() else None
            )
            if tool is None:
                raise NotFound(f"no tool serves route {route!r}")
        else:
            name = await asyncio.get_running_loop().run_in_executor(
                self._pool, self.router.route, text, self.registry
            )
            if name is None:
                raise Unprocessable(f"no tool can answer {text[:80]!r}")
            tool = self.registry.get(name)
        if tool.from_text is None:
            raise Unprocessable(f"tool {tool.name} cannot be called from raw text")
        extractor = tool.from_text
        result = await self._run(tool, lambda: extractor(text))
        return {"tool": tool.name, "route": tool.route, "result": result}

    def _names(self) -> set[str]:
        return {t.name for t in self.registry.all()}

    async def _run(self, tool: Tool, fn: Any) -> Any:
        timeout = tool.timeout_s or self.default_timeout_s
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        fut = loop.run_in_executor(self._pool, fn)
        try:
            result = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            TOOL_CALLS.labels(tool=tool.name, outcome="timeout").inc()
            raise GatewayTimeout(f"tool {tool.name} did not finish within {timeout:g} s") from None
        except AutoGLMError:
            TOOL_CALLS.labels(tool=tool.name, outcome="error").inc()
            raise
        except (ValueError, TypeError) as exc:
            TOOL_CALLS.labels(tool=tool.name, outcome="error").inc()
            raise BadRequest(f"tool {tool.name}: {exc}") from exc
        finally:
            TOOL_SECONDS.labels(tool=tool.name).observe(time.perf_counter() - t0)
        TOOL_CALLS.labels(tool=tool.name, outcome="ok").inc()
        return _jsonable(result)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _jsonable(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return value
