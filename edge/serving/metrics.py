"""Prometheus metrics of the inference service (one registry per service instance).

Names follow ``autoglm_edge_<thing>_<unit>``; labels are ``model`` and ``version`` (plus
``outcome`` / ``adapter_set`` / ``node`` where they apply), so a swap shows up as a new series.

Several worker processes (``edge.http.workers``): with ``PROMETHEUS_MULTIPROC_DIR`` set when the
process starts, prometheus_client keeps every value in memory-mapped files there, and
:meth:`ServingMetrics.render` renders the aggregate over all processes writing to that directory
(``multiprocess_mode`` of each gauge says how gauges combine).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)


# Families of prometheus_client's default registry that the edge's ``/metrics`` shows as well: the
# process collector (CPU seconds, resident memory, open fds, start time), Python GC / platform info
# and the module-level edge metrics (the sync outbox, ``edge.sync.metrics``).
SHARED_PREFIXES = ("process_", "python_", "autoglm_edge_")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared metrics directory of a multi-worker server (None: one process)."""
    return os.environ.get(MULTIPROC_ENV) or None


class SharedMetrics(Collector):
    """The default registry's process and module-level edge families, for a per-service registry."""

    def collect(self) -> Iterable[Metric]:
        for family in REGISTRY.collect():
            if family.name.startswith(SHARED_PREFIXES):
                yield family

    def describe(self) -> Iterable[Metric]:
        return []  # no name checks: these names belong to the default registry


class ServingMetrics:
    def __init__(self, node_id: str, registry: CollectorRegistry | None = None) -> None:
        self.node_id = node_id
        self.registry = registry or CollectorRegistry()
        r = self.registry
        if r is not REGISTRY:
            r.register(SharedMetrics())
        self.requests = Counter(
            "autoglm_edge_requests_total",
            "Inference requests by outcome "
            "(success, bad_request, not_found, overloaded, unavailable, timeout, error).",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.texts = Counter(
            "autoglm_edge_texts_total",
            "Texts inferred (cache hits included).",
            ["model", "version"],
            registry=r,
        )
        self.queue_time = Histogram(
            "autoglm_edge_queue_time_seconds",
            "Time a text waited in the batcher queue before its forward pass started.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_time = Histogram(
            "autoglm_edge_compute_time_seconds",
            "Tokenisation + forward pass time of one batch.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_time = Histogram(
            "autoglm_edge_request_time_seconds",
            "End-to-end time of an inference call in the service.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "autoglm_edge_batch_size_texts",
            "Texts per forward batch.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "autoglm_edge_cache_hits_total", "Result cache hits.", ["model", "version"], registry=r
        )
        self.cache_misses = Counter(
            "autoglm_edge_cache_misses_total", "Result cache misses.", ["model", "version"], registry=r
        )
        self.cache_bytes = Gauge(
            "autoglm_edge_cache_bytes",
            "Bytes held by the result cache.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.cache_compression_ratio = Gauge(
            "autoglm_edge_cache_compression_ratio",
            "Uncompressed / compressed bytes of cached values.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.queue_depth = Gauge(
            "autoglm_edge_queue_depth_texts",
            "Texts waiting in the batcher queue.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.dropped = Counter(
            "autoglm_edge_dropped_texts_total",
            "Queued texts dropped without a forward pass (cancelled, disconnected, deadline passed).",
            ["reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "autoglm_edge_model_loaded_info",
            "1 for the model version serving new requests, 0 for versions that served before.",
            ["node", "model", "version", "adapter_set"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.swaps = Counter(
            "autoglm_edge_model_swaps_total", "Model load attempts by result.", ["result"], registry=r
        )

    def set_active(
        self, model: str, version: str, adapter_set: str, previous: tuple[str, str, str] | None
    ) -> None:
        if previous is not None:
            self.model_info.labels(self.node_id, *previous).set(0)
        self.model_info.labels(self.node_id, model, version, adapter_set).set(1)

    def render(self) -> bytes:
        """This service's registry; in a multi-worker server the aggregate over all workers."""
        shared = multiprocess_dir()
        if shared is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=shared)
        return generate_latest(merged)
