"""One transaction helper for the ``sqlite3`` connections opened in autocommit mode
(``isolation_level=None``) by the edge outbox, the edge memory store and the cloud sync hub."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def transaction(db: sqlite3.Connection, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
    """``BEGIN`` (``BEGIN IMMEDIATE`` takes the write lock at once), then ``COMMIT``, or
    ``ROLLBACK`` when the block raises (anything, including KeyboardInterrupt)."""
    db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
