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


def climate_tool() -> Tool | None:
    if not _has("skillpack.climate"):
        return None
    from skillpack import climate

    def run(city: str, month: int | None = None, quantity: str = "temperature", zh: bool = False) -> Any:
        return climate.lookup(city, month, quantity, zh=zh)

    return Tool(
        name="climate",
        description="Climate normals (WMO 1991-2020, approximate) of major cities, with their sources.",
        parameters={
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1},
                "month": {"type": ["integer", "null"], "minimum": 1, "maximum": 12},
                "quantity": {"type": "string", "minLength": 1},
                "zh": {"type": "boolean"},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        func=run,
        timeout_s=2.0,
        route=Route.CLIMATE.value,
        from_text=climate.solve,
    )


def doc_search_tool(embed: Callable[[list[str]], Any] | None = None) -> Tool | None:
    if not _has("skillpack.docsearch"):
        return None
    from skillpack import docsearch

    index: list[Any] = []  # built on first use (embedding the collection takes a moment)

    def _index() -> Any:
        if not index:
            index.append(docsearch.DocIndex(docsearch.load_documents(), embed) if embed else docsearch.default_index())
        return index[0]

    def run(query: str, k: int = 3, lang: str | None = None) -> Any:
        return {"hits": [h.to_dict() for h in _index().search(query, k, lang)]}

    def from_text(text: str) -> Any:
        from skillpack.errors import SkillError

        result = run(text)
        if not result["hits"]:
            raise SkillError(f"no document matches {text[:80]!r}")
        return result

    return Tool(
        name="doc_search",
        description="Search the shipped procedures, alarms, safety notes and definitions"
        + (" (BM25 fused with encoder embeddings)." if embed else " (BM25)."),
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 1000},
                "k": {"type": "integer", "minimum": 1, "maximum": 20},
                "lang": {"type": ["string", "null"], "enum": ["en", "zh", None]},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        func=run,
        timeout_s=30.0 if embed else 5.0,
        route=Route.DOC_SEARCH.value,
        from_text=from_text,
    )


def kg_query_tool() -> Tool | None:
    if not _has("skillpack.kg.graph") or not _has("skillpack.kg.linking"):
        return None
    from skillpack.kg.graph import default_graph
    from skillpack.kg.linking import EntityLinker

    linker: list[Any] = []

    def run(entity: str, path: list[str] | None = None) -> Any:
        graph = default_graph()
        if not path:
            eid = entity if entity in graph.entities else graph.find(entity).id
            return graph.describe(eid)
        return {"entity": entity, "path": path, "results": [e.to_dict() for e in graph.query(entity, path)]}

    def from_text(text: str) -> Any:
        from skillpack.errors import UnknownEntity

        graph = default_graph()
        if not linker:
            linker.append(EntityLinker(graph))
        mentions = linker[0].link(text)
        if not mentions:
            raise UnknownEntity(f"no plant entity found in {text[:80]!r}")
        return {
            "mentions": [m.to_dict() for m in mentions],
            "facts": [graph.describe(m.entity_id) for m in mentions[:3]],
        }

    return Tool(
        name="kg_query",
        description="Query the full plant knowledge graph: describe an entity or follow a relation path.",
        parameters={
            "type": "object",
            "properties": {
                "entity": {"type": "string", "minLength": 1, "description": "Entity id, name or alias"},
                "path": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 6},
            },
            "required": ["entity"],
            "additionalProperties": False,
        },
        func=run,
        timeout_s=5.0,
        route=Route.KG_QUERY.value,
        from_text=from_text,
    )


BUILDERS: list[Callable[[], Tool | None]] = [calculator_tool, unit_convert_tool, climate_tool, kg_query_tool]


def register_builtins(registry: ToolRegistry, *, embed: Callable[[list[str]], Any] | None = None) -> list[str]:
    names = []
    for build in [*BUILDERS, lambda: doc_search_tool(embed)]:
        tool = build()
        if tool is not None:
            registry.register(tool, replace=True)
            names.append(tool.name)
    return names
