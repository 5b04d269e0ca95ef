"""Route labels of the default skill pack.

The router head of every bundle predicts one of ``labels`` (the order is the head's output
order and is written into each bundle manifest, so a user's own route set works the same way).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from contracts.errors import BadRequest


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


class GateFeature(StrEnum):
    """What a gated route's claim rule reads (a grown checkpoint's ``training.new_route.gate.feature``,
    ``autoglm add-route --gate-feature``; docs/arch/model-training.md, "Gated route")."""

    EMBEDDING = "embedding"  # the parent's (adapted) sentence embedding
    BASE = "base"  # the base encoder's, without adapters (a second encoder pass)
    CAT = "cat"  # both side by side, each centred and normalised on its own
    CAT_MAX = "cat_max"  # cat and the base encoder's max-pooled token states (the strongest word)
    CAT_PIECES = "cat_pieces"  # cat and the mean of the request's word-piece input embeddings


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


ROUTE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
_ROUTE_NAME = re.compile(ROUTE_NAME_PATTERN)


def check_route_label(route: str, model_routes: Iterable[str], tool_routes: Iterable[str]) -> bool:
    """Whether a label may be used: ``False`` for a route the model already has, ``True`` for a
    *new* route (the route list grows: manifest, router head, the edge's routing); raises
    :class:`~contracts.errors.BadRequest` (400) for a malformed name or for a route the model
    does not know and no registered tool serves (nothing would answer it once learnt).

    ``tool_routes``: the routes the registered tools serve (``Tool.route`` of the cloud's tool
    registry); the edge sends a route it has no local tool for to the cloud's tool service.
    """
    if not isinstance(route, str) or not _ROUTE_NAME.match(route):
        raise BadRequest(f"route {route!r} must be lower-case letters, digits and '_' ({ROUTE_NAME_PATTERN})")
    known = list(model_routes)
    if route in known:
        return False
    if route in set(tool_routes):
        return True
    raise BadRequest(
        f"unknown route {route!r}: not one of the model's routes ({', '.join(known) or 'none'}) and no "
        f"registered tool serves it; register a tool with route {route!r} first (it answers the route "
        "once the model learns it)"
    )
