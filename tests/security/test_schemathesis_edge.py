"""Schemathesis over the edge's OpenAPI (OIP v2 with the infer route, repository API, the agent's
/v1 routes) on a real uvicorn server serving a really exported tiny bundle with ONNX Runtime,
with the edge admin token: no 5xx, only documented statuses, errors in the one JSON shape.
``AUTOGLM_FUZZ_EXAMPLES`` scales the run (tests/security/fuzz.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from edge.agent.factory import build_agent
from edge.agent.http import make_router
from edge.agent.settings import AgentSettings
from edge.http.app import create_app
from edge.http.server import BackgroundServer
from edge.serving.service import InferenceService
from tests.edge.conftest import ADMIN_HEADERS, MODEL, Bundles, settings_for, wait_ready
from tests.security.fuzz import examples_per_operation, fuzz, rounds


@pytest.mark.timeout(900)
def test_edge_openapi_fuzz_has_no_server_errors(
    tmp_path: Path, bundles: Bundles, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path, bundle_dir=bundles.v1, node_id="node-fuzz")
    service = InferenceService.from_settings(settings)
    app = create_app(service, settings)
    # No cloud: cloud routes answer "offline" at once instead of waiting on a network.
    agent = build_agent(
        AgentSettings(agent_memory_db=tmp_path / "memory.sqlite3"),
        service=service,
        node_id="node-fuzz",
        bundle_dir=bundles.v1,
    )
    app.include_router(make_router(agent))
    server = BackgroundServer(app).start()
    try:
        wait_ready(server.url)
        spec = httpx.get(server.url + "/openapi.json").json()
        assert "/v2/models/{name}/infer" in spec["paths"]
        pinned = {
            "/v2/models/{name}/infer": {"name": MODEL},
            "/v2/models/{name}/versions/{version}/infer": {"name": MODEL, "version": "1.0.0"},
        }
        report = fuzz(
            spec,
            server.url,
            ADMIN_HEADERS,
            examples=examples_per_operation(),
            path_parameters=pinned,
            repeat=rounds(3),
        )
        ready = httpx.get(server.url + "/v2/health/ready")
        assert ready.status_code == 200, ready.text  # still serving
        assert (
            httpx.post(
                server.url + f"/v2/models/{MODEL}/infer",
                json={
                    "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["still answers"]}]
                },
            ).status_code
            == 200
        )
    finally:
        server.stop()
    with capsys.disabled():
        print(f"\nschemathesis edge: {report.summary()}")
    assert report.operations >= 15
    assert not report.problems, "\n".join(report.problems[:40])
