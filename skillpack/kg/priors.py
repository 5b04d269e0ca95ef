"""Feedback priors of reasoning paths, keyed by (start entity type, relation sequence).

An answer the user confirmed (``POST /v1/feedback``) or said was wrong counts for the path that
produced it. Three sets of counts per path:

- this node's own (all feedback it got);
- the part of them it shares with the fleet (feedback given with the edge admin token; anonymous
  feedback stays on the node, like anonymous knowledge — docs/SECURITY.md);
- the fleet's sums (from the cloud, over every node's shared counts — this node's included once
  the cloud has them).

The counts a path is judged by are ``max(fleet, own shared) + own unshared``: the node's shared
part is counted once whether or not the fleet sum already holds it, so nothing is counted twice.

**Bounded influence.** A finished path's prior is
``weight · (log(1 + confirmed) − log(1 + rejected))`` clipped to ``[−max_abs, +max_abs]`` (log-space,
added to the scorer's log-probability of the path): two paths' priors differ by at most
``2 · max_abs``, so feedback reorders only paths the scorer ranks within a factor
``exp(2 · max_abs)`` of each other and never overrides a clear scorer decision. While the search
grows a path, the partial path is guided by the confirmations of every path it begins
(:meth:`PathPriors.guide`, same bounds) and by the rejections of exactly itself.

Storage is pluggable: ``persist`` (the edge's memory store) applies an update and returns the
stored counts; without it the counts live in this object only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from contracts.memory import MAX_FLEET_PRIOR_COUNT, MAX_NODE_PRIOR_COUNT, MAX_PATH_HOPS
from skillpack.errors import BadRequest
from skillpack.kg.schema import path_refusal

Path = tuple[str, ...]


@dataclass(frozen=True)
class PriorCounts:
    confirmed: int = 0  # this node, all feedback
    rejected: int = 0
    shared_confirmed: int = 0  # the part this node shares with the fleet
    shared_rejected: int = 0
    fleet_confirmed: int = 0  # sums over the fleet's nodes (from the cloud)
    fleet_rejected: int = 0

    def effective(self) -> tuple[int, int]:
        """(confirmed, rejected) a path is judged by: fleet sums + this node's unshared feedback."""
        c = max(self.fleet_confirmed, self.shared_confirmed) + max(0, self.confirmed - self.shared_confirmed)
        r = max(self.fleet_rejected, self.shared_rejected) + max(0, self.rejected - self.shared_rejected)
        return c, r

    def add(self, confirmed: int, rejected: int, shared: bool) -> PriorCounts:
        """Local feedback added (saturating at ``MAX_NODE_PRIOR_COUNT``)."""
        cap = MAX_NODE_PRIOR_COUNT
        return replace(
            self,
            confirmed=min(cap, self.confirmed + confirmed),
            rejected=min(cap, self.rejected + rejected),
            shared_confirmed=min(cap, self.shared_confirmed + confirmed) if shared else self.shared_confirmed,
            shared_rejected=min(cap, self.shared_rejected + rejected) if shared else self.shared_rejected,
        )


# (start type, path, + confirmed, + rejected, shared) -> the stored counts after the update
Persist = Callable[[str, Path, int, int, bool], PriorCounts]


class PathPriors:
    def __init__(self, weight: float = 0.3, max_abs: float = 1.0, persist: Persist | None = None) -> None:
        if weight < 0 or max_abs < 0:
            raise ValueError("prior weight and bound must be >= 0")
        self.weight = weight
        self.max_abs = max_abs
        self.persist = persist
        self._by_type: dict[str, dict[Path, PriorCounts]] = {}
        self._lock = threading.Lock()
        self.updates = 0  # local feedback recorded + fleet sums that changed a count

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_type.values())

    def load(self, entries: Iterable[tuple[str, Path, PriorCounts]]) -> None:
        """Counts read back from storage (an agent restart)."""
        with self._lock:
            for start_type, path, counts in entries:
                self._by_type.setdefault(start_type, {})[tuple(path)] = counts

    # ---------------------------------------------------------------- updates
    def record(
        self,
        start_type: str,
        path: Path | list[str],
        *,
        confirmed: int = 0,
        rejected: int = 0,
        shared: bool = False,
    ) -> PriorCounts:
        """Feedback on this node: ``confirmed`` / ``rejected`` answers on ``path``. Raises
        :class:`BadRequest` for a path the schema does not have (or a negative count)."""
        path = tuple(path)
        refusal = path_refusal(start_type, path, MAX_PATH_HOPS)
        if refusal is not None:
            raise BadRequest(f"no such graph path: {refusal}")
        if confirmed < 0 or rejected < 0:
            raise BadRequest("feedback counts must be >= 0")
        if self.persist is not None:
            counts = self.persist(start_type, path, confirmed, rejected, shared)
            with self._lock:
                self._by_type.setdefault(start_type, {})[path] = counts
                self.updates += 1
            return counts
        with self._lock:
            table = self._by_type.setdefault(start_type, {})
            counts = table[path] = table.get(path, PriorCounts()).add(confirmed, rejected, shared)
            self.updates += 1
            return counts

    def set_fleet(self, start_type: str, path: Path, confirmed: int, rejected: int) -> bool:
        """The fleet's sums for a path (already validated and stored by the receiver); True when
        they changed anything."""
        path = tuple(path)
        confirmed = min(max(confirmed, 0), MAX_FLEET_PRIOR_COUNT)
        rejected = min(max(rejected, 0), MAX_FLEET_PRIOR_COUNT)
        with self._lock:
            table = self._by_type.setdefault(start_type, {})
            old = table.get(path, PriorCounts())
            if (old.fleet_confirmed, old.fleet_rejected) == (confirmed, rejected):
                return False
            table[path] = replace(old, fleet_confirmed=confirmed, fleet_rejected=rejected)
            self.updates += 1
            return True

    # ---------------------------------------------------------------- reads
    def counts(self, start_type: str, path: Path) -> PriorCounts:
        with self._lock:
            return self._by_type.get(start_type, {}).get(tuple(path), PriorCounts())

    def _bounded(self, confirmed: int, rejected: int) -> float:
        raw = self.weight * (math.log1p(confirmed) - math.log1p(rejected))
        return max(-self.max_abs, min(self.max_abs, raw))

    def score(self, start_type: str, path: Path) -> float:
        """Log-space prior of a finished path (bounded, see the module text); 0 without feedback."""
        if not path:
            return 0.0
        counts = self.counts(start_type, path)
        return self._bounded(*counts.effective())

    def guide(self, start_type: str, prefix: Path) -> float:
        """Prior of a partial path while the search grows it: confirmations of every path it begins,
        rejections of exactly itself (bounded like :meth:`score`)."""
        with self._lock:
            table = self._by_type.get(start_type)
            if not table:
                return 0.0
            n = len(prefix)
            confirmed = rejected = 0
            for path, counts in table.items():
                if path[:n] == prefix:
                    c, r = counts.effective()
                    confirmed += c
                    if path == prefix:
                        rejected = r
        return self._bounded(confirmed, rejected)
