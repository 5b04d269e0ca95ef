"""Builds the controller's services from settings (the one place wiring happens).

Tests and the benchmark construct it with their own command channel or clock; the app only
ever talks to these service objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.db.engine import Database
from cloud.fleet.channel import CommandChannel
from cloud.fleet.service import FleetService
from cloud.leader import LeaderLease, new_holder_id
from cloud.loop import HardExampleQueue, JobStore, LoopServices, LoopSettings
from cloud.registry.service import RegistryService
from cloud.rollout.service import RolloutService
from cloud.settings import CloudSettings
from cloud.store.cas import BlobStore
from cloud.tools.builtins import register_builtins
from cloud.tools.registry import ToolRegistry
from cloud.tools.service import ToolService

if TYPE_CHECKING:
    from cloud.sync.settings import CloudSyncSettings


@dataclass
class CloudServices:
    settings: CloudSettings
    db: Database
    store: BlobStore
    registry: RegistryService
    fleet: FleetService
    rollouts: RolloutService
    tools: ToolService
    leader: LeaderLease
    loop: LoopServices
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
        leader = LeaderLease(db, ttl_s=settings.leader_lease_ttl_s, holder=new_holder_id(), clock=clock)
        loop_settings = LoopSettings()
        queue = HardExampleQueue(db, loop_settings, settings.data_dir)
        loop = LoopServices(
            loop_settings, queue, JobStore(db, max_log_lines=loop_settings.loop_max_log_lines)
        )
        services = cls(settings, db, store, registry, fleet, rollouts, tools, leader, loop)
        queue.route_check = lambda route: services.label_route_problem(route, loop_settings.loop_model)
        if channel is None and settings.mqtt_enabled:
            link = attach_mqtt(settings, fleet, client_suffix=leader.holder)
            link.sync.on_hard_examples(queue.ingest)  # type: ignore[attr-defined]
            services.extra["sync"] = link
        return services

    def label_route_problem(self, route: str, model: str = "autoglm-router") -> str | None:
        """Why ``route`` cannot label a hard example (None: it can): a route of the production
        (``stable``) version of ``model``, or one a registered tool serves (a new route), is fine."""
        from sqlalchemy import select

        from cloud.db.models import Alias, Model, ModelVersion
        from contracts.errors import BadRequest
        from contracts.routes import check_route_label

        with self.db.session() as s:
            v = s.scalar(
                select(ModelVersion)
                .join(Alias, Alias.version_id == ModelVersion.id)
                .join(Model, Model.id == Alias.model_id)
                .where(Model.name == model, Alias.name == "stable")
            )
            ref, routes = (
                (v.version, list((v.manifest or {}).get("routes") or [])) if v is not None else (None, [])
            )
        served = [route] if self.tools.registry.by_route(route) is not None else []
        try:
            check_route_label(
                route, routes, served
            )  # the one rule: a model route, or a new one a tool serves
            return None
        except BadRequest:
            pass
        where = f"{model}@{ref} (routes: {', '.join(routes)})" if ref else f"{model} (no stable version)"
        return (
            f"route {route!r} is unknown: not a route of {where} and no tool is bound to it; "
            "bind a tool to the route first or pick a known route"
        )

    # -- leader-only duties (the app's loops call these; followers skip them) -------------------

    def elect(self) -> bool:
        """Take or renew the leader lease, and start / stop the MQTT sync to match; returns leadership.

        The first call switches this replica to elected mode: from then on it sends commands and
        drives rollouts only while it leads (before it, e.g. in tests that drive the services
        directly, a single process does everything)."""
        self.fleet.may_send = self.rollouts.leading = lambda: self.leader.is_leader
        leader = self.leader.tick()
        sync = self.extra.get("sync")
        if sync is not None and hasattr(sync, "started"):
            if leader and not sync.started:
                sync.start()  # type: ignore[attr-defined]
            elif not leader and sync.started:
                sync.stop(final=False)  # type: ignore[attr-defined]
        return leader

    def sync_fleet(self) -> None:
        """Every replica: write heartbeat state, then pick up fleet changes other replicas made."""
        self.fleet.flush()
        self.fleet.refresh()

    def lead_rollouts(self) -> bool:
        """Send the commands followers queued and advance the rollouts when this replica leads;
        returns whether it did."""
        if not self.leader.is_leader:
            return False
        self.fleet.send_queued()
        self.rollouts.tick()
        return True

    def lead_sweep(self) -> bool:
        """Mark silent nodes offline when this replica leads (only the leader receives heartbeats)."""
        if not self.leader.is_leader:
            return False
        self.fleet.sweep()
        return True

    def close(self) -> None:
        sync = self.extra.get("sync")
        if sync is not None:
            sync.stop()  # type: ignore[attr-defined]
        self.fleet.flush()
        self.leader.release()
        self.tools.close()
        self.db.dispose()


def hub_db_path(settings: CloudSettings, sync_settings: CloudSyncSettings | None = None) -> Path:
    """The sync hub's database file: ``sync_db_path`` when set explicitly, else next to ours
    (``data_dir/sync.sqlite3``). The hub opens it; the loop worker reads the fleet's path
    priors from it."""
    from cloud.sync.settings import CloudSyncSettings

    s = sync_settings or CloudSyncSettings()
    return s.sync_db_path if "sync_db_path" in s.model_fields_set else settings.data_dir / "sync.sqlite3"


def attach_mqtt(settings: CloudSettings, fleet: FleetService, *, client_suffix: str = "") -> object:
    """Create the MQTT sync hub for ``settings`` and attach the fleet to it (started by the app).

    ``client_suffix`` makes the MQTT client id unique per replica, so that two replicas never
    take over each other's broker session."""
    from cloud.fleet.mqtt_link import MqttFleetLink
    from cloud.sync.hub import CloudSync
    from cloud.sync.settings import CloudSyncSettings

    sync_settings = CloudSyncSettings()
    if client_suffix:
        client_id = f"{sync_settings.sync_mqtt_client_id}-{client_suffix}"
        sync_settings = sync_settings.model_copy(update={"sync_mqtt_client_id": client_id})
    sync = CloudSync(
        sync_settings,
        hub_db_path(settings, sync_settings),
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        ledger=fleet.ledger,  # one command ledger: the fleet's, in our database
    )
    link = MqttFleetLink(sync)
    link.attach(fleet)
    return link
