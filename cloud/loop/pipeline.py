"""One loop job, end to end: dataset -> warm-started fine-tune -> offline policy -> export with the
guard -> register with lineage -> canary rollout with analysis -> automatic promote / abort.

The exporter is handed in (``cloud`` never imports ``export``; the worker command wires
:func:`autoglm.loop_export.guarded_update`), so are the fine-tune and the clock. Every step
reports through :class:`cloud.loop.jobs.JobStore` (stage, progress, log, heartbeat, cancel).

Restart safety: registration is one transaction in the registry; the job records the version
right after it. A job taken over from a silent worker (:meth:`LoopPipeline.run` with
``attempts > 1``) finds its version by the ``loop_job`` tag and its rollout by version, and goes
on from the canary; without a registered version it fails with the stage it died in.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cloud.fleet.service import FleetService
from cloud.loop.jobs import JobCancelled, JobStore
from cloud.loop.queue import HardExampleQueue
from cloud.loop.settings import LoopSettings
from cloud.model.checkpoint import CHECKPOINT_FILE, WEIGHTS_FILE
from cloud.registry.schemas import VersionOut
from cloud.registry.semver import parse_semver
from cloud.registry.service import RegistryService
from cloud.rollout.schemas import AnalysisConfig, RolloutCreate
from cloud.rollout.service import RolloutService
from cloud.rollout.states import RolloutState
from cloud.store.cas import BlobStore
from cloud.training.path_priors import prior_summary
from contracts.bundle import open_bundle, sha256_file
from contracts.errors import AutoGLMError
from contracts.logging import get_logger
from contracts.loop import JobOut, JobOutcome, JobStage, JobState
from contracts.memory import FleetPathPrior

log = get_logger("autoglm.cloud.loop.pipeline")


class GuardRefused(AutoGLMError):
    """The export guard refused the new bundle (the worker's exporter raises this)."""

    status = 422
    code = "guard_failed"


class PolicyRefused(AutoGLMError):
    status = 422
    code = "policy_refused"


@dataclass
class ExportRequest:
    checkpoint_dir: Path
    parent_bundle: Path  # a full bundle (the update binds new adapters into its graph)
    name: str
    version: str
    out_dir: Path
    eval_texts: list[str]
    eval_labels: list[str]
    sign_key: Path | None
    graph_heads: bool = False  # train the graph heads on the new encoder (production carries them)
    fleet_priors: list[FleetPathPrior] | None = None  # the fleet's path feedback sums, for the heads


class Exporter(Protocol):
    def __call__(self, req: ExportRequest) -> tuple[Path, dict[str, Any]]:
        """Export a bundle and run the guard; returns (bundle dir, guard report); raises GuardRefused."""
        ...


class Finetuner(Protocol):
    def __call__(
        self,
        parent_ckpt: Path,
        hard: list[tuple[str, str]],
        out_dir: Path,
        settings: LoopSettings,
        *,
        on_progress: Callable[[float, str], None] | None = None,
        extra_training: dict[str, Any] | None = None,
        baseline_ckpt: Path | None = None,
    ) -> Any: ...


def checkpoint_sha256(ckpt_dir: Path) -> str:
    """Same digest as ``export.pipeline.checkpoint_sha256`` (what a bundle's provenance names)."""
    h = hashlib.sha256()
    for name in (CHECKPOINT_FILE, WEIGHTS_FILE):
        h.update(f"{name}:{sha256_file(ckpt_dir / name)}\n".encode())
    return h.hexdigest()


def _carries_heads(production: VersionOut, full_dir: Path) -> bool:
    """Production ships the learned graph heads: its own (an update with heads) or its full
    ancestor's (materialised in ``full_dir``)."""
    own = any(f.path == "hop_scorer.json" for f in production.files)
    return own or "hop_scorer" in open_bundle(full_dir, verify=False).manifest.graphs


def _priors_used(priors: list[FleetPathPrior], guard: dict[str, Any]) -> dict[str, Any]:
    """What the version's lineage records of the fleet priors: the head trainer's account (paths
    read, digest, how many acted) from the export report, else the count and digest read."""
    heads = guard.get("graph_heads") or {}
    used = (heads.get("hop_scorer") or {}).get("fleet_priors")
    return dict(used) if used else prior_summary(priors)


def next_minor(versions: list[str]) -> str:
    top = max((parse_semver(v) for v in versions), key=lambda v: v.sort_key())
    return f"{top.major}.{top.minor + 1}.0"


def policy_check(
    before: dict[str, float], after: dict[str, float], st: LoopSettings
) -> tuple[dict[str, float], list[str]]:
    gain = round((after["hard_accuracy"] - before["hard_accuracy"]) * 100, 3)
    regression = round((before["frozen_accuracy"] - after["frozen_accuracy"]) * 100, 3)
    fails = []
    if gain < st.loop_min_gain_pt:
        fails.append(f"hard-example gain {gain:+.2f} pt < the policy's minimum {st.loop_min_gain_pt:.2f} pt")
    if regression > st.loop_max_regression_pt:
        fails.append(
            f"frozen-set drop {regression:.2f} pt > the policy's maximum {st.loop_max_regression_pt:.2f} pt"
        )
    return {"hard_gain_pt": gain, "frozen_drop_pt": regression}, fails


class LoopPipeline:
    def __init__(
        self,
        *,
        jobs: JobStore,
        queue: HardExampleQueue,
        registry: RegistryService,
        rollouts: RolloutService,
        fleet: FleetService,
        store: BlobStore,
        settings: LoopSettings,
        work_dir: Path,
        exporter: Exporter,
        finetuner: Finetuner | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        tool_routes: Callable[[], list[str]] | None = None,
        fleet_priors: Callable[[], list[FleetPathPrior]] | None = None,
    ) -> None:
        self.jobs, self.queue, self.registry, self.rollouts = jobs, queue, registry, rollouts
        self.fleet, self.store, self.settings = fleet, store, settings
        self.work_dir = Path(work_dir)
        self.exporter = exporter
        if finetuner is None:
            from cloud.loop.finetune import finetune

            finetuner = finetune
        self.finetuner = finetuner
        self.stop = stop or threading.Event()
        self.clock = clock
        self.tool_routes: Callable[[], list[str]] = tool_routes or (lambda: [])
        self.fleet_priors = fleet_priors  # the sync hub's path-prior sums (the worker wires its file)
        self.actor = "loop"

    # -- entry --------------------------------------------------------------------------------------

    def run(self, job_id: int) -> JobOut:
        job = self.jobs.get(job_id)
        try:
            if job.attempts > 1:
                return self._resume(job)
            return self._fresh(job)
        except JobCancelled:
            return self._cancelled(job_id)
        except InterruptedError:  # the worker is stopping: the job stays running; the next worker takes over
            return self.jobs.get(job_id)
        except (GuardRefused, PolicyRefused) as exc:
            outcome = (
                JobOutcome.GUARD_FAILED if isinstance(exc, GuardRefused) else JobOutcome.REJECTED_BY_POLICY
            )
            return self.jobs.finish(job_id, JobState.FAILED, outcome, error=exc.message)
        except Exception as exc:
            log.exception("loop job failed", extra={"job_id": job_id})
            msg = exc.message if isinstance(exc, AutoGLMError) else f"{type(exc).__name__}: {exc}"
            self._abort_open_rollout(job_id, msg)
            return self.jobs.finish(job_id, JobState.FAILED, JobOutcome.ERROR, error=msg)

    def _abort_open_rollout(self, job_id: int, why: str) -> None:
        """A job that fails after starting its canary takes the canary down with it (no orphan)."""
        try:
            job = self.jobs.get(job_id)
            rid = job.rollout_id or (self._rollout_of(job.model, job.version) if job.version else None)
            if rid is not None and RolloutState(self.rollouts.get(rid).state) not in (
                RolloutState.SUCCEEDED,
                RolloutState.ABORTED,
            ):
                self.rollouts.abort(rid, actor=self.actor, reason=f"job {job_id} failed: {why}"[:500])
        except Exception:
            log.exception("could not abort the canary of failed job %d", job_id)

    # -- a fresh run --------------------------------------------------------------------------------

    def _fresh(self, job: JobOut) -> JobOut:
        jid, st = job.id, self.settings
        work = self.work_dir / "jobs" / str(jid)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        parent = self._production(job.model)
        dataset = self.queue.snapshot()
        hard = self.queue.dataset_pairs(dataset.sha256)
        self.jobs.report(
            jid,
            stage=JobStage.PREPARING,
            progress=0.02,
            parent_version=parent.version,
            dataset_sha256=dataset.sha256,
            message=f"parent {job.model}@{parent.version}; dataset v{dataset.version} "
            f"{dataset.sha256[:12]} ({dataset.size} labelled examples)",
        )
        ckpt = self.find_checkpoint(str(parent.lineage.get("checkpoint_sha256") or ""), parent)
        full = self._full_ancestor(parent)
        parent_dir = self._materialise(full, work / "parent")
        heads = st.loop_graph_heads and _carries_heads(parent, parent_dir)
        priors = self._read_fleet_priors(jid) if heads else None
        self.jobs.report(
            jid,
            stage=JobStage.TRAINING,
            progress=0.05,
            message=f"warm start from checkpoint {ckpt}; export parent {full.model}@{full.version}",
        )

        production = ckpt
        ckpt = self._grow_routes(jid, ckpt, hard)

        def on_progress(p: float, msg: str) -> None:
            self.jobs.report(jid, progress=0.05 + 0.55 * p, message=msg)

        out_ckpt = self.work_dir / "checkpoints" / f"job-{jid}"
        shutil.rmtree(out_ckpt, ignore_errors=True)
        res = self.finetuner(
            ckpt,
            hard,
            out_ckpt,
            st,
            on_progress=on_progress,
            extra_training={"dataset_sha256_loop": dataset.sha256, "job": jid},
            baseline_ckpt=production if ckpt != production else None,
        )
        self.jobs.report(jid, stage=JobStage.EVALUATING, progress=0.62, message="policy check")
        gates, fails = policy_check(res.before, res.after, st)
        metrics = {
            "before": res.before,
            "after": res.after,
            **gates,
            "frozen_n": res.frozen_n,
            "hard_n": res.hard_n,
            "train_wall_s": round(res.wall_s, 2),
            "steps": res.steps,
            "policy": {"min_gain_pt": st.loop_min_gain_pt, "max_regression_pt": st.loop_max_regression_pt},
        }
        self.jobs.report(
            jid,
            metrics=metrics,
            message=f"hard {res.before['hard_accuracy']:.3f} -> "
            f"{res.after['hard_accuracy']:.3f}, frozen {res.before['frozen_accuracy']:.4f} -> "
            f"{res.after['frozen_accuracy']:.4f}",
        )
        if fails:
            raise PolicyRefused("policy: " + "; ".join(fails) + " (nothing registered)")
        version = next_minor([v.version for v in self.registry.list_versions(job.model)])
        self.jobs.report(
            jid, stage=JobStage.EXPORTING, progress=0.65, message=f"exporting {job.model}@{version}"
        )
        bundle, guard = self.exporter(
            ExportRequest(
                checkpoint_dir=res.checkpoint_dir,
                parent_bundle=parent_dir,
                name=job.model,
                version=version,
                out_dir=work / "bundle",
                eval_texts=res.eval_texts,
                eval_labels=res.eval_labels,
                sign_key=st.loop_sign_key,
                graph_heads=heads,
                fleet_priors=priors,
            )
        )
        metrics = {**metrics, "guard": guard}
        lineage_priors = {} if priors is None else {"fleet_priors": _priors_used(priors, guard)}
        self.jobs.report(
            jid, stage=JobStage.REGISTERING, progress=0.75, metrics=metrics, message="guard passed"
        )
        out = self.registry.register_dir(
            bundle,
            actor=f"{self.actor}-job-{jid}",
            metrics={"loop": metrics},
            lineage={
                "parent": f"{job.model}@{parent.version}",
                "dataset_sha256": dataset.sha256,
                "dataset_version": dataset.version,
                "loop_job": jid,
                "loop_metrics": metrics,
                **lineage_priors,
            },
            tags={"loop_job": str(jid)},
        )
        self.jobs.report(
            jid,
            stage=JobStage.REGISTERED,
            progress=0.8,
            version=out.version,
            message=f"registered {job.model}@{out.version}",
        )
        shutil.rmtree(work, ignore_errors=True)
        return self._canary(self.jobs.get(jid))

    def _read_fleet_priors(self, jid: int) -> list[FleetPathPrior] | None:
        """The fleet's path feedback sums at the job's start (``loop_fleet_priors``), for the heads."""
        if not self.settings.loop_fleet_priors or self.fleet_priors is None:
            return None
        priors = self.fleet_priors()
        s = prior_summary(priors)
        self.jobs.report(
            jid,
            message=f"fleet path priors: {s['paths']} paths ({s['confirmed']} confirmations, "
            f"{s['rejected']} rejections; digest {s['digest']}) for the graph heads",
        )
        return priors

    def _grow_routes(self, jid: int, ckpt: Path, hard: list[tuple[str, str]]) -> Path:
        """Labels naming routes the production model lacks (the queue let them in because a tool
        serves them): grow the head by each, from its labelled examples
        (``cloud.training.new_route.train_new_route``, MAML-initialised when the checkpoint is a meta-
        learnt one); the fine-tune then starts from the grown checkpoint."""
        from cloud.model.checkpoint import read_checkpoint_meta

        meta = read_checkpoint_meta(ckpt)
        known = set(next(iter(meta.adapter_sets.values())).routes)
        new_routes = sorted({r for _, r in hard if r not in known})
        if not new_routes:
            return ckpt
        from cloud.training.new_route import OPERATOR_GATE, NewRouteConfig, train_new_route

        gate = self.settings.loop_new_route_method == "gate"
        if gate and len(new_routes) > 1:
            raise PolicyRefused(
                f"labels name {len(new_routes)} new routes {new_routes}; with loop_new_route_method=gate a "
                "job grows one (a checkpoint holds one gated route): reject or relabel the others"
            )
        cfg = NewRouteConfig(method="gate", gate=OPERATOR_GATE) if gate else NewRouteConfig()
        for route in new_routes:
            out = self.work_dir / "checkpoints" / f"job-{jid}-route-{route}"
            shutil.rmtree(out, ignore_errors=True)
            support = [t for t, r in hard if r == route]
            res = train_new_route(ckpt, route, support, out, tool_routes=self.tool_routes(), config=cfg)
            how = f"gate ({OPERATOR_GATE.kind} on {OPERATOR_GATE.feature})" if gate else "head grown"
            self.jobs.report(
                jid,
                message=f"new route {route!r}: {how} from {res.support} examples "
                f"in {res.wall_s:.1f}s (routes now {len(res.routes)})",
            )
            ckpt = out
        return ckpt

    # -- resume after a take-over ----------------------------------------------------------------------

    def _resume(self, job: JobOut) -> JobOut:
        version = job.version or self._version_of_job(job)
        if version is None:
            return self.jobs.finish(
                job.id,
                JobState.FAILED,
                JobOutcome.ERROR,
                error=f"worker stopped during {job.stage.value}; nothing was registered (queue a new job)",
            )
        self.jobs.report(
            job.id,
            stage=JobStage.REGISTERED,
            version=version,
            message=f"resuming after a worker restart: {job.model}@{version} is registered",
        )
        return self._canary(self.jobs.get(job.id))

    def _version_of_job(self, job: JobOut) -> str | None:
        for v in self.registry.list_versions(job.model):
            if str(v.tags.get("loop_job", "")) == str(job.id):
                return v.version
        return None

    # -- canary ---------------------------------------------------------------------------------

    def _canary(self, job: JobOut) -> JobOut:
        st, jid = self.settings, job.id
        assert job.version is not None
        rid = job.rollout_id or self._rollout_of(job.model, job.version)
        if rid is None:
            self.fleet.refresh()
            r = self.rollouts.create(
                RolloutCreate(
                    model=job.model,
                    version=job.version,
                    steps=list(st.loop_canary_steps),
                    pause_s=st.loop_canary_pause_s,
                    analysis=AnalysisConfig(
                        enabled=st.loop_canary_analysis,
                        min_requests=st.loop_canary_min_requests,
                        max_fallback_rate=st.loop_canary_max_fallback_rate,
                        max_p99_ratio=st.loop_canary_max_p99_ratio,
                        p99_slack_ms=st.loop_canary_p99_slack_ms,
                    ),
                ),
                actor=f"{self.actor}-job-{jid}",
            )
            rid = r.id
            self.jobs.report(
                jid,
                stage=JobStage.CANARY,
                progress=0.82,
                rollout_id=rid,
                message=f"canary rollout #{rid} started (steps {st.loop_canary_steps})",
            )
        else:
            self.jobs.report(jid, stage=JobStage.CANARY, rollout_id=rid, message=f"watching rollout #{rid}")
        return self._watch(jid, rid)

    def _rollout_of(self, model: str, version: str) -> int | None:
        for r in self.rollouts.list_rollouts():
            if r.model == model and r.version == version:
                return r.id
        return None

    def _watch(self, jid: int, rid: int) -> JobOut:
        st = self.settings
        deadline = self.clock() + st.loop_rollout_timeout_s
        last = ""
        try:
            while True:
                r = self.rollouts.get(rid)
                state = RolloutState(r.state)
                if state is RolloutState.SUCCEEDED:
                    return self.jobs.finish(
                        jid,
                        JobState.SUCCEEDED,
                        JobOutcome.PROMOTED,
                        message=f"promoted: {r.model}@{r.version} is stable",
                    )
                if state is RolloutState.ABORTED:
                    why = r.events[-1].reason if r.events else "aborted"
                    return self.jobs.finish(
                        jid, JobState.FAILED, JobOutcome.ABORTED, error=f"canary aborted: {why}"
                    )
                if state is RolloutState.PAUSED:
                    why = r.events[-1].reason if r.events else "paused"
                    if st.loop_on_inconclusive == "promote":
                        self.rollouts.promote(rid, actor=self.actor, reason=f"loop policy: {why}", full=True)
                    else:
                        self.rollouts.abort(
                            rid, actor=self.actor, reason=f"loop policy (inconclusive): {why}"
                        )
                    continue
                if self.clock() > deadline:
                    self.rollouts.abort(rid, actor=self.actor, reason="loop policy: canary took too long")
                    continue
                note = f"rollout #{rid}: step {r.step_index + 1}/{len(r.steps)} {r.phase}"
                step_share = (r.step_index + (0.5 if r.phase == "baking" else 0.0)) / max(1, len(r.steps))
                self.jobs.report(
                    jid, progress=0.82 + 0.17 * step_share, message=note if note != last else None
                )
                last = note
                if self.stop.wait(st.loop_worker_poll_s):
                    raise InterruptedError("worker stopping")
        except JobCancelled:
            r = self.rollouts.get(rid)
            if RolloutState(r.state) not in (RolloutState.SUCCEEDED, RolloutState.ABORTED):
                self.rollouts.abort(rid, actor=self.actor, reason=f"job {jid} cancelled")
            raise

    def _cancelled(self, jid: int) -> JobOut:
        return self.jobs.finish(
            jid, JobState.CANCELLED, JobOutcome.CANCELLED, error="cancelled by an operator"
        )

    # -- helpers --------------------------------------------------------------------------------------

    def _production(self, model: str) -> VersionOut:
        ref = self.registry.alias_target(model, "stable")
        if ref is None:
            raise PolicyRefused(f"{model} has no stable version to improve on; set the stable alias first")
        return self.registry.get_version(model, ref)

    def _full_ancestor(self, v: VersionOut) -> VersionOut:
        seen = 0
        while v.kind != "full":
            if v.parent is None or seen > 20:
                raise PolicyRefused(
                    f"{v.model}@{v.version} is an adapter update without a registered full parent"
                )
            name, _, ver = v.parent.partition("@")
            v = self.registry.get_version(name, ver)
            seen += 1
        return v

    def _materialise(self, v: VersionOut, dest: Path) -> Path:
        shutil.rmtree(dest, ignore_errors=True)
        for f in v.files:
            target = dest / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.store.open_path(f.sha256), target)
        return dest

    def checkpoint_dirs(self) -> list[Path]:
        roots = [*self.settings.loop_checkpoint_dirs, self.work_dir / "checkpoints"]
        found: list[Path] = []
        for root in roots:
            root = Path(root)
            if (root / CHECKPOINT_FILE).is_file():
                found.append(root)
            elif root.is_dir():
                found += sorted(p.parent for p in root.glob(f"*/{CHECKPOINT_FILE}"))
        return found

    def find_checkpoint(self, digest: str, parent: VersionOut) -> Path:
        if not digest:
            raise PolicyRefused(f"{parent.model}@{parent.version} names no checkpoint in its lineage")
        for d in self.checkpoint_dirs():
            if (d / WEIGHTS_FILE).is_file() and checkpoint_sha256(d) == digest:
                return d
        raise PolicyRefused(
            f"no checkpoint with sha256 {digest[:12]}… (the production adapters of "
            f"{parent.model}@{parent.version}) under loop_checkpoint_dirs or the worker's own checkpoints"
        )
