"""The edge reasoning agent: routing with calibrated confidence, memory pool, local tools,
knowledge-graph multi-hop reasoning, cloud fallback with a circuit breaker, hard examples.

Entry points: :class:`edge.agent.agent.Agent` (``await agent.ask(...)``), the HTTP router
``edge.agent.http.make_router`` (``POST /v1/ask``, ``POST /v1/feedback``) and ``autoglm ask``.
"""
