"""`autoglm cloud ...` against a running controller: readable tables, actions, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from autoglm.cli import app
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import ADMIN, BOOTSTRAP, LiveServer

runner = CliRunner()


def cli(live: LiveServer, *args: str, token: str = ADMIN) -> tuple[int, str]:
    result = runner.invoke(app, ["cloud", *args, "--url", live.url, "--token", token], catch_exceptions=False)
    return result.exit_code, result.output


def test_cloud_cli_round_trip(live: LiveServer, tmp_path: Path) -> None:
    code, out = cli(live, "register", str(make_bundle(tmp_path / "a", version="1.0.0")), "--tag", "team=edge")
    assert code == 0 and "registered tiny@1.0.0 (full, 4 files)" in out
    code, out = cli(live, "register", str(make_bundle(tmp_path / "b", version="1.1.0", encoder_seed=1)))
    assert code == 0
    code, out = cli(live, "alias", "tiny", "stable", "1.0.0", "--reason", "first release")
    assert code == 0 and "tiny:stable - → 1.0.0 by admin:alice" in out
    code, out = cli(live, "models")
    assert code == 0 and "tiny" in out and "stable→1.0.0" in out
    code, out = cli(live, "versions", "tiny")
    assert code == 0 and out.index("1.1.0") < out.index("1.0.0")

    for i in range(4):
        httpx.post(
            f"{live.url}/api/v1/nodes/register",
            json={"node_id": f"e{i}", "labels": {"site": "x"}},
            headers={"Authorization": f"Bearer {BOOTSTRAP}"},
        ).raise_for_status()
    code, out = cli(live, "nodes", "-l", "site=x")
    assert code == 0 and "e3" in out and "4 nodes, 0 online" in out
    code, out = cli(live, "label", "e3", "gpu=orin", "site-")
    assert code == 0 and "e3: gpu=orin" in out
    code, out = cli(live, "label", "e3", "site=x")
    assert code == 0 and "gpu=orin,site=x" in out
    code, out = cli(live, "drain", "e3")
    assert code == 0 and "e3: drained" in out

    code, out = cli(
        live, "rollout", "create", "tiny", "1.1.0", "-l", "site=x", "--steps", "50,100", "--pause-s", "0"
    )
    assert (
        code == 0 and "rollout #1" in out and "progressing" in out and "targets 2" in out
    )  # 50% of 3 (e3 drained)
    code, out = cli(live, "rollout", "pause", "1", "--reason", "lunch")
    assert code == 0 and "paused" in out and "lunch" in out
    code, out = cli(live, "rollout", "resume", "1")
    assert code == 0 and "state progressing" in out and "resumed by" in out
    code, out = cli(live, "rollout", "abort", "1", "--reason", "testing the CLI")
    assert code == 0 and "state aborted" in out and "testing the" in out
    code, out = cli(live, "rollout", "status")
    assert code == 0 and "aborted" in out and "1.1.0" in out
    code, out = cli(live, "rollout", "status", "1")
    assert code == 0 and "transitions" in out

    # Errors are one clear line and a non-zero exit (1: the controller refused).
    code, out = cli(live, "rollout", "promote", "1")
    assert code == 1 and "409" in out and "already aborted" in out
    code, out = cli(live, "models", token="wrong")
    assert code == 1 and "401: invalid bearer token" in out
    code, out = cli(live, "versions", "nope")
    assert code == 1 and "404" in out

    # --json everywhere; the API's delete / archive actions.
    code, out = cli(live, "models", "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "tiny"
    code, out = cli(live, "rollout", "status", "1", "--json")
    assert code == 0 and json.loads(out)["state"] == "aborted"
    code, out = cli(live, "alias", "tiny", "canary", "1.1.0", "--reason", "try", "--json")
    assert code == 0 and json.loads(out)["to_version"] == "1.1.0"
    code, out = cli(live, "alias-delete", "tiny", "canary", "--reason", "done")
    assert code == 0 and "tiny:canary" in out and "deleted" in out
    code, out = cli(live, "version-archive", "tiny", "1.1.0", "--json")
    assert code == 0 and json.loads(out)["status"] == "archived"
    code, out = cli(live, "node-delete", "e0")
    assert code == 0 and "e0: deleted" in out
    code, out = cli(live, "nodes", "--json")
    assert code == 0 and "e0" not in {n["node_id"] for n in json.loads(out)}


def test_cloud_serve_starts_migrates_and_answers(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    from tests.cloud.controller.conftest import free_port

    port = free_port()
    env = {
        **os.environ,
        "AUTOGLM_CLOUD_DATA_DIR": str(tmp_path / "state"),
        "AUTOGLM_CLOUD_MQTT_ENABLED": "false",
        "AUTOGLM_CLOUD_ADMIN_TOKEN": "serve-token",
        "AUTOGLM_CLOUD_TOOL_DOC_EMBEDDINGS": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoglm", "cloud", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "serve exited"
            assert time.monotonic() < deadline, "controller did not become ready"
            time.sleep(0.2)
        r = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/models", headers={"Authorization": "Bearer serve-token"}
        )
        assert r.status_code == 200 and r.json() == []
        assert (tmp_path / "state" / "registry.db").is_file()  # SQLite default under the data dir, migrated
    finally:
        proc.terminate()
        proc.wait(20)
    said = proc.stdout.read().decode() if proc.stdout else ""
    assert f"listening on http://127.0.0.1:{port}" in said and "broker none" in said and "registry.db" in said
