"""The learning loop against a simulated fleet: first hard example -> promoted version on N nodes.

Setup (not timed): the production checkpoint and its full bundle 1.0.0 (``--bundle``, or exported
here: int8 with the guard; ``--quick`` trains and exports a tiny model instead), the controller's
services in this process (SQLite, the leader's duties in a thread: send queued commands, tick the
rollouts), N simulated nodes (an in-process command channel: each applies a version when its
command arrives and reports heartbeats with traffic every 0.5 s), the loop worker in a thread
(auto policy: suggestions auto-approved, a job queued once every hard example is labelled).

Timed, from the first hard example the hub hands to the queue (``queue.ingest``, as the hub hook
does) until the new version is stable and every node runs it: triage + auto-approve, the job's
stages (training, evaluation, export with the guard, registration, canary 10/50/100 % with
analysis on the simulated heartbeats), the promotion. Target: <= 10 minutes on 2 cores.
Baseline in the same run: the job's fine-tune alone (its wall time); the ratio total / fine-tune
is the cost of the loop around the training.

Which inputs are hard is decided like an edge decides it: of the candidates (18 written phrasings
plus ``--pool`` noisy variants of the generator's training templates — typos, fillers, casing,
never the frozen test templates) those whose calibrated top probability under the production
model is below the agent's threshold (0.6) become hard examples (at most ``--max-hard``); each is
reported by 1-3 nodes, as answered by the cloud tool of the route the candidate was written for.

Usage: ``python benchmarks/bench_loop_fleet.py [--checkpoint DIR] [--bundle DIR] [--nodes 50]
[--quick] [--no-record]``. The machine is shared: numbers are noisy.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoglm.bench.records import HeadlineRow, write_record  # noqa: E402
from contracts.commands import Command, CommandAck  # noqa: E402

MODEL = "autoglm-router"
TARGET_S = 600.0
AGENT_THRESHOLD = 0.6
# (text, the route it was written for): phrasings unlike the generator's templates
CANDIDATES: list[tuple[str, str]] = [
    ("crunch 48 by 12 for me", "calculator"),
    ("twelve dozen eggs makes how many eggs", "calculator"),
    ("what do i get if 17 lots of 23 are piled up", "calculator"),
    ("halve 3 point 5 then add nine", "calculator"),
    ("feet in three metres roughly", "unit_convert"),
    ("a 200 litre drum holds how many gallons", "unit_convert"),
    ("my thermostat says 70 freedom units, what is that in proper degrees", "unit_convert"),
    ("is harbin usually freezing in january", "climate"),
    ("how sticky does guangzhou get in summer", "climate"),
    ("should the crew in kunming pack umbrellas in july", "climate"),
    ("who looks after the boiler room people", "kg_query"),
    ("which team owns the packaging robots", "kg_query"),
    ("walk me through swapping a pump seal", "doc_search"),
    ("where is the write-up on lockout tagout", "doc_search"),
    ("is the chiller on line 2 happy right now", "device_status"),
    ("kill the lights over bay 3", "device_control"),
    ("what was that thing i asked earlier about the valve", "memory_recall"),
    ("cheers mate, you're a legend", "chitchat"),
]


class SimFleet:
    """An in-process command channel + N nodes that apply at once and report traffic."""

    def __init__(self, nodes: list[str], version: str) -> None:
        self.versions = dict.fromkeys(nodes, version)
        self.pending: list[tuple[str, Command]] = []
        self.lock = threading.Lock()
        self.fleet: Any = None

    def send(self, node_id: str, command: Command) -> str:
        cid = command.command_id or uuid.uuid4().hex
        with self.lock:
            self.pending.append((node_id, command.with_id(cid)))
        return cid

    def step(self) -> None:
        with self.lock:
            todo, self.pending = self.pending, []
        for node_id, cmd in todo:
            self.versions[node_id] = str(cmd.version)
            self.fleet.on_ack(
                node_id, CommandAck.success(cmd.command_id or "", {"version": str(cmd.version)})
            )
        for n, v in self.versions.items():
            self.fleet.on_heartbeat(
                n,
                {
                    "node_id": n,
                    "ts_ms": 0,
                    "model_version": v,
                    "requests": 30,
                    "error_rate": 0.0,
                    "latency_p99_ms": 12.0,
                    "fallback_rate": 0.05,
                },
            )


def _noisy_pool(n: int) -> list[tuple[str, str]]:
    """``n`` noisy variants (typos, fillers, casing: ``cloud.data.noise.augment``, a seed of its own)
    of the generator's *training* templates: what users type that the model half knows. The frozen
    evaluation set (the test split's templates) is never touched."""
    from cloud.data import default_splits
    from cloud.data.noise import augment

    if n <= 0:
        return []
    rng = random.Random(4242)
    train = default_splits(0)["train"]
    picks = rng.sample(train, min(n, len(train)))
    return [(augment(augment(e.text, e.lang, rng), e.lang, rng), e.route) for e in picks]


def _prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path, Path]:
    """(checkpoint, full bundle 1.0.0, signing key, public key) — not timed."""
    from contracts.bundle import generate_keypair
    from export.pipeline import export_checkpoint

    key, pub = generate_keypair(work / "keys")
    if args.quick:
        import os

        os.environ["AUTOGLM_EXPORT_GUARD_MIN_EVAL_SIZE"] = "50"  # the tiny model's frozen set is small
        from cloud.training.config import TrainConfig
        from cloud.training.trainer import train

        train(
            TrainConfig(tiny=True, epochs=2, out_dir=work / "ckpt", num_threads=1, lr=5e-3, max_length=32),
            progress=False,
        )
        ckpt = work / "ckpt"
        return (
            ckpt,
            export_checkpoint(ckpt, work / "v1", name=MODEL, version="1.0.0", precision="fp32", sign_key=key),
            key,
            pub,
        )
    ckpt = Path(args.checkpoint)
    if args.bundle:
        return ckpt, Path(args.bundle), Path(args.sign_key), Path(args.public_key)
    print("exporting the production bundle 1.0.0 (int8 + guard; setup, not timed) ...", flush=True)
    return (
        ckpt,
        export_checkpoint(ckpt, work / "v1", name=MODEL, version="1.0.0", precision="int8", sign_key=key),
        key,
        pub,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    from autoglm.loop_export import guarded_update
    from cloud.api.container import CloudServices
    from cloud.loop.settings import LoopSettings
    from cloud.loop.triage import ModelTriage
    from cloud.loop.worker import LoopWorker, worker_services
    from cloud.settings import CloudSettings
    from contracts.bundle import load_verify_key

    work = Path(tempfile.mkdtemp(prefix="bench-loop-fleet-"))
    ckpt, bundle, key, pub = _prepare(args, work)
    pub_hex = bytes(load_verify_key(pub)).hex()
    nodes = [f"node-{i:03d}" for i in range(args.nodes)]
    sim = SimFleet(nodes, "1.0.0")
    settings = CloudSettings(
        data_dir=work / "cloud",
        database_url="",
        admin_tokens=["bench:x"],
        mqtt_enabled=False,
        tool_doc_embeddings=False,
        bundle_public_key=pub_hex,
    )
    svc = CloudServices.build(settings, channel=sim)
    sim.fleet = svc.fleet
    svc.registry.register_dir(bundle, actor="bench")
    svc.registry.set_alias(MODEL, "stable", "1.0.0", actor="bench", reason="production")
    for n in nodes:
        svc.fleet.register(n, {"site": "bench"})
    sim.step()

    # which candidates an edge would be unsure of (the production model, calibrated)
    pool = list(CANDIDATES) + _noisy_pool(args.pool)
    judge = ModelTriage(ckpt)
    verdicts = judge([t for t, _ in pool])
    unsure = [((t, r), v) for (t, r), v in zip(pool, verdicts, strict=True) if v.confidence < AGENT_THRESHOLD]
    unsure = unsure[: args.max_hard]
    hard = [tr for tr, _ in unsure]
    wrong_before = sum(v.route != r for (_, r), v in unsure)
    del judge
    print(
        f"{len(hard)} of {len(pool)} candidates are hard examples "
        f"(p < {AGENT_THRESHOLD}, at most {args.max_hard}); "
        f"the production model routes {wrong_before} of them wrong",
        flush=True,
    )
    if not hard:
        raise SystemExit("no candidate is hard for this model: nothing for the loop to do")

    loop = LoopSettings(
        loop_auto_approve=True,
        loop_auto_approve_any_source=True,
        loop_auto_approve_min_confidence=0.0,
        loop_auto_job_min_labelled=len(hard),
        loop_checkpoint_dirs=[ckpt],
        loop_sign_key=key,
        loop_canary_steps=[10.0, 50.0, 100.0],
        loop_canary_pause_s=args.pause_s,
        loop_canary_min_requests=20,
        loop_worker_poll_s=0.2,
        loop_work_dir=work / "loop",
        **(
            {"loop_train_steps": 40, "loop_base_samples": 300, "loop_max_regression_pt": 100.0}
            if args.quick
            else {"loop_train_steps": args.steps}
        ),
    )
    wsvc = worker_services(settings)
    wsvc.loop.settings = wsvc.loop.queue.settings = loop
    stop = threading.Event()
    worker = LoopWorker(wsvc, guarded_update, worker_id="bench-worker", stop=stop)

    def leader() -> None:
        while not stop.is_set():
            svc.fleet.refresh()
            svc.fleet.send_queued()
            svc.rollouts.tick()
            sim.step()
            stop.wait(0.5)

    threads = [
        threading.Thread(target=leader, daemon=True),
        threading.Thread(target=worker.serve, daemon=True),
    ]
    for t in threads:
        t.start()
    rng = random.Random(0)
    t0 = time.perf_counter()
    marks: dict[str, float] = {}
    for i, (text, route) in enumerate(hard):  # the hub hook hands each node's message to the queue
        for n in rng.sample(nodes, rng.randint(1, 3)):
            svc.loop.queue.ingest(
                n,
                [
                    {
                        "id": uuid.uuid4().hex,
                        "text": text,
                        "edge_route": "chitchat",
                        "edge_confidence": 0.4,
                        "final_route": route,
                        "answer_source": "cloud_fallback",
                        "model_version": "1.0.0",
                    }
                ],
            )
        if i == 0:
            marks["first hard example"] = 0.0
    stage, job = "", None
    deadline = t0 + args.timeout_s
    while time.perf_counter() < deadline:
        jobs = svc.loop.jobs.all(limit=1)
        if jobs:
            job = svc.loop.jobs.get(jobs[0].id)
            key_ = f"job {job.stage.value}"
            if job.stage.value != stage:
                marks.setdefault(key_, time.perf_counter() - t0)
                print(f"  {time.perf_counter() - t0:7.1f}s  job {job.id}: {job.stage.value}", flush=True)
                stage = job.stage.value
            if job.state.value in ("succeeded", "failed", "cancelled"):
                break
        elif svc.loop.queue.untriaged() == 0 and "triaged" not in marks:
            marks["triaged"] = time.perf_counter() - t0
        time.sleep(0.2)
    promoted = job is not None and job.outcome is not None and job.outcome.value == "promoted"
    if promoted:
        assert job is not None
        while time.perf_counter() < deadline and any(v != job.version for v in sim.versions.values()):
            time.sleep(0.1)
    total = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(30)
    m = (job.metrics if job else {}) or {}
    train_s = float(m.get("train_wall_s") or 0.0)
    metrics = {
        "nodes": args.nodes,
        "quick": bool(args.quick),
        "hard_examples": len(hard),
        "candidates": len(CANDIDATES),
        "pool": len(pool),
        "wrong_before": wrong_before,
        "job_state": job.state.value if job else None,
        "outcome": job.outcome.value if job and job.outcome else None,
        "version": job.version if job else None,
        "error": job.error if job else "no job",
        "first_hard_example_to_promoted_s": round(total, 2),
        "all_nodes_on_new_version": promoted and all(v == job.version for v in sim.versions.values())
        if job
        else False,
        "fine_tune_s": round(train_s, 2),
        "ratio_total_to_fine_tune": round(total / train_s, 2) if train_s else None,
        "stage_marks_s": {k: round(v, 2) for k, v in marks.items()},
        "job_metrics": m,
        "train_steps": loop.loop_train_steps,
        "canary_steps": loop.loop_canary_steps,
        "canary_pause_s": loop.loop_canary_pause_s,
        "target_s": TARGET_S,
    }
    wsvc.close()
    svc.close()
    return metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(ROOT / ".autoglm" / "demo" / "checkpoint"))
    p.add_argument(
        "--bundle", default="", help="Existing signed full bundle 1.0.0 of --checkpoint (skips export)"
    )
    p.add_argument("--sign-key", default="", help="With --bundle: its signing key")
    p.add_argument("--public-key", default="", help="With --bundle: its public key")
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument(
        "--pool", type=int, default=3000, help="Noisy training-template variants screened for hard ones"
    )
    p.add_argument("--max-hard", type=int, default=40, help="At most this many hard examples")
    p.add_argument("--steps", type=int, default=120, help="Fine-tune steps (loop_train_steps)")
    p.add_argument("--pause-s", type=float, default=10.0, help="Canary bake time per step")
    p.add_argument("--timeout-s", type=float, default=1800.0)
    p.add_argument("--quick", action="store_true", help="Tiny model (tests): a smoke run, not the target")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    metrics = run(args)
    total, met = metrics["first_hard_example_to_promoted_s"], None
    if not args.quick:
        met = bool(metrics["outcome"] == "promoted" and total <= TARGET_S)
    ratio = metrics["ratio_total_to_fine_tune"]
    print(
        f"first hard example -> {metrics['outcome']} {metrics['version']} on {args.nodes} simulated nodes: "
        f"{total:.1f}s (target <= {TARGET_S:.0f}s); fine-tune alone {metrics['fine_tune_s']:.1f}s "
        f"(baseline), total / fine-tune = {ratio}x"
    )
    print(json.dumps({"bench": "loop_fleet", **metrics}, default=str))
    if not args.no_record:
        headline = [
            HeadlineRow(
                what=f"learning loop: first hard example → promoted on {args.nodes} simulated nodes",
                baseline=f"fine-tune alone {metrics['fine_tune_s']:.0f} s",
                result=f"{total:.0f} s ({metrics['outcome']}; {ratio}× the fine-tune)",
                target=f"≤ {TARGET_S / 60:.0f} min",
                met=met,
            )
        ]
        write_record("loop_fleet" + ("_quick" if args.quick else ""), metrics, headline)


if __name__ == "__main__":
    main()
