"""``EdgeNode``: the one composition root of an edge node.

Builds, from settings, the inference service (with a model manager that can hold a traffic
split and a loader that finds an update's parent in the model cache), the HTTP app (OIP v2,
optionally the reasoning agent), the MQTT sync, the control plane (cloud commands, KubeEdge
twin deltas, last-known-good) and the heartbeat provider; starts and stops them in order.
Every part can be passed in instead (dependency injection), e.g. a test's own sync or
downloader.

Start order: serving loop + HTTP server (the app's lifespan starts the batcher and loads the
start-up bundle — the last-known-good one when the cache has it, else ``bundle_dir``), then
node registration (when only a bootstrap token is configured), then the sync (heartbeats,
commands). Stop: sync first (graceful ``offline``), then the server (drains the service).
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI

from contracts.errors import Unavailable
from contracts.logging import get_logger
from contracts.settings import ConfigError
from edge.control.cache import ModelCache
from edge.control.downloader import RegistryDownloader
from edge.control.heartbeat import ServingHeartbeat
from edge.control.loader import CachedParentLoader
from edge.control.plane import ControlPlane
from edge.control.settings import ControlSettings
from edge.http.app import create_app
from edge.http.server import uvicorn_config
from edge.runtime.providers import node_hardware
from edge.serving.service import InferenceService
from edge.settings import ServeSettings
from edge.sync.agent import EdgeSync
from edge.sync.settings import SyncSettings

log = get_logger("autoglm.edge.node")

TOKEN_FILE = "node-token"


def build_service(settings: ServeSettings, cache: ModelCache) -> InferenceService:
    """``InferenceService.from_settings`` with the control plane's loader (model cache)."""
    return InferenceService.from_settings(
        settings, loader_factory=lambda served_bundle: CachedParentLoader(settings, cache, served_bundle)
    )


def register_node(
    url: str, bootstrap_token: str, node_id: str, labels: dict[str, str], timeout_s: float = 30.0
) -> str:
    """Register with the controller's bootstrap token; returns the node's own token."""
    import httpx

    try:
        r = httpx.post(
            f"{url.rstrip('/')}/api/v1/nodes/register",
            json={"node_id": node_id, "labels": labels},
            headers={"Authorization": f"Bearer {bootstrap_token}"},
            timeout=timeout_s,
        )
    except httpx.TransportError as err:
        raise Unavailable(f"cloud at {url} not reachable for node registration: {err}") from err
    if r.status_code != 201:
        raise Unavailable(f"node registration refused: {r.status_code} {r.text[:200]}")
    return str(r.json()["token"])


