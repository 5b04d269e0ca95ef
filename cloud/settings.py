"""Cloud controller settings (env prefix ``AUTOGLM_CLOUD_``, YAML section ``cloud``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.defaults import CLOUD_HTTP_PORT, MQTT_PORT
from contracts.settings import AutoGLMSettings, data_dir


class CloudSettings(AutoGLMSettings):
    """Everything ``autoglm cloud serve`` needs: storage, auth, HTTP, MQTT, rollout defaults."""

    yaml_section: ClassVar[str] = "cloud"
    model_config = SettingsConfigDict(env_prefix="AUTOGLM_CLOUD_", extra="ignore", validate_default=True)

    data_dir: Path = Field(
        default_factory=lambda: data_dir() / "cloud",
        description="Root for the cloud's state: the SQLite file (default database) and the blob store.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL (e.g. postgresql+psycopg://user@host/db). "
        "Empty: SQLite file under data_dir.",
    )
    admin_tokens: list[str] = Field(
        default_factory=list,
        description="Bearer tokens allowed to manage the registry, fleet and rollouts (JSON list in env). "
        "Each entry is `name:token` (the name goes into audit records; ':' is the only separator, so base64 "
        "tokens with '=' padding work) or a bare token without ':'. Blank tokens refuse to start.",
    )
    admin_token: str = Field(
        default="", description="A single admin token (added to admin_tokens; same `name:token` format)."
    )
    bootstrap_token: str = Field(
        default="", description="Token a new node presents to register and receive its own credential."
    )
    bundle_public_key: str = Field(
        default="",
        description="Hex Ed25519 public key; when set, registered bundles must carry a valid signature.",
    )
    api_url: str = Field(
        default=f"http://127.0.0.1:{CLOUD_HTTP_PORT}",
        description="Base URL of the controller's API that `autoglm cloud` commands talk to.",
    )
    http_host: str = Field(default="0.0.0.0", description="Address the HTTP API binds to.")
    http_port: int = Field(default=CLOUD_HTTP_PORT, description="Port the HTTP API listens on.")
    upload_max_bytes: int = Field(
        default=2 * 1024**3, description="Largest bundle archive accepted by upload (bytes)."
    )
    http_max_json_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body of the JSON API routes (413 above it, checked from Content-Length "
        "first and counted while reading); bundle uploads have their own limit (upload_max_bytes).",
    )
    http_max_json_depth: int = Field(
        default=32,
        ge=2,
        le=512,
        description="Deepest nesting of arrays/objects accepted in a JSON body (400 deeper).",
    )
    mqtt_enabled: bool = Field(default=True, description="Connect to the MQTT broker for fleet sync.")
    mqtt_host: str = Field(default="127.0.0.1", description="MQTT broker host.")
    mqtt_port: int = Field(default=MQTT_PORT, description="MQTT broker port.")
    heartbeat_timeout_s: float = Field(
        default=30.0, description="A node with no heartbeat for this long is marked offline."
    )
    fleet_flush_interval_s: float = Field(
        default=1.0, description="How often live heartbeat state is written to the database."
    )
    rollout_tick_s: float = Field(default=0.5, description="How often the rollout controller advances.")
    leader_lease_ttl_s: float = Field(
        default=15.0,
        gt=0,
        description="Leader lease lifetime: a replica that stops renewing is replaced after this long "
        "(renewed every third of it). Only the leader runs rollouts, sweeps and the MQTT sync.",
    )
    tool_doc_embeddings: bool = Field(
        default=True,
        description="doc_search fuses BM25 with base-encoder embeddings (loads PyTorch on first search).",
    )
    tool_default_timeout_s: float = Field(default=5.0, description="Timeout for tools that set none.")
    log_level: str = Field(default="INFO", description="Log level of the cloud controller.")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    def all_admin_tokens(self) -> list[str]:
        """Every configured admin entry (blank ones included: the parser refuses them)."""
        tokens = list(self.admin_tokens)
        if self.admin_token and self.admin_token not in tokens:
            tokens.append(self.admin_token)
        return tokens
