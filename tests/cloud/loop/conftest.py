"""Fixtures of the learning-loop tests: a really trained tiny checkpoint and its exported fp32
bundle 1.0.0 (session), a controller world (SQLite, instant fleet, fake clock) whose stable
version is that bundle, and a worker over the same database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoglm.loop_export import guarded_update
from cloud.api.container import CloudServices
from cloud.loop.worker import LoopWorker, worker_services
from cloud.training.config import TrainConfig
from cloud.training.trainer import train
from contracts.loop import JOB_TERMINAL, JobOut
from export.pipeline import export_checkpoint
from tests.cloud.controller.conftest import make_settings
from tests.cloud.controller.fleetsim import FakeClock, InstantFleet

MODEL = "autoglm-router"
NODES = 8


@dataclass(frozen=True)
class TinyModel:
    checkpoint: Path
    bundle: Path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    root = tmp_path_factory.mktemp("loop-model")
    cfg = TrainConfig(tiny=True, epochs=2, out_dir=root / "ckpt", num_threads=1, lr=5e-3, max_length=32)
    train(cfg, progress=False)
    bundle = export_checkpoint(root / "ckpt", root / "v1", name=MODEL, version="1.0.0", precision="fp32")
    return TinyModel(root / "ckpt", bundle)


LOOP_ENV = {
    "AUTOGLM_CLOUD_LOOP_TRAIN_STEPS": "40",
    "AUTOGLM_CLOUD_LOOP_TRAIN_LR": "0.005",
    "AUTOGLM_CLOUD_LOOP_BASE_SAMPLES": "300",
    "AUTOGLM_CLOUD_LOOP_MIN_GAIN_PT": "5",
    "AUTOGLM_CLOUD_LOOP_MAX_REGRESSION_PT": "100",
    "AUTOGLM_CLOUD_LOOP_CANARY_STEPS": "[50, 100]",
    "AUTOGLM_CLOUD_LOOP_CANARY_PAUSE_S": "0",
    "AUTOGLM_CLOUD_LOOP_CANARY_ANALYSIS": "false",
    "AUTOGLM_CLOUD_LOOP_WORKER_POLL_S": "0.05",
    "AUTOGLM_CLOUD_LOOP_JOB_STALE_S": "5",
}


@dataclass
class World:
    svc: CloudServices
    sim: InstantFleet
    clock: FakeClock
    tmp: Path
    model: TinyModel
    workers: list[LoopWorker]

    def worker(self, worker_id: str = "w1") -> LoopWorker:
        svc = worker_services(make_settings(self.tmp))
        w = LoopWorker(svc, guarded_update, worker_id=worker_id)
        self.workers.append(w)
        return w

    def tick(self) -> None:
        """The leader's duties once, and the nodes' reactions."""
        self.svc.fleet.refresh()
        self.svc.fleet.send_queued()
        self.svc.rollouts.tick()
        self.sim.deliver()
        self.clock.advance(1.0)
        self.sim.heartbeats(sorted(self.sim.versions))

    def run_job(self, worker: LoopWorker, job_id: int, timeout: float = 240.0) -> JobOut:
        """Run the worker in a thread while this thread plays the leader; returns the finished job."""
        done = threading.Event()
        t = threading.Thread(target=lambda: (worker.run_once(), done.set()), daemon=True)
        t.start()
        deadline = time.monotonic() + timeout
        while not done.wait(0.1):
            self.tick()
            assert time.monotonic() < deadline, "job did not finish"
        t.join()
        job = self.svc.loop.jobs.get(job_id)
        assert job.state in JOB_TERMINAL or job.state.value == "running"
        return job


@pytest.fixture
def world(tmp_path: Path, tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for k, v in LOOP_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AUTOGLM_CLOUD_LOOP_CHECKPOINT_DIRS", f'["{tiny_model.checkpoint}"]')
    monkeypatch.setenv("AUTOGLM_EXPORT_GUARD_MIN_EVAL_SIZE", "50")
    clock = FakeClock()
    sim = InstantFleet()
    svc = CloudServices.build(make_settings(tmp_path), channel=sim, clock=clock)
    sim.fleet = svc.fleet
    svc.registry.register_dir(tiny_model.bundle, actor="t")
    svc.registry.set_alias(MODEL, "stable", "1.0.0", actor="t", reason="initial")
    for i in range(NODES):
        nid = f"n{i:02d}"
        svc.fleet.register(nid, {"site": "a"})
        sim.versions[nid] = "1.0.0"
    sim.heartbeats(sorted(sim.versions))
    w = World(svc, sim, clock, tmp_path, tiny_model, [])
    yield w
    for wk in w.workers:
        wk.stop.set()
        wk.svc.close()
    svc.close()


def records(
    texts: list[str],
    *,
    node: str = "n00",
    prefix: str = "x",
    final_route: str = "",
    source: str = "cloud_fallback",
) -> list[dict[str, object]]:
    return [
        {
            "id": f"{prefix}{i}",
            "node_id": node,
            "text": t,
            "edge_route": "chitchat",
            "edge_confidence": 0.3,
            "final_route": final_route,
            "answer_source": source,
            "model_version": "1.0.0",
        }
        for i, t in enumerate(texts)
    ]
