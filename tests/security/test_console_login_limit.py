"""The web console's sign-in is rate-limited per client address (issue 16 leftover, issue 14 threat
model): a token bucket of ``console_login_burst`` attempts refilling one per
``console_login_refill_s``; used up → 429 with Retry-After before the token is even compared (the
right token included), counted in ``autoglm_cloud_console_logins_total``; a successful sign-in does
not use the budget up. Against the real controller (uvicorn on a free port, SQLite)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud.api.container import CloudServices
from cloud.fleet.channel import RecordingChannel
from cloud.ui.sessions import LoginLimiter
from tests.cloud.controller.conftest import ADMIN, LiveServer, make_settings

BURST = 3


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("AUTOGLM_CLOUD_CONSOLE_LOGIN_BURST", str(BURST))
    monkeypatch.setenv("AUTOGLM_CLOUD_CONSOLE_LOGIN_REFILL_S", "3600")  # nothing refills during the test
    svc = CloudServices.build(make_settings(tmp_path), channel=RecordingChannel())
    try:
        with LiveServer(svc) as server:
            yield server
    finally:
        svc.close()


def _attempt(web: httpx.Client, token: str) -> httpx.Response:
    page = web.get("/ui/login")
    found = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return web.post("/ui/login", data={"token": token, "login_csrf": found.group(1), "next": "/ui/fleet"})


def _count(web: httpx.Client, result: str) -> float:
    m = re.search(
        rf'autoglm_cloud_console_logins_total\{{result="{result}"\}} ([0-9.e+]+)', web.get("/metrics").text
    )
    return float(m.group(1)) if m else 0.0


def test_login_attempts_are_limited_per_address_with_429_and_counted(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url, timeout=10) as web:
        limited0, bad0, ok0 = (_count(web, r) for r in ("rate_limited", "bad_token", "ok"))
        for _ in range(3):  # successful sign-ins give their attempt back
            assert _attempt(web, ADMIN).status_code == 303
        for i in range(BURST):
            r = _attempt(web, f"guess-{i}")
            assert r.status_code == 401, r.text
        r = _attempt(web, ADMIN)  # the budget is used up: refused before the token is compared
        assert r.status_code == 429 and "Too many sign-in attempts" in r.text
        assert 1 <= int(r.headers["retry-after"]) <= 3600
        assert r.headers["cache-control"] == "no-store"
        for _ in range(5):
            assert _attempt(web, "guess-x").status_code == 429
        assert _count(web, "rate_limited") - limited0 == 6
        assert _count(web, "bad_token") - bad0 == BURST
        assert _count(web, "ok") - ok0 == 3
        # The API's bearer tokens are not the console's sign-in: unaffected.
        assert web.get("/api/v1/models", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_limiter_refills_per_address_and_stays_bounded() -> None:
    now = [0.0]
    lim = LoginLimiter(burst=2, refill_s=10.0, max_clients=100, clock=lambda: now[0])
    assert lim.take("a") == 0 and lim.take("a") == 0
    assert lim.take("a") == pytest.approx(10.0)  # empty: one attempt back in 10 s
    assert lim.take("b") == 0  # another address has its own bucket
    now[0] = 5.0
    assert lim.take("a") == pytest.approx(5.0)  # a refused attempt takes nothing
    now[0] = 10.0
    assert lim.take("a") == 0 and lim.take("a") > 0
    lim.give_back("a")  # a success returns its attempt
    assert lim.take("a") == 0
    now[0] = 1000.0
    assert lim.take("a") == 0 and lim.take("a") == 0 and lim.take("a") > 0  # refilled only up to burst
    for i in range(1000):
        lim.take(f"10.0.{i // 256}.{i % 256}")
    assert len(lim) == 100
