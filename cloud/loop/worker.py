"""The loop's worker: triages new hard examples and runs queued jobs, one at a time.

``autoglm cloud worker`` runs it as a process next to the API (the same database, no MQTT: the
commands of the canary it starts are queued in the command ledger and sent by the leader); the
Kubernetes manifests run the same command as a Job. Several workers may run: a job is claimed
with one conditional update, so it runs once.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from cloud.api.container import CloudServices, hub_db_path
from cloud.loop.pipeline import Exporter, Finetuner, LoopPipeline
from cloud.loop.queue import TriageFn
from cloud.settings import CloudSettings
from cloud.sync.repository import read_fleet_priors
from contracts.logging import get_logger
from contracts.loop import JobState
from contracts.memory import FleetPathPrior

log = get_logger("autoglm.cloud.loop.worker")


def worker_services(settings: CloudSettings) -> CloudServices:
    """Services over the controller's database for a worker process: no MQTT, never sends or ticks."""
    svc = CloudServices.build(settings.model_copy(update={"mqtt_enabled": False}))
    svc.fleet.may_send = lambda: False  # commands wait in the ledger (queued) for the leader
    svc.rollouts.leading = lambda: False  # the leader's loop drives the rollout
    return svc


def hub_fleet_priors(settings: CloudSettings) -> list[FleetPathPrior]:
    """The fleet's path feedback sums in the sync hub's database (``cloud.api.container.hub_db_path``),
    read through its repository; none when no hub has written that file yet."""
    try:
        return read_fleet_priors(hub_db_path(settings))
    except FileNotFoundError as exc:  # read_fleet_priors' own check: it would create the file
        log.info("%s: no fleet path priors", exc)
        return []


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LoopWorker:
    def __init__(
        self,
        svc: CloudServices,
        exporter: Exporter,
        *,
        finetuner: Finetuner | None = None,
        triage_factory: Callable[[Path], TriageFn] | None = None,
        worker_id: str | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.svc = svc
        self.settings = svc.loop.settings
        self.id = worker_id or new_worker_id()
        self.stop = stop or threading.Event()
        work = self.settings.loop_work_dir or (svc.settings.data_dir / "loop")
        self.pipeline = LoopPipeline(
            jobs=svc.loop.jobs,
            queue=svc.loop.queue,
            registry=svc.registry,
            rollouts=svc.rollouts,
            fleet=svc.fleet,
            store=svc.store,
            settings=self.settings,
            work_dir=work,
            exporter=exporter,
            finetuner=finetuner,
            stop=self.stop,
            tool_routes=lambda: [t.route for t in svc.tools.registry.all() if t.route],
            fleet_priors=lambda: hub_fleet_priors(svc.settings),
        )
        if triage_factory is None:
            from cloud.loop.triage import ModelTriage

            triage_factory = ModelTriage
        self._triage_factory = triage_factory
        self._triage: tuple[str, TriageFn] | None = None

    def triage(self) -> int:
        """Merge new sightings into the queue with the stable version's full-precision model."""
        queue = self.svc.loop.queue
        if queue.untriaged() == 0:
            return 0
        model = self.settings.loop_model
        ref = self.svc.registry.alias_target(model, "stable")
        if ref is None:
            log.warning("hard examples wait: %s has no stable version to judge them", model)
            return 0
        v = self.svc.registry.get_version(model, ref)
        digest = str(v.lineage.get("checkpoint_sha256") or "")
        if self._triage is None or self._triage[0] != digest:
            try:
                ckpt = self.pipeline.find_checkpoint(digest, v)
            except Exception as exc:
                log.warning("hard examples wait: %s", exc)
                return 0
            self._triage = (digest, self._triage_factory(ckpt))
        n = queue.triage(self._triage[1])
        if n:
            log.info("triaged %d hard examples", n)
        return n

    def maybe_queue_job(self) -> int | None:
        """The auto policy (``loop_auto_job_min_labelled``): queue a job for a dataset no job has
        tried, when nothing is queued or running and the last job was not cancelled."""
        need = self.settings.loop_auto_job_min_labelled
        if need <= 0:
            return None
        jobs, queue = self.svc.loop.jobs, self.svc.loop.queue
        recent = jobs.all(limit=20)
        if any(j.state in (JobState.QUEUED, JobState.RUNNING) for j in recent):
            return None
        if recent and recent[0].state is JobState.CANCELLED:
            return None
        pairs = queue.labelled()
        if len(pairs) < need:
            return None
        digest = hashlib.sha256(queue.dataset_body(pairs)).hexdigest()
        if any(j.dataset_sha256 == digest for j in recent):
            return None
        job, _ = jobs.create(
            self.settings.loop_model,
            actor="auto-policy",
            reason=f"{len(pairs)} labelled hard examples (loop_auto_job_min_labelled {need})",
        )
        return job.id

    def run_once(self) -> bool:
        """Triage, then run one job (taken over or claimed); returns whether a job ran."""
        try:
            self.triage()
        except Exception:
            log.exception("triage failed")
        try:
            self.maybe_queue_job()
        except Exception:
            log.exception("auto-queueing a job failed")
        jobs = self.svc.loop.jobs
        jid = jobs.take_over(self.id, self.settings.loop_job_stale_s) or jobs.claim(self.id)
        if jid is None:
            return False
        out = self.pipeline.run(jid)
        log.info("job %d: %s (%s)", jid, out.state.value, out.outcome.value if out.outcome else "-")
        return True

    def serve(self) -> None:
        log.info("loop worker %s started", self.id)
        while not self.stop.is_set():
            if not self.run_once():
                self.stop.wait(self.settings.loop_worker_poll_s)
        log.info("loop worker %s stopped", self.id)
