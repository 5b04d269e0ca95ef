"""``autoglm edge serve`` as a user runs it: a real process on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from autoglm.cli import app
from edge.http.server import free_port
from tests.edge.conftest import MODEL, Bundles


def test_edge_is_a_sub_app_with_serve() -> None:
    result = CliRunner().invoke(app, ["edge", "--help"])
    assert result.exit_code == 0 and "serve" in result.output


def test_serve_without_a_bundle_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["edge", "serve", "--bundle", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert "no such bundle directory" in " ".join(result.output.split())


def test_serve_process_answers_inference(bundles: Bundles, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "AUTOGLM_EDGE_ORT_INTRA_OP_THREADS": "1", "AUTOGLM_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoglm",
            "edge",
            "serve",
            "--bundle",
            str(bundles.v1),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.1)
        body = {
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello from the CLI"]}]
        }
        r = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body)
        assert r.status_code == 200 and r.json()["model_version"] == "1.0.0"
    finally:
        proc.terminate()
        proc.wait(30)
