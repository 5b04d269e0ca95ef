"""Cloud HTTP defects of issue 14 (D1, D3 and the smaller ones), on a real uvicorn server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from tests.cloud.controller.conftest import ADMIN, BOOTSTRAP, LiveServer, make_settings


def _register(
    live: LiveServer, bearer: str, node_id: str, labels: dict[str, str] | None = None
) -> httpx.Response:
    with live.client(bearer) as c:
        return c.post("/api/v1/nodes/register", json={"node_id": node_id, "labels": labels or {}})


@pytest.fixture
def sqlite_services(tmp_path: Path) -> Iterator[CloudServices]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    yield svc
    svc.close()


@pytest.fixture
def live2(sqlite_services: CloudServices) -> Iterator[LiveServer]:
    with LiveServer(sqlite_services) as server:
        yield server


def test_d3_bootstrap_token_cannot_take_over_a_registered_node(live2: LiveServer) -> None:
    r = _register(live2, BOOTSTRAP, "node-b", {"site": "plant-a"})
    assert r.status_code == 201
    token_b = r.json()["token"]
    attack = _register(live2, BOOTSTRAP, "node-b", {"site": "evil"})
    assert attack.status_code == 409 and "already registered" in attack.json()["error"]
    with live2.client(token_b) as c:  # the real node keeps its credential and labels
        node = c.get("/api/v1/nodes/node-b")
        assert node.status_code == 200 and node.json()["labels"] == {"site": "plant-a"}
    # an admin may re-register (the old token stops working)
    r = _register(live2, ADMIN, "node-b")
    assert r.status_code == 201 and r.json()["token"] != token_b
    with live2.client(token_b) as c:
        assert c.get("/api/v1/models").status_code == 401


def test_d3_node_that_only_appeared_over_mqtt_may_still_register(live2: LiveServer) -> None:
    live2.svc.fleet.on_status("node-m", True, {"group": "g1"})
    assert _register(live2, BOOTSTRAP, "node-m").status_code == 201
    assert _register(live2, BOOTSTRAP, "node-m").status_code == 409


def test_d3_one_time_enrolment_token(live2: LiveServer) -> None:
    assert _register(live2, BOOTSTRAP, "node-e").status_code == 201
    with live2.client(BOOTSTRAP) as c:
        assert c.post("/api/v1/nodes/node-e/enrolment", json={}).status_code == 403
    with live2.client() as admin:
        r = admin.post("/api/v1/nodes/node-e/enrolment", json={"ttl_s": 600})
        assert r.status_code == 201, r.text
        enrol = r.json()["token"]
        assert r.json()["expires_at"].endswith(("Z", "+00:00"))
        assert admin.post("/api/v1/nodes/bad%20id/enrolment", json={}).status_code == 400
    with live2.client(enrol) as c:  # the enrolment token is no reader credential
        assert c.get("/api/v1/models").status_code == 403
    assert _register(live2, enrol, "node-other").status_code == 403
    r = _register(live2, enrol, "node-e", {"site": "new"})
    assert r.status_code == 201
    assert _register(live2, enrol, "node-e").status_code == 401  # used up
    with live2.client(r.json()["token"]) as c:
        assert c.get("/api/v1/nodes/node-e").json()["registered_via"] == "enrolment"


def test_d3_node_rotates_its_own_token_only(live2: LiveServer) -> None:
    t1 = _register(live2, BOOTSTRAP, "node-r").json()["token"]
    t2 = _register(live2, BOOTSTRAP, "node-s").json()["token"]
    with live2.client(t2) as c:
        assert c.post("/api/v1/nodes/node-r/token").status_code == 403
    with live2.client(t1) as c:
        r = c.post("/api/v1/nodes/node-r/token")
        assert r.status_code == 201
        assert c.get("/api/v1/models").status_code == 401  # the old token is gone
    with live2.client(r.json()["token"]) as c:
        assert c.get("/api/v1/models").status_code == 200
    with live2.client() as admin:
        assert admin.post("/api/v1/nodes/nobody/token").status_code == 404


@pytest.mark.parametrize("action", ["", "/pause", "/resume", "/promote", "/abort"])
def test_d1_huge_rollout_ids_are_not_server_errors(live2: LiveServer, action: str) -> None:
    with live2.client() as admin:
        for rid, want in ((2**63, 400), (2**64 + 5, 400), (2**31, 400), (0, 400), (2**31 - 1, 404)):
            if action:
                r = admin.post(f"/api/v1/rollouts/{rid}{action}", json={"reason": "x"})
            else:
                r = admin.get(f"/api/v1/rollouts/{rid}")
            assert r.status_code == want, (rid, r.status_code, r.text)
            assert set(r.json()) == {"error", "code"}


def test_d1_every_500_is_json_and_counted(sqlite_services: CloudServices) -> None:
    server = LiveServer(sqlite_services)

    @server.app.get("/api/v1/boom")
    def boom() -> None:
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    with server:
        r = httpx.get(server.url + "/api/v1/boom")
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        assert r.json() == {"error": "internal error (OverflowError)", "code": "internal_error"}
        metrics = httpx.get(server.url + "/metrics").text
        assert re.search(
            r'autoglm_cloud_http_requests_total\{method="GET",route="/api/v1/boom",status="500"\} 1', metrics
        )


def test_deleted_node_commands_are_404_and_times_carry_utc(live2: LiveServer) -> None:
    assert _register(live2, BOOTSTRAP, "node-d").status_code == 201
    with live2.client() as admin:
        assert admin.get("/api/v1/nodes/node-d/commands").status_code == 200
        assert admin.delete("/api/v1/nodes/node-d").status_code == 204
        r = admin.get("/api/v1/nodes/node-d/commands")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        m = admin.post("/api/v1/models", json={"name": "tz-model"})
        assert m.status_code == 201
        for doc in (m.json(), admin.get("/api/v1/models/tz-model").json()):
            created = datetime.fromisoformat(doc["created_at"])
            assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_validation_errors_share_the_error_shape(live2: LiveServer, tmp_path: Path) -> None:
    with live2.client() as admin:
        r = admin.post("/api/v1/models", json={"name": 5})
        # request validation is 400 bad_request in both apps (contracts.errors.request_validation_error)
        assert r.status_code == 400 and r.json()["code"] == "bad_request" and "name" in r.json()["error"]
        r = admin.get("/api/v1/nope")
        assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_cli_enrol_creates_a_one_time_token(live2: LiveServer) -> None:
    from typer.testing import CliRunner

    from autoglm.cli import app

    assert _register(live2, BOOTSTRAP, "node-cli").status_code == 201
    result = CliRunner().invoke(
        app,
        ["cloud", "enrol", "node-cli", "--url", live2.url, "--token", ADMIN, "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    token = json.loads(result.output)["token"]
    assert _register(live2, token, "node-cli").status_code == 201
    assert _register(live2, token, "node-cli").status_code == 401


def test_strict_booleans_on_the_cloud_api(live2: LiveServer) -> None:
    """Issue 14 "Smaller": ``ok: 0`` was accepted as a bool. Acks and drains take JSON true/false only."""
    reg = _register(live2, BOOTSTRAP, "node-b")
    assert reg.status_code == 201
    with live2.client() as admin:
        for value in (0, 1, "true", "yes"):
            r = admin.post("/api/v1/nodes/node-b/drain", json={"drained": value})
            assert r.status_code == 400 and r.json()["code"] == "bad_request", (value, r.text)
        assert admin.get("/api/v1/nodes/node-b").json()["drained"] is False
    with live2.client(reg.json()["token"]) as node:
        for value in (0, 1, "true", "no"):
            r = node.post("/api/v1/nodes/node-b/acks", json={"command_id": "c-1", "ok": value})
            assert r.status_code == 400 and "ok" in r.json()["error"], (value, r.text)
