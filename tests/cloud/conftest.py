"""Fixtures shared by the cloud tests: the database under test, SQLite and PostgreSQL (when
reachable; marker ``postgres``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_URL = os.environ.get("AUTOGLM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    try:
        import psycopg

        conninfo = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, connect_timeout=2):
            return None
    except Exception as exc:  # any failure means: skip with the reason
        return f"PostgreSQL at {PG_URL} not reachable ({type(exc).__name__}: {str(exc)[:120]})"


@dataclass
class DbTarget:
    url: str
    schema: str | None


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DbTarget]:
    """An empty database: a SQLite file, or a fresh schema on the PostgreSQL server (dropped after)."""
    if request.param == "sqlite":
        yield DbTarget(f"sqlite:///{tmp_path / 'registry.db'}", None)
        return
    reason = _pg_reachable()
    if reason:
        pytest.skip(reason)
    import psycopg

    schema = f"autoglm_test_{uuid.uuid4().hex[:12]}"
    conninfo = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield DbTarget(PG_URL, schema)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
