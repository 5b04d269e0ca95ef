"""HTTP routes of the agent, mounted on the edge app: ``POST /v1/ask``, ``POST /v1/knowledge``
(remember a fact: embedded, stored, synced; admin token), ``POST /v1/feedback``, ``GET /v1/agent/status``.
Errors go through the edge app's single error mapping
(``edge.http.errors``); bad bodies are 400 there.

    app = create_app(service, serve_settings)      # edge.http.app (OIP v2)
    app.include_router(make_router(agent))         # + the agent
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from edge.agent.agent import Agent
from edge.agent.types import AskRequest, AskResponse, FeedbackRequest, KnowledgeRequest
from edge.http.auth import Writer, admin_auth, optional_admin_auth


def make_router(agent: Agent) -> APIRouter:
    router = APIRouter(tags=["agent"])

    @router.post("/v1/ask", response_model=AskResponse)
    async def ask(body: AskRequest) -> AskResponse:
        return await agent.ask(body)

    @router.post("/v1/knowledge")
    async def knowledge(
        body: KnowledgeRequest, writer: Annotated[Writer, Depends(admin_auth)]
    ) -> dict[str, Any]:
        """Needs the edge admin token (``edge.http.auth``). The record's ``source`` says who wrote it
        (``http:admin@<node>``); only a write with the admin token is shared with the fleet — one
        made without a token (``http_insecure_dev``) stays on this node."""
        return await agent.remember(
            body.key, body.text, source=f"http:{writer.name}@{agent.node_id}", shared=writer.authenticated
        )

    @router.post("/v1/feedback")
    async def feedback(
        body: FeedbackRequest, request: Request, writer: Annotated[Writer, Depends(optional_admin_auth)]
    ) -> dict[str, Any]:
        """Open; with the edge admin token the path counts are shared with the fleet (synced over
        MQTT), without it they change only this node's priors. A path outside the graph schema is 400.
        ``correct: false`` queues the answer as a hard example for the cloud (reason ``user_rejected``);
        naming the right ``route`` makes it a training label (suggestion source ``user``), so that
        needs the edge admin token like ``/v1/knowledge`` (401 / 403 without it; a route this node
        does not know is 400)."""
        if body.route is not None and not writer.authenticated:
            writer = admin_auth(request)  # 401 / 403; anonymous only in insecure dev mode
        return agent.feedback(body, shared=writer.authenticated)

    @router.get("/v1/agent/status")
    async def status() -> dict[str, Any]:
        return {
            "node_id": agent.node_id,
            "breaker": agent.cloud.breaker.state,
            "cloud": agent.cloud.base_url,
            "sources": dict(agent.counters),
            "sessions": len(agent.sessions),
            "path_cache_hits": agent.reasoner.cache_hits,
            "confidence_threshold": agent.settings.agent_confidence_threshold,
            "cache_threshold": agent.cache.threshold,
            # the path scorer + scope gate in use: kind, the bundle they came from, their digest
            "graph_heads": {
                **agent.heads.status(),
                **(agent.heads_swapper.status() if agent.heads_swapper is not None else {}),
            },
            **agent.metrics.heartbeat_fields(),
        }

    return router
