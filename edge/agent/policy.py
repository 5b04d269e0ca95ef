"""One policy table keyed by :class:`contracts.routes.Route`: where a route is answered and
what the agent may do with it. Every route rule of the agent reads this table (no route string
sets elsewhere).

- ``handler``: ``local_tool`` (runs on the node), ``cloud_tool`` (the cloud's tool service),
  ``graph`` (the multi-hop reasoner over the local knowledge graph), ``memory`` (the
  conversation's own short-term memory).
- ``needs_confirmation``: a command that changes the world; refused without ``confirm``.
- ``freshness_s``: how long a cached answer stays fresh (0: never cached, never looked up).
- ``computed``: the answer must be computed; a remembered knowledge text never answers it.
- ``errors_answer``: a tool error is the answer (a device that does not exist), not a reason
  to ask the cloud.

``agent_cloud_routes`` moves routes to the cloud (by default climate and doc_search); a route a
user's own route set adds and this table does not know is a cloud tool that is never cached.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from contracts.routes import Route


class Handler(StrEnum):
    LOCAL_TOOL = "local_tool"
    CLOUD_TOOL = "cloud_tool"
    GRAPH = "graph"
    MEMORY = "memory"


@dataclass(frozen=True)
class RoutePolicy:
    handler: Handler
    freshness_s: float = 0.0
    needs_confirmation: bool = False
    computed: bool = False
    errors_answer: bool = False

    @property
    def cacheable(self) -> bool:
        return self.freshness_s > 0

    @property
    def local(self) -> bool:
        """Answered on the node without the cloud."""
        return self.handler in (Handler.LOCAL_TOOL, Handler.GRAPH, Handler.MEMORY)


DAY = 86400.0
POLICIES: dict[str, RoutePolicy] = {
    Route.CALCULATOR: RoutePolicy(Handler.LOCAL_TOOL, 30 * DAY, computed=True),
    Route.UNIT_CONVERT: RoutePolicy(Handler.LOCAL_TOOL, 30 * DAY, computed=True),
    Route.CLIMATE: RoutePolicy(
        Handler.LOCAL_TOOL, 6 * 3600.0
    ),  # a cloud tool by default (agent_cloud_routes)
    Route.KG_QUERY: RoutePolicy(Handler.GRAPH, 3600.0),
    # never cached: the twin is read locally in microseconds, and a cached status would show a
    # device still running for seconds after a confirmed stop (issue 14)
    Route.DEVICE_STATUS: RoutePolicy(Handler.LOCAL_TOOL, 0.0, computed=True, errors_answer=True),
    Route.DEVICE_CONTROL: RoutePolicy(
        Handler.LOCAL_TOOL, 0.0, needs_confirmation=True, computed=True, errors_answer=True
    ),
    Route.MEMORY_RECALL: RoutePolicy(
        Handler.MEMORY, 0.0, computed=True
    ),  # about this conversation: never shared
    Route.DOC_SEARCH: RoutePolicy(Handler.LOCAL_TOOL, DAY),  # a cloud tool by default (agent_cloud_routes)
    Route.CHITCHAT: RoutePolicy(Handler.LOCAL_TOOL, DAY),
}
UNKNOWN_ROUTE = RoutePolicy(Handler.CLOUD_TOOL)


def policy_table(cloud_routes: list[str] | tuple[str, ...] = ()) -> dict[str, RoutePolicy]:
    """The table with ``cloud_routes`` answered by the cloud's tool service."""
    return {
        r: (replace(p, handler=Handler.CLOUD_TOOL) if r in cloud_routes else p) for r, p in POLICIES.items()
    }


def freshness_table() -> dict[str, float]:
    """Route → seconds a cached answer stays fresh (the semantic cache's view of the table)."""
    return {str(r): p.freshness_s for r, p in POLICIES.items()}
