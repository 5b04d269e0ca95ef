"""Tool service: the cloud side of the edge's fallback (registry, JSON-Schema params, timeouts)."""
