"""Route labels of the default skill pack.

The router head of every bundle predicts one of ``labels`` (the order is the head's output
order and is written into each bundle manifest, so a user's own route set works the same way).
"""

from __future__ import annotations

from enum import StrEnum


class Route(StrEnum):
    """The nine routes of the default skill pack."""

    CALCULATOR = "calculator"
    UNIT_CONVERT = "unit_convert"
    CLIMATE = "climate"
    KG_QUERY = "kg_query"
    DEVICE_STATUS = "device_status"
    DEVICE_CONTROL = "device_control"
    MEMORY_RECALL = "memory_recall"
    DOC_SEARCH = "doc_search"
    CHITCHAT = "chitchat"


DEFAULT_ROUTES: tuple[str, ...] = tuple(r.value for r in Route)

ROUTE_DESCRIPTIONS: dict[str, str] = {
    Route.CALCULATOR: "arithmetic on numbers given in the request",
    Route.UNIT_CONVERT: "converting a quantity between units",
    Route.CLIMATE: "weather and climate of a city or region",
    Route.KG_QUERY: "facts about the plant's organisation and assets from its knowledge graph",
    Route.DEVICE_STATUS: "live readings and states of devices and sensors on the node",
    Route.DEVICE_CONTROL: "commands that change a device's state",
    Route.MEMORY_RECALL: "questions about the conversation itself",
    Route.DOC_SEARCH: "procedures, manuals, troubleshooting, safety rules, definitions",
    Route.CHITCHAT: "greetings, thanks, small talk, questions about the assistant",
}
