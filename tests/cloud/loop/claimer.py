"""A worker process that claims one job: the target of the racing-process test, in a module of its
own so that a spawned process imports only the job table (not the test module's services)."""

from __future__ import annotations

from typing import Any

from cloud.db.engine import Database
from cloud.loop.jobs import JobStore


def claim_in_process(url: str, schema: str | None, name: str, barrier: Any, out: Any) -> None:
    db = Database(url, schema=schema)
    try:
        jobs = JobStore(db)
        barrier.wait(timeout=60)
        out.put((name, jobs.claim(name)))
    finally:
        db.dispose()
