"""Leader election through a lease row in the controller's database (SQLite and PostgreSQL).

Every controller replica serves the HTTP API; only the holder of the ``controller`` lease runs
the rollout loop, the fleet sweeps and the MQTT sync consumer. A replica takes or renews the
lease with one conditional ``UPDATE ... WHERE name = :n AND (holder = :me OR expires_at < :now)``
(atomic on both databases); when the row does not exist yet it ``INSERT``s it, and the primary
key settles the race between two replicas inserting at once (the loser sees ``IntegrityError``).

``expires_at`` is epoch seconds from the injected clock, so replicas' clocks must agree to well
within the TTL (NTP). A leader whose renewals fail stops acting at its own ``expires_at``, which
is before any other replica can take the lease.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from prometheus_client import Gauge
from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError

from cloud.db.engine import Database
from cloud.db.models import Lease
from contracts.logging import get_logger

log = get_logger("autoglm.cloud.leader")

LEADER = Gauge("autoglm_cloud_leader", "1 while this controller replica holds the leader lease, else 0")

CONTROLLER_LEASE = "controller"


def new_holder_id() -> str:
    """Unique per process: hostname (the pod name in Kubernetes), pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class LeaderLease:
    """Acquires and renews one named lease; ``is_leader`` is true only while it is held and unexpired."""

    def __init__(
        self,
        db: Database,
        *,
        ttl_s: float = 15.0,
        name: str = CONTROLLER_LEASE,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("the lease TTL must be positive")
        self.db = db
        self.ttl_s = ttl_s
        self.name = name
        self.holder = holder or new_holder_id()
        self.clock = clock
        self._expires_at = 0.0
        self._lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self.clock() < self._expires_at

    def _try(self, now: float) -> bool:
        expires = now + self.ttl_s
        with self.db.session() as s:
            res = s.execute(
                update(Lease)
                .where(Lease.name == self.name, (Lease.holder == self.holder) | (Lease.expires_at < now))
                .values(holder=self.holder, expires_at=expires)
                .execution_options(synchronize_session=False)
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                return True
            if s.get(Lease, self.name) is not None:
                return False  # held by another replica and not expired
        try:  # no row yet: the primary key lets exactly one inserter win
            with self.db.session() as s:
                s.execute(insert(Lease).values(name=self.name, holder=self.holder, expires_at=expires))
            return True
        except IntegrityError:
            return False

    def tick(self) -> bool:
        """Take or renew the lease; returns whether this replica is the leader afterwards."""
        with self._lock:
            was = self.is_leader
            now = self.clock()
            try:
                won = self._try(now)
            except Exception:  # the database is away: keep acting only until our lease runs out
                log.exception("lease renewal failed", extra={"lease": self.name})
                won = False
            if won:
                self._expires_at = now + self.ttl_s
            leader = self.is_leader
            if leader != was:
                log.info(
                    "leadership changed", extra={"lease": self.name, "holder": self.holder, "leader": leader}
                )
            LEADER.set(1 if leader else 0)
            return leader

    def release(self) -> None:
        """Give the lease up at once (clean shutdown), so another replica need not wait for the TTL."""
        with self._lock:
            was = self.is_leader
            self._expires_at = 0.0
            LEADER.set(0)
            if not was:
                return
            try:
                with self.db.session() as s:
                    s.execute(
                        update(Lease)
                        .where(Lease.name == self.name, Lease.holder == self.holder)
                        .values(expires_at=0.0)
                        .execution_options(synchronize_session=False)
                    )
            except Exception:
                log.exception("lease release failed", extra={"lease": self.name})

    def current_holder(self) -> str | None:
        """Who holds the lease now according to the database (None: nobody, or it expired)."""
        with self.db.session() as s:
            row = s.get(Lease, self.name)
            if row is None or row.expires_at <= self.clock():
                return None
            return row.holder
