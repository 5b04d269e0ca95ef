"""The console in a real browser (Debian Chromium + chromedriver, headless, driven by Selenium).

An admin signs in through the form, sees the fleet, watches a heartbeat arrive without
reloading, drains a node, opens a node's charts and the models' lineage, pauses and resumes a
rollout; a viewer sees the same pages without any action and a forged POST with the viewer's
session is refused. Screenshots go to ``$AUTOGLM_CONSOLE_SCREENSHOTS`` (docs/img when the docs
are refreshed) or the test's temporary directory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.cloud.controller.conftest import ADMIN
from tests.cloud.ui.conftest import N_NODES, VIEWER, Console

T = TypeVar("T")


def wait(driver: WebDriver, cond: Any, timeout: float = 30.0) -> Any:
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    ).until(cond)


def fresh(fn: Callable[[], T]) -> T:
    """Run ``fn`` again when the page's poller replaced the element it found meanwhile."""
    for _ in range(9):
        try:
            return fn()
        except StaleElementReferenceException:
            continue
        except WebDriverException as exc:  # chromedriver's other word for a replaced node
            if "does not belong to the document" not in str(exc):
                raise
    return fn()


def text_of(driver: WebDriver, css: str) -> str:
    return fresh(lambda: str(driver.find_element(By.CSS_SELECTOR, css).text))


def type_into(driver: WebDriver, button_css: str, field: str, text: str) -> None:
    """Type into the field named ``field`` of the form holding ``button_css``: found and typed
    in one retried step, as a poll already in flight may replace the region once."""
    fresh(
        lambda: (
            driver.find_element(By.CSS_SELECTOR, button_css)
            .find_element(By.XPATH, "..")
            .find_element(By.NAME, field)
            .send_keys(text)
        )
    )


def sign_in(driver: WebDriver, console: Console, token: str, start: str = "/ui/fleet") -> None:
    driver.get(console.url + start)
    wait(driver, lambda d: "/ui/login" in d.current_url)
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()
    wait(driver, lambda d: "/ui/login" not in d.current_url)


def shot(driver: WebDriver, console: Console, name: str) -> None:
    console.shots.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1360, max(600, min(int(height) + 40, 1400)))
    driver.save_screenshot(str(console.shots / f"console-{name}.png"))
    driver.set_window_size(1360, 900)


def test_admin_runs_the_fleet_and_a_rollout(console: Console, browser: WebDriver) -> None:
    d = browser
    sign_in(d, console, ADMIN, start="/ui/fleet")
    assert d.current_url.endswith("/ui/fleet")
    assert text_of(d, "#count-total") == str(N_NODES)
    assert text_of(d, "#count-online") == str(N_NODES)
    assert "alice · admin" in text_of(d, "#role")
    assert fresh(lambda: len(d.find_elements(By.CSS_SELECTOR, "#fleet-table tbody tr[data-node]"))) == N_NODES
    first = text_of(d, 'tr[data-node="edge-00"]')
    assert "CPU" in first and "default" in first and "site=plant-a" in first

    # Live update: a heartbeat changes a node's p99; the table shows it without a reload.
    console.heartbeat("edge-03", latency_p99_ms=77.7)
    wait(d, lambda d: "77.7" in d.find_element(By.CSS_SELECTOR, 'tr[data-node="edge-03"]').text)
    shot(d, console, "fleet")

    # Filter by label, then drain a node from the table.
    box = d.find_element(By.ID, "filter-q")
    box.send_keys("plant-b")
    box.submit()
    wait(
        d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#fleet-table tbody tr[data-node]")) == N_NODES - 12
    )
    fresh(lambda: d.find_element(By.CSS_SELECTOR, 'tr[data-node="edge-15"] button').click())
    wait(d, lambda d: "edge-15 drained" in d.page_source)
    assert console.svc.fleet.get("edge-15").drained
    assert "q=plant-b" in d.current_url  # back on the filtered view

    # Node detail with heartbeat charts.
    d.get(f"{console.url}/ui/nodes/edge-03")
    assert fresh(lambda: len(d.find_elements(By.CSS_SELECTOR, "svg.chart polyline"))) == 4
    assert "online" in text_of(d, "#node-state")
    shot(d, console, "node")

    # Models: both versions, 1.1.0 under its parent 1.0.0, with aliases.
    d.get(f"{console.url}/ui/models/tiny")
    table = text_of(d, "#versions-table")
    assert table.index("1.0.0") < table.index("1.1.0")
    assert "stable" in table and "canary" in table
    shot(d, console, "models")

    # The rollout: the first step's analysis passed with its numbers; pause, then resume.
    d.get(f"{console.url}/ui/rollouts/{console.rollout_id}")
    assert text_of(d, "#rollout-state") == "progressing"
    assert text_of(d, "#verdict") == "pass"
    assert "p99_ms" in text_of(d, "#analysis-table")
    # Typing focuses the form: the poller leaves the region alone until it is submitted.
    type_into(d, "#action-pause", "reason", "looking at the canaries")
    fresh(lambda: d.find_element(By.ID, "action-pause").click())
    wait(d, lambda d: text_of(d, "#rollout-state") == "paused")
    assert console.svc.rollouts.get(console.rollout_id).state == "paused"
    assert "looking at the canaries" in text_of(d, "#events")
    assert "admin:alice" in text_of(d, "#events")
    shot(d, console, "rollout")
    fresh(lambda: d.find_element(By.ID, "action-resume").click())
    wait(d, lambda d: text_of(d, "#rollout-state") == "progressing")
    assert console.svc.rollouts.get(console.rollout_id).state == "progressing"

    # The list page shows the rollout with its verdict.
    d.get(f"{console.url}/ui/rollouts")
    assert "pass" in text_of(d, f'tr[data-rollout="{console.rollout_id}"]')

    d.find_element(By.ID, "logout").click()
    wait(d, lambda d: "/ui/login" in d.current_url)
    d.get(f"{console.url}/ui/fleet")
    wait(d, lambda d: "/ui/login" in d.current_url)


