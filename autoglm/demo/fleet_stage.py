"""Demo stage 3: a broker, the cloud controller, two edge nodes; 1.0.0 to both, then a gray
rollout of the adapter-only 1.1.0 (5 → 25 → 50 → 100 %) until both serve it."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from autoglm.demo.errors import StageFailed
from autoglm.demo.export_stage import MODEL_NAME, STABLE_VERSION, UPDATE_VERSION, ExportResult
from autoglm.demo.relaxed import DEMO_ANALYSIS, analysis_relaxations
from autoglm.demo.services import Broker, CloudController, start_edge_node

ROLLOUT_STEPS = [5, 25, 50, 100]
NODE_IDS = ("edge-a", "edge-b")


@dataclass
class Fleet:
    """Everything stage 3 started; ``close`` stops it in reverse order (idempotent)."""

    broker: Broker
    cloud: CloudController | None = None
    nodes: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for node in reversed(list(self.nodes.values())):
            with contextlib.suppress(Exception):
                node.stop()
        self.nodes.clear()
        if self.cloud is not None:
            self.cloud.stop()
        self.broker.stop()


@dataclass
class FleetResult:
    broker_kind: str
    rollout_state: str
    steps: list[dict[str, Any]]
    versions: dict[str, str | None]
    rollout_s: float
    wall_s: float = 0.0


def wait_for(cond: Callable[[], Any], timeout: float, what: str, stage: str = "fleet") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise StageFailed(stage, f"timed out after {timeout:.0f}s waiting for {what}")


def served_version(url: str) -> str | None:
    import httpx

    try:
        r = httpx.get(f"{url}/v2/models/{MODEL_NAME}", timeout=5)
    except httpx.HTTPError:
        return None
    return str(r.json()["versions"][0]) if r.status_code == 200 else None


class Traffic:
    """Distinct inference requests to every node, so heartbeats carry what the rollout analysis judges."""

    def __init__(self, urls: list[str]) -> None:
        self.urls, self.sent = urls, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=10) as c:
            while not self._stop.is_set():
                for url in self.urls:
                    body = {
                        "inputs": [
                            {
                                "name": "text",
                                "datatype": "BYTES",
                                "shape": [1],
                                "data": [f"what is the status of line {self.sent} today"],
                            }
                        ]
                    }
                    with contextlib.suppress(httpx.HTTPError):
                        c.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=body)
                    self.sent += 1
                self._stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def start_fleet(
    console: Console,
    run_dir: Path,
    export: ExportResult,
    *,
    keyword_router: bool = False,
    prefer_embedded_broker: bool = False,
) -> Fleet:
    """Broker → cloud controller (bundles registered) → two edge nodes (registered, online)."""
    broker = Broker(run_dir / "broker", prefer_embedded=prefer_embedded_broker)
    fleet = Fleet(broker)
    try:
        broker.start()
        label = (
            "[green]Mosquitto[/]" if broker.binary else "[yellow]embedded amqtt broker — DEVELOPMENT ONLY[/]"
        )
        console.print(
            f"MQTT broker: {label} on {broker.host}:{broker.port} (MQTT {'5' if broker.mqtt_v5 else '3.1.1'})"
        )
        cloud = fleet.cloud = CloudController.start(run_dir / "cloud", broker, export.public_key_hex)
        console.print(
            f"cloud controller: {cloud.url} (SQLite in {run_dir / 'cloud'}, admin token generated, "
            "signed bundles only)"
        )
        reg = cloud.services.registry
        reg.register_dir(export.bundle, actor="demo")
        reg.register_dir(export.update, actor="demo")
        reg.set_alias(MODEL_NAME, "stable", STABLE_VERSION, actor="demo", reason="initial release")
        console.print(
            f"registry: {MODEL_NAME} {STABLE_VERSION} (full, alias stable) "
            f"and {UPDATE_VERSION} (adapter-only)"
        )
        for node_id in NODE_IDS:
            node = start_edge_node(
                run_dir / node_id,
                node_id,
                broker,
                cloud,
                export.public_key_hex,
                labels={"site": "demo"},
                keyword_router=keyword_router,
            )
            fleet.nodes[node_id] = node
            console.print(
                f"edge node {node_id}: {node.url} "
                "(registered with the bootstrap token, MQTT sync, agent on /v1/ask)"
            )
        wait_for(
            lambda: len(cloud.services.fleet.list_nodes(online=True)) == len(NODE_IDS),
            30,
            "both nodes online",
        )
    except StageFailed:
        fleet.close()
        raise
    except Exception as exc:
        fleet.close()
        raise StageFailed("fleet", f"{type(exc).__name__}: {exc}") from exc
    return fleet


def _event_row(e: dict[str, Any], t0: float) -> tuple[str, ...]:
    d = e.get("details") or {}
    extra = ""
    if "analysis" in d:
        a = d["analysis"]
        extra = f"analysis {a.get('verdict')} (canary {a.get('canary', {}).get('requests', 0)} requests)"
    elif d:
        extra = ", ".join(f"{k}={v}" for k, v in list(d.items())[:3])
    return (
        f"{time.monotonic() - t0:5.1f}s",
        f"{e['from_state']} → {e['to_state']}",
        e.get("reason", ""),
        extra,
    )


def run_stage_fleet(console: Console, fleet: Fleet, *, pause_s: float = 1.0) -> FleetResult:
    """Install 1.0.0 everywhere, then roll out 1.1.0 step by step; print the steps and the fleet table."""
    t_stage = time.perf_counter()
    cloud = fleet.cloud
    if cloud is None:
        raise StageFailed("fleet", "the cloud controller is not running")
    urls = {n: node.url for n, node in fleet.nodes.items()}
    with cloud.client() as c, Traffic(list(urls.values())):
        for node_id in fleet.nodes:
            r = c.post(
                f"/api/v1/nodes/{node_id}/desired-version",
                json={"model": MODEL_NAME, "version": STABLE_VERSION},
            )
            if r.status_code != 202:
                raise StageFailed(
                    "fleet", f"desired version for {node_id} refused: {r.status_code} {r.text[:200]}"
                )
        t0 = time.monotonic()
        wait_for(
            lambda: all(served_version(u) == STABLE_VERSION for u in urls.values()),
            120,
            f"both nodes serving {STABLE_VERSION}",
        )
        console.print(
            f"both nodes downloaded, verified and serve {STABLE_VERSION} ({time.monotonic() - t0:.1f}s)"
        )

        n = len(fleet.nodes)
        coarse = ", ".join(f"{p}% → {max(1, math.ceil(p * n / 100))} node(s)" for p in ROLLOUT_STEPS)
        console.print(
            f"rollout {UPDATE_VERSION}: steps {ROLLOUT_STEPS} of {n} nodes is coarse: {coarse}; "
            f"a step that adds no node only waits its pause ({pause_s}s) and analysis"
        )
        body = {
            "model": MODEL_NAME,
            "version": UPDATE_VERSION,
            "selector": {"site": "demo"},
            "steps": ROLLOUT_STEPS,
            "pause_s": pause_s,
            "apply_timeout_s": 60,
            "analysis": DEMO_ANALYSIS,
        }
        console.print(
            "[yellow]demo relaxes the rollout analysis[/] (two nodes, a minute of traffic): "
            + "; ".join(analysis_relaxations())
            + " — latency analysis is effectively off here"
        )
        r = c.post("/api/v1/rollouts", json=body)
        if r.status_code != 201:
            raise StageFailed("fleet", f"rollout refused: {r.status_code} {r.text[:300]}")
        rid = int(r.json()["id"])
        t0 = time.monotonic()
        console.print(
            f"rollout #{rid}: {MODEL_NAME} {STABLE_VERSION} → {UPDATE_VERSION} (events as they happen)"
        )
        seen = 0
        out: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = c.get(f"/api/v1/rollouts/{rid}").json()
            for e in out["events"][seen:]:
                row = _event_row(e, t0)
                console.print(f"  [dim]{row[0]}[/] {row[1]}: {row[2]}", highlight=False)
            seen = len(out["events"])
            if out["state"] in ("succeeded", "aborted", "paused"):
                break
            time.sleep(0.2)
        state = str(out.get("state"))
        if state != "succeeded":
            raise StageFailed("fleet", f"rollout ended {state}: {out.get('events', [{}])[-1].get('reason')}")
        wait_for(
            lambda: all(served_version(u) == UPDATE_VERSION for u in urls.values()),
            60,
            f"both nodes serving {UPDATE_VERSION}",
        )
        rollout_s = time.monotonic() - t0
    console.print(f"rollout succeeded in {rollout_s:.1f}s; both nodes serve {UPDATE_VERSION}")
    versions = {n: served_version(u) for n, u in urls.items()}
    print_fleet_table(console, fleet)
    steps = [e for e in out["events"]]
    return FleetResult(fleet.broker.kind, state, steps, versions, rollout_s, time.perf_counter() - t_stage)


def print_fleet_table(console: Console, fleet: Fleet) -> None:
    if fleet.cloud is None:
        return
    with fleet.cloud.client() as c:
        nodes = c.get("/api/v1/nodes").json()
        aliases = c.get(f"/api/v1/models/{MODEL_NAME}").json().get("aliases", {})
    t = Table(title=f"fleet, as the cloud sees it (last heartbeat window); aliases {aliases}")
    for col in ("node", "online", "serves", "desired", "req", "p50ms", "p99ms", "hit", "MB"):
        t.add_column(col)
    for n in nodes:
        m = n.get("metrics") or {}

        def num(key: str, fmt: str = "{:.1f}", src: dict[str, Any] = m) -> str:
            v = src.get(key)
            return fmt.format(v) if isinstance(v, int | float) else "-"

        t.add_row(
            n["node_id"],
            str(n.get("online")),
            str(n.get("current_version")),
            str(n.get("desired_version")),
            num("requests", "{:.0f}"),
            num("latency_p50_ms"),
            num("latency_p99_ms"),
            num("cache_hit_rate", "{:.0%}"),
            num("mem_mb", "{:.0f}", m.get("resources") or {}),
        )
    console.print(t)
