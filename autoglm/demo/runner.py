"""Runs the demo stages after training (export → fleet → ask → shutdown) and returns a summary.

The CLI (`autoglm demo`) and ``tests/demo`` call :func:`run_demo` with the same arguments; the
test passes a tiny checkpoint, ``allow_degraded`` (a random tiny model cannot pass the int8
guard) and ``keyword_router`` (a random router head is never confident).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from autoglm.demo.errors import StageFailed

if TYPE_CHECKING:
    from autoglm.demo.ask_stage import AskResult
    from autoglm.demo.loop_stage import LoopResult
    from autoglm.demo.route_stage import RouteResult

STAGES = ("export", "route", "fleet", "loop", "ask")


@dataclass
class DemoSummary:
    stage_wall_s: dict[str, float] = field(default_factory=dict)
    bundle: str = ""
    update: str = ""
    bundle_bytes: int = 0
    update_bytes: int = 0
    export_reused: bool = False
    guard_passed: bool | None = None
    broker: str = ""
    rollout_state: str = ""
    node_versions: dict[str, str | None] = field(default_factory=dict)
    ask: AskResult | None = None  # stage 4's result as it came back
    loop: LoopResult | None = None  # the learning loop's result
    route: RouteResult | None = None  # the gated new route's result
    leftover_threads: list[str] = field(default_factory=list)
    broker_stopped: bool = False
    run_dir: str = ""


def run_demo(
    console: Console,
    checkpoint: Path,
    root: Path,
    *,
    stages: tuple[str, ...] = STAGES,
    precision: str = "int8",
    allow_degraded: bool = False,
    keyword_router: bool = False,
    reexport: bool = False,
    rollout_pause_s: float = 1.0,
    prefer_embedded_broker: bool = False,
    keep_running: bool = False,
) -> DemoSummary:
    """Stages 2–5 on ``checkpoint``; artefacts under ``root`` (bundles, keys; ``run/`` is per run)."""
    from autoglm.demo.ask_stage import run_stage_ask
    from autoglm.demo.export_stage import run_stage_export
    from autoglm.demo.fleet_stage import Fleet, run_stage_fleet, start_fleet

    unknown = set(stages) - set(STAGES)
    if unknown:
        raise StageFailed("setup", f"unknown stage(s) {sorted(unknown)}; known: {', '.join(STAGES)}")
    summary = DemoSummary()
    threads_before = {t.ident for t in threading.enumerate()}
    t0 = time.perf_counter()
    try:
        export = run_stage_export(
            console, checkpoint, root, precision=precision, allow_degraded=allow_degraded, reexport=reexport
        )
    except StageFailed:
        raise
    except Exception as exc:  # name the stage and the problem; the CLI exits non-zero
        raise StageFailed("export", f"{type(exc).__name__}: {exc}") from exc
    summary.stage_wall_s["export"] = time.perf_counter() - t0
    summary.bundle, summary.update = str(export.bundle), str(export.update)
    summary.bundle_bytes, summary.update_bytes = export.bundle_bytes, export.update_bytes
    summary.export_reused = export.reused
    summary.guard_passed = (not export.guard.get("failures")) if export.guard else None
    if "route" in stages:
        from autoglm.demo.route_stage import run_stage_route

        console.rule("[bold]Stage · new route: 16 examples → a gated route in the exported graph")
        t0 = time.perf_counter()
        try:
            summary.route = run_stage_route(console, checkpoint, root)
        except Exception as exc:
            raise StageFailed("route", f"{type(exc).__name__}: {exc}") from exc
        summary.stage_wall_s["route"] = time.perf_counter() - t0
    if not {"fleet", "loop", "ask"} & set(stages):
        return summary

    run_dir = root / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # fleet state is per run; bundles and keys are kept
    summary.run_dir = str(run_dir)
    fleet: Fleet | None = None
    stage = "fleet"
    try:
        console.rule("[bold]Stage 3 · fleet: broker, cloud controller, two edge nodes, gray rollout")
        t0 = time.perf_counter()
        fleet = start_fleet(
            console,
            run_dir,
            export,
            keyword_router=keyword_router,
            prefer_embedded_broker=prefer_embedded_broker,
        )
        summary.broker = fleet.broker.kind
        if fleet.cloud is not None:
            console.print(
                f"web console: [bold]{fleet.cloud.url}/ui[/] (log in with the admin token "
                f"{fleet.cloud.admin_token!r}; docs/arch/console.md)"
            )
        fr = run_stage_fleet(console, fleet, pause_s=rollout_pause_s)
        summary.stage_wall_s["fleet"] = time.perf_counter() - t0
        summary.rollout_state, summary.node_versions = fr.rollout_state, fr.versions
        if "loop" in stages:
            from autoglm.demo.loop_stage import run_stage_loop

            stage = "loop"
            console.rule("[bold]Stage · loop: hard examples → labels → job → canary → promoted")
            t0 = time.perf_counter()
            summary.loop = run_stage_loop(console, fleet, export, checkpoint, allow_degraded=allow_degraded)
            summary.stage_wall_s["loop"] = time.perf_counter() - t0
        if "ask" in stages:
            stage = "ask"
            t0 = time.perf_counter()
            summary.ask = run_stage_ask(console, fleet, heads_from=export.bundle)
            summary.stage_wall_s["ask"] = time.perf_counter() - t0
        if keep_running and fleet.cloud is not None:
            console.print(
                f"--keep-running: the fleet stays up; console {fleet.cloud.url}/ui (admin token "
                f"{fleet.cloud.admin_token!r}); press Ctrl-C to shut down"
            )
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    except StageFailed:
        raise
    except Exception as exc:
        raise StageFailed(stage, f"{type(exc).__name__}: {exc}") from exc
    finally:
        if fleet is not None:
            console.rule("[bold]Stage 5 · shutdown")
            t0 = time.perf_counter()
            fleet.close()
            summary.broker_stopped = not fleet.broker.running
            summary.leftover_threads = _leftover_threads(threads_before)
            summary.stage_wall_s["shutdown"] = time.perf_counter() - t0
            console.print(
                f"edge nodes, cloud controller and broker stopped; leftover threads: "
                f"{summary.leftover_threads or 'none'}"
            )
    print_summary(console, summary, root)
    return summary


def _leftover_threads(before: set[int | None], grace_s: float = 5.0) -> list[str]:
    """Threads started during the demo that are still alive (after a short grace period)."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = [t for t in threading.enumerate() if t.ident not in before and t.is_alive()]
        if not alive or time.monotonic() > deadline:
            return sorted(t.name for t in alive)
        time.sleep(0.1)


