"""`autoglm cloud hard-examples ...` / `autoglm cloud jobs ...` against a live controller: tables,
--json, one-line errors with exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from autoglm.cli import app
from tests.cloud.controller.conftest import ADMIN, LiveServer
from tests.cloud.loop.test_api import live  # noqa: F401  (fixture)

runner = CliRunner()


def cli(live: LiveServer, *args: str) -> tuple[int, str]:  # noqa: F811
    result = runner.invoke(app, ["cloud", *args, "--url", live.url, "--token", ADMIN], catch_exceptions=False)
    return result.exit_code, result.output


def test_loop_cli(live: LiveServer) -> None:  # noqa: F811
    code, out = cli(live, "hard-examples", "list")
    assert code == 0 and "count the pallets" in out and "2 items; 0 sightings not yet triaged" in out
    code, out = cli(live, "hard-examples", "list", "--status", "new", "--json")
    items = json.loads(out)["items"]
    assert code == 0 and len(items) == 2
    first = str(items[0]["id"])
    code, out = cli(live, "hard-examples", "show", first)
    assert code == 0 and "nodes {'n1': " in out
    code, out = cli(live, "hard-examples", "label", first, "--route", "shift_schedule")
    assert code == 1 and out.count("\n") == 1 and "400: route 'shift_schedule' is unknown" in out
    code, out = cli(live, "hard-examples", "list", "--status", "maybe")
    assert code == 2 and "--status 'maybe': must be one of new, labelled, rejected" in out
    code, out = cli(live, "hard-examples", "label", first)
    assert code == 0 and "labelled" in out
    code, out = cli(live, "hard-examples", "reject", str(items[1]["id"]), "--reason", "noise")
    assert code == 0 and "rejected" in out
    code, out = cli(live, "hard-examples", "datasets", "--snapshot")
    assert code == 0 and "calculator:2" in out
    code, out = cli(live, "jobs", "create", "--reason", "try")
    assert code == 0 and "queued" in out
    code, out = cli(live, "jobs", "status")
    assert code == 0 and "queued" in out
    code, out = cli(live, "jobs", "status", "1")
    assert code == 0 and "queued by admin:alice: try" in out
    code, out = cli(live, "jobs", "cancel", "1", "--json")
    assert code == 0 and json.loads(out)["state"] == "cancelled"
    code, out = cli(live, "jobs", "cancel", "1")
    assert code == 1 and "409: job 1 is already cancelled" in out


def test_worker_once_on_an_empty_controller(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AUTOGLM_CLOUD_DATA_DIR": str(tmp_path),
        "AUTOGLM_CLOUD_MQTT_ENABLED": "false",
        "AUTOGLM_CLOUD_TOOL_DOC_EMBEDDINGS": "false",
    }
    ok = subprocess.run(
        [sys.executable, "-m", "autoglm", "cloud", "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0 and "loop worker " in ok.stdout, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "autoglm", "cloud", "worker", "--once"],
        env={**env, "AUTOGLM_CLOUD_LOOP_MIN_GAIN_PT": "lots"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = bad.stdout + bad.stderr
    assert (
        bad.returncode == 2
        and "AUTOGLM_CLOUD_LOOP_MIN_GAIN_PT='lots'" in out
        and out.strip().count("\n") == 0
    )
