"""FastAPI app: the Open Inference Protocol v2 REST API over :class:`InferenceService`.

Routes (KServe / Triton compatible):

* ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2`` (server metadata)
* ``GET /v2/models/{name}[/versions/{version}]`` (metadata), ``…/ready``
* ``POST /v2/models/{name}[/versions/{version}]/infer`` (JSON or binary tensor data)
* ``POST /v2/repository/index``, ``POST /v2/repository/models/{name}/load`` (hot swap; body
  ``{"parameters": {"bundle": "/path", "adapter_set": "name"}}``; admin token, see :mod:`edge.http.auth`)
* ``GET /metrics`` (Prometheus), ``GET /v2/edge/status`` (slot states, last load)

The infer route is a raw ASGI handler (:mod:`edge.http.infer_endpoint`) called before FastAPI's
routing and middleware; it watches for the client going away, so a request cancelled before
its batch starts costs no forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.types import Receive, Send

import contracts
from contracts.body_limits import BodyLimitMiddleware
from contracts.defaults import EDGE_LIVE_PATH, EDGE_READY_PATH, METRICS_PATH
from contracts.errors import BadRequest, Conflict, NotFound, error_responses
from contracts.logging import get_logger
from edge.http.auth import EdgeAdminAuth
from edge.http.errors import ERROR_RESPONSES, install_error_handlers
from edge.http.infer_endpoint import InferEndpoint, match_infer_path
from edge.http.oip_codec import INPUT_NAME, OUTPUT_DTYPES
from edge.serving.loaded_model import LoadedModel
from edge.serving.service import InferenceService
from edge.settings import ServeSettings

log = get_logger("autoglm.edge.http")
SERVER_NAME = "autoglm-edge"
EXTENSIONS = ["binary_tensor_data", "model_repository"]


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def model_metadata(m: LoadedModel) -> dict[str, Any]:
    n_routes = len(m.routes)
    dims = {
        "embedding": [-1, m.embedding_dim or -1],
        "route_logits": [-1, n_routes],
        "route_probabilities": [-1, n_routes],
        "route_index": [-1],
        "route_label": [-1],
    }
    return {
        "name": m.name,
        "versions": [m.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": k, "datatype": v, "shape": dims[k]} for k, v in OUTPUT_DTYPES.items()],
        "parameters": {
            "adapter_set": m.adapter_set,
            "routes": list(m.routes),
            "temperature": m.temperature,
            "providers": list(m.providers),
            **{k: v for k, v in m.extra.items() if isinstance(v, str | int | float | bool)},
        },
    }


class EdgeApp(FastAPI):
    """FastAPI app whose infer route is served by a raw ASGI handler before FastAPI's layers."""

    infer_endpoint: InferEndpoint | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.infer_endpoint is not None:
            matched = match_infer_path(scope["path"])
            if matched is not None:
                await self.infer_endpoint(scope, receive, send, *matched)
                return
        await super().__call__(scope, receive, send)


INFER_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "description": "priority, timeout (µs), deadline_ms, binary_data_output",
        },
        "inputs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype"],
                "properties": {
                    "name": {"type": "string", "enum": [INPUT_NAME]},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": ["BYTES"]},
                    "data": {"type": "array"},
                    "parameters": {"type": "object"},
                },
            },
        },
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": list(OUTPUT_DTYPES)},
                    "parameters": {"type": "object"},
                },
            },
        },
    },
}
INFER_ERRORS = {
    k: {
        "description": v["description"],
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error", "code"],
                    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
                }
            }
        },
    }
    for k, v in error_responses(400, 404, 413, 429, 503, 504).items()
}


def _log_initial_load(task: asyncio.Task[LoadedModel]) -> None:
    if not task.cancelled() and task.exception() is not None:  # ready stays 503 with the reason
        log.error("initial bundle did not load: %s", task.exception())


