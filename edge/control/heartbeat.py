"""Heartbeat fields (``contracts.heartbeat.Heartbeat``) from the serving metrics.

Reads the inference service's own Prometheus registry (no second bookkeeping on the hot path)
and reports, for the model version serving now, the window since the previous heartbeat:
``requests`` (calls finished), ``error_rate`` (server-side failures: error, unavailable,
timeout, overloaded — not the client's bad requests), ``latency_p50_ms`` / ``latency_p99_ms``
(interpolated from the request-time histogram's bucket deltas), ``cache_hit_rate``, plus the
queue depth, the adapter set, the providers the model really runs on, the served precision
(``variant``), the node's ``providers_available`` / ``device`` (given as ``hardware``), CPU/memory
of this process (psutil), and whatever extra providers add (the agent's ``fallback_rate``; see
``edge.agent.metrics.AgentMetrics``).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from contracts.logging import get_logger
from edge.serving.service import InferenceService

log = get_logger("autoglm.edge.control.heartbeat")

ERROR_OUTCOMES = frozenset({"error", "unavailable", "timeout", "overloaded"})
FieldsProvider = Callable[[], Mapping[str, Any]]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus-style quantile from cumulative ``(upper bound, count)`` pairs (sorted)."""
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


class ServingHeartbeat:
    """Callable for ``EdgeSync.set_heartbeat_provider``: window deltas since the last call."""

    def __init__(
        self,
        service: InferenceService,
        extra: list[FieldsProvider] | None = None,
        hardware: Mapping[str, Any] | None = None,
    ) -> None:
        self.service = service
        self.extra = list(extra or [])
        # providers_available / device (edge.runtime.providers.node_hardware), sent with every heartbeat
        self.hardware = dict(hardware or {})
        self._lock = threading.Lock()
        self._prev: dict[tuple[str, str], dict[tuple[str, ...], float]] = {}
        self._process: Any = None
        try:
            import psutil

            self._process = psutil.Process()
            self._process.cpu_percent(None)  # prime: the next call reports usage since now
        except Exception as err:  # psutil missing or not permitted: report no resources
            log.info("no resource metrics: %s", err)

    def add(self, provider: FieldsProvider) -> None:
        self.extra.append(provider)

    def _snapshot(self, name: str, version: str) -> dict[tuple[str, ...], float]:
        """Current counter values for one model version."""
        m = self.service.metrics
        out: dict[tuple[str, ...], float] = {}
        for family in (m.requests, m.request_time, m.cache_hits, m.cache_misses):
            for metric in family.collect():
                for s in metric.samples:
                    labels = s.labels
                    if labels.get("model") != name or labels.get("version") != version:
                        continue
                    if s.name.endswith("_created"):
                        continue
                    key = (s.name, labels.get("outcome", ""), labels.get("le", ""))
                    out[key] = s.value
        return out

    def __call__(self) -> dict[str, Any]:
        svc = self.service
        active = svc.active
        doc: dict[str, Any] = {"queue_depth": int(svc.batcher.depth), **self.hardware}
        if active is not None:
            doc["model_version"] = active.version
            doc["model_name"] = active.name
            doc["adapters"] = [active.adapter_set]
            # the execution providers that really run the model, and any requested one that did not start
            doc["providers"] = list(active.providers)
            if active.extra.get("precision"):
                doc["variant"] = str(active.extra["precision"])  # the precision variant being served
            if active.extra.get("provider_fallback"):
                doc["provider_fallback"] = str(active.extra["provider_fallback"])
            with self._lock:
                now = self._snapshot(active.name, active.version)
                prev = self._prev.get((active.name, active.version), {})
                delta = {k: v - prev.get(k, 0.0) for k, v in now.items()}
                self._prev[(active.name, active.version)] = now
            doc.update(self._window(delta))
        split = svc.split_weights
        if split:
            doc["traffic_split"] = dict(split)
        if self._process is not None:
            with contextlib.suppress(Exception):  # process vanished / not permitted
                doc["resources"] = {
                    "cpu_percent": float(self._process.cpu_percent(None)),
                    "mem_mb": round(self._process.memory_info().rss / 2**20, 1),
                }
        for provider in self.extra:
            try:
                doc.update(provider())
            except Exception:
                log.exception("heartbeat fields provider failed")
        return doc

    @staticmethod
    def _window(delta: Mapping[tuple[str, ...], float]) -> dict[str, Any]:
        requests = errors = 0.0
        buckets: list[tuple[float, float]] = []
        hits = misses = 0.0
        for (name, outcome, le), v in delta.items():
            if name == "autoglm_edge_requests_total":
                requests += v
                if outcome in ERROR_OUTCOMES:
                    errors += v
            elif name == "autoglm_edge_request_time_seconds_bucket":
                buckets.append((float(le), v))
            elif name == "autoglm_edge_cache_hits_total":
                hits += v
            elif name == "autoglm_edge_cache_misses_total":
                misses += v
        buckets.sort()
        return {
            "requests": int(requests),
            "error_rate": round(errors / requests, 4) if requests else 0.0,
            "latency_p50_ms": round(histogram_quantile(0.5, buckets) * 1000, 3),
            "latency_p99_ms": round(histogram_quantile(0.99, buckets) * 1000, 3),
            "cache_hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
        }
