"""Schemathesis over the cloud controller's OpenAPI on a real uvicorn server (SQLite, no MQTT),
with an admin token: no 5xx, only documented statuses, errors in the one JSON shape. Prints the
request count (``AUTOGLM_FUZZ_EXAMPLES`` scales it; see tests/security/fuzz.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import ADMIN, BOOTSTRAP, LiveServer, make_settings
from tests.security.fuzz import examples_per_operation, fuzz


@pytest.mark.timeout(900)
def test_cloud_openapi_fuzz_has_no_server_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    try:
        with LiveServer(svc) as live:
            # some state for the generated requests to meet: a model with a version, a node
            svc.registry.register_dir(make_bundle(tmp_path / "b", version="1.0.0"), actor="test")
            with live.client(BOOTSTRAP) as c:
                assert c.post("/api/v1/nodes/register", json={"node_id": "node-1"}).status_code == 201
            spec = httpx.get(live.url + "/openapi.json").json()
            report = fuzz(
                spec, live.url, {"Authorization": f"Bearer {ADMIN}"}, examples=examples_per_operation()
            )
            assert httpx.get(live.url + "/healthz").status_code == 200  # still up
    finally:
        svc.close()
    with capsys.disabled():
        print(f"\nschemathesis cloud: {report.summary()}")
    assert report.operations >= 30
    assert not report.problems, "\n".join(report.problems[:40])