def create_app(service: InferenceService, settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()
    max_body = settings.http_max_body_bytes

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        initial: asyncio.Task[LoadedModel] | None = None
        if settings.bundle_dir is not None and service.active is None:
            # In the background: liveness answers at once, readiness once the model is warm.
            initial = service.start_load(Path(settings.bundle_dir), settings.serve_adapter_set)
            initial.add_done_callback(_log_initial_load)
        try:
            yield
        finally:
            if initial is not None and not initial.done():
                initial.cancel()
            await service.stop()

    app = EdgeApp(
        title="Open-AutoGLM edge inference",
        version=contracts.__version__,
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    install_error_handlers(app)
    app.state.service = service
    app.state.admin_auth = auth = EdgeAdminAuth(settings.http_admin_token, settings.http_insecure_dev)
    app.state.limit_concurrency = settings.http_limit_concurrency  # read by edge.http.server.uvicorn_config
    app.add_middleware(
        BodyLimitMiddleware,  # type: ignore[arg-type]
        max_body_bytes=settings.http_max_json_body_bytes,
        max_json_depth=settings.http_max_json_depth,
    )

    def require_admin(request: Request) -> None:
        auth(request)

    def refuse_with_workers(what: str) -> None:
        """A swap in one worker process would leave the others on the old model (edge.http.workers)."""
        if settings.http_workers > 1:
            raise Conflict(
                f"{what} is not available: this server runs {settings.http_workers} worker processes and "
                "the request would reach only one of them; restart the server with the new bundle"
            )

    @app.get(EDGE_LIVE_PATH)
    async def live() -> Response:
        return _json({"live": True})

    @app.get(EDGE_READY_PATH)
    async def ready() -> Response:
        if not service.ready:
            service.resolve()  # raises Unavailable with the reason
        return _json({"ready": True})

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json({"name": SERVER_NAME, "version": contracts.__version__, "extensions": EXTENSIONS})

    @app.get("/v2/models/{name}")
    async def metadata(name: str) -> Response:
        return _json(model_metadata(service.resolve(name)))

    @app.get("/v2/models/{name}/versions/{version}")
    async def metadata_version(name: str, version: str) -> Response:
        return _json(model_metadata(service.resolve(name, version)))

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str) -> Response:
        m = service.resolve(name)
        return _json({"name": m.name, "version": m.version, "ready": True})

    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_version_ready(name: str, version: str) -> Response:
        m = service.resolve(name, version)
        return _json({"name": m.name, "version": m.version, "ready": True})

    app.infer_endpoint = InferEndpoint(service, max_body, settings.http_max_inflight_body_bytes)

    # Documentation only: EdgeApp answers these paths with the raw infer endpoint before routing,
    # so these handlers never run; they put the infer API (and its errors) into the OpenAPI.
    infer_doc: dict[str, Any] = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": INFER_REQUEST_SCHEMA}}},
        "responses": {
            "200": {
                "description": "Inference response (JSON, or JSON + binary tensors)",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **{str(k): v for k, v in INFER_ERRORS.items()},
        },
    }

    @app.post("/v2/models/{name}/infer", openapi_extra=infer_doc, include_in_schema=True)
    async def infer_documented(name: str) -> Response:  # pragma: no cover - served by InferEndpoint
        raise NotFound("served by the infer endpoint")

    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=infer_doc)
    async def infer_version_documented(name: str, version: str) -> Response:  # pragma: no cover
        raise NotFound("served by the infer endpoint")

    @app.post("/v2/repository/index")
    async def repository_index(request: Request) -> Response:
        require_admin(request)
        rows = []
        st = service.status()
        if st["active"]:
            a = st["active"]
            rows.append({"name": a["name"], "version": a["version"], "state": "READY", "reason": ""})
        for d in st["draining"]:
            rows.append(
                {"name": d["name"], "version": d["version"], "state": "UNAVAILABLE", "reason": "draining"}
            )
        last = st["last_load"]
        if last and last["state"] == "failed":
            rows.append(
                {
                    "name": last["model"] or last["source"],
                    "version": "",
                    "state": "UNAVAILABLE",
                    "reason": last["error"],
                }
            )
        return _json(rows)

    @app.post("/v2/repository/models/{name}/load")
    async def repository_load(name: str, request: Request) -> Response:
        require_admin(request)
        refuse_with_workers("repository load")
        body = await request.body()
        try:
            doc = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"load request is not valid JSON: {exc}") from None
        params = doc.get("parameters") if isinstance(doc, dict) else None
        if not isinstance(params, dict):
            raise BadRequest('load request needs {"parameters": {"bundle": "<bundle dir>"}}')
        bundle = params.get("bundle") or (str(settings.bundle_dir) if settings.bundle_dir else None)
        adapter_set = params.get("adapter_set")
        if not isinstance(bundle, str) or not bundle:
            raise BadRequest("parameter 'bundle' (a bundle directory on this node) is required")
        if adapter_set is not None and not isinstance(adapter_set, str):
            raise BadRequest("parameter 'adapter_set' must be a string")
        m = await service.load(Path(bundle), adapter_set, expected_name=name)
        return _json(
            {"name": m.name, "version": m.version, "adapter_set": m.adapter_set, "state": m.state.value}
        )

    @app.post("/v2/repository/models/{name}/unload")
    async def repository_unload(name: str, request: Request) -> Response:
        require_admin(request)
        refuse_with_workers("repository unload")
        active = service.active
        if active is None or active.name != name:
            raise NotFound(f"model {name!r} is not loaded")
        raise Conflict("unloading the only served model is not supported; load another bundle instead")

    @app.get("/v2/edge/status")
    async def edge_status() -> Response:
        st = service.status()
        cache = service.cache
        st["cache"] = {
            "entries": len(cache),
            "bytes": cache.used_bytes,
            "max_bytes": cache.max_bytes,
            "hits": cache.stats.hits,
            "misses": cache.stats.misses,
            "compression_ratio": round(cache.stats.compression_ratio, 3),
        }
        st["queue_depth"] = service.batcher.depth
        st["node_id"] = settings.node_id
        # which worker process answered (edge.http.workers; index 0 of 1 for a single-process server)
        st["worker"] = {
            "index": getattr(app.state, "worker_index", 0),
            "workers": settings.http_workers,
            "pid": os.getpid(),
        }
        return _json(st)

    @app.get(METRICS_PATH)
    async def metrics() -> Response:
        service.metrics.cache_bytes.set(service.cache.used_bytes)
        service.metrics.queue_depth.set(service.batcher.depth)
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
