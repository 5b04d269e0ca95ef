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
            index.append(
                docsearch.DocIndex(docsearch.load_documents(), embed) if embed else docsearch.default_index()
            )
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
    """The plant knowledge graph, answered by the edge's own multi-hop reasoner
    (``skillpack.kg.reasoner.PathReasoner``: entity linking, beam search over relations scored
    against the question, lexical hop scorer -- the edge agent's default), so a cloud fallback
    gives the same graph answer with the same path and hop steps. A text naming an entity but no
    relation the reasoner can follow gets the entity's facts instead (the old describe answer)."""
    if (
        not _has("skillpack.kg.graph")
        or not _has("skillpack.kg.linking")
        or not _has("skillpack.kg.reasoner")
    ):
        return None
    from skillpack.kg.graph import default_graph
    from skillpack.kg.linking import EntityLinker
    from skillpack.kg.reasoner import PathReasoner

    parts: list[Any] = []  # [linker, reasoner], built on first use (loads the graph)

    def shared() -> tuple[Any, Any]:
        if not parts:
            graph = default_graph()
            linker = EntityLinker(graph)
            # Same beam width / pruning threshold as the edge (AgentSettings defaults).
            parts.extend([linker, PathReasoner(graph, linker=linker, beam_width=4, min_hop_prob=0.05)])
        return parts[0], parts[1]

    def describe_text(text: str) -> dict[str, Any]:
        from skillpack.errors import UnknownEntity

        graph = default_graph()
        mentions = shared()[0].link(text)
        if not mentions:
            raise UnknownEntity(f"no plant entity found in {text[:80]!r}")
        return {
            "mentions": [m.to_dict() for m in mentions],
            "facts": [graph.describe(m.entity_id) for m in mentions[:3]],
        }

    def answer(question: str, context_site: str | None = None) -> dict[str, Any]:
        from skillpack.errors import UnknownEntity

        reasoner = shared()[1]
        try:
            ans = reasoner.answer(question, context_site=context_site)
        except UnknownEntity:
            return describe_text(question)  # an entity without a followable relation, or none (raises)
        if not ans.path:  # the reasoner's best path is the empty one: the question asks for no relation
            return describe_text(question)
        graph = reasoner.graph
        start = graph.entities[ans.start.entity_id]
        return {
            **ans.to_dict(),
            "hops": ans.hops,
            "reasoner": "PathReasoner",
            "scorer": type(reasoner.scorer).__name__,
            "facts": [graph.describe(start.id)],
        }

    def run(
        entity: str | None = None,
        path: list[str] | None = None,
        question: str | None = None,
        site: str | None = None,
    ) -> Any:
        if question:
            return answer(question, site)
        assert entity is not None  # the schema requires entity or question
        graph = default_graph()
        if not path:
            eid = entity if entity in graph.entities else graph.find(entity).id
            return graph.describe(eid)
        return {"entity": entity, "path": path, "results": [e.to_dict() for e in graph.query(entity, path)]}

    return Tool(
        name="kg_query",
        description="Plant knowledge graph: answer a (multi-hop) question with its reasoning path, "
        "describe an entity, or follow a given relation path.",
        parameters={
            "type": "object",
            "properties": {
                "question": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 2000,
                    "description": "A question; answered by the multi-hop path reasoner",
                },
                "site": {"type": "string", "minLength": 1, "description": "Site context for ambiguous names"},
                "entity": {"type": "string", "minLength": 1, "description": "Entity id, name or alias"},
                "path": {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 6},
            },
            "anyOf": [{"required": ["entity"]}, {"required": ["question"]}],
            "additionalProperties": False,
        },
        func=run,
        timeout_s=5.0,
        route=Route.KG_QUERY.value,
        from_text=answer,
    )


BUILDERS: list[Callable[[], Tool | None]] = [calculator_tool, unit_convert_tool, climate_tool, kg_query_tool]


def register_builtins(
    registry: ToolRegistry, *, embed: Callable[[list[str]], Any] | None = None
) -> list[str]:
    names = []
    for build in [*BUILDERS, lambda: doc_search_tool(embed)]:
        tool = build()
        if tool is not None:
            registry.register(tool, replace=True)
            names.append(tool.name)
    return names
