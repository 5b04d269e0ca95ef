"""The console's HTTP behaviour without a browser: sign-in cookies, CSRF, same-origin and role
checks, form limits, redirects, partial refreshes, error pages; against the real controller."""

from __future__ import annotations

import re

import httpx
import pytest

from cloud.ui.charts import line_chart, progress_bar
from cloud.ui.sessions import Role, SessionStore
from tests.cloud.controller.conftest import ADMIN
from tests.cloud.ui.conftest import VIEWER, Console, sign_in


@pytest.fixture
def web(console: Console) -> httpx.Client:
    with httpx.Client(base_url=console.url, timeout=10) as c:
        yield c


def test_pages_need_a_sign_in(console: Console, web: httpx.Client) -> None:
    r = web.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/ui/fleet"
    r = web.get("/ui/rollouts/1")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Frollouts%2F1"
    r = web.get("/ui/fleet?partial=1")  # the poller learns it was signed out
    assert r.status_code == 401
    r = web.post("/ui/nodes/edge-01/drain", data={"csrf": "x", "drained": "1"})
    assert r.status_code == 401
    assert not console.svc.fleet.get("edge-01").drained


def test_every_page_and_action_checks_its_caller_first(console: Console, web: httpx.Client) -> None:
    """All /ui routes but the sign-in's, of both page modules (fleet / registry / rollouts and the
    learning loop): signed out, a page redirects to the sign-in with ``next`` (its poller gets 401)
    and an action is refused with the 401 error page, before path or form are looked at."""
    from fastapi.routing import APIRoute

    from cloud.ui.loop_routes import router as loop_router
    from cloud.ui.routes import router

    open_paths = {"/", "/ui", "/ui/", "/ui/login", "/ui/logout"}
    routes = [
        r
        for r in [*router.routes, *loop_router.routes]
        if isinstance(r, APIRoute) and r.path not in open_paths
    ]
    assert {"/ui/fleet", "/ui/hard-examples", "/ui/jobs/{job_id}"} <= {r.path for r in routes}
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "7", route.path)
        for method in route.methods:
            if method == "GET":
                r = web.get(path)
                assert r.status_code == 303, path
                assert r.headers["location"] == f"/ui/login?next={path.replace('/', '%2F')}", path
                assert web.get(path, params={"partial": "1"}).status_code == 401, path
            else:
                r = web.post(path, data={"csrf": "x"})
                assert r.status_code == 401 and "sign in first" in r.text, (method, path)
    sign_in(web, VIEWER)
    r = web.get("/ui/jobs/999")  # a domain error of a loop page: the error page with its status
    assert r.status_code == 404 and "no job 999" in r.text and "text/html" in r.headers["content-type"]


def test_sign_in_cookie_is_http_only_and_strict(console: Console, web: httpx.Client) -> None:
    page = web.get("/ui/login")
    assert "httponly" in page.headers["set-cookie"].lower()
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = web.post("/ui/login", data={"token": ADMIN, "login_csrf": login_csrf, "next": "//evil.example/x"})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/fleet"  # no open redirect
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("autoglm_console="))
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/ui" in low
    page = web.get("/ui/fleet")
    assert page.status_code == 200 and "edge-00" in page.text
    assert (
        page.headers["cache-control"] == "no-store"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )


