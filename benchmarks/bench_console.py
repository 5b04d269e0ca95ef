"""Console page render time with a simulated fleet (target: < 300 ms server time per page).

The fleet table shows ``console_page_size`` (100) nodes per page; counts and filters cover all
nodes. The real controller services (SQLite, registry, fleet, rollouts) hold ``--nodes`` nodes (default
500), each with a full heartbeat history (512 samples, the fleet's in-memory window), ``--versions``
registered versions of one model with lineage and ``--rollouts`` rollouts with their event
timelines. Each console page is requested ``--repeat`` times in process through the ASGI app
(starlette's TestClient: the server's whole handling, no network), signed in as an admin; the
baseline, in the same run, is the JSON API answering the same question (``/api/v1/nodes``,
``/api/v1/rollouts/{id}``…). Printed: a table of p50 / p95 / max per page with the page / API
ratio, then the JSON record (``benchmarks/results/console-*.json``, plot beside it).

Usage: ``python benchmarks/bench_console.py [--nodes 500] [--repeat 20] [--no-record]``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from autoglm.bench.records import HeadlineRow, write_record  # noqa: E402
from autoglm.plots import Figure  # noqa: E402
from cloud.api.app import create_app  # noqa: E402
from cloud.api.container import CloudServices  # noqa: E402
from cloud.fleet.channel import RecordingChannel  # noqa: E402
from cloud.fleet.service import SAMPLES_PER_NODE  # noqa: E402
from cloud.rollout.schemas import RolloutCreate  # noqa: E402
from cloud.settings import CloudSettings  # noqa: E402
from tests.cloud.controller.bundles import make_bundle  # noqa: E402

TARGET_MS = 300.0
ADMIN = "bench-admin-token"
MODEL = "router"


class Clock:
    def __init__(self) -> None:
        self.t = time.time() - SAMPLES_PER_NODE * 5.0

    def __call__(self) -> float:
        return self.t


def build(tmp: Path, nodes: int, versions: int, rollouts: int) -> tuple[CloudServices, list[int]]:
    clock = Clock()
    settings = CloudSettings(
        data_dir=tmp / "cloud", admin_tokens=[ADMIN], mqtt_enabled=False, tool_doc_embeddings=False
    )
    svc = CloudServices.build(settings, channel=RecordingChannel(), clock=clock)
    parent = None
    for i in range(versions):
        b = make_bundle(tmp / f"b{i}", MODEL, f"1.{i}.0", parent=parent if i else None, adapter_seed=i)
        svc.registry.register_dir(
            b, actor="bench", metrics={"accuracy": 0.95 + i / 1000}, lineage={"dataset_sha256": f"{i:064x}"}
        )
        parent = tmp / "b0"
    svc.registry.set_alias(MODEL, "stable", "1.0.0", actor="bench", reason="first")
    for n in range(nodes):
        svc.fleet.register(f"edge-{n:04d}", {"site": f"site-{n % 7}", "hw": "gpu" if n % 5 == 0 else "cpu"})
    for k in range(SAMPLES_PER_NODE):  # the full heartbeat window of every node
        clock.t += 5.0
        for n in range(nodes):
            svc.fleet.on_heartbeat(
                f"edge-{n:04d}",
                {
                    "model_version": "1.0.0",
                    "adapters": ["default"],
                    "providers": ["CPUExecutionProvider"],
                    "requests": 50 + (n + k) % 30,
                    "error_rate": ((n * k) % 17) / 1000,
                    "latency_p99_ms": 8 + (k % 9),
                    "fallback_rate": 0.02,
                    "queue_depth": k % 4,
                    "outbox_records": k % 11,
                    "resources": {"cpu_percent": 20.0, "mem_mb": 300.0},
                },
            )
    svc.fleet.flush()
    ids = []
    for r in range(rollouts):
        out = svc.rollouts.create(
            RolloutCreate(
                model=MODEL, version=f"1.{1 + r % (versions - 1)}.0", steps=[5, 25, 50, 100], pause_s=3600
            ),
            actor="admin:bench",
        )
        ids.append(out.id)
        for _ in range(3):
            svc.rollouts.pause(out.id, actor="admin:bench", reason="look")
            svc.rollouts.resume(out.id, actor="admin:bench", reason="go on")
        if r < rollouts - 1:
            svc.rollouts.abort(out.id, actor="admin:bench", reason="next")
    return svc, ids


def sign_in(client: TestClient) -> None:
    page = client.get("/ui/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post("/ui/login", data={"token": ADMIN, "login_csrf": token.group(1)}, follow_redirects=False)
    assert r.status_code == 303, r.text


def timed(
    client: TestClient, path: str, repeat: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    times = []
    size = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path, headers=headers or {})
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        size = len(r.content)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "max_ms": round(times[-1], 2),
        "bytes": size,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--rollouts", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-record", action="store_true", help="print only; write no record")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        t0 = time.perf_counter()
        svc, ids = build(Path(tmp), args.nodes, args.versions, args.rollouts)
        setup_s = time.perf_counter() - t0
        rid = ids[-1]
        node = f"edge-{args.nodes // 2:04d}"
        pages = {
            "fleet": ("/ui/fleet", "/api/v1/nodes"),
            "fleet last page": ("/ui/fleet?page=1000", "/api/v1/nodes"),
            "fleet (live part)": ("/ui/fleet?partial=1", "/api/v1/nodes"),
            "fleet filtered": (
                "/ui/fleet?selector=site%3Dsite-3&state=online",
                "/api/v1/nodes?selector=site%3Dsite-3",
            ),
            "node detail": (f"/ui/nodes/{node}", f"/api/v1/nodes/{node}"),
            "models": ("/ui/models", "/api/v1/models"),
            "model lineage": (f"/ui/models/{MODEL}", f"/api/v1/models/{MODEL}/versions"),
            "rollouts": ("/ui/rollouts", "/api/v1/rollouts"),
            "rollout detail": (f"/ui/rollouts/{rid}", f"/api/v1/rollouts/{rid}"),
        }
        results: dict[str, Any] = {}
        with TestClient(create_app(services=svc, run_loops=False)) as client:
            sign_in(client)
            api = {"Authorization": f"Bearer {ADMIN}"}
            for name, (page, json_path) in pages.items():
                timed(client, page, 2)  # warm (template compilation)
                results[name] = {
                    "page": timed(client, page, args.repeat),
                    "api": timed(client, json_path, args.repeat, api),
                }
        svc.close()
    worst = max(r["page"]["p95_ms"] for r in results.values())
    print(f"{'page':<20} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'API p50':>8} {'ratio':>6} {'KiB':>6}")
    for name, r in results.items():
        ratio = r["page"]["p50_ms"] / max(r["api"]["p50_ms"], 1e-6)
        r["ratio_p50"] = round(ratio, 2)
        print(
            f"{name:<20} {r['page']['p50_ms']:>8.1f} {r['page']['p95_ms']:>8.1f} {r['page']['max_ms']:>8.1f} "
            f"{r['api']['p50_ms']:>8.1f} {ratio:>6.2f} {r['page']['bytes'] / 1024:>6.0f}"
        )
    metrics = {
        "nodes": args.nodes,
        "samples_per_node": SAMPLES_PER_NODE,
        "versions": args.versions,
        "rollouts": args.rollouts,
        "repeat": args.repeat,
        "setup_s": round(setup_s, 1),
        "pages": results,
        "worst_p95_ms": worst,
        "target_ms": TARGET_MS,
        "goal_met": worst < TARGET_MS,
    }
    headline = [
        HeadlineRow(
            what=f"Console pages, {args.nodes} nodes (`console`, worst page p95)",
            baseline=f"JSON API: fleet {results['fleet']['api']['p50_ms']:.0f} ms p50",
            result=f"fleet {results['fleet']['page']['p50_ms']:.0f} ms p50; worst p95 {worst:.0f} ms",
            target=f"< {TARGET_MS:.0f} ms",
            met=worst < TARGET_MS,
        )
    ]
    names = list(results)
    figures = [
        Figure(
            "console page vs JSON API, p50 (ms)",
            categories=names,
            series={
                "JSON API": [results[n]["api"]["p50_ms"] for n in names],
                "console page": [results[n]["page"]["p50_ms"] for n in names],
            },
            ylabel="ms",
        ),
        Figure(
            f"console page p95 (ms), target < {TARGET_MS:.0f}",
            categories=names,
            series={"p95": [results[n]["page"]["p95_ms"] for n in names]},
            ylabel="ms",
        ),
    ]
    if not args.no_record:
        write_record("console", metrics, headline, figures=figures)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
