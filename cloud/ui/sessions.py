"""Console sign-ins: in-memory sessions with a role and a CSRF token.

A session id is a random 256-bit value carried in an HTTP-only, ``SameSite=Strict`` cookie;
every POST form carries the session's CSRF token, compared in constant time. Sessions live in
this process only (a controller restart or another replica asks to sign in again) and expire
after ``console_session_ttl_s``; the store holds at most ``console_max_sessions``.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

COOKIE = "autoglm_console"
LOGIN_COOKIE = "autoglm_console_login"  # double-submit token of the sign-in form


class Role(StrEnum):
    ADMIN = "admin"  # may act: drain, label, pause / resume / promote / abort
    VIEWER = "viewer"  # sees everything, acts on nothing


@dataclass
class ConsoleSession:
    sid: str
    role: Role
    name: str
    csrf: str
    expires: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown on the next page

    @property
    def can_act(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def actor(self) -> str:
        """Audit name, the same as the API's for this token (``admin:alice``)."""
        return f"{self.role.value}:{self.name}"

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf.encode(), str(token).encode())

    def take_flash(self) -> list[tuple[str, str]]:
        out, self.flash = self.flash, []
        return out


class SessionStore:
    def __init__(self, ttl_s: float, max_sessions: int, clock: Callable[[], float] = time.time) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, ConsoleSession] = OrderedDict()

    def create(self, role: Role, name: str) -> ConsoleSession:
        now = self.clock()
        sess = ConsoleSession(
            secrets.token_urlsafe(32), role, name, secrets.token_urlsafe(32), now + self.ttl_s
        )
        with self._lock:
            for sid in [k for k, v in self._sessions.items() if v.expires <= now]:
                del self._sessions[sid]
            while len(self._sessions) >= self.max_sessions:
                self._sessions.popitem(last=False)
            self._sessions[sess.sid] = sess
        return sess

    def get(self, sid: str | None) -> ConsoleSession | None:
        if not sid:
            return None
        with self._lock:
            sess = self._sessions.get(sid)
            if sess is None:
                return None
            if sess.expires <= self.clock():
                del self._sessions[sid]
                return None
            return sess

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def __len__(self) -> int:
        return len(self._sessions)


class LoginLimiter:
    """Sign-in attempts per client address: a token bucket of ``burst`` attempts that refills one
    attempt every ``refill_s`` seconds. Every attempt takes one before the token is looked at and
    a successful sign-in gives it back, so only failures use the budget up (a guesser gets
    ``burst`` tries, then one per ``refill_s``) while parallel guesses cannot slip past the check.
    At most ``max_clients`` addresses are tracked (least recently seen dropped first)."""

    def __init__(
        self,
        burst: int,
        refill_s: float,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.refill_s = refill_s
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # addr -> (tokens, at)

    def take(self, addr: str) -> float:
        """Take one attempt for ``addr``: 0.0 when allowed, else the seconds until one is back."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(addr, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) / self.refill_s)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) * self.refill_s
            self._buckets[addr] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait

    def give_back(self, addr: str) -> None:
        """A successful sign-in does not count against the address."""
        with self._lock:
            if addr in self._buckets:
                tokens, at = self._buckets[addr]
                self._buckets[addr] = (min(float(self.burst), tokens + 1.0), at)

    def __len__(self) -> int:
        return len(self._buckets)
