"""The queue and the job table without a model: sightings stored once, near-duplicates merged by
embedding, suggestions and the auto-approve policy, labels refused for routes nothing serves,
content-addressed datasets; jobs claimed by exactly one of many racing workers (threads and
processes), never two at once, racing requests queue one job, cancel, take-over of a silent
worker's job. Every test that touches the database runs on SQLite and PostgreSQL (``db_target``,
tests/cloud/conftest.py)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, insert

from cloud.api.container import CloudServices
from cloud.db.models import TrainingJob
from cloud.loop.jobs import JobCancelled, JobStore
from cloud.loop.queue import Triaged, suggest
from cloud.loop.settings import LoopSettings
from contracts.errors import BadRequest, Conflict
from contracts.loop import HardExampleStatus, JobOutcome, JobStage, JobState, SuggestionSource
from tests.cloud.conftest import DbTarget
from tests.cloud.controller.bundles import make_bundle
from tests.cloud.controller.conftest import make_settings
from tests.cloud.loop.claimer import claim_in_process
from tests.cloud.loop.conftest import records
from tests.support.wait import wait_for


def vec(*xs: float) -> np.ndarray:
    v = np.array([*xs, 0.0, 0.0, 0.0][:4], dtype=np.float32)
    return v / np.linalg.norm(v)


# texts -> (embedding, model route, confidence): "a*" texts are near-duplicates, "b" is far away
FAKE = {
    "count the pallets on dock 4": (vec(1, 0, 0), "calculator", 0.95),
    "count the pallets on dock four": (vec(1, 0.05, 0), "calculator", 0.9),
    "is it going to hail at the plant": (vec(0, 1, 0), "climate", 0.55),
}


def fake_triage(texts: list[str]) -> list[Triaged]:
    return [Triaged(*FAKE[t]) for t in texts]


@pytest.fixture
def svc(tmp_path: Path, db_target: DbTarget) -> Iterator[CloudServices]:
    s = CloudServices.build(make_settings(tmp_path, db_target.url), db_schema=db_target.schema)
    s.registry.register_dir(make_bundle(tmp_path / "b", version="1.0.0"), actor="t")
    s.registry.set_alias("tiny", "stable", "1.0.0", actor="t", reason="initial")
    yield s
    s.close()


def test_suggestion_rules() -> None:
    assert suggest("climate", 0.4, "climate") == ("climate", 0.5, SuggestionSource.AGREEMENT)
    assert suggest("climate", 0.85, "kg_query") == ("climate", 0.85, SuggestionSource.MODEL)
    assert suggest("climate", 0.6, "kg_query") == ("kg_query", 0.5, SuggestionSource.CLOUD_TOOL)
    assert suggest("climate", 0.6, None) == ("climate", 0.6, SuggestionSource.MODEL)
    assert suggest(None, None, None) == (None, None, SuggestionSource.NONE)


def test_ingest_triage_merge_and_counts(svc: CloudServices) -> None:
    q = svc.loop.queue
    texts = list(FAKE)
    assert q.ingest("n1", records(texts[:2], final_route="calculator", source="cloud_tool")) == 2
    assert q.ingest("n1", records(texts[:2])) == 0  # same ids: stored once
    assert q.ingest("n2", records(texts, node="n2", prefix="z")) == 3
    assert q.ingest("n3", [{"id": "empty", "text": "   "}, {"text": "no id"}]) == 0  # nothing usable
    assert q.untriaged() == 5
    assert q.triage(fake_triage) == 5 and q.untriaged() == 0
    listing = q.items()
    assert listing.total == 2 and listing.untriaged == 0
    pallets, hail = listing.items  # by count, descending
    assert pallets.count == 4 and pallets.nodes == {"n1": 2, "n2": 2}
    assert pallets.variants == ["count the pallets on dock four"]
    assert pallets.suggested_route == "calculator" and pallets.suggestion_source is SuggestionSource.AGREEMENT
    assert hail.count == 1 and hail.status is HardExampleStatus.NEW and hail.cloud_route is None


def test_labels_unknown_routes_and_datasets(svc: CloudServices) -> None:
    q = svc.loop.queue
    q.ingest("n1", records(list(FAKE)))
    q.triage(fake_triage)
    pallets, hail = q.items().items
    q.route_check = lambda r: svc.label_route_problem(r, "tiny")
    with pytest.raises(
        BadRequest, match=r"route 'shift_schedule' is unknown: not a route of tiny@1.0.0 .*no tool"
    ):
        q.label(hail.id, "shift_schedule", actor="admin:a")
    assert q.get(hail.id).status is HardExampleStatus.NEW  # nothing changed
    # a route a registered tool serves may be used before any model knows it
    tool = svc.tools.registry.all()[0]
    assert tool.route and q.label(hail.id, tool.route, actor="admin:a").label == tool.route
    q.reject(hail.id, actor="admin:a", reason="noise")
    with pytest.raises(Conflict, match="no labelled hard examples"):
        q.snapshot()
    approved = q.label(pallets.id, None, actor="admin:a")  # approve the suggestion
    assert approved.label == "calculator" and approved.reason == "approved suggestion"
    d1 = q.snapshot()
    assert d1.version == 1 and d1.size == 2 and d1.routes == {"calculator": 2}  # the text and its variant
    assert q.snapshot().sha256 == d1.sha256  # same content, same dataset
    q.label(pallets.id, "unit_convert", actor="admin:b", reason="relabel")
    d2 = q.snapshot()
    assert d2.version == 2 and d2.sha256 != d1.sha256
    assert q.dataset_pairs(d2.sha256) == [
        ("count the pallets on dock 4", "unit_convert"),
        ("count the pallets on dock four", "unit_convert"),
    ]


def test_auto_approve_policy(svc: CloudServices) -> None:
    q = svc.loop.queue
    q.settings = LoopSettings(loop_auto_approve=True, loop_auto_approve_min_confidence=0.9)
    q.route_check = lambda r: None
    q.ingest("n1", records(list(FAKE)[:1], final_route="calculator", source="cloud_tool"))
    q.ingest("n1", records(list(FAKE)[2:], prefix="h", final_route="climate", source="cloud_tool"))
    q.triage(fake_triage)
    by_text = {i.text: i for i in q.items().items}
    assert by_text["count the pallets on dock 4"].status is HardExampleStatus.LABELLED  # agree, p 0.95
    assert by_text["count the pallets on dock 4"].labelled_by == "auto-policy"
    assert by_text["is it going to hail at the plant"].status is HardExampleStatus.NEW  # agree, p 0.55 < 0.9


def test_concurrent_claims_run_each_job_once(svc: CloudServices) -> None:
    jobs = JobStore(svc.db)
    a, _ = jobs.create("tiny", actor="admin:a")
    winners: list[tuple[str, int | None]] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        winners.append((f"w{i}", jobs.claim(f"w{i}")))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [jid for _, jid in winners if jid is not None] == [a.id]
    b, created = jobs.create("tiny", actor="admin:b")  # a is running: a new one queues behind it
    assert created and b.state is JobState.QUEUED
    assert jobs.claim("w9") is None  # never two at once
    jobs.finish(a.id, JobState.SUCCEEDED, JobOutcome.PROMOTED)
    assert jobs.claim("w9") == b.id and jobs.get(b.id).attempts == 1


def test_racing_requests_queue_one_job(svc: CloudServices) -> None:
    """Eight requests for one model at once: one job is queued, every request gets that job."""
    jobs = JobStore(svc.db)
    barrier = threading.Barrier(8)
    got: list[tuple[int, bool]] = []

    def create(i: int) -> None:
        barrier.wait()
        job, created = jobs.create("tiny", actor=f"admin:{i}")
        got.append((job.id, created))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({jid for jid, _ in got}) == 1 and sorted(c for _, c in got) == [False] * 7 + [True]
    assert [j.id for j in jobs.all(state=JobState.QUEUED)] == [got[0][0]]


def test_racing_worker_processes_start_one_job(svc: CloudServices, db_target: DbTarget) -> None:
    """Four worker processes, each with its own engine, race for two queued jobs of two models:
    one job runs, the other stays queued."""
    jobs = JobStore(svc.db)
    a, _ = jobs.create("tiny", actor="admin:a")
    b, _ = jobs.create("other", actor="admin:a")
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=claim_in_process, args=(svc.db.url, db_target.schema, f"p{i}", barrier, out))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert [jid for _, jid in got if jid is not None] == [a.id]
    assert jobs.get(a.id).state is JobState.RUNNING and jobs.get(b.id).state is JobState.QUEUED
    assert jobs.get(a.id).worker in {name for name, _ in got}


@pytest.mark.postgres
@pytest.mark.parametrize("db_target", ["postgres"], indirect=True)
def test_claim_waits_for_a_claim_in_flight_on_postgres(svc: CloudServices, db_target: DbTarget) -> None:
    """PostgreSQL's snapshots: worker 1 has claimed job Y but not committed when a job X with a
    lower id (its insert was still open when worker 1 looked) becomes visible to worker 2. Without
    claims taking turns, worker 2 took X (it cannot see worker 1's running Y): two jobs at once.
    PostgreSQL only: SQLite serialises writers with its file lock, this interleaving cannot happen."""
    from cloud.db.engine import Database

    dbs = [Database(db_target.url, schema=db_target.schema) for _ in range(2)]
    w1, w2 = (JobStore(db) for db in dbs)
    updated, release = threading.Event(), threading.Event()

    opener = dbs[1].engine.connect()  # job X's insert, open while worker 1 looks for the oldest job
    tx = opener.begin()
    x_id = opener.execute(
        insert(TrainingJob)
        .values(model="x", state="queued", stage="waiting", metrics={}, logs=[])
        .returning(TrainingJob.id)
    ).scalar_one()
    y, _ = w1.create("y", actor="admin:a")

    @event.listens_for(dbs[0].engine, "after_cursor_execute")
    def _pause_after_update(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE TRAINING_JOBS"):
            updated.set()
            release.wait(timeout=60)  # worker 1 holds its claim uncommitted meanwhile

    results: dict[str, int | None] = {}
    t1 = threading.Thread(target=lambda: results.update(w1=w1.claim("w1")))
    t1.start()
    try:
        assert updated.wait(30), "worker 1 did not claim"
        tx.commit()  # X (the oldest job) is now visible
        opener.close()
        t2 = threading.Thread(target=lambda: results.update(w2=w2.claim("w2")))
        t2.start()

        def w2_done_or_waiting() -> bool:
            if not t2.is_alive():
                return True
            with svc.db.engine.connect() as c:  # a backend of this database waiting on a lock
                return bool(
                    c.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    ).scalar()
                )

        wait_for(w2_done_or_waiting, what="worker 2 claims or waits for worker 1")
    finally:
        release.set()
        t1.join(30)
    t2.join(30)
    assert results == {"w1": y.id, "w2": None}, results
    running = [j.id for j in w1.all(state=JobState.RUNNING)]
    assert running == [y.id] and w1.get(x_id).state is JobState.QUEUED
    for db in dbs:
        db.dispose()


def test_cancel_and_take_over(svc: CloudServices) -> None:
    jobs = JobStore(svc.db)
    a, _ = jobs.create("tiny", actor="admin:a")
    assert jobs.cancel(a.id, actor="admin:a").state is JobState.CANCELLED
    with pytest.raises(Conflict, match="already cancelled"):
        jobs.cancel(a.id, actor="admin:a")
    b, _ = jobs.create("tiny", actor="admin:a")
    assert jobs.claim("w1") == b.id
    jobs.cancel(b.id, actor="admin:c")
    with pytest.raises(JobCancelled):
        jobs.report(b.id, stage=JobStage.TRAINING, progress=0.5)
    assert jobs.take_over("w2", 3600) is None  # w1 reported just now
    assert jobs.take_over("w2", 0) == b.id
    got = jobs.get(b.id)
    assert got.worker == "w2" and got.attempts == 2 and any("taken over" in line for line in got.logs)


def test_auto_policy_queues_a_job_per_new_dataset(svc: CloudServices) -> None:
    from cloud.loop.worker import LoopWorker

    svc.loop.settings = LoopSettings(loop_auto_job_min_labelled=2, loop_model="tiny")
    w = LoopWorker(svc, lambda req: (req.out_dir, {}), triage_factory=lambda _p: fake_triage)
    q, jobs = svc.loop.queue, svc.loop.jobs
    q.route_check = lambda r: None
    q.ingest("n1", records(list(FAKE)))
    q.triage(fake_triage)
    pallets, hail = q.items().items
    q.label(hail.id, "climate", actor="admin:a")
    assert w.maybe_queue_job() is None  # one labelled example: below the threshold
    q.label(pallets.id, "calculator", actor="admin:a")  # + its variant: three
    jid = w.maybe_queue_job()
    assert jid is not None and jobs.get(jid).created_by == "auto-policy"
    assert w.maybe_queue_job() is None  # one is queued already
    assert jobs.claim("w") == jid
    ds = q.snapshot()
    jobs.report(jid, dataset_sha256=ds.sha256)
    jobs.finish(jid, JobState.FAILED, JobOutcome.REJECTED_BY_POLICY, error="no gain")
    assert w.maybe_queue_job() is None  # this dataset was tried
    q.label(hail.id, "kg_query", actor="admin:a")  # a new dataset
    again = w.maybe_queue_job()
    assert again is not None and again != jid
    jobs.cancel(again, actor="admin:a")
    assert w.maybe_queue_job() is None  # an operator's cancel pauses the auto policy


def test_two_workers_triaging_at_once_count_each_sighting_once(svc: CloudServices) -> None:
    from cloud.loop.queue import HardExampleQueue

    q1 = svc.loop.queue
    q2 = HardExampleQueue(svc.db, q1.settings, svc.settings.data_dir)  # a second worker process's queue
    q1.ingest("n1", records(list(FAKE)))
    barrier = threading.Barrier(2)
    merged: list[int] = []

    def slow_triage(texts: list[str]) -> list[Triaged]:
        barrier.wait()  # both have read the same pending sightings before either writes
        return fake_triage(texts)

    threads = [threading.Thread(target=lambda q=q: merged.append(q.triage(slow_triage))) for q in (q1, q2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(merged) == [0, 3]
    items = q1.items().items
    assert sum(i.count for i in items) == 3 and len(items) == 2
