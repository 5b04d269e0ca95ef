"""One error status rule for both apps (issue 12 "one error body shape", issue 14): request
validation is ``400 bad_request`` in the cloud and on the edge, mapped by the same function
(``contracts.errors.request_validation_error``), and both OpenAPI descriptions say so: every
operation documents 400, 401, 403 and 404 in the one error shape, and FastAPI's own
``HTTPValidationError`` (``{"detail": [...]}``) appears nowhere. Live answers of both apps are
checked in test_cloud_defects.py (``test_validation_errors_share_the_error_shape``) and
test_edge_defects.py (strict booleans, negative timeout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from cloud.api.app import create_app as create_cloud_app
from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from contracts.errors import BadRequest, request_validation_error
from edge.agent.factory import build_agent
from edge.agent.http import make_router
from edge.agent.settings import AgentSettings
from edge.http.app import create_app as create_edge_app
from edge.serving.service import InferenceService
from tests.cloud.controller.conftest import make_settings
from tests.edge.conftest import settings_for

METHODS = {"get", "post", "put", "patch", "delete"}


def _check_openapi(app: FastAPI) -> int:
    spec: dict[str, Any] = app.openapi()
    assert "HTTPValidationError" not in str(spec) and "ValidationError" not in spec.get("components", {}).get(
        "schemas", {}
    ), "FastAPI's {'detail'} validation body must not be documented"
    checked = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            # issue 14 "Smaller": the OpenAPI documented no 400/401/403/404
            for status in ("400", "401", "403", "404"):
                resp = op["responses"].get(status)
                assert resp is not None, f"{method.upper()} {path} does not document {status}"
                schema = str(resp.get("content", {}).get("application/json", {}).get("schema", {}))
                assert "ErrorBody" in schema or "'error'" in schema, (
                    f"{method.upper()} {path}: {status} shape"
                )
            if op.get("parameters") or op.get("requestBody"):
                checked += 1
    return checked


def test_cloud_openapi_documents_400_in_the_error_shape(tmp_path: Path) -> None:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    try:
        assert _check_openapi(create_cloud_app(services=svc, run_loops=False)) >= 25
    finally:
        svc.close()


def test_edge_openapi_documents_400_in_the_error_shape(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, node_id="node-oa")
    service = InferenceService.from_settings(settings)
    app = create_edge_app(service, settings)
    agent = build_agent(
        AgentSettings(agent_memory_db=tmp_path / "m.sqlite3"), service=service, node_id="node-oa"
    )
    app.include_router(make_router(agent))
    assert _check_openapi(app) >= 8


def test_request_validation_error_is_one_bounded_400() -> None:
    errors = [{"loc": ("body", "items", i), "msg": "x" * 1000, "type": "t"} for i in range(10_000)]
    err = request_validation_error(iter(errors))
    assert isinstance(err, BadRequest) and err.status == 400 and err.code == "bad_request"
    assert err.message.startswith("invalid request: body.items.0: ") and len(err.message) <= 2000
    assert err.message.count("body.items.") <= 5
    assert request_validation_error([{"loc": ("query", "page"), "msg": "too small"}]).message == (
        "invalid request: query.page: too small"
    )
