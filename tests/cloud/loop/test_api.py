"""The loop's HTTP API on a live server: list / label / reject / datasets / jobs, one error body
shape, readers read and only admins act."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import BOOTSTRAP, LiveServer, make_settings
from tests.cloud.loop.conftest import records
from tests.cloud.loop.test_queue_jobs import FAKE, fake_triage

MODEL = "autoglm-router"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    svc.registry.register_dir(make_bundle(tmp_path / "b", name=MODEL, version="1.0.0"), actor="t")
    svc.registry.set_alias(MODEL, "stable", "1.0.0", actor="t", reason="initial")
    svc.loop.queue.ingest("n1", records(list(FAKE)))
    svc.loop.queue.triage(fake_triage)
    try:
        with LiveServer(svc) as server:
            yield server
    finally:
        svc.close()


def test_queue_and_jobs_over_http(live: LiveServer) -> None:
    node = live.client(BOOTSTRAP).post("/api/v1/nodes/register", json={"node_id": "n1"}).json()["token"]
    admin, reader = live.client(), live.client(node)
    listing = reader.get("/api/v1/hard-examples", params={"status": "new"}).json()
    assert listing["total"] == 2 and listing["untriaged"] == 0
    item = listing["items"][0]
    assert reader.get(f"/api/v1/hard-examples/{item['id']}").json()["text"] == item["text"]
    r = reader.post(f"/api/v1/hard-examples/{item['id']}/label", json={})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = admin.post(f"/api/v1/hard-examples/{item['id']}/label", json={"route": "shift_schedule"})
    assert r.status_code == 400
    assert r.json()["error"].startswith(
        "route 'shift_schedule' is unknown: not a route of autoglm-router@1.0.0"
    )
    assert "no tool is bound to it" in r.json()["error"] and r.json()["code"] == "bad_request"
    bad = admin.post(f"/api/v1/hard-examples/{item['id']}/label", json={"route": "Bad Route"})
    assert bad.status_code == 400 and "route" in bad.json()["error"]  # request validation
    assert admin.post("/api/v1/hard-examples/999/label", json={}).status_code == 404
    assert admin.post("/api/v1/hard-examples/datasets").status_code == 409  # nothing labelled yet
    ok = admin.post(f"/api/v1/hard-examples/{item['id']}/label", json={"reason": "looks right"})
    assert (
        ok.status_code == 200
        and ok.json()["status"] == "labelled"
        and ok.json()["labelled_by"] == "admin:alice"
    )
    other = listing["items"][1]
    assert admin.post(f"/api/v1/hard-examples/{other['id']}/reject", json={"reason": "noise"}).json()[
        "status"
    ] == ("rejected")
    ds = admin.post("/api/v1/hard-examples/datasets")
    assert ds.status_code == 201 and ds.json()["version"] == 1
    assert reader.get("/api/v1/hard-examples/datasets").json()[0]["sha256"] == ds.json()["sha256"]

    assert admin.post("/api/v1/jobs", json={"model": "nope"}).status_code == 404
    job = admin.post("/api/v1/jobs", json={"model": MODEL, "reason": "try"})
    assert job.status_code == 201 and job.json()["state"] == "queued"
    assert admin.post("/api/v1/jobs", json={"model": MODEL}).json()["id"] == job.json()["id"]
    jid = job.json()["id"]
    assert [j["id"] for j in reader.get("/api/v1/jobs").json()] == [jid]
    assert reader.get(f"/api/v1/jobs/{jid}").json()["logs"][0].endswith("queued by admin:alice: try")
    assert reader.post(f"/api/v1/jobs/{jid}/cancel", json={}).status_code == 403
    c = admin.post(f"/api/v1/jobs/{jid}/cancel", json={"reason": "not now"})
    assert c.status_code == 200 and c.json()["state"] == "cancelled"
    again = admin.post(f"/api/v1/jobs/{jid}/cancel", json={})
    assert again.status_code == 409 and again.json() == {
        "error": f"job {jid} is already cancelled",
        "code": "conflict",
    }
    assert reader.get("/api/v1/jobs/424242").status_code == 404
