"""Prometheus metrics of the agent (in the serving app's registry when one is given, so
``GET /metrics`` shows them next to the inference metrics), and the rolling rates the node's
heartbeat reports (fallback rate, semantic-cache hit rate)."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AgentMetrics:
    def __init__(self, node_id: str, registry: CollectorRegistry | None = None, window: int = 1000) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "autoglm_edge_agent_requests_total",
            "Questions answered, by answer source and route.",
            ["node", "source", "route"],
            registry=r,
        )
        self.latency = Histogram(
            "autoglm_edge_agent_request_seconds",
            "Time to answer, by answer source.",
            ["node", "source"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.hard_examples = Counter(
            "autoglm_edge_agent_hard_examples_total",
            "Hard examples, by whether they were queued.",
            ["node", "queued"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "autoglm_edge_agent_cache_lookups_total",
            "Semantic-cache lookups by outcome.",
            ["node", "outcome"],
            registry=r,
        )
        self.kg_paths = Counter(
            "autoglm_edge_agent_kg_path_cache_total",
            "Graph answers by path-cache outcome (hit: the path of an earlier question of the same shape).",
            ["node", "outcome"],
            registry=r,
        )
        self.knowledge_embedded = Counter(
            "autoglm_edge_agent_knowledge_embedded_total",
            "Knowledge entries that arrived without an embedding (cloud broadcasts) and were embedded "
            "on this node before a memory search.",
            ["node"],
            registry=r,
        )
        self.kg_unsure = Counter(
            "autoglm_edge_agent_kg_unsure_total",
            "Graph answers that listed candidate paths and asked, the scorer being unsure.",
            ["node"],
            registry=r,
        )
        self.kg_prior_updates = Counter(
            "autoglm_edge_agent_kg_prior_updates_total",
            "Graph-path prior updates: feedback on this node (confirmed / rejected) and fleet sums received "
            "from the cloud that changed a path's counts (fleet).",
            ["node", "kind"],
            registry=r,
        )
        self.feedback = Counter(
            "autoglm_edge_agent_feedback_total",
            "POST /v1/feedback by verdict (correct / wrong / wrong_with_route: a rejection naming the right "
            "route) and whether it queued a hard example for the cloud.",
            ["node", "verdict", "queued"],
            registry=r,
        )
        self.abstentions = Counter(
            "autoglm_edge_agent_abstentions_total",
            "Requests the scope head judged nonsense / out of scope.",
            ["node"],
            registry=r,
        )
        self.scope_skipped = Counter(
            "autoglm_edge_agent_scope_skipped_total",
            "Requests whose scope gate was not applied (the router's threshold alone decided), by reason: "
            "model_mismatch (the embedding came from another model than the one the gate's bank was built "
            "from: a swap whose heads are being built or failed to build, the traffic split's second slot), "
            "width_mismatch (an embedding of another width than the gate reads).",
            ["node", "reason"],
            registry=r,
        )
        self.heads_swaps = Counter(
            "autoglm_edge_agent_heads_swaps_total",
            "Rebuilds of the graph heads (path scorer + scope gate) after a swap of the served model, by "
            "result: learned / lexical (installed, by the scorer kind), failed (the heads in use kept), "
            "stale (a newer swap's heads were installed instead).",
            ["node", "result"],
            registry=r,
        )
        self.breaker_open = Gauge(
            "autoglm_edge_agent_cloud_breaker_open",
            "1 while the cloud circuit breaker is open.",
            ["node"],
            registry=r,
        )
        self.node = node_id
        self._lock = threading.Lock()
        self._recent: deque[tuple[str, bool]] = deque(maxlen=window)  # (source, cache looked up)

    def observe(
        self, source: str, route: str, seconds: float, cache_outcome: str | None, breaker_state: str
    ) -> None:
        self.requests.labels(self.node, source, route).inc()
        self.latency.labels(self.node, source).observe(seconds)
        if cache_outcome is not None:
            self.cache_lookups.labels(self.node, cache_outcome).inc()
        self.breaker_open.labels(self.node).set(1.0 if breaker_state == "open" else 0.0)
        with self._lock:
            self._recent.append((source, cache_outcome is not None))

    def heartbeat_fields(self) -> dict[str, Any]:
        """Rates over the last ``window`` questions, for ``EdgeSync`` heartbeats."""
        with self._lock:
            recent = list(self._recent)
        n = len(recent)
        looked = sum(1 for _, c in recent if c)
        return {
            "fallback_rate": round(sum(s in ("cloud_fallback", "offline") for s, _ in recent) / n, 4)
            if n
            else 0.0,
            "semantic_cache_hit_rate": round(sum(s == "semantic_cache" for s, _ in recent) / looked, 4)
            if looked
            else 0.0,
            "agent_requests": n,
        }
