"""The loop end to end in-process on a really trained tiny model: hard examples -> labels -> job ->
fine-tune -> guarded export -> registered with lineage -> canary on an instant fleet -> promoted;
and the faults: guard failure, policy refusal, cancel, worker restart before and after
registration (nothing half-registered, no orphan rollout)."""

from __future__ import annotations

import pytest

from cloud.loop.worker import LoopWorker
from contracts.loop import HardExampleStatus, JobOutcome, JobStage, JobState
from tests.cloud.loop.conftest import MODEL, World, records

HARD = [
    "please tally the invoice rows for me",
    "what is the mood of the boiler today",
    "sum the shift hours of team blue",
    "how grumpy is compressor seven",
]


def label_all_wrong(w: World, worker: LoopWorker) -> dict[str, str]:
    """Ingest the hard texts (the first one from two nodes), triage, and label each with a route
    the production model does not give it (so the job has something to learn)."""
    q = w.svc.loop.queue
    assert q.ingest("n00", records(HARD)) == len(HARD)
    assert q.ingest("n00", records(HARD)) == 0  # a resend is stored once
    assert q.ingest("n01", records(HARD[:1], node="n01", prefix="y")) == 1
    assert worker.triage() == len(HARD) + 1
    items = q.items().items
    assert len(items) == len(HARD)
    first = next(i for i in items if i.text == HARD[0])
    assert first.count == 2 and first.nodes == {"n00": 1, "n01": 1} and first.edge_routes == {"chitchat": 2}
    labels = {}
    for it in items:
        assert it.model_route and it.suggestion_source.value in ("model", "agreement")
        target = "unit_convert" if it.model_route != "unit_convert" else "climate"
        out = q.label(it.id, target, actor="admin:alice")
        assert out.status is HardExampleStatus.LABELLED
        labels[it.text] = target
    return labels


def test_hard_examples_to_promoted_version(world: World) -> None:
    worker = world.worker()
    label_all_wrong(world, worker)
    job, created = world.svc.loop.jobs.create(MODEL, actor="admin:alice", reason="fix phrasings")
    assert created
    again, created2 = world.svc.loop.jobs.create(MODEL, actor="admin:bob")
    assert not created2 and again.id == job.id  # a queued job is reused, not doubled
    out = world.run_job(worker, job.id)
    assert out.state is JobState.SUCCEEDED, (out.error, out.logs)
    assert out.outcome is JobOutcome.PROMOTED and out.version == "1.1.0" and out.progress == 1.0
    m = out.metrics
    assert m["after"]["hard_accuracy"] > m["before"]["hard_accuracy"] and m["hard_gain_pt"] >= 5
    assert m["guard"]["passed"] is True
    v = world.svc.registry.get_version(MODEL, "1.1.0")
    assert v.kind == "adapter_update" and v.parent == f"{MODEL}@1.0.0"
    assert v.lineage["parent"] == f"{MODEL}@1.0.0" and v.lineage["dataset_sha256"] == out.dataset_sha256
    assert v.lineage["loop_job"] == job.id and v.tags["loop_job"] == str(job.id)
    ds = world.svc.loop.queue.datasets()
    assert [d.sha256 for d in ds] == [out.dataset_sha256] and ds[0].size == len(HARD)
    assert world.svc.registry.alias_target(MODEL, "stable") == "1.1.0"
    assert set(world.sim.versions.values()) == {"1.1.0"}
    r = world.svc.rollouts.get(out.rollout_id or 0)
    assert r.state == "succeeded" and r.version == "1.1.0"
    assert any("registered" in line for line in world.svc.loop.jobs.get(job.id).logs)


