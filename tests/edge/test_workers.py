"""``autoglm edge serve --workers N`` (issue 17 item 4): N real processes on one port (SO_REUSEPORT).

A real ``autoglm`` process with 2 workers on a really exported bundle; requests over fresh
connections reach both workers (the kernel spreads connections over their sockets), answers equal
a single ORT session's, ``/metrics`` is the sum over the workers, a hot swap over HTTP is refused
(it would reach one worker), and the node agent refuses several workers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from contracts.bundle import open_bundle
from contracts.settings import ConfigError
from contracts.tokenizer import TextTokenizer
from edge.http.server import free_port
from edge.http.workers import reuseport_supported, worker_settings
from edge.node import EdgeNode
from edge.runtime.bundle_session import BundleSession
from edge.settings import ServeSettings
from tests.edge.conftest import ADMIN_HEADERS, EDGE_ADMIN, MODEL, Bundles
from tests.support.wait import wait_for

pytestmark = pytest.mark.skipif(not reuseport_supported(), reason="SO_REUSEPORT is Linux-only")


def _ready(url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    try:
        return httpx.get(url + "/v2/health/ready", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _metric(text: str, name: str, labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(part in line for part in labels.split(",")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_workers_share_the_port(bundles: Bundles, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "AUTOGLM_DATA_DIR": str(tmp_path),
        "AUTOGLM_EDGE_HTTP_ADMIN_TOKEN": EDGE_ADMIN,
        "AUTOGLM_EDGE_CACHE_MAX_BYTES": "0",
    }
    cmd = [sys.executable, "-m", "autoglm", "edge", "serve", "--bundle", str(bundles.v1)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        # ready means one worker is; the parent prints "serving … with 2 worker processes" once both are
        wait_for(lambda: _ready(url, proc), timeout=120, what="a worker ready")
        pids: set[int] = set()

        def both_answer() -> bool:
            with httpx.Client() as c:  # a fresh connection each time: SO_REUSEPORT spreads connections
                st = c.get(url + "/v2/edge/status").json()
            assert st["worker"]["workers"] == 2
            if st["active"] is not None:  # a worker whose model is still loading answers 503
                pids.add(st["worker"]["pid"])
            return len(pids) == 2

        wait_for(both_answer, timeout=120, what="both worker processes serving a model", interval=0.0)
        assert proc.pid not in pids  # the parent only supervises

        texts = ["turn off pump 3", "你好", "what is 12 times 7"]
        bundle = open_bundle(bundles.v1)
        want_emb, want_logits = BundleSession(bundle).run(*TextTokenizer(bundle.tokenizer_file())(texts))
        n_requests = 0
        for i in range(12):
            with httpx.Client() as c:
                body = {
                    "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [texts[i % 3]]}]
                }
                r = c.post(f"{url}/v2/models/{MODEL}/infer", json=body)
            assert r.status_code == 200, r.text
            n_requests += 1
            out = {o["name"]: o["data"] for o in r.json()["outputs"]}
            np.testing.assert_allclose(out["embedding"], want_emb[i % 3], atol=1e-5)
            np.testing.assert_allclose(out["route_logits"], want_logits[i % 3], atol=1e-5)

        # /metrics from either worker is the sum over both
        for _ in range(4):
            with httpx.Client() as c:
                text = c.get(url + "/metrics").text
            assert _metric(text, "autoglm_edge_requests_total", 'outcome="success"') == n_requests
            assert "autoglm_edge_model_loaded_info" in text

        load = {"parameters": {"bundle": str(bundles.v2)}}
        r = httpx.post(f"{url}/v2/repository/models/{MODEL}/load", json=load, headers=ADMIN_HEADERS)
        assert r.status_code == 409 and r.json()["code"] == "conflict"
        assert "2 worker processes" in r.json()["error"]

        children = _children(proc.pid)
        assert len(children) >= 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "with 2 worker processes" in out
        wait_for(lambda: not any(_alive(p) for p in children), timeout=30, what="workers gone")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.is_file() else []


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if not stat.is_file():
        return False
    return re.search(r"\) [ZX] ", stat.read_text()) is None  # a zombie is gone for our purpose


def test_a_worker_that_cannot_load_fails_the_server(tmp_path: Path) -> None:
    bad = tmp_path / "bad-bundle"
    bad.mkdir()
    (bad / "manifest.yaml").write_text("schema_version: 1\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "autoglm", "edge", "serve", "--bundle", str(bad)]
    cmd += ["--host", "127.0.0.1", "--port", str(free_port()), "--workers", "2"]
    env = {**os.environ, "AUTOGLM_DATA_DIR": str(tmp_path)}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "did not load" in r.stdout + r.stderr


def test_workers_split_the_cores_when_threads_are_automatic() -> None:
    one = ServeSettings(http_workers=1)
    assert worker_settings(one) is one
    two = worker_settings(ServeSettings(http_workers=2))
    assert two.ort_intra_op_threads >= 1
    assert two.ort_intra_op_threads == max(1, len(os.sched_getaffinity(0)) // 2)
    assert worker_settings(ServeSettings(http_workers=2, ort_intra_op_threads=3)).ort_intra_op_threads == 3


def test_node_agent_refuses_several_workers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HTTP_WORKERS=2"):
        EdgeNode.build(ServeSettings(http_workers=2, model_cache_dir=tmp_path), with_sync=False)


def test_workers_flag_is_validated() -> None:
    cmd = [sys.executable, "-m", "autoglm", "edge", "serve", "--bundle", ".", "--workers", "0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--workers" in r.stdout + r.stderr
