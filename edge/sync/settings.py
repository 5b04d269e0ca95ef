"""Edge sync settings (env prefix ``AUTOGLM_EDGE_``, YAML section ``edge``, fields ``mqtt_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.defaults import MQTT_PORT, MQTT_TOPIC_PREFIX
from contracts.envelope import DEFAULT_MAX_MESSAGE_BYTES
from contracts.settings import AutoGLMSettings, data_dir


class SyncSettings(AutoGLMSettings):
    """How the edge node talks to the cloud over MQTT and to KubeEdge's EventBus."""

    yaml_section: ClassVar[str] = "edge"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_EDGE_", extra="ignore", validate_default=True)

    mqtt_host: str = Field(default="127.0.0.1", description="MQTT broker host the node syncs through.")
    mqtt_port: int = Field(default=MQTT_PORT, ge=1, le=65535, description="MQTT broker port.")
    mqtt_username: str | None = Field(
        default=None, description="MQTT user name; the shipped ACL expects it to equal the node id."
    )
    mqtt_password: str | None = Field(default=None, description="MQTT password.")
    mqtt_tls: bool = Field(default=False, description="Connect with TLS.")
    mqtt_tls_ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker with.")
    mqtt_tls_cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    mqtt_tls_key_file: Path | None = Field(default=None, description="Client key (mutual TLS).")
    mqtt_topic_prefix: str = Field(default=MQTT_TOPIC_PREFIX, description="Root of the sync topic tree.")
    mqtt_node_group: str | None = Field(
        default=None, description="Node group whose broadcasts this node follows."
    )
    mqtt_v5: bool = Field(
        default=True, description="Speak MQTT 5 (session expiry, reason codes); False for MQTT 3.1.1 brokers."
    )
    mqtt_keepalive_s: int = Field(default=30, ge=5, description="MQTT keepalive interval.")
    mqtt_session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="MQTT 5 session expiry: how long the broker keeps our session.",
    )
    mqtt_reconnect_min_s: float = Field(
        default=0.2, gt=0, description="First reconnect delay (then doubled, jittered)."
    )
    mqtt_reconnect_max_s: float = Field(default=30.0, gt=0, description="Longest reconnect delay.")
    mqtt_max_message_bytes: int = Field(
        default=DEFAULT_MAX_MESSAGE_BYTES, ge=4096, description="Largest sync message sent or accepted."
    )
    mqtt_batch_max_records: int = Field(default=500, ge=1, description="Most records in one sync message.")
    mqtt_batch_max_bytes: int = Field(
        default=192 * 1024, ge=1024, description="Most uncompressed record bytes in one sync message."
    )
    mqtt_compress: bool = Field(default=True, description="LZ4-compress message bodies.")
    mqtt_window_messages: int = Field(
        default=64, ge=1, description="Most sync messages in flight (sent, not yet acked by the cloud)."
    )
    mqtt_ack_timeout_s: float = Field(
        default=10.0, gt=0, description="Resend a message when the cloud has not acked it for this long."
    )
    mqtt_outbox_path: Path = Field(
        default_factory=lambda: data_dir() / "edge" / "sync-outbox.sqlite3",
        description="SQLite outbox (store-and-forward) file.",
    )
    mqtt_outbox_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=4096, description="Disk budget of the outbox (record bytes)."
    )
    mqtt_heartbeat_interval_s: float = Field(default=15.0, gt=0, description="Seconds between heartbeats.")
    mqtt_kubeedge_enabled: bool = Field(
        default=False, description="Also report status as a KubeEdge device twin."
    )
    mqtt_kubeedge_host: str = Field(
        default="127.0.0.1", description="KubeEdge EventBus MQTT host (on the node)."
    )
    mqtt_kubeedge_port: int = Field(default=1883, ge=1, le=65535, description="KubeEdge EventBus MQTT port.")
    mqtt_kubeedge_namespace: str = Field(default="default", description="Namespace of the KubeEdge Device.")
    mqtt_kubeedge_device: str = Field(
        default="", description="Name of the KubeEdge Device (default: node id)."
    )
    mqtt_embedded_broker: bool = Field(
        default=False, description="DEV ONLY: start an embedded amqtt broker when no broker is reachable."
    )
