"""The training-job table (``training_jobs``): the one writer of job state.

A job is created ``queued``; a worker *claims* it with one conditional UPDATE (``state = 'queued'``
and no other job running), so two workers, or two requests, never run one job twice nor two jobs
at once. On PostgreSQL claims (and creates) also take turns on a transaction advisory lock: there
each statement reads a snapshot, and a claim in flight (updated, not committed) is invisible to
another worker's "no other job running" test (tests/cloud/loop/test_queue_jobs.py shows the
interleaving). Racing requests for one model queue one job (:meth:`JobStore.create`).

The worker reports stage, progress and log lines (each report is its heartbeat) and checks
``cancel_requested`` between steps. A job whose worker went silent for ``loop_job_stale_s`` is
taken over by the next worker (:meth:`JobStore.take_over`); the pipeline then resumes it from
``registered`` on, or fails it cleanly (docs/arch/loop.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from cloud.db.engine import Database
from cloud.db.models import TrainingJob
from contracts.errors import Conflict, NotFound
from contracts.logging import get_logger
from contracts.loop import JOB_TERMINAL, JobOut, JobOutcome, JobStage, JobState

log = get_logger("autoglm.cloud.loop.jobs")


class JobCancelled(Exception):
    """Raised inside the pipeline when an operator cancelled the job."""


class JobStore:
    def __init__(
        self, db: Database, *, max_log_lines: int = 400, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.max_log_lines = max_log_lines
        self.clock = clock

    # -- requests ---------------------------------------------------------------------------------

    def create(self, model: str, *, actor: str, reason: str = "") -> tuple[JobOut, bool]:
        """Queue a job for ``model``; a job of that model still queued is returned instead (it will
        train on every label present when it starts). Returns (job, created).

        Racing requests queue one job: the new row is written *before* looking for a queued one, so
        on SQLite this transaction holds the write lock while it looks; on PostgreSQL creates and
        claims take turns. A request that finds another queued job drops its own row."""
        with self.db.session() as s:
            _take_turns(s)
            job = TrainingJob(
                model=model,
                state=JobState.QUEUED.value,
                stage=JobStage.WAITING.value,
                created_by=actor,
                reason=reason,
                metrics={},
                logs=[],
            )
            s.add(job)
            s.flush()
            waiting = s.scalar(
                select(TrainingJob)
                .where(
                    TrainingJob.model == model,
                    TrainingJob.state == JobState.QUEUED.value,
                    TrainingJob.id != job.id,
                )
                .order_by(TrainingJob.id)
                .limit(1)
            )
            if waiting is not None:
                s.delete(job)
                return self._out(waiting), False
            job.logs = [self._line(f"queued by {actor}" + (f": {reason}" if reason else ""))]
            return self._out(job), True

    def cancel(self, job_id: int, *, actor: str, reason: str = "") -> JobOut:
        with self.db.session() as s:
            job = self._row(s, job_id)
            if JobState(job.state) in JOB_TERMINAL:
                raise Conflict(f"job {job_id} is already {job.state}")
            msg = f"cancel requested by {actor}" + (f": {reason}" if reason else "")
            if job.state == JobState.QUEUED.value:
                job.state, job.outcome, job.finished_at = (
                    JobState.CANCELLED.value,
                    JobOutcome.CANCELLED.value,
                    _now(),
                )
                job.error = msg
            else:
                job.cancel_requested = True
            job.logs = self._append(job.logs, msg)
            return self._out(job)

    def get(self, job_id: int) -> JobOut:
        with self.db.session() as s:
            return self._out(self._row(s, job_id), with_logs=True)

    def all(self, *, state: JobState | None = None, limit: int = 50) -> list[JobOut]:
        with self.db.session() as s:
            q = select(TrainingJob).order_by(TrainingJob.id.desc()).limit(limit)
            if state is not None:
                q = q.where(TrainingJob.state == state.value)
            return [self._out(j) for j in s.scalars(q)]

    # -- the worker ------------------------------------------------------------------------------

    def claim(self, worker: str) -> int | None:
        """Take the oldest queued job when no job is running; None when there is nothing to take.

        One conditional UPDATE: of two workers racing for a job, exactly one sees a row changed."""
        with self.db.session() as s:
            _take_turns(s)
            job_id = s.scalar(
                select(TrainingJob.id)
                .where(TrainingJob.state == JobState.QUEUED.value)
                .order_by(TrainingJob.id)
                .limit(1)
            )
            if job_id is None:
                return None
            other = aliased(TrainingJob)
            res = s.execute(
                update(TrainingJob)
                .where(
                    and_(
                        TrainingJob.id == job_id,
                        TrainingJob.state == JobState.QUEUED.value,
                        ~exists(select(other.id).where(other.state == JobState.RUNNING.value)),
                    )
                )
                .values(
                    state=JobState.RUNNING.value,
                    worker=worker,
                    heartbeat_at=self.clock(),
                    started_at=_now(),
                    attempts=TrainingJob.attempts + 1,
                    stage=JobStage.PREPARING.value,
                )
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                return None
        self.log(job_id, f"claimed by worker {worker}")
        return int(job_id)

    def take_over(self, worker: str, stale_s: float) -> int | None:
        """A running job whose worker stopped reporting (crashed, restarted): claim it for ``worker``."""
        cutoff = self.clock() - stale_s
        with self.db.session() as s:
            job = s.scalar(select(TrainingJob).where(TrainingJob.state == JobState.RUNNING.value))
            if job is None or (job.heartbeat_at > cutoff and job.worker != worker):
                return None
            res = s.execute(
                update(TrainingJob)
                .where(
                    TrainingJob.id == job.id,
                    TrainingJob.state == JobState.RUNNING.value,
                    TrainingJob.heartbeat_at == job.heartbeat_at,
                )
                .values(worker=worker, heartbeat_at=self.clock(), attempts=TrainingJob.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                return None
            job_id, old = int(job.id), job.worker
        self.log(job_id, f"taken over by worker {worker} (worker {old} stopped reporting)")
        return job_id

    def report(
        self,
        job_id: int,
        *,
        stage: JobStage | None = None,
        progress: float | None = None,
        message: str | None = None,
        **fields: Any,
    ) -> None:
        """Stage / progress / a log line / other columns; refreshes the heartbeat. Raises
        :class:`JobCancelled` when the job was cancelled meanwhile."""
        with self.db.session() as s:
            job = self._row(s, job_id)
            job.heartbeat_at = self.clock()
            if stage is not None:
                job.stage = stage.value
            if progress is not None:
                job.progress = max(0.0, min(1.0, float(progress)))
            if message:
                job.logs = self._append(job.logs, message)
            for k, v in fields.items():
                setattr(job, k, v)
            cancelled = job.cancel_requested
        if cancelled:
            raise JobCancelled(f"job {job_id} cancelled")

    def log(self, job_id: int, message: str) -> None:
        with self.db.session() as s:
            job = self._row(s, job_id)
            job.logs = self._append(job.logs, message)
            job.heartbeat_at = self.clock()

    def finish(
        self, job_id: int, state: JobState, outcome: JobOutcome, *, error: str = "", message: str = ""
    ) -> JobOut:
        with self.db.session() as s:
            job = self._row(s, job_id)
            job.state, job.outcome, job.finished_at = state.value, outcome.value, _now()
            job.stage = JobStage.DONE.value
            if state is JobState.SUCCEEDED:
                job.progress = 1.0
            job.error = error[:4000]
            job.logs = self._append(
                job.logs, message or f"{state.value}: {outcome.value}" + (f": {error}" if error else "")
            )
            return self._out(job, with_logs=True)

    # -- helpers ---------------------------------------------------------------------------------

    def _line(self, message: str) -> str:
        return f"{datetime.fromtimestamp(self.clock(), UTC).strftime('%H:%M:%S')} {message}"[:1000]

    def _append(self, logs: list[Any] | None, message: str) -> list[Any]:
        return [*(logs or []), self._line(message)][-self.max_log_lines :]

    @staticmethod
    def _row(s: Any, job_id: int) -> TrainingJob:
        job = s.get(TrainingJob, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job  # type: ignore[no-any-return]

    @staticmethod
    def _out(j: TrainingJob, *, with_logs: bool = False) -> JobOut:
        return JobOut(
            id=j.id,
            model=j.model,
            state=JobState(j.state),
            stage=JobStage(j.stage),
            outcome=JobOutcome(j.outcome) if j.outcome else None,
            progress=j.progress or 0.0,
            parent_version=j.parent_version,
            version=j.version,
            rollout_id=j.rollout_id,
            dataset_sha256=j.dataset_sha256,
            error=j.error or "",
            metrics=dict(j.metrics or {}),
            created_by=j.created_by or "",
            reason=j.reason or "",
            cancel_requested=bool(j.cancel_requested),
            attempts=j.attempts or 0,
            worker=j.worker or "",
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
            logs=list(j.logs or []) if with_logs else [],
        )


# the key of the job table's PostgreSQL advisory lock (a constant no other lock of this database uses)
JOBS_LOCK_KEY = 0x4A4F4253  # "JOBS"


def _take_turns(s: Session) -> None:
    """PostgreSQL: wait for any other claim or create to commit (the lock is released with the
    transaction), so this one's reads see it. SQLite needs nothing: a claim's UPDATE, and a create's
    INSERT, run under the file's write lock and see every committed change."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(select(func.pg_advisory_xact_lock(JOBS_LOCK_KEY)))


def _now() -> datetime:
    return datetime.now(UTC)
