"""Demo stage · loop: the closed learning loop, unattended.

Questions phrased unlike the training templates go to edge-a's agent; those it is unsure of are
queued as hard examples (edge outbox → MQTT → the hub's hook → the cloud queue). The demo's
simulated user then rejects each wrong answer and names the route it meant (``POST /v1/feedback``
with ``correct: false, route``, the edge admin token): confidently wrong answers, which the router
never queues by itself, reach the queue too, labelled by the user (suggestion source ``user``).
The loop worker (in a thread here, a process next to the API in production: ``autoglm cloud
worker``) triages them with the full-precision model, the demo policy auto-approves the users'
labels (and model + cloud-tool agreements at the shipped confidence), a job trains for a tiny
budget (said in the output), exports with the guard, registers 1.2.0 with lineage, canaries it to
both nodes and promotes it. The demo policy asks for no minimum gain on the hard set; the
frozen-set regression limit, the export guard and the canary analysis still apply. Accuracy on
those questions (against the routes the demo meant) is printed before and after, with the wall
time of each step.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from autoglm.demo.errors import StageFailed
from autoglm.demo.export_stage import MODEL_NAME

if TYPE_CHECKING:
    from autoglm.demo.export_stage import ExportResult
    from autoglm.demo.fleet_stage import Fleet

# (question, the route the demo means) — unusual phrasings, written before any run of the loop; each
# carries a number, city or relation, so its cache signature differs from every question of the ask
# stage (the loop runs first: its cloud answers are cached fleet-wide and must not answer those)
QUESTIONS: list[tuple[str, str]] = [
    ("crunch 48 by 12 for me", "calculator"),
    ("twelve dozen eggs makes how many eggs", "calculator"),
    ("feet in three metres roughly", "unit_convert"),
    ("a 200 litre drum holds how many gallons", "unit_convert"),
    ("is harbin usually freezing in january", "climate"),
    ("how sticky does guangzhou get in summer", "climate"),
    ("who looks after the boiler room people", "kg_query"),
    ("walk me through swapping the seal on pump 7", "doc_search"),
    ("what do i get if 17 lots of 23 are piled up", "calculator"),
    ("my thermostat says 70 freedom units, what is that in proper degrees", "unit_convert"),
    ("should the crew in kunming pack umbrellas in july", "climate"),
    ("who owns packaging robot 4", "kg_query"),
    ("where is the write-up on the 5 step lockout", "doc_search"),
    ("is chiller 9 behaving itself", "device_status"),
    ("kill the lights over bay 3", "device_control"),
    ("cheers mate, 10 out of 10", "chitchat"),
]

# The demo's loop policy (cloud/loop/settings.py LoopSettings), printed when used. Labels
# auto-approved: the users' corrections, and model + cloud tool agreeing at the shipped confidence.
# The job trains with the shipped budget (120 steps, 2,000 base examples): the smaller demo budget
# it had (30 steps, 600) cost 1.52 +- 0.30 pt on the generator's validation split against 0.90 +-
# 0.53 for the shipped one (record benchmarks/results/dev/loop_distill-20261206T023424Z), more
# than the policy's 1-point limit, so the demo's jobs were refused by the policy.
DEMO_LOOP: dict[str, Any] = {
    "loop_auto_approve": True,
    "loop_auto_approve_user": True,
    "loop_min_gain_pt": 0.0,
    "loop_eval_max": 400,
    "loop_canary_steps": [50.0, 100.0],
    "loop_canary_pause_s": 1.0,
    "loop_canary_min_requests": 3,
    "loop_canary_max_p99_ratio": 1000.0,
    "loop_canary_p99_slack_ms": 10000.0,
    "loop_canary_max_fallback_rate": 1.0,
    "loop_worker_poll_s": 0.2,
}


# Outcomes where the loop refused the new version by its own rules (shown, not a demo failure).
SAFETY_OUTCOMES = ("rejected_by_policy", "guard_failed", "aborted")


@dataclass
class LoopResult:
    queued: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)  # wrong answers the user rejected with a route
    accuracy_before: float = 0.0
    accuracy_after: float | None = None
    job_state: str = ""
    outcome: str = ""
    version: str | None = None
    error: str = ""
    steps_s: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def _ask(url: str, text: str) -> dict[str, Any]:
    import httpx

    r = httpx.post(f"{url}/v1/ask", json={"text": text}, timeout=60)
    r.raise_for_status()
    return dict(r.json())


def _feedback(url: str, token: str, text: str, route: str) -> dict[str, Any]:
    """The simulated user rejects the answer to ``text`` and names ``route`` (edge admin token)."""
    import httpx

    r = httpx.post(
        f"{url}/v1/feedback",
        json={"text": text, "correct": False, "route": route},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    if r.status_code != 200:
        raise StageFailed("loop", f"feedback refused: {r.status_code} {r.text[:200]}")
    return dict(r.json())


def _edge_route(answer: dict[str, Any]) -> tuple[str, bool]:
    """The node model's route and whether the agent queued the question as a hard example."""
    step: dict[str, Any] = next((s for s in answer["steps"] if s["kind"] == "route"), {})
    route = step.get("route", "")
    hard = any(s["kind"] == "hard_example" and s.get("queued") for s in answer["steps"])
    return str(route), hard


