"""Prometheus metrics of the edge sync (one node per process, so no node label)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

OUTBOX_DROPPED = Counter(
    "autoglm_edge_sync_outbox_dropped_records_total",
    "Telemetry records shed oldest-first because the outbox was over its disk budget.",
    ["kind"],
)
OUTBOX_REFUSED = Counter(
    "autoglm_edge_sync_outbox_refused_records_total",
    "Durable records (memory, session, hard examples) refused because the outbox was full.",
    ["kind"],
)
OUTBOX_RECORDS = Gauge(
    "autoglm_edge_sync_outbox_records", "Records waiting in the outbox (pending + in flight)."
)
OUTBOX_BYTES = Gauge("autoglm_edge_sync_outbox_bytes", "Record bytes held by the outbox.")
SENT_MESSAGES = Counter("autoglm_edge_sync_sent_messages_total", "Sync messages handed to MQTT.", ["kind"])
ACKED_RECORDS = Counter("autoglm_edge_sync_acked_records_total", "Records released after a cloud ack.")
DEAD_LETTERS = Counter(
    "autoglm_edge_sync_dead_letter_messages_total",
    "Messages the cloud refused for good (parked).",
    ["reason"],
)
REJECTED = Counter(
    "autoglm_edge_sync_rejected_messages_total", "Downlink messages rejected on receipt.", ["reason"]
)
CONNECTED = Gauge("autoglm_edge_sync_connected", "1 while connected to the MQTT broker.")
COMMANDS = Counter("autoglm_edge_sync_commands_total", "Commands received, by outcome.", ["outcome"])
