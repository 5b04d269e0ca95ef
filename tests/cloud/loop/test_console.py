"""The console's hard-example and job pages on a live controller: viewers read, admins approve,
relabel (an unknown route is refused with its reason), reject, queue and cancel jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import ADMIN, LiveServer, make_settings
from tests.cloud.loop.conftest import records
from tests.cloud.loop.test_queue_jobs import FAKE, fake_triage
from tests.cloud.ui.conftest import VIEWER, sign_in

MODEL = "autoglm-router"


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("AUTOGLM_CLOUD_CONSOLE_VIEWER_TOKENS", f'["{VIEWER}"]')
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


def test_console_loop_pages(live: LiveServer) -> None:
    origin = {"Origin": live.url}
    with httpx.Client(base_url=live.url, follow_redirects=False) as viewer:
        vcsrf = sign_in(viewer, VIEWER)
        page = viewer.get("/ui/hard-examples")
        assert (
            page.status_code == 200
            and "count the pallets on dock 4" in page.text
            and "Hard examples" in page.text
        )
        assert "Approve / relabel" not in page.text  # read-only
        r = viewer.post("/ui/hard-examples/1/label", data={"csrf": vcsrf}, headers=origin)
        assert r.status_code == 403 and "read-only" in r.text
        assert viewer.get("/ui/jobs").status_code == 200
    with httpx.Client(base_url=live.url, follow_redirects=False) as admin:
        csrf = sign_in(admin, ADMIN)
        page = admin.get("/ui/hard-examples?status=all")
        assert 'id="label-1"' in page.text and 'id="reject-2"' in page.text
        r = admin.post(
            "/ui/hard-examples/1/label", data={"csrf": csrf, "route": "shift_schedule"}, headers=origin
        )
        assert r.status_code == 303
        assert "route &#39;shift_schedule&#39; is unknown" in admin.get("/ui/hard-examples").text
        admin.post("/ui/hard-examples/1/label", data={"csrf": csrf}, headers=origin)
        admin.post("/ui/hard-examples/2/reject", data={"csrf": csrf, "reason": "noise"}, headers=origin)
        page = admin.get("/ui/hard-examples?status=labelled")
        assert "labelled" in page.text and "count the pallets on dock 4" in page.text
        r = admin.post(
            "/ui/jobs", data={"csrf": csrf, "model": MODEL, "reason": "from the console"}, headers=origin
        )
        assert r.status_code == 303 and r.headers["location"] == "/ui/jobs/1"
        page = admin.get("/ui/jobs/1")
        assert "queued by admin:alice: from the console" in page.text and 'id="action-cancel"' in page.text
        admin.post("/ui/jobs/1/cancel", data={"csrf": csrf, "reason": "not now"}, headers=origin)
        page = admin.get("/ui/jobs/1")
        assert 'id="job-state" class="state-cancelled"' in page.text and 'id="action-cancel"' not in page.text
        assert "#1" in admin.get("/ui/jobs?partial=1").text
