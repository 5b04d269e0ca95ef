"""The FastAPI app factory of the cloud controller.

``create_app`` wires the services (or takes prepared ones), installs the single error mapping,
the request metrics and the routers. Its lifespan runs the controller loops (each in a worker
thread: they touch the database): the leader election, and on the leader only the rollout
ticks, offline sweeps and the MQTT link (``services.extra['sync']``, started / stopped as the
lease is won / lost); heartbeat flushes and the fleet refresh (changes other replicas made) run
everywhere. With ``run_loops=False`` the caller drives the controller and the link starts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import Counter, Histogram

from cloud.api.auth import parse_admin_tokens
from cloud.api.container import CloudServices
from cloud.api.errors import install_error_handlers, unexpected_error_response
from cloud.api.routers import fleet, health, loop, registry, rollouts, tools
from cloud.settings import CloudSettings
from cloud.ui import mount_console
from contracts.body_limits import BodyLimitMiddleware
from contracts.errors import ERROR_RESPONSES
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.api")

HTTP_REQUESTS = Counter("autoglm_cloud_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_SECONDS = Histogram("autoglm_cloud_http_request_seconds", "HTTP request duration", ["method", "route"])


async def _loop(name: str, interval_s: float, fn: Callable[[], object]) -> None:
    while True:
        try:
            await asyncio.to_thread(fn)
        except Exception:
            log.exception("background loop failed", extra={"loop": name})
        await asyncio.sleep(interval_s)


def create_app(
    settings: CloudSettings | None = None,
    *,
    services: CloudServices | None = None,
    run_loops: bool = True,
) -> FastAPI:
    settings = settings or (services.settings if services else CloudSettings())
    svc = services or CloudServices.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        sync = svc.extra.get("sync")
        if run_loops:
            # Every replica serves the API; only the lease holder runs the rollouts, the sweeps
            # and the MQTT sync (``elect`` starts / stops it as leadership changes).
            await asyncio.to_thread(svc.elect)
            tasks = [
                asyncio.create_task(_loop("leader", settings.leader_lease_ttl_s / 3, svc.elect)),
                asyncio.create_task(_loop("rollout", settings.rollout_tick_s, svc.lead_rollouts)),
                asyncio.create_task(
                    _loop("sweep", min(settings.heartbeat_timeout_s / 3, 5.0), svc.lead_sweep)
                ),
                asyncio.create_task(_loop("flush", settings.fleet_flush_interval_s, svc.sync_fleet)),
            ]
        elif sync is not None and hasattr(sync, "start"):  # the caller drives the controller itself
            await asyncio.to_thread(sync.start)
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if sync is not None and hasattr(sync, "stop"):
                await asyncio.to_thread(sync.stop)
            svc.fleet.flush()
            if run_loops:
                await asyncio.to_thread(svc.leader.release)

    app = FastAPI(
        title="Open-AutoGLM Edge cloud controller",
        version="1",
        description="Model registry, artifact downloads, fleet, gray-release rollouts and the tool service.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.services = svc
    app.state.admin_tokens = parse_admin_tokens(settings.all_admin_tokens())
    if not app.state.admin_tokens:
        log.warning("no admin token configured: management endpoints will refuse every request")
    install_error_handlers(app)
    # Added before the metrics middleware, so it runs inside it: its 413 / 400 answers are counted.
    app.add_middleware(
        BodyLimitMiddleware,  # type: ignore[arg-type]
        max_body_bytes=settings.http_max_json_body_bytes,
        max_json_depth=settings.http_max_json_depth,
        exclude_paths=("/api/v1/bundles",),  # the upload streams to disk under upload_max_bytes
    )

    @app.middleware("http")
    async def _metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # answered here so that every 500 is counted below
            response = unexpected_error_response(request, exc)
        route = request.scope.get("route")
        label = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(method=request.method, route=label, status=str(response.status_code)).inc()
        HTTP_SECONDS.labels(method=request.method, route=label).observe(time.perf_counter() - t0)
        return response

    for r in (
        health.router,
        registry.router,
        fleet.router,
        rollouts.router,
        tools.router,
        loop.hard_examples,
        loop.jobs,
    ):
        app.include_router(r)
    mount_console(app)  # the web console at /ui (docs/arch/console.md)
    return app
