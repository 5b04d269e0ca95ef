"""Cloud sync settings (env prefix ``AUTOGLM_CLOUD_``, YAML section ``cloud``, fields ``sync_*``).

``mqtt_host`` / ``mqtt_port`` belong to the controller's ``CloudSettings``; the sync hub has its
own ``sync_mqtt_*`` fields (same defaults) so one prefix never has two fields of one name.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.defaults import MQTT_PORT, MQTT_TOPIC_PREFIX
from contracts.envelope import DEFAULT_MAX_JSON_VALUES, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_RECORDS
from contracts.settings import AutoGLMSettings, data_dir


class CloudSyncSettings(AutoGLMSettings):
    """How the cloud consumes node messages and sends memory/commands down."""

    yaml_section: ClassVar[str] = "cloud"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_CLOUD_", extra="ignore", validate_default=True)

    sync_mqtt_host: str = Field(default="127.0.0.1", description="MQTT broker the sync hub connects to.")
    sync_mqtt_port: int = Field(default=MQTT_PORT, ge=1, le=65535, description="MQTT broker port for sync.")
    sync_mqtt_username: str | None = Field(
        default=None, description="MQTT user of the cloud (ACL: full tree)."
    )
    sync_mqtt_password: str | None = Field(default=None, description="MQTT password of the cloud.")
    sync_mqtt_tls: bool = Field(default=False, description="Connect to the broker with TLS.")
    sync_mqtt_tls_ca_file: Path | None = Field(
        default=None, description="CA bundle to verify the broker with."
    )
    sync_mqtt_v5: bool = Field(default=True, description="Speak MQTT 5; False for MQTT 3.1.1 brokers.")
    sync_mqtt_client_id: str = Field(
        default="autoglm-cloud-sync", description="MQTT client id (persistent session)."
    )
    sync_topic_prefix: str = Field(default=MQTT_TOPIC_PREFIX, description="Root of the sync topic tree.")
    sync_db_path: Path = Field(
        default_factory=lambda: data_dir() / "cloud" / "sync.sqlite3",
        description="SQLite file with merged memory, per-node cursors, hard examples, commands.",
    )
    sync_max_message_bytes: int = Field(
        default=DEFAULT_MAX_MESSAGE_BYTES, ge=4096, description="Largest sync message accepted or sent."
    )
    sync_batch_max_records: int = Field(default=500, ge=1, description="Most records per downlink message.")
    sync_rebroadcast: Literal["fleet", "group", "none"] = Field(
        default="fleet",
        description="Where shared knowledge merged from a node is rebroadcast: the whole fleet, the "
        "sender's node group (fleet when it has none), or nowhere.",
    )
    sync_fleet_priors: bool = Field(
        default=True,
        description="Sum the nodes' graph-path feedback counts over the fleet and send the sums to every "
        "node (on change, and with each resync); false keeps each node's feedback on that node.",
    )
    sync_max_decompressed_bytes: int = Field(
        default=1024 * 1024,
        ge=4096,
        description="Largest decompressed body of a node message (checked from the LZ4 size prefix before "
        "decompressing). Edges send at most ~mqtt_max_message_bytes of records per message.",
    )
    sync_max_message_records: int = Field(
        default=DEFAULT_MAX_RECORDS,
        ge=1,
        description="Most records a node message may declare (checked before decompressing); at least the "
        "edges' mqtt_batch_max_records.",
    )
    sync_max_json_values: int = Field(
        default=DEFAULT_MAX_JSON_VALUES,
        ge=1024,
        description="Most JSON values in one message body, counted on the bytes before parsing (bounds the "
        "parser's memory: 1 MiB of [{},{},...] would be ~60 MB).",
    )
    sync_reorder_buffer_messages: int = Field(
        default=256,
        ge=1,
        description="Out-of-order messages held per node while a sequence gap is filled.",
    )
    sync_reorder_buffer_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        description="Decompressed body bytes held per node in the reorder buffer; beyond it the messages "
        "farthest ahead are dropped (counted, not acked: the node resends them).",
    )
    sync_command_retry_s: float = Field(default=10.0, gt=0, description="Resend unacked commands this often.")
    sync_compress: bool = Field(default=True, description="LZ4-compress downlink message bodies.")