def test_viewer_sees_but_cannot_act(console: Console, browser: WebDriver) -> None:
    d = browser
    sign_in(d, console, VIEWER)
    assert "viewer" in text_of(d, "#role") and "read-only" in text_of(d, "#role")
    assert text_of(d, "#count-total") == str(N_NODES)
    assert not d.find_elements(By.CSS_SELECTOR, "#fleet-table button")  # no drain buttons
    d.get(f"{console.url}/ui/rollouts/{console.rollout_id}")
    assert text_of(d, "#rollout-state") == "progressing"
    assert not d.find_elements(By.ID, "rollout-actions")
    d.get(f"{console.url}/ui/nodes/edge-01")
    assert not d.find_elements(By.ID, "labels-form")

    # A forged form with the viewer's own session cookie and CSRF token is refused.
    cookie = d.get_cookie("autoglm_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    csrf = d.find_element(By.NAME, "csrf").get_attribute("value")  # the sign-out form's token
    with httpx.Client(base_url=console.url, cookies={"autoglm_console": cookie["value"]}) as c:
        r = c.post(f"/ui/rollouts/{console.rollout_id}/pause", data={"csrf": csrf})
        assert r.status_code == 403 and "viewer token" in r.text
        r = c.post("/ui/nodes/edge-01/drain", data={"csrf": csrf, "drained": "1"})
        assert r.status_code == 403
    assert console.svc.rollouts.get(console.rollout_id).state == "progressing"
    assert not console.svc.fleet.get("edge-01").drained
    shot(d, console, "viewer")


def test_wrong_token_is_refused(console: Console, browser: WebDriver) -> None:
    d = browser
    d.get(f"{console.url}/ui/login")
    d.find_element(By.ID, "token").send_keys("not-a-token")
    d.find_element(By.ID, "signin").click()
    wait(d, lambda d: "not an admin or viewer token" in d.page_source)
    assert d.get_cookie("autoglm_console") is None


def test_admin_labels_a_hard_example(console: Console, browser: WebDriver) -> None:
    """The hard-example queue in the browser: approve the suggested label, relabel another to a route
    that does not exist (refused with its reason on the page), reject a third."""
    from tests.cloud.loop.conftest import records
    from tests.cloud.loop.test_queue_jobs import FAKE, fake_triage

    queue = console.svc.loop.queue
    queue.ingest("edge-00", records(list(FAKE)))
    queue.triage(fake_triage)
    d = browser
    sign_in(d, console, ADMIN, start="/ui/hard-examples")
    assert "count the pallets on dock 4" in text_of(d, "#hard-examples-table")
    fresh(lambda: d.find_element(By.ID, "label-1").click())  # approve the suggestion (calculator)
    # the default view lists new items only: the labelled one leaves it
    wait(d, lambda d: not d.find_elements(By.CSS_SELECTOR, 'tr[data-item="1"]'))
    d.get(f"{console.url}/ui/hard-examples?status=all")
    row = text_of(d, 'tr[data-item="1"]')
    assert "labelled" in row and "calculator" in row
    shot(d, console, "hard-examples")
    # relabel item 2 to a route nobody serves: refused, the reason is shown, the item stays unlabelled
    # found and typed into in one retried step: a poll that was in flight may still replace the
    # table once; after that the typed field keeps the poller off the region (console.js, busy())
    type_into(d, "#label-2", "route", "shift_schedule")
    fresh(lambda: d.find_element(By.ID, "label-2").click())
    wait(d, lambda d: "is unknown" in d.page_source)
    d.get(f"{console.url}/ui/hard-examples?status=all")
    assert "labelled" not in text_of(d, 'tr[data-item="2"]')
    fresh(lambda: d.find_element(By.ID, "reject-2").click())
    d.get(f"{console.url}/ui/hard-examples?status=all")
    wait(d, lambda d: "rejected" in text_of(d, 'tr[data-item="2"]'))