def test_guard_failure_stops_before_registration(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_EXPORT_GUARD_MIN_EVAL_SIZE", "1000000")  # no frozen set is that large
    worker = world.worker()
    label_all_wrong(world, worker)
    job, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    out = world.run_job(worker, job.id)
    assert out.state is JobState.FAILED and out.outcome is JobOutcome.GUARD_FAILED
    assert "export guard" in out.error and "at least 1000000" in out.error
    assert [v.version for v in world.svc.registry.list_versions(MODEL)] == ["1.0.0"]
    assert world.svc.rollouts.list_rollouts() == []


def test_policy_refuses_without_gain(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOGLM_CLOUD_LOOP_MIN_GAIN_PT", "101")  # no job can gain more than 100 points
    worker = world.worker()
    label_all_wrong(world, worker)
    job, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    out = world.run_job(worker, job.id)
    assert out.state is JobState.FAILED and out.outcome is JobOutcome.REJECTED_BY_POLICY
    assert "minimum 101.00 pt" in out.error and "nothing registered" in out.error
    assert [v.version for v in world.svc.registry.list_versions(MODEL)] == ["1.0.0"]


def test_restart_before_registration_fails_cleanly(world: World) -> None:
    worker = world.worker("dead")
    label_all_wrong(world, worker)
    job, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    jobs = world.svc.loop.jobs
    assert jobs.claim("dead") == job.id  # the worker claims it, starts training and dies
    jobs.report(job.id, stage=JobStage.TRAINING, progress=0.3, message="step 10/40")
    second = world.worker("w2")
    assert jobs.take_over("w2", 3600) is None  # the first worker is not silent long enough
    assert jobs.take_over("w2", 0.0) == job.id  # ... now it is (stale after 0 s)
    out = second.pipeline.run(job.id)
    assert out.state is JobState.FAILED and out.outcome is JobOutcome.ERROR
    assert "worker stopped during training" in out.error and "nothing was registered" in out.error
    assert [v.version for v in world.svc.registry.list_versions(MODEL)] == ["1.0.0"]
    assert world.svc.rollouts.list_rollouts() == []


def test_restart_after_registration_resumes_the_same_rollout(world: World) -> None:
    first = world.worker("first")
    label_all_wrong(world, first)
    job, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    first.stop.set()  # the worker is stopping: it leaves the job at its canary, still running
    out = world.run_job(first, job.id)
    assert out.state is JobState.RUNNING and out.stage is JobStage.CANARY and out.version == "1.1.0"
    rid = out.rollout_id
    assert rid is not None
    second = world.worker("second")
    assert world.svc.loop.jobs.take_over("second", 0.0) == job.id
    out = world.run_job(second, job.id)
    assert out.state is JobState.SUCCEEDED and out.outcome is JobOutcome.PROMOTED and out.rollout_id == rid
    assert [r.id for r in world.svc.rollouts.list_rollouts()] == [rid]  # adopted, not doubled
    assert [v.version for v in world.svc.registry.list_versions(MODEL)] == ["1.1.0", "1.0.0"]


def test_cancel_a_running_job_stops_it(world: World) -> None:
    worker = world.worker()
    label_all_wrong(world, worker)
    jobs = world.svc.loop.jobs
    job, _ = jobs.create(MODEL, actor="admin:alice")
    assert jobs.claim("w1") == job.id
    jobs.cancel(job.id, actor="admin:bob", reason="wrong labels")
    out = worker.pipeline.run(job.id)
    assert out.state is JobState.CANCELLED and out.outcome is JobOutcome.CANCELLED
    assert [v.version for v in world.svc.registry.list_versions(MODEL)] == ["1.0.0"]


def test_a_job_failing_during_its_canary_aborts_the_canary(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from export.pipeline import export_adapter_update

    jobs = world.svc.loop.jobs
    job, _ = jobs.create(MODEL, actor="admin:alice")
    # a version this job registered before its worker died (no fine-tune needed for this fault)
    update = export_adapter_update(
        world.model.checkpoint, world.tmp / "u", parent_bundle=world.model.bundle, version="1.1.0"
    )
    world.svc.registry.register_dir(update, actor="loop-job", tags={"loop_job": str(job.id)})
    assert jobs.claim("dead") == job.id
    worker = world.worker("w2")
    assert jobs.take_over("w2", 0.0) == job.id
    real_get, calls = worker.pipeline.rollouts.get, []

    def flaky_get(rid: int) -> object:
        calls.append(rid)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real_get(rid)

    monkeypatch.setattr(worker.pipeline.rollouts, "get", flaky_get)
    out = worker.pipeline.run(job.id)
    assert (
        out.state is JobState.FAILED and out.outcome is JobOutcome.ERROR and "database went away" in out.error
    )
    # the rollout was created, then the failure struck before the job recorded it: found by version
    assert out.version == "1.1.0" and out.rollout_id is None
    (r,) = world.svc.rollouts.list_rollouts()
    assert r.version == "1.1.0" and r.state == "aborted"
    assert f"job {job.id} failed" in world.svc.rollouts.get(r.id).events[-1].reason  # no orphan canary


SHIFT = [
    "when does the night shift start on line 2",
    "who is on the early shift tomorrow",
    "show me next week's shift roster",
    "am i working the weekend shift",
    "swap my friday shift with anna",
    "what are the shift hours for team blue",
]


@pytest.mark.parametrize("method", ["proto", "gate"])
def test_a_label_naming_a_tool_bound_new_route_grows_the_model(
    world: World, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    from cloud.model.checkpoint import load_checkpoint
    from cloud.tools.registry import Tool

    monkeypatch.setenv("AUTOGLM_CLOUD_LOOP_NEW_ROUTE_METHOD", method)

    def shift_tool() -> Tool:
        return Tool(
            "shift_schedule",
            "the plant's shift roster",
            {"type": "object"},
            lambda **_: {"roster": []},
            route="shift_schedule",
        )

    world.svc.tools.registry.register(shift_tool())  # the controller: labels may name it
    worker = world.worker()
    worker.svc.tools.registry.register(shift_tool())  # the worker: its route may be learnt
    q = world.svc.loop.queue
    q.ingest("n00", records(SHIFT))
    worker.triage()
    for item in q.items().items:
        q.label(item.id, "shift_schedule", actor="admin:alice")
    job, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    out = world.run_job(worker, job.id)
    assert out.state is JobState.SUCCEEDED and out.outcome is JobOutcome.PROMOTED, (out.error, out.logs)
    logs = world.svc.loop.jobs.get(job.id).logs
    how = "gate (lr on cat)" if method == "gate" else "head grown"
    assert any(f"new route 'shift_schedule': {how} from 6 examples" in line for line in logs), logs
    model, meta = load_checkpoint(worker.pipeline.work_dir / "checkpoints" / f"job-{job.id}")
    if method == "gate":  # grown as a gate, then fitted again on the job's fine-tuned adapters
        assert meta.training["new_route"]["refits"] == 1
        assert model.route_gates["default"].feature == "cat"
        assert sorted(meta.training["new_route"]["support_texts"]) == sorted(SHIFT)
    else:
        assert not model.route_gates
    v = world.svc.registry.get_version(MODEL, "1.1.0")
    assert v.kind == "full" and v.lineage["parent"] == f"{MODEL}@1.0.0"  # the head grew: a full bundle
    assert out.metrics["guard"]["full_export"] is True and "shift_schedule" in out.metrics["guard"]["routes"]
    # the production model has no such route: every example was wrong before the job
    assert out.metrics["before"]["hard_accuracy"] == 0.0
    # (a gate claims at most 0.2 % of the replay: on the tiny encoder that is few of its own examples)
    assert out.metrics["after"]["hard_accuracy"] >= (0.5 if method == "proto" else 0.15)
    assert world.svc.registry.alias_target(MODEL, "stable") == "1.1.0"


def test_the_next_job_warm_starts_from_the_loops_own_version(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = world.worker()
    label_all_wrong(world, worker)
    first, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    assert world.run_job(worker, first.id).version == "1.1.0"
    monkeypatch.setenv("AUTOGLM_CLOUD_LOOP_MIN_GAIN_PT", "-100")  # nothing left to gain on this set
    second_worker = world.worker("w2")
    second, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice", reason="again")
    out = world.run_job(second_worker, second.id)
    assert out.state is JobState.SUCCEEDED and out.version == "1.2.0", (out.error, out.logs)
    v = world.svc.registry.get_version(MODEL, "1.2.0")
    assert out.parent_version == "1.1.0" and v.lineage["parent"] == f"{MODEL}@1.1.0"
    assert v.parent == f"{MODEL}@1.0.0"  # the update binds into the full ancestor's graph
    logs = world.svc.loop.jobs.get(second.id).logs
    assert any("checkpoints/job-1" in line for line in logs)  # warm start from job 1's checkpoint


def test_a_gated_production_model_goes_through_a_job_with_its_gate_refitted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production routes shift_schedule with a gate (``autoglm add-route --method gate``): a job
    fine-tunes the adapters, fits the gate again on the new embedding (its stored examples + the
    route's labelled hard examples) and ships a full bundle (the gate is graph, not adapters)."""
    from cloud.model.checkpoint import load_checkpoint
    from cloud.training.new_route import NewRouteConfig, train_new_route
    from cloud.training.route_gate import GateConfig
    from contracts.bundle import open_bundle
    from export.pipeline import export_checkpoint

    gated = world.tmp / "gated"
    cfg = NewRouteConfig(method="gate", gate=GateConfig(kind="lr", claim_rate=0.01), threads=1)
    train_new_route(world.model.checkpoint, "shift_schedule", SHIFT[:4], gated, config=cfg)
    bundle = export_checkpoint(gated, world.tmp / "v11", name=MODEL, version="1.1.0", precision="fp32")
    world.svc.registry.register_dir(bundle, actor="t")
    world.svc.registry.set_alias(MODEL, "stable", "1.1.0", actor="t", reason="operator added a route")
    monkeypatch.setenv("AUTOGLM_CLOUD_LOOP_CHECKPOINT_DIRS", f'["{world.model.checkpoint}", "{gated}"]')
    worker = world.worker()
    labels = label_all_wrong(world, worker)
    q = world.svc.loop.queue
    q.ingest("n00", records(SHIFT[4:], prefix="s"))
    worker.triage()
    shift_labelled = []
    for item in q.items(status=HardExampleStatus.NEW).items:  # (one may merge into an earlier item)
        q.label(item.id, "shift_schedule", actor="admin:alice")
        shift_labelled.append(item.text)
    assert shift_labelled
    job, _ = world.svc.loop.jobs.create(MODEL, actor="admin:alice")
    out = world.run_job(worker, job.id)
    assert out.state is JobState.SUCCEEDED and out.outcome is JobOutcome.PROMOTED, (out.error, out.logs)
    assert out.parent_version == "1.1.0" and out.version == "1.2.0"
    v = world.svc.registry.get_version(MODEL, "1.2.0")
    assert v.kind == "full" and out.metrics["guard"]["full_export"] is True
    assert any("refitting the gate of route 'shift_schedule'" in line for line in out.logs)
    model, meta = load_checkpoint(worker.pipeline.work_dir / "checkpoints" / f"job-{job.id}")
    info = meta.training["new_route"]
    assert info["refits"] == 1 and info["support_texts"][:4] == SHIFT[:4]
    assert sorted(info["support_texts"][4:]) == sorted(shift_labelled)
    assert model.route_gates["default"].to_dict() == info["gate"]
    assert len(labels) == 4
    shipped = world.tmp / "shipped"
    dest = worker.pipeline._materialise(v, shipped)
    assert open_bundle(dest).manifest.metrics.export["route_gate"]["default"]["route"] == "shift_schedule"
