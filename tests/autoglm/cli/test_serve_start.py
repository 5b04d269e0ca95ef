"""Servers say where they listen; `edge serve` exits 1 when its first bundle cannot load."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from edge.http.server import free_port
from tests.autoglm.cli.test_bad_input_matrix import COMMAND


def test_edge_serve_says_where_it_listens_and_exits_when_the_bundle_cannot_load(tmp_path: Path) -> None:
    bundle = tmp_path / "broken"
    bundle.mkdir()
    (bundle / "manifest.yaml").write_text("name: broken\n")  # present but not a valid manifest
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOGLM_")}
    env.update({"AUTOGLM_DATA_DIR": str(tmp_path / "data"), "AUTOGLM_LOG_FORMAT": "json"})
    p = subprocess.run(
        [*COMMAND, "edge", "serve", "--bundle", str(bundle), "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 1, p.stderr
    assert f"listening on http://127.0.0.1:{port}" in p.stdout
    assert "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "did not load" in last and "schema_version" in last
