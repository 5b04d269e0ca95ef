"""Hybrid logical clock (Kulkarni et al., 2014): wall-clock milliseconds + a logical counter.

A timestamp is ``(wall_ms, counter, node_id)``. It never goes backwards on one node, it moves
past every timestamp the node has seen (``observe``), and ties between nodes break on the node
id, so any two timestamps are totally ordered the same way everywhere. That total order is what
last-writer-wins memory merge uses.

On the wire and in SQLite a timestamp is a fixed-width string ``WWWWWWWWWWWWW-CCCCCC-node``
whose plain string order equals the timestamp order, so ``WHERE updated > ?`` works on text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

WALL_DIGITS = 13  # milliseconds since the epoch fit 13 digits until the year 2286
COUNTER_DIGITS = 6
MAX_COUNTER = 10**COUNTER_DIGITS - 1
# A remote timestamp further ahead of our wall clock than this is refused (a broken clock
# would otherwise drag every node's clock into the future).
DEFAULT_MAX_DRIFT_MS = 60_000
# A packed timestamp (for validating wire fields without parsing them).
HLC_PATTERN = rf"^[0-9]{{{WALL_DIGITS}}}-[0-9]{{{COUNTER_DIGITS}}}-.+$"


class ClockDriftError(ValueError):
    """A remote timestamp is too far ahead of the local wall clock."""


@dataclass(frozen=True, order=True, slots=True)
class HLC:
    wall_ms: int
    counter: int
    node_id: str

    def __post_init__(self) -> None:
        if not 0 <= self.wall_ms < 10**WALL_DIGITS:
            raise ValueError(f"HLC wall_ms out of range: {self.wall_ms}")
        if not 0 <= self.counter <= MAX_COUNTER:
            raise ValueError(f"HLC counter out of range: {self.counter}")
        if not self.node_id:
            raise ValueError("HLC node_id must be non-empty")

    def pack(self) -> str:
        return f"{self.wall_ms:0{WALL_DIGITS}d}-{self.counter:0{COUNTER_DIGITS}d}-{self.node_id}"

    def __str__(self) -> str:
        return self.pack()

    @classmethod
    def parse(cls, text: str) -> HLC:
        """Inverse of :meth:`pack`; raises ``ValueError`` on anything else."""
        if not isinstance(text, str):
            raise ValueError(f"HLC must be a string, got {type(text).__name__}")
        parts = text.split("-", 2)
        if (
            len(parts) != 3
            or len(parts[0]) != WALL_DIGITS
            or len(parts[1]) != COUNTER_DIGITS
            or not parts[0].isdigit()
            or not parts[1].isdigit()
            or not parts[2]
        ):
            raise ValueError(f"not an HLC timestamp: {text!r}")
        return cls(int(parts[0]), int(parts[1]), parts[2])

    @classmethod
    def zero(cls) -> HLC:
        return cls(0, 0, "0")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridClock:
    """Thread-safe HLC for one node. ``now()`` for local events, ``observe()`` on receipt."""

    def __init__(
        self,
        node_id: str,
        *,
        wall: Callable[[], int] = wall_clock_ms,
        max_drift_ms: int = DEFAULT_MAX_DRIFT_MS,
        last: HLC | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("node_id must be non-empty")
        self.node_id = node_id
        self._wall = wall
        self._max_drift_ms = max_drift_ms
        self._lock = threading.Lock()
        self._wall_ms = last.wall_ms if last else 0
        self._counter = last.counter if last else 0

    def now(self) -> HLC:
        with self._lock:
            physical = self._wall()
            if physical > self._wall_ms:
                self._wall_ms, self._counter = physical, 0
            else:
                self._bump()
            return HLC(self._wall_ms, self._counter, self.node_id)

    def now_many(self, n: int) -> list[str]:
        """``n`` consecutive packed timestamps (one lock round trip; for batch merges)."""
        with self._lock:
            physical = self._wall()
            if physical > self._wall_ms:
                self._wall_ms, self._counter = physical, 0
            else:
                self._bump()
            if self._counter + n - 1 > MAX_COUNTER:  # rare: fall back to one at a time
                out = [f"{self._wall_ms:0{WALL_DIGITS}d}-{self._counter:0{COUNTER_DIGITS}d}-{self.node_id}"]
                for _ in range(n - 1):
                    self._bump()
                    out.append(
                        f"{self._wall_ms:0{WALL_DIGITS}d}-{self._counter:0{COUNTER_DIGITS}d}-{self.node_id}"
                    )
                return out
            head, tail, first = f"{self._wall_ms:0{WALL_DIGITS}d}-", f"-{self.node_id}", self._counter
            self._counter += n - 1
            return [f"{head}{c:0{COUNTER_DIGITS}d}{tail}" for c in range(first, first + n)]

    def observe(self, remote: HLC) -> HLC:
        """Merge a received timestamp; the returned (local) timestamp is after both."""
        with self._lock:
            physical = self._wall()
            if remote.wall_ms - physical > self._max_drift_ms:
                raise ClockDriftError(
                    f"remote HLC {remote.pack()} is {remote.wall_ms - physical} ms ahead of the local clock"
                )
            top = max(physical, self._wall_ms, remote.wall_ms)
            if top == self._wall_ms and top == remote.wall_ms:
                self._counter = max(self._counter, remote.counter)
                self._bump()
            elif top == self._wall_ms:
                self._bump()
            elif top == remote.wall_ms:
                self._wall_ms, self._counter = top, remote.counter
                self._bump()
            else:
                self._wall_ms, self._counter = top, 0
            return HLC(self._wall_ms, self._counter, self.node_id)

    def _bump(self) -> None:
        if self._counter >= MAX_COUNTER:
            # Counter exhausted within one millisecond: borrow the next millisecond.
            self._wall_ms += 1
            self._counter = 0
        else:
            self._counter += 1
