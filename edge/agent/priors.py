"""The graph reasoner's path priors on an edge node (issue 13, item 2).

The counts live in the node's memory store (SQLite: they survive a restart); feedback given with
the edge admin token is *shared*: its counts are queued for the cloud through the sync outbox
(``path_prior`` records on ``{p}/up/{node}/priors``), the cloud sums them over the fleet and
sends the sums back (``{p}/fleet/priors``, and with a resync), which this module applies. Every
update is counted in ``autoglm_edge_agent_kg_prior_updates_total{kind}``.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts.memory import FleetPathPrior, PathPriorRecord
from edge.agent.metrics import AgentMetrics
from edge.agent.settings import AgentSettings
from edge.memory.store import MemoryStore, StoredPrior
from skillpack.kg.priors import PathPriors, PriorCounts

PublishPriors = Callable[[list[PathPriorRecord]], int]


def _counts(p: StoredPrior) -> PriorCounts:
    return PriorCounts(
        p.confirmed, p.rejected, p.shared_confirmed, p.shared_rejected, p.fleet_confirmed, p.fleet_rejected
    )


def stored_priors(
    store: MemoryStore,
    settings: AgentSettings,
    metrics: AgentMetrics,
    *,
    publish: PublishPriors | None = None,
    sync: object = None,
) -> PathPriors:
    """:class:`PathPriors` persisted in ``store``; shared feedback is published with ``publish``
    (``EdgeSync.publish_path_priors``); ``sync`` (an ``EdgeSync``) delivers the fleet's sums."""

    def persist(
        start_type: str, path: tuple[str, ...], confirmed: int, rejected: int, shared: bool
    ) -> PriorCounts:
        stored, record = store.add_path_prior(
            start_type, path, confirmed=confirmed, rejected=rejected, shared=shared
        )
        for kind, n in (("confirmed", confirmed), ("rejected", rejected)):
            if n:
                metrics.kg_prior_updates.labels(metrics.node, kind).inc()
        if record is not None and publish is not None:
            publish([record])
        return _counts(stored)

    priors = PathPriors(settings.agent_kg_prior_weight, settings.agent_kg_prior_max, persist)

    def on_fleet(records: list[FleetPathPrior]) -> None:  # already validated and stored by the downlink
        changed = sum(priors.set_fleet(r.start_type, r.relations, r.confirmed, r.rejected) for r in records)
        if changed:
            metrics.kg_prior_updates.labels(metrics.node, "fleet").inc(changed)

    on_fleet_priors = getattr(sync, "on_fleet_priors", None)
    if on_fleet_priors is not None:
        on_fleet_priors(on_fleet)  # before loading: a sum that arrives meanwhile is in the store or here
    priors.load((p.start_type, p.relations, _counts(p)) for p in store.path_priors())
    return priors