def print_summary(console: Console, s: DemoSummary, root: Path) -> None:
    t = Table(title="demo summary")
    t.add_column("what")
    t.add_column("result")
    t.add_row(
        "bundle 1.0.0",
        f"{s.bundle} ({s.bundle_bytes / 1e6:.2f} MB, guard "
        f"{'passed' if s.guard_passed else 'n/a' if s.guard_passed is None else 'FAILED (degraded allowed)'}"
        f"{', reused' if s.export_reused else ''})",
    )
    t.add_row("update 1.1.0", f"{s.update} ({s.update_bytes / 1e3:.1f} kB, adapter-only)")
    t.add_row("keys", str(root / "keys"))
    if s.broker:
        t.add_row("broker", s.broker)
        t.add_row("rollout", f"{s.rollout_state}; nodes: {s.node_versions}")
    a = s.ask
    if a is not None and a.sources:
        t.add_row("answer sources seen", ", ".join(sorted(a.sources)))
        t.add_row("cloud answer → cache hit on edge-b", str(a.cache_hit_on_b))
        t.add_row("hard example received by the cloud", str(a.hard_example_received))
        if a.prior_on_b is not None:
            t.add_row(
                "confirmed graph path → prior on edge-b",
                f"{a.prior_on_b[0]:+.3f} → {a.prior_on_b[1]:+.3f} (fleet path priors over MQTT)",
            )
        if a.knowledge:
            k = a.knowledge
            sim = "no memory hit" if k["similarity"] is None else f"memory hit {k['similarity']}"
            t.add_row(
                "cloud knowledge (text only) → edge-b",
                f"embedded there: {k['embedded_locally']}; question → {sim}, answered {k['source']}",
            )
        t.add_row("OIP v2 outputs", str(a.oip.get("outputs")))
        if a.metrics_burst:
            t.add_row(
                "dynamic batching",
                f"{a.metrics_burst['requests']:.0f} concurrent requests "
                f"→ {a.metrics_burst['batches']:.0f} batches "
                f"(mean {a.metrics_burst['mean_batch_size']:.1f} texts)",
            )
        t.add_row(
            "cloud down",
            f"local question → {a.offline_local_source}; cloud question → {a.offline_source} "
            f"in ≤ {a.offline_latency_ms:.0f} ms server / {a.offline_wall_ms:.0f} ms client; "
            "repeat with the breaker "
            f"open: {'no network attempt' if a.offline_breaker_short_circuit else 'attempted the cloud'}",
        )
    rt = s.route
    if rt is not None:
        (hit, meant), (false, others) = rt.claims(True), rt.claims(False)
        t.add_row(
            "new route (gate)",
            f"{rt.route} from {rt.support} examples: {hit} of the {meant} questions meant for it "
            f"routed to it ({false} of {others} others); {rt.other_changed} of "
            f"{rt.other_n} other-route test questions changed route"
            + (
                f"; after a loop job on it (gate refitted from {rt.job.support_after} examples): "
                f"{rt.job.claims(True)[0]} of {meant}, {rt.job.other_claimed} of {rt.other_n} others"
                if rt.job is not None
                else ""
            ),
        )
    lp = s.loop
    if lp is not None:
        after = "-" if lp.accuracy_after is None else f"{100 * lp.accuracy_after:.1f} %"
        t.add_row(
            "learning loop",
            f"{len(lp.queued)} hard examples → job {lp.job_state or '-'} ({lp.outcome or '-'}), "
            f"version {lp.version or '-'}; "
            f"accuracy on the loop's questions {100 * lp.accuracy_before:.1f} % → {after}",
        )
    if s.run_dir:
        t.add_row("run artefacts", f"{s.run_dir} (cloud SQLite, node caches, memory DBs, broker log)")
    t.add_row("wall time per stage", ", ".join(f"{k} {v:.1f}s" for k, v in s.stage_wall_s.items()))
    console.print(t)
