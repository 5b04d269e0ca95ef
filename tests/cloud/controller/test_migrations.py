"""Alembic migrations apply on an empty database and produce exactly the ORM schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from cloud.db.engine import Database
from cloud.db.migrate import alembic_config
from cloud.db.models import Base
from tests.cloud.conftest import DbTarget


def test_migrations_apply_on_empty_database(db_target: DbTarget) -> None:
    db = Database(db_target.url, schema=db_target.schema)
    try:
        assert not [t for t in inspect(db.engine).get_table_names() if t in Base.metadata.tables]
        db.migrate()
        db.migrate()  # idempotent: a second start does nothing
        tables = set(inspect(db.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn)
            head = ScriptDirectory.from_config(alembic_config(db.engine)).get_current_head()
            assert ctx.get_current_revision() == head
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == [], f"migrations and ORM models disagree: {diff}"
    finally:
        db.dispose()
