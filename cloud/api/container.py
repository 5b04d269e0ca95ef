"""Builds the controller's services from settings (the one place wiring happens).

Tests and the benchmark construct it with their own command channel or clock; the app only
ever talks to these service objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cloud.db.engine import Database
from cloud.fleet.channel import CommandChannel
from cloud.fleet.service import FleetService
from cloud.registry.service import RegistryService
from cloud.rollout.service import RolloutService
from cloud.settings import CloudSettings
from cloud.store.cas import BlobStore
from cloud.tools.builtins import register_builtins
from cloud.tools.registry import ToolRegistry
from cloud.tools.service import ToolService


@dataclass
class CloudServices:
    settings: CloudSettings
    db: Database
    store: BlobStore
    registry: RegistryService
    fleet: FleetService
    rollouts: RolloutService
    tools: ToolService
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        settings: CloudSettings,
        *,
        channel: CommandChannel | None = None,
        clock: Callable[[], float] = time.time,
        db_schema: str | None = None,
        tool_registry: ToolRegistry | None = None,
        load_plugins: bool = True,
    ) -> CloudServices:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url(), schema=db_schema)
        db.migrate()
        store = BlobStore(settings.data_dir)
        registry = RegistryService(db, store, public_key=settings.bundle_public_key or None)
        fleet = FleetService(db, channel, heartbeat_timeout_s=settings.heartbeat_timeout_s, clock=clock)
        rollouts = RolloutService(db, registry, fleet, clock=clock)
        if tool_registry is None:
            tool_registry = ToolRegistry()
            embed = None
            if settings.tool_doc_embeddings:
                from cloud.tools.embedding import BaseEncoderEmbedder

                embed = BaseEncoderEmbedder()
            register_builtins(tool_registry, embed=embed)
            if load_plugins:
                tool_registry.load_entry_points()
        tools = ToolService(tool_registry, default_timeout_s=settings.tool_default_timeout_s)
        services = cls(settings, db, store, registry, fleet, rollouts, tools)
        if channel is None and settings.mqtt_enabled:
            services.extra["sync"] = attach_mqtt(settings, fleet)
        return services

    def close(self) -> None:
        sync = self.extra.get("sync")
        if sync is not None:
            sync.stop()  # type: ignore[attr-defined]
        self.fleet.flush()
        self.tools.close()
        self.db.dispose()


def attach_mqtt(settings: CloudSettings, fleet: FleetService) -> object:
    """Create the MQTT sync hub for ``settings`` and attach the fleet to it (started by the app)."""
    from cloud.fleet.mqtt_link import MqttFleetLink
    from cloud.sync.hub import CloudSync
    from cloud.sync.settings import CloudSyncSettings

    sync_settings = CloudSyncSettings()
    # The hub's own database path wins when set explicitly; otherwise it lives next to ours.
    db_path = sync_settings.sync_db_path if "sync_db_path" in sync_settings.model_fields_set else None
    sync = CloudSync(
        sync_settings, db_path or settings.data_dir / "sync.sqlite3", host=settings.mqtt_host, port=settings.mqtt_port
    )
    link = MqttFleetLink(sync)
    link.attach(fleet)
    return link
