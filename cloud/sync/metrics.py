"""Prometheus metrics of the cloud sync hub."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REJECTED = Counter(
    "autoglm_cloud_sync_rejected_messages_total",
    "Node messages rejected (malformed, oversized, unknown version, wrong sender ...).",
    ["reason"],
)
APPLIED_RECORDS = Counter("autoglm_cloud_sync_applied_records_total", "Records applied, by kind.", ["kind"])
DUPLICATES = Counter("autoglm_cloud_sync_duplicate_messages_total", "Messages already applied (re-acked).")
REORDERED = Counter(
    "autoglm_cloud_sync_reordered_messages_total", "Messages held until a sequence gap filled."
)
REORDER_DROPPED = Counter(
    "autoglm_cloud_sync_reorder_dropped_messages_total",
    "Out-of-order messages refused or evicted because the node's reorder buffer was full "
    "(sync_reorder_buffer_messages / sync_reorder_buffer_bytes); not acked, so the node resends them.",
)
NODES_ONLINE = Gauge("autoglm_cloud_sync_nodes_online", "Nodes whose retained status is online.")
COMMANDS = Counter("autoglm_cloud_sync_commands_total", "Commands by outcome.", ["outcome"])
NOT_REBROADCAST = Counter(
    "autoglm_cloud_sync_not_rebroadcast_records_total",
    "Shared knowledge records from a node kept in the cloud but not sent to the fleet, by reason "
    "(anonymous: written without the edge admin token; foreign_origin: the write's HLC names another node).",
    ["reason"],
)
FLEET_PRIOR_UPDATES = Counter(
    "autoglm_cloud_sync_fleet_prior_updates_total",
    "Fleet path priors (sums of the nodes' graph-path feedback) changed by a node's counts, by whether "
    "they were sent to the fleet (sync_fleet_priors).",
    ["sent"],
)
BROADCAST_RECORDS = Counter(
    "autoglm_cloud_sync_broadcast_records_total", "Knowledge records sent down.", ["scope"]
)