def _relaxations() -> str:
    from autoglm.demo.relaxed import relaxations
    from cloud.loop.settings import LoopSettings

    return "; ".join(relaxations(LoopSettings, DEMO_LOOP))


def run_stage_loop(
    console: Console, fleet: Fleet, export: ExportResult, checkpoint: Path, *, allow_degraded: bool = False
) -> LoopResult:
    from autoglm.demo.fleet_stage import Traffic, served_version, wait_for
    from autoglm.loop_export import guarded_update
    from cloud.loop.settings import LoopSettings
    from cloud.loop.worker import LoopWorker, worker_services

    cloud = fleet.cloud
    if cloud is None or "edge-a" not in fleet.nodes:
        raise StageFailed("loop", "the fleet is not running")
    res = LoopResult()
    node_a = fleet.nodes["edge-a"].url
    console.print(
        "[yellow]demo loop policy and budget[/] (shipped training budget, labels auto-approved): "
        + _relaxations()
    )

    t0 = time.perf_counter()
    before: dict[str, str] = {}
    for text, _meant in QUESTIONS:
        route, hard = _edge_route(_ask(node_a, text))
        before[text] = route
        if hard:
            res.queued.append(text)
    res.accuracy_before = sum(before[t] == m for t, m in QUESTIONS) / len(QUESTIONS)
    # The simulated user knows what each of its own questions meant (not an evaluation set): it
    # rejects the wrong answers and names the right route; each becomes a user-labelled hard example.
    token = fleet.nodes["edge-a"].serve.http_admin_token
    for text, meant in QUESTIONS:
        if before[text] != meant:
            fb = _feedback(node_a, token, text, meant)
            if fb.get("hard_example", {}).get("queued"):
                res.corrected.append(text)
    svc = cloud.services
    sent = len(res.queued) + len(res.corrected)
    if sent:
        wait_for(lambda: svc.loop.queue.untriaged() >= sent, 30, "hard examples in the cloud queue", "loop")
    res.steps_s["ask + feedback + queue"] = time.perf_counter() - t0
    console.print(
        f"edge-a was unsure of {len(res.queued)} of {len(QUESTIONS)} questions (queued as hard examples); "
        f"the user rejected {len(res.corrected)} wrong answers with the right route (POST /v1/feedback: "
        f"queued with a user label); accuracy before {100 * res.accuracy_before:.1f} %",
        highlight=False,
    )
    if not sent:
        console.print("no hard examples: nothing for the loop to learn")
        return res

    wsvc = worker_services(svc.settings)
    wsvc.loop.settings = wsvc.loop.queue.settings = LoopSettings(
        **DEMO_LOOP,
        loop_checkpoint_dirs=[checkpoint],
        loop_sign_key=export.secret_key,
        loop_work_dir=svc.settings.data_dir / "loop",
    )
    worker = LoopWorker(wsvc, guarded_update, worker_id="demo-worker")
    try:
        t0 = time.perf_counter()
        worker.triage()
        with cloud.client() as c:
            items = c.get("/api/v1/hard-examples").json()["items"]
            t = Table("hard example", "count", "why", "suggested", "p", "source", "status")
            for it in items:
                p = it["suggested_confidence"]
                t.add_row(
                    it["text"],
                    str(it["count"]),
                    ", ".join(sorted(it.get("reasons") or {})) or "-",
                    it["suggested_route"] or "-",
                    "-" if p is None else f"{p:.2f}",
                    it["suggestion_source"],
                    it["status"] + (f" ({it['reason']})" if it["status"] == "labelled" else ""),
                )
            console.print(t)
            res.steps_s["triage + auto-approve"] = time.perf_counter() - t0
            r = c.post("/api/v1/jobs", json={"model": MODEL_NAME, "reason": "demo loop"})
            if r.status_code != 201:
                raise StageFailed("loop", f"job refused: {r.status_code} {r.text[:200]}")
            jid = int(r.json()["id"])
            urls = [n.url for n in fleet.nodes.values()]
            thread = threading.Thread(target=worker.run_once, name="demo-loop-worker", daemon=True)
            stage, t_stage = "queued", time.perf_counter()
            with Traffic(urls):
                thread.start()
                job: dict[str, Any] = {}
                deadline = time.monotonic() + 900
                while time.monotonic() < deadline:
                    job = c.get(f"/api/v1/jobs/{jid}").json()
                    if job["stage"] != stage or job["state"] in ("succeeded", "failed", "cancelled"):
                        now = time.perf_counter()
                        res.steps_s[f"job: {stage}"] = now - t_stage
                        console.print(
                            f"  job {jid}: {stage} → {job['stage']} ({now - t_stage:.1f}s)", highlight=False
                        )
                        stage, t_stage = job["stage"], now
                    if job["state"] in ("succeeded", "failed", "cancelled"):
                        break
                    time.sleep(0.2)
                thread.join(60)
        res.job_state, res.outcome = job.get("state", ""), str(job.get("outcome") or "")
        res.version, res.error, res.metrics = job.get("version"), job.get("error", ""), job.get("metrics", {})
        m = res.metrics
        if m.get("before"):
            console.print(
                f"hard set {m['before']['hard_accuracy']:.3f} → {m['after']['hard_accuracy']:.3f}, frozen "
                f"set ({m['frozen_n']}) {m['before']['frozen_accuracy']:.4f} → "
                f"{m['after']['frozen_accuracy']:.4f}; {m['steps']} steps in {m['train_wall_s']:.1f}s",
                highlight=False,
            )
        if res.outcome in SAFETY_OUTCOMES:
            # The loop's own safety at work, not a demo failure: the offline policy, the export guard or
            # the canary refused the new adapters, so nothing reached the fleet (or it was rolled back).
            console.print(
                f"[yellow]job {jid}: {res.outcome}[/] — {res.error}; the fleet keeps serving what it served. "
                "The demo policy auto-approved the labels above (source shown); a job that costs accuracy "
                "on the frozen set is stopped here, whatever its labels.",
                highlight=False,
            )
            return res
        if res.outcome != "promoted":
            msg = f"job {jid} ended {res.job_state} ({res.outcome}): {res.error}"
            if not allow_degraded:
                raise StageFailed("loop", msg)
            console.print(f"[yellow]{msg}[/] (allowed: degraded test model)")
            return res
        t0 = time.perf_counter()
        wait_for(
            lambda: all(served_version(u) == res.version for u in urls),
            60,
            f"both nodes serving {res.version}",
            "loop",
        )
        after = {t: _edge_route(_ask(node_a, t))[0] for t, _ in QUESTIONS}
        res.accuracy_after = sum(after[t] == m for t, m in QUESTIONS) / len(QUESTIONS)
        res.steps_s["ask again"] = time.perf_counter() - t0
        t = Table("question", "meant", f"before ({export.precision})", f"after ({res.version})")
        for text, meant in QUESTIONS:
            t.add_row(text, meant, before[text], after[text])
        console.print(t)
        console.print(
            f"{MODEL_NAME} {res.version} promoted; accuracy on these questions "
            f"{100 * res.accuracy_before:.1f} % → {100 * res.accuracy_after:.1f} %; wall time: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in res.steps_s.items()),
            highlight=False,
        )
        return res
    finally:
        worker.stop.set()
        wsvc.close()