def test_sign_in_refuses_bad_tokens_and_forged_forms(console: Console, web: httpx.Client) -> None:
    page = web.get("/ui/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = web.post("/ui/login", data={"token": ADMIN + "x", "login_csrf": login_csrf})
    assert r.status_code == 401 and "not an admin or viewer token" in r.text
    r = web.post("/ui/login", data={"token": ADMIN, "login_csrf": "forged"})
    assert r.status_code == 403
    # a node's own credential is no console token
    r = web.post("/ui/login", data={"token": console.node_tokens["edge-01"], "login_csrf": login_csrf})
    assert r.status_code in (401, 403)
    assert web.get("/ui/fleet").status_code == 303


def test_actions_need_csrf_same_origin_and_admin(console: Console, web: httpx.Client) -> None:
    csrf = sign_in(web, ADMIN)
    rid = console.rollout_id
    assert web.post(f"/ui/rollouts/{rid}/pause", data={"csrf": "wrong"}).status_code == 403
    assert web.post(f"/ui/rollouts/{rid}/pause", data={"reason": "no token"}).status_code == 403
    r = web.post(f"/ui/rollouts/{rid}/pause", data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.text
    assert console.svc.rollouts.get(rid).state == "progressing"
    r = web.post(f"/ui/rollouts/{rid}/explode", data={"csrf": csrf})
    assert r.status_code == 404
    r = web.post(
        f"/ui/rollouts/{rid}/pause",
        data={"csrf": csrf, "reason": "checking"},
        headers={"Origin": console.url},
    )
    assert r.status_code == 303 and r.headers["location"] == f"/ui/rollouts/{rid}"
    assert console.svc.rollouts.get(rid).state == "paused"
    page = web.get(f"/ui/rollouts/{rid}")
    assert "pause done, now paused" in page.text  # the flash message, shown once
    assert "pause done" not in web.get(f"/ui/rollouts/{rid}").text
    # a domain error (pausing a paused rollout) comes back as a message, not a 500
    r = web.post(f"/ui/rollouts/{rid}/pause", data={"csrf": csrf})
    assert r.status_code == 303
    assert "cannot go from paused to paused" in web.get(f"/ui/rollouts/{rid}").text
    # labels through the form, with a bad entry refused by name
    r = web.post("/ui/nodes/edge-02/labels", data={"csrf": csrf, "set": "rack=r7", "remove": "hw"})
    assert r.status_code == 303
    assert console.svc.fleet.get("edge-02").labels == {"site": "plant-a", "rack": "r7"}
    web.post("/ui/nodes/edge-02/labels", data={"csrf": csrf, "set": "nonsense"})
    assert "must be key=value" in web.get("/ui/nodes/edge-02").text


def test_viewer_reads_but_every_action_is_refused(console: Console, web: httpx.Client) -> None:
    csrf = sign_in(web, VIEWER)
    for path in (
        "/ui/fleet",
        "/ui/nodes/edge-01",
        "/ui/models",
        "/ui/models/tiny",
        "/ui/rollouts",
        f"/ui/rollouts/{console.rollout_id}",
    ):
        r = web.get(path)
        assert r.status_code == 200, path
        assert 'name="drained"' not in r.text and "action-pause" not in r.text, path
    for path, data in (
        (f"/ui/rollouts/{console.rollout_id}/abort", {}),
        ("/ui/nodes/edge-01/drain", {"drained": "1"}),
        ("/ui/nodes/edge-01/labels", {"set": "a=b"}),
    ):
        r = web.post(path, data={"csrf": csrf, **data})
        assert r.status_code == 403 and "read-only" in r.text, path
    assert console.svc.rollouts.get(console.rollout_id).state == "progressing"
    assert "a" not in console.svc.fleet.get("edge-01").labels


def test_form_limits(console: Console, web: httpx.Client) -> None:
    csrf = sign_in(web, ADMIN)
    r = web.post(
        "/ui/nodes/edge-01/drain",
        content=b'{"csrf": "%s"}' % csrf.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 415
    r = web.post("/ui/nodes/edge-01/drain", data={"csrf": csrf, "pad": "x" * 9000})
    assert r.status_code == 413
    assert not console.svc.fleet.get("edge-01").drained


def test_filters_partials_and_missing_things(console: Console, web: httpx.Client) -> None:
    sign_in(web, ADMIN)
    r = web.get("/ui/fleet", params={"selector": "site=plant-b", "state": "online"})
    assert r.text.count('<tr data-node="') == 8 and 'data-poll="/ui/fleet?selector=site%3Dplant-b' in r.text
    assert web.get("/ui/fleet", params={"q": "edge-07"}).text.count('<tr data-node="') == 1
    assert web.get("/ui/fleet", params={"version": "1.1.0"}).text.count('<tr data-node="') == 2
    assert "must be key=value" in web.get("/ui/fleet", params={"selector": "oops"}).text
    assert web.get("/ui/fleet", params={"state": "sideways"}).status_code == 400
    part = web.get("/ui/fleet", params={"partial": "1"})
    assert part.status_code == 200 and "<html" not in part.text and 'id="fleet-table"' in part.text
    r = web.get("/ui/nodes/nope")
    assert r.status_code == 404 and "nope" in r.text
    assert web.get("/ui/models/nope").status_code == 404
    assert web.get("/ui/rollouts/999").status_code == 404
    # 1.1.0 sits under its parent 1.0.0 in the lineage
    page = web.get("/ui/models/tiny").text
    assert re.search(r'depth-0">\s*<b>1\.0\.0</b>', page) and re.search(r'depth-1">└ <b>1\.1\.0</b>', page)
    assert web.get("/ui/static/console.js").status_code == 200


def test_session_store_expires_and_bounds() -> None:
    now = [1000.0]
    store = SessionStore(ttl_s=60, max_sessions=2, clock=lambda: now[0])
    a = store.create(Role.ADMIN, "alice")
    assert (
        store.get(a.sid) is a
        and a.can_act
        and a.csrf_ok(a.csrf)
        and not a.csrf_ok("x")
        and not a.csrf_ok(None)
    )
    b = store.create(Role.VIEWER, "v")
    assert not b.can_act
    c = store.create(Role.ADMIN, "carol")  # over the bound: the oldest goes
    assert store.get(a.sid) is None and store.get(c.sid) is c and len(store) == 2
    now[0] += 61
    assert store.get(b.sid) is None and store.get(c.sid) is None


def test_charts_escape_and_draw() -> None:
    svg = str(line_chart([(0.0, 1.0), (10.0, 3.0)], title="<script>x</script>", unit="ms"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<polyline" in svg and "last 3.0" in svg
    assert "no heartbeats yet" in str(line_chart([], title="t"))
    bar = str(progress_bar([10, 50, 100], 1, "paused"))
    assert bar.count("step-done") == 1 and bar.count("step-paused") == 1 and bar.count("step-todo") == 1


def test_fleet_pages_through_the_matching_nodes(console: Console, web: httpx.Client) -> None:
    console.server.app.state.console.settings.console_page_size = 8
    sign_in(web, ADMIN)
    first = web.get("/ui/fleet").text
    rows = re.findall(r'<tr data-node="([^"]+)"', first)
    assert rows == [f"edge-{i:02d}" for i in range(8)] and "1–8 of 20 matching" in first
    assert 'id="page-next" ' not in first and 'href="/ui/fleet?page=2" id="page-next"' in first
    last = web.get("/ui/fleet", params={"page": 3}).text
    assert re.findall(r'<tr data-node="([^"]+)"', last) == [f"edge-{i:02d}" for i in range(16, 20)]
    assert (
        "page 3 / 3" in last
        and "page-next" not in last
        and 'data-poll="/ui/fleet?page=3&amp;partial=1"' in last
    )
    # filters count over every node, not just one page; a page past the end shows the last one
    beyond = web.get("/ui/fleet", params={"selector": "site=plant-b", "page": 9}).text
    assert "1–8 of 8 matching" in beyond and 'id="count-total">8<' in beyond
    assert web.get("/ui/fleet", params={"page": 0}).status_code == 400