@dataclass
class EdgeNode:
    serve: ServeSettings
    service: InferenceService
    app: FastAPI
    cache: ModelCache
    control: ControlPlane
    heartbeat: ServingHeartbeat
    sync: EdgeSync | None = None
    control_settings: ControlSettings = field(default_factory=ControlSettings)
    agent: Any = None
    _server: uvicorn.Server | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _error: BaseException | None = field(default=None, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    # -- building ----------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        serve: ServeSettings | None = None,
        sync_settings: SyncSettings | None = None,
        control: ControlSettings | None = None,
        *,
        with_sync: bool = True,
        with_agent: bool = False,
        service: InferenceService | None = None,
        sync: EdgeSync | None = None,
        downloader: RegistryDownloader | None = None,
        agent_settings: Any = None,
    ) -> EdgeNode:
        serve = serve or ServeSettings()
        if serve.http_workers > 1:
            # the control plane applies cloud commands (hot swaps) to its one in-process service;
            # with worker processes they would reach one of them (edge.http.workers)
            raise ConfigError(
                f"AUTOGLM_EDGE_HTTP_WORKERS={serve.http_workers}: the edge node agent serves in one process "
                "(model updates from the cloud are applied to it); several workers are only for "
                "`autoglm edge serve`"
            )
        cs = control or ControlSettings()
        cache = ModelCache(serve.model_cache_dir)
        service = service or build_service(serve, cache)
        plane = ControlPlane(
            service,
            cache,
            downloader,
            apply_timeout_s=cs.control_apply_timeout_s,
            keep_versions=cs.control_keep_versions,
            model_name=cs.control_model_name or None,
        )
        if cs.control_restore_last_good:  # serve the last good bundle without the cloud
            lkg = plane.last_good_dir()
            if lkg is not None:
                log.info("start-up bundle: last-known-good %s", lkg[0])
                serve = serve.model_copy(update={"bundle_dir": lkg[0], "serve_adapter_set": lkg[1]})
        if with_agent:
            from edge.agent.settings import AgentSettings

            agent_settings = agent_settings or AgentSettings()
            if not agent_settings.agent_cloud_url and cs.control_cloud_url:
                # the agent reuses the node's cloud URL (and, once known, its token: _connect_cloud)
                agent_settings = agent_settings.model_copy(update={"agent_cloud_url": cs.control_cloud_url})
        if sync is None and with_sync:
            ss = sync_settings or SyncSettings()
            store = None
            if with_agent:
                from edge.memory.store import MemoryStore

                store = MemoryStore(agent_settings.agent_memory_db, serve.node_id)
            sync = EdgeSync(ss, node_id=serve.node_id, store=store)
        app = create_app(service, serve)
        heartbeat = ServingHeartbeat(service, hardware=node_hardware(serve))
        agent = None
        if with_agent:
            from edge.agent.factory import build_agent
            from edge.agent.http import make_router

            # No bundle and no cloud to get one from: the agent routes with its keyword router
            # (hashing encoder) instead of waiting for a model that cannot come.
            has_model = serve.bundle_dir is not None or bool(cs.control_cloud_url) or downloader is not None
            agent = build_agent(
                agent_settings,
                service=service,
                sync=sync,
                node_id=serve.node_id,
                bundle_dir=serve.bundle_dir,
                keyword_routing=not has_model,
            )
            app.include_router(make_router(agent))
            heartbeat.add(agent.metrics.heartbeat_fields)
        node = cls(serve, service, app, cache, plane, heartbeat, sync, cs, agent)
        if sync is not None:
            sync.set_heartbeat_provider(heartbeat)
            plane.attach_acker(sync.ack_command)  # applies run in the plane's worker, acked when done
            sync.on_command(plane.handle)
            if sync.twin is not None:
                sync.on_twin_delta(plane.on_twin_delta)
        return node

    # -- cloud access ------------------------------------------------------------------------------
    def _connect_cloud(self) -> None:
        cs = self.control_settings
        if self.control.downloader is not None or not cs.control_cloud_url:
            return
        token = cs.control_node_token or self._stored_token()
        if not token and cs.control_bootstrap_token:
            token = register_node(
                cs.control_cloud_url,
                cs.control_bootstrap_token,
                self.serve.node_id,
                cs.control_node_labels,
                cs.control_download_timeout_s,
            )
            self._store_token(token)
        if (
            self.agent is not None
            and token
            and self.agent.cloud.base_url == cs.control_cloud_url.rstrip("/")
            and not self.agent.cloud.has_token
        ):
            self.agent.cloud.set_token(token)  # the agent calls cloud tools with the node's credential
        self.control.downloader = RegistryDownloader.connect(
            cs.control_cloud_url,
            token,
            self.cache,
            timeout_s=cs.control_download_timeout_s,
            retries=cs.control_download_retries,
        )

    def _connect_cloud_soon(self, stop: threading.Event) -> None:
        """Registration needs the cloud; the node must start without it (last-known-good), so
        a failed registration is retried in the background with backoff."""
        delay = 1.0
        while not stop.is_set():
            try:
                self._connect_cloud()
                return
            except Unavailable as err:
                log.warning("cloud not reachable for registration (retrying in %.0fs): %s", delay, err)
            stop.wait(delay)
            delay = min(delay * 2, 60.0)

    def _stored_token(self) -> str:
        p = self.cache.root / TOKEN_FILE
        return p.read_text(encoding="utf-8").strip() if p.is_file() else ""

    def _store_token(self, token: str) -> None:
        p = self.cache.root / TOKEN_FILE
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")

    # -- running -----------------------------------------------------------------------------------
    async def run(self, started: threading.Event | None = None) -> None:
        """Serve until :meth:`stop` (or a signal in the foreground)."""
        self.control.bind(asyncio.get_running_loop())
        self._server = server = uvicorn.Server(
            uvicorn_config(self.app, self.serve.http_host, self.serve.http_port)
        )
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    await task
                    raise RuntimeError("the HTTP server exited during start-up")
                await asyncio.sleep(0.02)
            try:
                await asyncio.to_thread(self._connect_cloud)
            except Unavailable as err:
                log.warning("starting without the cloud: %s", err)
                threading.Thread(
                    target=self._connect_cloud_soon,
                    args=(self._stopping,),
                    daemon=True,
                    name="edge-node-register",
                ).start()
            if self.sync is not None:
                self.sync.start()
            if started is not None:
                started.set()
            await task
        finally:
            self._stopping.set()
            self.control.close()
            if self.sync is not None:
                await asyncio.to_thread(self.sync.stop)
            if self.control.downloader is not None:
                self.control.downloader.close()
            if self.agent is not None:
                await self.agent.cloud.aclose()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.serve.http_host in ("0.0.0.0", "") else self.serve.http_host
        return f"http://{host}:{self.serve.http_port}"

    def start(self, timeout: float = 60.0) -> EdgeNode:
        """Run in a background thread (tests, embedding); returns once serving and synced."""
        started = threading.Event()

        def main() -> None:
            try:
                asyncio.run(self.run(started))
            except BaseException as err:
                self._error = err
                started.set()

        self._thread = threading.Thread(target=main, name=f"edge-node-{self.serve.node_id}", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError(f"edge node {self.serve.node_id} did not start within {timeout}s")
        if self._error is not None:
            raise RuntimeError(
                f"edge node {self.serve.node_id} failed to start: {self._error}"
            ) from self._error
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
