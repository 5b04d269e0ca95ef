"""Ports and paths every side (and the KubeEdge manifests) must agree on."""

EDGE_HTTP_PORT = 8000
CLOUD_HTTP_PORT = 8080
MQTT_PORT = 1883
MQTT_TOPIC_PREFIX = "autoglm"

# Edge: Open Inference Protocol v2 health endpoints (KServe / Triton compatible).
EDGE_LIVE_PATH = "/v2/health/live"
EDGE_READY_PATH = "/v2/health/ready"
# Cloud controller health endpoints.
CLOUD_LIVE_PATH = "/healthz"
CLOUD_READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
