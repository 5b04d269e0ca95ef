"""Edge memory under large concurrent request bodies: the code before issue 14 vs. this tree.

Two edge servers (``autoglm edge serve``) run one after the other as subprocesses on the same
bundle: the baseline from a git commit before the fix (default ``aa2bbe7``, unpacked with
``git archive`` into a temporary directory) and this checkout. Each gets ``--clients`` (80)
concurrent OIP v2 infer requests whose bodies are ``--body-mb`` (8.0) MB of JSON (one text),
under the default 8 MiB body limit. Measured from ``/proc/<pid>/status``: RSS before, peak RSS
(VmHWM) and RSS after; and the status codes the clients got.

The bundle is a tiny random MiniLM-shaped one exported by the baseline tree (the body, not the
model, is what is measured). Usage: ``python benchmarks/bench_edge_body_memory.py
[--baseline-commit SHA] [--clients 80] [--body-mb 8]``.
Prints a table, then a JSON record (also written under benchmarks/results). Target (issue 14):
RSS growth ≤ 128 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ADMIN = "bench-edge-admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


TINY_EXPORT = """
import sys
from pathlib import Path
from cloud.model.autoglm_model import AutoGLMModel
from cloud.model.base import make_tiny_base
from cloud.model.checkpoint import save_checkpoint
from export.pipeline import export_checkpoint
out = Path(sys.argv[1])
base = make_tiny_base(out / "base", seed=0)
model = AutoGLMModel.from_pretrained(base)
model.add_adapter_set("default", ["calculator", "chitchat"])
ckpt = save_checkpoint(model, out / "ckpt", base_path=base)
print(export_checkpoint(ckpt, out / "bundle", name="autoglm-router", version="1.0.0"))
"""


def tiny_bundle(tree: Path, out: Path) -> Path:
    """A really exported tiny bundle, exported by the *baseline* tree's exporter so that both
    servers can load it (newer bundles carry manifest fields the baseline refuses)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "-c", TINY_EXPORT, str(out)], cwd=tree, env=env, check=True, capture_output=True
    )
    return out / "bundle"


def start_server(tree: Path, bundle: Path, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "AUTOGLM_EDGE_PROVIDERS": '["cpu"]',
        "AUTOGLM_EDGE_ORT_INTRA_OP_THREADS": "1",
        "AUTOGLM_EDGE_MODEL_CACHE_DIR": str(home / "mc"),
        "AUTOGLM_EDGE_HTTP_ADMIN_TOKEN": ADMIN,
        "AUTOGLM_EDGE_SERVE_WARMUP_BATCHES": "1",
        "AUTOGLM_DATA_DIR": str(home),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoglm",
            "edge",
            "serve",
            "--bundle",
            str(bundle),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 180.0) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"edge server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
            )
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return dict(httpx.get(url + "/v2/edge/status", timeout=5).json())
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    raise TimeoutError(f"{url} not ready: {err}")


async def burst(url: str, model: str, body: bytes, clients: int) -> Counter[str]:
    import httpx

    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as c:

        async def one() -> None:
            try:
                r = await c.post(
                    f"/v2/models/{model}/infer", content=body, headers={"Content-Type": "application/json"}
                )
                statuses[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

        await asyncio.gather(*(one() for _ in range(clients)))
    return statuses


def measure(name: str, tree: Path, bundle: Path, body: bytes, clients: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-body-{name}-") as tmp:
        proc, url = start_server(tree, bundle, Path(tmp))
        try:
            status = wait_ready(proc, url)
            model = status["active"]["name"]
            time.sleep(1.0)
            before = rss_kb(proc.pid)
            peak = [before]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak.append(rss_kb(proc.pid))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            statuses = asyncio.run(burst(url, model, body, clients))
            seconds = time.perf_counter() - t0
            stop.set()
            sampler.join()
            time.sleep(1.0)
            after = rss_kb(proc.pid)
            hwm = rss_kb(proc.pid, "VmHWM")
            return {
                "rss_before_mb": round(before / 1024, 1),
                "rss_peak_mb": round(max(max(peak), hwm) / 1024, 1),
                "rss_after_mb": round(after / 1024, 1),
                "rss_growth_mb": round((max(max(peak), hwm) - before) / 1024, 1),
                "statuses": dict(statuses),
                "seconds": round(seconds, 2),
            }
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="Bundle both servers can load (default: a tiny one exported by the baseline tree).",
    )
    ap.add_argument("--baseline-commit", default="aa2bbe7")
    ap.add_argument("--clients", type=int, default=80)
    ap.add_argument("--body-mb", type=float, default=8.0)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-body-") as tmp_s:
        tmp = Path(tmp_s)
        base_tree = tmp / "baseline"
        base_tree.mkdir()
        archive = subprocess.run(
            ["git", "archive", args.baseline_commit], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive.stdout, check=True)
        bundle = args.bundle or tiny_bundle(base_tree, tmp / "tiny")
        text = "pump " * int(args.body_mb * 1e6 / 5)
        body = json.dumps(
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}
        ).encode()
        rows = {
            f"baseline {args.baseline_commit}": measure("baseline", base_tree, bundle, body, args.clients),
            "this tree": measure("current", ROOT, bundle, body, args.clients),
        }
    print(f"{args.clients} concurrent bodies of {len(body) / 1e6:.1f} MB, bundle {bundle.name}")
    print(
        f"{'server':<22} {'RSS before':>10} {'peak':>8} {'after':>8} {'growth':>8} {'seconds':>8}  statuses"
    )
    for name, r in rows.items():
        print(
            f"{name:<22} {r['rss_before_mb']:>10} {r['rss_peak_mb']:>8} {r['rss_after_mb']:>8} "
            f"{r['rss_growth_mb']:>8} {r['seconds']:>8}  {r['statuses']}"
        )
    base, cur = rows[f"baseline {args.baseline_commit}"], rows["this tree"]
    metrics = {
        "clients": args.clients,
        "body_bytes": len(body),
        "bundle": bundle.name,
        "baseline": base,
        "current": cur,
        "target_growth_mb": 128,
        "growth_ratio": round(base["rss_growth_mb"] / max(cur["rss_growth_mb"], 0.1), 1),
    }
    print(json.dumps(metrics))
    if not args.no_record:
        from autoglm.bench.records import HeadlineRow, write_record

        headline = [
            HeadlineRow(
                what=f"Edge RSS growth, {args.clients} concurrent {len(body) / 1e6:.1f} MB bodies "
                "(`edge_body_memory`)",
                baseline=f"{args.baseline_commit}: +{base['rss_growth_mb']:,.0f} MB "
                f"(peak {base['rss_peak_mb']:,.0f} MB)",
                result=f"+{cur['rss_growth_mb']:,.0f} MB (peak {cur['rss_peak_mb']:,.0f} MB), "
                f"{metrics['growth_ratio']}x less; {cur['statuses'].get('429', 0)} refused unread (429)",
                target="≤ +128 MB",
                met=cur["rss_growth_mb"] <= 128,
            )
        ]
        write_record("edge_body_memory", metrics, headline)


if __name__ == "__main__":
    main()
